"""Batch throughput benchmark: prints JSON.

``privtuner batch`` on a sweep of ``--seeds`` seeds (default 200) of the bundled default
scenario (10 devices) with ``--method`` (default ``exact``), with 1 and 2 local processes
(``--jobs``). For each run: scenarios/s, wall time, the load average before and after (other
jobs on the machine disturb the numbers: compare runs of one invocation).

For the single-process run, where the time per scenario goes: the functions the batch calls
are wrapped with timers (a few microseconds per call):

* ``instance``: :func:`privtuner.pipeline.instance` (drawing the system);
* ``cost_table``: :func:`privtuner.pipeline.cost_table` (cached per process);
* ``problem``: the rest of :func:`privtuner.pipeline.build_stages` (problem assembly);
* ``solve``: :func:`privtuner.optimizer.solve`;
* ``row``: the rest of :func:`privtuner.batch.execute.run_task` (reading the task's scenario,
  the row's input and output columns);
* ``part_writes`` and ``table_write``: the crash-safe part files and the final table;
* ``other``: the rest of the wall time (expanding the sweep, reading finished rows, ...).

Usage: ``nice -n 19 .venv/bin/python benchmarks/bench_batch.py [--seeds 200] [--jobs 1 2]
[--profile prof.out] [--keep DIR]``; ``--profile`` writes cProfile statistics of the
single-process run, ``--keep`` keeps the tables (to compare two versions' rows).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import privtuner.batch.execute as execute
import privtuner.batch.storage as storage
import privtuner.optimizer as optimizer
import privtuner.pipeline as pipeline
from privtuner.batch import read_table, run_batch
from privtuner.scenario.resources import bundled_text

STAGES = (
    "instance",
    "cost_table",
    "problem",
    "solve",
    "row",
    "part_writes",
    "table_write",
)


def sweep_file(folder: Path, n_seeds: int) -> Path:
    """The bundled default scenario with a sweep over seeds ``0 .. n_seeds - 1``."""
    text = bundled_text("default").replace("name: default", "name: bench-seeds", 1)
    seeds = ", ".join(str(s) for s in range(n_seeds))
    path = folder / "bench_seeds.yaml"
    path.write_text(f"{text}\nsweep:\n  seed: [{seeds}]\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def timed(totals: dict[str, float]) -> Iterator[None]:
    """Wrap the batch's stage functions with timers adding to ``totals`` (seconds)."""
    patches: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, key: str) -> None:
        fn: Callable[..., Any] = getattr(owner, name)

        def timed_fn(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[key] = totals.get(key, 0.0) + time.perf_counter() - t0

        patches.append((owner, name, fn))
        setattr(owner, name, timed_fn)

    wrap(pipeline, "instance", "instance")
    wrap(pipeline, "cost_table", "cost_table")
    wrap(pipeline, "build_stages", "_build_stages")
    wrap(optimizer, "solve", "solve")
    wrap(execute, "run_task", "_run_task")
    wrap(storage, "write_part", "part_writes")
    wrap(storage, "write_table", "table_write")
    try:
        yield
    finally:
        for owner, name, fn in reversed(patches):
            setattr(owner, name, fn)


def breakdown(totals: dict[str, float], wall_s: float, n: int) -> dict[str, Any]:
    """Per-scenario milliseconds of each stage and each stage's share of the wall time."""
    t = dict(totals)
    t["problem"] = t.pop("_build_stages", 0.0) - t.get("instance", 0.0) - t.get("cost_table", 0.0)
    t["row"] = t.pop("_run_task", 0.0) - t["problem"] - t.get("instance", 0.0)
    t["row"] -= t.get("cost_table", 0.0) + t.get("solve", 0.0)
    t["other"] = wall_s - sum(t.get(k, 0.0) for k in STAGES)
    return {
        k: {"ms_per_scenario": 1e3 * t.get(k, 0.0) / n, "share": t.get(k, 0.0) / wall_s}
        for k in (*STAGES, "other")
    }


def one_run(scenario: Path, out: Path, method: str, jobs: int, instrument: bool) -> dict[str, Any]:
    load_before = os.getloadavg()
    pipeline.clear_cache()
    totals: dict[str, float] = {}
    with timed(totals) if instrument else contextlib.nullcontext():
        summary = run_batch([scenario], out, methods=[method], jobs=jobs, progress=False)
    rows = read_table(out)
    result: dict[str, Any] = {
        "jobs": jobs,
        "scenarios": summary.n_run,
        "wall_s": summary.wall_s,
        "scenarios_per_s": summary.tasks_per_s,
        "status_counts": summary.status_counts,
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "rows": len(rows),
    }
    if instrument:
        result["time_per_scenario"] = breakdown(totals, summary.wall_s, summary.n_run)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--method", default="exact")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--profile", default=None, help="cProfile output of the jobs=1 run")
    ap.add_argument("--keep", default=None, help="folder to keep the result tables in")
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="privtuner-bench-batch-"))
    try:
        scenario = sweep_file(folder, args.seeds)
        runs = []
        for jobs in args.jobs:
            out = folder / f"results_j{jobs}.csv"
            if jobs == 1 and args.profile:
                prof = cProfile.Profile()
                prof.enable()
                runs.append(one_run(scenario, out, args.method, jobs, instrument=True))
                prof.disable()
                prof.dump_stats(args.profile)
            else:
                runs.append(one_run(scenario, out, args.method, jobs, instrument=jobs == 1))
            if args.keep:
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(out, Path(args.keep) / out.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report = {
        "benchmark": "batch",
        "scenario": f"bundled default x {args.seeds} seeds",
        "method": args.method,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "profiled": bool(args.profile),
        "runs": runs,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
