"""Batch solving: many scenarios x seeds x methods, one table row each, resumable.

``run_batch(paths, out)`` expands every scenario file (and every sweep in it, see
:func:`privtuner.scenario.expand_sweep`) into *tasks*, one per (scenario point, seed, method),
solves them on local worker processes or on a ``dask.distributed`` cluster, and writes one row
per task to ``out`` (``.parquet`` or ``.csv``).

Crash safety (a kill at any moment loses at most the rows in flight):

* tasks run in chunks; each finished chunk is written at once to ``<out>.parts/`` as a JSON
  Lines file, first under a temporary name, then renamed with :func:`os.replace` (atomic on
  POSIX), so a part file is either complete or absent;
* a rerun reads the finished rows (from ``out`` and from the parts), skips their keys, runs the
  rest, then writes ``out`` atomically (temporary file + :func:`os.replace`) and removes the
  parts;
* an error in one task (infeasible scenario, solver failure, any exception) becomes a row with
  ``status`` ``"infeasible"`` or ``"error"`` and a ``message``; it never stops the batch.

The row key is ``"<scenario name>|seed=<seed>|method=<method>"``. Rows are ordered as the tasks
are expanded (files in the given order, directories sorted, sweep points in file order), so an
interrupted-and-resumed batch writes the same table as an uninterrupted one.

Local parallelism uses processes (cvxpy is not thread-safe), started with ``spawn``.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import math
import os
import platform
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privtuner.errors import InfeasibleError, PrivtunerError, ScenarioError

#: File name suffixes read as scenario files when a directory is given.
SCENARIO_SUFFIXES = (".yaml", ".yml")

#: Output formats by file suffix.
OUTPUT_SUFFIXES = (".parquet", ".csv")

# ----------------------------------------------------------------------------- table schema

#: Ordered columns of a results table with their type (``str``, ``int``, ``float``, ``bool``).
#: Missing values are empty in CSV and null in Parquet. JSON-valued columns end in ``_json``.
COLUMNS: dict[str, type] = {
    # identity
    "key": str,
    "scenario": str,
    "sweep_base": str,
    "sweep_params_json": str,
    "source": str,
    "seed": int,
    "method": str,
    # inputs (from the scenario point)
    "n_devices": int,
    "bandwidth_hz": float,
    "noise_dbm_per_hz": float,
    "cell_radius_m": float,
    "shadowing_db": float,
    "fading": str,
    "p_max_dbm": float,
    "p_max_dbm_low": float,
    "p_max_dbm_high": float,
    "f_max_hz": float,
    "f_max_hz_low": float,
    "f_max_hz_high": float,
    "server_cpu_hz": float,
    "downlink_rate_bps": float,
    "objective_kind": str,
    "energy_weight": float,
    "privacy_weight": float,
    "privacy_metric": str,
    "privacy_min": float,
    "deadline_s": float,
    "rounds": int,
    "steps_per_round": int,
    "tokens_per_step": int,
    "lora_rank": int,
    "ring_degrees": str,
    "min_security_bits": float,
    "min_precision_bits": float,
    "cost_model": str,
    "rel_tol": float,
    "max_iterations": int,
    "time_limit_s": float,
    # outputs
    "status": str,
    "termination": str,
    "message": str,
    "objective": float,
    "lower_bound": float,
    "gap": float,
    "energy_j": float,
    "energy_compute_j": float,
    "energy_tx_j": float,
    "energy_server_j": float,
    "privacy_total": float,
    "security_bits_mean": float,
    "security_bits_min": float,
    "ring_degree_mean": float,
    "sets": str,
    "sets_summary": str,
    "n_distinct_sets": int,
    "latency_max_s": float,
    "bandwidth_used_hz": float,
    "server_cpu_used_hz": float,
    "iterations": int,
    "nodes": int,
    "history_json": str,
    "allocation_json": str,
    # timings (not part of the results proper: they differ between runs)
    "time_build_s": float,
    "time_solve_s": float,
    "time_total_s": float,
    "solver_timings_json": str,
    # provenance
    "version_privtuner": str,
    "version_numpy": str,
    "version_cvxpy": str,
    "version_python": str,
}

#: Columns that legitimately differ between two runs of the same task (timings).
TIMING_COLUMNS: tuple[str, ...] = (
    "time_build_s",
    "time_solve_s",
    "time_total_s",
    "solver_timings_json",
)

#: Scenario dotted paths -> results column (used to label sweep axes).
SWEEP_COLUMNS: dict[str, str] = {
    "devices.count": "n_devices",
    "system.bandwidth_hz": "bandwidth_hz",
    "system.noise_dbm_per_hz": "noise_dbm_per_hz",
    "system.cell_radius_m": "cell_radius_m",
    "system.shadowing_db": "shadowing_db",
    "devices.p_max_dbm": "p_max_dbm",
    "devices.f_max_hz": "f_max_hz",
    "server.cpu_hz": "server_cpu_hz",
    "server.downlink_rate_bps": "downlink_rate_bps",
    "objective.energy_weight": "energy_weight",
    "objective.privacy_weight": "privacy_weight",
    "objective.privacy_min": "privacy_min",
    "objective.deadline_s": "deadline_s",
    "workload.rounds": "rounds",
    "workload.steps_per_round": "steps_per_round",
    "workload.lora_rank": "lora_rank",
    "fhe.min_security_bits": "min_security_bits",
    "fhe.min_precision_bits": "min_precision_bits",
    "seed": "seed",
}


# ----------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class BatchTask:
    """One unit of work: solve scenario point ``spec_json`` with ``seed`` and ``method``.

    Picklable and small (the spec travels as JSON), so it can go to a process or a dask worker.
    """

    key: str
    scenario: str
    sweep_base: str
    sweep_params_json: str
    source: str
    seed: int
    method: str
    spec_json: str
    options: tuple[tuple[str, Any], ...] = ()


def task_key(scenario: str, seed: int, method: str) -> str:
    """Stable row key: ``"<scenario>|seed=<seed>|method=<method>"``."""
    return f"{scenario}|seed={seed}|method={method}"


def discover_scenario_files(paths: Iterable[str | Path]) -> list[Path]:
    """Scenario files from files and directories (directories: ``*.yaml``/``*.yml``, sorted).

    Raises :class:`ScenarioError` for a path that does not exist or a directory with no
    scenario file.
    """
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                q for q in p.iterdir() if q.is_file() and q.suffix.lower() in SCENARIO_SUFFIXES
            )
            if not found:
                problems.append(f"{p}: directory contains no scenario file (*.yaml, *.yml)")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            problems.append(f"{p}: no such file or directory")
    if problems:
        raise ScenarioError(problems)
    # the same file given twice is read once
    seen: set[Path] = set()
    unique = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique


def _sweep_points(spec: Any) -> list[tuple[Any, dict[str, Any]]]:
    """(point spec, sweep combination) pairs in :func:`expand_sweep` order."""
    from privtuner.scenario import expand_sweep

    points = expand_sweep(spec)
    if not spec.sweep:
        return [(points[0], {})]
    keys = list(spec.sweep)
    combos = [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(spec.sweep[k] for k in keys))
    ]
    return list(zip(points, combos, strict=True))


def tasks_for_spec(
    spec: Any,
    *,
    source: str = "",
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    options: dict[str, Any] | None = None,
) -> list[BatchTask]:
    """Tasks of one (possibly sweeping) :class:`~privtuner.scenario.ScenarioSpec`.

    ``methods`` defaults to each point's ``solver.method``; ``seeds`` to each point's ``seed``.
    ``options`` are extra solver options for every task (the point's ``solver.rel_tol``,
    ``max_iterations`` and ``time_limit_s`` are always passed).
    """
    tasks = []
    for point, combo in _sweep_points(spec):
        spec_json = point.model_dump_json()
        point_methods = list(methods) if methods else [point.solver.method]
        point_seeds = [int(s) for s in seeds] if seeds is not None else [int(point.seed)]
        for seed in point_seeds:
            for method in point_methods:
                tasks.append(
                    BatchTask(
                        key=task_key(point.name, seed, method),
                        scenario=point.name,
                        sweep_base=spec.name,
                        sweep_params_json=json.dumps(combo, sort_keys=False),
                        source=source,
                        seed=seed,
                        method=method,
                        spec_json=spec_json,
                        options=tuple(sorted((options or {}).items())),
                    )
                )
    return tasks


def collect_tasks(
    paths: Iterable[str | Path],
    *,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    options: dict[str, Any] | None = None,
    transform: Callable[[Any], Any] | None = None,
) -> list[BatchTask]:
    """Every task of the scenario files and directories in ``paths``, in a stable order.

    ``transform`` (optional) maps each loaded spec before expansion (``reproduce --quick``
    uses it to shorten sweeps). Every file's problems are collected and raised together as one
    :class:`ScenarioError`; duplicate row keys (two files producing the same scenario name) are
    an error too.
    """
    from privtuner.scenario import load_scenario

    problems: list[str] = []
    tasks: list[BatchTask] = []
    for f in discover_scenario_files(paths):
        try:
            spec = load_scenario(f)  # relative paths resolved by the loader
            if transform is not None:
                spec = transform(spec)
            tasks.extend(
                tasks_for_spec(spec, source=str(f), methods=methods, seeds=seeds, options=options)
            )
        except ScenarioError as exc:
            problems.extend(exc.lines())
    seen: dict[str, str] = {}
    for t in tasks:
        if t.key in seen:
            problems.append(
                f"duplicate row key {t.key!r} (from {seen[t.key]} and {t.source}); give the "
                "scenarios distinct names"
            )
        seen[t.key] = t.source
    if problems:
        raise ScenarioError(problems)
    return tasks


def check_methods(methods: Iterable[str]) -> None:
    """Raise :class:`~privtuner.errors.SolverError` naming any unregistered method (and the
    valid ones) before a batch starts, rather than writing a table of error rows."""
    from privtuner.errors import SolverError
    from privtuner.optimizer import available_methods

    valid = available_methods()
    bad = sorted({m for m in methods if m not in valid})
    if bad:
        raise SolverError(
            f"unknown method(s) {', '.join(map(repr, bad))}; valid methods: {', '.join(valid)}"
        )


# ----------------------------------------------------------------------------- one task


_VERSIONS: dict[str, str] = {}


def _versions() -> dict[str, str]:
    if not _VERSIONS:
        import numpy as np

        import privtuner

        try:
            import cvxpy

            cvx = str(cvxpy.__version__)
        except ImportError:  # pragma: no cover - cvxpy is a core dependency
            cvx = ""
        _VERSIONS.update(
            version_privtuner=privtuner.__version__,
            version_numpy=np.__version__,
            version_cvxpy=cvx,
            version_python=platform.python_version(),
        )
    return dict(_VERSIONS)


def _mid_low_high(value: Any) -> tuple[float, float, float]:
    """(midpoint, low, high) of a per-device scenario value (number or uniform range)."""
    low = getattr(value, "low", None)
    if low is None:
        v = float(value)
        return v, v, v
    high = float(value.high)
    return 0.5 * (float(low) + high), float(low), high


def spec_input_columns(spec: Any) -> dict[str, Any]:
    """The input columns of a results row, flattened from a scenario point."""
    dev = spec.devices
    n = len(dev.explicit) if dev.explicit is not None else int(dev.count)
    p_mid, p_low, p_high = _mid_low_high(dev.p_max_dbm)
    f_mid, f_low, f_high = _mid_low_high(dev.f_max_hz)
    if dev.explicit is not None:
        explicit_p = [d.p_max_dbm for d in dev.explicit if d.p_max_dbm is not None]
        explicit_f = [d.f_max_hz for d in dev.explicit if d.f_max_hz is not None]
        if explicit_p:
            p_low, p_high = min([p_low, *explicit_p]), max([p_high, *explicit_p])
        if explicit_f:
            f_low, f_high = min([f_low, *explicit_f]), max([f_high, *explicit_f])
    return {
        "n_devices": n,
        "bandwidth_hz": float(spec.system.bandwidth_hz),
        "noise_dbm_per_hz": float(spec.system.noise_dbm_per_hz),
        "cell_radius_m": float(spec.system.cell_radius_m),
        "shadowing_db": float(spec.system.shadowing_db),
        "fading": str(spec.system.fading),
        "p_max_dbm": p_mid,
        "p_max_dbm_low": p_low,
        "p_max_dbm_high": p_high,
        "f_max_hz": f_mid,
        "f_max_hz_low": f_low,
        "f_max_hz_high": f_high,
        "server_cpu_hz": float(spec.server.cpu_hz),
        "downlink_rate_bps": float(spec.server.downlink_rate_bps),
        "objective_kind": str(spec.objective.kind),
        "energy_weight": float(spec.objective.energy_weight),
        "privacy_weight": float(spec.objective.privacy_weight),
        "privacy_metric": str(spec.objective.privacy_metric),
        "privacy_min": float(spec.objective.privacy_min),
        "deadline_s": float(spec.objective.deadline_s),
        "rounds": int(spec.workload.rounds),
        "steps_per_round": int(spec.workload.steps_per_round),
        "tokens_per_step": int(spec.workload.tokens_per_step),
        "lora_rank": int(spec.workload.lora_rank),
        "ring_degrees": ",".join(str(d) for d in spec.fhe.ring_degrees),
        "min_security_bits": float(spec.fhe.min_security_bits),
        "min_precision_bits": float(spec.fhe.min_precision_bits),
        "cost_model": str(spec.fhe.cost_model),
        "rel_tol": float(spec.solver.rel_tol),
        "max_iterations": int(spec.solver.max_iterations),
        "time_limit_s": float(spec.solver.time_limit_s),
    }


def _num(x: Any) -> float | None:
    """A finite float, or None (for missing / infinite / NaN values)."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _jsonable(x: Any) -> Any:
    """Recursively convert numpy scalars/arrays and non-finite floats for JSON."""
    import numpy as np

    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x


def allocation_records(result: Any) -> list[dict[str, Any]]:
    """Per-device allocation of a :class:`~privtuner.optimizer.SolveResult` as plain dicts:
    :meth:`SolveResult.allocation_rows` (SI units) plus ``ring_degree`` parsed from the set
    name. Empty for a result without an allocation (infeasible / error)."""
    rows = [dict(r) for r in result.allocation_rows()]
    for r in rows:
        r["ring_degree"] = _ring_degree(str(r.get("set_name", "")))
    return [_jsonable(r) for r in rows]


def _ring_degree(set_name: str) -> int | None:
    """Ring degree N parsed from a catalogue set name ``N<degree>_q..._s...``."""
    if set_name.startswith("N"):
        head = set_name[1:].split("_", 1)[0]
        if head.isdigit():
            return int(head)
    return None


def _sum(values: Iterable[Any]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(sum(vals)) if vals else None


def result_output_columns(result: Any) -> dict[str, Any]:
    """The output columns of a results row from a SolveResult (see :data:`COLUMNS`)."""
    alloc = allocation_records(result)
    sec = [a["security_bits"] for a in alloc if a.get("security_bits") is not None]
    ring = [a["ring_degree"] for a in alloc if a.get("ring_degree") is not None]
    counts: dict[str, int] = {}
    for a in alloc:
        counts[a["set_name"]] = counts.get(a["set_name"], 0) + 1
    reasons = tuple(result.reasons)
    message = "; ".join(str(r) for r in reasons) if reasons else str(result.message or "")
    latencies = [a["latency_s"] for a in alloc if a.get("latency_s") is not None]
    has = bool(alloc)
    return {
        "status": str(result.status),
        "termination": str(result.termination or ""),
        "message": message,
        "objective": _num(result.objective) if has else None,
        "lower_bound": _num(result.lower_bound),
        "gap": _num(result.gap),
        "energy_j": _num(result.total_energy_j) if has else None,
        "energy_compute_j": _sum(a.get("energy_compute_j") for a in alloc),
        "energy_tx_j": _sum(a.get("energy_tx_j") for a in alloc),
        "energy_server_j": _sum(a.get("energy_server_j") for a in alloc),
        "privacy_total": _num(result.total_privacy) if has else None,
        "security_bits_mean": float(sum(sec) / len(sec)) if sec else None,
        "security_bits_min": float(min(sec)) if sec else None,
        "ring_degree_mean": float(sum(ring) / len(ring)) if ring else None,
        "sets": ",".join(str(a["set_name"]) for a in alloc),
        "sets_summary": ";".join(f"{k}x{v}" for k, v in sorted(counts.items())),
        "n_distinct_sets": len(counts) if has else None,
        "latency_max_s": max(latencies) if latencies else None,
        "bandwidth_used_hz": _sum(a.get("bandwidth_hz") for a in alloc),
        "server_cpu_used_hz": _sum(a.get("server_cpu_hz") for a in alloc),
        "iterations": _int_or_none(result.iterations),
        "nodes": _int_or_none(result.nodes),
        "history_json": json.dumps(_jsonable(list(result.history or []))),
        "allocation_json": json.dumps(alloc),
        "solver_timings_json": json.dumps(_jsonable(dict(result.timings_s or {}))),
    }


def _int_or_none(x: Any) -> int | None:
    return None if x is None else int(x)


_COST_TABLES: dict[str, Any] = {}


def _cost_table(spec: Any) -> Any:
    """``build_cost_table(spec)``, cached per worker process on what it depends on (the
    ``fhe`` and ``workload`` sections and the privacy metric): a sweep over system or
    objective values builds its table once."""
    from privtuner.costmodels import build_cost_table

    key = json.dumps(
        [
            spec.fhe.model_dump(mode="json"),
            spec.workload.model_dump(mode="json"),
            spec.objective.privacy_metric,
        ],
        sort_keys=True,
    )
    table = _COST_TABLES.get(key)
    if table is None:
        table = build_cost_table(spec)
        if len(_COST_TABLES) >= 32:
            _COST_TABLES.pop(next(iter(_COST_TABLES)))
        _COST_TABLES[key] = table
    return table


def build_problem(spec: Any, seed: int) -> Any:
    """The :class:`~privtuner.optimizer.AllocationProblem` of a scenario point and seed: the
    same as ``AllocationProblem.from_spec(spec, seed)``, with the cost table cached."""
    from privtuner.optimizer import AllocationProblem
    from privtuner.system_sim import build_instance

    instance = build_instance(spec, seed)
    return AllocationProblem.from_instance(instance, _cost_table(spec), spec.objective, spec.fhe)


def solve_point(spec: Any, seed: int, method: str, options: dict[str, Any]) -> tuple[Any, float]:
    """Build and solve one scenario point; returns (SolveResult, problem build time [s])."""
    from privtuner.optimizer import solve

    t0 = time.perf_counter()
    problem = build_problem(spec, seed)
    t_build = time.perf_counter() - t0
    return solve(problem, method, **options), t_build


def run_task(task: BatchTask) -> dict[str, Any]:
    """Solve one task and return its results row. Never raises for a problem of the task:
    an infeasible instance or any exception becomes a row with ``status`` and ``message``."""
    from privtuner.scenario.schema import ScenarioSpec

    t0 = time.perf_counter()
    spec = ScenarioSpec.model_validate_json(task.spec_json)
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(
        key=task.key,
        scenario=task.scenario,
        sweep_base=task.sweep_base,
        sweep_params_json=task.sweep_params_json,
        source=task.source,
        seed=task.seed,
        method=task.method,
    )
    row.update(spec_input_columns(spec))
    row.update(_versions())
    from privtuner.optimizer.core.options import options_from_spec

    options = options_from_spec(spec.solver)
    options.update(dict(task.options))
    t_build = 0.0
    try:
        t1 = time.perf_counter()
        result, t_build = solve_point(spec, task.seed, task.method, options)
        t_solve = time.perf_counter() - t1 - t_build
        row.update(result_output_columns(result))
        row.update(time_solve_s=t_solve)
    except InfeasibleError as exc:
        row.update(status="infeasible", termination="infeasible", message="; ".join(exc.reasons))
    except PrivtunerError as exc:
        row.update(status="error", message=f"{type(exc).__name__}: {exc}".replace("\n", "; "))
    except Exception as exc:  # a bug or numerical failure: keep the batch going, record it
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        row.update(status="error", message=last.replace("\n", "; "))
    row.update(time_build_s=t_build, time_total_s=time.perf_counter() - t0)
    return normalize_row(row)


def run_chunk(tasks: Sequence[BatchTask]) -> list[dict[str, Any]]:
    """Run tasks in order in this process (the unit a worker process or dask task executes)."""
    return [run_task(t) for t in tasks]


# ----------------------------------------------------------------------------- rows and files


def normalize_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row with every :data:`COLUMNS` key, values coerced to the column type or None.

    Extra keys are kept (as they are) after the known columns.
    """
    out: dict[str, Any] = {}
    for name, typ in COLUMNS.items():
        out[name] = _coerce(row.get(name), typ)
    for k, v in row.items():
        if k not in out:
            out[k] = v
    return out


def _coerce(v: Any, typ: type) -> Any:
    if v is None or (isinstance(v, str) and v == ""):
        return None  # empty text is "missing" too: CSV and Parquet read back the same
    if typ is float:
        f = float(v)
        return f if math.isfinite(f) else None
    if typ is int:
        return int(float(v)) if isinstance(v, str) else int(v)
    if typ is bool:
        if isinstance(v, str):
            return v.strip().lower() in {"1", "true", "yes"}
        return bool(v)
    return str(v)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, replace."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def parts_dir_for(out: str | Path) -> Path:
    """The folder of part files of output ``out``: ``<out>.parts``."""
    p = Path(out)
    return p.with_name(p.name + ".parts")


def write_part(parts_dir: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write finished rows as one part file (JSON Lines), atomically. Names sort by time."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    name = f"part-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
    data = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows).encode("utf-8")
    path = parts_dir / name
    _atomic_write_bytes(path, data)
    return path


def read_parts(parts_dir: Path) -> list[dict[str, Any]]:
    """Rows of every complete part file, oldest first. Temporary files (a write cut short by a
    kill) are removed; a part that does not parse (should not happen: parts are written
    atomically) is moved aside as ``*.bad`` and its rows are recomputed."""
    if not parts_dir.is_dir():
        return []
    rows: list[dict[str, Any]] = []
    for p in sorted(parts_dir.iterdir()):
        if p.name.endswith(".tmp"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            continue
        if not (p.name.startswith("part-") and p.suffix == ".jsonl"):
            continue
        try:
            text = p.read_text(encoding="utf-8")
            part_rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            if not all(isinstance(r, dict) and "key" in r for r in part_rows):
                raise ValueError("row without key")
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                os.replace(p, p.with_name(p.name + ".bad"))
            continue
        rows.extend(normalize_row(r) for r in part_rows)
    return rows


def write_table(rows: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Write rows to ``out`` (``.parquet`` or ``.csv``) atomically; columns in
    :data:`COLUMNS` order, then any extra columns in first-seen order."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise PrivtunerError(
            f"--out {out}: unknown table format {suffix or '(none)'!r}; use .parquet or .csv"
        )
    columns = list(COLUMNS)
    for r in rows:
        for k in r:
            if k not in COLUMNS and k not in columns:
                columns.append(k)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else _csv_cell(r.get(c)) for c in columns])
        _atomic_write_bytes(out, buf.getvalue().encode("utf-8"))
    else:
        _write_parquet(rows, columns, out)
    return out


def _csv_cell(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)  # shortest round-trip representation
    return str(v)


def _write_parquet(rows: Sequence[dict[str, Any]], columns: list[str], out: Path) -> None:
    from privtuner.errors import require

    pa: Any = require("pyarrow", extra="batch", purpose="Parquet output (or use --out x.csv)")
    import pyarrow.parquet as pq

    types = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    arrays = []
    fields = []
    for c in columns:
        typ = COLUMNS.get(c, str)
        values = [r.get(c) for r in rows]
        if c not in COLUMNS:
            values = [None if v is None else str(v) for v in values]
        arrays.append(pa.array(values, type=types[typ]))
        fields.append(pa.field(c, types[typ]))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results table (``.parquet`` or ``.csv``), values typed by :data:`COLUMNS`."""
    path = Path(path)
    if not path.is_file():
        raise PrivtunerError(f"{path}: results file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # JSON cells (solver histories, allocations) can exceed csv's 128 KiB default
            csv.field_size_limit(2**31 - 1)
            with path.open(newline="", encoding="utf-8") as fh:
                raw = list(csv.DictReader(fh))
            return [
                {k: (_coerce(v, COLUMNS[k]) if k in COLUMNS else v) for k, v in r.items()}
                for r in raw
            ]
        if suffix == ".parquet":
            from privtuner.errors import require

            require("pyarrow", extra="batch", purpose="reading Parquet results")
            import pyarrow.parquet as pq

            return [dict(r) for r in pq.read_table(path).to_pylist()]
    except PrivtunerError:
        raise
    except Exception as exc:  # OSError, csv.Error, ValueError, pyarrow's ArrowInvalid ...
        raise PrivtunerError(f"{path}: cannot read results table: {exc}") from None
    raise PrivtunerError(f"{path}: unknown table format {suffix!r}; use .parquet or .csv")


def _is_timing_key(key: str) -> bool:
    return key.startswith(("time", "wall", "elapsed")) or key.endswith(("time_s", "elapsed_s"))


def _strip_history_timings(text: Any) -> Any:
    if not text:
        return None
    history = json.loads(str(text))
    if not isinstance(history, list):
        return text
    return json.dumps(
        [
            {k: v for k, v in h.items() if not _is_timing_key(str(k))} if isinstance(h, dict) else h
            for h in history
        ]
    )


def comparable(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows without what legitimately differs between two runs of the same tasks: the
    :data:`TIMING_COLUMNS` and timing entries of the solver history (``time_s``, ...); empty
    text as None. Two runs of the same tasks (local, dask, resumed) compare equal."""
    out = []
    for r in rows:
        row = {k: (None if v == "" else v) for k, v in r.items() if k not in TIMING_COLUMNS}
        if "history_json" in row:
            row["history_json"] = _strip_history_timings(row["history_json"])
        out.append(row)
    return out


# ----------------------------------------------------------------------------- the batch


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
        }


def _chunks(tasks: Sequence[BatchTask], size: int) -> list[list[BatchTask]]:
    return [list(tasks[i : i + size]) for i in range(0, len(tasks), size)]


def default_chunk_size(n_tasks: int, jobs: int) -> int:
    """Tasks per chunk: about 8 chunks per worker, at most 16 tasks (few rows in flight)."""
    return max(1, min(16, n_tasks // max(1, 8 * jobs)))


def _iter_local(chunks: list[list[BatchTask]], jobs: int) -> Iterator[list[dict[str, Any]]]:
    if jobs <= 1:
        for ch in chunks:
            yield run_chunk(ch)
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        # keep a bounded number of chunks submitted (2 per worker) so an interrupt loses few
        pending: set[Future[list[dict[str, Any]]]] = set()
        it = iter(chunks)
        try:
            for ch in itertools.islice(it, 2 * jobs):
                pending.add(pool.submit(run_chunk, ch))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
                    nxt = next(it, None)
                    if nxt is not None:
                        pending.add(pool.submit(run_chunk, nxt))
        finally:
            for fut in pending:
                fut.cancel()


def _iter_dask(
    chunks: list[list[BatchTask]], jobs: int, scheduler: str | None
) -> Iterator[list[dict[str, Any]]]:
    from privtuner.errors import require

    require("dask.distributed", extra="dev", purpose="--executor dask")
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=max(1, jobs),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
    try:
        futures = [client.submit(run_chunk, ch, pure=False) for ch in chunks]
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


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
    """
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise PrivtunerError(
            f"--out {out}: unknown table format {out.suffix or '(none)'!r}; use .parquet or .csv"
        )
    if executor not in ("local", "dask"):
        raise PrivtunerError(f"--executor {executor!r}: unknown executor; valid: local, dask")
    if jobs < 1:
        raise PrivtunerError(f"--jobs {jobs}: must be >= 1")
    t_start = time.perf_counter()
    if tasks is None:
        if paths is None:
            raise PrivtunerError("run_batch: give scenario paths or tasks")
        tasks = collect_tasks(paths, methods=methods, seeds=seeds, options=options)
    tasks = list(tasks)
    check_methods({t.method for t in tasks})
    parts_dir = parts_dir_for(out)

    # finished rows: the existing table first, then parts (newer parts win)
    finished: dict[str, dict[str, Any]] = {}
    if out.is_file():
        for r in read_table(out):
            finished[str(r["key"])] = normalize_row(r)
    for r in read_parts(parts_dir):
        finished[str(r["key"])] = r
    todo = [
        t
        for t in tasks
        if t.key not in finished or (retry_errors and finished[t.key].get("status") == "error")
    ]
    n_skipped = len(tasks) - len(todo)

    size = chunk_size or default_chunk_size(len(todo), jobs)
    chunks = _chunks(todo, size)
    bar = _progress_bar(len(todo), progress, out.name)
    try:
        stream = (
            _iter_dask(chunks, jobs, scheduler) if executor == "dask" else _iter_local(chunks, jobs)
        )
        for rows in stream:
            write_part(parts_dir, rows)
            for r in rows:
                finished[str(r["key"])] = r
            if bar is not None:
                bar.update(len(rows))
    finally:
        if bar is not None:
            bar.close()

    task_keys = [t.key for t in tasks]
    key_set = set(task_keys)
    final_rows = [finished[k] for k in task_keys if k in finished]
    final_rows.extend(r for k, r in finished.items() if k not in key_set)
    write_table(final_rows, out)
    if not keep_parts and parts_dir.is_dir():
        for p in parts_dir.iterdir():
            with contextlib.suppress(OSError):
                p.unlink()
        with contextlib.suppress(OSError):
            parts_dir.rmdir()

    counts: dict[str, int] = {}
    for k in task_keys:
        s = str(finished[k].get("status") or "")
        counts[s] = counts.get(s, 0) + 1
    return BatchSummary(
        out=out,
        n_tasks=len(tasks),
        n_skipped=n_skipped,
        n_run=len(todo),
        n_errors=counts.get("error", 0),
        n_infeasible=counts.get("infeasible", 0),
        wall_s=time.perf_counter() - t_start,
        jobs=jobs,
        executor=executor,
        status_counts=counts,
    )


def _progress_bar(total: int, enabled: bool, desc: str) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="task", file=sys.stderr, dynamic_ncols=True)


# ----------------------------------------------------------------------------- helpers for plots


def sweep_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep combination of a row (``{}`` for a scenario without a sweep)."""
    text = row.get("sweep_params_json")
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def swept_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Results columns that vary over the sweep keys of ``rows`` (seed excluded), in order."""
    keys: list[str] = []
    for r in rows:
        for k in sweep_values(r):
            col = SWEEP_COLUMNS.get(k)
            if col and col != "seed" and col not in keys:
                keys.append(col)
    return [c for c in keys if len({r.get(c) for r in rows}) > 1]
