"""Stage A of the alternating optimisation (spec 5.1): the CKKS set per device by branch-and-bound.

What is fixed in stage A
------------------------
With the uplink bandwidth ``b_n``, the transmit power ``p_n`` and the device CPU frequency
``f_n`` fixed (from stage B), the set ``k`` of device ``n`` determines

* its transmit time ``tau_nk = S_up,k / r_n`` with ``r_n = b_n log2(1 + p_n g_n / (N0 b_n))``,
* its downlink time ``S_down,k / r_dl`` and device compute time ``C_dev,k / f_n``,
* the smallest server CPU share that still meets the deadline (closed form)::

      f_s,nk = C_srv,k / (T_max - C_dev,k / f_n - tau_nk - S_down,k / r_dl)    (> 0 slack needed)

* hence its cost ``c_nk = w_E R (kappa_d C_dev,k f_n^2 + p_n tau_nk + kappa_s C_srv,k f_s,nk^2)
  - w_P Phi_k`` (spec section 4).

The server CPU is shared (``sum_n f_s,n <= F_s``), so stage A is a *multiple-choice knapsack*
(MCKP): one item per class (device), item weight ``f_s,nk``, capacity ``F_s``::

    min sum_nk c_nk x_nk   s.t.  sum_k x_nk = 1 (all n),  sum_nk f_s,nk x_nk <= F_s,  x binary.

:func:`solve_mckp_bnb` solves it exactly by best-first branch-and-bound. The bound of a node is
the LP relaxation of the MCKP (Sinha and Zoltners 1979, "The multiple-choice knapsack problem",
Oper. Res. 27(3)): per class the lower convex hull of the undominated items, then a greedy walk
over all hull segments in order of increasing slope ``dc/dw`` until the capacity is used up; at
most one class is fractional. The node branches on that fractional class, one child per
undominated item; a node is pruned when its bound cannot improve the incumbent by more than the
tolerance. :func:`solve_mckp_pulp` is the exact reference: the same MILP with PuLP (CBC).
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from privtuner.errors import SolverError
from privtuner.optimizer.core.model import pair_terms, smallest_server_cpu_hz, time_left_s
from privtuner.optimizer.core.problem import AllocationProblem
from privtuner.optimizer.methods.ao.options import AO_DEFAULTS

MckpStatus = Literal["optimal", "feasible", "infeasible"]
MckpTermination = Literal["gap_closed", "node_limit", "time_limit", "infeasible"]


@dataclass(frozen=True)
class MckpResult:
    """Solution of one multiple-choice knapsack (stage A).

    ``choice[n]`` is the chosen item (column index) of class ``n`` (``-1`` when infeasible);
    ``objective`` its total cost; ``lower_bound`` a valid lower bound on the optimum
    (``objective - lower_bound <= tolerance`` when ``status == "optimal"``); ``nodes`` the
    number of B&B nodes whose relaxation was solved (1 = the root only).
    """

    choice: NDArray[np.int64]
    objective: float
    lower_bound: float
    nodes: int
    status: MckpStatus
    termination: MckpTermination
    weight: float = math.nan
    time_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def _validate(
    cost: ArrayLike, weight: ArrayLike, capacity: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    c = np.asarray(cost, dtype=float)
    w = np.asarray(weight, dtype=float)
    if c.ndim != 2 or w.shape != c.shape:
        raise SolverError(
            f"MCKP cost and weight must be 2-D arrays of equal shape (got {c.shape} and {w.shape})"
        )
    ok = np.isfinite(c) & np.isfinite(w)
    if np.any(w[ok] < 0):
        raise SolverError("MCKP item weights must be >= 0 (got a negative weight)")
    if not (capacity >= 0 or math.isinf(capacity)) or math.isnan(capacity):
        raise SolverError(f"MCKP capacity must be >= 0 (got {capacity})")
    return c, w, ok


@dataclass
class _Hulls:
    """Per class: undominated items and the lower convex hull, plus the sorted hull segments."""

    undominated: list[NDArray[np.int64]]  # item indices, weight ascending, cost strictly desc.
    hull0: NDArray[np.int64]  # [n] first hull item (smallest weight, then smallest cost)
    seg_class: NDArray[np.int64]  # [S] class of each segment, sorted by slope
    seg_item: NDArray[np.int64]  # [S] item reached by the segment
    seg_dw: NDArray[np.float64]  # [S] weight increase (> 0)
    seg_dc: NDArray[np.float64]  # [S] cost change (< 0)


def _build_hulls(c: NDArray[np.float64], w: NDArray[np.float64], ok: NDArray[np.bool_]) -> _Hulls:
    n = c.shape[0]
    undominated: list[NDArray[np.int64]] = []
    hull0 = np.empty(n, dtype=np.int64)
    cls: list[int] = []
    item: list[int] = []
    dws: list[float] = []
    dcs: list[float] = []
    for i in range(n):
        idx = np.flatnonzero(ok[i])
        order = idx[np.lexsort((c[i, idx], w[i, idx]))]  # weight asc, then cost asc
        und: list[int] = []
        best = math.inf
        for k in order:
            if c[i, k] < best:
                und.append(int(k))
                best = c[i, k]
        undominated.append(np.array(und, dtype=np.int64))
        if not und:
            hull0[i] = -1
            continue
        # lower convex hull (Andrew's monotone chain), strictly convex: collinear points dropped
        hull: list[int] = []
        for k in und:
            while len(hull) >= 2:
                a, b = hull[-2], hull[-1]
                cross = (w[i, b] - w[i, a]) * (c[i, k] - c[i, a]) - (c[i, b] - c[i, a]) * (
                    w[i, k] - w[i, a]
                )
                if cross <= 0:
                    hull.pop()
                else:
                    break
            hull.append(k)
        hull0[i] = hull[0]
        for a, b in itertools.pairwise(hull):
            cls.append(i)
            item.append(b)
            dws.append(w[i, b] - w[i, a])
            dcs.append(c[i, b] - c[i, a])
    dw = np.array(dws, dtype=float)
    dc = np.array(dcs, dtype=float)
    seg_class = np.array(cls, dtype=np.int64)
    # slope order; within a class slopes strictly increase along the hull, and the stable sort
    # on (slope, class, position) keeps that order for exact ties.
    order = np.lexsort((np.arange(dw.size), seg_class, dc / np.where(dw > 0, dw, 1.0)))
    return _Hulls(
        undominated=undominated,
        hull0=hull0,
        seg_class=seg_class[order],
        seg_item=np.array(item, dtype=np.int64)[order],
        seg_dw=dw[order],
        seg_dc=dc[order],
    )


@dataclass
class _NodeLP:
    bound: float
    feasible: bool
    frac_class: int  # -1 when the relaxation is integral
    choice: NDArray[np.int64]  # integral part: each class at its last full hull item
    used: float  # weight of ``choice``


def _node_lp(
    h: _Hulls,
    c: NDArray[np.float64],
    w: NDArray[np.float64],
    capacity: float,
    fixed: NDArray[np.int64],
    cap_tol: float,
) -> _NodeLP:
    """LP relaxation of the MCKP with the classes ``fixed >= 0`` fixed to an item."""
    n = fixed.size
    rows = np.arange(n)
    choice = np.where(fixed >= 0, fixed, h.hull0)
    base_w = float(np.sum(w[rows, choice]))
    base_c = float(np.sum(c[rows, choice]))
    rem = capacity - base_w
    if rem < -cap_tol:
        return _NodeLP(math.inf, False, -1, choice, base_w)
    free_seg = fixed[h.seg_class] < 0
    dw = h.seg_dw[free_seg]
    dc = h.seg_dc[free_seg]
    cum = np.cumsum(dw)
    t = int(np.searchsorted(cum, max(rem, 0.0) + cap_tol, side="right"))
    bound = base_c + float(np.sum(dc[:t]))
    if t > 0:
        sel_cls = h.seg_class[free_seg][:t]
        sel_item = h.seg_item[free_seg][:t]
        # segments of a class appear in hull order, so the last assignment wins
        choice = choice.copy()
        choice[sel_cls] = sel_item
    used = base_w + (float(cum[t - 1]) if t > 0 else 0.0)
    frac = -1
    if t < dw.size:
        left = capacity - used
        if left > cap_tol:
            bound += float(dc[t]) * min(left / float(dw[t]), 1.0)
            frac = int(h.seg_class[free_seg][t])
    return _NodeLP(bound, True, frac, choice, used)


def _critical_price(
    h: _Hulls,
    fixed: NDArray[np.int64],
    capacity: float,
    c: NDArray[np.float64],
    w: NDArray[np.float64],
    cap_tol: float,
) -> float:
    """The LP's capacity price: minus the slope of the first free segment that does not fit."""
    n = fixed.size
    choice = np.where(fixed >= 0, fixed, h.hull0)
    rem = capacity - float(np.sum(w[np.arange(n), choice]))
    free_seg = fixed[h.seg_class] < 0
    dw = h.seg_dw[free_seg]
    dc = h.seg_dc[free_seg]
    t = int(np.searchsorted(np.cumsum(dw), max(rem, 0.0) + cap_tol, side="right"))
    if t >= dw.size:
        return 0.0
    return float(-dc[t] / dw[t])


def _improve(
    h: _Hulls,
    c: NDArray[np.float64],
    w: NDArray[np.float64],
    capacity: float,
    fixed: NDArray[np.int64],
    lp: _NodeLP,
    cap_tol: float,
) -> tuple[NDArray[np.int64], float, float]:
    """A feasible integer solution near the LP optimum: the LP's integral part, then the best
    fitting undominated item of the fractional class, then a greedy fill in slope order."""
    choice = lp.choice.copy()
    rows = np.arange(choice.size)
    used = lp.used
    j = lp.frac_class
    if j >= 0:
        left = capacity + cap_tol - (used - w[j, choice[j]])
        cand = h.undominated[j]
        fits = cand[w[j, cand] <= left]
        if fits.size:
            best = int(fits[np.argmin(c[j, fits])])
            used += w[j, best] - w[j, choice[j]]
            choice[j] = best
        # greedy fill over the remaining free segments, in slope order, at most a few thousand
        free_seg = (fixed[h.seg_class] < 0) & (h.seg_class != j)
        pos = np.flatnonzero(free_seg)
        blocked: set[int] = set()
        for s in pos[:4096]:
            i = int(h.seg_class[s])
            if i in blocked:
                continue
            k = int(h.seg_item[s])
            if w[i, k] <= w[i, choice[i]]:
                continue  # already at or past this hull point
            extra = w[i, k] - w[i, choice[i]]
            if used + extra <= capacity + cap_tol and c[i, k] < c[i, choice[i]]:
                used += extra
                choice[i] = k
            else:
                blocked.add(i)
    return choice, float(np.sum(c[rows, choice])), float(used)


@dataclass
class _Search:
    """The state of one :func:`solve_mckp_bnb`: the (reduced) item data, the hulls, the
    incumbent and the node count."""

    c: NDArray[np.float64]
    w: NDArray[np.float64]
    ok: NDArray[np.bool_]
    capacity: float
    cap_tol: float
    rel_tol: float
    abs_tol: float
    h: _Hulls = field(init=False)
    choice: NDArray[np.int64] = field(init=False)
    objective: float = math.inf
    weight: float = math.nan
    nodes: int = 0

    def __post_init__(self) -> None:
        self.h = _build_hulls(self.c, self.w, self.ok)

    def tol(self, v: float) -> float:
        return max(self.abs_tol, self.rel_tol * abs(v))

    def prunes(self, bound: float) -> bool:
        """A node of this bound cannot improve the incumbent by more than the tolerance."""
        return bound >= self.objective - self.tol(self.objective)

    def lp(self, fixed: NDArray[np.int64]) -> _NodeLP:
        self.nodes += 1
        return _node_lp(self.h, self.c, self.w, self.capacity, fixed, self.cap_tol)

    def offer(self, choice: NDArray[np.int64], obj: float, used: float) -> None:
        """A feasible integer solution: the new incumbent if it is better."""
        if obj < self.objective:
            self.choice, self.objective, self.weight = choice, obj, used


def solve_mckp_bnb(
    cost: ArrayLike,
    weight: ArrayLike,
    capacity: float,
    *,
    rel_tol: float = AO_DEFAULTS.bnb_rel_tol,
    abs_tol: float = 0.0,
    max_nodes: int = AO_DEFAULTS.bnb_max_nodes,
    time_limit_s: float | None = None,
    cap_rel_tol: float = 1e-12,
) -> MckpResult:
    """Exact multiple-choice knapsack by best-first branch-and-bound (module docstring).

    Parameters
    ----------
    cost, weight : ``[n_classes, n_items]``; an item whose cost or weight is not finite is not
        allowed (e.g. a CKKS set that misses the deadline or is not allowed for the device).
    capacity : the knapsack capacity (``math.inf`` for none).
    rel_tol, abs_tol : a node is pruned when ``bound >= incumbent - max(abs_tol, rel_tol |inc|)``.
    max_nodes, time_limit_s : limits; when hit, the incumbent is returned with status
        ``"feasible"`` and the best open bound as ``lower_bound``.
    cap_rel_tol : capacity slack accepted, relative to the capacity (float round-off).

    Returns an :class:`MckpResult`; status ``"infeasible"`` when some class has no allowed item or
    even the lightest items exceed the capacity.
    """
    t0 = time.perf_counter()
    c, w, ok = _validate(cost, weight, capacity)
    n = c.shape[0]
    empty = np.full(n, -1, dtype=np.int64)

    def infeasible(nodes: int, reason: str) -> MckpResult:
        return MckpResult(
            empty,
            math.inf,
            math.inf,
            nodes,
            "infeasible",
            "infeasible",
            time_s=time.perf_counter() - t0,
            info={"reason": reason},
        )

    no_item = np.flatnonzero(~ok.any(axis=1))
    if no_item.size:
        return infeasible(0, f"classes {no_item.tolist()} have no allowed item")
    cap_tol = cap_rel_tol * (capacity if math.isfinite(capacity) else 0.0)
    sr = _Search(
        np.where(ok, c, math.inf),
        np.where(ok, w, math.inf),
        ok,
        capacity,
        cap_tol,
        rel_tol,
        abs_tol,
    )
    fixed0 = np.full(n, -1, dtype=np.int64)
    root = sr.lp(fixed0)
    if not root.feasible:
        return infeasible(sr.nodes, "the lightest allowed items already exceed the capacity")
    sr.choice, sr.objective, sr.weight = _improve(sr.h, sr.c, sr.w, capacity, fixed0, root, cap_tol)
    root, eliminated = _reduce(sr, root)
    heap: list[tuple[float, int, NDArray[np.int64], _NodeLP]] = []
    if root.frac_class >= 0 and not sr.prunes(root.bound):
        heap.append((root.bound, 0, fixed0, root))
    termination = _branch(sr, heap, max_nodes, t0, time_limit_s)
    lower = min([sr.objective] + [item[0] for item in heap])
    status: MckpStatus = "optimal" if termination == "gap_closed" else "feasible"
    return MckpResult(
        choice=sr.choice.astype(np.int64),
        objective=float(sr.objective),
        lower_bound=float(lower),
        nodes=sr.nodes,
        status=status,
        termination=termination,
        weight=float(sr.weight),
        time_s=time.perf_counter() - t0,
        info={"root_bound": root.bound, "open_nodes": len(heap), "eliminated": eliminated},
    )


def _reduce(sr: _Search, root: _NodeLP) -> tuple[_NodeLP, int]:
    """Reduction by Lagrangian reduced costs at the root: with the LP's capacity price lam
    (minus the slope of the fractional segment), forcing item (n, k) raises the bound by
    ``rc_nk = (c_nk + lam w_nk) - min_k' (c_nk' + lam w_nk') >= 0``; items with
    ``root bound + rc_nk >= incumbent - tol`` cannot be in a better solution and are removed
    (the incumbent's items are kept). Returns the (new) root relaxation and the count."""
    if not (root.frac_class >= 0 and not sr.prunes(root.bound)):
        return root, 0
    n = sr.c.shape[0]
    fixed0 = np.full(n, -1, dtype=np.int64)
    lam = _critical_price(sr.h, fixed0, sr.capacity, sr.c, sr.w, sr.cap_tol)
    red = np.where(sr.ok, sr.c + lam * sr.w, math.inf)
    rc = red - np.min(red, axis=1, keepdims=True)
    drop = sr.ok & (root.bound + rc >= sr.objective - sr.tol(sr.objective))
    drop[np.arange(n), sr.choice] = False  # keep the incumbent representable
    eliminated = int(drop.sum())
    if not eliminated:
        return root, 0
    sr.ok = sr.ok & ~drop
    sr.c = np.where(sr.ok, sr.c, math.inf)
    sr.w = np.where(sr.ok, sr.w, math.inf)
    sr.h = _build_hulls(sr.c, sr.w, sr.ok)
    return sr.lp(fixed0), eliminated


def _branch(
    sr: _Search,
    heap: list[tuple[float, int, NDArray[np.int64], _NodeLP]],
    max_nodes: int,
    t0: float,
    time_limit_s: float | None,
) -> MckpTermination:
    """Best-first branch-and-bound from the open nodes ``heap`` (left holding the nodes still
    open at a limit): branch on the fractional class, one child per undominated item."""
    n = sr.c.shape[0]
    counter = itertools.count(1)
    while heap:
        bound, _, fixed, lp = heapq.heappop(heap)
        if sr.prunes(bound):
            heap.clear()
            return "gap_closed"
        if sr.nodes >= max_nodes or (
            time_limit_s is not None and time.perf_counter() - t0 > time_limit_s
        ):
            heapq.heappush(heap, (bound, next(counter), fixed, lp))
            return "node_limit" if sr.nodes >= max_nodes else "time_limit"
        j = lp.frac_class
        for k in sr.h.undominated[j]:
            child = fixed.copy()
            child[j] = k
            clp = sr.lp(child)
            if not clp.feasible:
                continue
            if clp.frac_class < 0:  # integral relaxation: optimal for this node
                sr.offer(clp.choice, float(np.sum(sr.c[np.arange(n), clp.choice])), clp.used)
                continue
            sr.offer(*_improve(sr.h, sr.c, sr.w, sr.capacity, child, clp, sr.cap_tol))
            if not sr.prunes(clp.bound):
                heapq.heappush(heap, (clp.bound, next(counter), child, clp))
    return "gap_closed"


def greedy_mckp(cost: ArrayLike, weight: ArrayLike, capacity: float) -> MckpResult:
    """The B&B's root heuristic alone (LP rounding + greedy fill): no branching, no certificate.

    Used by the ``ao_greedy_theta`` baseline (AO without B&B).
    """
    t0 = time.perf_counter()
    c, w, ok = _validate(cost, weight, capacity)
    n = c.shape[0]
    empty = np.full(n, -1, dtype=np.int64)
    if not ok.any(axis=1).all():
        return MckpResult(empty, math.inf, math.inf, 0, "infeasible", "infeasible")
    c = np.where(ok, c, math.inf)
    w = np.where(ok, w, math.inf)
    cap_tol = 1e-12 * (capacity if math.isfinite(capacity) else 0.0)
    h = _build_hulls(c, w, ok)
    fixed0 = np.full(n, -1, dtype=np.int64)
    root = _node_lp(h, c, w, capacity, fixed0, cap_tol)
    if not root.feasible:
        return MckpResult(empty, math.inf, math.inf, 1, "infeasible", "infeasible")
    choice, obj, used = _improve(h, c, w, capacity, fixed0, root, cap_tol)
    return MckpResult(
        choice,
        obj,
        root.bound,
        1,
        "feasible",
        "gap_closed",
        weight=used,
        time_s=time.perf_counter() - t0,
    )


def solve_mckp_pulp(
    cost: ArrayLike,
    weight: ArrayLike,
    capacity: float,
    *,
    time_limit_s: float | None = None,
) -> MckpResult:
    """Reference: the same MCKP as a MILP solved by PuLP with CBC (binary ``x_nk``).

    Costs are shifted per class (by the class's cheapest item) and scaled (by the median shifted
    cost), weights by the capacity, so that CBC's absolute tolerances are meaningful; the
    returned objective is recomputed from the original data.
    """
    import pulp

    t0 = time.perf_counter()
    c, w, ok = _validate(cost, weight, capacity)
    n = c.shape[0]
    empty = np.full(n, -1, dtype=np.int64)
    if not ok.any(axis=1).all():
        return MckpResult(empty, math.inf, math.inf, 0, "infeasible", "infeasible")
    # exactly one item per class: shifting a class's costs by a constant changes no decision
    shift = np.min(np.where(ok, c, math.inf), axis=1)
    cs = np.where(ok, c - shift[:, None], 0.0)
    pos = cs[ok & (cs > 0)]
    c_scale = float(np.median(pos)) if pos.size else 1.0
    w_scale = capacity if (math.isfinite(capacity) and capacity > 0) else 1.0
    prob = pulp.LpProblem("mckp", pulp.LpMinimize)
    x = {
        (i, k): pulp.LpVariable(f"x_{i}_{k}", cat="Binary")
        for i in range(n)
        for k in range(c.shape[1])
        if ok[i, k]
    }
    prob += pulp.lpSum(float(cs[i, k] / c_scale) * v for (i, k), v in x.items())
    for i in range(n):
        prob += pulp.lpSum(v for (ii, _), v in x.items() if ii == i) == 1
    if math.isfinite(capacity):
        prob += pulp.lpSum(float(w[i, k] / w_scale) * v for (i, k), v in x.items()) <= float(
            capacity / w_scale
        )
    solver = pulp.PULP_CBC_CMD(msg=False, gapRel=0.0, gapAbs=0.0, timeLimit=time_limit_s)
    prob.solve(solver)
    status_txt = pulp.LpStatus[prob.status]
    if status_txt != "Optimal":
        return MckpResult(
            empty,
            math.inf,
            math.inf,
            0,
            "infeasible",
            "infeasible",
            time_s=time.perf_counter() - t0,
            info={"pulp_status": status_txt},
        )
    choice = empty.copy()
    for (i, k), v in x.items():
        if (v.value() or 0.0) > 0.5:
            choice[i] = k
    rows = np.arange(n)
    obj = float(np.sum(c[rows, choice]))
    return MckpResult(
        choice,
        obj,
        obj,
        0,
        "optimal",
        "gap_closed",
        weight=float(np.sum(w[rows, choice])),
        time_s=time.perf_counter() - t0,
        info={"pulp_status": status_txt},
    )


@dataclass(frozen=True)
class StageAItems:
    """The MCKP of stage A for fixed ``(b, p, f)`` (module docstring), arrays ``[n, K]``.

    ``cost`` is the objective term of device n with set k (``inf`` if k is not allowed or
    misses the deadline even with all the server CPU), ``server_cpu_hz`` the smallest server
    CPU meeting the deadline (the MCKP weight); ``capacity`` is F_s.
    """

    cost: NDArray[np.float64]
    server_cpu_hz: NDArray[np.float64]
    capacity: float


def stage_a_items(
    problem: AllocationProblem,
    bandwidth_hz: NDArray[np.float64],
    tx_power_w: NDArray[np.float64],
    cpu_hz: NDArray[np.float64],
) -> StageAItems:
    """Cost and server-CPU weight of every (device, set) pair for fixed ``(b, p, f)``.

    The pair terms of spec section 4 from the kernel (``core.model.pair_terms``): ``tau_nk =
    S_up,k / r_n``, the smallest server CPU meeting the deadline ``f_s,nk = C_srv,k / (T_max -
    C_dev,k/f_n - tau_nk - S_down,k/r_dl)`` (``core.model.smallest_server_cpu_hz``), and
    ``c_nk = w_E R (kappa_d C_dev,k f_n^2 + p_n tau_nk + kappa_s C_srv,k f_s,nk^2) - w_P Phi_k``.
    """
    c = problem.costs
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = pair_terms(problem, bandwidth_hz, tx_power_w, cpu_hz, problem.server_cpu_hz)
        fs = smallest_server_cpu_hz(problem, t)
        left = time_left_s(problem.deadline_s, t.device_s, t.uplink_s, t.downlink_s)
        c_srv = c.server_cycles[None, :]
        ok = (
            problem.allowed
            & np.isfinite(t.uplink_s)
            & np.isfinite(t.device_s)
            & ((left > 0) | ((c_srv == 0) & (left >= 0)))
        )
        ok &= fs <= problem.server_cpu_hz
        energy = pair_terms(problem, bandwidth_hz, tx_power_w, cpu_hz, fs).energy_j
        cost = problem.energy_weight * problem.rounds * energy + problem.set_constant[None, :]
    cost = np.where(ok, cost, math.inf)
    fs = np.where(ok, fs, math.inf)
    return StageAItems(cost=cost, server_cpu_hz=fs, capacity=float(problem.server_cpu_hz))
