"""Batch and output safety (issue 15): one writer per output, no foreign file overwritten,
bad scenario points as error rows (and caught by ``validate``), no worker left behind by a
killed batch, output paths and CLI values checked before any work.

Uses the stand-in solvers and the synthetic cost model of :mod:`test_batch`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_batch import REPO, _synthetic_model, register_stand_ins, sweep_file

from privtuner import batch
from privtuner.errors import PrivtunerError

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _synthetic_model(tmp_path_factory.mktemp("model") / "model.json")


@pytest.fixture(autouse=True)
def _stand_ins() -> None:
    register_stand_ins()


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privtuner", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line of a refused command (exit 1, no traceback)."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _batch_script(tmp_path: Path, f: Path, out: Path, method: str, **kw: object) -> Path:
    """A script running ``run_batch`` with the stand-ins registered (for a subprocess)."""
    script = tmp_path / f"run_{out.stem}.py"
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    script.write_text(
        textwrap.dedent(
            f"""\
            import sys
            sys.path.insert(0, {str(HERE)!r})
            import test_batch
            test_batch.register_stand_ins()
            import os
            import time
            from pathlib import Path
            from privtuner.optimizer import register_solver
            solver = test_batch._uniform_set_solver("standin_gated")
            gate = Path({str(tmp_path / "gate")!r})

            def gated(problem, **opts):  # waits until the test opens the gate
                (gate.parent / f"started-{{os.getpid()}}").touch()
                t_end = time.monotonic() + 120
                while not gate.exists() and time.monotonic() < t_end:
                    time.sleep(0.01)
                return solver(problem, **opts)

            register_solver("standin_gated", "waits for a file", check_feasibility=False)(gated)
            from privtuner.batch import run_batch
            if __name__ == "__main__":
                run_batch([{str(f)!r}], {str(out)!r}, methods=[{method!r}], chunk_size=1,
                          progress=False{extra})
            """
        )
    )
    return script


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists():
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} did not appear in time (or the process ended)")


# ----------------------------------------------------------------------------- one writer


def test_second_writer_is_refused_and_no_row_is_lost(tmp_path: Path, model_path: Path) -> None:
    """Two batches into the same ``--out`` at once: the second is refused with one line
    (before, it reported success and its rows were lost); run afterwards, it adds its rows."""
    first = sweep_file(tmp_path / "a", model_path, name="first")
    second = sweep_file(tmp_path / "b", model_path, name="second", seeds="[0]")
    out = tmp_path / "mix.csv"
    proc = subprocess.Popen(
        [sys.executable, str(_batch_script(tmp_path, first, out, "standin_gated"))], cwd=REPO
    )
    try:
        _wait_for(batch.lock_path_for(out), proc)  # the first batch holds the table
        line = _one_error_line(
            _cli("batch", str(second), "--methods", "equal_bandwidth", "--out", str(out))
        )
        assert f"another batch (pid {proc.pid}) is writing this table" in line
        with pytest.raises(PrivtunerError, match="another batch"):
            batch.run_batch([second], out, methods=["standin_a"], progress=False)
        (tmp_path / "gate").touch()
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    assert (
        _cli("batch", str(second), "--methods", "equal_bandwidth", "--out", str(out)).returncode
        == 0
    )
    keys = [r["key"] for r in batch.read_table(out)]
    assert len(keys) == len(set(keys)) == 12 + 6
    assert not batch.lock_path_for(out).exists()


def test_lock_of_a_killed_batch_does_not_block(tmp_path: Path, model_path: Path) -> None:
    """SIGKILL leaves the lock file behind, but its lock died with the process: a rerun
    takes it and finishes the table."""
    f = sweep_file(tmp_path / "sc", model_path)
    out = tmp_path / "r.csv"
    proc = subprocess.Popen(
        [sys.executable, str(_batch_script(tmp_path, f, out, "standin_gated"))], cwd=REPO
    )
    try:
        _wait_for(batch.lock_path_for(out), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert batch.lock_path_for(out).is_file()  # stale file, no live lock
    s = batch.run_batch([f], out, methods=["standin_a"], progress=False)
    assert s.n_run == s.n_table_rows == 12


# ----------------------------------------------------------------------------- foreign --out


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("no_key.csv", b"a,b\n1,2\n", "no column(s) 'key', 'scenario'"),
        ("key_only.csv", b"key,x\nk,1\n", "no column(s) 'scenario', 'seed', 'method'"),
        ("empty.csv", b"", "no column(s) 'key'"),
        ("text.parquet", b"not parquet at all\n", "cannot read it as parquet"),
    ],
)
def test_foreign_out_is_never_overwritten(
    tmp_path: Path, model_path: Path, name: str, content: bytes, why: str
) -> None:
    f = sweep_file(tmp_path / "sc", model_path, seeds="[0]")
    out = tmp_path / name
    out.write_bytes(content)
    with pytest.raises(PrivtunerError, match="not a privtuner results table") as info:
        batch.run_batch([f], out, methods=["standin_a"], progress=False)
    assert why in str(info.value)
    assert out.read_bytes() == content
    assert not batch.parts_dir_for(out).exists()


def test_foreign_out_cli_one_line(tmp_path: Path, model_path: Path) -> None:
    f = sweep_file(tmp_path / "sc", model_path, seeds="[0]")
    out = tmp_path / "notes.csv"
    out.write_text("name,phone\nann,123\n")
    line = _one_error_line(_cli("batch", str(f), "--methods", "equal_bandwidth", "--out", str(out)))
    assert line == (
        f"error: --out {out}: not a privtuner results table (no column(s) 'key', 'scenario', "
        "'seed', 'method', 'status'); refusing to overwrite it"
    )
    assert out.read_text() == "name,phone\nann,123\n"


# ----------------------------------------------------------------------------- bad points


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _bad_point_files(folder: Path, model: Path) -> tuple[Path, Path]:
    long_name = _write(
        folder / "long.yaml",
        f"""\
        name: {"n" * 195}
        devices: {{count: 3}}
        fhe: {{cost_model: {model}}}
        objective: {{deadline_s: 100000}}
        sweep: {{seed: [0, 1]}}
        """,
    )
    same_name = _write(
        folder / "same.yaml",
        f"""\
        name: same
        devices: {{count: 3}}
        fhe: {{cost_model: {model}}}
        objective: {{deadline_s: 100000}}
        sweep: {{system.bandwidth_hz: [1.00000001e7, 1.00000002e7, 2e7]}}
        """,
    )
    return long_name, same_name


def test_bad_sweep_points_are_error_rows_not_an_aborted_batch(
    tmp_path: Path, model_path: Path
) -> None:
    """An over-long point name and two values that print alike under %g: before, the first
    aborted the batch with a pydantic traceback and the second refused the whole batch."""
    long_name, same_name = _bad_point_files(tmp_path / "bad", model_path)
    good = sweep_file(tmp_path / "good", model_path, seeds="[0]")
    out = tmp_path / "r.csv"
    s = batch.run_batch([long_name, same_name, good], out, methods=["standin_a"], progress=False)
    rows = {r["key"]: r for r in batch.read_table(out)}
    assert s.n_tasks == len(rows) == 2 + 2 + 6
    bad = [r for r in rows.values() if r["status"] == "error"]
    assert len(bad) == 3 and s.n_errors == 3
    too_long = "sweep point name has 203 characters (at most 200)"
    assert sum(too_long in r["message"] for r in bad) == 2
    (clash,) = [r for r in bad if r["sweep_base"] == "same"]
    assert clash["scenario"] == "same[system.bandwidth_hz=1e7]"
    assert "10000000.1" in clash["message"] and "10000000.2" in clash["message"]
    ok = [r for r in rows.values() if r["status"] != "error"]
    assert {r["sweep_base"] for r in ok} == {"same", "sw"} and len(ok) == 7


def test_validate_catches_what_batch_turns_into_error_rows(
    tmp_path: Path, model_path: Path
) -> None:
    long_name, same_name = _bad_point_files(tmp_path, model_path)
    proc = _cli("validate", str(long_name))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: {long_name}: name: sweep point names up to 203 characters ")
    assert "exceed the limit of 200" in line
    line = _one_error_line(_cli("validate", str(same_name)))
    assert line == (
        f"error: {same_name}: sweep: two points get the same name same[system.bandwidth_hz=1e7] "
        "(values that differ only beyond 6 significant digits)"
    )


def test_empty_device_count_is_refused_by_every_command(tmp_path: Path, model_path: Path) -> None:
    """``devices: {count: }`` validated, then failed with a TypeError in batch and an
    AssertionError in simulate/solve."""
    f = _write(tmp_path / "empty.yaml", "name: e\ndevices: {count: }\n")
    expected = (
        f"error: {f}: devices: count is required for a random drop (give count, explicit or csv)"
    )
    for args in (["validate"], ["simulate"], ["solve"]):
        assert _one_error_line(_cli(*args, str(f))) == expected
    out = tmp_path / "r.csv"
    assert _one_error_line(_cli("batch", str(f), "--out", str(out))) == expected
    assert not out.exists()


def test_a_task_whose_spec_fails_is_an_error_row() -> None:
    """Everything of a task runs under its error handling, parsing its spec included."""
    task = batch.BatchTask(
        key="k|seed=0|method=exact",
        scenario="k",
        sweep_base="k",
        sweep_params_json="{}",
        source="",
        seed=0,
        method="exact",
        spec_json='{"name": "k", "devices": {"count": null}}',
    )
    row = batch.run_task(task)
    assert row["status"] == "error" and "count is required" in row["message"]
    assert "\n" not in row["message"]


# ----------------------------------------------------------------------------- no leaked workers


def _children(pid: int) -> set[int]:
    """Live descendants of ``pid`` (from /proc)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parent[int(d.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {c for c, p in parent.items() if p in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_parallel_batch_leaves_no_process(tmp_path: Path, model_path: Path) -> None:
    """SIGKILL of a ``jobs=2`` batch: its workers (and the resource tracker) end within a few
    seconds; before, they lived on, reparented, for minutes."""
    f = sweep_file(tmp_path / "sc", model_path)
    out = tmp_path / "r.csv"
    proc = subprocess.Popen(
        [sys.executable, str(_batch_script(tmp_path, f, out, "standin_gated", jobs=2))],
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 120  # both workers inside a task
        while len(list(tmp_path.glob("started-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None and len(list(tmp_path.glob("started-*"))) == 2
        kids = _children(proc.pid)
        assert len(kids) >= 2, kids
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.1)
        left = {k for k in kids if _alive(k)}
    finally:
        proc.kill()
    for k in left:  # clean up what a failing run leaked
        os.kill(k, signal.SIGKILL)
    assert not left, f"processes left behind: {sorted(left)}"


# ----------------------------------------------------------------------------- summary counts


def test_cli_reports_rows_written_and_table_total(tmp_path: Path, model_path: Path) -> None:
    """A second batch into the same table: it said ``6 rows`` although the file held 12."""
    f = sweep_file(tmp_path / "sc", model_path, seeds=None)
    out = tmp_path / "r.csv"
    args = ["batch", str(f), "--methods", "equal_bandwidth", "--out", str(out), "--no-progress"]
    first = _cli(*args)
    assert first.returncode == 0, first.stderr
    assert "6 rows written this run (0 of 6 already done), 6 rows in the table" in first.stdout
    second = _cli(*args, "--seeds", "5")
    assert second.returncode == 0, second.stderr
    assert "6 rows written this run (0 of 6 already done), 12 rows in the table" in second.stdout
    assert len(batch.read_table(out)) == 12
    again = _cli(*args, "--seeds", "5", "--json")
    summary = json.loads(again.stdout)
    assert (summary["n_run"], summary["n_skipped"], summary["n_table_rows"]) == (0, 6, 12)


# ----------------------------------------------------------------------------- output faults


def _unwritable_outs(tmp_path: Path) -> list[tuple[Path, str]]:
    """(output path, the reason in its error line): each is refused before any work."""
    tmp_path.mkdir()
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "plain").write_text("x")
    cases = [
        (tmp_path / "folder.csv", "is a folder; give a file path"),
        (tmp_path / "plain" / "r.csv", f"{tmp_path / 'plain'} is not a folder"),
        (tmp_path / "r.xlsx", "unknown table format '.xlsx'; use .parquet or .csv"),
    ]
    if sys.platform.startswith("linux"):  # read-only even for root
        cases.append((Path("/sys/r.csv"), "cannot write in folder /sys (Permission denied)"))
    return cases


def test_unwritable_out_is_refused_before_any_work(tmp_path: Path, model_path: Path) -> None:
    from test_batch import CALLS

    f = sweep_file(tmp_path / "sc", model_path, seeds="[0]")
    for out, reason in _unwritable_outs(tmp_path / "outs"):
        CALLS.clear()
        with pytest.raises(PrivtunerError) as info:
            batch.run_batch([f], out, methods=["standin_a"], progress=False)
        assert str(info.value) == f"--out {out}: {reason}"
        assert CALLS == []  # nothing solved


def test_out_in_a_missing_folder_is_created(tmp_path: Path, model_path: Path) -> None:
    f = sweep_file(tmp_path / "sc", model_path, seeds="[0]")
    out = tmp_path / "new" / "deeper" / "r.csv"
    s = batch.run_batch([f], out, methods=["standin_a"], progress=False)
    assert s.n_table_rows == 6 and len(batch.read_table(out)) == 6
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.csv"]  # no lock, no parts left


def test_unwritable_out_cli_one_line(tmp_path: Path, model_path: Path) -> None:
    f = sweep_file(tmp_path / "sc", model_path, seeds="[0]")
    (tmp_path / "folder.csv").mkdir()
    line = _one_error_line(_cli("batch", str(f), "--out", str(tmp_path / "folder.csv")))
    assert line == f"error: --out {tmp_path / 'folder.csv'}: is a folder; give a file path"


def test_write_fault_mid_batch_is_one_line(
    tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills (or a folder made read-only) during the run: one line, and the rows
    written so far stay for a rerun."""
    import errno

    from privtuner.batch import storage

    f = sweep_file(tmp_path / "sc", model_path)
    out = tmp_path / "r.csv"
    real = storage.write_part
    written: list[int] = []

    def full_after_two(parts_dir: Path, rows: list[dict[str, object]]) -> Path:
        if len(written) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(len(rows))
        return real(parts_dir, rows)

    monkeypatch.setattr(storage, "write_part", full_after_two)
    with pytest.raises(PrivtunerError) as info:
        batch.run_batch([f], out, methods=["standin_a"], chunk_size=2, progress=False)
    parts = batch.parts_dir_for(out)
    assert str(info.value) == (
        f"--out {out}: cannot write (No space left on device); finished rows are kept in "
        f"{parts} and a rerun resumes from them"
    )
    monkeypatch.setattr(storage, "write_part", real)
    s = batch.run_batch([f], out, methods=["standin_a"], progress=False)
    assert (s.n_skipped, s.n_table_rows) == (4, 12)


@pytest.mark.parametrize(
    ("flag", "make", "reason"),
    [
        ("--out", "folder", "is a folder; give a file path"),
        ("--csv", "below_file", "is not a folder"),
        ("--plots", "file", "is a file, not a folder"),
        ("--csv", "/sys/a.csv", "cannot write in folder /sys (Permission denied)"),
        ("--csv", "/proc/nope/x.csv", "cannot write in folder /proc (No such file or directory)"),
    ],
)
def test_solve_checks_output_paths_before_solving(
    tmp_path: Path, flag: str, make: str, reason: str
) -> None:
    """Before, ``solve`` ran the whole solve and then failed with a traceback."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    path = {
        "folder": str(tmp_path / "folder"),
        "below_file": str(tmp_path / "file" / "a.csv"),
        "file": str(tmp_path / "file"),
    }.get(make, make)
    if path.startswith(("/sys", "/proc")) and not sys.platform.startswith("linux"):
        pytest.skip("Linux pseudo file systems")
    t0 = time.perf_counter()
    line = _one_error_line(_cli("solve", str(REPO / "scenarios" / "default.yaml"), flag, path))
    assert line.startswith(f"error: {flag} {path}: ") and line.endswith(reason)
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["solve", "X", "--seed", "-1"], "argument --seed: must be in [0, 2**63 - 1] (got -1)"),
        (["simulate", "X", "--seed", "-1"], "argument --seed: must be in [0, 2**63 - 1] (got -1)"),
        (["solve", "X", "--seed", "one"], "argument --seed: must be an integer (got 'one')"),
        (["batch", "X", "--out", "o.csv", "--seeds", "0,-1"], "argument --seeds: must be in"),
        (["batch", "X", "--out", "o.csv", "--chunk-size", "-1"], "--chunk-size: must be >= 1"),
        (["batch", "X", "--out", "o.csv", "--chunk-size", "0"], "--chunk-size: must be >= 1"),
        (["batch", "X", "--out", "o.csv", "--jobs", "0"], "argument --jobs: must be >= 1"),
    ],
)
def test_bad_cli_values_refused_at_the_argument(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    """Before: ``--seed -1`` a numpy ValueError traceback, ``--seeds -1`` exit 0 with every
    row ``error``, ``--chunk-size -1`` a KeyError."""
    args = [str(REPO / "scenarios" / "default.yaml") if a == "X" else a for a in args]
    args = [str(tmp_path / a) if a == "o.csv" else a for a in args]
    line = _one_error_line(_cli(*args))
    assert line.startswith(f"error: privtuner {args[0]}: ") and expected in line
    assert line.endswith(f"(see 'privtuner {args[0]} -h')")
    assert not (tmp_path / "o.csv").exists()


def test_library_refuses_bad_batch_arguments(tmp_path: Path, model_path: Path) -> None:
    f = sweep_file(tmp_path / "sc", model_path, seeds="[0]")
    out = tmp_path / "r.csv"
    with pytest.raises(PrivtunerError, match=r"--chunk-size -1: must be >= 1"):
        batch.run_batch([f], out, methods=["standin_a"], chunk_size=-1, progress=False)
    with pytest.raises(PrivtunerError, match=r"--seeds -1: seeds must be integers"):
        batch.run_batch([f], out, methods=["standin_a"], seeds=[0, -1], progress=False)
    assert not out.exists()


@pytest.mark.parametrize(
    ("module", "out", "executor", "purpose"),
    [
        ("pyarrow", "r.parquet", "local", "Parquet output (or use --out x.csv)"),
        ("dask.distributed", "r.csv", "dask", "--executor dask"),
    ],
)
def test_missing_batch_extra_is_refused_before_any_work(
    tmp_path: Path,
    model_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    out: str,
    executor: str,
    purpose: str,
) -> None:
    """Before: every task ran, then the Parquet write failed (and dask's hint named the
    ``dev`` extra, while README and pyproject put both packages in ``batch``)."""
    from test_batch import CALLS

    f = sweep_file(tmp_path / "sc", model_path, seeds="[0]")
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    CALLS.clear()
    with pytest.raises(PrivtunerError) as info:
        batch.run_batch(
            [f], tmp_path / out, methods=["standin_a"], executor=executor, progress=False
        )
    assert str(info.value) == (
        f"the optional package '{module.split('.')[0]}' is not installed (needed for "
        f"{purpose}); install it with: pip install 'privtuner[batch]'"
    )
    assert CALLS == []  # nothing solved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sc"]  # no table, parts or lock
