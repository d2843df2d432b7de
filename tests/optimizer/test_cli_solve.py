"""``privtuner solve`` / ``privtuner methods`` through a subprocess.

The scenario's cost model is a synthetic model file fitted from synthetic profiling records
(``privtuner.costmodels.fitting.synthetic_records``), so the test does not need the shipped
model or TenSEAL.
"""

from __future__ import annotations

import csv
import json
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
    with alloc.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and {"bandwidth_hz", "set_name", "energy_j"} <= set(rows[0])
    total_b = sum(float(r["bandwidth_hz"]) for r in rows)
    assert total_b <= 1e7 * (1 + 1e-9)
    # --json prints what the API returns, same objective
    proc = _run(["solve", str(scen), "--json", "--method", "enumerate"], work)
    assert proc.returncode == 0, proc.stderr
    enum = json.loads(proc.stdout)
    assert enum["method"] == "enumerate"
    assert abs(enum["objective"] - result["objective"]) <= 1e-6 * abs(result["objective"])


def test_infeasible_exits_1_with_reasons_and_writes_nothing(
    tmp_path: Path, model_path: Path
) -> None:
    work = model_path.parent.parent / "case_bad"
    work.mkdir(exist_ok=True)
    scen = _scenario(work, model_path, 2.0)
    out = work / "r.json"
    proc = _run(["solve", str(scen), "--out", str(out)], work)
    assert proc.returncode == 1
    assert "infeasible: device 0: deadline 2 s unreachable" in proc.stderr
    assert not out.exists()


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
