"""CKKS catalogue generation and validation."""

from __future__ import annotations

import pytest

from privtuner.costmodels.catalogue import (
    ALLOWED_RING_DEGREES,
    MIN_INTEGER_BITS,
    chain_for_scale,
    generate_catalogue,
    scale_grid,
    validate_params,
)
from privtuner.costmodels.security import max_log2_q, security_bits
from privtuner.costmodels.types import CkksParams
from privtuner.errors import ParameterError


def test_default_catalogue_modest_deterministic_secure() -> None:
    cat = generate_catalogue()
    assert 10 <= len(cat) <= 30
    assert cat == generate_catalogue()
    assert cat == sorted(cat)
    assert len({p.name for p in cat}) == len(cat)
    assert {p.poly_modulus_degree for p in cat} == set(ALLOWED_RING_DEGREES)
    for p in cat:
        validate_params(p)
        assert p.log2_q <= max_log2_q(p.poly_modulus_degree, 128)
        assert security_bits(p.poly_modulus_degree, p.log2_q) >= 128
        q0, qs, special = p.coeff_mod_bit_sizes
        assert qs == p.scale_bits and q0 == special > p.scale_bits
        assert 20 <= p.scale_bits <= 40


def test_catalogue_respects_filters() -> None:
    cat = generate_catalogue(ring_degrees=(8192,), scale_bits_range=(25, 33), step_bits=4)
    assert [p.scale_bits for p in cat] == [25, 29, 33]
    assert all(p.poly_modulus_degree == 8192 for p in cat)
    # a stricter security floor removes the large-modulus sets of small N
    strict = generate_catalogue(min_security_bits=192)
    assert all(security_bits(p.poly_modulus_degree, p.log2_q) >= 192 for p in strict)
    assert len(strict) < len(generate_catalogue())


def test_catalogue_empty_raises() -> None:
    with pytest.raises(ParameterError, match="no CKKS parameter set"):
        generate_catalogue(ring_degrees=(4096,), scale_bits_range=(30, 40))
    with pytest.raises(ParameterError, match="not allowed"):
        generate_catalogue(ring_degrees=(1000,))


def test_scale_grid_includes_ends() -> None:
    assert scale_grid((20, 30), 4) == [20, 24, 28, 30]
    assert scale_grid((20, 20), 4) == [20]
    with pytest.raises(ParameterError):
        scale_grid((30, 20), 4)


def test_insecure_set_rejected_with_n_bits_limit() -> None:
    p = CkksParams(4096, (50, 30, 50), 30)  # 130 bits > 109
    with pytest.raises(ParameterError) as exc:
        validate_params(p)
    msg = str(exc.value)
    assert "N=4096" in msg and "130 bits" in msg and "109 bits" in msg
    # secure at 128 but not at 192
    q = CkksParams(8192, (60, 40, 60), 40)
    validate_params(q, 128)
    with pytest.raises(ParameterError, match="152 bits"):
        validate_params(q, 192)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (CkksParams(2048, (30, 20, 30), 20), "N=2048 is not allowed"),
        (CkksParams(5000, (30, 20, 30), 20), "N=5000 is not allowed"),
        (CkksParams(8192, (40, 40), 20), "at least 3"),
        (CkksParams(8192, (61, 40, 61), 40), r"\[61, 61\]"),
        (CkksParams(8192, (40, 15, 40), 15), r"\[15\]"),
        (CkksParams(8192, (50, 30, 50), 35), "larger than the smallest prime"),
        (CkksParams(8192, (30, 30, 30), 30), "no room for the integer part"),
        (CkksParams(8192, (60, 40, 60), 20), "rescaling prime q1 = 40 bits differs from scale"),
        (CkksParams(8192, (50, 30, 34, 50), 30), "rescaling prime q2 = 34 bits"),
        (CkksParams(8192, (34, 30, 50), 30), r"q0 = 34 bits leaves too little room.*4 bits"),
        (CkksParams(8192, (50, 30, 33), 30), r"special prime = 33 bits leaves too little"),
    ],
)
def test_malformed_sets_rejected(params: CkksParams, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        validate_params(params)


def test_chain_for_scale_caps_at_60() -> None:
    assert chain_for_scale(30) == (50, 30, 50)
    assert chain_for_scale(45) == (60, 45, 60)


@pytest.mark.fhe
def test_seal_accepts_every_catalogue_chain() -> None:
    sealapi = pytest.importorskip("tenseal.sealapi")
    for p in generate_catalogue():
        primes = sealapi.CoeffModulus.Create(p.poly_modulus_degree, list(p.coeff_mod_bit_sizes))
        assert [q.bit_count() for q in primes] == list(p.coeff_mod_bit_sizes)


def test_security_below_128_bits_refused_everywhere() -> None:
    """The parameter API refuses what the scenario schema refuses (min_security_bits < 128)."""
    with pytest.raises(ParameterError, match="min_security_bits = 80 is below 128"):
        generate_catalogue(min_security_bits=80)
    with pytest.raises(ParameterError, match="min_security_bits = 100 is below 128"):
        validate_params(CkksParams(8192, (60, 40, 60), 40), 100)
    with pytest.raises(ParameterError, match="min_security_bits"):
        validate_params(CkksParams(8192, (60, 40, 60), 40), float("nan"))


def test_catalogue_sets_pass_the_chain_rules_over_the_schema_scale_range() -> None:
    """Every generated set, up to the schema's largest scale (60 bits), passes the checks
    hand-built sets get: the catalogue drops scales whose q0 (capped at 60) leaves too little
    room; too few integer bits are refused."""
    cat = generate_catalogue(scale_bits_range=(20, 60), step_bits=1)
    for p in cat:
        validate_params(p)
    assert max(p.scale_bits for p in cat) == 60 - MIN_INTEGER_BITS
    deep = CkksParams(8192, (50, 30, 30, 50), 30)  # two rescaling primes of the scale
    validate_params(deep)
    with pytest.raises(ParameterError, match="integer_bits = 4 is below 5"):
        generate_catalogue(integer_bits=4)
