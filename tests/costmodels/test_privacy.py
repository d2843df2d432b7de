"""Privacy-metric registry."""

from __future__ import annotations

import math

import pytest

from privtuner.costmodels.privacy import (
    get_privacy_metric,
    privacy_metric_names,
    register_privacy_metric,
)
from privtuner.costmodels.security import security_bits
from privtuner.costmodels.types import CkksParams
from privtuner.errors import ParameterError

P = CkksParams(8192, (50, 30, 50), 30)


def test_builtin_metrics() -> None:
    assert get_privacy_metric().name == "security_bits"
    assert get_privacy_metric("security_bits")(P) == pytest.approx(security_bits(8192, 130))
    assert get_privacy_metric("log2_n")(P) == 13.0
    big = CkksParams(32768, (40, 20, 40), 20)
    assert security_bits(32768, 100) > 1000
    assert get_privacy_metric("security_bits")(big) == 256.0
    assert get_privacy_metric("security_bits_uncapped")(big) == security_bits(32768, 100)
    assert {"security_bits", "log2_n"} <= set(privacy_metric_names())


def test_unknown_metric_lists_valid_names() -> None:
    with pytest.raises(ParameterError, match=r"unknown privacy metric 'nope'; valid: .*log2_n.*"):
        get_privacy_metric("nope")


def test_register_custom_metric() -> None:
    name = "test_log2_q_inverse"
    register_privacy_metric(name, lambda p: 1.0 / math.log2(p.log2_q), unit="1/bit")
    try:
        assert get_privacy_metric(name)(P) == pytest.approx(1.0 / math.log2(130))
        with pytest.raises(ParameterError, match="already registered"):
            register_privacy_metric(name, lambda p: 0.0)
        register_privacy_metric(name, lambda p: 2.0, overwrite=True)
        assert get_privacy_metric(name)(P) == 2.0
    finally:
        from privtuner.costmodels import privacy

        privacy._REGISTRY.pop(name, None)
