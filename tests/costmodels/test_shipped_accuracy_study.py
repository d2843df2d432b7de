"""The shipped SST-2 accuracy study (MiniLM-L6, simulated CKKS errors per catalogue set) and the
example scenario whose catalogue it filters (``scenarios/examples/accuracy_floor.yaml``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from privtuner import pipeline
from privtuner.costmodels.catalogue import generate_catalogue
from privtuner.scenario.loader import load_scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "scenarios" / "examples"
STUDY = EXAMPLES / "sst2_minilm_accuracy.json"
SCENARIO = EXAMPLES / "accuracy_floor.yaml"


def _study() -> dict:
    return json.loads(STUDY.read_text())


def test_study_covers_every_catalogue_set_and_its_losses_follow_its_accuracies() -> None:
    """One simulated interleaved run per catalogue set beside the plaintext reference; every
    accuracy loss is 100 x (plain accuracy - the run's accuracy), recomputed here."""
    doc = _study()
    assert doc["mode"] == "simulate" and doc["model"] == "minilm"
    (plain,) = [r for r in doc["runs"] if r["mode"] == "plain"]
    sims = [r for r in doc["runs"] if r["mode"] == "simulate"]
    assert sorted(r["set_name"] for r in sims) == sorted(p.name for p in generate_catalogue())
    assert {r["packing"] for r in sims} == {"interleaved"}
    steps = len(plain["losses"])
    for r in sims:
        assert len(r["losses"]) == steps
        lost = 100.0 * (plain["final_dev_accuracy"] - r["final_dev_accuracy"])
        assert r["accuracy_loss_points"] == pytest.approx(lost, abs=1e-9)
    assert doc["data"]["dev_examples"] == 872  # the whole SST-2 dev set


def test_example_scenario_drops_exactly_the_sets_losing_more_than_its_bound() -> None:
    """The filter's result, recomputed from the study's accuracies: a set is dropped iff its
    dev accuracy is more than the bound below plain's (``min_precision_bits: 0``)."""
    spec = load_scenario(SCENARIO)
    bound = spec.fhe.max_accuracy_loss_points
    assert bound is not None and spec.fhe.min_precision_bits == 0
    doc = _study()
    (plain,) = [r for r in doc["runs"] if r["mode"] == "plain"]
    worse = {
        r["set_name"]
        for r in doc["runs"]
        if r["mode"] == "simulate"
        and 100.0 * (plain["final_dev_accuracy"] - r["final_dev_accuracy"]) > bound + 1e-9
    }
    table = pipeline.cost_table(spec, cache=False)
    dropped = set(table.provenance["dropped_for_accuracy"])
    assert dropped == worse
    assert {p.name for p in table.params}.isdisjoint(worse)
    assert table.n_sets > 0


def test_solve_names_the_sets_the_floors_dropped(cli, tmp_path: Path) -> None:
    """`privtuner solve` says which catalogue sets the accuracy floor (or the precision
    floor) removed, so a planner sees it without the Python API."""
    proc = cli("solve", str(SCENARIO), "--out", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if "max_accuracy_loss_points" in x]
    assert line.startswith("# dropped 1 set losing more than fhe.max_accuracy_loss_points=1.0")
    assert line.endswith(": N32768_q40-20-40_s20")
    default = cli("solve", str(EXAMPLES.parent / "default.yaml"), "--out", str(tmp_path / "d.json"))
    assert "below fhe.min_precision_bits=20: N4096_q40-20-40_s20" in default.stdout
