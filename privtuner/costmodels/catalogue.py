"""The CKKS parameter catalogue (spec section 2): generated, validated, deterministic.

Each server product of the protocol (spec section 1) is one ciphertext x plaintext product
followed by one rescale; the device decrypts and re-encrypts between projections. A chain
therefore needs three primes: ``[q0, q_scale, special]``:

* ``q_scale`` (= scale bits): the prime the product is rescaled by;
* ``q0``: the prime left after the rescale, holding the result; ``q0 - scale`` bits are
  the room for the integer part of the result (default 20 bits: |values| < 2^20 with margin);
* ``special``: SEAL's key-switching prime (last in the chain), sized like ``q0``.

So ``q0 = special = min(scale + integer_bits, 60)`` and log2 Q = 2 q0 + scale. Every set must
satisfy SEAL's limit at the requested security (``security.max_log2_q``), never below 128 bits.

:func:`validate_params` holds every set to the same rules, the catalogue's and hand-built ones
alike (the CKKS context of ``fhe_profiling.ckks_ops`` calls it on both parties): security
>= 128 bits, every middle prime of the scale's bits, q0 and the special prime at least
:data:`MIN_INTEGER_BITS` above the scale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from privtuner.costmodels.security import HE_STANDARD_MAX_LOG2_Q, max_log2_q
from privtuner.costmodels.types import CkksParams
from privtuner.errors import ParameterError

#: Ring degrees N the catalogue may use.
ALLOWED_RING_DEGREES: tuple[int, ...] = (4096, 8192, 16384, 32768)

#: Prime sizes [bits] accepted in a chain. SEAL caps user primes at 60 bits; below 20 bits SEAL
#: finds no NTT-friendly prime (p = 1 mod 2N) for some N (none of 18 or 19 bits at N = 32768).
PRIME_BITS_MIN = 20
PRIME_BITS_MAX = 60

#: Shortest chain: q0, one rescaling prime, the special prime.
MIN_CHAIN_LENGTH = 3

#: Default bits of room for the integer part of a result (q0 - scale).
DEFAULT_INTEGER_BITS = 20

#: Default spacing of scale bits in the catalogue.
DEFAULT_STEP_BITS = 4

#: Fewest bits of room for the integer part (q0 - scale, and special - scale) any set may have:
#: results |X W + b| < 2^(q0 - scale - 1) >= 16. The catalogue uses :data:`DEFAULT_INTEGER_BITS`
#: (less only where q0 reaches 60 bits); the device checks each decrypted result against its
#: set's headroom (``fhe_profiling``: :class:`CkksOverflowError`).
MIN_INTEGER_BITS = 5

#: Lowest security level any entry point accepts [bits] (SEAL's own floor, ``sec_level_type
#: tc128``; the scenario schema's ``fhe.min_security_bits`` has the same bound).
MIN_SECURITY_BITS = 128.0


def check_min_security_bits(min_security_bits: float) -> float:
    """``min_security_bits`` as a float, or a :class:`ParameterError` if below 128 bits."""
    level = float(min_security_bits)
    if not level >= MIN_SECURITY_BITS:  # also rejects NaN
        raise ParameterError(
            f"min_security_bits = {min_security_bits:g} is below {MIN_SECURITY_BITS:g} bits; "
            f"SEAL and the catalogue accept only >= {MIN_SECURITY_BITS:g}-bit sets"
        )
    return level


def validate_params(params: CkksParams, min_security_bits: float = 128.0) -> None:
    """Raise :class:`~privtuner.errors.ParameterError` if ``params`` is malformed or insecure.

    Checks, in order: ``min_security_bits`` >= 128 (:data:`MIN_SECURITY_BITS`); N in
    :data:`ALLOWED_RING_DEGREES`; chain length >= 3 (``[q0, q_scale..., special]``); each prime
    in [20, 60] bits; scale bits no larger than any prime; every middle (rescaling) prime of
    exactly the scale bits (a rescale divides by it, so the result keeps the scale); q0 and the
    special prime at least :data:`MIN_INTEGER_BITS` above the scale (room for the integer part);
    total log2 Q <= SEAL's limit for N at ``min_security_bits`` (``security.max_log2_q``). The
    message names the set, the parameter, its bits and the limit.
    """
    min_security_bits = check_min_security_bits(min_security_bits)
    n = params.poly_modulus_degree
    name = params.name
    if n not in ALLOWED_RING_DEGREES:
        raise ParameterError(
            f"{name}: poly_modulus_degree N={n} is not allowed; "
            f"allowed: {list(ALLOWED_RING_DEGREES)}"
        )
    bits = params.coeff_mod_bit_sizes
    if len(bits) < MIN_CHAIN_LENGTH:
        raise ParameterError(
            f"{name}: coefficient-modulus chain has {len(bits)} primes; at least "
            f"{MIN_CHAIN_LENGTH} are needed (q0, one rescaling prime, special prime)"
        )
    bad = [b for b in bits if not (PRIME_BITS_MIN <= b <= PRIME_BITS_MAX)]
    if bad:
        raise ParameterError(
            f"{name}: prime sizes {bad} bits are outside the allowed "
            f"[{PRIME_BITS_MIN}, {PRIME_BITS_MAX}] bits"
        )
    scale = params.scale_bits
    if scale > min(bits):
        raise ParameterError(
            f"{name}: scale of {scale} bits is larger than the smallest prime ({min(bits)} bits)"
        )
    _check_chain(params)
    limit = max_log2_q(n, min_security_bits)
    if params.log2_q > limit:
        raise ParameterError(
            f"{name}: total log2 Q = {params.log2_q} bits exceeds the limit of {limit} bits for "
            f"N={n} at {min_security_bits:g}-bit security"
        )


def _check_chain(params: CkksParams) -> None:
    """Middle primes == scale bits; q0 and special >= scale + :data:`MIN_INTEGER_BITS`."""
    bits, scale, name = params.coeff_mod_bit_sizes, params.scale_bits, params.name
    for k, b in enumerate(bits[1:-1], start=1):
        if b != scale:
            raise ParameterError(
                f"{name}: rescaling prime q{k} = {b} bits differs from scale_bits = {scale}; "
                "every middle prime of the chain must have the scale's bits (a rescale divides "
                "by it)"
            )
    for label, b in (("q0", bits[0]), ("special prime", bits[-1])):
        room = b - scale
        if room < MIN_INTEGER_BITS:
            raise ParameterError(
                f"{name}: {label} = {b} bits leaves {'no' if room <= 0 else 'too little'} room "
                f"for the integer part above scale_bits = {scale} ({room} bits; at least "
                f"{MIN_INTEGER_BITS} needed: {label} >= scale_bits + {MIN_INTEGER_BITS})"
            )


def chain_for_scale(scale_bits: int, integer_bits: int = DEFAULT_INTEGER_BITS) -> tuple[int, ...]:
    """The depth-one chain ``(q0, scale, special)`` with q0 = special = min(scale + integer, 60)."""
    q0 = min(scale_bits + integer_bits, PRIME_BITS_MAX)
    return (q0, scale_bits, q0)


def scale_grid(scale_bits_range: tuple[int, int], step_bits: int) -> list[int]:
    """Scale bits lo, lo + step, ... and always hi (deterministic, increasing)."""
    lo, hi = int(scale_bits_range[0]), int(scale_bits_range[1])
    if hi < lo:
        raise ParameterError(f"scale_bits_range must be (lo, hi) with lo <= hi (got {lo}, {hi})")
    if step_bits < 1:
        raise ParameterError(f"step_bits must be >= 1 (got {step_bits})")
    grid = list(range(lo, hi + 1, step_bits))
    if grid[-1] != hi:
        grid.append(hi)
    return grid


def generate_catalogue(
    ring_degrees: Iterable[int] = ALLOWED_RING_DEGREES,
    scale_bits_range: tuple[int, int] = (20, 40),
    min_security_bits: float = 128.0,
    step_bits: int = DEFAULT_STEP_BITS,
    integer_bits: int = DEFAULT_INTEGER_BITS,
) -> list[CkksParams]:
    """The catalogue: every (N, scale) on the grid whose depth-one chain passes validation.

    Sets are ``CkksParams(N, chain_for_scale(scale, integer_bits), scale)`` for N in
    ``ring_degrees`` and scale in :func:`scale_grid` (``step_bits`` apart, both ends included),
    kept only if :func:`validate_params` accepts them at ``min_security_bits``; sorted by
    (N, scale). With the defaults: 19 sets (N = 4096 only admits scale 20: 3*24 + 40 > 109).
    Raises :class:`ParameterError` if nothing is left, with the reason for each N, and if
    ``min_security_bits`` < 128 or ``integer_bits`` < :data:`MIN_INTEGER_BITS`.
    """
    min_security_bits = check_min_security_bits(min_security_bits)
    if int(integer_bits) < MIN_INTEGER_BITS:
        raise ParameterError(
            f"integer_bits = {integer_bits} is below {MIN_INTEGER_BITS} "
            "(q0 - scale bits of room for the integer part of a result)"
        )
    degrees = sorted(set(int(n) for n in ring_degrees))
    if not degrees:
        raise ParameterError("ring_degrees is empty")
    bad = [n for n in degrees if n not in ALLOWED_RING_DEGREES]
    if bad:
        raise ParameterError(
            f"ring degrees {bad} are not allowed; allowed: {list(ALLOWED_RING_DEGREES)}"
        )
    scales = scale_grid(scale_bits_range, step_bits)
    out: list[CkksParams] = []
    reasons: list[str] = []
    for n in degrees:
        for s in scales:
            p = CkksParams(n, chain_for_scale(s, integer_bits), s)
            try:
                validate_params(p, min_security_bits)
            except ParameterError as exc:
                reasons.append(str(exc))
                continue
            out.append(p)
    if not out:
        raise ParameterError(
            "no CKKS parameter set satisfies ring_degrees="
            f"{degrees}, scale_bits_range={tuple(scale_bits_range)}, "
            f"min_security_bits={min_security_bits:g}; first rejection: {reasons[0]}"
        )
    return sorted(out)


def catalogue_by_name(params: Sequence[CkksParams]) -> dict[str, CkksParams]:
    """Index a catalogue by :attr:`CkksParams.name`."""
    return {p.name: p for p in params}


__all__ = [
    "ALLOWED_RING_DEGREES",
    "HE_STANDARD_MAX_LOG2_Q",
    "MIN_INTEGER_BITS",
    "MIN_SECURITY_BITS",
    "PRIME_BITS_MAX",
    "PRIME_BITS_MIN",
    "catalogue_by_name",
    "chain_for_scale",
    "check_min_security_bits",
    "generate_catalogue",
    "scale_grid",
    "validate_params",
]
