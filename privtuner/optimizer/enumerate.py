"""``method: enumerate`` (spec 5.2): every combination of allowed CKKS sets x the exact
fixed-set convex solve. The reference for small instances (no pruning of any set).

All combinations form one batch of independent fixed-set problems: a feasibility test
(``feasibility.fixed_set_margin``, exact for fixed sets) and the market clearing
(``continuous.clear_markets``) run vectorised over the batch.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np

from privtuner.errors import InfeasibleError, SolverError
from privtuner.optimizer.continuous import (
    Caps,
    build_pairs,
    clear_markets,
    group_sum,
    pair_feasible,
)
from privtuner.optimizer.exact import allocation_from
from privtuner.optimizer.feasibility import fixed_set_margin
from privtuner.optimizer.problem import AllocationProblem
from privtuner.optimizer.registry import register_solver
from privtuner.optimizer.result import SolveResult

_BATCH = 2048


@register_solver(
    "enumerate",
    "every combination of allowed CKKS sets x exact convex solve (small instances only)",
    options={"max_combinations": 50_000},
)
def solve_enumerate(
    problem: AllocationProblem,
    *,
    rel_tol: float = 1e-6,
    max_iterations: int = 100,
    time_limit_s: float = 300.0,
    seed: int = 0,
    max_combinations: int = 50_000,
) -> SolveResult:
    """The best of all set combinations; ``lower_bound`` is the best combination's dual value
    (each combination is solved to optimality by clearing its markets)."""
    t0 = time.perf_counter()
    n = problem.n_devices
    caps = Caps(problem.bandwidth_hz, problem.server_cpu_hz)
    choices = []
    for i in range(n):
        ks = np.flatnonzero(problem.allowed[i])
        pd = build_pairs(problem, np.full(ks.size, i), ks)
        choices.append(ks[pair_feasible(pd)])
    sizes = [c.size for c in choices]
    total = math.prod(sizes)
    if total == 0:
        raise InfeasibleError(
            [
                f"device {i}: no allowed CKKS set meets the deadline even with all resources"
                for i, s in enumerate(sizes)
                if s == 0
            ]
        )
    if total > max_combinations:
        raise SolverError(
            f"enumerate: {total} set combinations exceed max_combinations="
            f"{max_combinations}; use method 'exact' (or raise max_combinations)"
        )
    combos = np.array(list(itertools.product(*choices)), dtype=np.int64).reshape(total, n)
    best_obj, best_alloc, best_dual = math.inf, None, math.nan
    feasible_count = 0
    termination = "converged"
    for start in range(0, total, _BATCH):
        if time.perf_counter() - t0 > time_limit_s:
            termination = "time_limit"
            break
        batch = combos[start : start + _BATCH]
        margin = fixed_set_margin(problem, batch, caps)
        ok = np.flatnonzero(margin <= 1e-12)
        if ok.size == 0:
            continue
        sets = batch[ok]
        G = ok.size
        dev = np.tile(np.arange(n), G)
        grp = np.repeat(np.arange(G), n)
        pd = build_pairs(problem, dev, sets.ravel(), grp=grp)
        mr = clear_markets(pd, caps, G)
        w = problem.energy_scale
        energy = w * (mr.sol.e_d + mr.sol.e_s + mr.sol.e_tx)
        obj = group_sum(energy + pd.const, grp, G)
        obj = np.where(mr.converged, obj, np.inf)
        feasible_count += int(np.sum(mr.converged))
        g = int(np.argmin(obj))
        if obj[g] < best_obj:
            sel = np.flatnonzero(grp == g)
            sub = pd.take(sel)
            sol = type(mr.sol)(*(getattr(mr.sol, f)[sel] for f in mr.sol.__dataclass_fields__))
            best_obj = float(obj[g])
            best_alloc = allocation_from(problem, sub, sol)
            best_dual = float(mr.dual[g])
    timings = {"solve": time.perf_counter() - t0}
    if best_alloc is None:
        if termination == "time_limit":
            return SolveResult.error(
                problem,
                method="enumerate",
                message="time limit before any feasible combination",
                termination="time_limit",
                timings_s=timings,
                seed=seed,
            )
        raise InfeasibleError(
            [
                f"all {n} devices together: none of the {total} combinations of allowed CKKS sets "
                "admits an allocation meeting every deadline within the bandwidth and server CPU "
                "capacities"
            ]
        )
    res = SolveResult.from_allocation(
        problem,
        method="enumerate",
        status="optimal" if termination == "converged" else "feasible",
        termination=termination,  # type: ignore[arg-type]
        lower_bound=None,
        iterations=total,
        nodes=feasible_count,
        timings_s=timings,
        seed=seed,
        options={"combinations": total},
        **best_alloc,
    )
    return res.replace(
        message=f"{total} combinations, {feasible_count} feasible; best "
        f"combination's dual value {best_dual:.12g}"
    )
