"""Stage B of the alternating optimisation (spec 5.1): fractional programming over (b, p, f_s).

With the CKKS sets fixed, the transmit energy is a sum of ratios (spec section 4)::

    sum_n p_n tau_n = sum_n p_n S_up,n / r_n(b_n, p_n),   r_n = b_n log2(1 + p_n g_n / (N0 b_n))

*Quadratic transform* (Shen and Yu, "Fractional programming for communication systems - part I",
IEEE Trans. Signal Process. 66(10), 2018), for a minimised ratio N/D with N >= 0, D > 0::

    N / D = min_{y > 0}  y N^2 + 1 / (4 y D^2),      y* = 1 / (2 N D)

For fixed y the surrogate is convex in (b, p): N = p is linear and 1/D^2 is a convex decreasing
function of the concave rate. Alternating y* (closed form) with the convex solve is a
majorisation-minimisation: the objective never increases. *Dinkelbach* (option
``method="dinkelbach"``; W. Dinkelbach, "On nonlinear fractional programming", Manag. Sci.
13(7), 1967) replaces each ratio by ``N - lambda_n D`` with ``lambda_n = N/D`` at the current
point (the multi-ratio form of Jong, 2012); it is not monotone for a sum of ratios, so a step
that increases the true objective is replaced by a quadratic-transform step.

The convex problem (cvxpy, solved by Clarabel) is built ONCE per problem size with
``cp.Parameter`` s (DPP) and re-solved with new parameter values for every FP step, every set
assignment and every AO iteration. Scaled variables: ``x = b / B``, ``q = p / p_max``,
``s = f_s / F_s``; the rate in nats per hertz of B is ``rhat = -rel_entr(x, x + snr0 q)`` with
``snr0 = p_max g / (N0 B)`` (so ``r = B rhat / ln 2``), written directly as the exponential
cone cvxpy would use for ``rel_entr``; times are in units of T_max.

CPU frequencies. The device CPU is at the smallest frequency that meets the deadline (closed
form, spec 5.1)::

    f_n = C_dev / (T_max - S_down/r_dl - tau_n - C_srv/f_s,n)

and is substituted into the objective: ``kappa_d C_dev f_n^2 = kappa_d C_dev^3 / slack_n^2``,
convex because ``slack_n`` (the time left for the device) is concave in (b, p, f_s); the
``f_n <= f_max`` limit becomes ``slack_n >= C_dev / f_max``. The server CPU ``f_s`` is shared
(``sum f_s <= F_s``) and so is optimised inside the convex solve. Auxiliary variables ``u <=
rhat`` and ``t <= slack`` keep every parameter-times-expression product DPP.

Numerics (measured, see the tests): every FP step re-scales the variables at the current point
and shifts the rate's exponential cone by the current SNR, so that Clarabel sees coefficients
of order one; a failed or inaccurate solve is retried with more regularisation, an inaccurate
point that does not improve is replaced by a shortened step (the surrogate is convex), and every
accepted point is re-checked with ``AllocationProblem.evaluate``. Above ``DPP_MAX_DEVICES``
devices the problem (still built once, with Parameters) is re-canonicalised at each solve
(``ignore_dpp``): cvxpy's DPP compilation grows quadratically with the size. Limitation: with
hundreds of devices spanning ~10 decades of SNR the conic solves become inaccurate and FP can
stop a few per cent above the fixed-set optimum (the ``exact`` method has no such issue).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from privtuner.errors import SolverError
from privtuner.optimizer.core.allocation import Allocation
from privtuner.optimizer.core.model import (
    LN2,
    closed_form_cpus_hz,
    compute_energy_j,
    device_terms,
    smallest_device_cpu_hz,
)
from privtuner.optimizer.core.model import energy_objective as _terms_energy_objective
from privtuner.optimizer.core.problem import AllocationProblem
from privtuner.optimizer.methods.ao.options import AO_DEFAULTS, FpMethod, check_fp_method

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

DeviceCpu = Literal["closed_form", "max"]

#: Largest relative constraint violation a stage-B point may have before it is rejected.
POINT_TOL_REL = 1e-8

#: Relative margins on the f <= f_max constraint inside the convex solve (``_set_params``):
#: the FP runs with the first; a short polish then tries the smaller ones, keeping a step only
#: if it is feasible and better (Clarabel's tolerance could otherwise push f above f_max).
EPS_MARGINS_REL = (1e-6, 1e-7, 1e-8)
POLISH_STEPS = 3

#: Clarabel settings tried in turn when a solve fails or is inaccurate (more regularisation,
#: more iterations): interior-point methods can stall on nearly flat directions (devices
#: whose transmit energy hardly depends on the power at low SNR).
CLARABEL_RETRIES: tuple[dict[str, Any], ...] = (
    {},
    {"static_regularization_constant": 1e-6, "max_iter": 400},
    {
        "static_regularization_constant": 1e-6,
        "max_iter": 400,
        "reduced_tol_gap_rel": 1e-3,
        "reduced_tol_gap_abs": 1e-4,
        "reduced_tol_feas": 1e-6,
        "reduced_tol_ktratio": 1e-3,
    },
)

#: Above this many devices the problem is re-canonicalised at every solve (``ignore_dpp``):
#: cvxpy's DPP parameter tensor grows with (variables x parameters), i.e. quadratically in n,
#: and its one-time compilation takes seconds at a few hundred devices.
DPP_MAX_DEVICES = 150

#: Which fractions are scaled by their current value (the others by 1/n, or 1 for the power).
SCALE_VARS = "xq"


def default_start(problem: AllocationProblem, sets: I64) -> Allocation:
    """A starting point for stage B: equal bandwidth, max power, CPUs by
    ``core.model.closed_form_cpus_hz``; server shares scaled down to F_s if they exceed it (then the
    device CPU in closed form). It may violate f <= f_max or the deadline (FP then starts from
    the first feasible solve)."""
    n = problem.n_devices
    sets = np.asarray(sets, dtype=np.int64)
    b = np.full(n, problem.bandwidth_hz / n)
    p = np.array(problem.p_max_w, dtype=float)
    f, fs = closed_form_cpus_hz(problem, sets, b, p)
    fs = np.where(np.isfinite(fs), fs, problem.server_cpu_hz / n)
    if fs.sum() > problem.server_cpu_hz:
        fs = fs * (problem.server_cpu_hz / fs.sum())
    f = smallest_device_cpu_hz(problem, sets, b, p, fs)
    f = np.where(np.isfinite(f), np.minimum(f, problem.f_max_hz), problem.f_max_hz)
    return Allocation(sets, b, p, f, fs)


def energy_objective(problem: AllocationProblem, alloc: Allocation) -> float:
    """``w_E sum_n rounds E_n`` (no privacy term), E_n of spec section 4 by the kernel
    (``core.model``), as ``AllocationProblem.evaluate`` computes it [objective units]."""
    terms = device_terms(
        problem,
        alloc.sets,
        alloc.bandwidth_hz,
        alloc.tx_power_w,
        alloc.cpu_hz,
        alloc.server_cpu_hz,
    )
    val = _terms_energy_objective(problem, terms)
    return val if math.isfinite(val) else math.inf


def objective_value(problem: AllocationProblem, alloc: Allocation) -> float:
    """The problem's objective (energy part + ``sum_n -w_P Phi``), as ``evaluate`` computes it."""
    return energy_objective(problem, alloc) + float(np.sum(problem.set_constant[alloc.sets]))


def max_violation(problem: AllocationProblem, alloc: Allocation) -> float:
    """Largest relative constraint violation (definitions of ``AllocationProblem.evaluate``)."""
    ev = problem.evaluate(
        alloc.sets, alloc.bandwidth_hz, alloc.tx_power_w, alloc.cpu_hz, alloc.server_cpu_hz
    )
    return float(ev.max_violation)


@dataclass
class StageBResult:
    """Outcome of one stage-B solve for fixed sets."""

    status: Literal["optimal", "feasible", "infeasible", "error"]
    allocation: Allocation | None
    objective: float  # the problem's objective (energy part + privacy constant)
    iterations: int
    time_s: float
    history: list[float] = field(default_factory=list)  # objective after each accepted step
    message: str = ""
    fallback_steps: int = 0  # steps that switched surrogate (Dinkelbach not monotone, failure)
    backtracks: int = 0  # inaccurate solves followed by a shortened step


def _power_scale(problem: AllocationProblem) -> F64:
    """p_max where positive, else 1: the power fraction q = p / scale."""
    return np.where(problem.p_max_w > 0, problem.p_max_w, 1.0)


@dataclass
class _FpRun:
    """The state of one :meth:`StageB.solve`: the current point (``cur``, its fractions
    ``x = b/B`` and ``q = p/p_max``), whether it is feasible, and the counters."""

    problem: AllocationProblem
    sets: I64
    device_cpu: DeviceCpu
    t0: float
    time_limit_s: float | None
    cur: Allocation
    x: F64
    q: F64
    cur_obj: float = math.inf
    cur_ok: bool = False
    history: list[float] = field(default_factory=list)
    fallback: int = 0
    backtracks: int = 0
    it: int = 0
    message: str = ""
    status_fail: str | None = None

    def out_of_time(self) -> bool:
        return self.time_limit_s is not None and time.perf_counter() - self.t0 > self.time_limit_s

    def time_left_s(self) -> float | None:
        """Seconds left of the time limit (``None``: no limit)."""
        if self.time_limit_s is None:
            return None
        return self.time_limit_s - (time.perf_counter() - self.t0)

    def accept(self, alloc: Allocation, obj: float) -> None:
        """Move to a feasible point of objective ``obj``."""
        self.cur, self.cur_obj, self.cur_ok = alloc, obj, True
        self.history.append(obj)
        self.x = alloc.bandwidth_hz / self.problem.bandwidth_hz
        self.q = alloc.tx_power_w / _power_scale(self.problem)

    def result(self) -> StageBResult:
        """The outcome: the best feasible point, or why there is none."""
        elapsed = time.perf_counter() - self.t0
        if self.cur_ok:
            return StageBResult(
                "feasible",
                self.cur,
                self.cur_obj,
                self.it,
                elapsed,
                self.history,
                self.message,
                fallback_steps=self.fallback,
                backtracks=self.backtracks,
            )
        fail = self.status_fail
        if fail is not None and fail.startswith("infeasible"):
            status: Literal["infeasible", "error"] = "infeasible"
            message = f"stage B: convex problem {fail} for these sets"
        else:
            status, message = "error", f"stage B: no feasible point ({fail or self.message})"
        return StageBResult(
            status, None, math.inf, self.it, elapsed, self.history, message, self.fallback
        )


class StageB:
    """The stage-B convex problem, built once for ``problem`` (module docstring).

    ``solve(sets, start)`` runs fractional programming from ``start`` (an :class:`Allocation`,
    typically the previous AO point; ``None``: :func:`default_start`).

    Scaling (every FP step re-normalises at the current point, so that Clarabel sees numbers of
    order one): the fractions ``x = b/B``, ``q = p/p_max``, ``s = f_s/F_s`` are ``xsc X``,
    ``qsc Q``, ``ssc S`` with the scales their current values (so X, Q, S are about 1; the
    power of a device near the server is often 1e-5 p_max); the rate in nats per hertz of B,
    ``rhat = x ln(1 + snr0 q / x)``, is bounded below by ``rho U`` with ``rho`` its current
    value; the device time fraction ``t = C_dev/(f T_max)`` is ``tsc T``. The exponential cone
    of the rate is shifted by ``s = 1 + current SNR`` (see ``__init__``). The objective is
    divided by the current energy objective.
    """

    def __init__(self, problem: AllocationProblem) -> None:
        import cvxpy as cp
        from cvxpy.constraints import ExpCone, PowCone3D

        self.problem = problem
        n = problem.n_devices
        self.n = n
        self.snr0 = np.asarray(problem.snr_hz, dtype=float) / problem.bandwidth_hz
        V = lambda name: cp.Variable(n, name=name)  # noqa: E731
        self.X, self.Q, self.S = V("bandwidth_scaled"), V("power_scaled"), V("server_scaled")
        self.U, self.T = V("rate_scaled"), V("device_time_scaled")
        inv_u, inv_srv = V("inv_rate"), V("inv_server_cpu")  # >= 1/U, >= 1/S
        z_t, z_u, z_s, z_q = V("z_t"), V("z_u"), V("z_s"), V("z_q")  # epigraphs
        P = lambda name, nonneg=True: cp.Parameter(n, name=name, nonneg=nonneg)  # noqa: E731
        self.xsc, self.ssc, self.tsc = P("xsc"), P("ssc"), P("tsc")
        self.rho_x, self.log_s, self.inv_s, self.snr_q = (
            P("rho_x"),
            P("log_s"),
            P("inv_s"),
            P("snr_q"),
        )
        self.sigu, self.gams, self.eps = P("sigu"), P("gams"), P("eps")
        self.head = P("head", nonneg=False)
        self.cdev, self.csrv = P("cdev"), P("csrv")
        self.a0, self.a1, self.a2, self.a3 = P("a0"), P("a1"), P("a2"), P("a3")
        self.X_lo, self.X_hi = P("X_lo"), P("X_hi")
        self.Q_lo, self.Q_hi = P("Q_lo"), P("Q_hi")
        self.S_lo, self.S_hi = P("S_lo"), P("S_hi")
        one = np.ones(n)
        slack = self.head - cp.multiply(self.sigu, inv_u) - cp.multiply(self.gams, inv_srv)
        dev_time = cp.multiply(self.tsc, self.T)
        cons = [
            self.xsc @ self.X <= 1,
            self.ssc @ self.S <= 1,
            self.X >= self.X_lo,
            self.X <= self.X_hi,
            self.Q >= self.Q_lo,
            self.Q <= self.Q_hi,
            self.S >= self.S_lo,
            self.S <= self.S_hi,
            # rate: rho U <= x ln(1 + snr0 q / x)  <=>  x exp(rho U / x) <= x + snr0 q
            # <=> x exp((rho U - x ln s)/x) <= (x + snr0 q)/s for any s > 0; with s = 1 + the
            # current SNR, and the cone divided by xsc, every coefficient is of order one
            ExpCone(
                cp.multiply(self.rho_x, self.U) - cp.multiply(self.log_s, self.X),
                self.X,
                cp.multiply(self.inv_s, self.X) + cp.multiply(self.snr_q, self.Q),
            ),
            PowCone3D(inv_u, self.U, one, 0.5),  # inv_u U >= 1
            PowCone3D(inv_srv, self.S, one, 0.5),  # inv_srv S >= 1
            dev_time <= slack,
            dev_time >= self.eps,
            PowCone3D(z_t, self.T, one, 1.0 / 3.0),  # z_t >= T^-2
            PowCone3D(z_u, self.U, one, 1.0 / 3.0),  # z_u >= U^-2
            PowCone3D(z_s, one, self.S, 0.5),  # z_s >= S^2
            PowCone3D(z_q, one, self.Q, 0.5),  # z_q >= Q^2
        ]
        obj = (
            self.cdev @ z_t
            + self.csrv @ z_s
            + self.a1 @ z_q
            + self.a2 @ z_u
            + self.a0 @ self.Q
            - self.a3 @ self.U
        )
        self.cp_problem = cp.Problem(cp.Minimize(obj), cons)
        if not self.cp_problem.is_dpp():  # pragma: no cover - a construction bug
            raise SolverError("stage-B problem is not DPP")
        self.builds = 1
        self.solves = 0
        self.ignore_dpp = n > DPP_MAX_DEVICES
        self._sol: tuple[F64, F64, F64] = (np.zeros(n), np.zeros(n), np.zeros(n))
        self._scales: tuple[F64, F64, F64] = (one, one, one)

    # ------------------------------------------------------------------ helpers
    def _set_bounds(self, bounds: dict[str, F64 | float] | None) -> None:
        n = self.n
        d = {
            "x_lo": np.zeros(n),
            "x_hi": np.ones(n),
            "q_lo": np.zeros(n),
            "q_hi": np.ones(n),
            "s_lo": np.zeros(n),
            "s_hi": np.ones(n),
        }
        for key, val in (bounds or {}).items():
            if key not in d:
                raise SolverError(f"stage B: unknown bound {key!r}; valid: {sorted(d)}")
            d[key] = np.broadcast_to(np.asarray(val, dtype=float), (n,)).copy()
        self.bounds = d

    def _rhat(self, x: F64, q: F64) -> F64:
        """Rate in nats per hertz of B: ``x ln(1 + snr0 q / x)`` with ``x = b/B``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(x > 0, x * np.log1p(self.snr0 * q / np.where(x > 0, x, 1.0)), 0.0)
        return np.asarray(r, dtype=float)

    def _complete(self, sets: I64, x: F64, q: F64, s: F64, device_cpu: DeviceCpu) -> Allocation:
        """Fractions (b/B, p/p_max, f_s/F_s) -> allocation, projected onto the simple
        constraints exactly; the device CPU in closed form (or f_max)."""
        pr = self.problem
        x = np.maximum(np.nan_to_num(x, nan=0.0), 0.0)
        s = np.maximum(np.nan_to_num(s, nan=0.0), 0.0)
        q = np.clip(np.nan_to_num(q, nan=0.0), 0.0, 1.0)
        if x.sum() > 1.0:
            x = x / x.sum()
        if s.sum() > 1.0:
            s = s / s.sum()
        b = x * pr.bandwidth_hz
        p = np.minimum(q * pr.p_max_w, pr.p_max_w)
        fs = s * pr.server_cpu_hz
        if device_cpu == "max":
            f = np.array(pr.f_max_hz, dtype=float)
        else:
            f = smallest_device_cpu_hz(pr, sets, b, p, fs)
        return Allocation(np.asarray(sets, dtype=np.int64), b, p, f, fs)

    def _set_params(
        self,
        sets: I64,
        x: F64,
        q: F64,
        alloc: Allocation,
        method: FpMethod,
        device_cpu: DeviceCpu,
        margin: float,
    ) -> None:
        """All parameters for one FP step at the current point ``(x, q)`` / ``alloc``, with the
        relative ``margin`` on f <= f_max (``EPS_MARGINS_REL``).

        Length (~80 lines): every Parameter of the one DPP problem is set here, in the order
        of ``__init__``'s construction, so that the two can be read side by side."""
        pr = self.problem
        c = pr.costs
        n = self.n
        k = np.asarray(sets, dtype=np.int64)
        D, B, F = pr.deadline_s, pr.bandwidth_hz, pr.server_cpu_hz
        f_cur = np.where(
            np.isfinite(alloc.cpu_hz), np.minimum(alloc.cpu_hz, pr.f_max_hz), pr.f_max_hz
        )
        alloc = Allocation(
            alloc.sets, alloc.bandwidth_hz, alloc.tx_power_w, f_cur, alloc.server_cpu_hz
        )
        e_ref = energy_objective(pr, alloc)
        if not (math.isfinite(e_ref) and e_ref > 0):
            e_ref = self._reference_energy(k)
        w = pr.energy_weight * pr.rounds / e_ref
        c_dev, c_srv = c.device_cycles[k], c.server_cycles[k]
        # variable scales: the current fractions
        xsc = np.maximum(x, 1e-9) if "x" in SCALE_VARS else np.full(n, 1.0 / n)
        qsc = np.maximum(q, 1e-9) if "q" in SCALE_VARS else np.ones(n)
        ssc = (
            np.maximum(alloc.server_cpu_hz / F, 1e-9) if "s" in SCALE_VARS else np.full(n, 1.0 / n)
        )
        self._scales = (xsc, qsc, ssc)
        self.xsc.value, self.ssc.value = xsc, ssc
        bd = self.bounds
        self.X_lo.value, self.X_hi.value = bd["x_lo"] / xsc, bd["x_hi"] / xsc
        self.Q_lo.value, self.Q_hi.value = bd["q_lo"] / qsc, bd["q_hi"] / qsc
        self.S_lo.value, self.S_hi.value = bd["s_lo"] / ssc, bd["s_hi"] / ssc
        sig = c.uplink_bits[k] * LN2 / (B * D)  # tau / T_max = sig / rhat
        xc, qc = np.maximum(x, 1e-12), np.maximum(q, 1e-12)
        rho = np.maximum(self._rhat(xc, qc), 1e-300)  # rhat >= rho U: U = 1 now
        snr_cur = np.clip(self.snr0 * qc / xc, 0.0, 1e12)
        s_conic = 1.0 + snr_cur
        # cone divided by xsc: (rho U/xsc - ln(s) X, X, X/s + snr0 qsc/(xsc s) Q)
        self.rho_x.value = rho / xsc
        self.log_s.value = np.log(s_conic)
        self.inv_s.value = 1.0 / s_conic
        self.snr_q.value = self.snr0 * qsc / (xsc * s_conic)
        self.sigu.value = sig / rho
        self.gams.value = c_srv / (F * D) / ssc
        self.head.value = 1.0 - c.downlink_bits[k] / (pr.downlink_rate_bps * D)
        # f <= f_max as t >= C_dev/(f_max T_max), with a small relative margin so that the
        # solver's feasibility tolerance never turns into a violation of f <= f_max
        eps = c_dev / (pr.f_max_hz * D) * (1.0 + margin) + 1e-15
        self.eps.value = eps
        with np.errstate(divide="ignore", invalid="ignore"):
            t_cur = np.where(c_dev > 0, c_dev / (alloc.cpu_hz * D), 0.0)
        tsc = np.where(np.isfinite(t_cur) & (t_cur > 0), t_cur, np.maximum(eps, 1e-3))
        tsc = np.clip(tsc, np.maximum(eps, 1e-12), 1.0)
        self.tsc.value = tsc
        if device_cpu == "max":
            self.cdev.value = np.zeros(n)
        else:
            self.cdev.value = w * pr.kappa_dev * c_dev**3 / D**2 / tsc**2
        self.csrv.value = w * pr.kappa_srv * c_srv * F**2 * ssc**2
        a = w * pr.p_max_w * sig * D  # E_tx (weighted, scaled) = a q / rhat
        rh = rho
        zeros = np.zeros(n)
        if method == "quadratic":
            y = 1.0 / (2.0 * qc * rh)  # y* = 1/(2 N D)
            self.a1.value = a * y * qsc**2
            self.a2.value = a / (4.0 * y) / rho**2
            self.a0.value = zeros
            self.a3.value = zeros
        else:
            lam = qc / rh  # Dinkelbach: lambda_n = N_n / D_n
            self.a1.value = zeros
            self.a2.value = zeros
            self.a0.value = a * qsc
            self.a3.value = a * lam * rho

    def _solve_once(self, time_left_s: float | None = None) -> str:
        """Solve the parametrised problem (Clarabel, then the ``CLARABEL_RETRIES``); each
        solve gets Clarabel's ``time_limit`` of what is left of ``time_left_s`` (a solve
        cut short reports ``user_limit``), and no retry starts after it has passed."""
        import cvxpy as cp

        status = "error"
        kept: tuple[F64, F64, F64] | None = None
        t_end = None if time_left_s is None else time.perf_counter() + time_left_s
        for retry in CLARABEL_RETRIES:
            opts = dict(retry)
            if t_end is not None:
                left_s = t_end - time.perf_counter()
                if left_s <= 0:
                    status = "user_limit" if status == "error" else status
                    break
                opts["time_limit"] = left_s
            self.solves += 1
            try:
                with warnings.catch_warnings():
                    # "solution may be inaccurate": every point is re-checked by ``_feasible``
                    warnings.simplefilter("ignore", UserWarning)
                    self.cp_problem.solve(solver=cp.CLARABEL, ignore_dpp=self.ignore_dpp, **opts)
            except cp.error.SolverError as exc:
                status = f"error: {exc}"
                continue
            status = str(self.cp_problem.status)
            if status == "optimal" or status.startswith("infeasible"):
                break
            if status == "optimal_inaccurate" and kept is None:
                kept = (np.array(self.X.value), np.array(self.Q.value), np.array(self.S.value))
        if status == "optimal":
            self._sol = (np.array(self.X.value), np.array(self.Q.value), np.array(self.S.value))
        elif kept is not None:
            self._sol, status = kept, "optimal_inaccurate"
        elif status == "optimal_inaccurate":
            self._sol = (np.array(self.X.value), np.array(self.Q.value), np.array(self.S.value))
        return status

    def _step(
        self, run: _FpRun, method: FpMethod, margin: float = EPS_MARGINS_REL[0]
    ) -> tuple[str, Allocation | None]:
        """One convex solve of ``method``'s surrogate at ``run``'s current point: the solver
        status and the completed candidate (``None`` when the solve failed)."""
        self._set_params(run.sets, run.x, run.q, run.cur, method, run.device_cpu, margin)
        st = self._solve_once(run.time_left_s())
        if st not in ("optimal", "optimal_inaccurate"):
            return st, None
        X, Q, S = self._sol
        xsc, qsc, ssc = self._scales
        return st, self._complete(run.sets, xsc * X, qsc * Q, ssc * S, run.device_cpu)

    def _judge(self, cand: Allocation | None) -> tuple[bool, float]:
        """(feasible, objective) of a candidate (``inf`` when not feasible)."""
        ok = cand is not None and self._feasible(cand)
        return ok, (objective_value(self.problem, cand) if (ok and cand is not None) else math.inf)

    # ------------------------------------------------------------------ public
    def solve(
        self,
        sets: I64,
        start: Allocation | None = None,
        *,
        method: FpMethod = "quadratic",
        rel_tol: float = AO_DEFAULTS.fp_rel_tol,
        max_iterations: int = AO_DEFAULTS.fp_max_iterations,
        time_limit_s: float | None = None,
        bounds: dict[str, F64 | float] | None = None,
        device_cpu: DeviceCpu = "closed_form",
    ) -> StageBResult:
        """Fractional programming for fixed ``sets`` from ``start`` (module docstring).

        ``rel_tol``: stop when an FP step changes the objective by less than this (relative
        to the energy objective); ``bounds``: optional per-device bounds on the fractions
        (``x_lo``, ``x_hi`` on b/B, ``q_lo``, ``q_hi`` on p/p_max, ``s_lo``, ``s_hi`` on
        f_s/F_s) used by the baselines; ``device_cpu``: ``"closed_form"`` (smallest frequency
        meeting the deadline) or ``"max"`` (f = f_max: the communication-only baseline).
        Returns the best feasible point visited (never worse than a feasible ``start``).
        The FP iterations run with the first of ``EPS_MARGINS_REL``, then a short polish
        (:meth:`_polish`) with the smaller ones.
        """
        check_fp_method(method)
        self._set_bounds(bounds)
        run = self._start_run(np.asarray(sets, dtype=np.int64), start, device_cpu, time_limit_s)
        while run.it < max_iterations:
            if run.out_of_time():
                run.message = "time limit"
                break
            run.it += 1
            if not self._fp_iteration(run, method, rel_tol):
                break
        if run.cur_ok and run.message != "time limit":
            self._polish(run)
        return run.result()

    def _start_run(
        self, sets: I64, start: Allocation | None, device_cpu: DeviceCpu, time_limit_s: float | None
    ) -> _FpRun:
        """The FP state at ``start`` (``default_start`` if None) clipped to the bounds."""
        pr = self.problem
        t0 = time.perf_counter()
        if start is None:
            start = default_start(pr, sets)
        bd = self.bounds
        x = np.clip(start.bandwidth_hz / pr.bandwidth_hz, bd["x_lo"], bd["x_hi"])
        q = np.clip(start.tx_power_w / _power_scale(pr), bd["q_lo"], bd["q_hi"])
        s = np.clip(start.server_cpu_hz / pr.server_cpu_hz, bd["s_lo"], bd["s_hi"])
        cur = self._complete(sets, x, q, s, device_cpu)
        ok = self._feasible(cur)
        run = _FpRun(pr, sets, device_cpu, t0, time_limit_s, cur, x, q)
        if ok:  # the start's own fractions (x, q) stay the first step's point
            run.cur_obj, run.cur_ok = objective_value(pr, cur), True
            run.history.append(run.cur_obj)
        return run

    def _fp_iteration(self, run: _FpRun, method: FpMethod, rel_tol: float) -> bool:
        """One FP step from ``run``'s point (accepted only if feasible and better); False
        when the iterations should stop (converged, no progress, or a failed solve)."""
        st, cand = self._step(run, method)
        ok, obj = self._judge(cand)
        if method == "dinkelbach" and run.cur_ok and not obj <= run.cur_obj:
            # not monotone for a sum of ratios: take a quadratic-transform step instead
            run.fallback += 1
            st, cand = self._step(run, "quadratic")
            ok, obj = self._judge(cand)
        if cand is None and run.cur_ok:
            # a failed conic solve: try the other surrogate once (other conditioning)
            run.fallback += 1
            st, cand = self._step(run, "dinkelbach" if method == "quadratic" else "quadratic")
            ok, obj = self._judge(cand)
            if ok and not obj < run.cur_obj:
                return False  # no progress
        if cand is None:
            run.status_fail = st
            if run.cur_ok:
                run.message = f"convex solve {st}; kept the previous point"
            return False
        if run.cur_ok and (not ok or obj >= run.cur_obj):
            # an inaccurate solve: the surrogate is convex and no larger than the true
            # objective, so a shorter step towards the candidate may still improve
            back, obj = self._backtrack(run.sets, run.cur, run.cur_obj, cand, run.device_cpu)
            run.backtracks += 1
            ok = back is not None
            cand = back if back is not None else cand
        if not ok:
            if not run.cur_ok:
                run.message = "solver point violates the constraints"
            return False  # no progress (solver accuracy): keep the current point
        if run.cur_ok and obj >= run.cur_obj:
            return False
        prev = run.cur_obj
        run.accept(cand, obj)
        return not (
            math.isfinite(prev)
            and abs(prev - run.cur_obj)
            <= rel_tol * max(abs(run.cur_obj), energy_objective(self.problem, run.cur), 1e-300)
        )

    def _polish(self, run: _FpRun) -> None:
        """A few quadratic-transform steps with each smaller margin on f <= f_max
        (``EPS_MARGINS_REL[1:]``); only feasible improvements are kept. The margin is an
        argument of each step: the stage-B problem itself is not changed."""
        for margin in EPS_MARGINS_REL[1:]:
            for _ in range(POLISH_STEPS):
                if run.out_of_time():
                    break
                run.it += 1
                _, cand = self._step(run, "quadratic", margin)
                if cand is None or not self._feasible(cand):
                    break
                obj = objective_value(self.problem, cand)
                if not obj < run.cur_obj:
                    break
                run.accept(cand, obj)

    def _backtrack(
        self,
        sets: I64,
        cur: Allocation,
        cur_obj: float,
        cand: Allocation,
        device_cpu: DeviceCpu,
        halvings: int = 6,
    ) -> tuple[Allocation | None, float]:
        """First of the points cur + t (cand - cur), t = 1/2, 1/4, ..., that is feasible and
        better than ``cur`` (in b, p, f_s; the device CPU recomputed in closed form)."""
        pr = self.problem
        t = 1.0
        for _ in range(halvings):
            t *= 0.5
            b = cur.bandwidth_hz + t * (cand.bandwidth_hz - cur.bandwidth_hz)
            p = cur.tx_power_w + t * (cand.tx_power_w - cur.tx_power_w)
            fs = cur.server_cpu_hz + t * (cand.server_cpu_hz - cur.server_cpu_hz)
            pt = self._complete(
                sets,
                b / pr.bandwidth_hz,
                p / _power_scale(pr),
                fs / pr.server_cpu_hz,
                device_cpu,
            )
            if self._feasible(pt):
                obj = objective_value(pr, pt)
                if obj < cur_obj:
                    return pt, obj
        return None, math.inf

    def _feasible(self, alloc: Allocation) -> bool:
        return bool(max_violation(self.problem, alloc) <= POINT_TOL_REL)

    def _reference_energy(self, sets: I64) -> float:
        """An energy scale for the objective when no feasible start is known: device and server
        energy at f_max and an equal server share, with the energy weight."""
        pr = self.problem
        c = pr.costs
        e = compute_energy_j(pr.kappa_dev, c.device_cycles[sets], pr.f_max_hz) + compute_energy_j(
            pr.kappa_srv, c.server_cycles[sets], pr.server_cpu_hz / self.n
        )
        val = float(pr.energy_weight * pr.rounds * np.sum(e))
        return val if (math.isfinite(val) and val > 0) else 1.0
