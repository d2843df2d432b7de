"""Security table, interpolation rule and SEAL agreement."""

from __future__ import annotations

import itertools
import math

import pytest

from privtuner.costmodels import security
from privtuner.costmodels.security import (
    HE_STANDARD_MAX_LOG2_Q,
    SECURITY_LEVELS,
    max_log2_q,
    security_bits,
    table_max_log2_q,
)
from privtuner.errors import ParameterError


@pytest.mark.fhe
def test_table_equals_seal_max_bit_count() -> None:
    sealapi = pytest.importorskip("tenseal.sealapi")
    levels = {
        128: sealapi.SEC_LEVEL_TYPE.TC128,
        192: sealapi.SEC_LEVEL_TYPE.TC192,
        256: sealapi.SEC_LEVEL_TYPE.TC256,
    }
    for n in HE_STANDARD_MAX_LOG2_Q:
        for lam in SECURITY_LEVELS:
            assert table_max_log2_q(n, lam) == sealapi.CoeffModulus.MaxBitCount(n, levels[lam]), (
                n,
                lam,
            )


def test_max_log2_q_without_tenseal_uses_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "_seal_max_bit_count", lambda: None)
    for n in HE_STANDARD_MAX_LOG2_Q:
        for lam in SECURITY_LEVELS:
            assert max_log2_q(n, lam) == table_max_log2_q(n, lam)


def test_security_bits_exact_at_table_points() -> None:
    for n, qs in HE_STANDARD_MAX_LOG2_Q.items():
        for lam, q in zip(SECURITY_LEVELS, qs, strict=True):
            assert security_bits(n, q) == pytest.approx(lam, abs=1e-9)


def test_security_bits_monotone_and_continuous() -> None:
    for n, qs in HE_STANDARD_MAX_LOG2_Q.items():
        grid = [q / 4 for q in range(4, 4 * (qs[0] * 2))]
        vals = [security_bits(n, q) for q in grid]
        assert all(a > b for a, b in itertools.pairwise(vals))  # decreasing in log2 Q
        for q in qs:  # continuity at the table points (where the rule changes piece)
            assert security_bits(n, q - 1e-7) == pytest.approx(security_bits(n, q + 1e-7), rel=1e-6)
        # proportional extrapolation: halving log2 Q beyond 256 doubles lambda
        assert security_bits(n, qs[2] / 2) == pytest.approx(512.0)
        assert security_bits(n, qs[0] * 2) == pytest.approx(64.0)


def test_interpolation_between_points_is_linear_in_n_over_q() -> None:
    n = 8192
    q128, q192 = HE_STANDARD_MAX_LOG2_Q[n][:2]
    x128, x192 = n / q128, n / q192
    xm = 0.5 * (x128 + x192)
    assert security_bits(n, n / xm) == pytest.approx(160.0)


@pytest.mark.parametrize("level", [128.0, 150.0, 192.0, 200.5, 256.0, 300.0, 100.0])
def test_max_log2_q_is_largest_secure(level: float) -> None:
    for n in (4096, 8192, 16384, 32768):
        q = max_log2_q(n, level)
        assert security_bits(n, q) >= level - 1e-9
        assert security_bits(n, q + 1) < level


def test_bad_inputs() -> None:
    with pytest.raises(ParameterError, match="N=5000"):
        security_bits(5000, 100)
    with pytest.raises(ParameterError, match="log2_q"):
        security_bits(8192, 0)
    with pytest.raises(ParameterError, match="log2_q"):
        security_bits(8192, math.nan)
    with pytest.raises(ParameterError, match="security level 100"):
        table_max_log2_q(8192, 100)
    with pytest.raises(ParameterError, match="min_security_bits"):
        max_log2_q(8192, -1)
