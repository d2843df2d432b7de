"""Results rows (:mod:`privtuner.rows`): the scenario inputs are typed results columns."""

from __future__ import annotations

from privtuner.rows import COLUMNS, normalize_row, spec_input_columns
from privtuner.scenario.schema import ScenarioSpec


def test_every_scenario_input_is_a_results_column() -> None:
    """Each input a row takes from its scenario (fhe.rescale included) is a column of
    :data:`COLUMNS`, typed and in its place among the inputs, not an extra appended after the
    versions; a row whose scenario failed to load still has it (empty)."""
    spec = ScenarioSpec().with_overrides({"fhe.rescale": "device"})
    inputs = spec_input_columns(spec)
    assert [c for c in inputs if c not in COLUMNS] == []
    assert inputs["rescale"] == "device"
    names = list(normalize_row(inputs))
    assert names.index("rescale") == names.index("packing") + 1
    assert normalize_row({"key": "k"})["rescale"] is None
