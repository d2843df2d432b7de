"""RLWE security of a CKKS parameter set: the HomomorphicEncryption.org standard table.

Source: M. Albrecht et al., "Homomorphic Encryption Security Standard", HomomorphicEncryption.org,
Toronto, 2018, Table 1 (classical security, uniform ternary secret distribution): the largest
total coefficient modulus log2 Q for each ring degree N at 128, 192 and 256 bits of security.
The values below are the ones Microsoft SEAL enforces (``CoeffModulus::MaxBitCount``, file
``seal/util/hestdparms.h``); a test (``tests/costmodels/test_security.py``, marker ``fhe``)
checks them against ``tenseal.sealapi.CoeffModulus.MaxBitCount`` for every N and level.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from privtuner.errors import ParameterError

#: Security levels (bits) of the standard table, in increasing order.
SECURITY_LEVELS: tuple[int, ...] = (128, 192, 256)

#: max log2 Q [bits] for ring degree N at each level of :data:`SECURITY_LEVELS`
#: (HomomorphicEncryption.org standard, Table 1, classical, ternary secret; SEAL's values).
HE_STANDARD_MAX_LOG2_Q: dict[int, tuple[int, int, int]] = {
    1024: (27, 19, 14),
    2048: (54, 37, 29),
    4096: (109, 75, 58),
    8192: (218, 152, 118),
    16384: (438, 305, 237),
    32768: (881, 611, 476),
}


def _check_n(poly_modulus_degree: int) -> None:
    if poly_modulus_degree not in HE_STANDARD_MAX_LOG2_Q:
        raise ParameterError(
            f"poly_modulus_degree N={poly_modulus_degree} is not in the security table; "
            f"allowed: {sorted(HE_STANDARD_MAX_LOG2_Q)}"
        )


@functools.lru_cache(maxsize=1)
def _seal_max_bit_count() -> Callable[[int, int], int] | None:
    """SEAL's ``CoeffModulus.MaxBitCount(N, level)`` via TenSEAL, or None if not installed."""
    try:
        import tenseal.sealapi as sealapi  # optional dependency, imported lazily
    except ImportError:
        return None
    levels = {
        128: sealapi.SEC_LEVEL_TYPE.TC128,
        192: sealapi.SEC_LEVEL_TYPE.TC192,
        256: sealapi.SEC_LEVEL_TYPE.TC256,
    }

    def max_bit_count(n: int, level_bits: int) -> int:
        return int(sealapi.CoeffModulus.MaxBitCount(n, levels[level_bits]))

    return max_bit_count


def table_max_log2_q(poly_modulus_degree: int, level_bits: int) -> int:
    """The recorded standard-table value of max log2 Q [bits] for N at 128, 192 or 256 bits."""
    _check_n(poly_modulus_degree)
    if level_bits not in SECURITY_LEVELS:
        raise ParameterError(
            f"security level {level_bits} is not in the table; allowed: {list(SECURITY_LEVELS)}"
        )
    return HE_STANDARD_MAX_LOG2_Q[poly_modulus_degree][SECURITY_LEVELS.index(level_bits)]


def security_bits(poly_modulus_degree: int, log2_q: float) -> float:
    """Estimated classical security lambda [bits] of RLWE with ring degree N and modulus log2 Q.

    Rule (spec section 2): lambda is taken as a function of x = N / log2 Q, the ratio that
    governs the lattice-reduction cost to first order. For each N the standard table (Albrecht
    et al. 2018, Table 1, classical, ternary secret; see the module docstring) gives three points
    x_k = N / maxlog2Q_k(N) with lambda_k in {128, 192, 256}.

    * between table points (128 <= lambda <= 256): piecewise-linear interpolation of lambda in x;
    * beyond the table (x < x_128 or x > x_256): lambda proportional to x through the origin,
      lambda = 128 x / x_128 below 128 bits and lambda = 256 x / x_256 above 256 bits
      (the same first-order rule; continuous at the table points, increasing in x, > 0).

    At the table points this returns exactly 128, 192 and 256; any set within SEAL's 128-bit
    limit gets >= 128. ``N`` must be a power of two in 1024..32768; ``log2_q`` > 0 bits.
    """
    _check_n(poly_modulus_degree)
    if not (math.isfinite(log2_q) and log2_q > 0):
        raise ParameterError(f"log2_q must be a positive number of bits (got {log2_q})")
    n = float(poly_modulus_degree)
    x = n / float(log2_q)
    xs = [n / q for q in HE_STANDARD_MAX_LOG2_Q[poly_modulus_degree]]  # increasing in lambda
    lams = [float(v) for v in SECURITY_LEVELS]
    if x <= xs[0]:
        return lams[0] * x / xs[0]
    if x >= xs[-1]:
        return lams[-1] * x / xs[-1]
    for k in range(len(xs) - 1):
        if x <= xs[k + 1]:
            t = (x - xs[k]) / (xs[k + 1] - xs[k])
            return lams[k] + t * (lams[k + 1] - lams[k])
    raise AssertionError("unreachable")  # pragma: no cover


def max_log2_q(poly_modulus_degree: int, min_security_bits: float = 128.0) -> int:
    """Largest total modulus log2 Q [bits] for ring degree N with security >= ``min_security_bits``.

    For 128, 192 and 256 bits this is SEAL's own ``CoeffModulus.MaxBitCount(N, level)`` when
    TenSEAL is installed (imported lazily), else the recorded standard table (equal, by test).
    For other levels it inverts :func:`security_bits`: the largest integer log2 Q whose
    interpolated security is >= ``min_security_bits``.
    """
    _check_n(poly_modulus_degree)
    if not (math.isfinite(min_security_bits) and min_security_bits > 0):
        raise ParameterError(
            f"min_security_bits must be a positive number (got {min_security_bits})"
        )
    level = float(min_security_bits)
    if level in SECURITY_LEVELS:
        seal = _seal_max_bit_count()
        if seal is not None:
            return seal(poly_modulus_degree, int(level))
        return table_max_log2_q(poly_modulus_degree, int(level))
    # Invert the monotone rule of security_bits: lambda(x) = level -> log2 Q = N / x.
    n = float(poly_modulus_degree)
    xs = [n / q for q in HE_STANDARD_MAX_LOG2_Q[poly_modulus_degree]]
    lams = [float(v) for v in SECURITY_LEVELS]
    if level <= lams[0]:
        x = xs[0] * level / lams[0]
    elif level >= lams[-1]:
        x = xs[-1] * level / lams[-1]
    else:
        k = max(i for i in range(len(lams) - 1) if lams[i] <= level)
        t = (level - lams[k]) / (lams[k + 1] - lams[k])
        x = xs[k] + t * (xs[k + 1] - xs[k])
    q = math.floor(round(n / x, 9))
    # Guard against rounding at the boundary: the result must satisfy the rule.
    while q > 0 and security_bits(poly_modulus_degree, q) < level - 1e-9:
        q -= 1
    return int(q)
