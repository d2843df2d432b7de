"""Hostile and over-large scenario files and device CSVs (issues 14 and 15): each cause found
by the red-team fuzzer gives one bounded ScenarioError line, quickly, and never echoes the
contents of a file that is not a devices CSV."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from privtuner.errors import ScenarioError
from privtuner.scenario import expand_sweep, load_scenario, load_scenario_text, parse_yaml_text
from privtuner.scenario.loader import MAX_DEPTH, MAX_NODES
from privtuner.scenario.validation import MAX_CSV_PROBLEMS, MAX_SWEEP_POINTS

CSV_OK = "distance_m,p_max_dbm\n100,20\n200,\n"


def _error(fn, *args) -> ScenarioError:  # type: ignore[no-untyped-def]
    with pytest.raises(ScenarioError) as exc:
        fn(*args)
    for line in exc.value.lines():  # one bounded line each, no control characters
        assert "\n" not in line and "\r" not in line and "\x00" not in line
        assert len(line) <= 600
    return exc.value


def _scenario_with_csv(tmp_path: Path, csv: str | bytes | None, csv_ref: str = "d.csv") -> Path:
    if csv is not None:
        data = csv if isinstance(csv, bytes) else csv.encode("utf-8")
        (tmp_path / "d.csv").write_bytes(data)
    scen = tmp_path / "s.yaml"
    scen.write_text(f"devices:\n  csv: {csv_ref!r}\n", encoding="utf-8")
    return scen


# ----------------------------------------------------------------------------- file reading
def test_non_utf8_yaml(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_bytes(b"name: caf\xe9\n")
    err = _error(load_scenario, p)
    assert "not UTF-8 text (byte 0xe9 at offset 9)" in str(err)


def test_non_utf8_csv(tmp_path: Path) -> None:
    err = _error(load_scenario, _scenario_with_csv(tmp_path, b"distance_m\n1\xff0\n"))
    assert "devices.csv (d.csv): cannot read" in str(err)
    assert "not UTF-8 text" in str(err)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("bad\x00name.yaml", "the path contains a NUL character"),
        ("bad\ud800name.yaml", "cannot be a file name"),
        ("n" * 300 + ".yaml", "file name too long"),
    ],
)
def test_paths_that_cannot_be_files(path: str, reason: str) -> None:
    err = _error(load_scenario, path)
    assert reason in str(err)


@pytest.mark.parametrize("special", ["folder", "fifo", "proc", "dev_null", "symlink_loop"])
def test_csv_must_be_a_regular_file(tmp_path: Path, special: str) -> None:
    ref = "d.csv"
    if special == "folder":
        (tmp_path / "d.csv").mkdir()
    elif special == "fifo":
        os.mkfifo(tmp_path / "d.csv")  # opening it would block: must be refused first
    elif special == "proc":
        ref = "/proc/self/environ"
    elif special == "dev_null":
        ref = "/dev/null"
    else:
        os.symlink(tmp_path / "b", tmp_path / "a")
        os.symlink(tmp_path / "a", tmp_path / "b")
        os.symlink(tmp_path / "a", tmp_path / "d.csv")
    t0 = time.perf_counter()
    err = _error(load_scenario, _scenario_with_csv(tmp_path, None, ref))
    assert time.perf_counter() - t0 < 5
    reason = "symbolic links" if special == "symlink_loop" else "not a regular file"
    assert reason in str(err).lower() or "symlink loop" in str(err)
    assert "devices.csv" in str(err)


def test_csv_contents_never_echoed(tmp_path: Path) -> None:
    secret = "root:x:0:0:TOPSECRET:/root:/bin/bash"
    (tmp_path / "passwd").write_text(secret + "\nline2\n")
    err = _error(load_scenario, _scenario_with_csv(tmp_path, None, "passwd"))
    text = str(err)
    assert "TOPSECRET" not in text and "root:x" not in text
    assert "unknown column(s) column 1 (not a column name)" in text
    # a plausible column name is echoed, short and quoted
    err = _error(load_scenario, _scenario_with_csv(tmp_path, "distance_m,power_w\n1,2\n"))
    assert "unknown column(s) 'power_w'" in str(err)


def test_csv_with_byte_order_mark(tmp_path: Path) -> None:
    spec = load_scenario(_scenario_with_csv(tmp_path, "\ufeff" + CSV_OK))
    assert spec.devices.explicit is not None
    assert [d.distance_m for d in spec.devices.explicit] == [100, 200]


def test_csv_field_over_the_csv_limit(tmp_path: Path) -> None:
    err = _error(load_scenario, _scenario_with_csv(tmp_path, '"' + "9" * 200_000 + '"\n1\n'))
    assert "devices.csv (d.csv): not a valid CSV file: field larger than field limit" in str(err)


def test_csv_row_with_more_fields_than_header(tmp_path: Path) -> None:
    err = _error(load_scenario, _scenario_with_csv(tmp_path, "distance_m\n100,200,300\n"))
    assert "devices.csv (d.csv) line 2: 3 fields, the header has 1" in str(err)


def test_csv_problems_are_capped(tmp_path: Path) -> None:
    csv = "distance_m\n" + "x\n" * 500
    err = _error(load_scenario, _scenario_with_csv(tmp_path, csv))
    assert len(err.problems) == MAX_CSV_PROBLEMS + 1
    assert "480 more problem(s) not shown" in err.problems[-1]


# ----------------------------------------------------------------------------- YAML bounds
def test_deep_nesting_is_bounded() -> None:
    err = _error(parse_yaml_text, "a: " + "[" * 100_000 + "]" * 100_000)
    assert f"nesting deeper than the limit of {MAX_DEPTH} levels" in str(err)


def test_alias_bomb_is_bounded() -> None:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * 10) + "]"]
    for k in range(1, 9):  # 10^9 values once expanded
        lines.append(f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 10) + "]")
    t0 = time.perf_counter()
    err = _error(load_scenario_text, "\n".join(lines))
    assert time.perf_counter() - t0 < 2
    assert f"more than {MAX_NODES} values with aliases expanded" in str(err)


def test_huge_sweep_is_refused_by_its_size() -> None:
    values = ", ".join(str(i) for i in range(1000))
    t0 = time.perf_counter()
    err = _error(load_scenario_text, f"sweep: {{seed: [{values}], workload.rounds: [{values}]}}")
    assert time.perf_counter() - t0 < 5
    assert (
        f"1000000 points (the product of the value-list lengths) exceed the limit of "
        f"{MAX_SWEEP_POINTS}" in str(err)
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed: !!float abc", "cannot build a value: could not convert string to float: 'abc'"),
        ("seed: !!int 1.5", "cannot build a value"),
        ("seed: !!binary abc", "failed to decode base64 data"),
        ("? [1, 2]\n: 3\n", "a mapping key must be a scalar (got a list)"),
        ("? {a: 1}\n: 3\n", "a mapping key must be a scalar (got a dict)"),
    ],
)
def test_explicit_tags_and_unhashable_keys(text: str, message: str) -> None:
    assert message in str(_error(load_scenario_text, text))


def test_merge_keys_are_accepted_own_keys_win() -> None:
    data = parse_yaml_text(
        "base: &b {bandwidth_hz: 2e7, fading: none}\nsystem:\n  <<: *b\n  fading: rayleigh\n"
    )
    assert data["system"] == {"bandwidth_hz": 2e7, "fading": "rayleigh"}
    # and still no duplicate own key
    assert "duplicate key 'fading'" in str(
        _error(parse_yaml_text, "base: &b {a: 1}\nsystem:\n  <<: *b\n  fading: x\n  fading: y\n")
    )


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("system: {bandwidth_hz: true}", "system.bandwidth_hz"),
        ("seed: yes", "seed"),
        ("devices: {count: false}", "devices.count"),
        ("devices: {p_max_dbm: true}", "devices.p_max_dbm"),
        ("devices: {p_max_dbm: {low: true, high: 20}}", "devices.p_max_dbm.low"),
        ("fhe: {ring_degrees: [4096, true]}", "fhe.ring_degrees.1"),
        ("objective: {deadline_s: on}", "objective.deadline_s"),
    ],
)
def test_booleans_are_not_numbers(text: str, field: str) -> None:
    err = _error(load_scenario_text, text)
    assert f"<string>: {field}: must be a number, not a boolean (got True)" in err.lines() or (
        f"<string>: {field}: must be a number, not a boolean (got False)" in err.lines()
    )


def test_strings_and_yes_are_not_numbers_or_booleans() -> None:
    err = _error(load_scenario_text, "system: {bandwidth_hz: '1e7'}\nworkload: {include_pooler: 1}")
    assert (
        "<string>: system.bandwidth_hz: must be a number, not a string (got '1e7')" in err.lines()
    )
    assert "<string>: workload.include_pooler: must be a valid boolean (got 1)" in err.lines()


def test_integral_floats_still_count() -> None:
    assert load_scenario_text("devices: {count: 1e3}").devices.count == 1000


@pytest.mark.parametrize(
    ("text", "field", "bound"),
    [
        ("system: {bandwidth_hz: 5e-324}", "system.bandwidth_hz", "1000"),
        ("server: {cpu_hz: 5e-324}", "server.cpu_hz", "1000000"),
        ("server: {downlink_rate_bps: 1e-300}", "server.downlink_rate_bps", "1000"),
        ("objective: {deadline_s: 5e-324}", "objective.deadline_s", "0.001"),
        ("devices: {explicit: [{distance_m: 5e-324}]}", "devices.explicit.0.distance_m", "0.1"),
    ],
)
def test_denormals_have_physical_lower_bounds(text: str, field: str, bound: str) -> None:
    err = _error(load_scenario_text, text)
    assert any(
        line.startswith(f"<string>: {field}: must be greater than or equal to {bound}")
        for line in err.lines()
    ), err.lines()


def test_devices_without_count() -> None:
    err = _error(load_scenario_text, "devices: {count: }")
    assert err.lines() == [
        "<string>: devices: count is required for a random drop (give count, explicit or csv)"
    ]


# ----------------------------------------------------------------------------- messages
def test_control_characters_and_long_keys_give_one_bounded_line() -> None:
    err = _error(
        load_scenario_text, 'system:\n  "a\\nb\\u2028c\\x1b": 1\n? ' + "k" * 5000 + "\n: 1\n"
    )
    lines = err.lines()
    assert lines[0].startswith("<string>: system.a\\x0ab\\u2028c\\x1b: unknown key; valid keys:")
    long_line = lines[1]
    assert long_line.startswith("<string>: " + "k" * 77 + "...: unknown key")
    assert len(long_line) < 300


def test_file_name_with_control_characters_is_escaped(tmp_path: Path) -> None:
    p = tmp_path / "a\nb.yaml"
    p.write_text("seed: -1\n")
    (line,) = _error(load_scenario, p).lines()
    assert "a\\x0ab.yaml: seed:" in line


# ----------------------------------------------------------------------------- sweeps
def test_sweep_values_with_the_same_name_are_refused() -> None:
    spec = load_scenario_text("sweep: {system.bandwidth_hz: [1.00000001e7, 1.00000002e7]}")
    err = _error(expand_sweep, spec)
    assert "sweep: two points get the same name scenario[system.bandwidth_hz=1e7]" in str(err)


def test_sweep_point_names_over_the_limit_are_refused() -> None:
    spec = load_scenario_text("name: " + "n" * 195 + "\nsweep: {seed: [0, 1]}")
    err = _error(expand_sweep, spec)
    assert "name: sweep point names up to 203 characters exceed the limit of 200" in str(err)


def test_failing_sweep_points_are_counted_beyond_ten() -> None:
    values = ", ".join(str(-i) for i in range(1, 31))
    err = _error(expand_sweep, load_scenario_text(f"sweep: {{seed: [{values}]}}"))
    assert len(err.problems) == 11
    assert err.problems[-1] == "sweep: 20 more sweep point(s) have problems"


def test_csv_row_errors_name_the_file_line(tmp_path: Path) -> None:
    # a blank line (skipped) between rows: the file line, not the 0-based device index
    csv = "distance_m,gain_db\n100,\n,\n\n-5,\n"
    err = _error(load_scenario, _scenario_with_csv(tmp_path, csv))
    assert err.problems == [
        "devices.csv (d.csv) line 3: give exactly one of distance_m or gain_db",
        "devices.csv (d.csv) line 5: distance_m: must be greater than or equal to 0.1 (got -5)",
    ]
