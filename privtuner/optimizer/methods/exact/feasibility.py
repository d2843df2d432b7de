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

from typing import Any

import numpy as np
from numpy.typing import NDArray

from privtuner.optimizer.core.problem import AllocationProblem
from privtuner.optimizer.methods.exact.continuous import (
    Caps,
    PairData,
    build_pairs,
    group_sum,
    pair_feasible,
    solve_pairs,
)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def resource_margin(
    pd_free: PairData,
    caps: Caps,
    slot: I64,
    n_slots: int,
    slot_group: I64,
    n_groups: int,
    iters: int = 48,
) -> tuple[F64, F64]:
    """max over a in [0,1] of sum_slots min_{pairs in slot} R(a) - 1, per group.

    ``pd_free``: energy-free pair data (``build_pairs(..., energy_free=True)``), individually
    feasible pairs only, sorted so that each slot's pairs are contiguous; ``slot`` maps pairs
    to slots (the alternatives of one device), ``slot_group`` slots to groups.
    Returns (margin [n_groups], a [n_groups]); margin > 0 certifies infeasibility. A group
    stops early, with a margin <= 0, as soon as the minimisers at some a fit both
    capacities (a feasible allocation: the primal certificate).
    """
    B, F = caps.bandwidth_hz, caps.server_cpu_hz
    pair_group = slot_group[slot]
    log_lam = np.full(pd_free.size, np.nan)
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
        sol = solve_pairs(sub, caps, a / B, (1.0 - a) / F, None if np.isnan(ll).any() else ll)
        log_lam[act] = sol.log_lam
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

    lo = np.zeros(n_groups)
    hi = np.ones(n_groups)
    value(np.full(n_groups, 0.5))
    value(lo)
    value(hi)
    x1 = hi - _GOLDEN * (hi - lo)
    x2 = lo + _GOLDEN * (hi - lo)
    f1, f2 = value(x1), value(x2)
    for _ in range(iters):
        if np.all(done):
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
    return best_v, best_a


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


def explain_infeasibility(problem: AllocationProblem) -> list[str]:
    """Reasons the problem is infeasible (empty list: no infeasibility detected).

    Each reason names the device (or all devices) and the constraint, with the numbers.
    """
    reasons: list[str] = []
    n = problem.n_devices
    c = problem.costs
    names = problem.set_names
    metric = c.privacy_metric
    allowed = problem.allowed
    for dev_i in np.flatnonzero(~allowed.any(axis=1)):
        reasons.append(_no_set_reason(problem, int(dev_i)))
    if reasons:
        return reasons
    pd, ok = _alone_pairs(problem)
    for i in range(n):
        sel = pd.dev == i
        if not np.any(ok[sel]):
            j = np.flatnonzero(sel)[np.argmin(pd.tmin_total[sel] - pd.tp[sel])]
            t_min = pd.tmin_total[j] + (problem.deadline_s - pd.tp[j])
            reasons.append(
                f"device {i}: deadline {problem.deadline_s:.4g} s unreachable: minimum latency "
                f"{t_min:.4g} s with all bandwidth ({problem.bandwidth_hz:.4g} Hz), max power "
                f"({problem.p_max_w[i]:.4g} W), f_max ({problem.f_max_hz[i]:.4g} Hz), all "
                f"server CPU ({problem.server_cpu_hz:.4g} Hz) and its fastest allowed set "
                f"{names[int(pd.kset[j])]}"
            )
    if reasons:
        return reasons
    keep = np.flatnonzero(ok)
    sub = pd.take(keep)
    caps = Caps(problem.bandwidth_hz, problem.server_cpu_hz)
    margin, a = resource_margin(sub, caps, sub.dev, n, np.zeros(n, dtype=np.int64), 1)
    if margin[0] > 1e-9:
        reasons.append(
            f"all {n} devices together: deadline {problem.deadline_s:.4g} s cannot be met by "
            f"all devices at once: weighting bandwidth by {a[0]:.3g} and server CPU by "
            f"{1 - a[0]:.3g}, their minimum needs add up to {1 + margin[0]:.4g} x the "
            f"capacities (B = {problem.bandwidth_hz:.4g} Hz, F_s = "
            f"{problem.server_cpu_hz:.4g} Hz) even with max power, f_max and the cheapest "
            f"sets ({metric} constraint on the sets included)"
        )
    return reasons


def _no_set_reason(problem: AllocationProblem, i: int) -> str:
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
    return f"device {i}: no allowed CKKS set: " + "; ".join(parts)
