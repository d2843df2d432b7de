"""``method: ao`` (spec 5.1): feasibility, monotone history, and the exact method (O1) is
never worse on random small instances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from privtuner.errors import SolverError
from privtuner.optimizer import FEAS_TOL_REL, solve
from privtuner.optimizer.testing.factory import random_problem
from privtuner.optimizer.testing.tolerances import TOLERANCES as TOL


def _monotone(history: list[dict]) -> bool:
    obj = [h["objective"] for h in history]
    return all(b <= a + 1e-12 * abs(a) for a, b in itertools.pairwise(obj))


def test_exact_never_worse_than_ao() -> None:
    rng = np.random.default_rng(2026)
    count = 0
    for i in range(32):
        n = int(rng.integers(1, 5))
        kind = "constrained" if i % 4 == 0 else "weighted"
        pr = random_problem(
            rng,
            n,
            int(rng.integers(2, 6)),
            objective_kind=kind,
            deadline_factor=float(rng.uniform(1.0, 2.5)),
        )
        ao = solve(pr, "ao")
        ex = solve(pr, "exact")
        assert ao.status == "feasible", ao.message
        assert ex.status == "optimal", ex.message
        assert ao.max_violation <= FEAS_TOL_REL
        assert _monotone(ao.history)
        scale = max(float(np.sum(ex.energy_j)) * pr.energy_weight, abs(ex.objective))
        assert ex.objective <= ao.objective + TOL["local_vs_certified_rel"] * scale, (
            ex.objective,
            ao.objective,
        )
        count += 1
    assert count >= 30


def test_ao_history_and_fields() -> None:
    rng = np.random.default_rng(4)
    pr = random_problem(rng, 5, 5, deadline_factor=1.2)
    res = solve(pr, "ao", rel_tol=1e-9, max_iterations=5)
    assert res.status == "feasible" and res.lower_bound is None
    assert res.termination in ("converged", "iteration_limit")
    assert res.history[0]["stage"] == "init"
    it = res.history[1:]
    assert len(it) == res.iterations >= 1
    for h in it:
        for key in (
            "objective",
            "objective_stage_a",
            "bnb_nodes",
            "fp_iterations",
            "time_stage_a_s",
            "time_stage_b_s",
            "sets_changed",
        ):
            assert key in h
        assert h["objective"] <= h["objective_stage_a"] + 1e-12 * abs(h["objective_stage_a"])
    assert res.nodes >= sum(h["bnb_nodes"] for h in it)
    assert _monotone(res.history)
    assert {"stage_a", "stage_b", "total"} <= set(res.timings_s)


@pytest.mark.parametrize("init", ["equal", "fastest", "random"])
@pytest.mark.parametrize("fp_method", ["quadratic", "dinkelbach"])
def test_ao_options(init: str, fp_method: str) -> None:
    rng = np.random.default_rng(9)
    pr = random_problem(rng, 3, 4, deadline_factor=1.5)
    res = solve(pr, "ao", init=init, fp_method=fp_method, seed=3)
    assert res.status == "feasible" and res.max_violation <= FEAS_TOL_REL
    assert _monotone(res.history)
    ex = solve(pr, "exact")
    assert ex.objective <= res.objective + TOL["local_vs_certified_rel"] * abs(ex.objective) + 1e-12


def test_ao_rejects_bad_options() -> None:
    rng = np.random.default_rng(0)
    pr = random_problem(rng, 2, 3)
    with pytest.raises(SolverError, match="fp_method"):
        solve(pr, "ao", fp_method="newton")
    with pytest.raises(SolverError, match="init"):
        solve(pr, "ao", init="best")
    with pytest.raises(SolverError, match="unknown option"):
        solve(pr, "ao", tolerance=1e-3)


def test_ao_is_deterministic() -> None:
    rng = np.random.default_rng(12)
    pr = random_problem(rng, 4, 4, deadline_factor=1.5)
    a = solve(pr, "ao", init="random", seed=5)
    b = solve(pr, "ao", init="random", seed=5)
    assert a.objective == b.objective
    np.testing.assert_array_equal(a.sets, b.sets)
