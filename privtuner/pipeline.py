"""The one path from a scenario to an optimisation problem.

    scenario point --build_instance--> SystemInstance      (system_sim: positions, channels)
                   --cost_table------> CostTable            (costmodels, cached)
                   --from_instance---> AllocationProblem    (optimizer core)

:func:`build_problem` is what the CLI (``solve``), the batch, the studies and the notebooks
call (``simulate`` runs the first stage only, :func:`instance`); :func:`build_stages` is the
same with each stage's result and wall time (the batch's ``time_build_s`` and
``benchmarks/bench_batch.py`` read them).

The cost table depends on the ``fhe`` and ``workload`` sections, the privacy metric and the
cost model file, not on the system, the devices, the seed or the objective weights; a sweep
over those builds its table once per process (:func:`cost_table`). A table is read-only, so
problems may share it.

:meth:`AllocationProblem.from_spec <privtuner.optimizer.AllocationProblem.from_spec>` (public
API) gives the same problem without the cache; it cannot call this module (the optimiser's
core would then import a module that imports it back).

The cost model and optimiser are imported when first needed, so ``privtuner simulate`` stays
light.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from privtuner.system_sim import build_instance

if TYPE_CHECKING:
    from privtuner.costmodels.types import CostTable
    from privtuner.optimizer.core.problem import AllocationProblem
    from privtuner.scenario.schema import ScenarioSpec
    from privtuner.system_sim import SystemInstance

#: Cost tables kept per process (least recently used dropped first).
CACHE_SIZE = 32

_CACHE: OrderedDict[str, CostTable] = OrderedDict()


def _file_key(source: str) -> list[object]:
    """What identifies a data file the cost table reads (the cost model, the accuracy study):
    its path and, for a file, its size and mtime (a file rewritten in place is a new key)."""
    if source == "default":
        return [source]  # the shipped model (package data)
    try:
        st = os.stat(Path(source))
    except OSError:
        return [source]  # build_cost_table reports the missing file
    return [source, st.st_size, st.st_mtime_ns]


def cost_table_key(spec: ScenarioSpec) -> str:
    """The cache key of ``spec``'s cost table: everything :func:`build_cost_table` reads."""
    return json.dumps(
        [
            spec.fhe.model_dump(mode="json"),
            spec.workload.model_dump(mode="json"),
            spec.objective.privacy_metric,
            _file_key(str(spec.fhe.cost_model)),
            _file_key(str(spec.fhe.accuracy_study or "default")),
        ],
        sort_keys=True,
    )


def cost_table(spec: ScenarioSpec, *, cache: bool = True) -> CostTable:
    """``build_cost_table(spec)``, cached on :func:`cost_table_key` (``cache=False``: always
    build, and leave the cache alone). Errors are not cached."""
    from privtuner.costmodels.model import build_cost_table

    if not cache:
        return build_cost_table(spec)
    key = cost_table_key(spec)
    table = _CACHE.get(key)
    if table is None:
        table = build_cost_table(spec)
        _CACHE[key] = table
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return table


def clear_cache() -> None:
    """Forget every cached cost table (this process)."""
    _CACHE.clear()


def instance(spec: ScenarioSpec, seed: int | None = None) -> SystemInstance:
    """The drawn system of ``spec`` with ``seed`` (default ``spec.seed``)."""
    return build_instance(spec, seed)


@dataclass(frozen=True)
class Stages:
    """The results of every pipeline stage and their wall times [s]: keys ``instance``,
    ``cost_table``, ``problem`` (assembly)."""

    instance: SystemInstance
    costs: CostTable
    problem: AllocationProblem
    timings_s: dict[str, float]

    @property
    def total_s(self) -> float:
        return float(sum(self.timings_s.values()))


def build_stages(spec: ScenarioSpec, seed: int | None = None, *, cache: bool = True) -> Stages:
    """Scenario point -> instance -> cost table -> problem, timing each stage."""
    from privtuner.optimizer.core.problem import AllocationProblem

    t0 = time.perf_counter()
    inst = instance(spec, seed)
    t1 = time.perf_counter()
    costs = cost_table(spec, cache=cache)
    t2 = time.perf_counter()
    problem = AllocationProblem.from_instance(inst, costs, spec.objective, spec.fhe)
    t3 = time.perf_counter()
    return Stages(
        instance=inst,
        costs=costs,
        problem=problem,
        timings_s={"instance": t1 - t0, "cost_table": t2 - t1, "problem": t3 - t2},
    )


def build_problem(
    spec: ScenarioSpec, seed: int | None = None, *, cache: bool = True
) -> AllocationProblem:
    """The :class:`~privtuner.optimizer.AllocationProblem` of scenario point ``spec`` and
    ``seed`` (default ``spec.seed``): equal to ``AllocationProblem.from_spec(spec, seed)``."""
    return build_stages(spec, seed, cache=cache).problem


def check_solvable(
    spec: ScenarioSpec, method: str | None = None, source: str | None = None
) -> None:
    """Every check ``solve`` runs on scenario point ``spec`` that needs no solving (what
    ``privtuner validate`` runs): the method, its options, the privacy metric, the cost model
    file, the packing's curves and the catalogue filters (an empty allowed catalogue), the
    drawn instance and the problem's assembly.

    Raises :class:`~privtuner.errors.ScenarioError` with one line per problem, each naming
    the field path (``solver.method: unknown method 'exakt'; valid methods: ...``), prefixed
    by ``source``.
    """
    from privtuner.errors import ScenarioError

    stages = checked_stages(spec, method=method, source=source)
    if not stages.problem.allowed.any():
        raise ScenarioError([_empty_catalogue(spec, stages.costs)], source)


def checked_stages(
    spec: ScenarioSpec,
    seed: int | None = None,
    *,
    method: str | None = None,
    source: str | None = None,
    cache: bool = True,
) -> Stages:
    """:func:`build_stages` after the checks of :func:`check_solvable` (all but the empty
    catalogue, which the solver reports with its reasons): a problem of the scenario raises
    :class:`~privtuner.errors.ScenarioError` naming the field path, prefixed by ``source``
    (what ``solve`` runs, so that it reports a file's problem as ``validate`` does).
    ``method`` (default ``spec.solver.method``) is checked as ``solver.method``."""
    from privtuner.costmodels import get_privacy_metric, load_cost_model
    from privtuner.errors import PrivtunerError, ScenarioError
    from privtuner.optimizer import solver_info
    from privtuner.optimizer.core.options import SolveOptions, options_from_spec

    checks: list[tuple[str, Callable[[], object]]] = [
        ("solver.method", lambda: solver_info(method or spec.solver.method)),
        ("solver", lambda: SolveOptions(**options_from_spec(spec.solver))),
        ("objective.privacy_metric", lambda: get_privacy_metric(spec.objective.privacy_metric)),
        ("fhe.cost_model", lambda: load_cost_model(spec.fhe.cost_model)),
    ]
    problems: list[str] = []
    for field, check in checks:
        try:
            check()
        except PrivtunerError as exc:
            problems.extend(f"{field}: {line}" for line in exc.lines())
    if problems:
        raise ScenarioError(problems, source)
    try:
        return build_stages(spec, seed, cache=cache)
    except PrivtunerError as exc:
        raise ScenarioError([f"fhe: {line}" for line in exc.lines()], source) from exc


def _empty_catalogue(spec: ScenarioSpec, costs: CostTable) -> str:
    from privtuner.costmodels.privacy import SECURITY_CAP_BITS

    fhe, obj = spec.fhe, spec.objective
    floor = f", objective.privacy_min {obj.privacy_min:g}" if obj.kind == "constrained" else ""
    best = float(costs.security_bits.max())
    security = (
        f"{best:g} bits"
        if best <= SECURITY_CAP_BITS
        else f"{SECURITY_CAP_BITS:g} bits (the HE standard's top; uncapped estimate {best:g})"
    )
    return (
        f"fhe: no CKKS set of the catalogue is allowed (fhe.min_security_bits "
        f"{fhe.min_security_bits:g}, min_precision_bits {fhe.min_precision_bits:g}, ring_degrees "
        f"{list(fhe.ring_degrees)}, scale bits {fhe.scale_bits_min}-{fhe.scale_bits_max}{floor}; "
        f"best security {security}, best "
        f"{costs.privacy_metric} {float(costs.privacy.max()):g})"
    )
