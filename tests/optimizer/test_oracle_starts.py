"""exact's oracle: the server-time closed form, warm starts and shared work change the
number of iterations only, never the pairs' solutions (batch throughput, issue 12)."""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

import numpy as np
import pytest

import privtuner.optimizer.methods.exact.continuous as cont
from privtuner.optimizer.methods.exact.continuous import (
    Caps,
    PairSolution,
    Roots,
    build_pairs,
    concat_pairs,
    pair_feasible,
    solve_pairs,
)
from privtuner.optimizer.methods.exact.feasibility import explain_infeasibility, half_probe
from privtuner.optimizer.methods.exact.method import _Exact
from privtuner.optimizer.testing.factory import random_problem
from privtuner.optimizer.testing.tolerances import TOLERANCES as TOL


def _root_pairs(seed: int, n: int = 6, k: int = 4) -> tuple:
    p = random_problem(np.random.default_rng(seed), n, k, deadline_factor=1.5)
    dev = np.repeat(np.arange(n), k)
    ks = np.tile(np.arange(k), n)
    pd = build_pairs(p, dev, ks)
    pd = pd.take(np.flatnonzero(pair_feasible(pd)))
    return p, pd, Caps(p.bandwidth_hz, p.server_cpu_hz)


def _server_time(a_s: np.ndarray, c_s: np.ndarray, nu: np.ndarray, lam: np.ndarray) -> tuple:
    pd = SimpleNamespace(a_s=a_s, c_s=c_s, tmin_s=np.zeros(a_s.size))
    with np.errstate(all="ignore"):
        return cont._t_srv(pd, lam, nu)  # type: ignore[arg-type]


def test_server_time_is_the_cubic_root_everywhere() -> None:
    """t_s solves lambda t^3 - nu C t - 2 a_s = 0 over 60 decades of lambda, near the double
    root (A^2 = P^3) and with one term absent (the exact square and cube roots), also where
    the powers under- or overflow (a Newton loop on the cubic's log stalled there)."""
    rng = np.random.default_rng(3)
    n = 20_000
    lam = np.exp(rng.uniform(-70.0, 70.0, n))
    a_s = 10 ** rng.uniform(-20.0, 10.0, n)
    c_s = 10 ** rng.uniform(8.0, 12.0, n)
    nu = 10 ** rng.uniform(-30.0, -5.0, n)
    near = rng.random(n) < 0.3  # A^2 ~ P^3: nu C / (3 lam) = (a_s / lam)^(2/3) (1 + eps)
    nu[near] = (3 * lam * (a_s / lam) ** (2 / 3) * (1 + rng.normal(0, 1e-7, n)) / c_s)[near]
    t, _ = _server_time(a_s, c_s, nu, lam)
    resid = np.abs(lam * t**3 - nu * c_s * t - 2 * a_s) / (lam * t**3)
    assert np.all(t > 0) and np.max(resid) <= TOL["same_formula_rel"]
    # one term only, with powers far outside the double range: the closed roots
    lam1 = np.array([7.3e106, 4.2e106, 1.0e11])
    c1 = np.array([9.7e11, 4.6e6, 1.1e7])
    nu1 = np.array([6.6e-170, 2.7e-150, 6.3e-218])
    t_sqrt, _ = _server_time(np.zeros(3), c1, nu1, lam1)
    np.testing.assert_allclose(t_sqrt, np.sqrt(nu1 * c1 / lam1), rtol=TOL["same_formula_rel"])
    a1 = np.array([1e-30, 3.0, 1e20])
    t_cbrt, _ = _server_time(a1, c1, np.zeros(3), lam1)
    np.testing.assert_allclose(t_cbrt, np.cbrt(2 * a1 / lam1), rtol=TOL["same_formula_rel"])


def _uplink_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    count = [0]
    newton = cont._newton

    def counted(fun, *args, **kwargs):  # type: ignore[no-untyped-def]
        def f(s, a):  # type: ignore[no-untyped-def]
            count[0] += 1
            return fun(s, a)

        return newton(f, *args, **kwargs)

    monkeypatch.setattr(cont, "_newton", counted)
    return count


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_warm_start_changes_iterations_not_solutions(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A solve started from another price's lambdas and uplink roots gives the cold solve's
    solution (to the oracle's convergence tolerance) with fewer uplink root iterations."""
    p, pd, caps = _root_pairs(seed)
    m = pd.size
    mu1 = np.full(m, 3.0 * p.energy_scale / caps.bandwidth_hz)
    nu1 = np.full(m, 1e-3 * p.energy_scale / caps.server_cpu_hz)
    first = solve_pairs(pd, caps, mu1, nu1)
    count = _uplink_evaluations(monkeypatch)
    cold = solve_pairs(pd, caps, 1.2 * mu1, nu1)
    n_cold, count[0] = count[0], 0
    warm = solve_pairs(pd, caps, 1.2 * mu1, nu1, first.log_lam, first.roots())
    assert count[0] < n_cold
    for name in ("t_d", "t_s", "tau", "b", "p", "value", "fs"):
        np.testing.assert_allclose(
            getattr(warm, name), getattr(cold, name), rtol=TOL["warm_start_rel"], atol=0.0
        )


def test_pairs_solved_together_as_alone() -> None:
    """One oracle call on concatenated pairs (other prices, other problems) gives exactly
    the numbers of separate calls: each pair's subproblem is its own."""
    _, pd1, caps = _root_pairs(4)
    free = build_pairs(_root_pairs(4)[0], pd1.dev, pd1.kset, energy_free=True)
    m = pd1.size
    tiny, half = np.full(m, 1e-300), np.full(m, 0.5 / caps.bandwidth_hz)
    half_f = np.full(m, 0.5 / caps.server_cpu_hz)
    both = solve_pairs(concat_pairs(pd1, free), caps, np.r_[tiny, half], np.r_[tiny, half_f])
    alone = [solve_pairs(pd1, caps, tiny, tiny), solve_pairs(free, caps, half, half_f)]
    for f in fields(PairSolution):
        together = getattr(both, f.name)
        np.testing.assert_array_equal(together[:m], getattr(alone[0], f.name))
        np.testing.assert_array_equal(together[m:], getattr(alone[1], f.name))


def test_exact_reuses_the_presolve_probe_of_its_problem_only() -> None:
    """explain_infeasibility keeps its joint check at a = 1/2; exact's first probe of the
    same problem object is those numbers (equal to a fresh solve); another problem object,
    even an equal one, gets none."""
    p, _, caps = _root_pairs(5)
    assert explain_infeasibility(p) == []
    ex = _Exact(p, 1e-6, 60.0, 50, 1000)
    kept = half_probe(p, ex.pd.dev, ex.pd.kset)
    assert kept is not None
    free = ex.free_pairs()
    fresh = solve_pairs(
        free,
        caps,
        np.full(free.size, 0.5 / caps.bandwidth_hz),
        np.full(free.size, 0.5 / caps.server_cpu_hz),
    )
    for f in fields(PairSolution):
        np.testing.assert_array_equal(getattr(kept, f.name), getattr(fresh, f.name))
    ex.tiny_solution()
    np.testing.assert_array_equal(ex.free_probe(0).value, fresh.value)
    assert half_probe(p.replace(), ex.pd.dev, ex.pd.kset) is None


def test_roots_keep_and_take() -> None:
    """Roots keep the last solve's roots of the pairs solved and give them back."""
    _, pd, caps = _root_pairs(6)
    m = pd.size
    sol = solve_pairs(pd, caps, np.full(m, 1e-9), np.full(m, 1e-20))
    kept = Roots.empty(m)
    kept.put(np.arange(0, m, 2), sol.take(np.arange(0, m, 2)))
    back = kept.take(np.arange(0, m, 2))
    np.testing.assert_array_equal(back.s_free, sol.s_free[::2])
    assert np.all(np.isnan(kept.s_free[1::2]))
