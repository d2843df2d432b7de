"""``privtuner solve`` / ``privtuner methods`` through a subprocess.

The scenario's cost model is a synthetic model file fitted from synthetic profiling records
(``privtuner.costmodels.fitting.synthetic_records``), so the test does not need the shipped
model or TenSEAL.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from privtuner.costmodels.catalogue import generate_catalogue
    from privtuner.costmodels.fitting import fit_records, synthetic_records

    path = tmp_path_factory.mktemp("model") / "model.json"
    fit_records(synthetic_records(generate_catalogue(), seed=11, noise_rel=0.01)).save(path)
    return path


def _scenario(folder: Path, model: Path, deadline_s: float) -> Path:
    rel = Path("..") / model.parent.name / model.name
    text = (
        "schema_version: 1\nname: clitest\nseed: 3\ndevices:\n  count: 3\n"
        f"fhe:\n  cost_model: {rel}\n  ring_degrees: [4096, 8192]\n"
        f"objective:\n  deadline_s: {deadline_s}\n"
    )
    path = folder / "s.yaml"
    path.write_text(text)
    return path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privtuner", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_solve_writes_json_and_csv(tmp_path: Path, model_path: Path) -> None:
    work = model_path.parent.parent / "case_ok"
    work.mkdir(exist_ok=True)
    scen = _scenario(work, model_path, 1000.0)
    out, alloc = work / "r.json", work / "a.csv"
    proc = _run(["solve", str(scen), "--out", str(out), "--csv", str(alloc)], work)
    assert proc.returncode == 0, proc.stderr
    assert "method exact: status optimal" in proc.stdout
    result = json.loads(out.read_text())
    assert result["status"] == "optimal" and result["n_devices"] == 3
    assert result["gap"] <= 1e-6
    absolute = float(proc.stdout.split("(absolute ")[1].split(")")[0])
    exact_gap = result["objective"] - result["lower_bound"]
    assert absolute == pytest.approx(exact_gap, rel=5e-3, abs=1e-12)
    with alloc.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and {"bandwidth_hz", "set_name", "energy_j_per_run"} <= set(rows[0])
    total_b = sum(float(r["bandwidth_hz"]) for r in rows)
    assert total_b <= 1e7 * (1 + 1e-9)
    # --json prints what the API returns, same objective
    proc = _run(["solve", str(scen), "--json", "--method", "enumerate"], work)
    assert proc.returncode == 0, proc.stderr
    enum = json.loads(proc.stdout)
    assert enum["method"] == "enumerate"
    assert abs(enum["objective"] - result["objective"]) <= 1e-6 * abs(result["objective"])


def test_infeasible_writes_result_with_reasons_and_hints_and_exits_1(
    tmp_path: Path, model_path: Path
) -> None:
    work = model_path.parent.parent / "case_bad"
    work.mkdir(exist_ok=True)
    scen = _scenario(work, model_path, 2.0)
    out = work / "r.json"
    proc = _run(["solve", str(scen), "--out", str(out), "--json"], work)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    # the three devices miss the deadline alone with different numbers: one line each
    assert "infeasible: device 0: deadline 2 s unreachable" in proc.stderr
    hints = [ln for ln in proc.stderr.splitlines() if ln.startswith("hint: to make it feasible")]
    assert any("objective.deadline_s: a per-round deadline of at least" in h for h in hints)
    # the result is written (and printed) with its status, reasons and suggestions
    saved = json.loads(out.read_text())
    printed = json.loads(proc.stdout)
    assert saved == printed
    assert saved["status"] == "infeasible" and saved["devices"]["bandwidth_hz"] == []
    assert any(r.startswith("device 0: deadline 2 s unreachable") for r in saved["reasons"])
    assert len(saved["suggestions"]) == len(hints) >= 3
    # the suggested deadline is the threshold: just above it solves, just below it does not
    line = next(s for s in saved["suggestions"] if s.startswith("objective.deadline_s"))
    deadline = float(line.split("at least ")[1].split(" s")[0])
    assert deadline > 2.0
    ok = _run(["solve", str(_scenario(work, model_path, deadline * 1.01)), "--json"], work)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "optimal"
    bad = _run(["solve", str(_scenario(work, model_path, deadline * 0.98))], work)
    assert bad.returncode == 1 and "infeasible:" in bad.stderr


def test_csv_for_planners_capped_security_provenance_and_device_ids(
    tmp_path: Path, model_path: Path
) -> None:
    work = model_path.parent.parent / "case_csv"
    work.mkdir(exist_ok=True)
    (work / "devices.csv").write_text(
        "device_id,distance_m,gain_db\nsite-A,120,\n\nsite-B,,-95\nsite-C,300,\n"
    )
    rel = Path("..") / model_path.parent.name / model_path.name
    scen = work / "s.yaml"
    scen.write_text(
        "schema_version: 1\nname: csvtest\nseed: 3\ndevices:\n  csv: devices.csv\n"
        f"fhe:\n  cost_model: {rel}\n  ring_degrees: [8192, 16384, 32768]\n"
        "objective:\n  deadline_s: 1000\n  privacy_weight: 1000\n"
    )
    alloc, out, plots = work / "a.csv", work / "r.json", work / "plots"
    args = ["solve", str(scen), "--csv", str(alloc), "--out", str(out), "--plots", str(plots)]
    proc = _run(args, work)
    assert proc.returncode == 0, proc.stderr
    # one warning line: the devices given by distance get random shadowing and fading
    notes = [ln for ln in proc.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "shadowing" in notes[0] and "fading" in notes[0]
    with alloc.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["device_id"] for r in rows] == ["site-A", "site-B", "site-C"]
    for col in ("energy_j_per_run", "latency_s_per_round", "tx_power_dbm", "tx_power_w"):
        assert col in rows[0]
    assert not {"energy_j", "latency_s"} & set(rows[0])
    for r in rows:
        dbm = 10 * math.log10(float(r["tx_power_w"]) * 1e3)
        assert float(r["tx_power_dbm"]) == pytest.approx(dbm, abs=1e-3)
        # the CSV shows the capped security the objective uses; the raw estimate beside it
        assert float(r["security_bits"]) == min(float(r["security_bits_uncapped"]), 256.0)
        assert float(r["security_bits"]) == pytest.approx(float(r["privacy"]), rel=1e-3)
    # a large privacy weight picks sets whose raw estimate is above the cap
    assert max(float(r["security_bits_uncapped"]) for r in rows) > 256.0
    # the result JSON and the table say the same
    result = json.loads(out.read_text())
    assert result["devices"]["device_ids"] == ["site-A", "site-B", "site-C"]
    assert max(result["devices"]["security_bits"]) <= 256.0
    table = [ln.split() for ln in proc.stdout.splitlines() if ln.strip().startswith("site-")]
    assert [t[0] for t in table] == ["site-A", "site-B", "site-C"]
    assert all(float(t[2]) <= 256.0 for t in table)
    assert "J per run" in proc.stdout and "s per round" in proc.stdout
    # provenance sidecar
    meta = json.loads((work / "a.provenance.json").read_text())
    assert meta["scenario"] == "csvtest" and meta["method"] == "exact" and meta["seed"] == 3
    assert meta["status"] == result["status"] and meta["gap"] == result["gap"]
    assert meta["versions"]["privtuner"] and set(meta["columns"]) == set(rows[0])
    assert meta["protocol"] == {"packing": "interleaved", "rescale": "server"}
    total = sum(float(r["energy_j_per_run"]) for r in rows)
    assert meta["totals"]["energy_j_per_run"] == pytest.approx(total, rel=1e-5)
    # --plots writes the same table (same columns, same values)
    assert (plots / "allocation.csv").read_text() == alloc.read_text()
    assert (plots / "allocation.provenance.json").is_file()
    # privtuner plot on the saved result writes the same planner columns and values
    proc = _run(["plot", str(out), "--kind", "allocation", "--out", str(work / "p2")], work)
    assert proc.returncode == 0, proc.stderr
    with (work / "p2" / "allocation.csv").open() as fh:
        replot = [
            {k: v for k, v in r.items() if k not in ("scenario", "method")}
            for r in csv.DictReader(fh)
        ]
    assert replot == rows
    # ... and so on the planner CSV itself (before: "no row with an allocation"), named from
    # its sidecar
    proc = _run(["plot", str(alloc), "--kind", "allocation", "--out", str(work / "p3")], work)
    assert proc.returncode == 0, proc.stderr
    with (work / "p3" / "allocation.csv").open() as fh:
        back = list(csv.DictReader(fh))
    assert {(r.pop("scenario"), r.pop("method")) for r in back} == {("csvtest", "exact")}
    assert back == rows
    # the batch's per-device allocation carries the names too
    table = work / "b.csv"
    proc = _run(
        ["batch", str(scen), "--methods", "exact", "--out", str(table), "--no-progress"], work
    )
    assert proc.returncode == 0, proc.stderr
    with table.open() as fh:
        (row,) = list(csv.DictReader(fh))
    alloc_json = json.loads(row["allocation_json"])
    assert [a["device_id"] for a in alloc_json] == ["site-A", "site-B", "site-C"]
    assert float(row["security_bits_mean"]) <= 256.0 < float(row["security_bits_uncapped_mean"])


def test_csv_row_errors_name_the_file_line(tmp_path: Path) -> None:
    """Both the CSV reader's and the schema's problems name the file line (blank lines
    counted), not a 0-based row index."""
    (tmp_path / "d.csv").write_text("distance_m,device_id\n100,ok\n\nfar,bad\n")
    (tmp_path / "s.yaml").write_text("name: x\ndevices:\n  csv: d.csv\n")
    proc = _run(["validate", "s.yaml"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: s.yaml: devices.csv (d.csv) line 4: distance_m: must be a number (got 'far')"
    )
    (tmp_path / "d.csv").write_text('device_id,distance_m\nok,100\n\n"two\nlines",-5\n')
    proc = _run(["validate", "s.yaml"], tmp_path)
    assert proc.stderr.strip() == (
        "error: s.yaml: devices.csv (d.csv) line 4: distance_m: "
        "must be greater than or equal to 0.1 (got -5)"
    )


def test_unwritable_output_fails_before_solving(tmp_path: Path, model_path: Path) -> None:
    work = model_path.parent.parent / "case_path"
    work.mkdir(exist_ok=True)
    scen = _scenario(work, model_path, 1000.0)
    out = work / "r.json"
    proc = _run(["solve", str(scen), "--out", str(out), "--csv", "/proc/nope/x.csv"], work)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: --csv /proc/nope/x.csv: cannot write in folder /proc (No such file or directory)"
    )
    assert not out.exists()  # checked before solving: nothing written half-way
    proc = _run(["solve", str(scen), "--plots", str(scen)], work)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: --plots {scen}: is a file, not a folder"


def test_two_outputs_naming_one_path_are_refused(tmp_path: Path, model_path: Path) -> None:
    work = model_path.parent.parent / "case_same"
    work.mkdir(exist_ok=True)
    scen = _scenario(work, model_path, 1000.0)
    proc = _run(["solve", str(scen), "--csv", "o.csv", "--out", "./o.csv"], work)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "error: --csv o.csv: same path as --out; give each output its own path"
    )
    assert not (work / "o.csv").exists()
    proc = _run(["solve", str(scen), "--csv", "o.csv", "--out", "r.json"], work)
    assert proc.returncode == 0, proc.stderr  # different paths are fine


def test_infeasible_says_which_outputs_are_not_written(tmp_path: Path, model_path: Path) -> None:
    work = model_path.parent.parent / "case_infeasible_outputs"
    work.mkdir(exist_ok=True)
    scen = _scenario(work, model_path, 2.0)
    args = ["solve", str(scen), "--out", "inf.json", "--csv", "inf.csv", "--plots", "figs"]
    proc = _run(args, work)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if ln.startswith("note:")]
    assert notes == ["note: --csv inf.csv and --plots figs not written: the instance is infeasible"]
    assert (work / "inf.json").is_file()
    assert not (work / "inf.csv").exists() and not (work / "figs").exists()


def test_simulate_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text("name: big\ndevices:\n  count: 20000\n")
    proc = subprocess.run(
        f"{sys.executable} -m privtuner simulate big.yaml | head -n 1",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout.startswith("# big: 20000 devices")
    assert proc.stderr == ""


def test_unknown_method_and_methods_list(tmp_path: Path, model_path: Path) -> None:
    work = model_path.parent.parent / "case_m"
    work.mkdir(exist_ok=True)
    scen = _scenario(work, model_path, 1000.0)
    proc = _run(["solve", str(scen), "--method", "nope"], work)
    assert proc.returncode == 1 and "unknown method 'nope'" in proc.stderr
    proc = _run(["methods"], work)
    assert proc.returncode == 0 and "exact" in proc.stdout and "enumerate" in proc.stdout


@pytest.mark.parametrize("time_limit", ["0.000001", "0.02", "300"])
def test_time_limit_gives_a_truthful_status(tmp_path: Path, time_limit: str) -> None:
    """On the bundled default scenario: 'optimal' only with a lower bound and a gap within
    rel_tol; a limit hit gives 'feasible' (with the true gap or none) and the table prints
    a null bound without a traceback."""
    default = ROOT / "scenarios" / "default.yaml"
    js = subprocess.run(
        [
            sys.executable,
            "-m",
            "privtuner",
            "solve",
            str(default),
            "--time-limit",
            time_limit,
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert js.returncode == 0, js.stderr
    d = json.loads(js.stdout)
    assert d["status"] in ("optimal", "feasible")
    if d["status"] == "optimal":
        assert d["lower_bound"] is not None and d["gap"] is not None and d["gap"] <= 1e-6
        assert d["termination"] == "gap_closed"
    else:
        assert d["termination"] == "time_limit"
        assert d["gap"] is None or d["gap"] > 1e-6
    table = subprocess.run(
        [sys.executable, "-m", "privtuner", "solve", str(default), "--time-limit", time_limit],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert table.returncode == 0 and "Traceback" not in table.stderr, table.stderr
    assert "lower bound" in table.stdout


def test_method_error_writes_the_result_and_exits_1(tmp_path: Path) -> None:
    """Before: ``--out`` was left unwritten when the method refused the instance (README:
    the result is written when there is no allocation), and the message advised raising
    ``max_combinations``, which neither the CLI nor a scenario can do."""
    default = Path(__file__).resolve().parents[2] / "scenarios" / "default.yaml"
    out, csv_out = tmp_path / "r.json", tmp_path / "a.csv"
    args = ["solve", str(default), "--method", "enumerate", "--out", str(out), "--json"]
    proc = _run([*args, "--csv", str(csv_out)], tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "use method 'exact'" in errors[0]
    assert "raise max_combinations" not in errors[0]
    saved = json.loads(out.read_text())
    assert saved == json.loads(proc.stdout)
    assert saved["status"] == "error" and saved["method"] == "enumerate"
    assert saved["message"] == errors[0].removeprefix("error: ")
    assert not csv_out.exists()
    # an unknown method is bad input: refused, nothing written
    out.unlink()
    bad = _run(["solve", str(default), "--method", "nope", "--out", str(out)], tmp_path)
    assert bad.returncode == 1 and "unknown method 'nope'" in bad.stderr
    assert not out.exists()
