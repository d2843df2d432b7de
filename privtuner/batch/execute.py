"""Running batch tasks: one task -> one results row, in the worker process.

A task's scenario point goes through :func:`privtuner.pipeline.build_stages` (the cost table is
cached per worker process) and :func:`privtuner.optimizer.solve`. An error in one task
(infeasible scenario, solver failure, any exception) becomes a row with ``status``
``"infeasible"`` or ``"error"`` and a ``message``; it never stops the batch.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from typing import Any

from privtuner.batch.tasks import BatchTask
from privtuner.errors import InfeasibleError, PrivtunerError, ScenarioError
from privtuner.rows import (
    COLUMNS,
    normalize_row,
    result_output_columns,
    spec_input_columns,
    versions,
)


def solve_point(spec: Any, seed: int, method: str, options: dict[str, Any]) -> tuple[Any, float]:
    """Build and solve one scenario point; returns (SolveResult, problem build time [s])."""
    from privtuner.optimizer import solve
    from privtuner.pipeline import build_stages
    from privtuner.rows import device_ids

    stages = build_stages(spec, seed)
    result = solve(stages.problem, method, **options)
    return result.replace(device_ids=device_ids(spec)), stages.total_s


def run_task(task: BatchTask) -> dict[str, Any]:
    """Solve one task and return its results row. Never raises for a problem of the task:
    an infeasible instance or any exception becomes a row with ``status`` and ``message``."""
    from privtuner.optimizer.core.options import options_from_spec
    from privtuner.scenario.schema import ScenarioSpec

    t0 = time.perf_counter()
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
    row.update(versions())
    t_build = 0.0
    try:  # everything of the task, its spec included: a bad point is a row, never an abort
        if task.problem:
            raise ScenarioError([task.problem])
        spec = ScenarioSpec.model_validate_json(task.spec_json)
        row.update(spec_input_columns(spec))
        options = options_from_spec(spec.solver)
        options.update(dict(task.options))
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
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        row.update(status="error", message=" ".join(text.split())[:500])
    row.update(time_build_s=t_build, time_total_s=time.perf_counter() - t0)
    return normalize_row(row)


def run_chunk(tasks: Sequence[BatchTask]) -> list[dict[str, Any]]:
    """Run tasks in order in this process (the unit a worker process or dask task executes)."""
    return [run_task(t) for t in tasks]
