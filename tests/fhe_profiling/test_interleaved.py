"""Interleaved complex packing: layout, kernel bit for bit against SEAL, projections vs numpy.

The reference for the kernel is SEAL itself: each partial ``Z_{h,d}`` is recomputed with
SEAL's ``CKKSEncoder.encode`` of the periodic slot vector (tiled to all slots), its
``multiply_plain``, ``add_inplace`` and ``add_plain`` of the encoded complex bias; the kernel's
residues must be identical. Values are checked against numpy ``X W + b`` separately.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from privtuner.costmodels.types import CkksParams
from privtuner.costmodels.workload import interleaved_layout
from privtuner.fhe_profiling import ckks_ops as K

seal = pytest.importorskip("tenseal.sealapi")

from privtuner.fhe_profiling import interleaved as IL  # noqa: E402
from privtuner.fhe_profiling import packing  # noqa: E402

pytestmark = pytest.mark.fhe

SMALL = CkksParams(4096, (40, 20, 40), 20)
MID = CkksParams(8192, (60, 40, 60), 40)
DEEP = CkksParams(8192, (50, 30, 30, 50), 30)


@pytest.fixture(scope="module")
def keys() -> dict[str, K.CkksKeys]:
    return {p.name: K.make_context(p) for p in (SMALL, MID, DEEP)}


# ----------------------------------------------------------------- layout (pure)
@pytest.mark.parametrize(
    ("tokens", "features", "slots", "k", "blocks"),
    [
        (512, 128, 4096, 16, 1),  # the default step at N = 8192: all slots full
        (300, 64, 4096, 16, 1),  # T not dividing N/2: 150 rows needed, 256 per ciphertext
        (8, 128, 4096, 128, 1),  # the pooler's [CLS] tokens: k capped by the features
        (5, 3, 2048, 2, 1),  # k a power of two <= features
        (8192, 16, 4096, 1, 1),  # T = N: k = 1, one block of N tokens
        (9000, 8, 4096, 1, 2),  # T > N: blocks of N tokens
    ],
)
def test_layout_rule(tokens: int, features: int, slots: int, k: int, blocks: int) -> None:
    assert interleaved_layout(tokens, features, slots) == (k, blocks)
    lay = IL.InterleavedLayout(tokens, features, slots, k)
    assert lay.n_blocks == blocks
    assert lay.rows * k == slots  # every slot row has k feature slots
    assert 2 * lay.rows * blocks >= tokens  # two tokens (real, imaginary) per slot row
    spans = [lay.block_tokens(b) for b in range(blocks)]
    assert spans[0][0] == 0 and spans[-1][1] == tokens
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))


def test_layout_fills_every_slot_when_tokens_allow() -> None:
    # At T = 512 and N = 8192 one ciphertext carries N = 8192 real values (2 x 4096 slots).
    k, _ = interleaved_layout(512, 128, 4096)
    assert 512 * k == 2 * 4096


def test_periodic_coefficients_reproduce_slots() -> None:
    # a_m from the slot values, re-evaluated at the slot points, give the values back
    rng = np.random.default_rng(0)
    for period in (2, 4, 16):
        pts = np.exp(
            1j * np.pi * np.array([pow(3, j, 4 * period) for j in range(period)]) / (2 * period)
        )
        z = rng.normal(size=period) + 1j * rng.normal(size=period)
        a = IL.periodic_coefficients(pts, z, 2.0**40) / 2.0**40
        back = np.array([np.sum(a * p ** np.arange(2 * period)) for p in pts])
        np.testing.assert_allclose(back, z, atol=1e-10)


# ----------------------------------------------------------------- SEAL
def test_calibration_reads_seal(keys: dict[str, K.CkksKeys]) -> None:
    kk = keys[MID.name]
    pid = tuple(kk.context.first_parms_id())
    for period in (2, 16, 128):
        cal = IL._calibration(kk, pid, period)
        assert cal.slot_points.shape == (period,)
        for perm, blocks in zip(cal.perms, cal.blocks, strict=True):
            assert sorted(perm.tolist()) == list(range(MID.poly_modulus_degree))
            assert blocks is not None  # SEAL's NTT order puts each class in one run


def _seal_partials(
    kk: K.CkksKeys, enc: IL.EncryptedInterleaved, w: np.ndarray, b: np.ndarray | None
) -> list[K.RawCiphertext | None]:
    """The partials of block 0 computed with SEAL's own encoder and evaluator (None: all
    weights of the partial are zero)."""
    lay = enc.layout
    k, slots = lay.k, lay.slots
    d_in, d_out = w.shape
    g_in, g_out = math.ceil(d_in / k), math.ceil(d_out / k)
    wp = np.zeros((g_in * k, g_out * k))
    wp[:d_in, :d_out] = w
    bp = np.zeros(g_out * k)
    if b is not None:
        bp[:d_out] = b
    ev, cod = kk.evaluator, kk.encoder
    out = []
    for h in range(g_out):
        for d in range(k):
            acc = None
            for g in range(g_in):
                c = np.arange(k)
                period = wp[g * k + c, h * k + (c + d) % k]
                if not np.any(period):
                    continue  # SEAL refuses a zero plaintext (transparent result): adds nothing
                ct = kk.load_ciphertext(enc.blocks[0][g])
                pt = seal.Plaintext()
                cod.encode(np.tile(period, slots // k).tolist(), ct.parms_id(), kk.scale, pt)
                ev.multiply_plain_inplace(ct, pt)
                if acc is None:
                    acc = ct
                else:
                    ev.add_inplace(acc, ct)
            if acc is None:  # every weight of this partial is zero
                out.append(None)
                continue
            if b is not None and d == 0:
                pt = seal.Plaintext()
                zb = (1 + 1j) * bp[h * k : (h + 1) * k]
                cod.encode(np.tile(zb, slots // k).tolist(), acc.parms_id(), acc.scale, pt)
                ev.add_plain_inplace(acc, pt)
            raw = K.RawCiphertext.parse(K._save_bytes(acc))
            assert raw is not None
            out.append(raw)
    return out


@pytest.mark.parametrize("trial", range(9))
def test_kernel_is_bit_exact_with_seal(keys: dict[str, K.CkksKeys], trial: int) -> None:
    """Fuzz: random sets, shapes (token counts dividing N/2 or not), weight scales, bias
    (where its encoding is exact)."""
    rng = np.random.default_rng(100 + trial)
    params = (SMALL, MID, DEEP)[trial % 3]
    kk = keys[params.name]
    tokens = int(rng.choice([3, 40, 300, params.slots // 4]))
    d_in, d_out = int(rng.integers(1, 20)), int(rng.integers(1, 12))
    x = rng.normal(size=(tokens, d_in)) * float(rng.choice([0.1, 1.0, 4.0]))
    w = rng.normal(size=(d_in, d_out)) * float(rng.choice([0.05, 0.5, 2.0]))
    # The bias is encoded at the product's scale 2^(2s): bit-exact only while that encoding is
    # exact in float64 (both SEAL's FFT and ours); above, numpy checks it (next test).
    b = rng.normal(size=d_out) if 2 * params.scale_bits <= 48 else None
    enc = IL.encrypt_interleaved(kk, x)
    assert enc.layout.n_blocks == 1
    raws = [ct.raw(kk) for ct in enc.blocks[0]]
    ours = IL._mac_block(kk, raws, w, b, enc.layout.k)
    ref = _seal_partials(kk, enc, w, b)
    assert len(ours) == len(ref) == math.ceil(d_out / enc.layout.k) * enc.layout.k
    assert any(r is not None for r in ref)
    for o, r in zip(ours, ref, strict=True):
        if r is None:
            assert not np.any(o.data[1])  # rescale adds a fresh encryption of zero to it
            continue
        assert o.scale == r.scale and o.parms_id == r.parms_id
        np.testing.assert_array_equal(o.data, r.data)


@pytest.mark.parametrize(
    ("params", "tokens", "d_in", "d_out"),
    [
        (SMALL, 37, 5, 3),
        (SMALL, 4096, 8, 6),  # T = N: k = 1
        (SMALL, 5000, 4, 7),  # T > N: two blocks
        (MID, 512, 128, 64),  # the default step's shape
        (MID, 8, 128, 128),  # the pooler
        (DEEP, 300, 64, 96),
    ],
)
def test_project_matches_numpy(
    keys: dict[str, K.CkksKeys], params: CkksParams, tokens: int, d_in: int, d_out: int
) -> None:
    kk = keys[params.name]
    pub = K.load_public_context(kk.public_bytes(), params)
    rng = np.random.default_rng(tokens + d_in)
    x = rng.uniform(-2, 2, size=(tokens, d_in))
    w = rng.normal(size=(d_in, d_out)) / math.sqrt(d_in)
    b = rng.normal(size=d_out)
    enc = packing.deserialize(pub, packing.serialize(packing.encrypt(kk, x, "interleaved")))
    out = packing.project(pub, enc, w, b)
    assert isinstance(out, IL.EncryptedInterleaved) and out.layout.partials
    got = packing.decrypt(kk, packing.deserialize(kk, packing.serialize(out)))
    ref = x @ w + b
    # CKKS noise at scale 2^s, summed over the k partials and the d_in / k inputs
    tol = (
        64
        * math.sqrt(d_in + 1)
        * max(1.0, float(np.max(np.abs(ref))))
        * 2.0 ** (-params.scale_bits + math.log2(params.poly_modulus_degree) / 2)
    )
    assert np.max(np.abs(got - ref)) < tol
    col = packing.decrypt(kk, packing.project(pub, packing.encrypt(kk, x, "column"), w, b))
    assert np.max(np.abs(col - ref)) < tol  # the baseline agrees on the same product


def test_fewer_ciphertexts_than_column_packing(keys: dict[str, K.CkksKeys]) -> None:
    kk = keys[MID.name]
    x = np.random.default_rng(0).normal(size=(512, 128))
    il = packing.encrypt(kk, x, "interleaved")
    col = packing.encrypt(kk, x, "column")
    assert (il.n_ciphertexts, col.n_ciphertexts) == (8, 128)
    assert col.nbytes / il.nbytes > 15  # same ciphertext size, 16x fewer of them


def test_zero_weights_give_a_fresh_ciphertext(keys: dict[str, K.CkksKeys]) -> None:
    kk = keys[SMALL.name]
    x = np.random.default_rng(1).normal(size=(20, 4))
    b = np.array([0.5, -1.0])
    out = IL.project_interleaved(kk, IL.encrypt_interleaved(kk, x), np.zeros((4, 2)), b)
    got = IL.decrypt_interleaved(kk, out)
    # rescale rounding noise (25 x its slot standard deviation) of each of the k partials
    n = SMALL.poly_modulus_degree
    tol = 25 * math.sqrt(n / 12) * math.sqrt(2 * n / 3) * math.sqrt(out.layout.k) / 2.0**20
    np.testing.assert_allclose(got, np.tile(b, (20, 1)), atol=tol)


def test_bad_inputs_raise_one_clear_error(keys: dict[str, K.CkksKeys]) -> None:
    kk = keys[SMALL.name]
    x = np.ones((10, 4))
    enc = IL.encrypt_interleaved(kk, x)
    with pytest.raises(K.CkksInputError, match="input rows"):
        IL.project_interleaved(kk, enc, np.ones((3, 2)))
    out = IL.project_interleaved(kk, enc, np.ones((4, 2)))
    with pytest.raises(K.CkksInputError, match="partial sums"):
        IL.project_interleaved(kk, out, np.ones((2, 2)))
    data = IL.serialize_interleaved(enc)
    with pytest.raises(K.CkksInputError, match="trailing"):
        IL.deserialize_interleaved(kk, data + b"x")
    with pytest.raises(K.CkksInputError, match="truncated"):
        IL.deserialize_interleaved(kk, data[:-10])
    with pytest.raises(K.CkksInputError, match="slots"):
        IL.deserialize_interleaved(keys[MID.name], data)
    with pytest.raises(K.CkksInputError, match="neither"):
        packing.deserialize(kk, b"garbage")
    with pytest.raises(Exception, match="valid: interleaved, column"):
        packing.encrypt(kk, x, "rows")


@pytest.mark.parametrize("packing_name", ["interleaved", "column"])
def test_project_timings_split_the_work(keys: dict[str, K.CkksKeys], packing_name: str) -> None:
    """The profiler's split of a projection (:class:`ckks_ops.ProjectTimings`) accounts for
    the kernel in both packings: the multiply-accumulate and the rescales each take time, one
    rescale time per output, and the parts add up to the projection's own CPU time (a list
    of products, made in one call, and a generator of chunks are both timed)."""
    import time

    rng = np.random.default_rng(11)
    kk = keys[MID.name]
    x = rng.uniform(-1.0, 1.0, size=(256, 64))
    w = rng.normal(0.0, 0.1, size=(64, 48))
    enc = packing.encrypt(kk, x, packing_name)
    tm = K.ProjectTimings(clock=time.thread_time)
    t0 = time.thread_time()
    y = packing.project(kk, enc, w, timings=tm)
    total = time.thread_time() - t0
    assert tm.mac_s > 0 and tm.rescale_s > 0
    assert len(tm.rescale_each_s) == y.n_ciphertexts
    assert tm.load_s + tm.mac_s + tm.rescale_s == pytest.approx(total, rel=0.1)
    # the kernel is no small part of a projection of 64 x 48 (it was missed once)
    assert tm.mac_s > 0.05 * total
