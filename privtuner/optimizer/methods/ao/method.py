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
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from privtuner.errors import SolverError
from privtuner.optimizer.core.allocation import Allocation
from privtuner.optimizer.core.options import DEFAULTS
from privtuner.optimizer.core.problem import FEAS_TOL_REL, AllocationProblem
from privtuner.optimizer.core.registry import register_solver
from privtuner.optimizer.core.result import SolveResult
from privtuner.optimizer.methods.ao.bnb import (
    MckpResult,
    greedy_mckp,
    solve_mckp_bnb,
    stage_a_items,
)
from privtuner.optimizer.methods.ao.fp import (
    StageB,
    StageBResult,
    energy_objective,
    max_violation,
    objective_value,
)
from privtuner.optimizer.methods.ao.options import AO_DEFAULTS, INITS, AoOptions
from privtuner.optimizer.methods.starts import (
    equal_point,
    fastest_sets,
    fixed_set_optimum,
    random_sets,
)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

StageAKind = Literal["bnb", "greedy", "none"]
AoTermination = Literal["converged", "iteration_limit", "time_limit"]


@dataclass
class AoOutcome:
    """What :func:`run_ao` found: the best allocation (or why none) and the trace."""

    allocation: Allocation | None
    objective: float
    termination: AoTermination
    iterations: int
    nodes: int
    history: list[dict[str, Any]] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    message: str = ""
    init_used: str = ""


# ---------------------------------------------------------------------- stage A
def run_stage_a(
    problem: AllocationProblem,
    b: F64,
    p: F64,
    f: F64,
    *,
    kind: StageAKind = "bnb",
    rel_tol: float = AO_DEFAULTS.bnb_rel_tol,
    max_nodes: int = AO_DEFAULTS.bnb_max_nodes,
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
class _AoRun:
    """One run of the alternation: the stages with their timings, the node count and the
    history (:func:`run_ao` drives it)."""

    def __init__(
        self,
        problem: AllocationProblem,
        opts: AoOptions,
        time_limit_s: float,
        seed: int,
        stage_a: StageAKind,
        stage_b: StageB | None,
    ) -> None:
        self.problem = problem
        self.opts = opts
        self.stage_a_kind = stage_a
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + time_limit_s
        self.timings = {"build": 0.0, "stage_a": 0.0, "stage_b": 0.0}
        tb = time.perf_counter()
        self.sb = stage_b if stage_b is not None else StageB(problem)
        self.timings["build"] = time.perf_counter() - tb
        self.rng = np.random.default_rng(seed)
        self.history: list[dict[str, Any]] = []
        self.nodes = 0

    def out_of_time(self) -> bool:
        return time.perf_counter() > self.deadline

    def left(self) -> float:
        return max(self.deadline - time.perf_counter(), 1e-3)

    def stage_a(self, b: F64, p: F64, f: F64) -> tuple[MckpResult, Allocation | None, float]:
        """Stage A at ``(b, p, f)``: (knapsack result, allocation or None, seconds)."""
        ta = time.perf_counter()
        mres, alloc = run_stage_a(
            self.problem,
            b,
            p,
            f,
            kind=self.stage_a_kind,
            rel_tol=self.opts.bnb_rel_tol,
            max_nodes=self.opts.bnb_max_nodes,
            time_limit_s=self.left(),
        )
        spent = time.perf_counter() - ta
        self.timings["stage_a"] += spent
        self.nodes += mres.nodes
        return mres, alloc, spent

    def stage_b(self, sets: I64, start: Allocation | None) -> StageBResult:
        """Stage B (fractional programming) for ``sets`` from ``start``."""
        ts = time.perf_counter()
        r = self.sb.solve(
            sets,
            start,
            method=self.opts.fp_method,  # type: ignore[arg-type]
            rel_tol=self.opts.fp_rel_tol,
            max_iterations=self.opts.fp_max_iterations,
            time_limit_s=self.left(),
        )
        self.timings["stage_b"] += time.perf_counter() - ts
        return r

    # -------------------------------------------------------------- starting point
    def start_from(self, kind: str) -> StageBResult | None:
        """Stage B from the start ``kind`` (module docstring); None if it gives no start."""
        problem = self.problem
        if kind == "equal":
            b, p, f, _ = equal_point(problem)
            _, alloc, _ = self.stage_a(b, p, f)
            return None if alloc is None else self.stage_b(alloc.sets, alloc)
        if kind == "fixed_set":
            ts = time.perf_counter()
            start, _ = fixed_set_optimum(problem, fastest_sets(problem))
            self.timings["stage_b"] += time.perf_counter() - ts
            return None if start is None else self.stage_b(start.sets, start)
        sets = fastest_sets(problem) if kind == "fastest" else random_sets(problem, self.rng)
        return self.stage_b(sets, None)

    def start(self) -> tuple[Allocation | None, float, str, list[str]]:
        """The first feasible point: the chosen ``init``, then the others in order.
        Returns (allocation or None, objective, the init used, the inits tried)."""
        tried: list[str] = []
        for kind in [self.opts.init] + [i for i in INITS if i != self.opts.init]:
            if self.out_of_time():
                break
            tried.append(kind)
            r = self.start_from(kind)
            if r is not None and r.allocation is not None:
                self.history.append(
                    {
                        "iteration": 0,
                        "objective": r.objective,
                        "stage": "init",
                        "init": kind,
                        "fp_iterations": r.iterations,
                        "time_s": time.perf_counter() - self.t0,
                    }
                )
                return r.allocation, r.objective, kind, tried
        return None, math.inf, "", tried

    # -------------------------------------------------------------- one A+B iteration
    def iterate(self, it: int, cur: Allocation, cur_obj: float) -> tuple[Allocation, float]:
        """Stage A from ``cur``, then stage B from the better of the two; never worse."""
        problem = self.problem
        mres, a_alloc, time_a = self.stage_a(cur.bandwidth_hz, cur.tx_power_w, cur.cpu_hz)
        a_obj = math.inf
        if a_alloc is not None and max_violation(problem, a_alloc) <= FEAS_TOL_REL:
            a_obj = objective_value(problem, a_alloc)
        changed = 0
        if a_alloc is not None and a_obj <= cur_obj:
            changed = int(np.sum(a_alloc.sets != cur.sets))
            start, start_obj = a_alloc, a_obj
        else:  # stage A gave nothing better (greedy, or a limit): keep the current sets
            start, start_obj = cur, cur_obj
        r = self.stage_b(start.sets, start)
        if r.allocation is not None and r.objective <= start_obj:
            new, new_obj = r.allocation, r.objective
        else:
            new, new_obj = start, start_obj
        self.history.append(
            {
                "iteration": it,
                "objective": new_obj,
                "objective_stage_a": a_obj,
                "stage_a_status": mres.status,
                "stage_a_lower_bound": mres.lower_bound,
                "bnb_nodes": mres.nodes,
                "sets_changed": changed,
                "fp_iterations": r.iterations,
                "fp_fallback_steps": r.fallback_steps,
                "time_stage_a_s": time_a,
                "time_stage_b_s": r.time_s,
                "time_s": time.perf_counter() - self.t0,
            }
        )
        return new, new_obj


def run_ao(
    problem: AllocationProblem,
    *,
    rel_tol: float = DEFAULTS.rel_tol,
    max_iterations: int = DEFAULTS.max_iterations,
    time_limit_s: float = DEFAULTS.time_limit_s,
    seed: int = 0,
    options: AoOptions = AO_DEFAULTS,
    stage_a: StageAKind = "bnb",
    stage_b: StageB | None = None,
) -> AoOutcome:
    """Alternate stage A and stage B (module docstring). ``stage_a="greedy"`` replaces the
    branch-and-bound by its root heuristic (the ``ao_greedy_theta`` baseline)."""
    run = _AoRun(problem, options, time_limit_s, seed, stage_a, stage_b)
    cur, cur_obj, init_used, tried = run.start()
    if cur is None:
        return AoOutcome(
            None,
            math.inf,
            "time_limit" if run.out_of_time() else "iteration_limit",
            0,
            run.nodes,
            run.history,
            run.timings,
            message="ao found no feasible starting point (tried init " + ", ".join(tried) + ")",
        )
    termination: AoTermination = "iteration_limit"
    it = 0
    while it < max_iterations:
        if run.out_of_time():
            termination = "time_limit"
            break
        it += 1
        prev_obj = cur_obj
        cur, cur_obj = run.iterate(it, cur, cur_obj)
        scale = max(abs(cur_obj), energy_objective(problem, cur), 1e-300)
        if abs(prev_obj - cur_obj) <= rel_tol * scale:
            termination = "converged"
            break
    run.timings["stage_b_builds"] = float(run.sb.builds)
    run.timings["stage_b_solves"] = float(run.sb.solves)
    return AoOutcome(
        cur, cur_obj, termination, it, run.nodes, run.history, run.timings, init_used=init_used
    )


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
    return downgrade_if_violating(res, method)


def downgrade_if_violating(res: SolveResult, method: str) -> SolveResult:
    """Status ``error`` for an allocation that violates the constraints (never a silent
    wrong answer)."""
    if res.max_violation <= FEAS_TOL_REL:
        return res
    return res.replace(
        status="error",
        message=f"{method}: allocation violates the "
        f"constraints (max relative violation {res.max_violation:.3g})",
    )


@register_solver(
    "ao",
    "PrivTuner alternating optimisation (spec 5.1): B&B over the CKKS sets (stage A) and "
    "fractional programming over bandwidth/power (stage B); local, no certificate",
    options=AoOptions,
)
def solve_ao(
    problem: AllocationProblem,
    *,
    rel_tol: float = DEFAULTS.rel_tol,
    max_iterations: int = DEFAULTS.max_iterations,
    time_limit_s: float = DEFAULTS.time_limit_s,
    seed: int = 0,
    **ao_options: Any,
) -> SolveResult:
    """``method: ao`` (module docstring). Options: ``rel_tol`` (relative change of the
    objective per A+B iteration that stops the loop), ``max_iterations`` (A+B iterations),
    ``time_limit_s``, ``seed`` (for ``init="random"``) and those of :class:`AoOptions`."""
    out = run_ao(
        problem,
        rel_tol=rel_tol,
        max_iterations=max_iterations,
        time_limit_s=time_limit_s,
        seed=seed,
        options=ao_options_from(ao_options),
        stage_a="bnb",
    )
    return outcome_result(problem, out, "ao", seed)


def ao_options_from(options: dict[str, Any]) -> AoOptions:
    """:class:`AoOptions` from keyword options (an unknown name is an error)."""
    unknown = sorted(set(options) - set(asdict(AO_DEFAULTS)))
    if unknown:
        raise SolverError(f"unknown ao option(s) {unknown}; valid: {sorted(asdict(AO_DEFAULTS))}")
    return AoOptions(**options)


__all__ = [
    "AoOptions",
    "AoOutcome",
    "ao_options_from",
    "outcome_result",
    "run_ao",
    "run_stage_a",
    "solve_ao",
]
