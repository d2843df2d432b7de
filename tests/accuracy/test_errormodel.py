"""The CKKS error model: its fit, the shipped calibration against fresh real encrypted
projections, and the noisy projector of ``simulate``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tenseal")
pytest.importorskip("scipy")

from privtuner.accuracy import errormodel as em  # noqa: E402
from privtuner.costmodels.catalogue import catalogue_by_name, generate_catalogue  # noqa: E402
from privtuner.fhe_profiling import bert, ckks_ops  # noqa: E402
from privtuner.fhe_profiling.packing import PACKINGS  # noqa: E402

CATALOGUE = catalogue_by_name(generate_catalogue())
#: The smallest (fastest) catalogue set.
SMALL_SET = "N4096_q40-20-40_s20"


def test_the_shipped_model_covers_every_set_and_packing_with_provenance() -> None:
    model = em.load_error_model()
    for packing in PACKINGS:
        for name in CATALOGUE:
            e = model.get(name, packing)
            assert e.gamma > 0 and e.alpha >= 0 and e.beta >= 0
    for key in ("date", "cpu_model", "tenseal_version", "packings", "sets", "samples_per_set"):
        assert key in model.provenance


def test_an_uncalibrated_set_is_one_clear_error() -> None:
    with pytest.raises(Exception, match=r"no calibration of set nope with packing column; run"):
        em.load_error_model().get("nope", "column")


@pytest.mark.fhe
@pytest.mark.parametrize("packing", PACKINGS)
def test_simulated_errors_match_fresh_real_encrypted_projections(packing: str) -> None:
    """Independent truth: a new real encrypt -> project -> decrypt (shape and seed not used
    in the calibration), against the shipped model: error std within
    STD_FACTOR_TOLERANCE, standardised errors within the packing's KS bound
    (:func:`em.ks_tolerance`) of N(0, 1), and the errors the NoisyProjector draws within it of
    the measured ones (two-sample KS). The keys are fresh each run (SEAL draws them)."""
    from scipy.stats import ks_2samp

    params = CATALOGUE[SMALL_SET]
    model = em.load_error_model().get(SMALL_SET, packing)
    rng = np.random.default_rng(12345)
    keys = ckks_ops.make_context(params)
    x, w, b = em.calibration_inputs(rng, 48, 96, 40, "forward")
    err = em.measure_errors(keys, packing, x, w, b)
    stats = em.standardized_stats(err, model.std(x, w))
    assert 1 / em.STD_FACTOR_TOLERANCE <= stats["std_ratio"] <= em.STD_FACTOR_TOLERANCE, stats
    assert stats["ks"] <= em.ks_tolerance(packing), stats
    proj = em.NoisyProjector({"p": (w, b)}, model, np.random.default_rng(0), torch.float64)
    sim = proj("p", torch.from_numpy(x)).numpy() - (x @ w + b)
    assert ks_2samp(sim.ravel(), err.ravel()).statistic <= em.ks_tolerance(packing)


def test_the_fit_recovers_known_variance_terms() -> None:
    rng = np.random.default_rng(0)
    truth = em.SetErrorModel("s", "column", 4096, 20, gamma=5e5, alpha=1e6, beta=300.0)
    rows = []
    for t, d_in, d_out in ((64, 64, 64), (128, 32, 48)):
        x, w, _ = em.calibration_inputs(rng, t, d_in, d_out, "forward")
        err = truth.std(x, w) * rng.standard_normal((t, d_out))
        rows.append((1, np.sum(x * x, 1), np.sum(w * w, 0), err))
    gamma, alpha, _ = em._fit(rows, 20)
    assert gamma == pytest.approx(5e5, rel=0.1)
    assert alpha == pytest.approx(1e6, rel=0.1)


def test_gradient_factor_brings_the_max_into_one_two() -> None:
    g = np.random.default_rng(1).normal(size=(5, 7)) * 3e-6
    f = em.gradient_factor(g)
    assert 1 <= f * np.max(np.abs(g)) < 2 and np.log2(f) == int(np.log2(f))
    assert em.gradient_factor(np.zeros(3)) == 1.0


def _weights(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {"p": (rng.normal(size=(6, 4)) / 3, rng.normal(size=4) * 0.1)}


def test_noisy_projector_without_error_is_the_plain_projector() -> None:
    zero = em.SetErrorModel("s", "column", 4096, 20, 0.0, 0.0, 0.0)
    weights = _weights()
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y = em.NoisyProjector(weights, zero, np.random.default_rng(0), torch.float64)("p", x)
    ref = bert.PlainProjector(weights, torch.float64)("p", x2)
    assert torch.equal(y, ref)
    y.pow(2).sum().backward()
    ref.pow(2).sum().backward()
    assert torch.equal(x.grad, x2.grad)


def test_noisy_projector_draws_the_modelled_error_both_ways_deterministically() -> None:
    model = em.SetErrorModel("s", "interleaved", 4096, 10, gamma=4.0, alpha=0.0, beta=0.0)
    weights = _weights()
    x = torch.randn(400, 6, dtype=torch.float64)
    w = torch.from_numpy(weights["p"][0])

    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        xi = x.clone().requires_grad_(True)
        proj = em.NoisyProjector(weights, model, np.random.default_rng(seed), torch.float64)
        y = proj("p", xi)
        gy = torch.full_like(y, 1e-3)
        y.backward(gy)
        return y.detach(), xi.grad - gy @ w.T

    y1, ge1 = run(7)
    y2, ge2 = run(7)
    assert torch.equal(y1, y2) and torch.equal(ge1, ge2)
    fwd_err = (y1 - (x @ w + torch.from_numpy(weights["p"][1]))).numpy()
    k_fwd = model.partials(400, 6)
    assert np.std(fwd_err) == pytest.approx(np.sqrt(4.0 * k_fwd) * 2**-10, rel=0.1)
    # backward: 1e-3 is scaled to [1, 2) (f = 1024) before the modelled error, then divided
    k_bwd = model.partials(400, 4)
    f = em.gradient_factor(np.full(1, 1e-3))
    assert np.std(ge1.numpy()) == pytest.approx(np.sqrt(4.0 * k_bwd) * 2**-10 / f, rel=0.1)
