"""Starting points shared by the methods (``ao`` and the baselines of spec 5.3).

* the *equal point*: equal bandwidth ``B/n`` and server-CPU shares ``F_s/n``, maximum power,
  ``f_max`` (:func:`equal_point`), and the latency of every (device, set) pair there;
* each device's fastest allowed set there (:func:`fastest_sets`), or a seeded random one;
* the optimal continuous allocation for fixed sets (:func:`fixed_set_optimum`: spec 5.2's
  fixed-set convex problem, by ``exact``'s market clearing; stage B's fractional programming
  if that fails).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from privtuner.optimizer.core.allocation import Allocation
from privtuner.optimizer.core.model import pair_terms
from privtuner.optimizer.core.problem import AllocationProblem
from privtuner.optimizer.methods.ao.fp import StageB
from privtuner.optimizer.methods.exact.continuous import (
    Caps,
    build_pairs,
    clear_markets,
    pair_feasible,
)
from privtuner.optimizer.methods.exact.feasibility import fixed_set_margin
from privtuner.optimizer.methods.exact.method import allocation_from

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


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
    """``[n, K]`` latency of every (device, set) pair at the equal point (inf if not allowed);
    the pair terms of the kernel (``core.model.pair_terms``)."""
    b, p, f, fs = equal_point(problem)
    return np.where(problem.allowed, pair_terms(problem, b, p, f, fs).latency_s, np.inf)


def fastest_sets(problem: AllocationProblem) -> I64:
    """Each device's allowed set of least latency at the equal point."""
    return np.asarray(np.argmin(equal_point_latency_s(problem), axis=1), dtype=np.int64)


def random_sets(problem: AllocationProblem, rng: np.random.Generator) -> I64:
    """A uniformly random allowed set per device (seeded)."""
    out = np.empty(problem.n_devices, dtype=np.int64)
    for i in range(problem.n_devices):
        out[i] = int(rng.choice(np.flatnonzero(problem.allowed[i])))
    return out


def fixed_set_optimum(problem: AllocationProblem, sets: I64) -> tuple[Allocation | None, str]:
    """Optimal continuous allocation for fixed ``sets`` (spec 5.2's convex problem).

    Uses ``continuous.clear_markets`` (``exact``'s fixed-set solver); falls back to stage B's
    fractional programming if its allocation is not feasible. Returns (allocation, "") or
    (None, reason).
    """
    n = problem.n_devices
    sets = np.asarray(sets, dtype=np.int64)
    caps = Caps(problem.bandwidth_hz, problem.server_cpu_hz)
    margin = float(fixed_set_margin(problem, sets[None, :], caps)[0])
    if margin == np.inf:  # some device misses the deadline with its set even alone
        return None, _too_slow_alone(problem, sets)
    if not margin <= 1e-12:
        return None, (
            "no allocation meets every deadline within the bandwidth and server-CPU "
            "capacities with these sets (resource margin "
            f"{margin:.3g} > 0)"
        )
    pd = build_pairs(problem, np.arange(n), sets, grp=np.zeros(n, dtype=np.int64))
    mr = clear_markets(pd, caps, 1, None, None)
    a = allocation_from(problem, pd, mr.sol)
    alloc = Allocation(sets, a["bandwidth_hz"], a["tx_power_w"], a["cpu_hz"], a["server_cpu_hz"])
    if problem.evaluate(**alloc.as_kwargs()).is_feasible():
        return alloc, ""
    r = StageB(problem).solve(sets, None)
    if r.allocation is not None:
        return r.allocation, ""
    return None, f"fixed-set solve failed: {r.message}"


def _too_slow_alone(problem: AllocationProblem, sets: I64) -> str:
    """Why fixed ``sets`` are infeasible when some device misses the deadline with its set
    even alone (all bandwidth and server CPU, max power, f_max; the infinite margin of
    ``feasibility.fixed_set_margin``): those devices, the slowest one's set and its minimum
    latency against the deadline."""
    n = problem.n_devices
    pd = build_pairs(problem, np.arange(n), sets, energy_free=True)
    slow = np.flatnonzero(~pair_feasible(pd))
    if slow.size == 0:  # pragma: no cover - an infinite margin means such a device
        return "no allocation meets every deadline with these sets"
    worst = int(slow[np.argmax(pd.tmin_total[slow] - pd.tp[slow])])
    t_min = float(pd.tmin_total[worst] + (problem.deadline_s - pd.tp[worst]))
    listed = ", ".join(str(int(i)) for i in slow[:12]) + (", ..." if slow.size > 12 else "")
    who = f"device {listed}" if slow.size == 1 else f"devices {listed} ({slow.size} of {n})"
    return (
        f"{who} cannot meet the deadline {problem.deadline_s:.4g} s with these sets even "
        "alone (all bandwidth and server CPU, max power, f_max); "
        + ("the slowest, " if slow.size > 1 else "")
        + f"device {worst} with {problem.set_names[int(sets[worst])]}, needs at least "
        f"{t_min:.4g} s per round"
    )
