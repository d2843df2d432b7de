"""CLI behaviour through subprocess: validate, schema, simulate, version, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT = str(REPO / "scenarios" / "default.yaml")

# (file content, field the single error line must name)
BAD_INPUTS = [
    ("system:\n  bandwidth_hz: -5\n", "system.bandwidth_hz"),
    ("system:\n  bandwidth_hz: ten\n", "system.bandwidth_hz"),
    ("system:\n  bandwith_hz: 1e7\n", "system.bandwith_hz"),
    ("devices:\n  p_max_dbm: 55\n", "devices.p_max_dbm"),
    ("devices:\n  count: 0\n", "devices.count"),
    ("devices:\n  explicit: []\n", "devices"),
    ("devices:\n  explicit: [{distance_m: 10, gain_db: -90}]\n", "devices.explicit.0"),
    ("devices:\n  csv: missing.csv\n", "devices.csv"),
    ("server:\n  cpu_hz: .nan\n", "server.cpu_hz"),
    ("server:\n  cpu_hz: 1e300\n", "server.cpu_hz"),
    ("fhe:\n  ring_degrees: [1000]\n", "fhe.ring_degrees"),
    ("objective:\n  kind: maximal\n", "objective.kind"),
    ("schema_version: 2\n", "schema_version"),
    ("seed: -1\n", "seed"),
    ("system: [1, 2]\n", "system"),
    ("system:\n  bandwidth_hz: [1e7\n", "line 3"),
    ("- just\n- a list\n", "<root>"),
    ("sweep:\n  system.bandwidth_hz: 5\n", "sweep.system.bandwidth_hz"),
]


@pytest.mark.parametrize(("content", "field"), BAD_INPUTS)
def test_bad_input_one_line_exit_1(tmp_path: Path, cli, content: str, field: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    proc = cli("validate", str(f))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert field in lines[0]
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr


def test_debug_shows_traceback(tmp_path: Path, cli) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("seed: -1\n")
    proc = cli("--debug", "validate", str(f))
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_validate_ok_and_sweep_count(cli) -> None:
    proc = cli("validate", DEFAULT, str(REPO / "scenarios" / "examples" / "sweep_bandwidth.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "default.yaml: ok" in proc.stdout
    assert "(9 sweep points)" in proc.stdout


def test_validate_missing_file(cli) -> None:
    proc = cli("validate", "nope.yaml")
    assert proc.returncode == 1
    assert "nope.yaml: no such file or directory" in proc.stderr


def test_schema_is_json_schema(cli) -> None:
    proc = cli("schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert schema["type"] == "object"
    props = schema["properties"]
    for section in ("system", "devices", "server", "workload", "fhe", "objective", "solver"):
        assert section in props
    assert schema["additionalProperties"] is False


def test_simulate_table_and_json(cli) -> None:
    proc = cli("simulate", DEFAULT)
    assert proc.returncode == 0, proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.strip() and ln.split()[0].isdigit()]
    assert len(rows) == 10
    js = json.loads(cli("simulate", DEFAULT, "--json", "--seed", "3").stdout)
    assert js["seed"] == 3
    assert len(js["devices"]["gain_db"]) == 10
    js2 = json.loads(cli("simulate", DEFAULT, "--json", "--seed", "3").stdout)
    assert js == js2
    js4 = json.loads(cli("simulate", DEFAULT, "--json", "--seed", "4").stdout)
    assert js4["devices"]["gain_db"] != js["devices"]["gain_db"]


def test_version_imports_nothing_heavy() -> None:
    code = (
        "import sys; from privtuner.cli import main; main(['--version']);"
        "heavy = [m for m in ('numpy', 'pydantic', 'cvxpy', 'tenseal', 'torch', 'yaml')"
        " if m in sys.modules]; print(heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["privtuner 0.1.0", "[]"]


def test_help_lists_commands(cli) -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for cmd in ("validate", "schema", "simulate"):
        assert cmd in proc.stdout


# (command, file bytes, text the single error line must hold): files that ended in a
# traceback in simulate/solve (issue 14, "Hostile scenario files")
HOSTILE = [
    ("simulate", b"devices: {count: }\n", "devices: count is required for a random drop"),
    ("solve", b"system: {bandwidth_hz: 5e-324}\n", "system.bandwidth_hz: must be greater"),
    ("simulate", b"name: caf\xe9\n", "not UTF-8 text (byte 0xe9 at offset 9)"),
    ("simulate", b"a: " + b"[" * 20000 + b"]" * 20000 + b"\n", "nesting deeper than the limit"),
    ("simulate", b"devices: {csv: /proc/self/environ}\n", "not a regular file"),
    ("solve", b"seed: !!float abc\n", "could not convert string to float: 'abc'"),
    ("simulate", b"system: {bandwidth_hz: true}\n", "must be a number, not a boolean"),
]


@pytest.mark.parametrize(("command", "content", "text"), HOSTILE)
def test_hostile_files_give_one_line(
    tmp_path: Path, cli, command: str, content: bytes, text: str
) -> None:
    f = tmp_path / "hostile.yaml"
    f.write_bytes(content)
    proc = cli(command, str(f))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: {f}: ") and text in line, line


@pytest.mark.parametrize(
    ("option", "value"),
    [("--seeds", "1,,2"), ("--seeds", "1,"), ("--methods", ""), ("--methods", "exact,,greedy")],
)
def test_batch_refuses_empty_list_items(tmp_path: Path, option: str, value: str) -> None:
    from privtuner.cli import main

    out = tmp_path / "r.csv"
    with pytest.raises(SystemExit) as exc:
        main(["batch", DEFAULT, "--out", str(out), option, value])
    assert exc.value.code == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "value", "text"),
    [
        ("--seeds", "1,1", "argument --seeds: repeats seed 1; give each seed once (got '1,1')"),
        ("--seeds", "3, 2,3", "argument --seeds: repeats seed 3; give each seed once"),
        ("--methods", "exact,exact", "argument --methods: repeats name 'exact'; give each name"),
    ],
)
def test_batch_refuses_a_repeated_seed_or_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, text: str
) -> None:
    """Before: ``error: duplicate row key 'default|seed=1|method=exact' (from
    scenarios/default.yaml and scenarios/default.yaml); give the scenarios distinct names``
    after loading every scenario; now the option and the repeated value, while parsing."""
    from privtuner.cli import main

    out = tmp_path / "r.csv"
    with pytest.raises(SystemExit) as exc:
        main(["batch", DEFAULT, "--out", str(out), option, value])
    assert exc.value.code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: privtuner batch: ") and text in line, line
    assert not out.exists()


def test_a_sweep_problem_is_one_line_naming_the_file(tmp_path: Path, cli) -> None:
    """Before: one line per sweep point (9 alike), and ``batch`` named the scenario, not the
    file (two files may share a name)."""
    d = tmp_path / "sweeps"
    d.mkdir()
    (d / "a.yaml").write_text(
        "name: sw\nsweep:\n  system.bandwith_hz: [5e6, 1e7, 2e7]\n  seed: [0, 1, 2]\n"
    )
    (d / "b.yaml").write_text(
        "name: other\nsweep:\n  system.bandwidth_hz: [-5, 1e7]\n  seed: [0, 1, 2]\n"
    )
    for args in (["validate", str(d)], ["batch", str(d), "--out", str(tmp_path / "r.csv")]):
        proc = cli(*args)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 2, proc.stderr
        a, b = lines
        assert a.startswith(f"error: {d / 'a.yaml'}: system.bandwith_hz: unknown key")
        assert a.endswith("(9 sweep points, e.g. [system.bandwith_hz=5e6,seed=0])")
        assert b.startswith(f"error: {d / 'b.yaml'}: system.bandwidth_hz: ")
        assert b.endswith("(3 sweep points, e.g. [system.bandwidth_hz=-5,seed=0])")
    assert not (tmp_path / "r.csv").exists()


def test_validate_refuses_names_that_batch_refuses(tmp_path: Path, cli) -> None:
    """Before: ``validate`` said ok for two files with one ``name:``, then ``batch`` refused
    them with ``duplicate row key``."""
    d = tmp_path / "sweeps"
    d.mkdir()
    for f in ("a.yaml", "b.yaml"):
        (d / f).write_text("name: sw\nsweep: {seed: [0, 1, 2]}\n")
    (d / "c.yaml").write_text("name: other\n")
    proc = cli("validate", str(d), str(d / "a.yaml"))  # a file given twice is read once
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: duplicate scenario name 'sw[seed=0]' and 2 more (from {d / 'a.yaml'} and "
        f"{d / 'b.yaml'}); give the scenarios distinct names"
    ]
    batch = cli("batch", str(d), "--out", str(tmp_path / "r.csv"))
    (line,) = batch.stderr.strip().splitlines()
    assert "duplicate row key 'sw[seed=0]|seed=0|method=exact' and 2 more" in line
    assert f"(from {d / 'a.yaml'} and {d / 'b.yaml'})" in line
    (d / "b.yaml").unlink()
    assert cli("validate", str(d), str(d / "a.yaml")).returncode == 0


def test_validate_folds_a_solve_check_failing_at_every_point(tmp_path: Path, cli) -> None:
    f = tmp_path / "a.yaml"
    f.write_text("solver: {method: exakt}\nsweep: {seed: [0, 1, 2], devices.count: [2, 3]}\n")
    (line,) = cli("validate", str(f)).stderr.strip().splitlines()
    assert line.startswith(f"error: {f}: solver.method: unknown method 'exakt'; valid methods: ")
    assert line.endswith(" (6 sweep points, e.g. [seed=0,devices.count=2])")
