"""`privtuner fit` and `privtuner plot-fits` through subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from privtuner.costmodels.catalogue import generate_catalogue
from privtuner.costmodels.fitting import load_cost_model, synthetic_records, write_records

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privtuner", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_fit_and_plot(tmp_path: Path) -> None:
    records = write_records(synthetic_records(generate_catalogue(), seed=5), tmp_path / "r.csv")
    out = tmp_path / "model.json"
    r = run("fit", str(records), "--out", str(out))
    assert r.returncode == 0, r.stderr
    for op in ("encrypt", "decrypt", "project_mac", "rescale", "ct_bytes_fresh", "precision_bits"):
        assert op in r.stdout
    assert "R^2" in r.stdout and "heldout" in r.stdout
    model = load_cost_model(out)
    assert model.reference_frequency_hz == 3.0e9
    assert model.device_clear_s_per_token is None
    assert "note: no --device-clear-s-per-token" in r.stderr  # the term is not silently 0

    r = run("fit", str(records), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert {c["op"] for c in summary["curves"]} == set(model.curves)
    assert all(c["heldout_rel_err"] < 0.1 for c in summary["curves"])

    r = run("fit", str(records), "--out", str(out), "--device-clear-s-per-token", "5e-5")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert load_cost_model(out).device_clear_s_per_token == 5e-5

    plots = tmp_path / "plots"
    r = run("plot-fits", str(out), "--records", str(records), "--out", str(plots))
    assert r.returncode == 0, r.stderr
    pngs = sorted(plots.glob("*.png"))
    assert len(pngs) == len(model.curves)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_fit_bad_input_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("op,value\nencrypt,1\n")
    r = run("fit", str(bad), "--out", str(tmp_path / "m.json"))
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error: ") and "missing record columns" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run("fit", str(tmp_path / "none.csv"), "--out", str(tmp_path / "m.json"))
    assert r.returncode == 1 and "records file not found" in r.stderr
