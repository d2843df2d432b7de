"""An independent fixed-set solver (spec 4 and 5.2): the reference that ``enumerate`` uses.

It shares no code with ``continuous.py`` / ``exact.py``: the model is written again here from
the specification's equations, and the convex problem is solved by a generic NLP method
(SciPy's SLSQP) instead of the dual decomposition. ``exact`` is checked against it.

For fixed sets, in the log variables ``x = (log t_d, log t_s, log tau, log b)`` per device
(t_d = C_dev / f, t_s = C_srv / f_s, tau = S_up / r), every function is smooth and convex
(``r_max(b) = b log2(1 + p_max g / (N0 b))``):

    minimise  sum_n w [ kappa_d C_dev^3 e^{-2 x_d} + kappa_s C_srv^3 e^{-2 x_s}
                        + (N0/g) e^{x_tau + x_b} (2^{S e^{-(x_tau + x_b)}} - 1) ] + c_n
    s.t.      x_d >= log(C_dev / f_max)                         (f <= f_max)
              x_tau >= log S - log r_max(e^{x_b})                (p <= p_max)
              e^{x_d} + e^{x_tau} + e^{x_s} <= T_max - S_down / r_dl   (deadline)
              sum_n e^{x_b} <= B,   sum_n C_srv e^{-x_s} <= F_s

(w = w_E x rounds; the transmit energy p tau with p = (N0 b / g)(2^{S/(tau b)} - 1) from the
rate equation r = b log2(1 + p g / (N0 b)) = S / tau). Convexity in log variables: the device
and server terms are exponentials; ``u (2^{S/u} - 1)`` with ``u = e^s`` is
``c (e^v - 1) / v`` with ``v = c e^{-s}`` (``c = S ln 2``), a convex increasing function of a
convex one; ``log r_max(e^s)`` is concave because the elasticity of the concave rate decreases.
So SLSQP's local optimum is global (up to its tolerance).

Feasibility first (phase 1, same variables, maximum power and CPU speed): minimise ``t`` with
``sum b <= t B`` and ``sum f_s <= t F_s`` under every deadline; the sets are feasible iff
``t* <= 1``. The phase-1 point starts phase 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from privtuner.optimizer.core.problem import FEAS_TOL_REL, AllocationProblem

F64 = NDArray[np.float64]
_LN2 = math.log(2.0)
#: phase-1 value above which the sets are reported infeasible (relative resource excess)
INFEASIBLE_MARGIN = 1e-7
#: lower bound of phase 1's t (the reported t* is max(t*, T_FLOOR); only t* <= 1 matters)
T_FLOOR = 0.5

RefStatus = Literal["optimal", "infeasible", "failed"]


@dataclass
class ReferenceSolution:
    """The reference's answer for one set combination.

    ``status``: ``optimal`` (a feasible allocation, SLSQP converged), ``infeasible`` (phase 1
    found no allocation within ``INFEASIBLE_MARGIN``: ``phase1`` > 1), ``failed`` (neither).
    """

    status: RefStatus
    objective: float = math.inf
    phase1: float = math.nan
    alloc: dict[str, F64] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class _Data:
    """Constants of the fixed-set problem, from the problem and the sets (arrays [n])."""

    c_dev: F64
    c_srv: F64
    s_up: F64
    t_avail: F64  # T_max - S_down / r_dl [s]
    gain: F64
    p_max: F64
    f_max: F64
    kappa_d: F64
    kappa_s: float
    n0: float
    bw: float
    fs_cap: float
    w: float
    const: float


def _data(problem: AllocationProblem, sets: NDArray[np.int64]) -> _Data:
    c = problem.costs
    for name in ("device_cycles", "server_cycles", "uplink_bits"):
        if np.any(getattr(c, name)[sets] <= 0):
            raise ValueError(f"reference solver needs positive costs.{name}")
    return _Data(
        c_dev=c.device_cycles[sets].astype(float),
        c_srv=c.server_cycles[sets].astype(float),
        s_up=c.uplink_bits[sets].astype(float),
        t_avail=problem.deadline_s - c.downlink_bits[sets] / problem.downlink_rate_bps,
        gain=problem.gain_lin.astype(float),
        p_max=problem.p_max_w.astype(float),
        f_max=problem.f_max_hz.astype(float),
        kappa_d=problem.kappa_dev.astype(float),
        kappa_s=float(problem.kappa_srv),
        n0=float(problem.noise_w_per_hz),
        bw=float(problem.bandwidth_hz),
        fs_cap=float(problem.server_cpu_hz),
        w=float(problem.energy_weight * problem.rounds),
        const=float(
            np.sum(
                -problem.privacy_weight * c.privacy[sets]
                if problem.objective_kind == "weighted"
                else np.zeros(len(sets))
            )
        ),
    )


def _log_rate_max(d: _Data, xb: F64) -> tuple[F64, F64]:
    """log r_max(b) at b = e^{xb} (max power) and its derivative in xb."""
    b = np.exp(xb)
    snr = d.p_max * d.gain / (d.n0 * b)
    l1 = np.log1p(snr)
    rate = b * l1 / _LN2
    # d rate / d b = (l1 - snr/(1+snr)) / ln2; d log rate / d xb = b rate' / rate
    der = (l1 - snr / (1.0 + snr)) / l1
    return np.log(rate), der


def _tx_energy(d: _Data, s: F64) -> tuple[F64, F64]:
    """(N0/g) u (2^{S/u} - 1) at u = e^s, and its derivative in s."""
    u = np.exp(s)
    v = np.minimum(d.s_up * _LN2 / u, 700.0)
    em1 = np.expm1(v)
    val = (d.n0 / d.gain) * u * em1
    # d/ds [u (e^v - 1)] = u (e^v - 1) - u e^v v   (dv/ds = -v)
    der = (d.n0 / d.gain) * u * (em1 - np.exp(v) * v)
    return val, der


def _phase1(d: _Data, n: int) -> tuple[float, F64, F64, bool]:
    """min t >= T_FLOOR: sum b <= t B, sum f_s <= t F_s, deadlines met at p_max and f_max.

    Variables (x_b, x_fs, log t) with b = e^{x_b}, f_s = e^{x_fs}. Returns (t*, b, f_s,
    converged); t* is the best feasible point's value even when not converged.

    Length (~90 lines): the objective, constraints and Jacobians of one SLSQP problem are
    closures over its data, written next to the restart loop that uses them.
    """
    from scipy.optimize import minimize  # (here: importing scipy.optimize takes ~0.35 s)

    t_dev = d.c_dev / d.f_max
    slack = d.t_avail - t_dev  # time left for uplink + server

    def unpack(z: F64) -> tuple[F64, F64, float]:
        return z[:n], z[n : 2 * n], float(z[2 * n])

    def obj(z: F64) -> float:
        return float(z[2 * n])

    def obj_jac(z: F64) -> F64:
        g = np.zeros(2 * n + 1)
        g[2 * n] = 1.0
        return g

    def cons(z: F64) -> F64:
        xb, xf, lt = unpack(z)
        lr, _ = _log_rate_max(d, xb)
        t_up = d.s_up * np.exp(-lr)
        t_srv = d.c_srv * np.exp(-xf)
        deadline = 1.0 - (t_up + t_srv) / slack
        bw = np.exp(lt) - np.sum(np.exp(xb)) / d.bw
        cpu = np.exp(lt) - np.sum(np.exp(xf)) / d.fs_cap
        return np.concatenate([deadline, [bw, cpu]])

    def cons_jac(z: F64) -> F64:
        xb, xf, lt = unpack(z)
        lr, dlr = _log_rate_max(d, xb)
        t_up = d.s_up * np.exp(-lr)
        t_srv = d.c_srv * np.exp(-xf)
        jac = np.zeros((n + 2, 2 * n + 1))
        jac[np.arange(n), np.arange(n)] = t_up * dlr / slack
        jac[np.arange(n), n + np.arange(n)] = t_srv / slack
        jac[n, :n] = -np.exp(xb) / d.bw
        jac[n, 2 * n] = math.exp(lt)
        jac[n + 1, n : 2 * n] = -np.exp(xf) / d.fs_cap
        jac[n + 1, 2 * n] = math.exp(lt)
        return jac

    if np.any(slack <= 0):
        return math.inf, np.zeros(n), np.zeros(n), True
    # start: every device with all of B and F_s (feasible: each device meets its deadline
    # alone, checked by the caller), t = n
    b0 = np.full(n, d.bw)
    f0 = np.full(n, d.fs_cap)
    z0 = np.concatenate([np.log(b0), np.log(f0), [math.log(n) + 1e-6]])
    lb_, lf_ = math.log(d.bw), math.log(d.fs_cap)
    # log t is floored at log(T_FLOOR): phase 1 only decides t* <= 1 and gives phase 2 a
    # feasible start, and without the floor SLSQP can wander into the degenerate region
    # where every resource is nearly unused (t -> 0) and stall there (seen on AMD EPYC)
    p1_bounds = [(lb_ - 60.0, lb_ + 5.0)] * n + [(lf_ - 60.0, lf_ + 5.0)] * n
    p1_bounds.append((math.log(T_FLOOR), 10.0))
    z0 = np.clip(z0, [b[0] for b in p1_bounds], [b[1] for b in p1_bounds])
    # the start is feasible (t = n): the answer is never worse than it
    best_t, best_b, best_f = float(n), b0, f0
    converged = False
    t_star = math.inf  # SLSQP's optimal value once converged
    prev = math.inf
    start = z0
    for _ in range(6):  # restarts: SLSQP's line search can stop early
        with np.errstate(all="ignore"):
            r = minimize(
                obj,
                start,
                jac=obj_jac,
                method="SLSQP",
                bounds=p1_bounds,
                constraints=[{"type": "ineq", "fun": cons, "jac": cons_jac}],
                options={"ftol": 1e-14, "maxiter": 1000},
            )
        xb, xf, _ = unpack(r.x)
        b, fs = np.exp(xb), np.exp(xf)
        lr, _ = _log_rate_max(d, xb)
        late = (d.s_up * np.exp(-lr) + d.c_srv / fs) / slack - 1.0
        near = bool(np.max(late) <= 0.5 * FEAS_TOL_REL)
        if near:
            t = max(np.sum(b) / d.bw, np.sum(fs) / d.fs_cap)
            if t < best_t:
                best_t, best_b, best_f = t, b, fs
        if near and (r.success or abs(float(r.fun) - prev) <= 1e-12):
            converged = True
            t_star = math.exp(float(r.fun))
            break
        prev = float(r.fun)
        start = r.x
    return (t_star if converged else best_t), best_b, best_f, converged


def _phase2(d: _Data, n: int, b0: F64, fs0: F64) -> tuple[bool, F64, str]:
    """Minimise the energy from a feasible (b0, fs0); returns (converged, x, message).

    Length (~80 lines): as :func:`_phase1`, one SLSQP problem's callbacks as closures.
    """
    from scipy.optimize import minimize

    t_dmin = d.c_dev / d.f_max
    lr0, _ = _log_rate_max(d, np.log(b0))
    x0 = np.concatenate([np.log(t_dmin), np.log(d.c_srv / fs0), np.log(d.s_up) - lr0, np.log(b0)])
    sl = slice(0, n), slice(n, 2 * n), slice(2 * n, 3 * n), slice(3 * n, 4 * n)
    ad = d.w * d.kappa_d * d.c_dev**3
    as_ = d.w * d.kappa_s * d.c_srv**3

    def energy(x: F64) -> tuple[float, F64]:
        xd, xs, xt, xb = (x[s] for s in sl)
        e_tx, de_tx = _tx_energy(d, xt + xb)
        ed = ad * np.exp(-2 * xd)
        es = as_ * np.exp(-2 * xs)
        val = float(np.sum(ed + es + d.w * e_tx))
        g = np.concatenate([-2 * ed, -2 * es, d.w * de_tx, d.w * de_tx])
        return val, g

    scale = max(energy(x0)[0], 1e-300)

    def fun(x: F64) -> tuple[float, F64]:
        v, g = energy(x)
        return v / scale, g / scale

    def cons(x: F64) -> F64:
        xd, xs, xt, xb = (x[s] for s in sl)
        lr, _ = _log_rate_max(d, xb)
        power = xt + lr - np.log(d.s_up)
        deadline = 1.0 - (np.exp(xd) + np.exp(xt) + np.exp(xs)) / d.t_avail
        bw = 1.0 - np.sum(np.exp(xb)) / d.bw
        cpu = 1.0 - np.sum(d.c_srv * np.exp(-xs)) / d.fs_cap
        return np.concatenate([power, deadline, [bw, cpu]])

    def cons_jac(x: F64) -> F64:
        xd, xs, xt, xb = (x[s] for s in sl)
        _, dlr = _log_rate_max(d, xb)
        jac = np.zeros((2 * n + 2, 4 * n))
        i = np.arange(n)
        jac[i, 2 * n + i] = 1.0
        jac[i, 3 * n + i] = dlr
        jac[n + i, i] = -np.exp(xd) / d.t_avail
        jac[n + i, n + i] = -np.exp(xs) / d.t_avail
        jac[n + i, 2 * n + i] = -np.exp(xt) / d.t_avail
        jac[2 * n, 3 * n :] = -np.exp(xb) / d.bw
        jac[2 * n + 1, n : 2 * n] = d.c_srv * np.exp(-xs) / d.fs_cap
        return jac

    lt_max = np.log(d.t_avail)
    bounds = (
        [(float(a), float(b)) for a, b in zip(np.log(t_dmin), lt_max, strict=True)]
        + [(float(a), float(b)) for a, b in zip(np.log(d.c_srv / d.fs_cap), lt_max, strict=True)]
        + [(float(a) - 60.0, float(b)) for a, b in zip(np.log(d.s_up) - 60.0, lt_max, strict=True)]
        + [(math.log(d.bw) - 60.0, math.log(d.bw))] * n
    )
    x0 = np.clip(x0, [b[0] for b in bounds], [b[1] for b in bounds])
    best_x, best_v, msg, ok = x0, fun(x0)[0], "", False
    x = x0
    prev = math.inf
    for _ in range(8):  # restart from the last point: SLSQP's line search can stop early
        with np.errstate(all="ignore"):
            r = minimize(
                fun,
                x,
                jac=True,
                method="SLSQP",
                bounds=bounds,
                constraints=[{"type": "ineq", "fun": cons, "jac": cons_jac}],
                options={"ftol": 1e-15, "maxiter": 400},
            )
        msg = str(r.message)
        # within half of evaluate's tolerance (FEAS_TOL_REL); the end point is re-evaluated
        feasible = bool(np.min(cons(r.x)) >= -0.5 * FEAS_TOL_REL)
        if feasible and r.fun <= best_v:
            best_x, best_v = r.x, float(r.fun)
        # converged: SLSQP says so, or two restarts in a row end at the same value (its
        # line search or iteration count stops it within rounding of the optimum)
        if feasible and (r.success or abs(r.fun - prev) <= 1e-11 * max(1.0, abs(r.fun))):
            ok = True
            break
        prev = float(r.fun) if feasible else math.inf
        x = r.x
    return ok, best_x, msg


def solve_fixed_sets(problem: AllocationProblem, sets: Any) -> ReferenceSolution:
    """Optimum of the fixed-set problem (see :func:`_solve`); floating-point warnings of the
    intermediate iterates are silenced (every end point is re-evaluated)."""
    with np.errstate(all="ignore"):
        return _solve(problem, sets)


def _solve(problem: AllocationProblem, sets: Any) -> ReferenceSolution:
    """Optimum of the fixed-set convex problem (module docstring), independently of
    ``exact``. The allocation is re-evaluated by ``problem.evaluate`` (the objective is
    that evaluation's)."""
    sets = np.asarray(sets, dtype=np.int64)
    n = problem.n_devices
    d = _data(problem, sets)
    t_dev = d.c_dev / d.f_max
    # alone, with all of B and F_s: the deadline must be reachable
    lr_all, _ = _log_rate_max(d, np.full(n, math.log(d.bw)))
    t_alone = t_dev + d.s_up * np.exp(-lr_all) + d.c_srv / d.fs_cap
    if np.any(t_alone >= d.t_avail):
        return ReferenceSolution("infeasible", phase1=math.inf, message="a device alone misses")
    t1, b1, fs1, p1_ok = _phase1(d, n)
    if t1 > 1.0 + INFEASIBLE_MARGIN:
        if p1_ok:
            return ReferenceSolution("infeasible", phase1=t1, message=f"phase 1: t* = {t1:.9g}")
        return ReferenceSolution(
            "failed", phase1=t1, message=f"phase 1 not converged (best t = {t1:.9g} > 1)"
        )
    # a point strictly inside the capacities when possible
    shrink = min(1.0, 1.0 / max(t1, 1e-300))
    b1, fs1 = b1 * shrink, fs1 * shrink
    if d.w > 0:
        ok, x, msg = _phase2(d, n, b1, fs1)
        t_d, t_s, tau, b = (np.exp(x[i * n : (i + 1) * n]) for i in range(4))
    else:  # energy does not count: any feasible point is optimal
        ok, msg = True, "zero energy weight"
        lr, _ = _log_rate_max(d, np.log(b1))
        t_d, t_s, tau, b = t_dev, d.c_srv / fs1, d.s_up * np.exp(-lr), b1
    fs = d.c_srv / t_s
    if np.sum(b) > d.bw:
        b = b * (d.bw / np.sum(b))
    if np.sum(fs) > d.fs_cap:
        fs = fs * (d.fs_cap / np.sum(fs))
    p = np.minimum(
        d.n0 * b / d.gain * np.expm1(np.minimum(d.s_up * _LN2 / (tau * b), 700)), d.p_max
    )
    f = np.minimum(d.c_dev / t_d, d.f_max)
    alloc = {"sets": sets, "bandwidth_hz": b, "tx_power_w": p, "cpu_hz": f, "server_cpu_hz": fs}
    ev = problem.evaluate(sets, b, p, f, fs)
    if not ev.is_feasible():
        return ReferenceSolution(
            "failed", phase1=t1, alloc=alloc, message=f"infeasible end point: {ev.violations}"
        )
    return ReferenceSolution(
        "optimal" if ok else "failed", ev.objective, t1, alloc, "" if ok else msg
    )
