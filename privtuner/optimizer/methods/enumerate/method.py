"""``method: enumerate`` (spec 5.2): every combination of allowed CKKS sets x an independent
fixed-set convex solve. The reference for small instances.

It shares no solver code with ``exact``: each combination is solved by ``reference.py`` (the
model written again from the specification, log variables, SciPy SLSQP, a phase-1
feasibility problem), not by the dual decomposition of ``continuous.py``. Combinations are
taken in the order of an independent lower bound, the sum over devices of the device's
optimum alone (all bandwidth and server CPU to itself, also solved by ``reference.py``):
removing the other devices only relaxes the coupling constraints, so a combination whose
bound is at least the best objective found cannot improve it and is skipped.

A combination the reference can neither solve nor prove infeasible is reported in the
result's message and ``options["unsolved"]``; the status is then ``feasible``, never
``optimal``, and never ``infeasible``.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from privtuner.errors import InfeasibleError, SolverError
from privtuner.optimizer.core.options import DEFAULTS
from privtuner.optimizer.core.problem import AllocationProblem
from privtuner.optimizer.core.registry import register_solver
from privtuner.optimizer.core.result import SolveResult
from privtuner.optimizer.methods.enumerate.reference import ReferenceSolution, solve_fixed_sets


def _alone_bounds(problem: AllocationProblem) -> list[dict[int, float]]:
    """Per device, per allowed set: its optimum alone (``inf`` if it cannot meet the
    deadline even alone)."""
    out: list[dict[int, float]] = []
    for i in range(problem.n_devices):
        sub = problem.subset([i])
        row: dict[int, float] = {}
        for k in np.flatnonzero(problem.allowed[i]):
            r = solve_fixed_sets(sub, [int(k)])
            if r.status == "infeasible":
                row[int(k)] = math.inf
            elif r.status == "optimal":
                row[int(k)] = r.objective
            else:  # not solved: no bound from it (never pruned by it)
                row[int(k)] = -math.inf
        out.append(row)
    return out


@dataclass
class _Sweep:
    """The walk over the set combinations in the order of their devices-alone bound: the
    best solution so far and the counts (``unsolved``: (sets, bound, why))."""

    best: ReferenceSolution | None = None
    solved: int = 0
    infeasible: int = 0
    pruned: int = 0
    unsolved: list[tuple[list[int], float, str]] = field(default_factory=list)
    termination: str = "converged"

    def run(
        self,
        problem: AllocationProblem,
        combos: list[tuple[int, ...]],
        bounds: NDArray[np.float64],
        t0: float,
        time_limit_s: float,
    ) -> None:
        """Solve the combinations until the bound prunes the rest (or the time limit)."""
        order = np.argsort(bounds, kind="stable")
        for pos, j in enumerate(order):
            if time.perf_counter() - t0 > time_limit_s:
                self.termination = "time_limit"
                self.unsolved += [
                    (list(combos[q]), float(bounds[q]), "time limit") for q in order[pos:]
                ]
                return
            best = self.best
            if best is not None and bounds[j] >= best.objective - 1e-12 * abs(best.objective):
                self.pruned = len(order) - pos  # every later combination's bound is >= this
                return
            sets = np.array(combos[j], dtype=np.int64)
            r = solve_fixed_sets(problem, sets)
            if r.status == "infeasible":
                self.infeasible += 1
                continue
            if r.status == "optimal":
                self.solved += 1
            else:
                self.unsolved.append((sets.tolist(), float(bounds[j]), r.message or "not solved"))
            if (
                r.alloc
                and math.isfinite(r.objective)
                and (best is None or r.objective < best.objective)
            ):
                self.best = r


@register_solver(
    "enumerate",
    "every combination of allowed CKKS sets x an independent convex solve (SLSQP in log "
    "variables); the reference for small instances",
    options={"max_combinations": 50_000},
    global_optimum=True,
    max_devices=6,
)
def solve_enumerate(
    problem: AllocationProblem,
    *,
    rel_tol: float = DEFAULTS.rel_tol,
    max_iterations: int = DEFAULTS.max_iterations,
    time_limit_s: float = DEFAULTS.time_limit_s,
    seed: int = 0,
    max_combinations: int = 50_000,
) -> SolveResult:
    """The best of all set combinations (module docstring). ``lower_bound`` is not certified
    (``None``): the reference is a generic NLP solver without a dual certificate."""
    t0 = time.perf_counter()
    n = problem.n_devices
    sizes = [int(np.sum(problem.allowed[i])) for i in range(n)]
    total = math.prod(sizes)
    if total > max_combinations:
        raise SolverError(
            f"enumerate: {total} set combinations exceed max_combinations="
            f"{max_combinations}; use method 'exact', or fewer devices or CKKS sets"
        )
    alone = _alone_bounds(problem)
    choices = [[k for k, v in row.items() if v < math.inf] for row in alone]
    for i, ch in enumerate(choices):
        if not ch:
            raise InfeasibleError(
                [f"device {i}: no allowed CKKS set meets the deadline even with all resources"]
            )
    combos = list(itertools.product(*choices))
    bounds = np.array([sum(alone[i][k] for i, k in enumerate(c)) for c in combos])
    sweep = _Sweep()
    sweep.run(problem, combos, bounds, t0, time_limit_s)
    return _result(problem, sweep, total, len(combos), t0, seed)


def _result(
    problem: AllocationProblem, sweep: _Sweep, total: int, n_combos: int, t0: float, seed: int
) -> SolveResult:
    """The best combination's result (or the error / infeasibility proof), with the counts."""
    n = problem.n_devices
    best, termination = sweep.best, sweep.termination
    solved, infeasible, pruned, unsolved = (
        sweep.solved,
        sweep.infeasible,
        sweep.pruned,
        sweep.unsolved,
    )
    # an unsolved combination whose bound cannot beat the best solved objective is harmless
    if best is not None:
        unsolved = [u for u in unsolved if u[1] < best.objective - 1e-12 * abs(best.objective)]
    timings = {"solve": time.perf_counter() - t0}
    opts = {
        "combinations": total,
        "solved": solved,
        "infeasible": infeasible,
        "pruned_by_bound": pruned,
        "unsolved": [u[0] for u in unsolved],
    }
    note = (
        f"{total} combinations: {total - n_combos} with a device that misses its deadline "
        f"even alone, {solved} solved, {infeasible} infeasible, {pruned} pruned by the "
        f"devices-alone bound, {len(unsolved)} not solved"
    )
    if unsolved:
        note += " (" + "; ".join(f"sets {u[0]}: {u[2]}" for u in unsolved[:5]) + ")"
    if best is None:
        if not unsolved:
            raise InfeasibleError(
                [
                    f"all {n} devices together: none of the {total} combinations of allowed "
                    "CKKS sets admits an allocation meeting every deadline within the "
                    "bandwidth and server CPU capacities (phase-1 problem of each, "
                    "reference solver)"
                ]
            )
        return SolveResult.error(
            problem,
            method="enumerate",
            message="no feasible allocation found and infeasibility not proved: " + note,
            termination=termination,  # type: ignore[arg-type]
            timings_s=timings,
            seed=seed,
            options=opts,
        )
    status = "optimal" if not unsolved and termination == "converged" else "feasible"
    res = SolveResult.from_allocation(
        problem,
        method="enumerate",
        status=status,  # type: ignore[arg-type]
        termination=termination,  # type: ignore[arg-type]
        lower_bound=None,
        iterations=solved + infeasible + len(unsolved),
        nodes=solved,
        timings_s=timings,
        seed=seed,
        options=opts,
        **best.alloc,
    )
    return res.replace(message=note)
