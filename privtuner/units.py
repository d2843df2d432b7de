"""Unit conversions. privtuner computes in SI units (W, Hz, J, s, bit) and converts only at I/O."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def db_to_lin(x_db: ArrayLike) -> NDArray[np.float64]:
    """Power ratio from decibels: 10^(x/10)."""
    return np.power(10.0, np.asarray(x_db, dtype=float) / 10.0)


def lin_to_db(x: ArrayLike) -> NDArray[np.float64]:
    """Decibels from a power ratio: 10 log10(x)."""
    return 10.0 * np.log10(np.asarray(x, dtype=float))


def dbm_to_w(p_dbm: ArrayLike) -> NDArray[np.float64]:
    """Watts from dBm: 10^((p - 30)/10)."""
    return np.power(10.0, (np.asarray(p_dbm, dtype=float) - 30.0) / 10.0)


def w_to_dbm(p_w: ArrayLike) -> NDArray[np.float64]:
    """dBm from watts: 10 log10(p) + 30."""
    return 10.0 * np.log10(np.asarray(p_w, dtype=float)) + 30.0
