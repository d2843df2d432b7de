"""Infeasibility is detected and explained (device + constraint), never falsely."""

from __future__ import annotations

import numpy as np

from privtuner.optimizer import solve
from privtuner.optimizer.methods.exact.feasibility import explain_infeasibility, fixed_set_margin
from privtuner.optimizer.testing.factory import random_problem


def test_deadline_unreachable_names_device_and_set() -> None:
    rng = np.random.default_rng(0)
    p = random_problem(rng, 4, 3)
    q = p.with_bandwidth(p.bandwidth_hz * 1e-3)
    reasons = explain_infeasibility(q)
    assert reasons and all("unreachable" in r and "device" in r for r in reasons)
    r = solve(q, "exact")
    assert r.status == "infeasible" and r.termination == "infeasible"
    assert r.reasons == tuple(reasons)


def test_no_allowed_set_names_the_privacy_requirement() -> None:
    rng = np.random.default_rng(1)
    p = random_problem(rng, 2, 3, objective_kind="constrained")
    top = float(np.max(p.costs.privacy))
    q = p.replace(privacy_min=top + 1, allowed=np.zeros((2, 3), dtype=bool))
    reasons = explain_infeasibility(q)
    assert len(reasons) == 2
    assert "privacy requirement" in reasons[0] and f"{top:g}" in reasons[0]
    assert solve(q, "exact").status == "infeasible"


def test_joint_infeasibility_detected() -> None:
    rng = np.random.default_rng(2)
    p = random_problem(rng, 6, 3, deadline_factor=1.0)
    # shrink the bandwidth until jointly infeasible but each device feasible alone
    q = p
    for factor in np.geomspace(1.0, 1e-3, 40):
        q = p.with_bandwidth(p.bandwidth_hz * factor)
        reasons = explain_infeasibility(q)
        if reasons:
            break
    assert reasons and "together" in reasons[0]
    assert solve(q, "enumerate").status == "infeasible"


def test_never_infeasible_when_enumeration_finds_a_solution() -> None:
    rng = np.random.default_rng(3)
    seen_feasible = seen_infeasible = 0
    for _ in range(40):
        n = int(rng.integers(1, 4))
        p = random_problem(
            rng, n, int(rng.integers(1, 4)), deadline_factor=float(rng.uniform(0.3, 1.5))
        )
        enum = solve(p, "enumerate")
        exact = solve(p, "exact")
        if enum.status == "optimal":
            seen_feasible += 1
            assert not explain_infeasibility(p)
            assert exact.status == "optimal"
        else:
            seen_infeasible += 1
            assert exact.status == "infeasible" and exact.reasons
    assert seen_feasible >= 5 and seen_infeasible >= 5


def test_fixed_set_margin_sign_matches_feasible_point() -> None:
    rng = np.random.default_rng(4)
    p = random_problem(rng, 4, 2, deadline_factor=1.5)
    n = p.n_devices
    for k in range(2):
        sets = np.full(n, k)
        ev = p.evaluate(
            sets,
            np.full(n, p.bandwidth_hz / n),
            p.p_max_w,
            p.f_max_hz,
            np.full(n, p.server_cpu_hz / n),
        )
        margin = fixed_set_margin(p, sets[None, :])[0]
        if ev.is_feasible():
            assert margin <= 0
