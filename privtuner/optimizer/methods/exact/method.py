"""``method: exact`` (spec 5.2): dual decomposition + branch-and-bound, with a certificate.

Dualising the two coupling constraints (bandwidth price mu, server-CPU price nu) splits the
mixed problem into per-device subproblems that include the device's choice of CKKS set::

    D(mu, nu) = sum_n min_{k allowed} L_nk(mu, nu) - mu B - nu F_s   <=   optimum

for ANY prices mu, nu >= 0 (weak duality; L_nk from ``continuous.solve_pairs``). The method:

1. prices from the clearing prices of an assignment; the dual argmin sets at those prices
   form the next assignment, whose fixed-set convex problem is solved exactly
   (``continuous.clear_markets``): a feasible allocation, an upper bound. Repeat until the
   assignment repeats. If the argmin assignment clears both markets at its own prices the
   dual equals the primal: lower bound = upper bound (with many devices the duality gap is
   tiny, Shapley-Folkman).
2. branch-and-bound on top closes what remains: best-first over nodes (allowed sets per
   device), branching on the device whose set choice is most ambiguous at the node's best
   prices (smallest Lagrangian difference between its two best sets), one child per set;
   node lower bound = the dual restricted to the node's sets, maximised over the prices
   (the clearing fixed point, then a cutting-plane ascent on the concave dual, see
   ``_Exact.ascend``). A node whose argmin clears its markets, or whose lower bound reaches
   the incumbent, is closed.

The result carries ``lower_bound``, the objective (upper bound) and the relative ``gap``.
Sets dominated in every cost (device cycles, server cycles, uplink and downlink bits) and
in privacy term by another allowed set are dropped first: they can never do better.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from privtuner.errors import InfeasibleError
from privtuner.optimizer.core.model import power_for_uplink_w, smallest_frequency_hz
from privtuner.optimizer.core.options import DEFAULTS
from privtuner.optimizer.core.problem import AllocationProblem
from privtuner.optimizer.core.registry import register_solver
from privtuner.optimizer.core.result import SolveResult
from privtuner.optimizer.methods.exact.continuous import (
    Caps,
    MarketResult,
    PairData,
    PairSolution,
    Roots,
    build_pairs,
    clear_markets,
    concat_pairs,
    pair_feasible,
    solve_pairs,
)
from privtuner.optimizer.methods.exact.feasibility import (
    fixed_set_margin,
    half_probe,
    resource_margin,
)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


def nondominated_mask(problem: AllocationProblem) -> NDArray[np.bool_]:
    """``[n, K]``: allowed sets not dominated by another allowed set of the same device.

    k is dominated by j if every cost of j is <= that of k and j's objective constant
    (-w_P Phi) is <= k's, with at least one strict inequality (ties keep the lower index).
    """
    c = problem.costs
    cols = np.stack(
        [c.device_cycles, c.server_cycles, c.uplink_bits, c.downlink_bits, problem.set_constant],
        axis=1,
    )
    le = np.all(cols[:, None, :] <= cols[None, :, :], axis=2)  # le[j, k]: j <= k everywhere
    lt = np.any(cols[:, None, :] < cols[None, :, :], axis=2)
    K = c.n_sets
    idx = np.arange(K)
    dom = le & (lt | (idx[:, None] < idx[None, :]))  # dom[j, k]: j dominates k
    np.fill_diagonal(dom, False)
    out = problem.allowed.copy()
    rows, inv = np.unique(problem.allowed, axis=0, return_inverse=True)
    for r, row in enumerate(rows):
        d = dom & row[:, None] & row[None, :]
        keep = row & ~np.any(d, axis=0)
        out[np.ravel(inv) == r] = keep
    return out


#: A resource margin above this proves infeasibility (``feasibility.resource_margin``: the
#: priced minimum demands exceed the priced capacities); between 0 and it, nothing is proved.
PROOF_MARGIN = 1e-9
#: A lower bound may exceed the incumbent by this (relative) rounding before it is reported as
#: an invalid certificate: the dual values come from safeguarded Newton solves and market
#: clearing, exact to ~1e-9 relative (measured: 1.1e-9 on a bandwidth-bound instance of the
#: conformance bank), so 1e-7, the bound noise the project's tolerance table allows
#: (``optimizer.testing.tolerances``, ``bound_rel``); a real bug overshoots by far more.
CERTIFICATE_SLACK_REL = 1e-7

FixedStatus = Literal["optimal", "feasible", "infeasible", "unsolved"]


@dataclass(frozen=True)
class ExactOptions:
    """Own options of ``exact``: ``max_nodes`` (branch-and-bound nodes) and ``max_ascent``
    (dual evaluations of the cutting-plane ascent per node; 0: the price fixed point's
    bound alone)."""

    max_nodes: int = 100_000
    max_ascent: int = 40


EXACT_DEFAULTS = ExactOptions()


@dataclass
class FixedSolution:
    """A fixed-set problem's outcome.

    ``status``: ``optimal`` (a feasible allocation whose objective is within the fixed-set
    tolerance of the dual bound ``dual``), ``feasible`` (a feasible allocation, not
    certified), ``infeasible`` (proved: ``proof``), ``unsolved`` (neither; ``dual`` is still
    a valid lower bound).
    """

    status: FixedStatus
    objective: float = math.inf
    dual: float = -math.inf
    mu: float = 0.0
    nu: float = 0.0
    alloc: dict[str, F64] = field(default_factory=dict)
    proof: str = ""

    @property
    def feasible(self) -> bool:
        return self.status in ("optimal", "feasible")


def allocation_from(problem: AllocationProblem, pd: PairData, sol: Any) -> dict[str, F64]:
    """Primal allocation (sets, b, p, f, f_s) of one fixed-set group from pair optima, made
    exactly feasible: bandwidth and server CPU scaled to the capacities if a rounding excess
    remains (relative 1e-11), power recomputed for the uplink time (capped at p_max)."""
    b = np.array(sol.b, dtype=float)
    fs = np.array(sol.fs, dtype=float)
    B, F = problem.bandwidth_hz, problem.server_cpu_hz
    if b.sum() > B:
        b *= B / b.sum() * (1 - 1e-15)
    if fs.sum() > F:
        fs *= F / fs.sum() * (1 - 1e-15)
    p = np.minimum(power_for_uplink_w(pd.s_up, sol.tau, b, pd.n0_over_g), pd.p_max)
    c_d = problem.costs.device_cycles[pd.kset]
    f = np.minimum(smallest_frequency_hz(c_d, sol.t_d, 0.0), problem.f_max_hz[pd.dev])
    return {
        "sets": pd.kset.copy(),
        "bandwidth_hz": b,
        "tx_power_w": p,
        "cpu_hz": f,
        "server_cpu_hz": fs,
    }


#: The weights a that ``feasibility.resource_margin`` evaluates first, in its order.
_PROBE_WEIGHTS = (0.5, 0.0, 1.0)
#: :meth:`_Exact.margin_probe` settles a margin by its tangent bound only below -this (a
#: margin near zero is left to the golden-section search).
PROBE_SAFETY = 1e-6
#: Extra weights :meth:`_Exact.margin_probe` tries before the golden-section search.
_PROBE_STEPS = 6


def _tangent_bound(a: F64, v: F64, g: F64) -> tuple[float, float]:
    """max over [0, 1] of min_i v_i + g_i (x - a_i), and the x attaining it: an upper bound
    of a concave function with values ``v`` and supergradients ``g`` at the points ``a``
    (candidates: the ends and the tangents' pairwise crossings inside)."""
    x = [0.0, 1.0]
    for i in range(a.size):
        for j in range(i + 1, a.size):
            if g[i] != g[j]:
                c = (v[j] - v[i] + g[i] * a[i] - g[j] * a[j]) / (g[i] - g[j])
                if 0.0 < c < 1.0:
                    x.append(float(c))
    pts = np.array(x)
    model = np.min(v[None, :] + g[None, :] * (pts[:, None] - a[None, :]), axis=1)
    best = int(np.argmax(model))
    return float(model[best]), float(pts[best])


#: Price pairs whose per-pair subproblem values :meth:`_Exact.dual` keeps.
_PRICE_CACHE_SIZE = 64


@dataclass
class _PairValues:
    """Per root pair, the Lagrangian value, bandwidth and server CPU at one price pair;
    ``have`` marks the pairs solved."""

    value: F64
    b: F64
    fs: F64
    have: NDArray[np.bool_]

    @classmethod
    def empty(cls, m: int) -> _PairValues:
        return cls(np.empty(m), np.empty(m), np.empty(m), np.zeros(m, dtype=bool))


def _two_best_per_device(dev: I64, value: F64) -> tuple[F64, I64, F64]:
    """Per device (``dev`` sorted, contiguous): the smallest ``value``, the position of its
    first minimiser and the second smallest value (``inf`` with one pair)."""
    m = dev.size
    starts = np.flatnonzero(np.r_[True, dev[1:] != dev[:-1]])
    best = np.minimum.reduceat(value, starts)
    counts = np.diff(np.r_[starts, m])
    dev_of = np.repeat(np.arange(starts.size), counts)
    is_best = value <= best[dev_of]
    first = np.minimum.reduceat(np.where(is_best, np.arange(m), m), starts)
    masked = np.where(np.arange(m) == first[dev_of], np.inf, value)
    return best, first, np.minimum.reduceat(masked, starts)


#: Cuts up to which :func:`max_cut_model` enumerates vertices (O(m^4) work); HiGHS above.
_VERTEX_LP_MAX_CUTS = 16


@functools.lru_cache(maxsize=64)
def _index_tuples(m: int, r: int) -> tuple[I64, ...]:
    """The r-element subsets of ``range(m)`` (r = 2, 3) as r index arrays (i < j < k)."""
    combos = np.array(list(itertools.combinations(range(m), r)), dtype=np.int64).reshape(-1, r)
    return tuple(combos[:, q].copy() for q in range(r))


def max_cut_model(g: F64, c: F64, lo: F64, hi: F64) -> tuple[F64, float]:
    """Exact solution of the cutting-plane LP ``max t s.t. t <= c_i + g_i . p`` (rows of
    ``g`` ``[m, 2]``), ``lo <= p <= hi``: the maximiser ``p`` and the model's maximum
    (``nan`` if the LP solver fails).

    The model is concave and piecewise linear on a box, so its maximum is attained at a
    vertex of the LP: three active constraints among the cuts and the box bounds, i.e. a box
    corner, a point of a box edge where two cuts are equal, or an inside point where three
    cuts are equal (2 x 2 systems). Up to ``_VERTEX_LP_MAX_CUTS`` cuts all of them are
    enumerated and the model evaluated at each (those outside the box dropped; the first of
    equal ones is returned); with more cuts HiGHS solves the LP.
    """
    m = c.size
    if m > _VERTEX_LP_MAX_CUTS:
        from scipy.optimize import linprog

        lp = linprog(
            c=[0.0, 0.0, -1.0],
            A_ub=np.column_stack([-g, np.ones(m)]),
            b_ub=c,
            bounds=[(lo[0], hi[0]), (lo[1], hi[1]), (None, None)],
            method="highs",
        )
        if lp.status != 0:
            return lo.copy(), math.nan
        return np.asarray(lp.x[:2], dtype=float), float(-lp.fun)
    pts = [np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]])]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if m >= 2:
            i, j = _index_tuples(m, 2)
            dg, dc = g[i] - g[j], c[j] - c[i]  # (g_i - g_j) . p = c_j - c_i
            for ax in (0, 1):
                for edge in (lo[ax], hi[ax]):
                    q = np.empty((i.size, 2))
                    q[:, ax] = edge
                    q[:, 1 - ax] = (dc - dg[:, ax] * edge) / dg[:, 1 - ax]
                    pts.append(q)
        if m >= 3:
            i, j, k = _index_tuples(m, 3)
            a1, r1 = g[i] - g[j], c[j] - c[i]
            a2, r2 = g[i] - g[k], c[k] - c[i]
            det = a1[:, 0] * a2[:, 1] - a1[:, 1] * a2[:, 0]
            q = np.empty((i.size, 2))
            q[:, 0] = (r1 * a2[:, 1] - r2 * a1[:, 1]) / det
            q[:, 1] = (a1[:, 0] * r2 - a2[:, 0] * r1) / det
            pts.append(q)
        cand = np.concatenate(pts)
        inside = np.all(np.isfinite(cand) & (cand >= lo) & (cand <= hi), axis=1)
        cand = cand[inside]
        model = np.min(c[None, :] + cand @ g.T, axis=1)
    best = int(np.argmax(model))
    return cand[best].copy(), float(model[best])


class _Exact:
    def __init__(
        self,
        problem: AllocationProblem,
        rel_tol: float,
        time_limit_s: float,
        max_iterations: int,
        max_nodes: int,
        max_ascent: int = EXACT_DEFAULTS.max_ascent,
    ) -> None:
        self.p = problem
        self.rel_tol = rel_tol
        self.deadline = time.perf_counter() + time_limit_s
        self.max_fp = max(1, max_iterations)
        self.max_nodes = max_nodes
        self.caps = Caps(problem.bandwidth_hz, problem.server_cpu_hz)
        n, K = problem.n_devices, problem.n_sets
        mask = nondominated_mask(problem)
        dev = np.repeat(np.arange(n), K)[mask.ravel()]
        ks = np.tile(np.arange(K), n)[mask.ravel()]
        pd = build_pairs(problem, dev, ks)
        ok = pair_feasible(pd)
        self.pd = pd.take(np.flatnonzero(ok))
        missing = np.setdiff1d(np.arange(n), self.pd.dev)
        if missing.size:
            raise InfeasibleError(
                [
                    f"device {i}: no allowed CKKS set meets the deadline even with all resources"
                    for i in missing
                ]
            )
        # root pair of each (device, set) (-1: none), for lookups into the caches below
        self.pair_of = np.full((n, K), -1, dtype=np.int64)
        self.pair_of[self.pd.dev, self.pd.kset] = np.arange(self.pd.size)
        self._tiny: PairSolution | None = None  # root pairs at prices 1e-300 (lazy)
        self._free: PairData | None = None  # energy-free root pairs (lazy)
        self._free_probes: dict[int, PairSolution] = {}  # energy-free, at probe weights
        self._duals: dict[tuple[float, float], _PairValues] = {}  # per-pair D terms by prices
        self.cache: dict[bytes, FixedSolution] = {}
        self.best: FixedSolution | None = None
        self.iterations = 0
        self.fixed_solves = 0
        self.history: list[dict[str, Any]] = []
        self.log_lam: F64 | None = None  # warm start for the full pair set
        self._roots = Roots.empty(self.pd.size)  # uplink roots of the last duals (warm)
        self.last_grad: tuple[float, float] = (0.0, 0.0)
        self.max_ascent = max_ascent
        self.ascent_steps = 0
        self.unsolved_fixed = 0
        # fixed-set problems must be solved well inside the branch-and-bound tolerance
        self.fixed_tol = min(1e-9, 1e-3 * rel_tol)

    # -------------------------------------------------------------- building blocks
    def dual(self, idx: I64, mu: float, nu: float) -> tuple[float, I64, F64, F64]:
        """D(mu, nu) restricted to pairs ``idx`` (sorted by device): value, argmin set per
        device, Lagrangian difference between its two best sets, and per-pair values.
        The last supergradient, ``(sum b / B - 1, sum f_s / F_s - 1)`` with respect to the
        payments ``(mu B, nu F_s)`` (envelope theorem: dL_nk/dmu = b_nk, dL_nk/dnu = f_nk at
        the argmin pair), is left in ``self.last_grad``."""
        pv = self._pair_values(idx, mu, nu)
        value = pv.value[idx]
        best, first, second = _two_best_per_device(self.pd.dev[idx], value)
        delta = (second - best) / np.maximum(np.abs(best), 1e-300)
        B, F = self.caps.bandwidth_hz, self.caps.server_cpu_hz
        self.last_grad = (
            float(np.sum(pv.b[idx[first]])) / B - 1.0,
            float(np.sum(pv.fs[idx[first]])) / F - 1.0,
        )
        return float(best.sum() - mu * B - nu * F), self.pd.kset[idx[first]], delta, value

    def _pair_values(self, idx: I64, mu: float, nu: float) -> _PairValues:
        """The Lagrangian subproblems of pairs ``idx`` at prices ``(mu, nu)`` (per root
        pair), solved once per price pair: a child node's first dual is at its parent's best
        prices, and fixed-set prices recur across nodes (each pair's subproblem does not
        depend on the other pairs)."""
        pv = self._duals.get((mu, nu))
        if pv is not None and bool(np.all(pv.have[idx])):
            return pv
        m = idx.size
        ll = None if self.log_lam is None else self.log_lam[idx]
        warm = self._roots.take(idx)
        sol = solve_pairs(self.pd.take(idx), self.caps, np.full(m, mu), np.full(m, nu), ll, warm)
        if self.log_lam is not None:
            self.log_lam[idx] = sol.log_lam
        self._roots.put(idx, sol)
        if pv is None:
            if len(self._duals) >= _PRICE_CACHE_SIZE:
                self._duals.pop(next(iter(self._duals)))
            pv = _PairValues.empty(self.pd.size)
            self._duals[(mu, nu)] = pv
        pv.value[idx], pv.b[idx], pv.fs[idx] = sol.value, sol.b, sol.fs
        pv.have[idx] = True
        return pv

    def tiny_solution(self) -> PairSolution:
        """The root pairs' subproblems at prices 1e-300 (the start of every market
        clearing, ``clear_markets(base=...)``), solved once, in one oracle call with the
        first energy-free probe (:meth:`free_probe`, which every fixed-set solve needs)."""
        if self._tiny is None:
            m = self.pd.size
            kept = half_probe(self.p, self.pd.dev, self.pd.kset)  # (the pre-solve's)
            if kept is not None and _PROBE_WEIGHTS[0] == 0.5:
                self._free_probes[0] = kept
                tiny = np.full(m, 1e-300)
                self._tiny = solve_pairs(self.pd, self.caps, tiny, tiny)
                return self._tiny
            mu_probe, nu_probe = self._probe_prices(0)
            sol = solve_pairs(
                concat_pairs(self.pd, self.free_pairs()),
                self.caps,
                np.r_[np.full(m, 1e-300), np.full(m, mu_probe)],
                np.r_[np.full(m, 1e-300), np.full(m, nu_probe)],
            )
            self._tiny = sol.take(slice(0, m))
            self._free_probes.setdefault(0, sol.take(slice(m, 2 * m)))
        return self._tiny

    def _probe_prices(self, i: int) -> tuple[float, float]:
        """Prices (a / B, (1 - a) / F_s) of probe weight ``a = _PROBE_WEIGHTS[i]``."""
        a = _PROBE_WEIGHTS[i]
        return a / self.caps.bandwidth_hz, (1.0 - a) / self.caps.server_cpu_hz

    def free_pairs(self) -> PairData:
        """Energy-free data of the root pairs (``build_pairs(..., energy_free=True)``)."""
        if self._free is None:
            self._free = build_pairs(self.p, self.pd.dev, self.pd.kset, energy_free=True)
        return self._free

    def margin_probe(self, idx: I64) -> float | None:
        """The resource margin of the node of pairs ``idx`` (sorted by device) as far as it
        decides ``margin > PROOF_MARGIN``; ``None``: undecided.

        First the three weights that ``feasibility.resource_margin`` tries first (a = 1/2,
        0, 1, in its order; the root pairs' energy-free subproblems at each are solved once),
        then up to ``_PROBE_STEPS`` weights at the maximiser of the tangent model (Kelley's
        cutting planes in one dimension) on the node's pairs. Like ``resource_margin``:
        minimisers that fit both capacities end it (a feasible allocation: the margin is
        <= 0; the largest value so far is returned); a value above ``PROOF_MARGIN`` proves
        infeasibility (the margin is the maximum over a; at the extra weights only with
        ``PROBE_SAFETY`` to spare). The margin, concave in a, lies below the tangents
        (slope: the envelope theorem's ``sum b / B - sum f_s / F_s`` of the minimisers); a
        tangent bound below ``-PROBE_SAFETY`` settles it.
        """
        B, F = self.caps.bandwidth_hz, self.caps.server_cpu_hz
        dev = self.pd.dev[idx]
        weights: list[float] = []
        vals: list[float] = []
        slopes: list[float] = []
        free = None
        for i in range(len(_PROBE_WEIGHTS) + _PROBE_STEPS):
            if i < len(_PROBE_WEIGHTS):
                a, sol = _PROBE_WEIGHTS[i], self.free_probe(i)
                value, b, fs = sol.value[idx], sol.b[idx], sol.fs[idx]
            else:
                bound, a = _tangent_bound(np.array(weights), np.array(vals), np.array(slopes))
                if bound <= -PROBE_SAFETY:
                    return bound
                if i == len(_PROBE_WEIGHTS) and max(vals) > PROOF_MARGIN:
                    return max(vals)
                if a in weights:
                    return None
                free = self.free_pairs().take(idx) if free is None else free
                ones = np.ones(idx.size)
                probe0 = self.free_probe(0).take(idx)
                sol = solve_pairs(
                    free,
                    self.caps,
                    a / B * ones,
                    (1.0 - a) / F * ones,
                    probe0.log_lam,
                    probe0.roots(),
                )
                value, b, fs = sol.value, sol.b, sol.fs
            best, first, _ = _two_best_per_device(dev, value)
            used_b, used_f = float(np.sum(b[first])), float(np.sum(fs[first]))
            weights.append(a)
            vals.append(float(best.sum()) - 1.0)
            slopes.append(used_b / B - used_f / F)
            if used_b <= B and used_f <= F and vals[-1] <= 0.0:
                return max(vals)
            if i >= len(_PROBE_WEIGHTS) and vals[-1] > PROOF_MARGIN + PROBE_SAFETY:
                return vals[-1]
        bound, _ = _tangent_bound(np.array(weights), np.array(vals), np.array(slopes))
        if bound <= -PROBE_SAFETY:
            return bound
        return max(vals) if max(vals) > PROOF_MARGIN + PROBE_SAFETY else None

    def free_probe(self, i: int) -> PairSolution:
        """The root pairs' energy-free subproblems at probe weight ``a = _PROBE_WEIGHTS[i]``
        (prices a / B and (1 - a) / F_s), solved once, when first needed; the later ones
        warm-started from the first (as ``resource_margin`` does)."""
        if i not in self._free_probes:
            free = self.free_pairs()
            mu_i, nu_i = self._probe_prices(i)
            first = None if i == 0 else self.free_probe(0)
            ll = None if first is None else first.log_lam
            mu, nu = np.full(free.size, mu_i), np.full(free.size, nu_i)
            warm = None if first is None else first.roots()
            self._free_probes[i] = solve_pairs(free, self.caps, mu, nu, ll, warm)
        return self._free_probes[i]

    def margin(self, idx: I64, sets: I64 | None = None) -> float:
        """Resource margin of the node of pairs ``idx`` (of the fixed ``sets``, when
        given), exact where it decides ``margin > PROOF_MARGIN`` (:meth:`margin_probe`,
        then ``feasibility``'s golden-section search)."""
        probe = self.margin_probe(idx)
        if probe is not None:
            return probe
        if sets is not None:
            return float(fixed_set_margin(self.p, sets[None, :], self.caps)[0])
        n = self.p.n_devices
        zeros = np.zeros(n, dtype=np.int64)
        free = self.free_pairs().take(idx)
        return float(resource_margin(free, self.caps, self.pd.dev[idx], n, zeros, 1)[0][0])

    def fixed(self, sets: I64, mu0: float | None, nu0: float | None) -> FixedSolution:
        """The fixed-set problem of ``sets``, solved by clearing its markets (warm-started
        from ``(mu0, nu0)``, then from scratch; ``clear_markets`` itself falls back on its
        globally convergent nested method). Never reports infeasible without a proof."""
        key = sets.astype(np.int64).tobytes()
        if key in self.cache:
            return self.cache[key]
        n = self.p.n_devices
        pairs = self.pair_of[np.arange(n), sets]
        known = bool(np.all(pairs >= 0))
        margin = (
            self.margin(pairs, sets)
            if known
            else float(fixed_set_margin(self.p, sets[None, :], self.caps)[0])
        )
        if margin > PROOF_MARGIN:
            fs = FixedSolution("infeasible", proof=f"resource margin {margin:.6g} > 0")
        else:
            grp = np.zeros(n, dtype=np.int64)
            start = None  # the last duals' lambdas and roots (warm at prices near mu0, nu0)
            if known:
                pd, base = self.pd.take(pairs, grp), self.tiny_solution().take(pairs)
                if self.log_lam is not None:
                    start = (self.log_lam[pairs], self._roots.take(pairs))
            else:
                pd, base = build_pairs(self.p, np.arange(n), sets, grp=grp), None
            starts: list[tuple[Any, Any]] = [(None, None)]
            if mu0 is not None and nu0 is not None and mu0 > 0 and nu0 > 0:
                starts.insert(0, (np.array([mu0]), np.array([nu0])))
            best: FixedSolution | None = None
            dual = -math.inf
            for m0, n0 in starts:
                mr = clear_markets(
                    pd, self.caps, 1, m0, n0, base=base, deadline=self.deadline, start=start
                )
                self.fixed_solves += 1
                cand = self._from_market(pd, mr)
                dual = max(dual, cand.dual)
                if cand.feasible and (best is None or cand.objective < best.objective):
                    best = cand
                if best is not None and self._certified(best.objective, dual):
                    break
            if best is None:
                fs = FixedSolution("unsolved", dual=dual)
            else:
                best.dual = dual
                best.status = "optimal" if self._certified(best.objective, dual) else "feasible"
                fs = best
        self.cache[key] = fs
        if fs.feasible and (self.best is None or fs.objective < self.best.objective):
            self.best = fs
        if fs.status == "unsolved":
            self.unsolved_fixed += 1
        return fs

    def _from_market(self, pd: PairData, mr: MarketResult) -> FixedSolution:
        alloc = allocation_from(self.p, pd, mr.sol)
        ev = self.p.evaluate(
            alloc["sets"],
            alloc["bandwidth_hz"],
            alloc["tx_power_w"],
            alloc["cpu_hz"],
            alloc["server_cpu_hz"],
        )
        dual = float(mr.dual[0])
        if not ev.is_feasible():
            return FixedSolution("unsolved", dual=dual, mu=float(mr.mu[0]), nu=float(mr.nu[0]))
        return FixedSolution(
            "feasible", float(ev.objective), dual, float(mr.mu[0]), float(mr.nu[0]), alloc
        )

    def _certified(self, objective: float, dual: float) -> bool:
        """The fixed-set duality gap is within the fixed-set tolerance (a certificate)."""
        return objective - dual <= self.fixed_tol * max(abs(objective), abs(dual), 1e-300)

    def start_prices(self, idx: I64) -> tuple[float, float]:
        """Clearing prices of the fastest assignment (or of the resource-cheapest one)."""
        pd = self.pd.take(idx)
        starts = np.flatnonzero(np.r_[True, pd.dev[1:] != pd.dev[:-1]])
        order = np.lexsort((pd.tmin_total, pd.dev))
        fastest = pd.kset[order[starts]]
        fs = self.fixed(fastest, None, None)
        if fs.feasible:
            return fs.mu, fs.nu
        free = self.free_pairs().take(idx)
        _, a = resource_margin(
            free, self.caps, pd.dev, self.p.n_devices, np.zeros(self.p.n_devices, dtype=np.int64), 1
        )
        B, F = self.caps.bandwidth_hz, self.caps.server_cpu_hz
        sol = solve_pairs(
            free, self.caps, np.full(idx.size, a[0] / B), np.full(idx.size, (1 - a[0]) / F)
        )
        pick = np.lexsort((sol.value, pd.dev))[starts]
        fs = self.fixed(pd.kset[pick], None, None)
        if fs.feasible:
            return fs.mu, fs.nu
        scale = float(np.sum(np.abs(pd.const))) + 1.0
        return scale / B, scale / F

    # -------------------------------------------------------------- node bound
    def bound(self, idx: I64, mu: float, nu: float) -> tuple[float, float, float, I64, F64]:
        """Best dual value found for node ``idx`` by the clearing fixed point."""
        lb, best_mu, best_nu = -math.inf, mu, nu
        best_sets: I64 = np.zeros(0, dtype=np.int64)
        best_delta: F64 = np.zeros(0)
        best_grad = self.last_grad
        seen: set[bytes] = set()
        any_feasible = False
        for _ in range(self.max_fp):
            self.iterations += 1
            d, sets, delta, _ = self.dual(idx, mu, nu)
            if d > lb:
                lb, best_mu, best_nu, best_sets, best_delta = d, mu, nu, sets, delta
                best_grad = self.last_grad
            key = sets.tobytes()
            if key in seen or time.perf_counter() > self.deadline:
                break
            seen.add(key)
            fs = self.fixed(sets, mu, nu)
            if not fs.feasible:
                mu, nu = mu * 4.0 + 1e-300, nu * 4.0 + 1e-300
                continue
            any_feasible = True
            if self.close(fs.objective, lb):
                break
            mu, nu = fs.mu, fs.nu
        if not any_feasible and not self.node_feasible(idx):
            return math.inf, best_mu, best_nu, best_sets, best_delta
        ub = self.best.objective if self.best else math.inf
        if self.max_ascent > 0 and math.isfinite(lb) and not self.close(ub, lb) and lb < ub:
            lb, best_mu, best_nu, best_sets, best_delta = self.ascend(
                idx, lb, best_mu, best_nu, best_sets, best_delta, best_grad
            )
        return lb, best_mu, best_nu, best_sets, best_delta

    def ascend(
        self,
        idx: I64,
        d0: float,
        mu: float,
        nu: float,
        sets: I64,
        delta: F64,
        grad: tuple[float, float] | None = None,
    ) -> tuple[float, float, float, I64, F64]:
        """Maximise the node's concave dual D over prices >= 0 from ``(mu, nu)``.

        ``d0`` = D(mu, nu) with argmin ``sets``, ``delta`` and supergradient ``grad``
        (default ``self.last_grad``: that of the last :meth:`dual` call, at ``(mu, nu)``).

        Kelley's cutting-plane method (Kelley 1960; Bertsekas, *Nonlinear Programming*,
        3rd ed., section 7.1 on cutting-plane methods for dual problems) in the payments
        ``p = (mu B, nu F_s)`` [objective units], inside a trust box around the best point
        that doubles while the model's maximiser hits its edge: each step maximises
        ``min_i D(p_i) + g_i . (p - p_i)`` (a 3-variable LP, :func:`max_cut_model`) and
        evaluates D there.
        Stops when the model's maximum is within the gap tolerance of the best value, when
        the node can be closed against the incumbent, or after ``max_ascent`` evaluations.
        Any evaluated D is a valid lower bound (weak duality), so the result is always
        certified; the ascent only makes it tighter than the price fixed point's.
        """
        B, F = self.caps.bandwidth_hz, self.caps.server_cpu_hz
        d_best = d0
        p_best = np.array([mu * B, nu * F])
        cut_g: list[tuple[float, float]] = []  # model: min_i c_i + g_i . p
        cut_c: list[float] = []

        def add_cut(p: F64, d: float, g: tuple[float, float]) -> None:
            cut_g.append(g)
            cut_c.append(d - g[0] * p[0] - g[1] * p[1])

        add_cut(p_best, d_best, self.last_grad if grad is None else grad)
        radius = max(float(p_best.max()), 1e-3 * (abs(d_best) + 1.0))
        for _ in range(self.max_ascent):
            ub = self.best.objective if self.best else math.inf
            if d_best >= ub or self.close(ub, d_best) or time.perf_counter() > self.deadline:
                break
            lo = np.maximum(p_best - radius, 0.0)
            hi = p_best + radius
            p_new, model_max = max_cut_model(np.array(cut_g), np.array(cut_c), lo, hi)
            if not math.isfinite(model_max):
                break
            at_edge = bool(np.any(np.isclose(p_new, hi, rtol=1e-9, atol=0.0))) or bool(
                np.any((p_new <= lo + 1e-12 * radius) & (lo > 0))
            )
            tol = self.rel_tol * 0.1 * max(abs(d_best), 1e-300)
            if model_max - d_best <= tol:
                if not at_edge:
                    break  # the model's maximum over the box is (nearly) attained
                radius *= 4.0
                continue
            self.ascent_steps += 1
            p_eval = np.maximum(p_new, 1e-300)
            d, s_new, dl_new, _ = self.dual(idx, float(p_eval[0] / B), float(p_eval[1] / F))
            add_cut(p_new, d, self.last_grad)
            if d > d_best:
                d_best, p_best, sets, delta = d, p_new, s_new, dl_new
                mu, nu = float(p_eval[0] / B), float(p_eval[1] / F)
                if at_edge:
                    radius *= 2.0
        return d_best, mu, nu, sets, delta

    def node_feasible(self, idx: I64) -> bool:
        """False only with a proof: the node's relaxation (any of its sets per device) has a
        resource margin above ``PROOF_MARGIN``."""
        return self.margin(idx) <= PROOF_MARGIN

    def close(self, ub: float, lb: float) -> bool:
        if not (math.isfinite(ub) and math.isfinite(lb)):
            return False
        return ub - lb <= self.rel_tol * max(abs(ub), abs(lb), 1e-300)

    def children(self, idx: I64, sets: I64, delta: F64) -> list[I64]:
        """The pair sets of the children of node ``idx`` (empty for a leaf: one set per
        device): branch on the device whose choice is most ambiguous at the node's best
        prices (smallest relative Lagrangian difference ``delta`` between its two best sets),
        preferring one whose argmin set differs from the incumbent's; one child per set."""
        pd_dev = self.pd.dev[idx]
        counts = np.bincount(pd_dev, minlength=self.p.n_devices)
        branchable = np.flatnonzero(counts > 1)
        if branchable.size == 0:
            return []
        score = delta[branchable].copy()
        if self.best is not None and sets.size:
            differs = sets[branchable] != self.best.alloc["sets"][branchable]
            score = np.where(differs, score - 1e300, score)
        dev = int(branchable[np.argmin(score)])
        return [
            idx[(pd_dev != dev) | (self.pd.kset[idx] == k)]
            for k in self.pd.kset[idx[pd_dev == dev]]
        ]

    # -------------------------------------------------------------- branch and bound
    def run(self) -> BnbOutcome:
        """Best-first branch-and-bound. Every node keeps its bound until it is closed: by a
        bound at or above the incumbent (or within ``rel_tol`` of it), as a leaf whose
        fixed-set problem is solved with a certificate, or as infeasible with a proof. A leaf
        whose fixed-set problem could not be certified stays *unresolved* with its bound."""
        root = np.arange(self.pd.size)
        self.log_lam = self.tiny_solution().log_lam.copy()
        mu, nu = self.start_prices(root)
        counter = 0
        heap: list[tuple[float, int, I64, float, float]] = [(-math.inf, counter, root, mu, nu)]
        nodes = 0
        termination = "gap_closed"
        closed_lb = math.inf  # smallest bound of a node closed without an infeasibility proof
        unresolved: list[tuple[float, I64]] = []  # (bound, sets) of uncertified leaves

        def open_lb() -> float:
            low = min(closed_lb, heap[0][0] if heap else math.inf)
            return min([low] + [u[0] for u in unresolved])

        while heap:
            ub = self.best.objective if self.best else math.inf
            if self.close(ub, open_lb()):
                break
            if nodes >= self.max_nodes:
                termination = "iteration_limit"
                break
            if time.perf_counter() > self.deadline:
                termination = "time_limit"
                break
            parent_lb, _, idx, mu, nu = heapq.heappop(heap)
            if parent_lb >= ub or self.close(ub, parent_lb):
                closed_lb = min(closed_lb, parent_lb)
                continue
            nodes += 1
            lb, mu, nu, sets, delta = self.bound(idx, mu, nu)
            lb = max(lb, parent_lb)
            ub = self.best.objective if self.best else math.inf
            self.history.append(
                {
                    "node": nodes,
                    "node_lower_bound": lb,
                    "upper_bound": ub,
                    "lower_bound": min(lb, open_lb()),
                    "open_nodes": len(heap),
                }
            )
            if lb == math.inf:
                continue  # proved infeasible (resource margin of the node's relaxation)
            if lb >= ub or self.close(ub, lb):
                closed_lb = min(closed_lb, lb)
                continue
            children = self.children(idx, sets, delta)
            if not children:  # a leaf: one set per device
                leaf_sets = self.pd.kset[idx]
                fs = self.fixed(leaf_sets, mu, nu)
                if fs.status == "infeasible":
                    continue
                leaf_lb = max(lb, fs.dual)
                if fs.status == "optimal":
                    closed_lb = min(closed_lb, leaf_lb)
                else:
                    unresolved.append((leaf_lb, leaf_sets))
                continue
            for child in children:
                counter += 1
                heapq.heappush(heap, (lb, counter, child, mu, nu))
        ub = self.best.objective if self.best else math.inf
        # uncertified leaves that cannot beat the incumbent are closed by their bound
        unresolved = [u for u in unresolved if not (u[0] >= ub or self.close(ub, u[0]))]
        return BnbOutcome(
            best=self.best,
            lower_bound=open_lb(),
            termination=termination,
            nodes=nodes,
            open_nodes=len(heap),
            unresolved=[u[1] for u in unresolved],
        )


@dataclass
class BnbOutcome:
    """What the branch-and-bound ended with. ``lower_bound`` is the minimum over the open,
    unresolved and closed nodes' bounds (``inf`` when every node was proved infeasible);
    it is not clamped to the incumbent."""

    best: FixedSolution | None
    lower_bound: float
    termination: str
    nodes: int
    open_nodes: int
    unresolved: list[I64]


@register_solver(
    "exact",
    "dual decomposition (bandwidth and server-CPU prices) + branch-and-bound over the CKKS "
    "sets; certified lower bound and gap (spec 5.2)",
    options=ExactOptions,
    certifies=True,
    global_optimum=True,
)
def solve_exact(
    problem: AllocationProblem,
    *,
    rel_tol: float = DEFAULTS.rel_tol,
    max_iterations: int = DEFAULTS.max_iterations,
    time_limit_s: float = DEFAULTS.time_limit_s,
    seed: int = 0,
    max_nodes: int = EXACT_DEFAULTS.max_nodes,
    max_ascent: int = EXACT_DEFAULTS.max_ascent,
) -> SolveResult:
    """Certified optimum of the mixed problem (see the module docstring).

    ``max_iterations``: dual (price) iterations per node; ``max_nodes``: branch-and-bound
    nodes; ``max_ascent``: dual evaluations of the cutting-plane ascent per node (0: the
    price fixed point's bound alone). Deterministic (``seed`` is only recorded).

    Length (~80 lines): the four outcomes (proved infeasible, no allocation, an invalid
    certificate, a certified or uncertified allocation) are decided in one place.
    """
    t0 = time.perf_counter()
    ex = _Exact(problem, rel_tol, time_limit_s, max_iterations, max_nodes, max_ascent)
    out = ex.run()
    timings = {"solve": time.perf_counter() - t0}
    iterations = ex.iterations + ex.ascent_steps
    common: dict[str, Any] = {
        "iterations": iterations,
        "nodes": out.nodes,
        "timings_s": timings,
        "seed": seed,
    }
    unresolved_note = _unresolved_note(problem, out.unresolved)
    best = out.best
    lb = out.lower_bound
    if best is None:
        if out.termination == "gap_closed" and not out.unresolved and out.open_nodes == 0:
            raise InfeasibleError(
                [
                    f"all {problem.n_devices} devices together: no combination of allowed CKKS "
                    "sets admits an allocation meeting every deadline within the bandwidth "
                    "and server CPU capacities (proof: branch-and-bound closed every node by "
                    f"a positive resource margin, > {PROOF_MARGIN:g}: at some weights the "
                    "priced minimum demands exceed the priced capacities)"
                ]
            )
        why = (
            "no feasible allocation found before the limit"
            if out.termination in ("time_limit", "iteration_limit")
            else "no feasible allocation found and infeasibility not proved"
        )
        return SolveResult.error(
            problem,
            method="exact",
            message="; ".join(x for x in (why, unresolved_note) if x),
            termination=out.termination,  # type: ignore[arg-type]
            **common,
        )
    ub = best.objective
    bound = lb if math.isfinite(lb) else None
    if lb == math.inf:  # only the incumbent's own region is left: its fixed-set dual
        bound = best.dual if math.isfinite(best.dual) else None
    res = SolveResult.from_allocation(
        problem,
        method="exact",
        status="feasible",
        termination=out.termination,  # type: ignore[arg-type]
        lower_bound=bound,
        history=ex.history,
        **common,
        **best.alloc,
    )
    slack = CERTIFICATE_SLACK_REL * max(abs(ub), 1.0)
    if bound is not None and bound > ub + slack:
        return res.replace(
            status="error",
            message=(
                f"internal error: lower bound {bound:.12g} above a feasible objective "
                f"{ub:.12g} (invalid certificate); the allocation is feasible but its "
                "optimality is not certified"
            ),
        )
    if res.gap is not None and res.gap <= rel_tol and not out.unresolved:
        res = res.replace(status="optimal")
    if unresolved_note:
        res = res.replace(message=unresolved_note)
    return res


def _unresolved_note(problem: AllocationProblem, unresolved: list[I64]) -> str:
    """The message naming the set combinations solved without a certificate ("" if none)."""
    if not unresolved:
        return ""
    names = problem.set_names
    shown = "; ".join("[" + ", ".join(names[int(k)] for k in s) + "]" for s in unresolved[:3])
    return (
        f"{len(unresolved)} set combination(s) could not be solved with a certificate "
        f"and keep their bounds: {shown}" + (" ..." if len(unresolved) > 3 else "")
    )
