"""Baselines of spec 5.3: feasible (or infeasible with a reason), never better than exact."""

from __future__ import annotations

import numpy as np
import pytest

from privtuner.costmodels.types import CostTable
from privtuner.optimizer import FEAS_TOL_REL, available_methods, solve
from privtuner.optimizer.methods.baselines import BASELINES
from privtuner.optimizer.testing.factory import random_problem


def test_baselines_are_registered() -> None:
    assert set(BASELINES) <= set(available_methods())


@pytest.mark.parametrize("method", BASELINES)
def test_baseline_feasible_and_never_better_than_exact(method: str) -> None:
    rng = np.random.default_rng(31)
    feasible = 0
    for i in range(4):
        n = int(rng.integers(1, 5))
        pr = random_problem(
            rng, n, int(rng.integers(2, 6)), deadline_factor=float(rng.uniform(1.05, 3.0))
        )
        if i % 2:  # a loose deadline: every set fits, so every baseline is feasible
            pr = pr.with_deadline(pr.deadline_s * 30.0)
        ex = solve(pr, "exact")
        res = solve(pr, method)
        assert res.method == method
        assert res.status in ("feasible", "error"), res.message
        if res.status == "error":  # the baseline's restricted policy is infeasible
            assert res.termination == "infeasible"
            assert res.reasons and all(method in r for r in res.reasons)
            continue
        feasible += 1
        assert res.max_violation <= FEAS_TOL_REL
        assert ex.objective <= res.objective + 1e-6 * abs(ex.objective) + 1e-12
    assert feasible >= 1


def test_ao_random_theta_is_seeded() -> None:
    rng = np.random.default_rng(8)
    pr = random_problem(rng, 6, 5, deadline_factor=3.0)
    pr = pr.with_deadline(pr.deadline_s * 30.0)
    a = solve(pr, "ao_random_theta", seed=1)
    b = solve(pr, "ao_random_theta", seed=1)
    assert a.status == b.status == "feasible"
    np.testing.assert_array_equal(a.sets, b.sets)
    draws = {tuple(solve(pr, "ao_random_theta", seed=s).sets) for s in range(2, 6)}
    assert len(draws) > 1


def test_infeasible_baseline_reports_the_reason() -> None:
    """The largest ring degree is made far too slow: fixed_largest_n's policy is infeasible
    (with a reason) while the problem itself is feasible, so its status is not
    'infeasible'."""
    rng = np.random.default_rng(17)
    pr = random_problem(rng, 3, 4, deadline_factor=1.5)
    c = pr.costs
    degrees = np.array([p.poly_modulus_degree for p in c.params])
    slow = degrees == degrees.max()
    costs = CostTable(
        params=c.params,
        device_cycles=np.where(slow, c.device_cycles * 1e4, c.device_cycles),
        server_cycles=c.server_cycles,
        uplink_bits=c.uplink_bits,
        downlink_bits=c.downlink_bits,
        privacy=c.privacy,
        security_bits=c.security_bits,
        precision_bits=c.precision_bits,
        privacy_metric=c.privacy_metric,
        rounds=c.rounds,
    )
    pr = pr.replace(costs=costs)
    assert solve(pr, "exact").status == "optimal"
    res = solve(pr, "fixed_largest_n")
    assert res.status == "error" and res.termination == "infeasible"
    assert not res.has_allocation
    assert "largest ring degree" in res.reasons[0]
    # before: "(resource margin inf > 0)"; the devices too slow with their set are named
    assert "inf" not in res.reasons[0]
    assert "devices 0, 1, 2 (3 of 3) cannot meet the deadline" in res.reasons[0]
    assert f"with {pr.set_names[int(np.argmax(degrees))]}, needs at least" in res.reasons[0]


def test_comp_only_never_worse_than_its_start() -> None:
    """comp_only optimises the CPUs from the equal point with the same sets as its start."""
    rng = np.random.default_rng(21)
    pr = random_problem(rng, 4, 4, deadline_factor=2.0)
    res = solve(pr, "comp_only")
    assert res.status == "feasible"
    np.testing.assert_allclose(res.bandwidth_hz, pr.bandwidth_hz / pr.n_devices, rtol=1e-8)
    np.testing.assert_allclose(res.tx_power_w, pr.p_max_w, rtol=1e-8)
