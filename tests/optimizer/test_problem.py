"""AllocationProblem.evaluate (the single source of truth), validation, registry errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from privtuner.errors import SolverError
from privtuner.optimizer import AllocationProblem, SolveResult, available_methods, solve
from privtuner.optimizer.testing.factory import random_problem
from privtuner.optimizer.testing.tolerances import TOLERANCES as TOL


def test_evaluate_matches_hand_formulas() -> None:
    rng = np.random.default_rng(0)
    p = random_problem(rng, 3, 4)
    sets = np.array([0, 2, 3])
    b = np.array([1e6, 2e6, 3e6])
    pw = np.array([0.1, 0.05, 0.2])
    f = np.array([1e9, 0.5e9, 0.8e9])
    fs = np.array([5e9, 6e9, 7e9])
    ev = p.evaluate(sets, b, pw, f, fs)
    c = p.costs
    for i, k in enumerate(sets):
        rate = b[i] * np.log2(1 + pw[i] * p.gain_lin[i] / (p.noise_w_per_hz * b[i]))
        tau = c.uplink_bits[k] / rate
        e = (
            p.kappa_dev[i] * c.device_cycles[k] * f[i] ** 2
            + pw[i] * tau
            + p.kappa_srv * c.server_cycles[k] * fs[i] ** 2
        )
        t = (
            c.device_cycles[k] / f[i]
            + tau
            + c.downlink_bits[k] / p.downlink_rate_bps
            + c.server_cycles[k] / fs[i]
        )
        assert ev.energy_j[i] == pytest.approx(p.rounds * e, rel=TOL["same_formula_rel"])
        assert ev.latency_s[i] == pytest.approx(t, rel=TOL["same_formula_rel"])
        assert ev.rate_bps[i] == pytest.approx(rate, rel=TOL["same_formula_rel"])
    obj = p.energy_weight * p.rounds * 0 + float(np.sum(ev.energy_j)) * p.energy_weight
    obj -= p.privacy_weight * float(np.sum(c.privacy[sets]))
    assert ev.objective == pytest.approx(obj, rel=TOL["same_formula_rel"])


def test_violations_are_relative_and_named() -> None:
    rng = np.random.default_rng(1)
    p = random_problem(rng, 2, 2)
    n = 2
    ok = p.evaluate(
        np.zeros(n, dtype=int),
        np.full(n, p.bandwidth_hz / n),
        p.p_max_w,
        p.f_max_hz,
        np.full(n, p.server_cpu_hz / n),
    )
    assert ok.violations["bandwidth"] == 0.0
    bad = p.evaluate(
        np.zeros(n, dtype=int),
        np.full(n, p.bandwidth_hz),
        p.p_max_w * 2,
        p.f_max_hz * 1.5,
        np.full(n, p.server_cpu_hz),
    )
    assert bad.violations["bandwidth"] == pytest.approx(1.0)
    assert bad.violations["server_cpu"] == pytest.approx(1.0)
    assert bad.violations["tx_power"] == pytest.approx(1.0)
    assert bad.violations["cpu"] == pytest.approx(0.5)
    zero_b = p.evaluate(np.zeros(n, dtype=int), np.zeros(n), p.p_max_w, p.f_max_hz, np.full(n, 1e9))
    assert zero_b.violations["deadline"] == np.inf and not zero_b.is_feasible()
    not_allowed = p.with_allowed(np.array([[True, False], [True, True]]))
    ev = not_allowed.evaluate(
        np.array([1, 0]), np.full(n, 1e6), p.p_max_w, p.f_max_hz, np.full(n, 1e9)
    )
    assert ev.violations["allowed"] == np.inf


def test_validation_errors_name_the_field() -> None:
    rng = np.random.default_rng(2)
    p = random_problem(rng, 2, 2)
    with pytest.raises(SolverError, match="bandwidth_hz"):
        p.with_bandwidth(-1.0)
    with pytest.raises(SolverError, match="allowed"):
        p.with_allowed(np.ones((3, 2), dtype=bool))
    with pytest.raises(SolverError, match="sets must be"):
        p.evaluate(np.zeros(3, dtype=int), np.ones(3), np.ones(3), np.ones(3), np.ones(3))


def test_from_instance_filters_sets() -> None:
    from privtuner.scenario.schema import FheSpec, ObjectiveSpec
    from privtuner.system_sim.instance import SystemInstance

    rng = np.random.default_rng(3)
    p = random_problem(rng, 3, 5)
    inst = SystemInstance(
        distance_m=np.full(3, 100.0),
        gain_lin=p.gain_lin,
        p_max_w=p.p_max_w,
        f_max_hz=p.f_max_hz,
        kappa_dev=p.kappa_dev,
        bandwidth_hz=p.bandwidth_hz,
        noise_w_per_hz=p.noise_w_per_hz,
        server_cpu_hz=p.server_cpu_hz,
        kappa_srv=p.kappa_srv,
        downlink_rate_bps=p.downlink_rate_bps,
        seed=5,
    )
    floor = float(np.median(p.costs.privacy))
    q = AllocationProblem.from_instance(
        inst,
        p.costs,
        ObjectiveSpec(kind="constrained", privacy_min=floor),
        FheSpec(min_precision_bits=0),
    )
    assert np.array_equal(q.allowed[0], p.costs.privacy >= floor)
    assert q.objective_kind == "constrained" and np.all(q.set_constant == 0)
    assert q.seed == 5 and q.subset([0, 2]).n_devices == 2


def test_registry_errors_list_valid_choices() -> None:
    rng = np.random.default_rng(4)
    p = random_problem(rng, 2, 2)
    assert {"exact", "enumerate"} <= set(available_methods())
    with pytest.raises(SolverError, match=r"unknown method 'nope'.*exact"):
        solve(p, "nope")
    with pytest.raises(SolverError, match=r"unknown option.*'bogus'.*rel_tol"):
        solve(p, "exact", bogus=1)
    with pytest.raises(SolverError, match="rel_tol"):
        solve(p, "exact", rel_tol=2.0)


def test_result_serialises() -> None:
    rng = np.random.default_rng(5)
    p = random_problem(rng, 3, 3)
    r = solve(p, "exact")
    d = json.loads(r.to_json())
    assert d["method"] == "exact" and len(d["devices"]["bandwidth_hz"]) == 3
    assert d["objective"] == pytest.approx(r.objective)
    rows = r.allocation_rows()
    assert len(rows) == 3 and rows[0]["set_name"] == r.set_names[0]
    assert "objective" in r.table()
    inf = SolveResult.make_infeasible(p, method="exact", reasons=["device 0: x"])
    assert json.loads(inf.to_json())["reasons"] == ["device 0: x"]
    assert "device 0: x" in inf.table()
