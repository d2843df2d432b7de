"""Baselines of spec 5.3, each registered by name (for plots and comparisons).

The *equal point* of a problem is: equal bandwidth ``B/n``, maximum power, an equal server-CPU
share ``F_s/n`` (``starts.equal_point``). At the equal point a device's *best response* is its
allowed set of least objective term, with the device CPU at the smallest frequency meeting the
deadline (closed form, ``core.model.smallest_device_cpu_hz``), among the sets that meet the deadline
with ``f <= f_max``.

* ``equal_bandwidth``: equal bandwidth, max power, the CPUs in closed form (the
  energy-optimal split of the time left between device and server,
  ``core.model.closed_form_cpus_hz``), sets by best response.
* ``fixed_largest_n`` / ``fixed_smallest_n``: every device uses the largest ring degree N /
  the smallest N among its allowed (hence secure) sets; among the sets of that N, its best
  response (or, if none meets the deadline at the equal point, the one of least latency
  there). Then the optimal continuous allocation for these fixed sets (the fixed-set convex
  problem of spec 5.2, solved by ``continuous.clear_markets``; stage B's fractional programming
  if that fails).
* ``ao_random_theta``: AO without B&B, random sets: a seeded uniformly random allowed set per
  device, then stage B (fractional programming); up to ``draws`` draws until one is feasible.
* ``ao_greedy_theta``: AO without B&B, greedy sets: the alternation of ``ao`` with stage A's
  branch-and-bound replaced by its root heuristic (LP rounding + greedy fill).
* ``comm_only``: optimise bandwidth and power only (stage B), with the CPUs fixed at f_max and
  an equal server share; sets by best response at the equal point with f = f_max.
* ``comp_only``: optimise the CPUs only (server shares in the convex solve, device CPU in
  closed form), with equal bandwidth and maximum power; sets by best response.

A baseline whose restricted problem has no feasible point returns ``status="infeasible"``
with the reason (it does not raise); the unrestricted problem may still be feasible.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from privtuner.errors import SolverError
from privtuner.optimizer.core.allocation import Allocation
from privtuner.optimizer.core.model import closed_form_cpus_hz, smallest_device_cpu_hz
from privtuner.optimizer.core.options import DEFAULTS
from privtuner.optimizer.core.problem import AllocationProblem
from privtuner.optimizer.core.registry import register_solver
from privtuner.optimizer.core.result import SolveResult
from privtuner.optimizer.methods.ao.fp import StageB, objective_value
from privtuner.optimizer.methods.ao.method import (
    ao_options_from,
    downgrade_if_violating,
    outcome_result,
    run_ao,
)
from privtuner.optimizer.methods.ao.options import AO_DEFAULTS, AoOptions, check_fp_method
from privtuner.optimizer.methods.starts import (
    equal_point,
    equal_point_latency_s,
    fixed_set_optimum,
    random_sets,
)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


# ---------------------------------------------------------------------- helpers
def equal_point_costs(
    problem: AllocationProblem,
    device_cpu: str = "closed_form",
) -> tuple[F64, F64]:
    """``[n, K]`` objective term and device CPU of each (device, set) at the equal point.

    ``device_cpu="closed_form"``: f = C_dev / (time left) (spec 5.1); ``"max"``: f = f_max.
    ``inf`` where the set is not allowed or misses the deadline (or needs f > f_max).
    """
    n, K = problem.n_devices, problem.n_sets
    b, p, fmax, fs = equal_point(problem)
    cost = np.full((n, K), math.inf)
    freq = np.full((n, K), math.inf)
    for k in range(K):
        sets = np.full(n, k, dtype=np.int64)
        if device_cpu == "max":
            f = fmax.copy()
        else:
            f = smallest_device_cpu_hz(problem, sets, b, p, fs)
        ok = problem.allowed[:, k] & np.isfinite(f) & (f <= problem.f_max_hz)
        if not ok.any():
            continue
        f_use = np.where(ok, f, fmax)
        ev = problem.evaluate(sets, b, p, f_use, fs)
        term = (
            problem.energy_weight * (ev.energy_compute_j + ev.energy_tx_j + ev.energy_server_j)
            + problem.set_constant[k]
        )
        ok &= ev.latency_s <= problem.deadline_s * (1 + 1e-12)
        cost[:, k] = np.where(ok, term, math.inf)
        freq[:, k] = np.where(ok, f_use, math.inf)
    return cost, freq


def _best_response(cost: F64) -> tuple[I64, NDArray[np.bool_]]:
    sets = np.asarray(np.argmin(cost, axis=1), dtype=np.int64)
    ok = np.isfinite(cost[np.arange(cost.shape[0]), sets])
    return sets, ok


def _no_response_reasons(
    problem: AllocationProblem,
    bad: NDArray[np.bool_],
    what: str,
) -> list[str]:
    idx = np.flatnonzero(bad)
    head = ", ".join(str(int(i)) for i in idx[:10]) + (" ..." if idx.size > 10 else "")
    return [
        f"device(s) {head}: no allowed CKKS set meets the deadline "
        f"{problem.deadline_s:.4g} s at {what}"
    ]


def _result(
    problem: AllocationProblem, method: str, alloc: Allocation, seed: int, t0: float, **extra: Any
) -> SolveResult:
    extra.setdefault("termination", "converged")
    res = SolveResult.from_allocation(
        problem,
        method=method,
        status="feasible",
        seed=seed,
        timings_s={"solve": time.perf_counter() - t0},
        **extra,
        **alloc.as_kwargs(),
    )
    return downgrade_if_violating(res, method)


def _infeasible(
    problem: AllocationProblem,
    method: str,
    reasons: list[str],
    seed: int,
) -> SolveResult:
    """The baseline's *restricted* policy has no feasible allocation. That says nothing about
    the instance (``solve`` has already ruled out the infeasibility it can prove), so the
    status is ``error`` (no allocation), not ``infeasible``; ``termination`` is
    ``infeasible`` and ``reasons`` say why the policy fails."""
    why = [f"{method} baseline: {r}" for r in reasons]
    return SolveResult.error(
        problem,
        method=method,
        message="no feasible allocation under this baseline's restriction (the instance "
        "itself may be feasible): " + "; ".join(why),
        termination="infeasible",
        reasons=tuple(why),
        seed=seed,
    )


# ---------------------------------------------------------------------- baselines
@register_solver(
    "equal_bandwidth",
    "baseline: equal bandwidth, max power, sets by best response, CPUs in closed "
    "form (energy-optimal device/server split) (spec 5.3)",
)
def solve_equal_bandwidth(
    problem: AllocationProblem,
    *,
    rel_tol: float = DEFAULTS.rel_tol,
    max_iterations: int = DEFAULTS.max_iterations,
    time_limit_s: float = DEFAULTS.time_limit_s,
    seed: int = 0,
) -> SolveResult:
    """Equal bandwidth and max power; CPUs by ``core.model.closed_form_cpus_hz``; each device's
    best-response set (least objective term). If the server shares then exceed F_s they are
    scaled down to F_s and the device CPU is recomputed in closed form (smallest meeting the
    deadline); a device that would then need f > f_max makes the baseline infeasible."""
    t0 = time.perf_counter()
    n, K = problem.n_devices, problem.n_sets
    b, p, _, _ = equal_point(problem)
    cost = np.full((n, K), math.inf)
    fk = np.zeros((n, K))
    fsk = np.zeros((n, K))
    for k in range(K):
        sets_k = np.full(n, k, dtype=np.int64)
        f, fs = closed_form_cpus_hz(problem, sets_k, b, p)
        ok = problem.allowed[:, k] & np.isfinite(f) & np.isfinite(fs)
        f_use, fs_use = np.where(ok, f, problem.f_max_hz), np.where(ok, fs, 1.0)
        ev = problem.evaluate(sets_k, b, p, f_use, fs_use)
        term = problem.energy_weight * ev.energy_j + problem.set_constant[k]
        cost[:, k] = np.where(ok, term, math.inf)
        fk[:, k], fsk[:, k] = f_use, fs_use
    sets, ok = _best_response(cost)
    if not ok.all():
        return _infeasible(
            problem,
            "equal_bandwidth",
            _no_response_reasons(
                problem, ~ok, "an equal bandwidth share, max power and f <= f_max"
            ),
            seed,
        )
    rows = np.arange(n)
    f, fs = fk[rows, sets], fsk[rows, sets]
    if fs.sum() > problem.server_cpu_hz:
        fs = fs * (problem.server_cpu_hz / fs.sum())
        f = smallest_device_cpu_hz(problem, sets, b, p, fs)
        bad = ~(f <= problem.f_max_hz)
        if bad.any():
            return _infeasible(
                problem,
                "equal_bandwidth",
                _no_response_reasons(
                    problem,
                    bad,
                    "an equal bandwidth share, max power, f <= f_max and its "
                    "share of the server CPU scaled down to the capacity",
                ),
                seed,
            )
    return _result(problem, "equal_bandwidth", Allocation(sets, b, p, f, fs), seed, t0)


def _sets_of_degree(problem: AllocationProblem, largest: bool) -> I64:
    degrees = np.array([q.poly_modulus_degree for q in problem.costs.params])
    cost, _ = equal_point_costs(problem)
    lat = equal_point_latency_s(problem)
    out = np.empty(problem.n_devices, dtype=np.int64)
    for i in range(problem.n_devices):
        allowed = np.flatnonzero(problem.allowed[i])
        d = degrees[allowed].max() if largest else degrees[allowed].min()
        cand = allowed[degrees[allowed] == d]
        if np.isfinite(cost[i, cand]).any():
            out[i] = int(cand[np.argmin(cost[i, cand])])
        else:
            out[i] = int(cand[np.argmin(lat[i, cand])])
    return out


def _fixed_degree(
    problem: AllocationProblem,
    method: str,
    largest: bool,
    seed: int,
) -> SolveResult:
    t0 = time.perf_counter()
    sets = _sets_of_degree(problem, largest)
    alloc, why = fixed_set_optimum(problem, sets)
    if alloc is None:
        return _infeasible(
            problem,
            method,
            [f"{'largest' if largest else 'smallest'} ring degree per device: {why}"],
            seed,
        )
    return _result(problem, method, alloc, seed, t0)


@register_solver(
    "fixed_largest_n",
    "baseline: every device at its largest allowed ring degree N, then the optimal "
    "continuous allocation (spec 5.3)",
)
def solve_fixed_largest_n(
    problem: AllocationProblem,
    *,
    rel_tol: float = DEFAULTS.rel_tol,
    max_iterations: int = DEFAULTS.max_iterations,
    time_limit_s: float = DEFAULTS.time_limit_s,
    seed: int = 0,
) -> SolveResult:
    """Largest N per device (module docstring), optimal continuous allocation."""
    return _fixed_degree(problem, "fixed_largest_n", True, seed)


@register_solver(
    "fixed_smallest_n",
    "baseline: every device at its smallest secure ring degree N, then the optimal "
    "continuous allocation (spec 5.3)",
)
def solve_fixed_smallest_n(
    problem: AllocationProblem,
    *,
    rel_tol: float = DEFAULTS.rel_tol,
    max_iterations: int = DEFAULTS.max_iterations,
    time_limit_s: float = DEFAULTS.time_limit_s,
    seed: int = 0,
) -> SolveResult:
    """Smallest secure N per device (module docstring), optimal continuous allocation."""
    return _fixed_degree(problem, "fixed_smallest_n", False, seed)


@register_solver(
    "ao_random_theta",
    "baseline: AO without B&B, seeded random CKKS sets, then stage B (fractional "
    "programming) (spec 5.3)",
    options={"fp_method": AO_DEFAULTS.fp_method, "draws": 10},
)
def solve_ao_random_theta(
    problem: AllocationProblem,
    *,
    rel_tol: float = DEFAULTS.rel_tol,
    max_iterations: int = DEFAULTS.max_iterations,
    time_limit_s: float = DEFAULTS.time_limit_s,
    seed: int = 0,
    fp_method: str = AO_DEFAULTS.fp_method,
    draws: int = 10,
) -> SolveResult:
    """Random sets (``seed``), stage B; the first of ``draws`` draws that is feasible."""
    check_fp_method(fp_method)
    if not (isinstance(draws, int) and draws >= 1):
        raise SolverError(f"option draws must be an integer >= 1 (got {draws!r})")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    sb = StageB(problem)
    history: list[dict[str, Any]] = []
    for d in range(draws):
        if time.perf_counter() - t0 > time_limit_s:
            break
        sets = random_sets(problem, rng)
        r = sb.solve(
            sets,
            None,
            method=fp_method,  # type: ignore[arg-type]
            max_iterations=max_iterations,
            time_limit_s=max(time_limit_s - (time.perf_counter() - t0), 1e-3),
        )
        history.append(
            {"draw": d, "status": r.status, "objective": r.objective, "fp_iterations": r.iterations}
        )
        if r.allocation is not None:
            return _result(
                problem,
                "ao_random_theta",
                r.allocation,
                seed,
                t0,
                iterations=r.iterations,
                history=history,
            )
    return _infeasible(
        problem,
        "ao_random_theta",
        [f"none of {len(history)} random set draws (seed {seed}) admits a feasible allocation"],
        seed,
    )


@register_solver(
    "ao_greedy_theta",
    "baseline: AO without B&B: stage A by the greedy knapsack heuristic, stage B "
    "by fractional programming (spec 5.3)",
    options=AoOptions,
)
def solve_ao_greedy_theta(
    problem: AllocationProblem,
    *,
    rel_tol: float = DEFAULTS.rel_tol,
    max_iterations: int = DEFAULTS.max_iterations,
    time_limit_s: float = DEFAULTS.time_limit_s,
    seed: int = 0,
    **ao_options: Any,
) -> SolveResult:
    """``ao`` with the greedy stage A (module docstring); same options as ``ao``."""
    out = run_ao(
        problem,
        rel_tol=rel_tol,
        max_iterations=max_iterations,
        time_limit_s=time_limit_s,
        seed=seed,
        options=ao_options_from(ao_options),
        stage_a="greedy",
    )
    if out.allocation is None:
        return _infeasible(problem, "ao_greedy_theta", [out.message], seed)
    return outcome_result(problem, out, "ao_greedy_theta", seed)


@register_solver(
    "comm_only",
    "baseline: optimise bandwidth and power only; CPUs fixed at f_max and an equal "
    "server share; sets by best response (spec 5.3)",
    options={"fp_method": AO_DEFAULTS.fp_method},
)
def solve_comm_only(
    problem: AllocationProblem,
    *,
    rel_tol: float = DEFAULTS.rel_tol,
    max_iterations: int = DEFAULTS.max_iterations,
    time_limit_s: float = DEFAULTS.time_limit_s,
    seed: int = 0,
    fp_method: str = AO_DEFAULTS.fp_method,
) -> SolveResult:
    """Stage B over (b, p) with f = f_max and f_s = F_s/n fixed (module docstring)."""
    t0 = time.perf_counter()
    n = problem.n_devices
    cost, _ = equal_point_costs(problem, device_cpu="max")
    sets, ok = _best_response(cost)
    if not ok.all():
        return _infeasible(
            problem,
            "comm_only",
            _no_response_reasons(
                problem,
                ~ok,
                "f_max, an equal server-CPU share, an equal bandwidth share and max power",
            ),
            seed,
        )
    b, p, f, fs = equal_point(problem)
    start = Allocation(sets, b, p, f, fs)
    share = np.full(n, 1.0 / n)
    r = StageB(problem).solve(
        sets,
        start,
        method=fp_method,  # type: ignore[arg-type]
        max_iterations=max_iterations,
        time_limit_s=time_limit_s,
        bounds={"s_lo": share, "s_hi": share},
        device_cpu="max",
    )
    alloc = r.allocation if r.allocation is not None else start
    if objective_value(problem, alloc) > objective_value(problem, start):
        alloc = start
    return _result(problem, "comm_only", alloc, seed, t0, iterations=r.iterations)


@register_solver(
    "comp_only",
    "baseline: optimise the CPUs only (server shares, device CPU in closed form); "
    "equal bandwidth and max power; sets by best response (spec 5.3)",
)
def solve_comp_only(
    problem: AllocationProblem,
    *,
    rel_tol: float = DEFAULTS.rel_tol,
    max_iterations: int = DEFAULTS.max_iterations,
    time_limit_s: float = DEFAULTS.time_limit_s,
    seed: int = 0,
) -> SolveResult:
    """The convex CPU problem with b = B/n and p = p_max fixed (module docstring)."""
    t0 = time.perf_counter()
    n = problem.n_devices
    cost, freq = equal_point_costs(problem)
    sets, ok = _best_response(cost)
    if not ok.all():
        return _infeasible(
            problem,
            "comp_only",
            _no_response_reasons(
                problem,
                ~ok,
                "an equal bandwidth share, max power, an equal server-CPU share and f <= f_max",
            ),
            seed,
        )
    b, p, _, fs = equal_point(problem)
    start = Allocation(sets, b, p, freq[np.arange(n), sets], fs)
    share = np.full(n, 1.0 / n)
    r = StageB(problem).solve(
        sets,
        start,
        max_iterations=max_iterations,
        time_limit_s=time_limit_s,
        bounds={"x_lo": share, "x_hi": share, "q_lo": 1.0, "q_hi": 1.0},
    )
    alloc = r.allocation if r.allocation is not None else start
    if objective_value(problem, alloc) > objective_value(problem, start):
        alloc = start
    return _result(problem, "comp_only", alloc, seed, t0, iterations=r.iterations)


BASELINES = (
    "equal_bandwidth",
    "fixed_largest_n",
    "fixed_smallest_n",
    "ao_random_theta",
    "ao_greedy_theta",
    "comm_only",
    "comp_only",
)
