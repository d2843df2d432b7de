"""Channel model of the uplink (spec section 4).

Large-scale path loss (3GPP TR 36.814 macro, the model of most wireless-FL papers)::

    PL(d) [dB] = a + b log10(d / 1 km),   a = 128.1 dB, b = 37.6 dB

log-normal shadowing X ~ N(0, sigma^2) [dB] and Rayleigh fading |h|^2 ~ Exp(1), so the channel
power gain is ``g = 10^(-(PL + X)/10) |h|^2``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def path_loss_db(
    distance_m: ArrayLike, intercept_db: float = 128.1, slope_db: float = 37.6
) -> NDArray[np.float64]:
    """Path loss PL = intercept_db + slope_db log10(d_km) [dB] (3GPP TR 36.814, spec sec. 4)."""
    d_km = np.asarray(distance_m, dtype=float) / 1000.0
    return intercept_db + slope_db * np.log10(d_km)


def shadowing_db(rng: np.random.Generator, size: int, sigma_db: float) -> NDArray[np.float64]:
    """Log-normal shadowing in dB: X ~ N(0, sigma_db^2) (spec sec. 4)."""
    if sigma_db == 0:
        return np.zeros(size)
    return rng.normal(0.0, sigma_db, size)


def rayleigh_power(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    """Rayleigh fading power |h|^2 with h ~ CN(0, 1), i.e. |h|^2 ~ Exp(1), E|h|^2 = 1."""
    h = (rng.standard_normal(size) + 1j * rng.standard_normal(size)) / np.sqrt(2.0)
    return np.abs(h) ** 2


def drop_in_disc(
    rng: np.random.Generator, size: int, radius_m: float, min_distance_m: float
) -> NDArray[np.float64]:
    """Distances of devices dropped uniformly (in area) in an annulus [min_distance_m, radius_m].

    Uniform in area: d = sqrt(U (R^2 - r0^2) + r0^2), U ~ U(0, 1).
    """
    u = rng.random(size)
    return np.sqrt(u * (radius_m**2 - min_distance_m**2) + min_distance_m**2)


def fdma_rate_bps(
    bandwidth_hz: ArrayLike, tx_power_w: ArrayLike, gain: ArrayLike, noise_w_per_hz: float
) -> NDArray[np.float64]:
    """FDMA uplink Shannon rate (spec section 4)::

        r(b, p, g) = b log2(1 + p g / (N0 b))     [bit/s]

    with bandwidth b [Hz], transmit power p [W], channel power gain g (linear) and noise PSD
    N0 [W/Hz]. Broadcasts over arrays; r(0, p, g) = 0, and a negative power sends nothing
    (its SNR counts as 0). The optimiser's rate is this function
    (``privtuner.optimizer.core.model.uplink_rate_bps``).
    """
    b = np.asarray(bandwidth_hz, dtype=float)
    p = np.asarray(tx_power_w, dtype=float)
    g = np.asarray(gain, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = p * g / (noise_w_per_hz * b)
        r = b * np.log2(1.0 + np.maximum(snr, 0.0))
    return np.where(b > 0, r, 0.0)
