"""The ``rescale="device"`` protocol option: the server returns unrescaled products and the
device decrypts them; same values as the default, exact CRT against Python integers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privtuner.costmodels.types import CkksParams
from privtuner.fhe_profiling import ckks_ops as K

seal = pytest.importorskip("tenseal.sealapi")

from privtuner.fhe_profiling import packing  # noqa: E402

pytestmark = pytest.mark.fhe

SMALL = CkksParams(4096, (40, 20, 40), 20)
MID = CkksParams(8192, (60, 40, 60), 40)
DEEP = CkksParams(8192, (50, 30, 30, 50), 30)  # three primes before the rescale: SEAL decodes


def _primes(n: int, bits: list[int]) -> list[int]:
    return [m.value() for m in seal.CoeffModulus.Create(n, bits)]


# ------------------------------------------------------------- exact modular helpers
@pytest.mark.parametrize("bits", [20, 31, 40, 49, 50, 55, 60])
def test_mul_const_mod_is_exact(bits: int) -> None:
    """Both paths (float quotient below 2^50, limb product above) against Python ints, on
    inputs up to 4 q (what the CRT passes) and at the edges."""
    (q,) = _primes(4096, [bits])
    rng = np.random.default_rng(bits)
    v = rng.integers(0, 4 * q if 4 * q < 2**63 else q, size=2000, dtype=np.uint64)
    v[:3] = [0, q - 1, q]
    for c in (0, 1, q - 1, int(rng.integers(1, q))):
        got = K._mul_const_mod(v.copy(), c, q)
        assert [int(g) for g in got] == [int(x) * c % q for x in v], c


@pytest.mark.parametrize(("b0", "b1"), [(60, 40), (40, 20), (50, 30), (60, 55), (30, 60)])
def test_crt2_centred_matches_python_integers(b0: int, b1: int) -> None:
    """Centred integers of ``(-Q/2, Q/2)`` rebuilt from their two residues: to float64
    rounding (the fast path for q1 < 2^50, the % path above), sign and both edges included."""
    q0, q1 = _primes(8192, [b0, b1])
    big_q = q0 * q1
    rng = np.random.default_rng(b0 * 100 + b1)
    xs = [int(v) for v in rng.integers(-(2**62), 2**62, size=500)]
    xs += [int(rng.integers(0, 2**62)) * (2 ** max(0, b0 + b1 - 64)) for _ in range(200)]
    xs += [-(x) for x in xs[-100:]] + [0, 1, -1, big_q // 2 - 1, -(big_q // 2) + 1]
    xs = [max(min(x, big_q // 2 - 1), -(big_q // 2) + 1) for x in xs]
    res = np.array([[[x % q0 for x in xs], [x % q1 for x in xs]]], dtype=np.uint64)
    got = K._crt2_centred(res, q0, q1)[0]
    want = np.array([float(x) for x in xs])
    assert np.all(np.abs(got - want) <= 3 * 2.0**-53 * np.abs(want))  # small ones exact


# ------------------------------------------------------------- the option end to end
@pytest.fixture(scope="module")
def keys() -> dict[str, K.CkksKeys]:
    return {p.name: K.make_context(p) for p in (SMALL, MID, DEEP)}


@pytest.mark.parametrize("params", [SMALL, MID, DEEP], ids=lambda p: p.name)
@pytest.mark.parametrize("packing_name", ["interleaved", "column"])
def test_device_rescale_gives_the_same_product(
    keys: dict[str, K.CkksKeys], params: CkksParams, packing_name: str
) -> None:
    """Same ciphertext count; every prime of the input level comes down (bytes grow by the
    rescaling prime's share); values agree with numpy within the CKKS noise of the default."""
    kk = keys[params.name]
    pub = K.load_public_context(kk.public_bytes(), params)
    rng = np.random.default_rng(params.poly_modulus_degree + len(packing_name))
    x = rng.uniform(-2, 2, size=(300, 48))
    w = rng.normal(size=(48, 40)) / math.sqrt(48)
    b = rng.normal(size=40)
    enc = packing.deserialize(pub, packing.serialize(packing.encrypt(kk, x, packing_name)))
    outs = {r: packing.project(pub, enc, w, b, rescale=r) for r in K.RESCALE_AT}
    ref = x @ w + b
    bound = K.projection_bound(x, float(np.max(np.linalg.norm(w, axis=0))), float(np.max(b)))
    got = {
        r: packing.decrypt(kk, packing.deserialize(kk, packing.serialize(o)), bound=bound)
        for r, o in outs.items()
    }
    tol = (
        64
        * math.sqrt(49)
        * max(1.0, float(np.max(np.abs(ref))))
        * 2.0 ** (-params.scale_bits + math.log2(params.poly_modulus_degree) / 2)
    )
    for r in K.RESCALE_AT:
        assert np.max(np.abs(got[r] - ref)) < tol, r
    # the device's product skips the rescale's rounding: no less precise
    assert np.max(np.abs(got["device"] - ref)) <= np.max(np.abs(got["server"] - ref)) * 1.5
    srv, dev = outs["server"], outs["device"]
    assert srv.n_ciphertexts == dev.n_ciphertexts
    level = list(params.coeff_mod_bit_sizes[:-1])
    first_raw = K.RawCiphertext.from_compact(dev.blocks[0][0].blob)
    assert first_raw.n_primes == len(level)
    assert first_raw.scale == pytest.approx(2.0 ** (2 * params.scale_bits))
    # compact bytes: whole bytes per residue of each prime
    per_prime = [math.ceil(bits / 8) for bits in level]
    ratio = dev.nbytes / srv.nbytes
    assert ratio == pytest.approx(sum(per_prime) / sum(per_prime[:-1]), rel=0.01)


def test_device_rescale_of_zero_weights_is_not_transparent(keys: dict[str, K.CkksKeys]) -> None:
    kk = keys[SMALL.name]
    x = np.random.default_rng(1).normal(size=(20, 4))
    b = np.array([0.5, -1.0])
    for packing_name in ("interleaved", "column"):
        enc = packing.encrypt(kk, x, packing_name)
        out = packing.project(kk, enc, np.zeros((4, 2)), b, rescale="device")
        for ct in out.blocks[0]:
            assert np.any(K.RawCiphertext.from_compact(ct.blob).data[1])
        got = packing.decrypt(kk, out)
        np.testing.assert_allclose(got, np.tile(b, (20, 1)), atol=1e-3)


def test_bad_rescale_value_is_one_clear_error(keys: dict[str, K.CkksKeys]) -> None:
    kk = keys[SMALL.name]
    enc = packing.encrypt(kk, np.ones((4, 2)), "interleaved")
    with pytest.raises(K.CkksInputError, match="rescale: unknown value 'client'; valid: server"):
        packing.project(kk, enc, np.ones((2, 2)), rescale="client")
