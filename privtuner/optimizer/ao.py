"""``method: ao``: the paper-faithful alternating optimisation of PrivTuner (spec 5.1).

PrivTuner (Li, Yu, Zhao, arXiv 2410.00433) alternates two stages until the objective settles:

* **stage A** (``bnb.py``): with the bandwidth ``b``, the power ``p`` and the device CPU ``f``
  fixed, choose the CKKS set of every device by branch-and-bound. The server CPU of each
  (device, set) pair follows in closed form (the smallest share meeting the deadline), so the
  shared server CPU makes stage A a multiple-choice knapsack, solved exactly
  (``solve_mckp_bnb``; PuLP/CBC is its reference in the tests);
* **stage B** (``fp.py``): with the sets fixed, optimise ``(b, p, f_s)`` by fractional
  programming (quadratic transform, or Dinkelbach with ``fp_method="dinkelbach"``), each step a
  DPP cvxpy problem built once and re-solved by Clarabel; the device CPU at the smallest
  frequency meeting the deadline (closed form).

Both stages start from the current point, which stays feasible for them, so the objective
never increases: stage A's knapsack contains the current sets (their closed-form server CPU is
at most the current one) and stage B's fractional programming is a majorisation-minimisation
that only accepts improving points. The loop stops when one A+B iteration changes the objective
by less than ``rel_tol`` (relative to max(|objective|, weighted energy)), or at
``max_iterations`` / ``time_limit_s``. AO is a local method: it certifies no bound (use
``exact`` for that); its result has ``status="feasible"`` and ``lower_bound=None``.

Initialisation (``init``): ``"equal"`` (equal bandwidth, max power, f_max, then stage A),
``"fastest"`` (each device's fastest allowed set at the equal point, then stage B) or
``"random"`` (a seeded uniformly random allowed set per device, then stage B) or
``"fixed_set"`` (each device's fastest allowed set with the optimal continuous allocation of
spec 5.2's convex problem for those sets). When the chosen start gives no feasible point the
others are tried in that order. ``fixed_set`` is the last resort: with hundreds of devices,
some near outage (deep fades), the equal-bandwidth point starves them and stage B's conic
solve finds no feasible start of its own.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from privtuner.errors import SolverError
from privtuner.optimizer.bnb import (
    MckpResult,
    greedy_mckp,
    solve_mckp_bnb,
    stage_a_items,
)
from privtuner.optimizer.fp import (
    FP_METHODS,
    Allocation,
    StageB,
    StageBResult,
    energy_objective,
    max_violation,
    objective_value,
    smallest_device_cpu_hz,
)
from privtuner.optimizer.problem import FEAS_TOL_REL, AllocationProblem
from privtuner.optimizer.registry import register_solver
from privtuner.optimizer.result import SolveResult

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

InitKind = Literal["equal", "fastest", "random", "fixed_set"]
INITS = ("equal", "fastest", "random", "fixed_set")
StageAKind = Literal["bnb", "greedy", "none"]

#: Options of ``ao`` besides the common ones, with their defaults.
AO_OPTIONS: dict[str, Any] = {
    "fp_method": "quadratic",
    "init": "equal",
    "fp_rel_tol": 1e-7,
    "fp_max_iterations": 100,
    "bnb_rel_tol": 1e-9,
    "bnb_max_nodes": 200_000,
}


@dataclass
class AoOutcome:
    """What :func:`run_ao` found: the best allocation (or why none) and the trace."""

    allocation: Allocation | None
    objective: float
    termination: Literal["converged", "iteration_limit", "time_limit"]
    iterations: int
    nodes: int
    history: list[dict[str, Any]] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    message: str = ""
    init_used: str = ""


# ---------------------------------------------------------------------- starting points
def equal_point(problem: AllocationProblem) -> tuple[F64, F64, F64, F64]:
    """Equal bandwidth and server-CPU shares, maximum power, f_max: ``(b, p, f, f_s)``."""
    n = problem.n_devices
    return (
        np.full(n, problem.bandwidth_hz / n),
        np.array(problem.p_max_w, dtype=float),
        np.array(problem.f_max_hz, dtype=float),
        np.full(n, problem.server_cpu_hz / n),
    )


def equal_point_latency_s(problem: AllocationProblem) -> F64:
    """``[n, K]`` latency of every (device, set) pair at the equal point (inf if not allowed)."""
    b, p, f, fs = equal_point(problem)
    c = problem.costs
    rate = b * np.log2(1.0 + p * problem.gain_lin / (problem.noise_w_per_hz * b))
    with np.errstate(divide="ignore"):
        lat = (
            c.device_cycles[None, :] / f[:, None]
            + c.uplink_bits[None, :] / rate[:, None]
            + c.downlink_bits[None, :] / problem.downlink_rate_bps
            + c.server_cycles[None, :] / fs[:, None]
        )
    return np.where(problem.allowed, lat, np.inf)


def fastest_sets(problem: AllocationProblem) -> I64:
    """Each device's allowed set of least latency at the equal point."""
    return np.asarray(np.argmin(equal_point_latency_s(problem), axis=1), dtype=np.int64)


def random_sets(problem: AllocationProblem, rng: np.random.Generator) -> I64:
    """A uniformly random allowed set per device (seeded)."""
    out = np.empty(problem.n_devices, dtype=np.int64)
    for i in range(problem.n_devices):
        out[i] = int(rng.choice(np.flatnonzero(problem.allowed[i])))
    return out


# ---------------------------------------------------------------------- stage A
def run_stage_a(
    problem: AllocationProblem,
    b: F64,
    p: F64,
    f: F64,
    *,
    kind: StageAKind = "bnb",
    rel_tol: float = 1e-9,
    max_nodes: int = 200_000,
    time_limit_s: float | None = None,
) -> tuple[MckpResult, Allocation | None]:
    """Stage A at fixed ``(b, p, f)``: the knapsack and the allocation it gives (or None)."""
    items = stage_a_items(problem, b, p, f)
    if kind == "bnb":
        res = solve_mckp_bnb(
            items.cost,
            items.server_cpu_hz,
            items.capacity,
            rel_tol=rel_tol,
            max_nodes=max_nodes,
            time_limit_s=time_limit_s,
        )
    elif kind == "greedy":
        res = greedy_mckp(items.cost, items.server_cpu_hz, items.capacity)
    else:  # pragma: no cover - guarded by the callers
        raise SolverError(f"unknown stage A kind {kind!r}")
    if res.status == "infeasible":
        return res, None
    k = res.choice
    fs = items.server_cpu_hz[np.arange(problem.n_devices), k]
    if fs.sum() > problem.server_cpu_hz:  # float round-off of the capacity check
        fs = fs * (problem.server_cpu_hz / fs.sum())
    alloc = Allocation(
        k.astype(np.int64), np.asarray(b, float), np.asarray(p, float), np.asarray(f, float), fs
    )
    return res, alloc


# ---------------------------------------------------------------------- the loop
def run_ao(
    problem: AllocationProblem,
    *,
    rel_tol: float = 1e-6,
    max_iterations: int = 100,
    time_limit_s: float = 300.0,
    seed: int = 0,
    fp_method: str = "quadratic",
    init: str = "equal",
    fp_rel_tol: float = 1e-7,
    fp_max_iterations: int = 100,
    bnb_rel_tol: float = 1e-9,
    bnb_max_nodes: int = 200_000,
    stage_a: StageAKind = "bnb",
    stage_b: StageB | None = None,
) -> AoOutcome:
    """Alternate stage A and stage B (module docstring). ``stage_a="greedy"`` replaces the
    branch-and-bound by its root heuristic (the ``ao_greedy_theta`` baseline)."""
    if fp_method not in FP_METHODS:
        raise SolverError(f"option fp_method must be one of {list(FP_METHODS)} (got {fp_method!r})")
    if init not in INITS:
        raise SolverError(f"option init must be one of {list(INITS)} (got {init!r})")
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    timings = {"build": 0.0, "stage_a": 0.0, "stage_b": 0.0}
    tb = time.perf_counter()
    sb = stage_b if stage_b is not None else StageB(problem)
    timings["build"] = time.perf_counter() - tb
    rng = np.random.default_rng(seed)

    def left() -> float:
        return max(deadline - time.perf_counter(), 1e-3)

    def fp(sets: I64, start: Allocation | None) -> StageBResult:
        ts = time.perf_counter()
        r = sb.solve(
            sets,
            start,
            method=fp_method,  # type: ignore[arg-type]
            rel_tol=fp_rel_tol,
            max_iterations=fp_max_iterations,
            time_limit_s=left(),
        )
        timings["stage_b"] += time.perf_counter() - ts
        return r

    history: list[dict[str, Any]] = []
    nodes = 0
    # ---- initial feasible point
    cur: Allocation | None = None
    cur_obj = math.inf
    init_used = ""
    tried: list[str] = []
    order = [init] + [i for i in INITS if i != init]
    for kind in order:
        if time.perf_counter() > deadline:
            break
        tried.append(kind)
        if kind == "equal":
            b, p, f, _ = equal_point(problem)
            ta = time.perf_counter()
            mres, alloc = run_stage_a(
                problem,
                b,
                p,
                f,
                kind=stage_a,
                rel_tol=bnb_rel_tol,
                max_nodes=bnb_max_nodes,
                time_limit_s=left(),
            )
            timings["stage_a"] += time.perf_counter() - ta
            nodes += mres.nodes
            if alloc is None:
                continue
            r = fp(alloc.sets, alloc)
        elif kind == "fixed_set":
            from privtuner.optimizer.baselines import fixed_set_optimum  # (imports this module)

            ts = time.perf_counter()
            start, _ = fixed_set_optimum(problem, fastest_sets(problem))
            timings["stage_b"] += time.perf_counter() - ts
            if start is None:
                continue
            r = fp(start.sets, start)
        else:
            sets = fastest_sets(problem) if kind == "fastest" else random_sets(problem, rng)
            r = fp(sets, None)
        if r.allocation is not None:
            cur, cur_obj, init_used = r.allocation, r.objective, kind
            history.append(
                {
                    "iteration": 0,
                    "objective": cur_obj,
                    "stage": "init",
                    "init": kind,
                    "fp_iterations": r.iterations,
                    "time_s": time.perf_counter() - t0,
                }
            )
            break
    if cur is None:
        return AoOutcome(
            None,
            math.inf,
            "time_limit" if time.perf_counter() > deadline else "iteration_limit",
            0,
            nodes,
            history,
            timings,
            message="ao found no feasible starting point (tried init " + ", ".join(tried) + ")",
        )
    # ---- alternate
    termination: Literal["converged", "iteration_limit", "time_limit"] = "iteration_limit"
    it = 0
    while it < max_iterations:
        if time.perf_counter() > deadline:
            termination = "time_limit"
            break
        it += 1
        prev_obj = cur_obj
        ta = time.perf_counter()
        mres, a_alloc = run_stage_a(
            problem,
            cur.bandwidth_hz,
            cur.tx_power_w,
            cur.cpu_hz,
            kind=stage_a,
            rel_tol=bnb_rel_tol,
            max_nodes=bnb_max_nodes,
            time_limit_s=left(),
        )
        time_a = time.perf_counter() - ta
        timings["stage_a"] += time_a
        nodes += mres.nodes
        a_obj = math.inf
        if a_alloc is not None and max_violation(problem, a_alloc) <= FEAS_TOL_REL:
            a_obj = objective_value(problem, a_alloc)
        changed = 0
        if a_alloc is not None and a_obj <= cur_obj:
            changed = int(np.sum(a_alloc.sets != cur.sets))
            start, start_obj = a_alloc, a_obj
        else:  # stage A gave nothing better (greedy, or a limit): keep the current sets
            start, start_obj = cur, cur_obj
        r = fp(start.sets, start)
        if r.allocation is not None and r.objective <= start_obj:
            cur, cur_obj = r.allocation, r.objective
        else:
            cur, cur_obj = start, start_obj
        history.append(
            {
                "iteration": it,
                "objective": cur_obj,
                "objective_stage_a": a_obj,
                "stage_a_status": mres.status,
                "stage_a_lower_bound": mres.lower_bound,
                "bnb_nodes": mres.nodes,
                "sets_changed": changed,
                "fp_iterations": r.iterations,
                "fp_fallback_steps": r.fallback_steps,
                "time_stage_a_s": time_a,
                "time_stage_b_s": r.time_s,
                "time_s": time.perf_counter() - t0,
            }
        )
        scale = max(abs(cur_obj), energy_objective(problem, cur), 1e-300)
        if abs(prev_obj - cur_obj) <= rel_tol * scale:
            termination = "converged"
            break
    timings["stage_b_builds"] = float(sb.builds)
    timings["stage_b_solves"] = float(sb.solves)
    return AoOutcome(cur, cur_obj, termination, it, nodes, history, timings, init_used=init_used)


def outcome_result(
    problem: AllocationProblem,
    out: AoOutcome,
    method: str,
    seed: int,
) -> SolveResult:
    """Wrap an :class:`AoOutcome` in a :class:`SolveResult` (re-evaluated by the problem)."""
    if out.allocation is None:
        return SolveResult.error(
            problem,
            method=method,
            message=out.message,
            termination=out.termination,
            iterations=out.iterations,
            nodes=out.nodes,
            history=out.history,
            timings_s=out.timings_s,
            seed=seed,
        )
    res = SolveResult.from_allocation(
        problem,
        method=method,
        status="feasible",
        termination=out.termination,
        iterations=out.iterations,
        nodes=out.nodes,
        history=out.history,
        timings_s=out.timings_s,
        seed=seed,
        message=out.message,
        options={"init_used": out.init_used},
        **out.allocation.as_kwargs(),
    )
    if not res.max_violation <= FEAS_TOL_REL:  # never a silent wrong answer
        res = res.replace(
            status="error",
            message=f"{method}: allocation violates the "
            f"constraints (max relative violation {res.max_violation:.3g})",
        )
    return res


@register_solver(
    "ao",
    "PrivTuner alternating optimisation (spec 5.1): B&B over the CKKS sets (stage A) and "
    "fractional programming over bandwidth/power (stage B); local, no certificate",
    options=AO_OPTIONS,
)
def solve_ao(
    problem: AllocationProblem,
    *,
    rel_tol: float = 1e-6,
    max_iterations: int = 100,
    time_limit_s: float = 300.0,
    seed: int = 0,
    fp_method: str = "quadratic",
    init: str = "equal",
    fp_rel_tol: float = 1e-7,
    fp_max_iterations: int = 100,
    bnb_rel_tol: float = 1e-9,
    bnb_max_nodes: int = 200_000,
) -> SolveResult:
    """``method: ao`` (module docstring). Options: ``rel_tol`` (relative change of the
    objective per A+B iteration that stops the loop), ``max_iterations`` (A+B iterations),
    ``time_limit_s``, ``seed`` (for ``init="random"``), ``fp_method`` ("quadratic" |
    "dinkelbach"), ``init`` ("equal" | "fastest" | "random" | "fixed_set"), ``fp_rel_tol`` and
    ``fp_max_iterations`` (stage B), ``bnb_rel_tol`` and ``bnb_max_nodes`` (stage A)."""
    out = run_ao(
        problem,
        rel_tol=rel_tol,
        max_iterations=max_iterations,
        time_limit_s=time_limit_s,
        seed=seed,
        fp_method=fp_method,
        init=init,
        fp_rel_tol=fp_rel_tol,
        fp_max_iterations=fp_max_iterations,
        bnb_rel_tol=bnb_rel_tol,
        bnb_max_nodes=bnb_max_nodes,
        stage_a="bnb",
    )
    return outcome_result(problem, out, "ao", seed)


__all__ = [
    "AO_OPTIONS",
    "AoOutcome",
    "equal_point",
    "fastest_sets",
    "outcome_result",
    "random_sets",
    "run_ao",
    "run_stage_a",
    "smallest_device_cpu_hz",
    "solve_ao",
]
