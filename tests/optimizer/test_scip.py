"""Agreement with SCIP (an independent MINLP solver) on small instances (up to 6 devices)."""

from __future__ import annotations

import numpy as np
import pytest

from privtuner.optimizer import solve
from privtuner.optimizer.testing.factory import random_problem

pytest.importorskip("pyscipopt")

from privtuner.optimizer.testing.scip import solve_with_scip
from privtuner.optimizer.testing.tolerances import TOLERANCES as TOL


@pytest.mark.parametrize(
    ("n", "k", "seed"),
    [(2, 2, 1), (3, 3, 2), (4, 2, 4), pytest.param(6, 2, 3, marks=pytest.mark.slow)],
)
def test_exact_agrees_with_scip(n: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = random_problem(rng, n, k, deadline_factor=2.0)
    ours = solve(p, "exact")
    ref = solve_with_scip(p, time_limit_s=60.0)
    assert ours.status == "optimal"
    if "objective" not in ref:
        pytest.skip(f"SCIP found no solution in time ({ref['status']})")
    # SCIP's dual bound never exceeds our certified optimum (beyond its tolerance) ...
    tol = 1e-5 * abs(ours.objective)
    assert ref["dual_bound"] <= ours.objective + tol
    # ... and SCIP's solution, re-evaluated exactly, is never better than ours
    if ref["max_violation"] <= 1e-6:
        assert ours.objective <= ref["objective"] + tol
    if ref["status"] == "optimal":
        assert ref["scip_objective"] == pytest.approx(ours.objective, rel=TOL["scip_rel"])
