"""Scenario files: schema (frozen pydantic models), YAML/CSV loading, sweep expansion."""

from privtuner.scenario.loader import (
    apply_overrides,
    expand_sweep,
    load_scenario,
    load_scenario_text,
    parse_yaml_text,
    sweep_name,
    validate_data,
)
from privtuner.scenario.schema import SCHEMA_VERSION, ScenarioSpec

__all__ = [
    "SCHEMA_VERSION",
    "ScenarioSpec",
    "apply_overrides",
    "expand_sweep",
    "load_scenario",
    "load_scenario_text",
    "parse_yaml_text",
    "sweep_name",
    "validate_data",
]
