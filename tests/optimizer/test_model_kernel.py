"""The system-model kernel (``optimizer.core.model``, spec section 4): one rate function
(``system_sim.channel.fdma_rate_bps``), pair terms consistent with per-device terms and with
``AllocationProblem.evaluate``, and closed forms that meet the deadline they solve for."""

from __future__ import annotations

import numpy as np
import pytest

from privtuner.optimizer.core import model
from privtuner.optimizer.testing.factory import random_problem
from privtuner.optimizer.testing.tolerances import TOLERANCES as TOL
from privtuner.system_sim.channel import fdma_rate_bps


@pytest.fixture
def problem():  # type: ignore[no-untyped-def]
    return random_problem(np.random.default_rng(5), 7, 5)


def _point(problem, rng):  # type: ignore[no-untyped-def]
    n = problem.n_devices
    b = rng.uniform(0.2, 1.0, n) * problem.bandwidth_hz / n
    p = rng.uniform(0.1, 1.0, n) * problem.p_max_w
    f = rng.uniform(0.3, 1.0, n) * problem.f_max_hz
    fs = rng.uniform(0.2, 1.0, n) * problem.server_cpu_hz / n
    return b, p, f, fs


def test_the_rate_is_the_channel_model(problem) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    b, p, f, fs = _point(problem, rng)
    r = model.uplink_rate_bps(b, p, problem.gain_lin, problem.noise_w_per_hz)
    assert np.array_equal(r, fdma_rate_bps(b, p, problem.gain_lin, problem.noise_w_per_hz))
    sets = rng.integers(0, problem.n_sets, problem.n_devices)
    ev = problem.evaluate(sets, b, p, f, fs)
    assert np.array_equal(ev.rate_bps, r)
    # spec sec. 4 written out once more, independently of the kernel
    direct = b * np.log2(1 + p * problem.gain_lin / (problem.noise_w_per_hz * b))
    np.testing.assert_allclose(r, direct, rtol=TOL["same_formula_rel"])
    assert model.uplink_rate_bps(0.0, 1.0, 1e-9, 1e-20) == 0.0
    assert model.uplink_rate_bps(1e6, -1.0, 1e-9, 1e-20) == 0.0  # a negative power sends nothing


def test_pair_terms_are_the_device_terms_of_each_set(problem) -> None:  # type: ignore[no-untyped-def]
    b, p, f, fs = _point(problem, np.random.default_rng(1))
    pairs = model.pair_terms(problem, b, p, f, fs)
    assert pairs.latency_s.shape == (problem.n_devices, problem.n_sets)
    for k in range(problem.n_sets):
        sets = np.full(problem.n_devices, k)
        dev = model.device_terms(problem, sets, b, p, f, fs)
        for name in ("rate_bps", "uplink_s", "downlink_s", "device_s", "server_s"):
            full = np.broadcast_to(getattr(pairs, name), pairs.latency_s.shape)
            assert np.array_equal(full[:, k], getattr(dev, name)), name
        assert np.array_equal(pairs.energy_j[:, k], dev.energy_j)
        ev = problem.evaluate(sets, b, p, f, fs)
        assert np.array_equal(ev.latency_s, dev.latency_s)
        assert np.array_equal(
            ev.energy_j,
            problem.rounds * dev.device_j
            + problem.rounds * dev.tx_j
            + problem.rounds * dev.server_j,
        )


def test_closed_forms_meet_the_deadline(problem) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    b, p, _, fs = _point(problem, rng)
    sets = rng.integers(0, problem.n_sets, problem.n_devices)
    f = model.smallest_device_cpu_hz(problem, sets, b, p, fs)
    ok = np.isfinite(f)
    assert ok.any()
    lat = model.device_terms(problem, sets, b, p, f, fs).latency_s
    np.testing.assert_allclose(lat[ok], problem.deadline_s, rtol=TOL["same_formula_rel"])
    f2, fs2 = model.closed_form_cpus_hz(problem, sets, b, p)
    fin = np.isfinite(f2)
    assert fin.sum() >= 2 and np.all(f2[fin] <= problem.f_max_hz[fin])
    lat2 = model.device_terms(problem, sets, b, p, f2, fs2).latency_s
    np.testing.assert_allclose(lat2[fin], problem.deadline_s, rtol=TOL["same_formula_rel"])
    # with more time the split is interior: kappa_d f^3 = kappa_s f_s^3 (Lagrange)
    slow = problem.with_deadline(20 * problem.deadline_s)
    f2, fs2 = model.closed_form_cpus_hz(slow, sets, b, p)
    ok2 = f2 < slow.f_max_hz
    assert ok2.sum() >= 2
    lat2 = model.device_terms(slow, sets, b, p, f2, fs2).latency_s
    np.testing.assert_allclose(lat2[ok2], slow.deadline_s, rtol=TOL["same_formula_rel"])
    # interior optimum of kappa_d C f^2 + kappa_s C_s f_s^2: kappa_d f^3 = kappa_s f_s^3
    np.testing.assert_allclose(
        problem.kappa_dev[ok2] * f2[ok2] ** 3,
        problem.kappa_srv * fs2[ok2] ** 3,
        rtol=TOL["same_formula_rel"] * 10,
    )
    t = model.pair_terms(problem, b, p, model.closed_form_cpus_hz(problem, sets, b, p)[0], fs)
    fs_min = model.smallest_server_cpu_hz(problem, t)
    lat3 = model.pair_terms(
        problem, b, p, model.closed_form_cpus_hz(problem, sets, b, p)[0], fs_min
    ).latency_s
    fin = np.isfinite(fs_min) & (fs_min > 0)
    np.testing.assert_allclose(lat3[fin], problem.deadline_s, rtol=TOL["same_formula_rel"])


def test_power_for_uplink_inverts_the_rate(problem) -> None:  # type: ignore[no-untyped-def]
    b, p, _, _ = _point(problem, np.random.default_rng(3))
    s_up = problem.costs.uplink_bits[0]
    tau = model.uplink_time_s(
        s_up, model.uplink_rate_bps(b, p, problem.gain_lin, problem.noise_w_per_hz)
    )
    back = model.power_for_uplink_w(s_up, tau, b, problem.noise_w_per_hz / problem.gain_lin)
    np.testing.assert_allclose(back, p, rtol=1e-9)
