"""Bundled scenarios: read through importlib.resources, the same files as scenarios/ in the
checkout, shipped in the wheel (package data)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from privtuner.errors import ScenarioError
from privtuner.scenario import bundled_names, load_bundled, load_scenario
from privtuner.scenario.resources import bundled_source, bundled_text

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "privtuner" / "scenario" / "bundled"

REPRODUCE = [
    "reproduce/bandwidth",
    "reproduce/deadline",
    "reproduce/devices",
    "reproduce/power",
    "reproduce/tradeoff_constrained",
    "reproduce/tradeoff_packing",
    "reproduce/tradeoff_weighted",
]


def test_names_and_loading() -> None:
    assert bundled_names() == ["default"]
    assert bundled_names("reproduce") == REPRODUCE
    spec = load_bundled()
    assert spec.name == "default" and spec.devices.count == 10
    for name in REPRODUCE:
        assert load_bundled(name).sweep


def test_the_checkout_scenarios_are_the_bundled_files() -> None:
    """scenarios/default.yaml and scenarios/reproduce/ (what README commands use) are the
    bundled files, not copies that could drift."""
    assert (REPO / "scenarios" / "default.yaml").read_text() == bundled_text("default")
    assert load_scenario(REPO / "scenarios" / "default.yaml") == load_bundled()
    for name in REPRODUCE:
        assert (REPO / "scenarios" / f"{name}.yaml").read_text() == bundled_text(name)


def test_unknown_names() -> None:
    with pytest.raises(ScenarioError, match="no bundled scenario 'nope'"):
        bundled_text("nope")
    with pytest.raises(ScenarioError, match="no bundled scenario folder"):
        bundled_names("nope")
    assert bundled_source("reproduce/power").endswith("bundled/reproduce/power.yaml")


def test_package_data_covers_every_bundled_file() -> None:
    """pyproject's package-data globs match every file under bundled/ (so a wheel has them)."""
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = conf["tool"]["setuptools"]["package-data"]["privtuner.scenario"]
    files = {p.relative_to(BUNDLED.parent) for p in BUNDLED.rglob("*") if p.is_file()}
    covered = {p.relative_to(BUNDLED.parent) for g in globs for p in BUNDLED.parent.glob(g)}
    assert files and files == covered


@pytest.mark.parametrize(("packing", "stated"), [("interleaved", "79.7 s"), ("column", "604 s")])
def test_stated_minimum_deadlines_are_the_solvers(packing: str, stated: str) -> None:
    """The default scenario's comments and the schema's ``objective.deadline_s`` description
    state the smallest per-round deadline of the default instance for each packing: the
    figure ``solve``'s hint gives (re-measured when the cost model or packing changes)."""
    import re

    from privtuner.optimizer.methods.exact.remedies import suggest_remedies
    from privtuner.pipeline import build_problem
    from privtuner.scenario.schema import ObjectiveSpec

    spec = load_bundled().with_overrides({"objective.deadline_s": 1.0, "fhe.packing": packing})
    hint = next(
        line for line in suggest_remedies(build_problem(spec)) if "objective.deadline_s" in line
    )
    m = re.search(r"at least ([0-9.]+) s", hint)
    assert m is not None, hint
    assert float(stated.split()[0]) == pytest.approx(float(m[1]), rel=2e-3)
    description = ObjectiveSpec.model_fields["deadline_s"].description or ""
    assert f">= {stated} with" in bundled_text("default")
    assert stated in description and "602" not in description
    # the reproduce sweeps' comments quote the same figures (before: "~606 s" for both packings)
    quoting = [
        f
        for f in sorted((BUNDLED / "reproduce").glob("*.yaml"))
        if "instance needs" in (f.read_text(encoding="utf-8"))
    ]
    assert quoting
    for f in quoting:
        assert f">= {stated} with" in f.read_text(encoding="utf-8"), f.name
