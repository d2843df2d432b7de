"""Independent reference: the whole mixed problem as one MINLP solved by SCIP (pyscipopt).

Original variables per device (scaled: bandwidth in MHz, CPU in GHz, bits in Mbit, cycles in
Gcycles), binary set choice x_nk, and the model of spec section 4 written directly:
rate r <= b log2(1 + p g / (N0 b)), tau r >= S(x), t_d f >= C_dev(x), t_s f_s >= C_srv(x),
t_d + tau + t_s + T_dl(x) <= T_max, sum b <= B, sum f_s <= F_s; objective
w_E rounds sum_n (kappa C_dev(x) f^2 + p tau + kappa_s C_srv(x) f_s^2) + sum_n c(x).
Shared by ``tests/optimizer/test_scip.py`` and ``benchmarks/bench_optimizer.py``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from privtuner.optimizer.core.problem import AllocationProblem


def solve_with_scip(
    problem: AllocationProblem, time_limit_s: float = 120.0, gap: float = 1e-7
) -> dict[str, Any]:
    """Solve with SCIP; returns objective (re-evaluated with ``problem.evaluate``), SCIP's
    own objective and dual bound, status and wall time.

    Length (~80 lines): the whole MINLP model, written in one place so that it can be read
    against spec section 4 line by line."""
    from pyscipopt import Model, exp, log, quicksum

    p = problem
    n, K = p.n_devices, p.n_sets
    c = p.costs
    m = Model("privtuner")
    m.hideOutput()
    m.setParam("limits/time", time_limit_s)
    m.setParam("limits/gap", gap)
    m.setParam("numerics/feastol", 1e-9)
    w = p.energy_scale
    const = p.set_constant
    x: dict[tuple[int, int], Any] = {}
    dev_vars = []
    obj_terms = []
    T = p.deadline_s
    for i in range(n):
        ks = [k for k in range(K) if p.allowed[i, k]]
        for k in ks:
            x[i, k] = m.addVar(vtype="B", name=f"x_{i}_{k}")
        m.addCons(quicksum(x[i, k] for k in ks) == 1)
        b = m.addVar(lb=1e-9, ub=p.bandwidth_hz / 1e6, name=f"b_{i}")
        pw = m.addVar(lb=0.0, ub=float(p.p_max_w[i]), name=f"p_{i}")
        f = m.addVar(lb=1e-6, ub=float(p.f_max_hz[i]) / 1e9, name=f"f_{i}")
        fs = m.addVar(lb=1e-9, ub=p.server_cpu_hz / 1e9, name=f"fs_{i}")
        tau = m.addVar(lb=0.0, ub=T, name=f"tau_{i}")
        td = m.addVar(lb=0.0, ub=T, name=f"td_{i}")
        ts = m.addVar(lb=0.0, ub=T, name=f"ts_{i}")
        r = m.addVar(lb=0.0, name=f"r_{i}")
        snr_coef = float(p.gain_lin[i] / (p.noise_w_per_hz * 1e6))  # p g / (N0 b[Hz])
        m.addCons(r * math.log(2.0) <= b * log(1 + pw * snr_coef / b))
        s_up = quicksum(x[i, k] * float(c.uplink_bits[k]) / 1e6 for k in ks)
        c_d = quicksum(x[i, k] * float(c.device_cycles[k]) / 1e9 for k in ks)
        c_s = quicksum(x[i, k] * float(c.server_cycles[k]) / 1e9 for k in ks)
        t_dl = quicksum(x[i, k] * float(c.downlink_bits[k] / p.downlink_rate_bps) for k in ks)
        m.addCons(tau * r >= s_up)
        m.addCons(td * f >= c_d)
        m.addCons(ts * fs >= c_s)
        m.addCons(td + tau + ts + t_dl <= T)
        e = m.addVar(lb=-1e20, name=f"e_{i}")
        kd = float(p.kappa_dev[i]) * 1e27
        ks_ = p.kappa_srv * 1e27
        m.addCons(
            e
            >= w * (kd * c_d * f * f + pw * tau + ks_ * c_s * fs * fs)
            + quicksum(x[i, k] * float(const[k]) for k in ks)
        )
        obj_terms.append(e)
        dev_vars.append((ks, b, pw, f, fs))
    m.addCons(quicksum(v[1] for v in dev_vars) <= p.bandwidth_hz / 1e6)
    m.addCons(quicksum(v[4] for v in dev_vars) <= p.server_cpu_hz / 1e9)
    m.setObjective(quicksum(obj_terms), "minimize")
    del exp
    t0 = time.perf_counter()
    m.optimize()
    wall = time.perf_counter() - t0
    status = m.getStatus()
    out: dict[str, Any] = {"status": status, "time_s": wall}
    if m.getNSols() == 0:
        return out
    sol: Any = m.getBestSol()  # pyscipopt's stubs type it loosely

    def chosen(i: int, ks: list[int]) -> int:
        """The set whose binary is (numerically) one for device ``i``."""
        return max(ks, key=lambda k: float(sol[x[i, k]]))

    sets = np.array([chosen(i, ks) for i, (ks, *_) in enumerate(dev_vars)])
    b_hz = np.array([sol[v[1]] for v in dev_vars]) * 1e6
    p_w = np.array([sol[v[2]] for v in dev_vars])
    f_hz = np.array([sol[v[3]] for v in dev_vars]) * 1e9
    fs_hz = np.array([sol[v[4]] for v in dev_vars]) * 1e9
    ev = p.evaluate(sets, b_hz, p_w, f_hz, fs_hz)
    out.update(
        scip_objective=m.getObjVal(),
        dual_bound=m.getDualbound(),
        objective=ev.objective,
        max_violation=ev.max_violation,
        sets=sets,
    )
    return out
