"""Scenario loading: defaults, numbers as users write them, CSV devices, sweeps, and errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privtuner.errors import ScenarioError
from privtuner.scenario import (
    expand_sweep,
    load_scenario,
    load_scenario_text,
    parse_yaml_text,
    sweep_name,
)
from privtuner.scenario.schema import ScenarioSpec, Uniform

SCEN = Path(__file__).resolve().parents[2] / "scenarios"


def test_default_scenario_matches_spec_defaults() -> None:
    spec = load_scenario(SCEN / "default.yaml")
    assert spec.devices.count == 10
    assert spec.system.bandwidth_hz == 1e7
    assert spec.devices.p_max_dbm == 23
    assert spec.devices.f_max_hz == 1.5e9
    assert spec.server.cpu_hz == 5e10
    assert spec.devices.kappa == 1e-28
    assert spec.system.noise_dbm_per_hz == -174
    assert spec.workload.lora_rank == 8
    assert spec.workload.lora_targets == ("query", "value")
    assert spec.workload.tokens_per_step == 8 * 64
    # The file only restates defaults: it must equal the schema's own defaults, so that the
    # bundled sweeps (which only state what they change) vary the default scenario.
    assert spec.model_copy(update={"name": "scenario"}) == ScenarioSpec()


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e7", 1e7), ("2.4e9", 2.4e9), ("-3E-2", -0.03), ("1.5e+9", 1.5e9), ("10", 10)],
)
def test_numbers_as_users_write_them(text: str, value: float) -> None:
    assert parse_yaml_text(f"x: {text}")["x"] == value


def test_exponent_in_scenario_is_a_number() -> None:
    spec = load_scenario_text("system:\n  bandwidth_hz: 2e7\nserver:\n  cpu_hz: 4.5e10\n")
    assert spec.system.bandwidth_hz == 2e7
    assert spec.server.cpu_hz == 4.5e10


def test_models_are_frozen() -> None:
    spec = load_scenario_text("seed: 3")
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError
        spec.seed = 4  # type: ignore[misc]


def test_uniform_distribution_field() -> None:
    spec = load_scenario_text("devices:\n  p_max_dbm: {low: 10, high: 20}\n")
    assert spec.devices.p_max_dbm == Uniform(low=10, high=20)


def test_csv_devices_relative_to_yaml(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.csv").write_text("distance_m,gain_db,p_max_dbm\n100,,20\n,-100,\n")
    (tmp_path / "s.yaml").write_text("devices:\n  csv: sub/d.csv\n")
    spec = load_scenario(tmp_path / "s.yaml")
    assert spec.devices.explicit is not None
    assert len(spec.devices.explicit) == 2
    assert spec.devices.explicit[0].distance_m == 100
    assert spec.devices.explicit[0].p_max_dbm == 20
    assert spec.devices.explicit[1].gain_db == -100
    assert spec.devices.explicit[1].p_max_dbm is None


def test_missing_csv_names_path(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("devices:\n  csv: nothere.csv\n")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(tmp_path / "s.yaml")
    assert "nothere.csv" in str(exc.value)
    assert "devices.csv" in str(exc.value)


def test_all_problems_collected() -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario_text(
            "system:\n  bandwidth_hz: -1\n  bogus: 2\ndevices:\n  p_max_dbm: 55\nseed: x\n"
        )
    problems = exc.value.problems
    assert any(p.startswith("system.bandwidth_hz:") for p in problems)
    assert any(p.startswith("system.bogus: unknown key; valid keys:") for p in problems)
    assert any(p.startswith("devices.p_max_dbm:") and "55" in p for p in problems)
    assert any(p.startswith("seed:") for p in problems)
    assert len(problems) == 4


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario_text("server:\n  cpu_ghz: 50\n")
    (line,) = exc.value.problems
    assert "server.cpu_ghz" in line
    for valid in ("cpu_hz", "kappa", "downlink_rate_bps"):
        assert valid in line


def test_yaml_syntax_error_has_line_and_column() -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario_text("system:\n  bandwidth_hz: 1e7\n  shadowing_db: [8\n")
    assert "line" in str(exc.value) and "column" in str(exc.value)


def test_duplicate_keys_rejected() -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario_text("seed: 1\nseed: 2\n")
    assert "duplicate key" in str(exc.value)


def test_sweep_expansion_counts_and_names() -> None:
    spec = load_scenario(SCEN / "examples" / "sweep_bandwidth.yaml")
    points = expand_sweep(spec)
    assert len(points) == 9
    names = [p.name for p in points]
    assert len(set(names)) == 9
    assert names[0] == "sweep-bandwidth[system.bandwidth_hz=5e6,seed=0]"
    assert names[1] == "sweep-bandwidth[system.bandwidth_hz=5e6,seed=1]"
    assert names[-1] == "sweep-bandwidth[system.bandwidth_hz=2e7,seed=2]"
    assert [p.system.bandwidth_hz for p in points[::3]] == [5e6, 1e7, 2e7]
    assert all(p.sweep is None for p in points)
    # Stable: expanding twice gives the same names in the same order.
    assert [p.name for p in expand_sweep(spec)] == names


def test_sweep_three_keys_cartesian() -> None:
    spec = load_scenario_text(
        "name: s\nsweep:\n  seed: [0, 1]\n  devices.count: [2, 3, 4]\n"
        "  objective.deadline_s: [1.0, 2.0]\n"
    )
    points = expand_sweep(spec)
    assert len(points) == 12
    assert sweep_name("s", {"seed": 1, "devices.count": 3}) == "s[seed=1,devices.count=3]"


def test_sweep_bad_value_reported_with_point() -> None:
    with pytest.raises(ScenarioError) as exc:
        expand_sweep(load_scenario_text("sweep:\n  system.bandwidth_hz: [1e6, -5]\n"))
    assert "system.bandwidth_hz=-5" in str(exc.value)
    assert "greater than or equal to 1000" in str(exc.value)


def test_sweep_unknown_section() -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario_text("sweep:\n  nosuch.field: [1, 2]\n")
    assert "nosuch" in str(exc.value)


def test_no_sweep_expands_to_itself() -> None:
    spec = load_scenario_text("seed: 5")
    assert expand_sweep(spec) == [spec]


# --------------------------------------------------------------------------- fuzzing

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
_keys = st.sampled_from(
    [
        "system",
        "devices",
        "server",
        "workload",
        "fhe",
        "objective",
        "solver",
        "seed",
        "sweep",
        "name",
        "schema_version",
        "bandwidth_hz",
        "count",
        "explicit",
        "csv",
        "p_max_dbm",
        "low",
        "high",
        "distance_m",
        "ring_degrees",
        "kind",
        "zzz",
    ]
)
_yamlish = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_yamlish)
def test_random_structures_only_raise_scenario_error(doc: object, tmp_path_factory) -> None:
    text = yaml.safe_dump(doc)
    try:
        spec = load_scenario_text(text, base_dir=tmp_path_factory.getbasetemp())
    except ScenarioError as exc:
        assert exc.problems and all("\n" not in p for p in exc.problems)
    else:
        assert isinstance(spec, ScenarioSpec)
        if spec.sweep:
            try:
                expand_sweep(spec)
            except ScenarioError:
                pass


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_random_text_only_raises_scenario_error(text: str) -> None:
    try:
        load_scenario_text(text)
    except ScenarioError:
        pass


def test_nan_and_huge_values_rejected() -> None:
    for text, field in [
        ("system:\n  bandwidth_hz: .nan\n", "system.bandwidth_hz"),
        ("system:\n  bandwidth_hz: 1e300\n", "system.bandwidth_hz"),
        ("server:\n  cpu_hz: .inf\n", "server.cpu_hz"),
        ("devices:\n  count: 100000000000\n", "devices.count"),
    ]:
        with pytest.raises(ScenarioError) as exc:
            load_scenario_text(text)
        assert exc.value.problems[0].startswith(field + ":"), exc.value.problems
    assert math.isfinite(load_scenario_text("system:\n  bandwidth_hz: 1e9\n").system.bandwidth_hz)


# ----------------------------------------------------------------------------- new-user review
@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "null\n"])
def test_an_empty_file_is_refused(tmp_path: Path, text: str) -> None:
    f = tmp_path / "empty.yaml"
    f.write_text(text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(f)
    (line,) = exc.value.lines()
    assert line.startswith(f"{f}: the file is empty (no YAML mapping): give keys among ")
    assert "devices" in line and "write {} to take every default" in line


def test_braces_take_every_default() -> None:
    assert load_scenario_text("{}") == ScenarioSpec()


@pytest.mark.parametrize(
    ("devices", "n"), [("[{gain_db: -100}]", 1), ("[{gain_db: -100}, {distance_m: 50}]", 2)]
)
def test_a_count_contradicting_the_explicit_list_is_refused(devices: str, n: int) -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario_text(f"devices: {{count: 3, explicit: {devices}}}")
    assert exc.value.problems == [
        f"devices.count: contradicts the explicit list of {n} device{'s' * (n > 1)} (the list "
        f"sets the number of devices: leave count out, or give {n}) (got 3)"
    ]
    # the list's own length, or no count, is accepted (and the list sets the number)
    assert (
        len(
            load_scenario_text(f"devices: {{count: {n}, explicit: {devices}}}").devices.explicit
            or []
        )
        == n
    )
    spec = load_scenario_text(f"devices: {{explicit: {devices}}}")
    assert spec.devices.count is None
    # a sweep over another field keeps the list without a count
    assert (
        expand_sweep(spec.model_copy(update={"sweep": {"seed": [1, 2]}}))[1].devices.count is None
    )


def test_a_count_contradicting_the_devices_csv_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("gain_db\n-100\n-90\n")
    (tmp_path / "s.yaml").write_text("devices: {csv: d.csv, count: 3}\n")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(tmp_path / "s.yaml")
    assert exc.value.problems == [
        "devices.count: contradicts devices.csv (d.csv), which lists 2 devices (the file sets "
        "the number of devices: leave count out, or give 2) (got 3)"
    ]
    (tmp_path / "s.yaml").write_text("devices: {csv: d.csv, count: 2}\n")
    assert len(load_scenario(tmp_path / "s.yaml").devices.explicit or []) == 2


def test_the_random_drop_keeps_ten_devices_by_default() -> None:
    assert load_scenario_text("devices: {p_max_dbm: 20}").devices.count == 10
    shipped = [*SCEN.rglob("*.yaml"), *(SCEN / "reproduce").glob("*.yaml")]  # a symlink
    assert len(shipped) > 10
    for path in shipped:  # every shipped scenario still loads
        load_scenario(path)


def test_duplicate_device_ids_in_a_csv_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("device_id,gain_db\nalpha,-100\nbeta,-90\nalpha,-95\n")
    (tmp_path / "s.yaml").write_text("devices: {csv: d.csv}\n")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(tmp_path / "s.yaml")
    assert exc.value.problems == [
        "devices.csv (d.csv) line 4: device_id: device ids must be unique: line 2 has this id "
        "too (got 'alpha')"
    ]


def test_duplicate_device_ids_in_an_explicit_list() -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario_text(
            "devices:\n  explicit:\n    - {gain_db: -100, device_id: a}\n"
            "    - {gain_db: -90}\n    - {gain_db: -90, device_id: a}\n"
        )
    assert exc.value.problems == [
        "devices.explicit.2.device_id: device ids must be unique: devices.explicit.0 has this "
        "id too (got 'a')"
    ]


def test_heads_must_divide_the_hidden_size() -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario_text("workload: {hidden_size: 100, num_heads: 3}")
    assert exc.value.problems == [
        "workload.num_heads: must divide hidden_size 100 (each head has hidden_size / num_heads "
        "dimensions) (got 3)"
    ]
    assert (
        load_scenario_text("workload: {hidden_size: 384, num_heads: 12}").workload.num_heads == 12
    )


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        (
            "devices: {p_max_dbm: {low: 30, high: 10}}",
            ["devices.p_max_dbm: high must be >= low (got low=30, high=10)"],
        ),
        (
            "devices: {f_max_hz: {low: 2e9, high: 1e9}}",
            ["devices.f_max_hz: high must be >= low (got low=2e+09, high=1e+09)"],
        ),
        ("devices: {kappa: {low: 1e-28}}", ["devices.kappa.high: required field is missing"]),
        (
            "devices: {p_max_dbm: x}",
            ["devices.p_max_dbm: must be a number, not a string (got 'x')"],
        ),
        ("devices: {p_max_dbm: 99}", ["devices.p_max_dbm: must be in [-30, 40] (got 99)"]),
    ],
)
def test_a_number_or_mapping_field_reports_the_branch_given(text: str, problems: list[str]) -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario_text(text)
    assert exc.value.problems == problems


def test_min_security_above_the_cap_is_refused() -> None:
    from privtuner.costmodels.privacy import SECURITY_CAP_BITS
    from privtuner.scenario.schema import MAX_SECURITY_BITS, scenario_json_schema

    assert MAX_SECURITY_BITS == SECURITY_CAP_BITS
    with pytest.raises(ScenarioError) as exc:
        load_scenario_text("fhe: {min_security_bits: 300}")
    assert exc.value.problems == [
        "fhe.min_security_bits: above every set (best security_bits 256: the top of the HE "
        "standard's table; security beyond it is an extrapolation no set is credited with); "
        "give at most 256 (got 300)"
    ]
    assert load_scenario_text("fhe: {min_security_bits: 256}").fhe.min_security_bits == 256
    prop = scenario_json_schema()["$defs"]["FheSpec"]["properties"]["min_security_bits"]
    assert (prop["minimum"], prop["maximum"]) == (128, 256)
