"""In-memory SEAL access, the compact wire format and the batched decoder.

The references are SEAL's own file serialization and SEAL's own decoder: the in-memory path
must give the server's products bit for bit (the rescale is deterministic) and the same
decrypted values as the file path with SEAL's ``decode_complex`` / ``decode_double``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from privtuner.costmodels.types import CkksParams
from privtuner.fhe_profiling import ckks_ops as K

seal = pytest.importorskip("tenseal.sealapi")

from privtuner.fhe_profiling import interleaved as IL  # noqa: E402
from privtuner.fhe_profiling import seal_memory as SM  # noqa: E402

pytestmark = pytest.mark.fhe

SETS = [
    CkksParams(4096, (40, 20, 40), 20),
    CkksParams(8192, (60, 40, 60), 40),
    CkksParams(8192, (50, 30, 30, 50), 30),  # two primes left after the rescale
]


@pytest.fixture(scope="module", params=SETS, ids=lambda p: p.name)
def keys(request: pytest.FixtureRequest) -> K.CkksKeys:
    return K.make_context(request.param)


@pytest.fixture
def file_path_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Disable the in-memory path (as on a build whose layout check fails)."""
    monkeypatch.setattr(SM, "_VERIFIED", False)
    monkeypatch.setattr(SM, "_PT_VERIFIED", False)
    monkeypatch.setattr(K, "_DECODERS", {})
    yield


def test_layout_verified_here(keys: K.CkksKeys) -> None:
    # the pinned TenSEAL build: if this fails, the fast path silently falls back (slow)
    assert SM.available(keys, K._file_residues) and SM.plaintext_available(keys)
    assert K._slot_decoder(keys) is not None


def test_view_matches_seal_serialization(keys: K.CkksKeys) -> None:
    ct = seal.Ciphertext(keys.context)
    plain = seal.Plaintext()
    keys.encoder.encode(1.25, keys.scale, plain)
    keys.public_encryptor.encrypt(plain, ct)
    view = SM.ciphertext_residues(ct)
    saved = K.RawCiphertext.parse(K._save_bytes(ct))
    assert view is not None and saved is not None
    np.testing.assert_array_equal(view, saved.data)


def _raw(keys: K.CkksKeys, rng: np.random.Generator) -> K.RawCiphertext:
    ct = seal.Ciphertext(keys.context)
    plain = seal.Plaintext()
    keys.encoder.encode(list(rng.standard_normal(keys.slots)), keys.scale, plain)
    keys.public_encryptor.encrypt(plain, ct)
    raw = K.RawCiphertext.parse(K._save_bytes(ct))
    assert raw is not None
    return raw


def test_compact_round_trip_and_size(keys: K.CkksKeys) -> None:
    raw = _raw(keys, np.random.default_rng(1))
    moduli = keys.moduli(raw.parms_id)
    blob = raw.to_compact(moduli)
    back = K.RawCiphertext.parse(blob)
    assert back is not None
    np.testing.assert_array_equal(back.data, raw.data)
    assert (back.parms_id, back.scale, back.is_ntt_form) == (
        raw.parms_id,
        raw.scale,
        raw.is_ntt_form,
    )
    n = keys.params.poly_modulus_degree
    per_residue = sum(-(-q.bit_length() // 8) for q in moduli)
    assert len(blob) == K._COMPACT_HEAD.size + len(moduli) + 2 * n * per_residue
    # SEAL loads what the compact bytes describe
    loaded = keys.load_ciphertext(K.SealCiphertext(blob))
    again = K.RawCiphertext.parse(K._save_bytes(loaded))
    assert again is not None
    np.testing.assert_array_equal(again.data, raw.data)


def test_compact_written_in_place_equals_to_compact(keys: K.CkksKeys) -> None:
    """A product held as residues (``SealCiphertext.of_raw``) writes, at any offset of a
    reply buffer, the bytes ``to_compact`` makes; its size is known before; a level of
    primes of mixed widths (8 and 5 bytes here) included."""
    rng = np.random.default_rng(3)
    raw = _raw(keys, rng)
    moduli = keys.moduli(raw.parms_id)
    assert len({-(-q.bit_length() // 8) for q in moduli}) > 1
    blob = raw.to_compact(moduli)
    lazy = K.SealCiphertext.of_raw(raw, moduli)
    assert lazy.nbytes == len(blob) == raw.compact_nbytes(moduli)
    buf = bytearray(b"\xaa" * (len(blob) + 10))
    assert lazy.write_into(buf, 7) == 7 + len(blob)
    assert buf[7 : 7 + len(blob)] == blob and buf[:7] == b"\xaa" * 7 and buf[-3:] == b"\xaa" * 3
    assert lazy.blob == blob
    with pytest.raises(K.CkksInputError, match="too small"):
        raw.write_compact(moduli, bytearray(len(blob) - 1), 0)
    # a whole serialization: the bytes of the eagerly made blobs, after the prefix
    eager = K.EncryptedColumns(4, 2, [[K.SealCiphertext(blob), K.SealCiphertext(blob)]])
    held = K.EncryptedColumns(4, 2, [[lazy, K.SealCiphertext.of_raw(raw, moduli)]])
    assert K.serialize_columns(held, prefix=b"HEAD") == b"HEAD" + K.serialize_columns(eager)


@pytest.mark.parametrize("width", range(1, 9))
def test_compact_byte_planes_round_trip_every_width(width: int) -> None:
    """Residues of every width (1..8 bytes) survive to_compact/from_compact exactly, the
    largest value of the width included, in exactly ``width`` bytes each."""
    rng = np.random.default_rng(width)
    n = 16
    top = (1 << (8 * width)) - 1
    data = rng.integers(0, top, size=(2, 1, n), dtype=np.uint64, endpoint=True)
    data[0, 0, 0] = top
    raw = K.RawCiphertext((1, 2, 3, 4), True, 2.0**40, 1, data)
    q = 1 << (8 * width - 1)  # a modulus of 8 * width bits: residues of `width` bytes
    blob = raw.to_compact([q])
    assert len(blob) == K._COMPACT_HEAD.size + 1 + 2 * n * width
    back = K.RawCiphertext.from_compact(blob)
    np.testing.assert_array_equal(back.data, data)


def test_compact_byte_plane_layout() -> None:
    """The layout, by hand: 5-byte residues go as their low 4 bytes (little-endian), all of
    them, then their fifth bytes."""
    data = np.array([[[0x0102030405, 0x1112131415]]], dtype=np.uint64)
    raw = K.RawCiphertext((0, 0, 0, 0), True, 1.0, 1, data)
    blob = raw.to_compact([1 << 39])
    body = blob[K._COMPACT_HEAD.size + 1 :]
    assert body == bytes([5, 4, 3, 2, 0x15, 0x14, 0x13, 0x12, 1, 0x11])


def test_compact_rejects_corrupt_bytes(keys: K.CkksKeys) -> None:
    raw = _raw(keys, np.random.default_rng(2))
    blob = raw.to_compact(keys.moduli(raw.parms_id))
    with pytest.raises(K.CkksInputError, match="wrong length"):
        K.RawCiphertext.parse(blob[:-1])
    with pytest.raises(K.CkksInputError, match="bad header"):
        K.RawCiphertext.parse(b"PTRC\x09" + blob[5:])
    # a residue at or above its prime: refused before SEAL sees it
    big = K.RawCiphertext.from_compact(blob)
    data = big.data.copy()
    data[0, 0, 0] = np.uint64(keys.moduli(raw.parms_id)[0])
    bad = K.RawCiphertext(big.parms_id, True, big.scale, 1, data)
    with pytest.raises(K.CkksInputError, match="exceed the primes"):
        keys.seal_view(bad)
    with pytest.raises(K.CkksInputError, match="exceed the primes"):
        keys.load_ciphertext(K.SealCiphertext(bad.to_compact(keys.moduli(raw.parms_id))))


def _project_and_decrypt(
    keys: K.CkksKeys, x: np.ndarray, w: np.ndarray, b: np.ndarray
) -> tuple[list[bytes], np.ndarray]:
    enc = IL.encrypt_interleaved(keys, x)
    out = IL.project_interleaved(keys, enc, w, b)
    blobs = [ct.blob for block in out.blocks for ct in block]
    return blobs, IL.decrypt_interleaved(keys, out)


@pytest.mark.parametrize("shape", [(37, 12, 5), (300, 64, 33)])
def test_memory_path_equals_file_path(
    keys: K.CkksKeys, shape: tuple[int, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    t, d_in, d_out = shape
    rng = np.random.default_rng(3)
    x = rng.standard_normal((t, d_in))
    w = 0.3 * rng.standard_normal((d_in, d_out))
    b = rng.standard_normal(d_out)
    enc = IL.encrypt_interleaved(keys, x)
    fast_out = IL.project_interleaved(keys, enc, w, b)
    fast = IL.decrypt_interleaved(keys, fast_out)
    monkeypatch.setattr(SM, "_VERIFIED", False)
    monkeypatch.setattr(SM, "_PT_VERIFIED", False)
    monkeypatch.setattr(K, "_DECODERS", {})
    slow_out = IL.project_interleaved(keys, enc, w, b)
    slow = IL.decrypt_interleaved(keys, slow_out)
    # the server's products: identical bytes either way
    assert [ct.blob for bl in fast_out.blocks for ct in bl] == [
        ct.blob for bl in slow_out.blocks for ct in bl
    ]
    # decoding: two double-precision FFTs of the same coefficients
    ref = x @ w + b
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-6 * np.max(np.abs(ref)))
    err = np.max(np.abs(fast - ref)) / np.max(np.abs(ref))
    assert err < 2.0 ** min(-8, -keys.params.scale_bits + 16)  # CKKS's own error


def test_column_decrypt_same_either_way(keys: K.CkksKeys, file_path_only: None) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((20, 3))
    w = rng.standard_normal((3, 2))
    enc = K.encrypt_columns(keys, x)
    got = K.decrypt_columns(keys, K.project(keys, enc, w))
    np.testing.assert_allclose(got, x @ w, atol=2.0 ** (-keys.params.scale_bits + 14))


@pytest.mark.parametrize("rescale", K.RESCALE_AT)
def test_decrypt_many_odd_count_and_single(keys: K.CkksKeys, rescale: str) -> None:
    """Odd counts pair the last plaintext with a stand-in, at every level decrypt_many sees:
    one prime (rescaled), two (unrescaled, or rescaled from three) and three (SEAL decodes)."""
    rng = np.random.default_rng(5)
    for n_out in (1, 3):
        x = rng.standard_normal((10, 4))
        w = rng.standard_normal((4, n_out))
        y = K.project(keys, K.encrypt_columns(keys, x), w, rescale=rescale)
        got = K.decrypt_columns(keys, y)
        np.testing.assert_allclose(got, x @ w, atol=2.0 ** (-keys.params.scale_bits + 14))
