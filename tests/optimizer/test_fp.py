"""Stage B (spec 5.1): the quadratic transform, the DPP problem built once, and fractional
programming against the fixed-set convex optimum of ``continuous.clear_markets`` (O1)."""

from __future__ import annotations

import numpy as np
import pytest

from privtuner.errors import SolverError
from privtuner.optimizer.core.model import smallest_device_cpu_hz
from privtuner.optimizer.core.problem import FEAS_TOL_REL
from privtuner.optimizer.methods.ao.fp import StageB, energy_objective, objective_value
from privtuner.optimizer.methods.starts import fastest_sets, fixed_set_optimum
from privtuner.optimizer.testing.factory import random_problem
from privtuner.optimizer.testing.tolerances import TOLERANCES as TOL


def test_quadratic_transform_identity() -> None:
    """N/D = min_y y N^2 + 1/(4 y D^2), attained at y* = 1/(2 N D) (Shen and Yu 2018)."""
    rng = np.random.default_rng(0)
    num = rng.lognormal(0.0, 3.0, 200)
    den = rng.lognormal(0.0, 3.0, 200)

    def g(y: np.ndarray) -> np.ndarray:
        return y * num**2 + 1.0 / (4.0 * y * den**2)

    y_star = 1.0 / (2.0 * num * den)
    np.testing.assert_allclose(g(y_star), num / den, rtol=TOL["same_formula_rel"])
    for factor in (0.5, 0.9, 1.1, 2.0):
        assert np.all(g(y_star * factor) > num / den)


def test_stage_b_is_dpp_and_built_once() -> None:
    rng = np.random.default_rng(1)
    pr = random_problem(rng, 4, 4, deadline_factor=2.0)
    sb = StageB(pr)
    assert sb.cp_problem.is_dpp()
    for k in range(pr.n_sets):
        sb.solve(np.full(pr.n_devices, k, dtype=np.int64), None, max_iterations=3)
    assert sb.builds == 1 and sb.solves >= pr.n_sets
    with pytest.raises(SolverError, match="fp_method"):
        sb.solve(fastest_sets(pr), None, method="newton")  # type: ignore[arg-type]


def test_closed_form_device_cpu_meets_the_deadline_exactly() -> None:
    rng = np.random.default_rng(2)
    pr = random_problem(rng, 5, 4, deadline_factor=2.0)
    n = pr.n_devices
    sets = fastest_sets(pr)
    b = np.full(n, pr.bandwidth_hz / n)
    p = np.array(pr.p_max_w)
    fs = np.full(n, pr.server_cpu_hz / n)
    f = smallest_device_cpu_hz(pr, sets, b, p, fs)
    ev = pr.evaluate(sets, b, p, f, fs)
    np.testing.assert_allclose(ev.latency_s, pr.deadline_s, rtol=TOL["same_formula_rel"])


@pytest.mark.parametrize("method", ["quadratic", "dinkelbach"])
def test_fp_converges_to_the_fixed_set_optimum(method: str) -> None:
    """On random small instances FP reaches the fixed-set convex optimum within
    ``TOL["fp_vs_fixed_set_rel"]`` (relative to the energy objective), never beats it
    (beyond round-off) and never increases the objective along the way."""
    rng = np.random.default_rng(11)
    for _ in range(6):
        n = int(rng.integers(1, 8))
        pr = random_problem(rng, n, 5, deadline_factor=float(rng.uniform(1.0, 2.0)))
        sets = fastest_sets(pr)
        ref_alloc, why = fixed_set_optimum(pr, sets)
        assert ref_alloc is not None, why
        ref = objective_value(pr, ref_alloc)
        r = StageB(pr).solve(
            sets,
            None,
            method=method,  # type: ignore[arg-type]
            rel_tol=1e-9,
            max_iterations=200,
        )
        assert r.allocation is not None, r.message
        ev = pr.evaluate(**r.allocation.as_kwargs())
        assert ev.max_violation <= FEAS_TOL_REL
        assert ev.objective == pytest.approx(r.objective, rel=TOL["same_formula_rel"], abs=1e-12)
        scale = energy_objective(pr, ref_alloc)
        assert r.objective - ref <= TOL["fp_vs_fixed_set_rel"] * scale, (r.objective, ref)
        assert r.objective - ref >= -1e-7 * scale  # the fixed-set optimum is a lower bound
        h = np.array(r.history)
        assert np.all(np.diff(h) <= 1e-12 * np.abs(h[:-1]))


def test_bounds_fix_variables() -> None:
    """The baselines' bounds hold the fixed variables at their values."""
    rng = np.random.default_rng(5)
    pr = random_problem(rng, 3, 3, deadline_factor=2.5)
    n = pr.n_devices
    sets = fastest_sets(pr)
    share = np.full(n, 1.0 / n)
    r = StageB(pr).solve(
        sets, None, bounds={"x_lo": share, "x_hi": share, "q_lo": 1.0, "q_hi": 1.0}
    )
    assert r.allocation is not None
    np.testing.assert_allclose(
        r.allocation.bandwidth_hz, pr.bandwidth_hz / n, rtol=TOL["same_formula_rel"]
    )
    np.testing.assert_allclose(r.allocation.tx_power_w, pr.p_max_w, rtol=TOL["same_formula_rel"])
    with pytest.raises(SolverError, match="unknown bound"):
        StageB(pr).solve(sets, None, bounds={"b_lo": share})
