"""Fast fixed-theta convex stage (spec 5.2): per-(device, set) Lagrangian subproblems and
market clearing of the bandwidth and server-CPU prices, vectorised with numpy.

Variables per device n with set k (spec 5.2): t_d = C_dev/f, t_s = C_srv/f_s, the uplink time
tau and the bandwidth b. With the energy weight w = w_E x rounds::

    w E_dev = a_d / t_d^2,                 a_d = w kappa_d C_dev^3
    w E_srv = a_s / t_s^2,                 a_s = w kappa_s C_srv^3
    w E_tx  = W phi(tau b),  phi(u) = u (2^{S/u} - 1),   W = w N0 / g   (jointly convex)
    power:   S / tau <= b log2(1 + Gamma / b),  Gamma = p_max g / N0
    latency: t_d + tau + t_s <= T' = T_max - S_down / r_dl;  t_d >= C_dev/f_max;
             b <= B;  t_s >= C_srv / F_s  (redundant bounds keeping the subproblem bounded)

Prices mu [J/Hz] on bandwidth and nu [J/Hz] on server CPU give the Lagrangian subproblem

    L_nk(mu, nu) = min  a_d/t_d^2 + a_s/t_s^2 + W phi(tau b) + mu b + nu C_srv/t_s + c_k

(c_k = -w_P Phi_k for the weighted objective) which a latency multiplier lambda splits into
one-dimensional convex problems (solved by safeguarded Newton in log coordinates):

* t_d = max((2 a_d / lambda)^(1/3), C_dev / f_max);
* t_s: the positive root of lambda t^3 - nu C_srv t - 2 a_s = 0, at least C_srv / F_s;
* (tau, b): for a fixed product u = tau b, mu b + lambda tau >= 2 sqrt(mu lambda u), so with
  z = S ln2 / u the optimum solves psi(z)/sqrt(z) = sqrt(mu lambda) / (W sqrt(S ln 2)),
  psi(z) = 1 + (z - 1) e^z = -phi'(u); if b > B the optimum has b = B and W B psi(z) = lambda;
  if the power limit is violated it binds: p = p_max and b minimises
  (W Gamma + lambda) S / r(b) + mu b, i.e. q(x) = mu Gamma^2 / ((W Gamma + lambda) S ln 2)
  with x = Gamma / b, q(x) = x^2 (ln(1+x) - x/(1+x)) / ln(1+x)^2.

lambda solves t_d + t_s + tau = T' (each term decreases in lambda). The returned value
includes lambda (t_d + t_s + tau - T'), so it is the exact minimum of the Lagrangian at that
lambda: a valid lower bound of the device's subproblem whatever the numerical tolerance.

:func:`clear_markets` finds, for groups of devices with fixed sets, the prices that clear both
markets (Newton in log prices); its primal allocation is feasible and optimal for the fixed
sets, and its dual value certifies it.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from privtuner.optimizer.core.model import (
    LN2,
    compute_time_s,
    downlink_time_s,
    time_left_s,
    tx_power_for_z_w,
    uplink_rate_bps,
    uplink_time_s,
)

if TYPE_CHECKING:
    from privtuner.optimizer.core.problem import AllocationProblem

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
_LOG_LAM_LO, _LOG_LAM_HI = -400.0, 400.0


# ---------------------------------------------------------------------- small helpers
@functools.cache
def _names(cls: type) -> tuple[str, ...]:
    """The field names of dataclass ``cls`` (``dataclasses.fields`` once)."""
    return tuple(f.name for f in fields(cls))


def _any(mask: NDArray[np.bool_]) -> bool:
    """``mask.any()``, without its Python wrapper (a quarter of the time on tiny arrays)."""
    return bool(np.count_nonzero(mask) > 0)


def _all(mask: NDArray[np.bool_]) -> bool:
    """``mask.all()``, without its Python wrapper."""
    return bool(np.count_nonzero(mask) == mask.size)


# ---------------------------------------------------------------------- special functions
def log_omega(z: F64) -> F64:
    """log of omega(z) = z - 1 + e^{-z} = e^{-z} psi(z) (psi(z) = 1 + (z-1) e^z = -phi'(u)).

    Series z^2/2 (1 - z/3 + z^2/12 - z^3/60 + z^4/360) below z = 1e-2 (no cancellation).
    """
    out = z + np.expm1(-z)
    small = z < 1e-2
    if _any(small):
        zs = z[small]
        out[small] = zs**2 / 2 * (1 - zs / 3 + zs**2 / 12 - zs**3 / 60 + zs**4 / 360)
    return np.log(out)


def omega(z: F64) -> F64:
    return np.exp(log_omega(z))


def log_eta(x: F64) -> F64:
    """log of eta(x) = ln(1+x) - x/(1+x) (used by the power-limited uplink branch).

    Series x^2/2 (1 - 4x/3 + 3x^2/2 - 8x^3/5 + 5x^4/3) below x = 1e-3.
    """
    out = np.log1p(x) - x / (1 + x)
    small = x < 1e-3
    if _any(small):
        xs = x[small]
        out[small] = xs**2 / 2 * (1 - 4 * xs / 3 + 3 * xs**2 / 2 - 8 * xs**3 / 5 + 5 * xs**4 / 3)
    return np.log(out)


def phi(u: F64, s_bits: F64) -> F64:
    """phi(u) = u (2^{S/u} - 1), the transmit energy per N0/g (spec 5.2)."""
    with np.errstate(over="ignore"):
        return u * np.expm1(s_bits * LN2 / u)


def _newton(
    fun: Any,
    s: F64,
    lo_end: float,
    hi_end: float,
    iters: int = 60,
    tol: float = 1e-13,
    newton_tol: float = 1e-8,
) -> F64:
    """Solve fun(s) = 0 for increasing ``fun`` (returns value, derivative) elementwise.

    Safeguarded Newton: the bracket, [lo_end, hi_end] at first, is updated by sign and a
    step leaving it is replaced by bisection. Ends when every step is below ``tol``
    (absolute, in s), or a Newton step (not a bisection) below ``newton_tol``: Newton
    converges quadratically near a simple root, so the point after such a step is within
    ~newton_tol^2 of it.
    Floating-point errors are ignored by the caller (:func:`solve_pairs`). ``fun(s, a)``
    gets the points of the components ``a`` (an index array or ``slice(None)``): while every
    component is active the arrays are used whole (no gathering for tiny arrays); a
    finished component keeps its value either way.
    """
    s = np.minimum(np.maximum(s, lo_end), hi_end)
    n = s.shape[0]
    lo = np.full(n, lo_end)
    hi = np.full(n, hi_end)
    active: Any = slice(None)
    for _ in range(iters):
        sa = s[active]
        f, d = fun(sa, active)
        pos = f > 0
        hi_a = np.where(pos, sa, hi[active])
        lo_a = np.where(pos, lo[active], sa)
        new = sa - f / d
        bad = ~((new >= lo_a) & (new <= hi_a))  # also NaN and inf steps
        if _any(bad):
            new = np.where(bad, 0.5 * (lo_a + hi_a), new)
            zero = f == 0
            new = np.where(zero, sa, new)
            size = np.abs(new - sa)
            unit = np.maximum(1.0, np.abs(sa))
            done = (size <= tol * unit) | zero | ((size <= newton_tol * unit) & ~bad)
        else:  # every step a Newton step (f = 0 gives a zero step): the same test, shorter
            done = np.abs(new - sa) <= newton_tol * np.maximum(1.0, np.abs(sa))
        lo[active], hi[active] = lo_a, hi_a
        s[active] = new  # (``sa`` is a view of ``s`` while all are active)
        if _all(done):
            break
        if _any(done):
            active = (np.arange(n) if isinstance(active, slice) else active)[~done]
    return s


# ---------------------------------------------------------------------- pair data
@dataclass(frozen=True)
class PairData:
    """Per-(device, set) constants of the Lagrangian subproblems (arrays ``[m]``).

    ``grp`` maps each pair to a group: a device in the full dual (min over its sets), or one
    fixed-set problem in a batch of them (enumeration, branch-and-bound leaves).
    """

    dev: I64
    kset: I64
    grp: I64
    a_d: F64
    ed_coef: F64  # kappa_d C_dev^3 (unweighted device energy x t_d^2)
    tmin_d: F64
    c_s: F64
    a_s: F64
    es_coef: F64
    tmin_s: F64
    s_up: F64
    gam: F64  # Gamma = p_max g / N0 [Hz]
    w_tx: F64  # W = w N0 / g
    n0_over_g: F64
    p_max: F64
    tp: F64  # T' = T_max - S_down / r_dl [s]
    const: F64
    tmin_total: F64  # minimum latency with all resources: infeasible pair if >= tp

    @property
    def size(self) -> int:
        return int(self.dev.shape[0])

    def take(self, idx: Any, grp: I64 | None = None) -> PairData:
        kw = {name: getattr(self, name)[idx] for name in _names(PairData)}
        if grp is not None:
            kw["grp"] = grp
        return PairData(**kw)


def concat_pairs(*parts: PairData) -> PairData:
    """The pairs of ``parts`` one after the other (one oracle call for all of them: each
    pair's subproblem is its own, so the results are those of separate calls)."""
    return PairData(
        **{f.name: np.concatenate([getattr(q, f.name) for q in parts]) for f in fields(PairData)}
    )


def build_pairs(
    problem: AllocationProblem,
    dev: I64,
    kset: I64,
    grp: I64 | None = None,
    energy_free: bool = False,
) -> PairData:
    """Pair constants for devices ``dev`` with sets ``kset`` (``energy_free``: w = 0, c = 0,
    the resource-only problem used by feasibility checks)."""
    c = problem.costs
    dev = np.asarray(dev, dtype=np.int64)
    kset = np.asarray(kset, dtype=np.int64)
    w = 0.0 if energy_free else problem.energy_scale
    c_d = c.device_cycles[kset]
    c_s = c.server_cycles[kset]
    s_up = c.uplink_bits[kset]
    g = problem.gain_lin[dev]
    n0g = problem.noise_w_per_hz / g
    gam = problem.p_max_w[dev] / n0g
    B = problem.bandwidth_hz
    F = problem.server_cpu_hz
    # spec 5.2's variables t = C / f: kappa C f^2 = (kappa C^3) / t^2
    ed = problem.kappa_dev[dev] * c_d**3
    es = problem.kappa_srv * c_s**3
    # the fastest the pair can be (spec sec. 4 terms at f_max, all of F_s, all of B, p_max)
    tmin_d = compute_time_s(c_d, problem.f_max_hz[dev])
    tmin_s = compute_time_s(c_s, F)
    rate_max = uplink_rate_bps(B, problem.p_max_w[dev], g, problem.noise_w_per_hz)
    tau_min = uplink_time_s(s_up, rate_max)
    tau_min = np.where(np.isnan(tau_min), np.inf, tau_min)
    tp = time_left_s(
        problem.deadline_s, downlink_time_s(c.downlink_bits[kset], problem.downlink_rate_bps)
    )
    const = np.zeros(dev.shape) if energy_free else problem.set_constant[kset]
    return PairData(
        dev=dev,
        kset=kset,
        grp=dev.copy() if grp is None else np.asarray(grp, dtype=np.int64),
        a_d=w * ed,
        ed_coef=ed,
        tmin_d=tmin_d,
        c_s=c_s,
        a_s=w * es,
        es_coef=es,
        tmin_s=tmin_s,
        s_up=s_up,
        gam=gam,
        w_tx=w * n0g,
        n0_over_g=n0g,
        p_max=problem.p_max_w[dev].astype(float),
        tp=tp,
        const=const.astype(float),
        tmin_total=tmin_d + tmin_s + tau_min,
    )


def pair_feasible(pd: PairData) -> NDArray[np.bool_]:
    """Pairs whose deadline is reachable with all bandwidth, max power, f_max and all F_s."""
    return pd.tmin_total < pd.tp * (1.0 - 1e-12)


# ---------------------------------------------------------------------- the subproblems
@dataclass
class PairSolution:
    """Minimiser of the Lagrangian subproblem of every pair at given prices (arrays [m])."""

    log_lam: F64
    t_d: F64
    t_s: F64
    tau: F64
    b: F64
    p: F64
    e_d: F64  # per-round energies, unweighted [J]
    e_s: F64
    e_tx: F64
    value: F64  # Lagrangian value incl. the constant and lambda (sum t - T')
    fs: F64  # server CPU C_srv / t_s [Hz]
    # the uplink root finds' last points (log z free, log z full band, log x power-limited;
    # NaN: not reached): warm starts of a later solve of the same pairs (``warm``)
    s_free: F64
    s_band: F64
    s_power: F64

    def take(self, idx: Any) -> PairSolution:
        return PairSolution(*(getattr(self, name)[idx] for name in _names(PairSolution)))

    def roots(self) -> Roots:
        return Roots(self.s_free, self.s_band, self.s_power)


@dataclass
class Roots:
    """Per pair, the uplink root finds' last points (as in :class:`PairSolution`; NaN:
    none): the warm start ``solve_pairs(..., warm=)`` of later solves of the same pairs."""

    s_free: F64
    s_band: F64
    s_power: F64

    @classmethod
    def empty(cls, m: int) -> Roots:
        return cls(np.full(m, np.nan), np.full(m, np.nan), np.full(m, np.nan))

    def take(self, idx: Any) -> Roots:
        return Roots(self.s_free[idx], self.s_band[idx], self.s_power[idx])

    def put(self, idx: Any, sol: PairSolution) -> None:
        """Keep the roots of ``sol``, a solution of the pairs ``idx``."""
        self.s_free[idx], self.s_band[idx], self.s_power[idx] = sol.s_free, sol.s_band, sol.s_power


#: A start of an oracle call: log lambdas and uplink roots per pair.
Start = tuple[F64, Roots | None]


def _take_start(start: Start, idx: Any) -> Start:
    """The start of the pairs ``idx``."""
    ll, roots = start
    return ll[idx], None if roots is None else roots.take(idx)


def _t_dev(pd: PairData, lam: F64) -> tuple[F64, F64]:
    """t_d(lambda) = max((2 a_d / lambda)^(1/3), C_dev / f_max) and d log t_d / d log lambda."""
    t = np.cbrt(2.0 * pd.a_d / lam)
    interior = t > pd.tmin_d
    return np.where(interior, t, pd.tmin_d), np.where(interior, -1.0 / 3.0, 0.0)


def _t_srv(pd: PairData, lam: F64, nu: F64) -> tuple[F64, F64]:
    """t_s(lambda): root of lambda t^3 - nu C t - 2 a_s = 0 clipped at C/F_s; d log t/d log lam.

    Closed form of the depressed cubic t^3 - 3 P t - 2 A = 0 (A = a_s / lambda, P = nu C /
    (3 lambda)): Cardano's t = w + P / w with w^3 = A + sqrt(A^2 - P^3) when A^2 >= P^3, else
    the largest of three real roots, Viete's t = 2 sqrt(P) cos(arccos(A / P^1.5) / 3) (both
    stable where the roots meet: t is flat in the rounded term there). Computed in units of
    s = max(A^(1/3), P^(1/2)) so that no power overflows (lambda spans e^+-400).
    """
    nc = nu * pd.c_s
    big_a = pd.a_s / lam
    big_p = nc / (3.0 * lam)
    s = np.maximum(np.cbrt(big_a), np.sqrt(big_p))
    pos = s > 0
    all_pos = _all(pos)
    if not all_pos:
        s = np.where(pos, s, 1.0)
    a = big_a / s / s / s
    q = big_p / s / s
    disc = a * a - q * q * q
    w = np.cbrt(a + np.sqrt(np.maximum(disc, 0.0)))
    t = w + q / w
    three = disc < 0.0
    if _any(three):
        viete = 2.0 * np.sqrt(q) * np.cos(np.arccos(np.minimum(a / (q * np.sqrt(q)), 1.0)) / 3.0)
        t = np.where(three, viete, t)
    t = s * t if all_pos else np.where(pos, s * t, 0.0)
    interior = t > pd.tmin_s
    dlog = -1.0 / (3.0 - nc / (lam * t**2))
    return np.where(interior, t, pd.tmin_s), np.where(interior, dlog, 0.0)


@dataclass
class _TxGuess:
    """Warm starts of the three uplink root finds: per pair the last root (log z or log x;
    NaN = none), its slope d s / d log lambda there (0 = none) and the log lambda it was
    found at; :meth:`at` extrapolates the root to a new lambda (first order)."""

    s1: F64
    s2: F64
    s3: F64
    d1: F64
    d2: F64
    d3: F64
    la: F64

    @classmethod
    def empty(cls, m: int) -> _TxGuess:
        nan, zero = np.full(m, np.nan), np.zeros(m)
        return cls(nan, nan.copy(), nan.copy(), zero, zero.copy(), zero.copy(), zero.copy())

    @classmethod
    def start(cls, warm: Roots | None, m: int) -> _TxGuess:
        """From a previous solution's roots (no slopes), or empty."""
        g = cls.empty(m)
        if warm is not None:
            g.s1, g.s2, g.s3 = warm.s_free.copy(), warm.s_band.copy(), warm.s_power.copy()
        return g

    def take(self, idx: Any) -> _TxGuess:
        return _TxGuess(*(getattr(self, name)[idx] for name in _names(_TxGuess)))

    def put(self, idx: Any, other: _TxGuess) -> None:
        for name in _names(_TxGuess):
            getattr(self, name)[idx] = getattr(other, name)

    def at(self, s: F64, d: F64, la: F64, idx: Any) -> F64:
        """The roots ``s[idx]`` (slopes ``d``) moved to log lambda ``la[idx]``."""
        return s[idx] + d[idx] * (la[idx] - self.la[idx])


def _interior_slope(s: F64, slope: F64, lo: float, hi: float) -> F64:
    """``slope`` where the root ``s`` is inside its bracket, else 0: a root stuck at a
    bracket end stays there (extrapolating it would only start a bisection back)."""
    return np.where((s > lo) & (s < hi), slope, 0.0)


def _tx_free(
    pd: PairData,
    lam: F64,
    la: F64,
    mu: F64,
    bcap_hz: float,
    guess: _TxGuess,
    out: tuple[F64, F64, F64, F64],
    iu: I64,
    todo_b: NDArray[np.bool_],
    todo_p: NDArray[np.bool_],
) -> None:
    """Unconstrained uplink branch of :func:`_tx` for the pairs ``iu``: psi(z)/sqrt(z) =
    sqrt(mu lam) / (W sqrt(S ln2)); pairs whose solution violates b <= B or the power limit
    go to ``todo_b`` / ``todo_p``. Writes ``out`` = (tau, dlog, b, p) in place."""
    tau, dlog, b, p = out
    sel: Any = slice(None) if iu.size == pd.size else iu  # (views, not copies, for all)
    sln2 = pd.s_up[sel] * LN2
    log_r = 0.5 * (np.log(mu[sel]) + la[sel] - np.log(sln2)) - np.log(pd.w_tx[sel])

    def f1(s: F64, a: I64) -> tuple[F64, F64]:
        z = np.exp(s)
        lo = log_omega(z)
        return z + lo - 0.5 * s - log_r[a], z**2 * np.exp(-lo) - 0.5

    s0 = guess.at(guess.s1, guess.d1, la, sel)
    known = np.isfinite(s0)
    if not _all(known):  # a cold start: the asymptotes of z + log omega(z) - s / 2
        s0 = np.where(
            known, s0, np.where(log_r < 0, (log_r + LN2) / 1.5, np.log(np.maximum(log_r, 1.0)))
        )
    s = _newton(f1, s0, -40.0, 9.0)
    guess.s1[sel] = s
    z = np.exp(s)
    slope = z**2 * np.exp(-log_omega(z)) - 0.5  # d f1 / d s at the root
    guess.d1[sel] = _interior_slope(s, 0.5 / slope, -40.0, 9.0)
    u = sln2 / z
    bu = np.sqrt(lam[sel] * u / mu[sel])
    ok_b = bu <= bcap_hz
    ok_p = z <= np.log1p(pd.gam[sel] / bu)
    good = ok_b & ok_p
    if _all(good):
        tau[sel], b[sel], dlog[sel] = u / bu, bu, -0.25 / slope - 0.5
        p[sel] = tx_power_for_z_w(pd.n0_over_g[sel], bu, z)
        return
    ig = iu[good]
    zg = z[good]
    tau[ig] = u[good] / bu[good]
    b[ig] = bu[good]
    dlog[ig] = -0.25 / slope[good] - 0.5
    p[ig] = tx_power_for_z_w(pd.n0_over_g[ig], b[ig], zg)
    todo_b[iu[~ok_b]] = True
    todo_p[iu[ok_b & ~ok_p]] = True


def _tx_full_band(
    pd: PairData,
    lam: F64,
    la: F64,
    mu: F64,
    bcap_hz: float,
    guess: _TxGuess,
    out: tuple[F64, F64, F64, F64],
    ib: I64,
    todo_p: NDArray[np.bool_],
) -> None:
    """The b = B branch of :func:`_tx` for the pairs ``ib``: W B psi(z) = lam; pairs over the
    power limit go to ``todo_p``. Writes ``out`` in place."""
    tau, dlog, b, p = out
    sln2 = pd.s_up * LN2
    c2 = la[ib] - np.log(pd.w_tx[ib] * bcap_hz)

    def f2(s: F64, a: I64) -> tuple[F64, F64]:
        z = np.exp(s)
        lo = log_omega(z)
        return z + lo - c2[a], z**2 * np.exp(-lo)

    s0 = guess.at(guess.s2, guess.d2, la, ib)
    known = np.isfinite(s0)
    if not _all(known):
        s0 = np.where(known, s0, np.where(c2 < 0, (c2 + LN2) / 2.0, np.log(np.maximum(c2, 1.0))))
    s = _newton(f2, s0, -40.0, 9.0)
    guess.s2[ib] = s
    z = np.exp(s)
    slope = z**2 * np.exp(-log_omega(z))  # d f2 / d s at the root
    guess.d2[ib] = _interior_slope(s, 1.0 / slope, -40.0, 9.0)
    ok_p = z <= np.log1p(pd.gam[ib] / bcap_hz)
    ig = ib[ok_p]
    zg = z[ok_p]
    b[ig] = bcap_hz
    tau[ig] = sln2[ig] / (zg * bcap_hz)
    dlog[ig] = -1.0 / slope[ok_p]
    p[ig] = tx_power_for_z_w(pd.n0_over_g[ig], bcap_hz, zg)
    todo_p[ib[~ok_p]] = True


def _tx_power_limited(
    pd: PairData,
    lam: F64,
    la: F64,
    mu: F64,
    bcap_hz: float,
    guess: _TxGuess,
    out: tuple[F64, F64, F64, F64],
    ip: I64,
) -> None:
    """The power-limited branch of :func:`_tx` for the pairs ``ip``: p = p_max, b minimises
    (W Gamma + lam) S / r(b) + mu b. Writes ``out`` in place."""
    tau, dlog, b, p = out
    sln2 = pd.s_up * LN2
    gam = pd.gam[ip]
    a_coef = pd.w_tx[ip] * gam + lam[ip]
    x_min = gam / bcap_hz
    x = x_min.copy()
    ia = (mu[ip] > 0).nonzero()[0]
    if ia.size:
        c3 = np.log(mu[ip][ia]) + 2 * np.log(gam[ia]) - np.log(a_coef[ia] * sln2[ip][ia])

        def f3(s: F64, a: I64) -> tuple[F64, F64]:
            xx = np.exp(s)
            l1 = np.log1p(xx)
            le = log_eta(xx)
            val = 2 * s + le - 2 * np.log(l1) - c3[a]
            der = 2 + xx**2 / ((1 + xx) ** 2 * np.exp(le)) - 2 * xx / ((1 + xx) * l1)
            return val, der

        s0 = guess.at(guess.s3, guess.d3, la, ip[ia])
        s0 = np.where(np.isfinite(s0), s0, (c3 - np.log(0.5)) / 2.0)
        s = _newton(f3, s0, -60.0, 80.0)
        guess.s3[ip[ia]] = s
        x[ia] = np.maximum(np.exp(s), x_min[ia])
    interior = x > x_min * (1 + 1e-15)
    l1 = np.log1p(x)
    tau[ip] = sln2[ip] * x / (gam * l1)
    b[ip] = gam / x
    p[ip] = pd.p_max[ip]
    le = np.exp(log_eta(x))
    qd = 2 + x**2 / ((1 + x) ** 2 * le) - 2 * x / ((1 + x) * l1)
    dlx = -lam[ip] / (a_coef * qd)
    dlog[ip] = np.where(interior, dlx * (1 - x / ((1 + x) * l1)), 0.0)
    if ia.size:  # d log x / d log lambda (c3 moves by -lam / a_coef)
        guess.d3[ip[ia]] = _interior_slope(s, dlx[ia], -60.0, 80.0)


def _tx(
    pd: PairData, lam: F64, la: F64, mu: F64, bcap_hz: float, guess: _TxGuess
) -> tuple[F64, F64, F64, F64]:
    """Uplink (tau, d log tau / d log lambda, b, p) minimising W phi(tau b) + mu b + lam tau
    subject to the power limit and b <= B (module docstring), at lambda = ``lam`` =
    exp(``la``); updates ``guess`` in place."""
    m = pd.size
    tau = np.zeros(m)
    dlog = np.zeros(m)
    b = np.zeros(m)
    p = np.zeros(m)
    has = pd.s_up > 0
    wpos = pd.w_tx > 0
    mpos = mu > 0
    todo_b = has & wpos & ~mpos
    todo_p = has & ~wpos
    out = (tau, dlog, b, p)
    iu = (has & wpos & mpos).nonzero()[0]
    if iu.size:
        _tx_free(pd, lam, la, mu, bcap_hz, guess, out, iu, todo_b, todo_p)
    ib = todo_b.nonzero()[0]
    if ib.size:
        _tx_full_band(pd, lam, la, mu, bcap_hz, guess, out, ib, todo_p)
    ip = todo_p.nonzero()[0]
    if ip.size:
        _tx_power_limited(pd, lam, la, mu, bcap_hz, guess, out, ip)
    guess.la = la
    return tau, dlog, b, p


@dataclass(frozen=True)
class Caps:
    """The two shared capacities: bandwidth B [Hz] and server CPU F_s [Hz]."""

    bandwidth_hz: float
    server_cpu_hz: float


def solve_pairs(
    pd: PairData,
    caps: Caps,
    mu: F64,
    nu: F64,
    log_lam0: F64 | None = None,
    warm: Roots | None = None,
) -> PairSolution:
    """Minimise every pair's Lagrangian at prices ``mu``, ``nu`` (arrays ``[m]``).

    Pairs must be individually feasible (``pair_feasible``). Safeguarded Newton in
    log lambda on the latency equation t_d + t_s + tau = T', warm-started from ``log_lam0``;
    ``warm``: the uplink roots of an earlier solve of the same pairs (at other prices), to
    start the root finds from (only the number of iterations depends on the starts).
    Floating-point errors of the root finds (overflow at extreme prices, 0/0 at converged
    points) are expected and ignored.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _solve_pairs(pd, caps, mu, nu, log_lam0, warm)


def _solve_pairs(
    pd: PairData, caps: Caps, mu: F64, nu: F64, log_lam0: F64 | None, warm: Roots | None
) -> PairSolution:
    m = pd.size
    bcap = caps.bandwidth_hz
    if log_lam0 is None:
        log_lam0 = _lambda_guess(pd, mu, bcap)
    ll = np.minimum(np.maximum(np.asarray(log_lam0, dtype=float), _LOG_LAM_LO), _LOG_LAM_HI)
    lo = np.full(m, -np.inf)
    hi = np.full(m, np.inf)
    guess = _TxGuess.start(warm, m)
    out = np.zeros((5, m))  # t_d, t_s, tau, b, p at each pair's converged lambda
    active = np.arange(m)
    for _it in range(200):
        if active.size == 0:
            break
        full = active.size == m
        sub = pd if full else pd.take(active)
        gsub = guess if full else guess.take(active)
        la = ll[active]
        lam = np.exp(la)
        td, dd = _t_dev(sub, lam)
        ts, ds = _t_srv(sub, lam, nu if full else nu[active])
        tau, dt, b, p = _tx(sub, lam, la, mu if full else mu[active], bcap, gsub)
        if not full:
            guess.put(active, gsub)
        g = td + ts + tau - sub.tp
        new = _lambda_step(la, g, td * dd + ts * ds + tau * dt, lo, hi, active)
        conv = (np.abs(g) <= 1e-13 * sub.tp) | (
            np.abs(new - la) <= 1e-14 * np.maximum(1.0, np.abs(la))
        )
        if _it == 199:
            conv[:] = True
        if _any(conv):
            idx = active[conv]
            for row, v in zip(out, (td, ts, tau, b, p), strict=True):
                row[idx] = v[conv]
        ll[active] = np.where(conv, la, new)
        active = active[~conv]
    return _pair_solution(pd, mu, nu, ll, out, guess)


def _lambda_guess(pd: PairData, mu: F64, bcap_hz: float) -> F64:
    """A first log lambda per pair: the multiplier of each latency term at a third of T'
    (compute: 2 a / t^3; uplink over all of B: W B psi(z) at z = S ln2 / (B T' / 3), at
    most W Gamma, the power-limited rate's) plus the bandwidth price's mu B / T'."""
    third = np.maximum(pd.tp / 3.0, 1e-300)
    z = pd.s_up * LN2 / (bcap_hz * third)
    with np.errstate(over="ignore"):
        tx = pd.w_tx * np.minimum(pd.gam, bcap_hz * np.exp(z + log_omega(z)))
    scale = 2.0 * (pd.a_d + pd.a_s) / third**3 + tx + mu * bcap_hz / pd.tp + 1e-300
    return np.log(scale)


def _lambda_step(la: F64, g: F64, dg: F64, lo: F64, hi: F64, active: I64) -> F64:
    """The next log lambda of :func:`solve_pairs`'s safeguarded Newton on g(log lambda) =
    t_d + t_s + tau - T' (slope ``dg``): a Newton step inside the bracket ``[lo, hi]``
    (updated in place at ``active``), else bisection, or, without a bracket yet, a bounded
    step (3) in the right direction (lambda grows if g > 0)."""
    pos = g > 0  # too slow: lambda must grow
    lo_a = np.where(pos, la, lo[active])
    hi_a = np.where(pos, hi[active], la)
    lo[active], hi[active] = lo_a, hi_a
    new = la - g / dg
    bracketed = np.isfinite(lo_a) & np.isfinite(hi_a)
    ok = (new >= lo_a) & (new <= hi_a) & (bracketed | (np.abs(new - la) <= 3.0))
    if not _all(ok):  # (NaN and inf steps fail ``ok`` too)
        fallback = np.where(bracketed, 0.5 * (lo_a + hi_a), la + np.where(pos, 3.0, -3.0))
        new = np.where(ok, new, fallback)
    return np.minimum(np.maximum(new, _LOG_LAM_LO), _LOG_LAM_HI)


def _pair_solution(
    pd: PairData, mu: F64, nu: F64, ll: F64, out: F64, guess: _TxGuess
) -> PairSolution:
    """Energies, server CPU and the Lagrangian values at the pairs' solved points."""
    td, ts, tau, b, p = out
    lam = np.exp(ll)
    e_d = np.where(pd.ed_coef > 0, pd.ed_coef / td**2, 0.0)
    e_s = np.where(pd.es_coef > 0, pd.es_coef / ts**2, 0.0)
    fs = np.where(pd.c_s > 0, pd.c_s / ts, 0.0)
    # weighted energy via a / t^2 and W phi(tau b) (exact also when w = 0)
    wd = np.where(pd.a_d > 0, pd.a_d / td**2, 0.0)
    ws = np.where(pd.a_s > 0, pd.a_s / ts**2, 0.0)
    wt = np.where(pd.s_up > 0, pd.w_tx * phi(tau * b, pd.s_up), 0.0)
    e_tx = p * tau
    value = wd + ws + wt + mu * b + nu * fs + lam * (td + ts + tau - pd.tp) + pd.const
    return PairSolution(
        ll, td, ts, tau, b, p, e_d, e_s, e_tx, value, fs, guess.s1, guess.s2, guess.s3
    )


# ---------------------------------------------------------------------- market clearing
def group_sum(x: F64, grp: I64, n_groups: int) -> F64:
    """Sum of ``x`` over the pairs of each group (``[n_groups]``)."""
    return np.bincount(grp, weights=x, minlength=n_groups).astype(np.float64)


def _stack(pd: PairData, copies: int) -> PairData:
    idx = np.tile(np.arange(pd.size), copies)
    return pd.take(idx)


@dataclass
class MarketResult:
    """Clearing prices of a batch of fixed-set problems (``[n_groups]``) and the pair optima.

    ``dual`` is the dual function D_g(mu_g, nu_g) = sum_pairs L - mu_g B - nu_g F_s: a valid
    lower bound of group g's fixed-set optimum whatever the convergence; ``converged`` says
    whether both markets clear within ``tol`` (relative excess, with mu, nu >= 0
    complementarity: a price at its floor may leave its market with excess supply).
    """

    mu: F64
    nu: F64
    sol: PairSolution
    dual: F64
    excess_b: F64
    excess_f: F64
    converged: NDArray[np.bool_]
    iterations: int


def _floor_and_scale(sol: PairSolution, pd: PairData, n_groups: int) -> F64:
    energy = sol.value - pd.const  # at tiny prices this is about the weighted energy
    return group_sum(np.abs(energy) + np.abs(pd.const), pd.grp, n_groups) + 1e-300


def _excess_and_jacobian(
    big3: PairData,
    g3: I64,
    caps: Caps,
    xx: F64,
    start: Start,
    h: float,
    log_mu_floor: F64,
    log_nu_floor: F64,
) -> tuple[PairSolution, F64, F64, F64]:
    """One stacked oracle call of :func:`clear_markets` at log prices ``xx`` ``[G, 2]``: the
    excess demands, their finite-difference Jacobian (step ``h`` in each log price) and the
    merit, from the base point and both perturbations solved together (``big3``, from the
    stacked ``start``)."""
    G = xx.shape[0]
    B, F = caps.bandwidth_hz, caps.server_cpu_hz
    xs = np.concatenate([xx, xx + np.array([h, 0.0]), xx + np.array([0.0, h])], axis=0)  # [3G, 2]
    sol = solve_pairs(big3, caps, np.exp(xs[g3, 0]), np.exp(xs[g3, 1]), *start)
    eb = group_sum(sol.b, g3, 3 * G) / B - 1.0
    ef = group_sum(sol.fs, g3, 3 * G) / F - 1.0
    fval = np.stack([eb[:G], ef[:G]], axis=1)
    jac = np.empty((G, 2, 2))
    jac[:, 0, 0] = (eb[G : 2 * G] - eb[:G]) / h
    jac[:, 1, 0] = (ef[G : 2 * G] - ef[:G]) / h
    jac[:, 0, 1] = (eb[2 * G :] - eb[:G]) / h
    jac[:, 1, 1] = (ef[2 * G :] - ef[:G]) / h
    return sol, fval, jac, _merit(fval, xx, log_mu_floor, log_nu_floor)


def _predict_start(sol3: PairSolution, m: int, h: float, dx: F64, grp: I64) -> tuple[F64, Roots]:
    """Starts of the next stacked oracle call of :func:`clear_markets` after a step ``dx``
    ``[G, 2]`` in log prices: each pair's log lambda and uplink roots in ``sol3`` moved along
    their finite-difference slopes (perturbed copies minus the base point, over ``h``); a
    slope that is not finite (a branch change) leaves the point where it was."""
    d_mu, d_nu = dx[grp, 0], dx[grp, 1]

    def moved(v: F64) -> F64:
        v3 = v.reshape(3, m)  # base point, mu perturbed, nu perturbed
        out = v3 + (v3[1] - v3[0]) / h * d_mu + (v3[2] - v3[0]) / h * d_nu
        return np.where(np.isfinite(out) | ~np.isfinite(v3[0]), out, v3).ravel()

    with np.errstate(invalid="ignore"):
        roots = Roots(moved(sol3.s_free), moved(sol3.s_band), moved(sol3.s_power))
        return moved(sol3.log_lam), roots


def clear_markets(
    pd: PairData,
    caps: Caps,
    n_groups: int,
    mu0: F64 | None = None,
    nu0: F64 | None = None,
    tol: float = 1e-11,
    max_iter: int = 100,
    base: PairSolution | None = None,
    deadline: float = math.inf,
    start: Start | None = None,
) -> MarketResult:
    """Prices (mu_g, nu_g) >= 0 that clear the bandwidth and server-CPU markets of each group.

    Each group is a fixed-set problem (one pair per device). The excess demands
    (sum b - B)/B and (sum f_s - F_s)/F_s are the gradient of the concave dual function;
    Newton in log prices with a finite-difference Jacobian (the base point and both
    perturbations are one stacked, warm-started oracle call), a per-group trust radius, and
    price floors 1e-16 x (energy scale) / capacity standing for a zero price (a market that
    does not bind). Groups must be feasible (see ``feasibility.fixed_set_margin``).
    ``base``: the pairs' solution at prices 1e-300 if the caller has it (each pair's
    subproblem is independent of the others, so a cached one serves any group).
    ``start``: the pairs' log lambdas and uplink roots near ``(mu0, nu0)`` for the first
    oracle call (default: ``base``'s lambdas; only iteration counts depend on it).
    ``deadline`` (a ``time.perf_counter()`` value): past it, the clearing stops between
    oracle calls and the groups not yet cleared are returned unconverged (never as
    infeasible); the caller's time limit thus covers the clearing too.

    Length (~95 lines): the Newton loop keeps its per-group state (prices, merit, trust
    radius, stacked solution) in locals that its accept step updates together.
    """
    G = n_groups
    B, F = caps.bandwidth_hz, caps.server_cpu_hz
    grp = pd.grp
    m = pd.size
    # scale of the objective per group, from a solve at tiny prices
    if base is None:
        tiny = np.full(m, 1e-300)
        base = solve_pairs(pd, caps, tiny, tiny)
    scale = _floor_and_scale(base, pd, G)
    log_mu_floor = np.log(1e-16 * scale / B)
    log_nu_floor = np.log(1e-16 * scale / F)
    start = start or (base.log_lam, None)
    x, start = _initial_log_prices(pd, caps, G, scale, start, mu0, nu0, deadline)
    x[:, 0] = np.maximum(x[:, 0], log_mu_floor)
    x[:, 1] = np.maximum(x[:, 1], log_nu_floor)
    h = 1e-6
    radius = np.full(G, 3.0)
    big3 = _stack(pd, 3)
    g3 = np.concatenate([grp, grp + G, grp + 2 * G])

    def evaluate(xx: F64, start3: Start) -> tuple[PairSolution, F64, F64, F64]:
        return _excess_and_jacobian(big3, g3, caps, xx, start3, h, log_mu_floor, log_nu_floor)

    sol3, fval, jac, merit = evaluate(x, _take_start(start, np.tile(np.arange(m), 3)))
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        todo = merit > tol
        if not np.any(todo) or time.perf_counter() > deadline:
            break
        step = _newton_step(fval, jac, x, log_mu_floor, log_nu_floor, radius)
        step[~todo] = 0.0
        x_new = x + step
        x_new[:, 0] = np.maximum(x_new[:, 0], log_mu_floor)
        x_new[:, 1] = np.maximum(x_new[:, 1], log_nu_floor)
        sol_n, fval_n, jac_n, merit_n = evaluate(x_new, _predict_start(sol3, m, h, x_new - x, grp))
        better = (merit_n < merit) | ~todo
        radius = np.where(better, np.minimum(2 * radius, 3.0), radius / 4)
        # accept per group
        acc_pairs = better[grp]
        x = np.where(better[:, None], x_new, x)
        fval = np.where(better[:, None], fval_n, fval)
        jac = np.where(better[:, None, None], jac_n, jac)
        merit = np.where(better, merit_n, merit)
        sol3 = _merge(sol3, sol_n, np.tile(acc_pairs, 3))
        if np.all(radius[todo] < 1e-14):
            break
    sol = sol3.take(slice(0, m))
    conv = merit <= tol
    eb, ef = fval[:, 0].copy(), fval[:, 1].copy()
    if not np.all(conv) and time.perf_counter() <= deadline:
        sol, it = _nested_fallback(
            pd, caps, G, scale, sol, x, merit, eb, ef, log_mu_floor, log_nu_floor, tol, it
        )
        conv = merit <= tol
    mu = np.exp(x[:, 0])
    nu = np.exp(x[:, 1])
    dual = group_sum(sol.value, grp, G) - mu * B - nu * F
    # cleared markets only count with every pair on its latency equation (an infeasible
    # group drives the prices, and lambda, to their caps without meeting the deadlines)
    resid = np.abs(sol.t_d + sol.t_s + sol.tau - pd.tp) / pd.tp
    late = np.zeros(G, dtype=bool)
    late[grp[~(resid <= 1e-9)]] = True
    return MarketResult(mu, nu, sol, dual, eb, ef, conv & ~late, it)


def _initial_log_prices(
    pd: PairData,
    caps: Caps,
    n_groups: int,
    scale: F64,
    start: Start,
    mu0: F64 | None,
    nu0: F64 | None,
    deadline: float = math.inf,
) -> tuple[F64, Start]:
    """Starting log prices ``[n_groups, 2]`` of :func:`clear_markets` and the start of its
    first oracle call there: the given prices with ``start``, or a scan of a log grid of mu
    (nu small), then of nu, each in one stacked oracle call, taking the grid point nearest
    the excess-demand sign change (past ``deadline``, the nu scan is skipped: the centre of
    its grid). Each scan's solution at its grid row nearest the chosen price starts the next
    oracle call (lambdas and uplink roots)."""
    G = n_groups
    B, F = caps.bandwidth_hz, caps.server_cpu_hz
    grp = pd.grp
    m = pd.size
    if mu0 is not None and nu0 is not None:
        return np.stack(
            [np.log(np.maximum(mu0, 1e-300)), np.log(np.maximum(nu0, 1e-300))], 1
        ), start
    grid = np.linspace(-6.0, 6.0, 13)
    k = grid.size
    big = _stack(pd, k)
    big_grp = np.tile(grp, k) + G * np.repeat(np.arange(k), m)
    at_all = np.tile(np.arange(m), k)
    mu_c = np.log(scale / B)
    nu_c = np.log(1e-3 * scale / F) if nu0 is None else np.log(np.maximum(nu0, 1e-300))
    if mu0 is None:  # (lambdas from solve_pairs' own start, nearer than the tiny prices')
        lmu = (mu_c[None, :] + grid[:, None]).ravel()
        sol = solve_pairs(big, caps, np.exp(lmu[big_grp]), np.exp(nu_c[big.grp]))
        ex = group_sum(sol.b, big_grp, G * k).reshape(k, G) / B - 1.0
        mu_start = _pick_crossing(ex, lmu.reshape(k, G))
        start = _row_start(sol, mu_start - mu_c - grid[0], grp, m)
    else:
        mu_start = np.log(np.maximum(mu0, 1e-300))
    if time.perf_counter() > deadline:
        return np.stack([mu_start, nu_c], axis=1), start
    lnu = (nu_c[None, :] + grid[:, None]).ravel()
    sol = solve_pairs(
        big, caps, np.exp(mu_start[big.grp]), np.exp(lnu[big_grp]), *_take_start(start, at_all)
    )
    ex = group_sum(sol.fs, big_grp, G * k).reshape(k, G) / F - 1.0
    nu_start = _pick_crossing(ex, lnu.reshape(k, G))
    return np.stack([mu_start, nu_start], axis=1), _row_start(
        sol, nu_start - nu_c - grid[0], grp, m
    )


def _row_start(sol: PairSolution, row_f: F64, grp: I64, m: int) -> Start:
    """The start (lambdas, uplink roots) of the ``m`` pairs from a grid scan's solution
    ``sol`` (rows of ``m`` pairs), at each group's row nearest ``row_f`` (fractional)."""
    k = sol.log_lam.size // m
    row = np.clip(np.rint(row_f), 0, k - 1).astype(np.int64)
    at = row[grp] * m + np.arange(m)
    return sol.log_lam[at], sol.roots().take(at)


def _nested_fallback(
    pd: PairData,
    caps: Caps,
    n_groups: int,
    scale: F64,
    sol: PairSolution,
    x: F64,
    merit: F64,
    eb: F64,
    ef: F64,
    log_mu_floor: F64,
    log_nu_floor: F64,
    tol: float,
    it: int,
) -> tuple[PairSolution, int]:
    """The globally convergent fallback of :func:`clear_markets` for the groups Newton left
    (nested monotone roots of the concave dual's gradient, :func:`clear_nested`), from
    Newton's point and, failing that, from scratch. Updates ``x``, ``merit``, ``eb`` and
    ``ef`` in place; returns the merged pair solution and the evaluation count."""
    B, F = caps.bandwidth_hz, caps.server_cpu_hz
    grp = pd.grp
    G = n_groups
    conv = merit <= tol
    # the concave dual's gradient), from Newton's point and, failing that, from scratch
    bad = np.flatnonzero(~conv)
    for start in ("newton", "cold"):
        if bad.size == 0:
            break
        x0 = (
            x[bad]
            if start == "newton"
            else np.stack([np.log(scale[bad] / B), np.log(1e-3 * scale[bad] / F)], axis=1)
        )
        nr = clear_nested(pd, caps, G, bad, x0, log_mu_floor, log_nu_floor, tol)
        it += nr.evaluations
        good = nr.merit < merit[bad]
        upd = bad[good]
        x[upd] = nr.x[good]
        merit[upd] = nr.merit[good]
        eb[upd], ef[upd] = nr.excess_b[good], nr.excess_f[good]
        pairs = np.isin(grp, upd)
        sol = _merge(sol, nr.sol, pairs)
        conv = merit <= tol
        bad = np.flatnonzero(~conv)
    return sol, it


@dataclass
class NestedResult:
    """Outcome of :func:`clear_nested` for the groups it was given (``[len(groups)]``);
    ``sol`` covers every pair (pairs of other groups are zeros)."""

    x: F64  # [g, 2] log prices
    merit: F64
    excess_b: F64
    excess_f: F64
    sol: PairSolution
    evaluations: int


def _monotone_root(
    fun: Any,
    x0: F64,
    floor: F64,
    tol: float,
    max_eval: int = 200,
    x_max: float = 300.0,
) -> tuple[F64, F64, NDArray[np.bool_], int]:
    """Per component, a root of a non-increasing function e(x) on [floor, x_max], or the
    floor when e(floor) <= 0 (a zero price: complementarity).

    ``fun(x, active)`` returns e at ``x`` for the components ``active``. Bracketing then the
    Illinois variant of regula falsi (Dowell & Jarratt 1971): the bracket always contains a
    sign change, so the method converges whatever the start. Ends when |e| <= tol, the
    bracket is below 1e-15 (relative), or at ``x_max`` with e > 0 (no root: unbounded dual).
    Returns (x, e(x), converged, evaluations).
    """
    g = x0.shape[0]
    x = np.maximum(x0.astype(float), floor)
    lo = np.full(g, np.nan)  # e(lo) > 0
    hi = np.full(g, np.nan)  # e(hi) < 0
    e_lo = np.full(g, np.nan)
    e_hi = np.full(g, np.nan)
    side = np.zeros(g, dtype=np.int64)  # Illinois: which end was kept last (+1 lo, -1 hi)
    step = np.ones(g)
    best_x = x.copy()
    best_e = np.full(g, np.inf)
    done = np.zeros(g, dtype=bool)
    conv = np.zeros(g, dtype=bool)
    evals = 0
    for _ in range(max_eval):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        e = np.asarray(fun(x[act], act), dtype=float)
        evals += 1
        xa = x[act]
        better = np.abs(e) < np.abs(best_e[act])
        best_x[act[better]], best_e[act[better]] = xa[better], e[better]
        at_floor = xa <= floor[act]
        ok = (np.abs(e) <= tol) | (at_floor & (e <= 0))
        pos = e > 0
        # update the brackets (Illinois halving of the retained end's value)
        keep_lo = pos
        new_lo = np.where(keep_lo, xa, lo[act])
        new_elo = np.where(keep_lo, e, e_lo[act])
        new_hi = np.where(~keep_lo, xa, hi[act])
        new_ehi = np.where(~keep_lo, e, e_hi[act])
        sd = side[act]
        new_ehi = np.where(keep_lo & (sd == 1) & np.isfinite(new_ehi), new_ehi / 2, new_ehi)
        new_elo = np.where(~keep_lo & (sd == -1) & np.isfinite(new_elo), new_elo / 2, new_elo)
        side[act] = np.where(keep_lo, 1, -1)
        lo[act], e_lo[act], hi[act], e_hi[act] = new_lo, new_elo, new_hi, new_ehi
        both = np.isfinite(new_lo) & np.isfinite(new_hi)
        width_ok = both & (np.abs(new_hi - new_lo) <= 1e-15 * np.maximum(1.0, np.abs(xa)))
        stuck_top = pos & (xa >= x_max)
        fin = ok | width_ok | stuck_top
        conv[act[ok]] = True
        done[act[fin]] = True
        # next points
        with np.errstate(divide="ignore", invalid="ignore"):
            rf = new_hi - new_ehi * (new_hi - new_lo) / (new_ehi - new_elo)
        nxt = np.where(both, rf, np.nan)
        bad_rf = both & ~((nxt > np.minimum(new_lo, new_hi)) & (nxt < np.maximum(new_lo, new_hi)))
        nxt = np.where(bad_rf, 0.5 * (new_lo + new_hi), nxt)
        st = step[act]
        up = ~both & pos  # root above: expand upwards
        down = ~both & ~pos  # root below (or at the floor)
        nxt = np.where(up, np.minimum(xa + st, x_max), nxt)
        nxt = np.where(down, np.maximum(xa - st, floor[act]), nxt)
        step[act] = np.where(~both, st * 2.0, st)
        x[act] = np.where(fin, xa, nxt)
    rem = ~done
    x[rem] = best_x[rem]
    return best_x, best_e, conv, evals


def clear_nested(
    pd: PairData,
    caps: Caps,
    n_groups: int,
    groups: I64,
    x0: F64,
    log_mu_floor: F64,
    log_nu_floor: F64,
    tol: float,
) -> NestedResult:
    """Clearing prices of ``groups`` by nested monotone root finding on the gradient of
    the concave dual D(mu, nu) (globally convergent; slower than Newton).

    Inner: for fixed nu, the bandwidth excess (sum b - B)/B = dD/dmu / B is non-increasing in
    mu (concavity), so mu*(nu) = argmax_mu D is its root (or the floor). Outer: h(nu) =
    D(mu*(nu), nu) is concave and h'(nu) = (sum f_s - F_s) by the envelope theorem, again a
    non-increasing function whose root (or the floor) is the maximiser. Each evaluation is
    one vectorised :func:`solve_pairs` call over the pairs of the groups still active.

    Length (~95 lines): the inner and outer root finds are closures over one shared state
    (the active groups' pairs, their warm-started lambdas, the evaluation count); split
    into functions they would pass that state around and hide the nesting.
    """
    B, F = caps.bandwidth_hz, caps.server_cpu_hz
    groups = np.asarray(groups, dtype=np.int64)
    g = groups.size
    pos_of = np.full(n_groups, -1, dtype=np.int64)
    pos_of[groups] = np.arange(g)
    pairs = np.flatnonzero(pos_of[pd.grp] >= 0)
    sub = pd.take(pairs)
    local = pos_of[sub.grp]  # pair -> position in ``groups``
    ll = np.full(sub.size, np.nan)
    x_mu = x0[:, 0].copy()
    x_nu = x0[:, 1].copy()
    lmf = log_mu_floor[groups]
    lnf = log_nu_floor[groups]
    count = [0]

    def pair_solve(act: I64, lmu: F64, lnu: F64) -> tuple[PairSolution, I64]:
        """solve_pairs for the groups ``act`` (positions) at log prices (per act)."""
        where = np.full(g, -1, dtype=np.int64)
        where[act] = np.arange(act.size)
        sel = np.flatnonzero(where[local] >= 0)
        w = where[local[sel]]
        l0 = ll[sel]
        sol = solve_pairs(
            sub.take(sel),
            caps,
            np.exp(lmu[w]),
            np.exp(lnu[w]),
            None if np.isnan(l0).any() else l0,
        )
        ll[sel] = sol.log_lam
        count[0] += 1
        return sol, sel

    def excess(sol: PairSolution, sel: I64, act: I64) -> tuple[F64, F64]:
        where = np.full(g, -1, dtype=np.int64)
        where[act] = np.arange(act.size)
        w = where[local[sel]]
        eb = group_sum(sol.b, w, act.size) / B - 1.0
        ef = group_sum(sol.fs, w, act.size) / F - 1.0
        return eb, ef

    def inner(act: I64, lnu: F64) -> tuple[F64, F64]:
        """mu*(nu) for groups ``act``; returns (log mu*, f-excess at it)."""
        ef_out = np.zeros(act.size)

        def fun_b(xm: F64, a: I64) -> F64:
            acts = act[a]
            sol, sel = pair_solve(acts, xm, lnu[a])
            eb, ef = excess(sol, sel, acts)
            ef_out[a] = ef
            return eb

        xm, _, _, _ = _monotone_root(fun_b, x_mu[act], lmf[act], 0.01 * tol)
        # the f-excess at the returned point (one more call keeps it consistent)
        sol, sel = pair_solve(act, xm, lnu)
        _, ef = excess(sol, sel, act)
        x_mu[act] = xm
        return xm, ef

    def fun_f(xn: F64, a: I64) -> F64:
        _, ef = inner(a, xn)
        return ef

    xn, _, _, _ = _monotone_root(fun_f, x_nu, lnf, tol)
    x_nu[:] = xn
    act = np.arange(g)
    xm, _ = inner(act, xn)
    sol, sel = pair_solve(act, xm, xn)
    eb, ef = excess(sol, sel, act)
    xx = np.stack([xm, xn], axis=1)
    merit = _merit(np.stack([eb, ef], axis=1), xx, lmf, lnf)
    full = PairSolution(*(np.zeros(pd.size) for _ in fields(PairSolution)))
    idx = pairs[sel]
    for f in fields(PairSolution):
        getattr(full, f.name)[idx] = getattr(sol, f.name)
    return NestedResult(xx, merit, eb, ef, full, count[0])


def _pick_crossing(ex: F64, lx: F64) -> F64:
    """Per group, the log price of the grid point nearest the excess-demand sign change."""
    G = ex.shape[1]
    out = np.empty(G)
    for g in range(G):
        e = ex[:, g]
        neg = np.flatnonzero(e <= 0)
        if neg.size == 0:
            out[g] = lx[-1, g] + 3.0
        elif neg[0] == 0:
            out[g] = lx[0, g] - 3.0
        else:
            i = neg[0]
            out[g] = 0.5 * (lx[i - 1, g] + lx[i, g])
    return out


def _merit(fval: F64, x: F64, lmf: F64, lnf: F64) -> F64:
    """Largest relative market violation, a price at its floor excusing excess supply."""
    e0 = np.where((x[:, 0] <= lmf + 1e-12) & (fval[:, 0] < 0), 0.0, np.abs(fval[:, 0]))
    e1 = np.where((x[:, 1] <= lnf + 1e-12) & (fval[:, 1] < 0), 0.0, np.abs(fval[:, 1]))
    return np.maximum(e0, e1)


def _newton_step(fval: F64, jac: F64, x: F64, lmf: F64, lnf: F64, radius: F64) -> F64:
    """Newton step on the excess demands in log prices, each component clipped to
    ``radius``. A price with excess supply whose step would cross its floor goes to the floor
    (a zero price: complementarity) and the other price takes the 1-D Newton step."""
    G = fval.shape[0]
    floor = np.stack([lmf, lnf], axis=1)
    # finite-difference noise (~1e-8 with h = 1e-6): drop entries far below the diagonal
    jac = jac.copy()
    dmax = np.maximum(np.abs(jac[:, 0, 0]), np.abs(jac[:, 1, 1]))
    for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):
        jac[:, i, j] = np.where(np.abs(jac[:, i, j]) < 1e-6 * dmax, 0.0, jac[:, i, j])
    det = jac[:, 0, 0] * jac[:, 1, 1] - jac[:, 0, 1] * jac[:, 1, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.stack(
            [
                (-fval[:, 0] * jac[:, 1, 1] + fval[:, 1] * jac[:, 0, 1]) / det,
                (-fval[:, 1] * jac[:, 0, 0] + fval[:, 0] * jac[:, 1, 0]) / det,
            ],
            axis=1,
        )
        d = np.stack([-fval[:, 0] / jac[:, 0, 0], -fval[:, 1] / jac[:, 1, 1]], axis=1)
    s = np.where(np.isfinite(s), s, d)
    # own-price response must be negative; a zero or positive FD slope (noise) means the
    # market does not react: move towards clearing by the largest allowed step
    flat = ~(np.stack([jac[:, 0, 0], jac[:, 1, 1]], axis=1) < 0)
    s = np.where(flat, np.where(fval > 0, np.inf, -np.inf), s)
    s[np.isnan(s)] = 0.0
    at_floor = x <= floor + 1e-12
    to_floor = (fval < 0) & (at_floor | ~np.isfinite(s) | (x + s <= floor))
    step = np.zeros((G, 2))
    for j in (0, 1):
        o = 1 - j
        only_o = to_floor[:, j] & ~to_floor[:, o]
        step[:, j] = np.where(to_floor[:, j], floor[:, j] - x[:, j], s[:, j])
        step[only_o, o] = d[only_o, o]
    bad = ~np.isfinite(step)
    step[bad] = np.where(fval[bad] > 0, np.inf, np.where(fval[bad] < 0, -np.inf, 0.0))
    clipped = np.clip(step, -radius[:, None], radius[:, None])
    return np.where(to_floor, step, clipped)


def _merge(old: PairSolution, new: PairSolution, take_new: NDArray[np.bool_]) -> PairSolution:
    return PairSolution(
        *(
            np.where(take_new, getattr(new, name), getattr(old, name))
            for name in _names(PairSolution)
        )
    )
