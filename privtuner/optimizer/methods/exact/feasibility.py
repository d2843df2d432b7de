"""Detect and explain infeasibility before solving (spec section 4 constraints).

Three causes, each named with the device and the constraint:

1. no allowed CKKS set (privacy floor, security or precision above every set);
2. a device's deadline is unreachable even with all bandwidth B, maximum power, f_max, all
   server CPU F_s and its fastest allowed set;
3. joint: each device can meet its deadline alone, not all together. With the energy removed,
   device n with set k needs a region R_nk of (bandwidth, server CPU) pairs (convex). The
   devices fit iff for every weight a in [0, 1]
   ``sum_n min_k min_{R_nk} (a b/B + (1-a) f_s/F_s) <= 1`` (separating hyperplane);
   for fixed sets this test is exact, with a choice of sets it is the convex relaxation, so
   a positive margin certifies infeasibility.

The inner minimisations are the Lagrangian subproblems of ``continuous.py`` with zero energy
weight and prices (a/B, (1-a)/F_s); the margin is concave in a (a minimum of linear
functions), maximised by golden-section search.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from privtuner.optimizer.core.problem import AllocationProblem
from privtuner.optimizer.methods.exact.continuous import (
    Caps,
    PairData,
    PairSolution,
    Roots,
    build_pairs,
    group_sum,
    pair_feasible,
    solve_pairs,
)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0
#: Pairs per ``solve_pairs`` call under a time limit (the clock is read between blocks).
BLOCK_PAIRS = 50_000


class _OutOfTime(Exception):
    """The time limit passed during a margin evaluation."""


def _solve_pairs_by(
    t_end: float | None,
    pd: PairData,
    caps: Caps,
    mu: F64,
    nu: F64,
    ll: F64 | None,
    warm: Roots | None = None,
) -> PairSolution:
    """:func:`solve_pairs`, in blocks of :data:`BLOCK_PAIRS` pairs when ``t_end`` is set,
    raising :class:`_OutOfTime` between blocks once it passes. Each pair's subproblem is
    solved on its own (elementwise Newton), so the blocks give the same numbers."""
    if t_end is None or pd.size <= BLOCK_PAIRS:
        return solve_pairs(pd, caps, mu, nu, ll, warm)
    parts = []
    for start in range(0, pd.size, BLOCK_PAIRS):
        if time.perf_counter() > t_end:
            raise _OutOfTime
        idx = np.arange(start, min(start + BLOCK_PAIRS, pd.size))
        parts.append(
            solve_pairs(
                pd.take(idx),
                caps,
                mu[idx],
                nu[idx],
                None if ll is None else ll[idx],
                None if warm is None else warm.take(idx),
            )
        )
    return PairSolution(
        **{
            f.name: np.concatenate([getattr(q, f.name) for q in parts])
            for f in fields(PairSolution)
        }
    )


def resource_margin(
    pd_free: PairData,
    caps: Caps,
    slot: I64,
    n_slots: int,
    slot_group: I64,
    n_groups: int,
    iters: int = 48,
    t_end: float | None = None,
    on_first: Callable[[PairSolution], None] | None = None,
) -> tuple[F64, F64]:
    """max over a in [0,1] of sum_slots min_{pairs in slot} R(a) - 1, per group.

    ``pd_free``: energy-free pair data (``build_pairs(..., energy_free=True)``), individually
    feasible pairs only, sorted so that each slot's pairs are contiguous; ``slot`` maps pairs
    to slots (the alternatives of one device), ``slot_group`` slots to groups.
    Returns (margin [n_groups], a [n_groups]); margin > 0 certifies infeasibility. A group
    stops early, with a margin <= 0, as soon as the minimisers at some a fit both
    capacities (a feasible allocation: the primal certificate). ``t_end`` (a
    :func:`time.perf_counter` time) stops the search early: the margins so far are still
    valid (each evaluated a is a separating hyperplane), only less tight. ``on_first`` gets
    the solution of every pair at the first weight, a = 1/2.
    """
    B, F = caps.bandwidth_hz, caps.server_cpu_hz
    pair_group = slot_group[slot]
    log_lam = np.full(pd_free.size, np.nan)
    roots = Roots.empty(pd_free.size)  # warm starts of the uplink root finds
    done = np.zeros(n_groups, dtype=bool)
    best_v = np.full(n_groups, -np.inf)
    best_a = np.zeros(n_groups)

    def value(a_grp: F64) -> F64:
        """Margin at a (per group; NaN for finished groups). Marks feasible groups done."""
        act = np.flatnonzero(~done[pair_group])
        out = np.full(n_groups, np.nan)
        if act.size == 0:
            return out
        sub = pd_free.take(act)
        a = a_grp[pair_group[act]]
        ll = log_lam[act]
        sol = _solve_pairs_by(
            t_end,
            sub,
            caps,
            a / B,
            (1.0 - a) / F,
            None if np.isnan(ll).any() else ll,
            roots.take(act),
        )
        log_lam[act] = sol.log_lam
        roots.put(act, sol)
        if on_first is not None and act.size == pd_free.size and np.all(a == 0.5):
            on_first(sol)
        sl = slot[act]
        starts = np.flatnonzero(np.r_[True, sl[1:] != sl[:-1]])
        per_slot = np.minimum.reduceat(sol.value, starts)
        counts = np.diff(np.r_[starts, act.size])
        owner = np.repeat(np.arange(starts.size), counts)
        first = np.minimum.reduceat(
            np.where(sol.value <= per_slot[owner], np.arange(act.size), act.size), starts
        )
        g = pair_group[act][starts]
        val = group_sum(per_slot, g, n_groups) - 1.0
        used_b = group_sum(sol.b[first], g, n_groups)
        used_f = group_sum(sol.fs[first], g, n_groups)
        present = np.zeros(n_groups, dtype=bool)
        present[g] = True
        fits = present & (used_b <= B) & (used_f <= F) & (val <= 0)
        out[present] = val[present]
        better = present & (val > best_v)
        best_v[better] = val[better]
        best_a[better] = a_grp[better]
        done[fits] = True
        return out

    try:
        _golden_section(value, n_groups, iters, done, t_end)
    except _OutOfTime:
        pass
    return best_v, best_a


def _golden_section(
    value: Any, n_groups: int, iters: int, done: NDArray[np.bool_], t_end: float | None
) -> None:
    """Maximise the concave margin per group (``value`` records the best) by golden-section
    search on [0, 1], after the points 0.5, 0 and 1; stops when every group is done or at
    ``t_end``."""

    def out_of_time() -> bool:
        return t_end is not None and time.perf_counter() > t_end

    lo = np.zeros(n_groups)
    hi = np.ones(n_groups)
    for a0 in (0.5, 0.0, 1.0):
        value(np.full(n_groups, a0))
        if out_of_time():
            return
    x1 = hi - _GOLDEN * (hi - lo)
    x2 = lo + _GOLDEN * (hi - lo)
    f1 = value(x1)
    if out_of_time():
        return
    f2 = value(x2)
    for _ in range(iters):
        if np.all(done) or out_of_time():
            break
        left = f1 >= f2  # maximum in [lo, x2]
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        x2n = np.where(left, x1, lo + _GOLDEN * (hi - lo))
        x1n = np.where(left, hi - _GOLDEN * (hi - lo), x2)
        fkeep = np.where(left, f1, f2)
        fnew = value(np.where(left, x1n, x2n))
        f1 = np.where(left, fnew, fkeep)
        f2 = np.where(left, fkeep, fnew)
        x1, x2 = x1n, x2n


def fixed_set_margin(
    problem: AllocationProblem, sets_by_group: I64, caps: Caps | None = None
) -> F64:
    """Resource margin of fixed-set problems: ``sets_by_group`` ``[n_groups, n_devices]``.

    Exact: margin <= 0 iff the group's sets admit a feasible allocation (all pairs must be
    individually feasible; a group with an individually infeasible pair gets +inf).
    """
    sets_by_group = np.atleast_2d(np.asarray(sets_by_group, dtype=np.int64))
    G, n = sets_by_group.shape
    caps = caps or Caps(problem.bandwidth_hz, problem.server_cpu_hz)
    dev = np.tile(np.arange(n), G)
    grp = np.repeat(np.arange(G), n)
    pd = build_pairs(problem, dev, sets_by_group.ravel(), grp=grp, energy_free=True)
    ok = pair_feasible(pd)
    bad_group = np.zeros(G, dtype=bool)
    bad_group[grp[~ok]] = True
    keep = np.flatnonzero(~bad_group[grp])
    margin = np.full(G, np.inf)
    if keep.size:
        sub = pd.take(keep)
        slot = np.arange(keep.size)
        m, _ = resource_margin(sub, caps, slot, keep.size, grp[keep], G)
        margin[~bad_group] = m[~bad_group]
    return margin


def _alone_pairs(problem: AllocationProblem) -> tuple[Any, NDArray[np.bool_]]:
    """Every allowed (device, set) pair, and whether it meets the deadline with all of the
    bandwidth and server CPU to itself, max power and f_max."""
    n, K = problem.n_devices, problem.n_sets
    dev = np.repeat(np.arange(n), K)
    ks = np.tile(np.arange(K), n)
    mask = problem.allowed.ravel()
    pd = build_pairs(problem, dev[mask], ks[mask], energy_free=True)
    return pd, pair_feasible(pd)


def devices_in_outage(problem: AllocationProblem) -> NDArray[np.int64]:
    """Indices of devices that cannot meet the deadline even alone (all bandwidth and server
    CPU, max power, f_max, fastest allowed set) or have no allowed set: deep fades at the cell
    edge are power-limited, r -> p_max g / (N0 ln 2) as b -> inf. A planner schedules them
    out (``problem.subset``) or relaxes the deadline."""
    pd, ok = _alone_pairs(problem)
    served = np.zeros(problem.n_devices, dtype=bool)
    served[pd.dev[ok]] = True
    return np.flatnonzero(~served).astype(np.int64)


#: The last :func:`explain_infeasibility`'s joint check at weight a = 1/2: (its problem,
#: the pairs' devices and sets, their energy-free solution). ``exact``'s first margin probe
#: is the same subproblems of a subset of these pairs (:func:`half_probe`).
_HALF_PROBE: list[Any] = [None]


def half_probe(problem: AllocationProblem, dev: I64, kset: I64) -> PairSolution | None:
    """The energy-free solutions at a = 1/2 (prices 1/(2B), 1/(2 F_s)) of the pairs
    ``(dev, kset)`` of ``problem`` from the last :func:`explain_infeasibility` of that same
    problem object (each pair's subproblem is its own: the numbers of a new solve), or None
    when it did not solve them all."""
    kept = _HALF_PROBE[0]
    if kept is None or kept[0]() is not problem:
        return None
    _, k_dev, k_set, sol = kept
    where = np.full((problem.n_devices, problem.n_sets), -1, dtype=np.int64)
    where[k_dev, k_set] = np.arange(k_dev.size)
    idx = where[dev, kset]
    return sol.take(idx) if bool(np.all(idx >= 0)) else None


#: Device reasons listed one by one up to this many; more devices are summarised by a count
#: line and the worst ones (``max_listed=None`` lists all: ``privtuner solve --verbose``).
MAX_LISTED_DEVICES = 5


def explain_infeasibility(
    problem: AllocationProblem,
    time_limit_s: float | None = None,
    *,
    max_listed: int | None = MAX_LISTED_DEVICES,
) -> list[str]:
    """Reasons the problem is infeasible (empty list: no infeasibility detected).

    Each reason names the device (or all devices) and the constraint, with the numbers.
    More than ``max_listed`` devices failing the same check give one count line and the
    ``max_listed`` worst devices. ``time_limit_s`` bounds the joint check (cause 3), whose
    search then stops early (it may then miss a joint infeasibility, never invent one); the
    per-device checks are vectorised (linear in the number of devices).
    """
    t_end = None if time_limit_s is None else time.perf_counter() + time_limit_s
    n = problem.n_devices
    no_set = np.flatnonzero(~problem.allowed.any(axis=1))
    if no_set.size:
        return _no_set_reasons(problem, no_set, max_listed)
    pd, ok = _alone_pairs(problem)
    unreachable = _deadline_reasons(problem, pd, ok, max_listed)
    if unreachable:
        return unreachable
    keep = np.flatnonzero(ok)
    sub = pd.take(keep)
    caps = Caps(problem.bandwidth_hz, problem.server_cpu_hz)

    def keep_half(sol: PairSolution) -> None:
        _HALF_PROBE[0] = (weakref.ref(problem), sub.dev, sub.kset, sol)

    margin, a = resource_margin(
        sub, caps, sub.dev, n, np.zeros(n, dtype=np.int64), 1, t_end=t_end, on_first=keep_half
    )
    if margin[0] > 1e-9:
        return [
            f"all {n} devices together: deadline {problem.deadline_s:.4g} s cannot be met by "
            f"all devices at once: weighting bandwidth by {a[0]:.3g} and server CPU by "
            f"{1 - a[0]:.3g}, their minimum needs add up to {1 + margin[0]:.4g} x the "
            f"capacities (B = {problem.bandwidth_hz:.4g} Hz, F_s = "
            f"{problem.server_cpu_hz:.4g} Hz) even with max power, f_max and the cheapest "
            f"sets ({problem.costs.privacy_metric} constraint on the sets included)"
        ]
    return []


def _no_set_reasons(
    problem: AllocationProblem, devices: NDArray[np.int64], max_listed: int | None
) -> list[str]:
    why = _no_set_reason(problem)
    if max_listed is None or devices.size <= max_listed:
        return [f"device {int(i)}: no allowed CKKS set: {why}" for i in devices]
    first = ", ".join(str(int(i)) for i in devices[:max_listed])
    return [
        f"{devices.size} of {problem.n_devices} devices have no allowed CKKS set (devices "
        f"{first}, ...): {why}"
    ]


def _deadline_reasons(
    problem: AllocationProblem, pd: PairData, ok: NDArray[np.bool_], max_listed: int | None
) -> list[str]:
    """Devices that miss the deadline even alone, each with its minimum latency (its
    fastest allowed set); summarised beyond ``max_listed`` devices (the slowest listed)."""
    n = problem.n_devices
    served = np.zeros(n, dtype=bool)
    served[pd.dev[ok]] = True
    out = np.flatnonzero(~served)
    if out.size == 0:
        return []
    # per device, the pair with the least latency beyond its budget (pairs grouped by device)
    order = np.lexsort((pd.tmin_total - pd.tp, pd.dev))
    first = order[np.r_[True, pd.dev[order][1:] != pd.dev[order][:-1]]]
    best = np.zeros(n, dtype=np.int64)
    best[pd.dev[first]] = first
    j = best[out]
    t_min = pd.tmin_total[j] + (problem.deadline_s - pd.tp[j])
    listed = np.arange(out.size)
    head: list[str] = []
    if max_listed is not None and out.size > max_listed:
        listed = np.sort(np.argsort(-t_min, kind="stable")[:max_listed])
        head = [
            f"{out.size} of {n} devices cannot meet the deadline {problem.deadline_s:.4g} s "
            f"even alone (all bandwidth, max power, f_max, all server CPU, fastest allowed "
            f"set); the {max_listed} slowest follow (all: privtuner solve --verbose)"
        ]
    names = problem.set_names
    return head + [
        f"device {int(out[m])}: deadline {problem.deadline_s:.4g} s unreachable: minimum "
        f"latency {t_min[m]:.4g} s with all bandwidth ({problem.bandwidth_hz:.4g} Hz), max "
        f"power ({problem.p_max_w[out[m]]:.4g} W), f_max ({problem.f_max_hz[out[m]]:.4g} Hz), "
        f"all server CPU ({problem.server_cpu_hz:.4g} Hz) and its fastest allowed set "
        f"{names[int(pd.kset[j[m]])]}"
        for m in listed
    ]


def _no_set_reason(problem: AllocationProblem) -> str:
    """Why no CKKS set is allowed (the same for every device: set-level requirements)."""
    c = problem.costs
    metric = c.privacy_metric
    parts = []
    if problem.objective_kind == "constrained":
        best = float(np.max(c.privacy))
        if best < problem.privacy_min:
            parts.append(
                f"privacy requirement {metric} >= {problem.privacy_min:g} is above every set "
                f"(best {metric} {best:g}, set {c.params[int(np.argmax(c.privacy))].name})"
            )
    sec = problem.meta.get("min_security_bits")
    if sec is not None and float(np.max(c.security_bits)) < sec:
        parts.append(
            f"minimum security {sec:g} bits above every set (best "
            f"{float(np.max(c.security_bits)):g})"
        )
    prec = problem.meta.get("min_precision_bits")
    if prec is not None and float(np.max(c.precision_bits)) < prec:
        parts.append(
            f"minimum precision {prec:g} bits above every set (best "
            f"{float(np.max(c.precision_bits)):g})"
        )
    if not parts:
        parts.append("the security/precision/privacy requirements together exclude every set")
    return "; ".join(parts)
