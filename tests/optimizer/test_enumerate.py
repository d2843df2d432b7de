"""method enumerate: the reference (every set combination x exact convex solve)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import random_problem

from privtuner.errors import SolverError
from privtuner.optimizer import solve
from privtuner.optimizer.continuous import Caps, build_pairs, clear_markets, group_sum
from privtuner.optimizer.enumerate import solve_enumerate


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
    assert r.iterations == 27


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
