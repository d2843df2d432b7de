"""A seeded share of the scenario fuzzer (issue 14): mutated bundled and repository scenarios
and device CSVs raise only ScenarioError, and no case runs long. The full run (10,000 cases)
is ``benchmarks/fuzz_scenarios.py``."""

from __future__ import annotations

import time
from pathlib import Path

from privtuner.pipeline import instance
from privtuner.scenario.fuzz import load_and_expand, make_case, run_fuzz, seed_corpus, seed_csv


def _load_and_draw(path: Path) -> None:
    points = load_and_expand(path)
    assert isinstance(points, list)
    instance(points[0])  # the first stage after loading (a count-less drop failed here)


def test_fuzz_share_raises_only_scenario_errors() -> None:
    report = run_fuzz(300, seed=20261205, target=_load_and_draw, time_limit_s=10)
    summary = report.to_dict()
    assert summary["cases"] == 300
    assert summary["foreign_exceptions"] == 0, summary["examples"]
    assert summary["hangs"] == 0, summary["examples"]
    assert summary["accepted"] > 0 and summary["scenario_errors"] > 0


def test_cases_are_seeded() -> None:
    corpus, csv = seed_corpus(), seed_csv()
    assert any(label.startswith("bundled/reproduce/") for label, _ in corpus)
    assert any(label.startswith("scenarios/examples/") for label, _ in corpus)
    first = [make_case(7, i, corpus, csv) for i in range(40)]
    assert first == [make_case(7, i, corpus, csv) for i in range(40)]
    assert first != [make_case(8, i, corpus, csv) for i in range(40)]


def test_the_harness_counts_foreign_exceptions_and_hangs() -> None:
    def broken(path: Path) -> None:
        raise KeyError("boom")

    report = run_fuzz(3, seed=1, target=broken)
    assert report.to_dict()["foreign_by_type"] == {"KeyError": 3}

    def slow(path: Path) -> None:
        time.sleep(5)

    report = run_fuzz(2, seed=1, target=slow, time_limit_s=0.2)
    assert report.hangs == 2
