"""Scenario files: schema (frozen pydantic models), YAML/CSV loading, sweep expansion, the
scenarios bundled in the package."""

from privtuner.scenario.loader import (
    apply_overrides,
    expand_sweep,
    load_scenario,
    load_scenario_text,
    parse_yaml_text,
    sweep_name,
    validate_data,
)
from privtuner.scenario.resources import bundled_names, load_bundled
from privtuner.scenario.schema import SCHEMA_VERSION, ScenarioSpec

__all__ = [
    "SCHEMA_VERSION",
    "ScenarioSpec",
    "apply_overrides",
    "bundled_names",
    "expand_sweep",
    "load_bundled",
    "load_scenario",
    "load_scenario_text",
    "parse_yaml_text",
    "sweep_name",
    "validate_data",
]
