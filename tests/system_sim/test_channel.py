"""Channel statistics against their formulas on large seeded samples, and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from privtuner.scenario import load_scenario_text
from privtuner.system_sim import (
    build_instance,
    drop_in_disc,
    fdma_rate_bps,
    path_loss_db,
    rayleigh_power,
    shadowing_db,
)
from privtuner.units import db_to_lin, dbm_to_w, lin_to_db, w_to_dbm

N_SAMPLES = 400_000


def test_path_loss_formula_points() -> None:
    assert path_loss_db(1000.0) == pytest.approx(128.1)
    assert path_loss_db(100.0) == pytest.approx(128.1 - 37.6)
    assert path_loss_db(500.0) == pytest.approx(128.1 + 37.6 * np.log10(0.5))


def test_rayleigh_mean_power_is_one() -> None:
    h2 = rayleigh_power(np.random.default_rng(1), N_SAMPLES)
    # |h|^2 ~ Exp(1): mean 1, std 1, so the sample mean has std 1/sqrt(n) ~ 0.0016.
    assert abs(h2.mean() - 1.0) < 5 / np.sqrt(N_SAMPLES)
    # P(|h|^2 > 1) = e^-1 for an exponential law.
    assert abs((h2 > 1.0).mean() - np.exp(-1)) < 5 * np.sqrt(0.25 / N_SAMPLES)


def test_shadowing_statistics() -> None:
    x = shadowing_db(np.random.default_rng(2), N_SAMPLES, 8.0)
    assert abs(x.mean()) < 5 * 8.0 / np.sqrt(N_SAMPLES)
    assert abs(x.std() - 8.0) < 0.05
    assert np.all(shadowing_db(np.random.default_rng(2), 10, 0.0) == 0)


def test_mean_path_loss_at_fixed_distance_through_build_instance() -> None:
    """Mean of -10log10(g) over shadowing only equals PL(d); fading adds E[-10log10|h|^2]."""
    n = 50_000
    text = (
        f"devices:\n  explicit: [{', '.join(['{distance_m: 300}'] * 2)}]\nsystem:\n  fading: none\n"
    )
    spec = load_scenario_text(text)
    spec = spec.model_copy(
        update={
            "devices": spec.devices.model_copy(
                update={"explicit": spec.devices.explicit * (n // 2)}
            )
        }
    )
    inst = build_instance(spec, seed=3)
    loss_db = -lin_to_db(inst.gain_lin)
    assert abs(loss_db.mean() - path_loss_db(300.0)) < 5 * 8.0 / np.sqrt(n)
    # With Rayleigh fading: E[10 log10 |h|^2] = -10 gamma / ln 10 ~ -2.507 dB (Euler's gamma).
    spec_f = spec.model_copy(
        update={"system": spec.system.model_copy(update={"fading": "rayleigh"})}
    )
    loss_f = -lin_to_db(build_instance(spec_f, seed=3).gain_lin)
    expected = path_loss_db(300.0) + 10 * np.euler_gamma / np.log(10)
    assert abs(loss_f.mean() - expected) < 5 * np.sqrt(8.0**2 + 5.57**2) / np.sqrt(n)


def test_drop_in_disc_is_uniform_in_area() -> None:
    d = drop_in_disc(np.random.default_rng(4), N_SAMPLES, 500.0, 10.0)
    assert d.min() >= 10.0 and d.max() <= 500.0
    # P(d <= r) = (r^2 - r0^2)/(R^2 - r0^2)
    frac = (d <= 250.0).mean()
    expected = (250.0**2 - 10.0**2) / (500.0**2 - 10.0**2)
    assert abs(frac - expected) < 5 * np.sqrt(0.25 / N_SAMPLES)


def test_fdma_rate_formula() -> None:
    n0 = float(dbm_to_w(-174.0))
    b, p, g = 1e6, 0.2, 1e-11
    assert fdma_rate_bps(b, p, g, n0) == pytest.approx(b * np.log2(1 + p * g / (n0 * b)))
    assert fdma_rate_bps(0.0, p, g, n0) == 0.0
    # Rate increases with bandwidth and power; concave in bandwidth.
    bs = np.linspace(1e5, 1e7, 50)
    r = fdma_rate_bps(bs, p, g, n0)
    assert np.all(np.diff(r) > 0) and np.all(np.diff(r, 2) < 0)


def test_units_round_trip() -> None:
    assert dbm_to_w(30.0) == pytest.approx(1.0)
    assert w_to_dbm(0.2) == pytest.approx(23.0103, abs=1e-3)
    assert db_to_lin(lin_to_db(3.7)) == pytest.approx(3.7)


def test_same_seed_same_instance_different_seed_differs() -> None:
    spec = load_scenario_text("devices:\n  count: 20\n  p_max_dbm: {low: 15, high: 23}\n")
    a, b, c = build_instance(spec, 5), build_instance(spec, 5), build_instance(spec, 6)
    for name in ("distance_m", "gain_lin", "p_max_w", "f_max_hz", "kappa_dev"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes()
    assert not np.array_equal(a.gain_lin, c.gain_lin)
    assert not np.array_equal(a.distance_m, c.distance_m)
    assert a.seed == 5 and c.seed == 6
    assert build_instance(spec).seed == spec.seed


def test_instance_arrays_are_frozen() -> None:
    inst = build_instance(load_scenario_text("seed: 1"))
    with pytest.raises(ValueError):
        inst.gain_lin[0] = 1.0
    assert inst.n_devices == 10


def test_explicit_gain_used_as_is() -> None:
    inst = build_instance(
        load_scenario_text("devices:\n  explicit: [{gain_db: -100, p_max_dbm: 20}]\n")
    )
    assert inst.gain_db[0] == pytest.approx(-100.0)
    assert inst.p_max_w[0] == pytest.approx(0.1)
    assert np.isnan(inst.distance_m[0])


def test_a_devices_csv_not_read_by_the_loader_is_a_clear_error() -> None:
    """Through the Python API a spec may name a devices CSV that no loader read (count None):
    one error naming devices.csv, not an AssertionError."""
    from privtuner.errors import ScenarioError
    from privtuner.scenario.schema import ScenarioSpec

    spec = ScenarioSpec.model_validate({"devices": {"csv": "two.csv"}})
    with pytest.raises(ScenarioError, match=r"^devices\.csv: not read; load the scenario"):
        build_instance(spec)
