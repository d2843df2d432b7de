"""Privacy metrics Phi(theta) of a CKKS parameter set, registered by name (spec section 2).

Larger is more private for every metric. Built in:

* ``security_bits`` (default): estimated classical RLWE security lambda [bits] from N and
  log2 Q, interpolated from the HomomorphicEncryption.org table
  (:func:`privtuner.costmodels.security.security_bits` states the rule and source),
  saturating at 256 bits (the table's top);
* ``security_bits_uncapped``: the same estimate extrapolated beyond 256 bits;
* ``log2_n``: log2 N [bits], a simpler monotone proxy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from privtuner.costmodels.security import security_bits
from privtuner.costmodels.types import CkksParams
from privtuner.errors import ParameterError

DEFAULT_PRIVACY_METRIC = "security_bits"


@dataclass(frozen=True)
class PrivacyMetric:
    """A named privacy metric: ``metric(params) -> float`` (larger = more private)."""

    name: str
    func: Callable[[CkksParams], float]
    unit: str
    description: str

    def __call__(self, params: CkksParams) -> float:
        return float(self.func(params))


_REGISTRY: dict[str, PrivacyMetric] = {}


def register_privacy_metric(
    name: str,
    func: Callable[[CkksParams], float],
    *,
    unit: str = "",
    description: str = "",
    overwrite: bool = False,
) -> PrivacyMetric:
    """Register ``func`` under ``name``; re-registering a name needs ``overwrite=True``."""
    if not name or not name.replace("_", "").isalnum():
        raise ParameterError(f"privacy metric name must be a non-empty identifier (got {name!r})")
    if name in _REGISTRY and not overwrite:
        raise ParameterError(f"privacy metric {name!r} is already registered")
    metric = PrivacyMetric(name, func, unit, description)
    _REGISTRY[name] = metric
    return metric


def get_privacy_metric(name: str = DEFAULT_PRIVACY_METRIC) -> PrivacyMetric:
    """The metric registered as ``name``; an unknown name raises listing the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ParameterError(
            f"unknown privacy metric {name!r}; valid: {', '.join(sorted(_REGISTRY))}"
        ) from None


def privacy_metric_names() -> list[str]:
    """Names of the registered metrics, sorted."""
    return sorted(_REGISTRY)


#: The HE standard tabulates security up to 256 bits; the privacy metric saturates there.
SECURITY_CAP_BITS = 256.0


def _security_bits(p: CkksParams) -> float:
    """min(lambda(N, log2 Q), 256) [bits].

    Beyond the standard table's 256-bit column, lambda is a first-order extrapolation
    (:func:`privtuner.costmodels.security.security_bits`) that grows without bound in N/log2 Q
    (about 1200 "bits" at N=32768, log2 Q=100); rewarding that linearly in the weighted
    objective would buy meaningless extra "privacy" with real energy. privtuner's default
    therefore saturates at the table's top (a documented choice; the PrivTuner paper's exact
    metric is not available). ``security_bits_uncapped`` keeps the extrapolation.
    """
    return min(security_bits(p.poly_modulus_degree, p.log2_q), SECURITY_CAP_BITS)


def _security_bits_uncapped(p: CkksParams) -> float:
    return security_bits(p.poly_modulus_degree, p.log2_q)


def _log2_n(p: CkksParams) -> float:
    return math.log2(p.poly_modulus_degree)


register_privacy_metric(
    "security_bits",
    _security_bits,
    unit="bits",
    description="estimated classical RLWE security from N and log2 Q (HE standard table), "
    "saturating at 256 bits",
)
register_privacy_metric(
    "security_bits_uncapped",
    _security_bits_uncapped,
    unit="bits",
    description="estimated classical RLWE security, extrapolated beyond 256 bits",
)
register_privacy_metric(
    "log2_n", _log2_n, unit="bits", description="log2 of the ring degree N (monotone proxy)"
)
