"""``run_batch``: tasks -> chunks -> executor -> part files -> the results table, resumable."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privtuner.batch import storage
from privtuner.batch.executors import iter_dask, iter_local, require_dask
from privtuner.batch.tasks import BatchTask, check_methods, collect_tasks
from privtuner.errors import PrivtunerError, short


@dataclass
class BatchSummary:
    """What a batch run did: task counts, wall time and throughput."""

    out: Path
    n_tasks: int
    n_skipped: int
    n_run: int
    n_errors: int
    n_infeasible: int
    wall_s: float
    jobs: int
    executor: str
    status_counts: dict[str, int] = field(default_factory=dict)
    #: rows in the written table: this call's tasks plus earlier rows of other tasks
    n_table_rows: int = 0

    @property
    def tasks_per_s(self) -> float:
        return self.n_run / self.wall_s if self.wall_s > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "n_tasks": self.n_tasks,
            "n_skipped": self.n_skipped,
            "n_run": self.n_run,
            "n_errors": self.n_errors,
            "n_infeasible": self.n_infeasible,
            "wall_s": self.wall_s,
            "tasks_per_s": self.tasks_per_s,
            "jobs": self.jobs,
            "executor": self.executor,
            "status_counts": dict(self.status_counts),
            "n_table_rows": self.n_table_rows,
        }


def _chunks(tasks: Sequence[BatchTask], size: int) -> list[list[BatchTask]]:
    return [list(tasks[i : i + size]) for i in range(0, len(tasks), size)]


def default_chunk_size(n_tasks: int, jobs: int) -> int:
    """Tasks per chunk: about 8 chunks per worker, at most 16 tasks (few rows in flight)."""
    return max(1, min(16, n_tasks // max(1, 8 * jobs)))


def run_batch(
    paths: Iterable[str | Path] | None,
    out: str | Path,
    *,
    tasks: Sequence[BatchTask] | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    options: dict[str, Any] | None = None,
    jobs: int = 1,
    executor: str = "local",
    scheduler: str | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    retry_errors: bool = False,
    keep_parts: bool = False,
) -> BatchSummary:
    """Solve every task of the scenario files/directories ``paths`` and write ``out``.

    Args:
        paths: scenario files and directories (ignored when ``tasks`` is given).
        out: the results table, ``.parquet`` or ``.csv``.
        tasks: pre-built tasks (see :func:`collect_tasks`) instead of ``paths``.
        methods: solver methods for every scenario point (default: each point's
            ``solver.method``); seeds: seeds for every point (default: each point's ``seed``).
        options: extra solver options for every task.
        jobs: worker processes (local) or LocalCluster workers (dask).
        executor: ``"local"`` (processes; ``jobs=1`` runs in this process) or ``"dask"``.
        scheduler: address of a running dask scheduler (``executor="dask"``); default starts
            a LocalCluster on loopback.
        chunk_size: tasks per chunk (default :func:`default_chunk_size`).
        progress: show a tqdm progress bar on stderr.
        retry_errors: rerun finished rows whose status is ``"error"``.
        keep_parts: keep ``<out>.parts/`` after writing ``out``.

    Returns a :class:`BatchSummary`. Resumable: rows already in ``out`` or in its parts are
    skipped; the final table holds, in task order, every task's row, then any earlier rows of
    ``out`` that are not tasks of this call.

    Raises :class:`PrivtunerError` before any work when ``out`` cannot be written, is not a
    privtuner results table, or is being written by another batch (``out`` is locked for
    the whole run, see :func:`storage.output_lock`).
    """
    out = storage.check_output(out)
    _check_arguments(executor, jobs, chunk_size, seeds, methods)
    t_start = time.perf_counter()
    if tasks is None:
        if paths is None:
            raise PrivtunerError("run_batch: give scenario paths or tasks")
        tasks = collect_tasks(paths, methods=methods, seeds=seeds, options=options)
    tasks = list(tasks)
    check_methods({t.method for t in tasks})
    parts_dir = storage.parts_dir_for(out)

    with storage.output_lock(out):
        # finished rows: the existing table first, then parts (newer parts win)
        finished = {str(r["key"]): r for r in storage.read_own_table(out)}
        finished.update((str(r["key"]), r) for r in storage.read_parts(parts_dir))
        todo = [
            t
            for t in tasks
            if t.key not in finished or (retry_errors and finished[t.key].get("status") == "error")
        ]
        size = chunk_size or default_chunk_size(len(todo), jobs)
        chunks = _chunks(todo, size)
        stream = (
            iter_dask(chunks, jobs, scheduler) if executor == "dask" else iter_local(chunks, jobs)
        )
        bar = _progress_bar(len(todo), progress, out.name)
        try:
            for rows in stream:
                _write_or_explain(storage.write_part, parts_dir, rows, out=out)
                finished.update((str(r["key"]), r) for r in rows)
                if bar is not None:
                    bar.update(len(rows))
        finally:
            if bar is not None:
                bar.close()

        task_keys = [t.key for t in tasks]
        key_set = set(task_keys)
        final_rows = [finished[k] for k in task_keys if k in finished]
        final_rows.extend(r for k, r in finished.items() if k not in key_set)
        _write_or_explain(storage.write_table, final_rows, out, out=out)
        if not keep_parts:
            _remove_parts(parts_dir)

    counts: dict[str, int] = {}
    for k in task_keys:
        s = str(finished[k].get("status") or "")
        counts[s] = counts.get(s, 0) + 1
    return BatchSummary(
        out=out,
        n_tasks=len(tasks),
        n_skipped=len(tasks) - len(todo),
        n_run=len(todo),
        n_errors=counts.get("error", 0),
        n_infeasible=counts.get("infeasible", 0),
        wall_s=time.perf_counter() - t_start,
        jobs=jobs,
        executor=executor,
        status_counts=counts,
        n_table_rows=len(final_rows),
    )


def _check_arguments(
    executor: str,
    jobs: int,
    chunk_size: int | None,
    seeds: Sequence[int] | None,
    methods: Sequence[str] | None = None,
) -> None:
    if executor not in ("local", "dask"):
        raise PrivtunerError(f"--executor {executor!r}: unknown executor; valid: local, dask")
    if executor == "dask":  # before any work, not when the first chunk is sent
        require_dask()
    if jobs < 1:
        raise PrivtunerError(f"--jobs {jobs}: must be >= 1")
    if chunk_size is not None and chunk_size < 1:
        raise PrivtunerError(f"--chunk-size {chunk_size}: must be >= 1")
    bad = [s for s in seeds or () if not 0 <= int(s) <= 2**63 - 1]
    if bad:
        raise PrivtunerError(f"--seeds {bad[0]}: seeds must be integers in [0, 2**63 - 1]")
    for flag, values, what in (("--seeds", seeds, "seed"), ("--methods", methods, "method")):
        given = list(values or ())
        twice = [v for i, v in enumerate(given) if v in given[:i]]
        if twice:  # the same row key twice: refused before any work
            raise PrivtunerError(
                f"{flag} {short(','.join(map(str, given)))}: repeats {what} "
                f"{twice[0] if isinstance(twice[0], int) else repr(short(str(twice[0])))}; "
                f"give each {what} once"
            )


def _write_or_explain(write: Any, *args: Any, out: Path) -> None:
    """Run a table/part write; an OSError (disk full, folder made read-only mid-run) becomes
    one line (the parts written so far stay, so a rerun resumes)."""
    try:
        write(*args)
    except OSError as exc:
        raise PrivtunerError(
            f"--out {out}: cannot write ({exc.strerror or exc}); finished rows are kept in "
            f"{storage.parts_dir_for(out)} and a rerun resumes from them"
        ) from None


def _remove_parts(parts_dir: Path) -> None:
    if not parts_dir.is_dir():
        return
    for p in parts_dir.iterdir():
        with contextlib.suppress(OSError):
            p.unlink()
    with contextlib.suppress(OSError):
        parts_dir.rmdir()


def _progress_bar(total: int, enabled: bool, desc: str) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="task", file=sys.stderr, dynamic_ncols=True)
