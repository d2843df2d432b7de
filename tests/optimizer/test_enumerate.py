"""method enumerate: the reference (every set combination x the independent fixed-set solver
of ``reference.py``), checked here against ``continuous.clear_markets`` per combination."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from privtuner.errors import SolverError
from privtuner.optimizer import solve
from privtuner.optimizer.methods.enumerate.method import solve_enumerate
from privtuner.optimizer.methods.exact.continuous import Caps, build_pairs, clear_markets, group_sum
from privtuner.optimizer.testing.factory import random_problem


def test_enumerate_is_the_best_combination() -> None:
    """Each combination solved separately: enumerate returns the minimum."""
    rng = np.random.default_rng(21)
    p = random_problem(rng, 3, 3, deadline_factor=2.0)
    r = solve(p, "enumerate")
    caps = Caps(p.bandwidth_hz, p.server_cpu_hz)
    best = np.inf
    for combo in itertools.product(range(3), repeat=3):
        sets = np.array(combo)
        pd = build_pairs(p, np.arange(3), sets, grp=np.zeros(3, dtype=np.int64))
        if np.any(pd.tmin_total >= pd.tp):
            continue
        mr = clear_markets(pd, caps, 1)
        if not mr.converged[0]:
            continue
        ev = p.evaluate(
            sets, mr.sol.b, mr.sol.p, p.costs.device_cycles[sets] / mr.sol.t_d, mr.sol.fs
        )
        obj = float(
            group_sum(
                p.energy_scale * (mr.sol.e_d + mr.sol.e_s + mr.sol.e_tx) + pd.const, pd.grp, 1
            )[0]
        )
        assert ev.objective == pytest.approx(obj, rel=1e-9)
        best = min(best, obj)
    assert r.objective == pytest.approx(best, rel=1e-9)
    o = r.options
    assert o["combinations"] == 27
    # every combination is accounted for: solved, infeasible, pruned by the bound, or out
    # because a device misses its deadline even alone
    assert o["solved"] + o["infeasible"] + o["pruned_by_bound"] <= 27 and not o["unsolved"]


def test_size_limit_is_a_clear_error() -> None:
    rng = np.random.default_rng(1)
    p = random_problem(rng, 6, 6, deadline_factor=3.0)
    with pytest.raises(SolverError, match="exceed max_combinations=100"):
        solve(p, "enumerate", max_combinations=100)


def test_enumerate_direct_call_infeasible() -> None:
    rng = np.random.default_rng(2)
    p = random_problem(rng, 2, 2).with_deadline(1e-6)
    from privtuner.errors import InfeasibleError

    with pytest.raises(InfeasibleError):
        solve_enumerate(p)
    assert solve(p, "enumerate").status == "infeasible"


def test_reference_fixed_set_solver_agrees_with_market_clearing() -> None:
    """Two independent fixed-set solvers (SLSQP in log variables vs the dual market
    clearing): same optimum to 1e-7 on random fixed sets, the clearing's dual bound below the
    reference's objective, both feasible; and both agree on infeasibility."""
    from privtuner.optimizer.methods.enumerate.reference import solve_fixed_sets
    from privtuner.optimizer.methods.exact.feasibility import fixed_set_margin
    from privtuner.optimizer.methods.exact.method import allocation_from
    from privtuner.optimizer.testing import bank_instance

    compared = infeasible = 0
    for seed in range(300):
        if compared >= 20 and infeasible >= 5:
            break
        bi = bank_instance(730_000 + seed, ("server_cpu", "bandwidth", "free")[seed % 3])
        p = bi.problem
        rng = np.random.default_rng(seed)
        sets = np.array([rng.choice(np.flatnonzero(p.allowed[i])) for i in range(p.n_devices)])
        ref = solve_fixed_sets(p, sets)
        caps = Caps(p.bandwidth_hz, p.server_cpu_hz)
        margin = float(fixed_set_margin(p, sets[None, :], caps)[0])
        if ref.status == "infeasible":
            infeasible += 1
            assert margin > -1e-9, (seed, margin, ref.phase1)
            continue
        assert ref.status == "optimal", (seed, ref.message)
        assert margin <= 1e-9
        pd = build_pairs(p, np.arange(p.n_devices), sets, grp=np.zeros(p.n_devices, np.int64))
        mr = clear_markets(pd, caps, 1)
        ev = p.evaluate(**allocation_from(p, pd, mr.sol))
        assert mr.converged[0] and ev.is_feasible()
        scale = max(abs(ref.objective), 1.0)
        assert abs(ev.objective - ref.objective) <= 1e-7 * scale, (seed, ev.objective, ref)
        assert mr.dual[0] <= ref.objective + 1e-9 * scale
        compared += 1
    assert compared >= 20 and infeasible >= 5
