"""Stage A (spec 5.1): the multiple-choice knapsack B&B against PuLP/CBC, an independent MILP
solver, on random knapsacks and on stage-A instances built from random problems."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privtuner.errors import SolverError
from privtuner.optimizer.methods.ao.bnb import (
    greedy_mckp,
    solve_mckp_bnb,
    solve_mckp_pulp,
    stage_a_items,
)
from privtuner.optimizer.testing.factory import random_problem
from privtuner.optimizer.testing.tolerances import TOLERANCES as TOL

#: Agreement with CBC. CBC's own optimality tolerances leave ~1e-7 relative on knapsacks whose
#: choices differ by tiny costs; the B&B must never be worse than CBC beyond round-off.


def _agree(a_obj: float, b_obj: float) -> bool:
    scale = max(1.0, abs(b_obj))
    return abs(a_obj - b_obj) <= TOL["objective_rel"] * scale and a_obj <= b_obj + 1e-12 * scale


def _random_mckp(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    n = int(rng.integers(1, 10))
    k = int(rng.integers(1, 7))
    w = rng.uniform(0.0, 1.0, (n, k))
    if rng.random() < 0.5:
        c = rng.uniform(-1.0, 1.0, (n, k))  # uncorrelated
    else:
        c = -w + 0.1 * rng.normal(size=(n, k))  # heavier items cheaper: capacity binds
    c[rng.random((n, k)) < 0.2] = math.inf  # items not allowed
    cap = float(rng.uniform(0.1, 0.6) * n)
    return c, w, cap


def test_bnb_equals_pulp_on_random_knapsacks() -> None:
    rng = np.random.default_rng(20261123)
    statuses = set()
    for _ in range(40):
        c, w, cap = _random_mckp(rng)
        a = solve_mckp_bnb(c, w, cap)
        b = solve_mckp_pulp(c, w, cap)
        statuses.add(a.status)
        assert a.status == b.status
        if b.status == "optimal":
            assert _agree(a.objective, b.objective), (a.objective, b.objective)
            rows = np.arange(c.shape[0])
            assert np.all(np.isfinite(c[rows, a.choice]))
            assert float(np.sum(w[rows, a.choice])) <= cap * (1 + 1e-12)
            assert math.isclose(
                float(np.sum(c[rows, a.choice])), a.objective, rel_tol=1e-12, abs_tol=1e-12
            )
            assert a.lower_bound <= a.objective + 1e-12
            assert a.nodes >= 1
    assert statuses == {"optimal", "infeasible"}  # both kinds were exercised


def test_bnb_branches_when_the_relaxation_is_fractional() -> None:
    """A knapsack whose LP relaxation is fractional needs more than the root node."""
    c = np.array([[0.0, -1.0], [0.0, -1.0], [0.0, -1.0]])
    w = np.array([[0.0, 0.6], [0.0, 0.5], [0.0, 0.45]])
    res = solve_mckp_bnb(c, w, 1.0)
    ref = solve_mckp_pulp(c, w, 1.0)
    assert res.status == "optimal" and _agree(res.objective, ref.objective)
    assert res.objective == -2.0
    assert res.info["root_bound"] < res.objective


def test_bnb_equals_pulp_on_stage_a_instances() -> None:
    """Stage-A knapsacks of random problems at a random (b, p, f), with the server CPU
    capacity tightened so that the coupling binds."""
    rng = np.random.default_rng(7)
    binding = 0
    for _ in range(10):
        n = int(rng.integers(2, 9))
        pr = random_problem(rng, n, int(rng.integers(2, 7)), deadline_factor=2.5)
        # a strong privacy weight makes the heavier (more private) sets attractive
        pr = pr.replace(privacy_weight=pr.privacy_weight * 50.0)
        b = rng.dirichlet(np.ones(n)) * pr.bandwidth_hz
        p = pr.p_max_w * rng.uniform(0.3, 1.0, n)
        f = pr.f_max_hz * rng.uniform(0.6, 1.0, n)
        items = stage_a_items(pr, b, p, f)
        light = np.where(np.isfinite(items.cost), items.server_cpu_hz, np.inf).min(axis=1)
        if not np.all(np.isfinite(light)):
            continue
        rows = np.arange(n)
        heavy = float(items.server_cpu_hz[rows, np.argmin(items.cost, axis=1)].sum())
        # between the lightest choice and the unconstrained optimum's weight: binding
        cap = float(light.sum() + rng.uniform(0.0, 1.0) * (heavy - light.sum()))
        a = solve_mckp_bnb(items.cost, items.server_cpu_hz, cap)
        ref = solve_mckp_pulp(items.cost, items.server_cpu_hz, cap)
        assert a.status == ref.status == "optimal"
        assert _agree(a.objective, ref.objective)
        unconstrained = float(np.min(items.cost, axis=1).sum())
        binding += a.objective > unconstrained + 1e-9 * abs(unconstrained)
    assert binding >= 2  # the capacity really constrained some instances


def test_stage_a_costs_match_the_problem_evaluation() -> None:
    """Each item's cost equals the objective the problem computes for that allocation, and its
    server CPU meets the deadline exactly (smallest share)."""
    rng = np.random.default_rng(3)
    pr = random_problem(rng, 4, 5, deadline_factor=2.0)
    n = pr.n_devices
    b = np.full(n, pr.bandwidth_hz / n)
    p = np.array(pr.p_max_w)
    f = np.array(pr.f_max_hz) * 0.9
    items = stage_a_items(pr, b, p, f)
    for k in range(pr.n_sets):
        ok = np.isfinite(items.cost[:, k])
        if not ok.any():
            continue
        sets = np.full(n, k, dtype=np.int64)
        fs = np.where(ok, items.server_cpu_hz[:, k], 1.0)
        ev = pr.evaluate(sets, b, p, f, fs)
        per_device = pr.energy_weight * ev.energy_j + pr.set_constant[k]
        np.testing.assert_allclose(items.cost[ok, k], per_device[ok], rtol=TOL["same_formula_rel"])
        np.testing.assert_allclose(ev.latency_s[ok], pr.deadline_s, rtol=TOL["same_formula_rel"])


def test_infeasible_and_greedy() -> None:
    c = np.array([[1.0, 0.0], [1.0, 0.0]])
    w = np.array([[2.0, 3.0], [2.0, 3.0]])
    assert solve_mckp_bnb(c, w, 3.0).status == "infeasible"
    assert solve_mckp_pulp(c, w, 3.0).status == "infeasible"
    assert solve_mckp_bnb(np.full((2, 2), math.inf), w, 10.0).status == "infeasible"
    rng = np.random.default_rng(11)
    for _ in range(10):
        c, w, cap = _random_mckp(rng)
        opt = solve_mckp_bnb(c, w, cap)
        g = greedy_mckp(c, w, cap)
        if opt.status == "optimal":
            assert g.status == "feasible"
            assert g.objective >= opt.objective - 1e-12 * max(1.0, abs(opt.objective))


def test_bad_input_is_rejected() -> None:
    with pytest.raises(SolverError, match="shape"):
        solve_mckp_bnb(np.zeros((2, 2)), np.zeros((2, 3)), 1.0)
    with pytest.raises(SolverError, match="weights"):
        solve_mckp_bnb(np.zeros((1, 2)), np.array([[1.0, -1.0]]), 1.0)
