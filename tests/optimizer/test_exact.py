"""method exact: certified optimum. Independent truth: exhaustive enumeration, scipy on the
fixed-set convex problem, KKT conditions, monotonicity properties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from privtuner.optimizer import FEAS_TOL_REL, solve
from privtuner.optimizer.methods.exact.continuous import (
    LN2,
    Caps,
    build_pairs,
    clear_markets,
    phi,
    solve_pairs,
)
from privtuner.optimizer.testing.factory import random_problem
from privtuner.optimizer.testing.tolerances import TOLERANCES as TOL


def _compare(seed: int, count: int) -> tuple[int, float]:
    rng = np.random.default_rng(seed)
    feasible = 0
    worst = 0.0
    for _ in range(count):
        n = int(rng.integers(1, 5))
        k = int(rng.integers(1, 7))
        kind = "constrained" if rng.random() < 0.3 else "weighted"
        p = random_problem(
            rng,
            n,
            k,
            objective_kind=kind,
            deadline_factor=float(rng.uniform(0.8, 2.5)),
            allowed_density=float(rng.uniform(0.5, 1.0)),
        )
        a = solve(p, "exact")
        b = solve(p, "enumerate")
        assert (a.status == "infeasible") == (b.status == "infeasible"), (a.reasons, b.reasons)
        if b.status == "infeasible":
            continue
        assert a.status == "optimal" and b.status == "optimal"
        feasible += 1
        rel = abs(a.objective - b.objective) / max(abs(b.objective), 1e-12)
        worst = max(worst, rel)
        assert rel <= TOL["objective_rel"], (n, k, a.objective, b.objective)
        assert a.lower_bound is not None
        assert a.lower_bound <= b.objective + TOL["objective_rel"] * abs(b.objective) + 1e-12
        assert a.max_violation <= FEAS_TOL_REL and b.max_violation <= FEAS_TOL_REL
    return feasible, worst


def test_exact_equals_enumerate_200() -> None:
    """200 random instances (1-4 devices, 1-6 sets, weighted and constrained, some
    infeasible): same status, same objective (rel 1e-6), lower bound below it."""
    feasible, worst = _compare(seed=77, count=200)
    assert feasible >= 100
    assert worst <= TOL["objective_rel"]


@pytest.mark.slow
def test_exact_equals_enumerate_1000_more() -> None:
    feasible, worst = _compare(seed=2025, count=1000)
    assert feasible >= 500 and worst <= TOL["objective_rel"]


def _fixed_set_scipy(p, sets):  # type: ignore[no-untyped-def]
    """Independent solve of the fixed-set problem in the original variables (b, p, f, f_s),
    scaled, with SLSQP from several starts."""
    n = p.n_devices
    c = p.costs
    cd, cs = c.device_cycles[sets], c.server_cycles[sets]
    su, sd = c.uplink_bits[sets], c.downlink_bits[sets]
    B, F, T = p.bandwidth_hz, p.server_cpu_hz, p.deadline_s
    w = p.energy_scale
    const = float(np.sum(p.set_constant[sets]))

    def unpack(x):  # type: ignore[no-untyped-def]
        b = x[:n] * B
        pw = x[n : 2 * n] * p.p_max_w
        f = x[2 * n : 3 * n] * p.f_max_hz
        fs = x[3 * n :] * F
        return b, pw, f, fs

    def rate(b, pw):  # type: ignore[no-untyped-def]
        return b * np.log2(1 + pw * p.gain_lin / (p.noise_w_per_hz * b))

    def obj(x):  # type: ignore[no-untyped-def]
        b, pw, f, fs = unpack(x)
        e = p.kappa_dev * cd * f**2 + pw * su / rate(b, pw) + p.kappa_srv * cs * fs**2
        return (w * float(np.sum(e)) + const) / scale

    def lat(x):  # type: ignore[no-untyped-def]
        b, pw, f, fs = unpack(x)
        return 1.0 - (cd / f + su / rate(b, pw) + sd / p.downlink_rate_bps + cs / fs) / T

    cons = [
        {"type": "ineq", "fun": lat},
        {"type": "ineq", "fun": lambda x: 1.0 - np.sum(x[:n])},
        {"type": "ineq", "fun": lambda x: 1.0 - np.sum(x[3 * n :])},
    ]
    bounds = [(1e-6, 1)] * n + [(1e-6, 1)] * n + [(1e-4, 1)] * n + [(1e-6, 1)] * n
    x0 = np.concatenate([np.full(n, 1 / n), np.ones(n), np.ones(n), np.full(n, 1 / n)])
    scale = 1.0
    scale = max(abs(obj(x0)), 1e-9)
    best = np.inf
    rng = np.random.default_rng(0)
    for trial in range(6):
        start = x0 if trial == 0 else np.clip(x0 * rng.uniform(0.5, 1.0, x0.size), 1e-4, 1)
        r = minimize(
            obj,
            start,
            method="SLSQP",
            bounds=bounds,
            constraints=cons,
            options={"ftol": 1e-14, "maxiter": 2000},
        )
        if r.success and min(cf["fun"](r.x).min() for cf in cons) >= -1e-9:
            best = min(best, r.fun * scale)
    return best


def test_fixed_set_solver_matches_scipy() -> None:
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(8):
        n = int(rng.integers(1, 5))
        p = random_problem(rng, n, 3, deadline_factor=float(rng.uniform(1.5, 3.0)))
        sets = rng.integers(0, 3, n)
        pd = build_pairs(p, np.arange(n), sets, grp=np.zeros(n, dtype=np.int64))
        if np.any(pd.tmin_total >= pd.tp):
            continue
        mr = clear_markets(pd, Caps(p.bandwidth_hz, p.server_cpu_hz), 1)
        if not mr.converged[0]:
            continue  # jointly infeasible sets
        ours = float(np.sum(p.energy_scale * (mr.sol.e_d + mr.sol.e_s + mr.sol.e_tx) + pd.const))
        ref = _fixed_set_scipy(p, sets)
        if not np.isfinite(ref):
            continue
        checked += 1
        # ours is optimal: never worse than SLSQP (beyond tolerance); SLSQP near it
        assert ours <= ref + 1e-6 * abs(ref)
        assert ref <= ours + 1e-3 * abs(ours)
        # dual = primal (strong duality certificate)
        assert abs(mr.dual[0] - ours) <= 1e-9 * max(abs(ours), 1.0)
    assert checked >= 4


def test_kkt_conditions_of_continuous_stage() -> None:
    """Stationarity of the Lagrangian in every variable with the recovered multipliers
    (lambda per device, mu, nu) and complementary slackness of the coupling constraints."""
    rng = np.random.default_rng(5)
    for _ in range(5):
        n = int(rng.integers(2, 8))
        p = random_problem(
            rng, n, 2, deadline_factor=2.0, server_cpu_hz=float(rng.uniform(2e9, 2e10))
        )
        sets = rng.integers(0, 2, n)
        pd = build_pairs(p, np.arange(n), sets, grp=np.zeros(n, dtype=np.int64))
        if np.any(pd.tmin_total >= pd.tp):
            continue
        caps = Caps(p.bandwidth_hz, p.server_cpu_hz)
        mr = clear_markets(pd, caps, 1)
        if not mr.converged[0]:
            continue
        s = mr.sol
        mu, nu = float(mr.mu[0]), float(mr.nu[0])
        lam = np.exp(s.log_lam)
        # complementary slackness: price > 0 only if the market binds
        assert abs(np.sum(s.b) / caps.bandwidth_hz - 1) < 1e-9 or mu < 1e-10
        assert abs(np.sum(s.fs) / caps.server_cpu_hz - 1) < 1e-9 or nu * caps.server_cpu_hz < (
            1e-12 * abs(mr.dual[0]) + 1e-300
        )
        # latency binds (lambda > 0)
        assert np.allclose(s.t_d + s.t_s + s.tau, pd.tp, rtol=1e-10)
        # stationarity in t_d (interior: -2 a/t^3 + lam = 0)
        inner = s.t_d > pd.tmin_d * (1 + 1e-9)
        r_td = -2 * pd.a_d / s.t_d**3 + lam
        assert np.all(np.abs(r_td[inner]) <= 1e-7 * lam[inner])
        assert np.all(r_td[~inner] >= -1e-7 * lam[~inner])  # bound multiplier >= 0
        # stationarity in t_s: -2 a_s/t^3 - nu C/t^2 + lam = 0
        inner = s.t_s > pd.tmin_s * (1 + 1e-9)
        r_ts = -2 * pd.a_s / s.t_s**3 - nu * pd.c_s / s.t_s**2 + lam
        assert np.all(np.abs(r_ts[inner]) <= 1e-7 * lam[inner])
        # stationarity in (tau, b) where the power limit is slack:
        # W phi'(u) b + lam = 0 and W phi'(u) tau + mu = 0 (b < B)
        u = s.tau * s.b
        z = pd.s_up * LN2 / u
        dphi = np.expm1(z) - z * np.exp(z)
        slack = s.p < pd.p_max * (1 - 1e-9)
        r_tau = pd.w_tx * dphi * s.b + lam
        r_b = pd.w_tx * dphi * s.tau + mu
        assert np.all(np.abs(r_tau[slack]) <= 1e-6 * lam[slack])
        inner_b = slack & (s.b < caps.bandwidth_hz * (1 - 1e-9))
        assert np.all(np.abs(r_b[inner_b]) <= 1e-6 * max(mu, 1e-300))
        # power-limited devices: p = p_max exactly and a nonnegative power multiplier
        assert np.all(s.p <= pd.p_max * (1 + 1e-12))


def test_pair_oracle_beats_perturbations() -> None:
    """The Lagrangian minimiser is no worse than random feasible perturbations of it."""
    rng = np.random.default_rng(9)
    p = random_problem(rng, 6, 4)
    n, k = p.n_devices, p.n_sets
    pd = build_pairs(p, np.repeat(np.arange(n), k), np.tile(np.arange(k), n))
    pd = pd.take(np.flatnonzero(pd.tmin_total < pd.tp))
    caps = Caps(p.bandwidth_hz, p.server_cpu_hz)
    mu = np.full(pd.size, 1e-7)
    nu = np.full(pd.size, 1e-12)
    s = solve_pairs(pd, caps, mu, nu)
    for _ in range(200):
        f = rng.uniform(0.9, 1.1, (4, pd.size))
        td, ts, tau = s.t_d * f[0], s.t_s * f[1], s.tau * f[2]
        b = np.minimum(s.b * f[3], caps.bandwidth_hz)
        tot = td + ts + tau
        scale = np.minimum(1.0, pd.tp / tot)
        td, ts, tau = td * scale, ts * scale, tau * scale
        ok = (td >= pd.tmin_d) & (ts >= pd.tmin_s)
        ok &= pd.s_up * LN2 / (tau * b) <= np.log1p(pd.gam / b)
        val = (
            pd.a_d / td**2
            + pd.a_s / ts**2
            + pd.w_tx * phi(tau * b, pd.s_up)
            + mu * b
            + nu * pd.c_s / ts
            + pd.const
        )
        assert np.all(val[ok] >= s.value[ok] - 1e-9 * np.abs(s.value[ok]))


def test_more_bandwidth_and_looser_deadline_never_hurt() -> None:
    rng = np.random.default_rng(3)
    for _ in range(4):
        p = random_problem(rng, int(rng.integers(2, 5)), 4, deadline_factor=1.3)
        base = solve(p, "exact")
        if base.status != "optimal":
            continue
        more_b = solve(p.with_bandwidth(p.bandwidth_hz * 1.5), "exact")
        later = solve(p.with_deadline(p.deadline_s * 1.5), "exact")
        tol = 1e-6 * abs(base.objective) + 1e-12
        assert more_b.objective <= base.objective + tol
        assert later.objective <= base.objective + tol


def test_large_instance_certified_gap() -> None:
    rng = np.random.default_rng(1)
    p = random_problem(rng, 300, 12)
    r = solve(p, "exact", rel_tol=1e-6)
    assert r.status == "optimal"
    assert r.gap is not None and r.gap <= 1e-6
    assert r.lower_bound is not None and r.lower_bound <= r.objective
    assert r.max_violation <= FEAS_TOL_REL


def test_exact_never_worse_than_any_baseline_allocation() -> None:
    """Equal bandwidth, max power, fastest set, f at the deadline: a feasible point the
    optimum must beat (independent of every solver)."""
    rng = np.random.default_rng(8)
    p = random_problem(rng, 5, 4, deadline_factor=2.0)
    r = solve(p, "exact")
    n = p.n_devices
    for k in range(p.n_sets):
        sets = np.full(n, k)
        b = np.full(n, p.bandwidth_hz / n)
        fs = np.full(n, p.server_cpu_hz / n)
        ev = p.evaluate(sets, b, p.p_max_w, p.f_max_hz, fs)
        if ev.is_feasible():
            assert r.objective <= ev.objective + 1e-9 * abs(ev.objective)


def test_options_and_history() -> None:
    rng = np.random.default_rng(4)
    p = random_problem(rng, 3, 4)
    r = solve(p, "exact", rel_tol=1e-8, max_nodes=50)
    assert r.options["max_nodes"] == 50 and r.options["rel_tol"] == 1e-8
    assert r.history and {"upper_bound", "lower_bound"} <= set(r.history[0])
    assert r.seed == p.seed


def test_dual_ascent_reaches_grid_maximum_and_stays_valid() -> None:
    """The cutting-plane ascent maximises the concave dual D(mu, nu) of a node: on 12 random
    instances (5-7 devices, 3-4 sets), started from the clearing prices and from prices off
    by 100x either way, it ends >= its start, >= the best D on a 41 x 41 price grid around
    its result (log-spaced over 4 decades each way, zero included) and <= the enumerated
    optimum (weak duality)."""
    from privtuner.optimizer.methods.exact.method import _Exact

    rng = np.random.default_rng(404)
    checked = improved = 0
    for _ in range(12):
        n, k = int(rng.integers(5, 8)), int(rng.integers(3, 5))
        p = random_problem(rng, n, k, deadline_factor=float(rng.uniform(1.0, 2.0)))
        opt = solve(p, "enumerate")
        if opt.status != "optimal":
            continue
        ex = _Exact(p, 1e-9, 60.0, 100, 10, 200)
        root = np.arange(ex.pd.size)
        tiny = np.full(root.size, 1e-300)
        ex.log_lam = solve_pairs(ex.pd, ex.caps, tiny, tiny).log_lam
        mu0, nu0 = ex.start_prices(root)
        tol = 1e-9 * abs(opt.objective)
        for mu_s, nu_s in ((mu0, nu0), (mu0 * 100.0, nu0 * 0.01), (mu0 * 0.01, nu0 * 100.0)):
            d0, sets, delta, _ = ex.dual(root, mu_s, nu_s)
            d, mu, nu, _, _ = ex.ascend(root, d0, mu_s, nu_s, sets, delta)
            assert d0 - tol <= d <= opt.objective + tol, (d0, d, opt.objective)
            improved += d > d0 + 1e-6 * abs(d0)
        best_grid = -np.inf
        for mu_g in [0.0, *(mu * 10.0 ** np.linspace(-4, 4, 40))]:
            for nu_g in [0.0, *(nu * 10.0 ** np.linspace(-4, 4, 40))]:
                dg, *_ = ex.dual(root, max(mu_g, 1e-300), max(nu_g, 1e-300))
                best_grid = max(best_grid, dg)
        assert d >= best_grid - 1e-7 * abs(best_grid), (d, best_grid)
        checked += 1
    assert checked >= 8 and improved >= 8, (checked, improved)


def test_market_clearing_converges_from_any_start() -> None:
    """Fixed sets of the hard bank (server CPU near its minimum, tight bandwidth): from
    prices 1e-8..1e8 x off the clearing ones, clear_markets reaches the same certified
    optimum (dual = primal) as from its own start."""
    from privtuner.optimizer.methods.exact.feasibility import fixed_set_margin
    from privtuner.optimizer.methods.exact.method import allocation_from
    from privtuner.optimizer.testing import bank_instance

    rng = np.random.default_rng(4)
    checked = cpu_binding = 0
    for seed in range(60):
        if checked >= 12:
            break
        p = bank_instance(740_000 + seed, ("server_cpu", "hard")[seed % 2]).problem
        caps = Caps(p.bandwidth_hz, p.server_cpu_hz)
        n = p.n_devices
        sets = np.array([np.flatnonzero(p.allowed[i])[0] for i in range(n)])
        if not fixed_set_margin(p, sets[None, :], caps)[0] <= -1e-6:
            continue
        pd = build_pairs(p, np.arange(n), sets, grp=np.zeros(n, dtype=np.int64))
        cold = clear_markets(pd, caps, 1)
        assert cold.converged[0]
        ref = p.evaluate(**allocation_from(p, pd, cold.sol))
        assert ref.is_feasible()
        scale = max(abs(ref.objective), 1.0)
        assert abs(ref.objective - cold.dual[0]) <= 1e-9 * scale
        cpu_binding += bool(np.sum(cold.sol.fs) >= p.server_cpu_hz * (1 - 1e-6))
        for _ in range(3):
            f_mu, f_nu = 10.0 ** rng.uniform(-8, 8, 2)
            warm = clear_markets(pd, caps, 1, cold.mu * f_mu, cold.nu * f_nu)
            assert warm.converged[0], (seed, f_mu, f_nu)
            ev = p.evaluate(**allocation_from(p, pd, warm.sol))
            assert ev.is_feasible()
            assert abs(ev.objective - ref.objective) <= 1e-9 * scale
            assert warm.dual[0] <= ref.objective + 1e-9 * scale
        checked += 1
    assert checked >= 12 and cpu_binding >= 4


def test_unsolved_fixed_sets_are_never_infeasible(monkeypatch: pytest.MonkeyPatch) -> None:
    """If no fixed-set problem can be solved (a broken clearing here), exact must not claim
    infeasibility, nor optimality: no allocation, status 'error', saying why."""
    import privtuner.optimizer.methods.exact.method as exact_mod

    real = exact_mod.clear_markets

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        mr = real(*args, **kwargs)
        mr.sol.tau = mr.sol.tau * 3.0  # the allocation now misses its deadlines
        return mr

    monkeypatch.setattr(exact_mod, "clear_markets", broken)
    rng = np.random.default_rng(3)
    p = random_problem(rng, 3, 3, deadline_factor=2.0)
    r = solve(p, "exact")
    assert r.status == "error" and not r.has_allocation
    assert "not proved" in r.message or "could not be solved" in r.message


def test_invalid_certificate_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bound that exceeds a feasible objective (a bug simulated by inflating every node
    bound) is reported as an internal error, never hidden by clamping."""
    import privtuner.optimizer.methods.exact.method as exact_mod

    real = exact_mod._Exact.bound

    def inflated(self, idx, mu, nu):  # type: ignore[no-untyped-def]
        lb, *rest = real(self, idx, mu, nu)
        return (lb + 0.5 * abs(lb) + 1.0, *rest)

    monkeypatch.setattr(exact_mod._Exact, "bound", inflated)
    rng = np.random.default_rng(5)
    p = random_problem(rng, 3, 4, deadline_factor=2.0)
    r = solve(p, "exact")
    assert r.status == "error"
    assert "invalid certificate" in r.message
    assert r.gap is not None and r.gap < 0


def test_cut_model_lp_matches_highs() -> None:
    """The cutting-plane LP of the ascent (max t, t <= c_i + g_i . p, p in a box), solved by
    vertex enumeration, has HiGHS's optimal value on 600 random LPs, degenerate ones
    included (repeated and parallel cuts, zero gradients, boxes at zero), and its maximiser
    is feasible and attains that value."""
    from scipy.optimize import linprog

    from privtuner.optimizer.methods.exact.method import _VERTEX_LP_MAX_CUTS, max_cut_model

    rng = np.random.default_rng(12)
    tol = TOL["independent_solvers_rel"]
    for trial in range(600):
        m = int(rng.integers(1, _VERTEX_LP_MAX_CUTS + 1))
        g = rng.normal(size=(m, 2)) * 10.0 ** rng.uniform(-3, 3)
        c = rng.normal(size=m) * 10.0 ** rng.uniform(0, 4)
        if trial % 4 == 1 and m >= 2:  # a repeated cut and a parallel one
            g[-1], c[-1] = g[0], c[0]
            g[m // 2] = 2.0 * g[0]
        if trial % 4 == 2:
            g[0] = 0.0
        lo = np.maximum(rng.uniform(-5, 5, 2), 0.0) * 10.0 ** rng.uniform(-2, 2)
        hi = lo + rng.uniform(0.1, 10.0, 2) * 10.0 ** rng.uniform(-2, 2)
        lp = linprog(
            [0.0, 0.0, -1.0],
            A_ub=np.column_stack([-g, np.ones(m)]),
            b_ub=c,
            bounds=[(lo[0], hi[0]), (lo[1], hi[1]), (None, None)],
            method="highs",
        )
        assert lp.status == 0
        p, t = max_cut_model(g, c, lo, hi)
        scale = max(abs(t), float(np.max(np.abs(c))), 1.0)
        assert np.all(p >= lo) and np.all(p <= hi)
        assert abs(t - float(np.min(c + g @ p))) <= tol * scale
        assert abs(t - (-lp.fun)) <= tol * scale, (trial, t, -lp.fun)


def test_margin_probe_decides_as_the_golden_section_search() -> None:
    """exact settles resource margins from a few weights (a = 1/2, 0, 1, then the tangent
    model's maximisers) instead of feasibility's golden-section search; wherever it
    decides, the decision (margin above PROOF_MARGIN: a proof of infeasibility, or not) is
    the search's, on random node relaxations and fixed sets of random problems."""
    from privtuner.errors import InfeasibleError
    from privtuner.optimizer.methods.exact.feasibility import resource_margin
    from privtuner.optimizer.methods.exact.method import PROOF_MARGIN, _Exact

    rng = np.random.default_rng(31)
    decided: list[bool] = []
    undecided = 0
    for _ in range(40):
        n, k = int(rng.integers(2, 8)), int(rng.integers(2, 5))
        p = random_problem(rng, n, k, deadline_factor=float(rng.uniform(0.8, 2.0)))
        try:
            ex = _Exact(p, 1e-6, 60.0, 100, 10)
        except InfeasibleError:
            continue
        dev = ex.pd.dev
        for trial in range(6):
            if trial % 2:  # a fixed set: one random pair per device
                pick = [int(rng.choice(np.flatnonzero(dev == i))) for i in range(n)]
                idx = np.array(sorted(pick))
            else:  # a node: a random nonempty subset of each device's pairs
                keep = rng.random(dev.size) < 0.5
                for i in range(n):
                    keep[int(rng.choice(np.flatnonzero(dev == i)))] = True
                idx = np.flatnonzero(keep)
            probe = ex.margin_probe(idx)
            zeros = np.zeros(n, dtype=np.int64)
            full = resource_margin(ex.free_pairs().take(idx), ex.caps, dev[idx], n, zeros, 1)
            if probe is None:
                undecided += 1
                continue
            assert (probe > PROOF_MARGIN) == (full[0][0] > PROOF_MARGIN), (probe, full[0][0])
            decided.append(probe > PROOF_MARGIN)
    assert len(decided) >= 100 and any(decided) and not all(decided), (len(decided), undecided)


def test_market_clearing_stops_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The time limit covers the market clearing (issue 15: limits apply to all the work):
    with its deadline already past, clear_markets makes at most the calls it needs for a
    start (the tiny-price base and the mu scan) and returns the group unconverged; without a
    deadline the same problem clears. Through ``solve``, a time limit hit inside the root's
    clearing never gives ``infeasible``."""
    import privtuner.optimizer.methods.exact.continuous as cont

    calls = []
    real = cont.solve_pairs

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cont, "solve_pairs", counted)
    p = random_problem(np.random.default_rng(11), 6, 3, deadline_factor=2.0)
    caps = Caps(p.bandwidth_hz, p.server_cpu_hz)
    n = p.n_devices
    sets = np.array([np.flatnonzero(p.allowed[i])[0] for i in range(n)])
    pd = build_pairs(p, np.arange(n), sets, grp=np.zeros(n, dtype=np.int64))
    full = clear_markets(pd, caps, 1)
    n_full = len(calls)
    assert full.converged[0] and n_full > 5
    calls.clear()
    late = clear_markets(pd, caps, 1, deadline=0.0)
    assert len(calls) <= 3 and not late.converged[0]
    r = solve(random_problem(np.random.default_rng(12), 400, 4), "exact", time_limit_s=1e-9)
    assert r.status != "infeasible"
    assert r.termination == "time_limit"
