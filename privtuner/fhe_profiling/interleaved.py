"""Feature-interleaved complex packing: every ciphertext carries N real values (spec section 1).

Column packing (:mod:`ckks_ops`) puts one feature of up to N/2 tokens in a ciphertext, so a
step of T = 512 tokens fills 512 of the 4,096 slots at N = 8192. This packing fills them all.

Layout
------
With ``n = N/2`` slots, a block of up to ``2 R`` tokens and ``k`` features per ciphertext
(``k`` a power of two, ``R k = n``): slot ``t k + c`` of ciphertext ``g`` holds the complex
number ``X[t, g k + c] + i X[t + h, g k + c]`` for ``t < R``, where ``h = ceil(T_b / 2)``
splits the block's ``T_b`` tokens between the real and the imaginary parts (zero where there
is no token or no feature). :func:`choose_layout` takes the largest ``k <= d_in``
with ``R = n / k >= ceil(T/2)``; when ``T > N`` it uses ``k = 1`` and blocks of N tokens.

Kernel
------
A real plaintext vector periodic with period ``P`` (a power of two, ``P >= 2``) in SEAL's
slot order is a polynomial in ``Y = X^(N/(2P))`` of degree ``< 2P``: the rotation by ``P``
slots is the automorphism ``X -> X^(3^P)`` (SEAL's slot generator is 3) and
``3^P = 1 mod 4P`` for ``P >= 2``, so the fixed polynomials are those in ``X^(N/(2P))``
(Cheon-Kim-Kim-Song, ASIACRYPT 2017, for the canonical embedding; Halevi-Shoup, CRYPTO 2014,
for the slot automorphisms). Slot ``j`` of ``Y`` is ``y_j = exp(i pi 3^j / (2P))``, so from
the ``P`` slot values ``z_j`` the coefficients are

    a_m = (1/P) Re( sum_j z_j conj(y_j)^m ),   m = 0 .. 2P-1,

(the inverse of the 2P-point canonical embedding, the conjugate slots holding conj(z_j)),
encoded as ``round(a_m D)``. In NTT form ``Y`` takes only the ``2P`` distinct values
``r_0 .. r_{2P-1}`` (the primitive 4P-th roots of unity mod q), each at ``N/(2P)`` of the N
points (its class), so the plaintext's NTT value at a point of class ``r`` is
``sum_m round(a_m D) r^m mod q``. Both ``y_j`` and the class of every NTT point are read from
SEAL itself (:func:`_calibration`: the NTT of ``Y`` by SEAL's evaluator, and SEAL's decoding
of it), not from an assumed convention.

The product ``Y = X W`` with the block-wise weights: for output group ``h`` and offset
``d = 0 .. k-1`` the plaintext of input group ``g`` has slot values
``W[g k + c, h k + (c + d) mod k]`` (period ``k``, real, so it multiplies the real and the
imaginary tokens alike), and the partial ciphertext

    ct(Z_{h,d}) = sum_g P_{g,h,d} * ct(X_g),
    slot t k + c of Z_{h,d}:  sum_g X[t, g k + c] W[g k + c, h k + (c + d) mod k]

is, per prime and per NTT class, one modular matrix product of ``k d_out`` rows by
``d_in / k`` inputs, evaluated exactly in float64 BLAS like the column kernel
(:func:`ckks_ops._weight_limbs`): ``k`` times fewer multiply-accumulates than column packing
at the same token count. No rotation and no Galois key: the device decrypts the ``k``
partials of each group and sums them in clear, ``Y[t, h k + c'] = sum_d Z_{h,d}[t k + (c' -
d) mod k]``. The bias ``b`` is the complex periodic plaintext ``(1 + i) b[h k + c]`` added to
the partial ``d = 0`` at the product's scale. Each partial is rescaled once by SEAL, on the
server by default or, with the protocol option ``rescale="device"``, not at all: the device
then decrypts the two-prime product at scale ``scale_x scale_w``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from privtuner.costmodels.workload import interleaved_layout
from privtuner.fhe_profiling import ckks_ops as _ops
from privtuner.fhe_profiling.ckks_ops import (
    CkksInputError,
    CkksKeys,
    ProjectTimings,
    PublicCkks,
    RawCiphertext,
    SealCiphertext,
)
from privtuner.fhe_profiling.env import limit_blas_threads

__all__ = [
    "EncryptedInterleaved",
    "InterleavedLayout",
    "choose_layout",
    "decrypt_interleaved",
    "deserialize_interleaved",
    "encrypt_interleaved",
    "project_interleaved",
    "serialize_interleaved",
]

_MAGIC = b"PTILV1\n"


@dataclass(frozen=True)
class InterleavedLayout:
    """Where every value of an ``[n_tokens, n_features]`` matrix sits (module docstring).

    ``k`` features per ciphertext (a power of two), ``rows = slots / k`` slot rows per
    ciphertext, each holding two tokens (real and imaginary part), so ``2 rows`` tokens per
    block. ``partials``: the matrix is the output of :func:`project_interleaved`, ``k``
    partial ciphertexts per group of ``k`` features, summed by the device.
    """

    n_tokens: int
    n_features: int
    slots: int
    k: int
    partials: bool = False

    def __post_init__(self) -> None:
        if self.k < 1 or self.k & (self.k - 1) or self.slots % self.k:
            raise CkksInputError(f"interleaved layout: k = {self.k} must be a power of two")
        if self.n_tokens < 1 or self.n_features < 1:
            raise CkksInputError(
                f"interleaved layout: need tokens and features, got "
                f"{self.n_tokens} x {self.n_features}"
            )

    @property
    def rows(self) -> int:
        return self.slots // self.k

    @property
    def tokens_per_block(self) -> int:
        return 2 * self.rows

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.n_tokens / self.tokens_per_block)

    @property
    def n_groups(self) -> int:
        """Groups of ``k`` features (the last one zero-padded)."""
        return math.ceil(self.n_features / self.k)

    @property
    def cts_per_block(self) -> int:
        return self.n_groups * (self.k if self.partials else 1)

    def block_tokens(self, b: int) -> tuple[int, int, int]:
        """``(lo, hi, half)``: block ``b`` holds tokens ``lo .. hi-1``; the real parts hold
        ``lo .. lo+half-1``, the imaginary parts the rest."""
        lo = b * self.tokens_per_block
        hi = min(lo + self.tokens_per_block, self.n_tokens)
        return lo, hi, (hi - lo + 1) // 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def choose_layout(n_tokens: int, n_features: int, slots: int) -> InterleavedLayout:
    """The layout of :mod:`interleaved`: the most features per ciphertext that still fit all
    tokens of a block, at most ``n_features`` (so every partial has a nonzero weight), ``k = 1``
    beyond N tokens (:func:`privtuner.costmodels.workload.interleaved_layout`, the rule the
    cost model counts with)."""
    if n_tokens < 1 or n_features < 1:
        raise CkksInputError(f"x must have tokens and features, got {n_tokens} x {n_features}")
    k, _ = interleaved_layout(n_tokens, n_features, slots)
    return InterleavedLayout(n_tokens, n_features, slots, k)


@dataclass
class EncryptedInterleaved(_ops._Blocks):
    """Interleaved ciphertexts: ``blocks[b][i]`` (``i`` = group, or ``h k + d`` for partials)."""

    layout: InterleavedLayout
    blocks: list[list[SealCiphertext]] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return self.layout.n_tokens

    @property
    def n_features(self) -> int:
        return self.layout.n_features

    def check(self, slots: int) -> None:
        lay = self.layout
        if lay.slots != slots:
            raise CkksInputError(
                f"interleaved ciphertexts were laid out for {lay.slots} slots, context has {slots}"
            )
        if len(self.blocks) != lay.n_blocks or any(
            len(b) != lay.cts_per_block for b in self.blocks
        ):
            raise CkksInputError(
                f"interleaved layout {lay.n_tokens} tokens x {lay.n_features} features (k = "
                f"{lay.k}) needs {lay.n_blocks} blocks of {lay.cts_per_block} ciphertexts, got "
                f"{[len(b) for b in self.blocks]}"
            )


# --------------------------------------------------------------------------- device side
def _block_slots(arr: NDArray[np.float64], lay: InterleavedLayout, b: int) -> NDArray[Any]:
    """Complex slot values ``[n_groups, slots]`` of block ``b`` of ``arr [T, d]``."""
    lo, hi, half = lay.block_tokens(b)
    k, rows, groups = lay.k, lay.rows, lay.n_groups
    z = np.zeros((rows, groups * k), dtype=np.complex128)
    z.real[:half, : lay.n_features] = arr[lo : lo + half]
    z.imag[: hi - lo - half, : lay.n_features] = arr[lo + half : hi]
    # slot t*k + c of group g  <-  z[t, g*k + c]
    return np.ascontiguousarray(z.reshape(rows, groups, k).transpose(1, 0, 2)).reshape(groups, -1)


def encrypt_interleaved(
    keys: CkksKeys, x: Any, *, seeded: bool = True, layout: InterleavedLayout | None = None
) -> EncryptedInterleaved:
    """Device: encode and encrypt ``x [T, d]`` in interleaved complex packing at scale
    2^scale_bits (``layout`` defaults to :func:`choose_layout`; ``seeded`` as in
    :func:`ckks_ops.encrypt_columns`)."""
    if not isinstance(keys, CkksKeys):
        raise CkksInputError("encrypt_interleaved needs the device's CkksKeys")
    seal = _ops._sealapi()
    arr = _ops._as_matrix(x, "x")
    t, d = arr.shape
    if t == 0 or d == 0:
        raise CkksInputError(f"x must have at least one token and one feature, got {arr.shape}")
    lay = layout if layout is not None else choose_layout(t, d, keys.slots)
    if (lay.n_tokens, lay.n_features, lay.slots, lay.partials) != (t, d, keys.slots, False):
        raise CkksInputError(f"layout {lay} does not fit x of shape {arr.shape}")
    plain = seal.Plaintext()
    blocks: list[list[SealCiphertext]] = []
    for b in range(lay.n_blocks):
        block = []
        for g, z in enumerate(_block_slots(arr, lay, b)):
            try:
                keys.encoder.encode(z.tolist(), keys.scale, plain)
            except (ValueError, RuntimeError) as exc:
                raise CkksInputError(
                    f"x group {g} cannot be encoded under {keys.params.name} "
                    f"(max |x| = {np.max(np.abs(arr)):.3g}): {exc}"
                ) from exc
            if seeded:
                blob = _ops._save_bytes(keys.symmetric_encryptor.encrypt_symmetric(plain))
            else:
                ct = seal.Ciphertext(keys.context)
                keys.public_encryptor.encrypt(plain, ct)
                blob = _ops._save_bytes(ct)
            block.append(SealCiphertext(blob))
        blocks.append(block)
    return EncryptedInterleaved(lay, blocks)


def decrypt_interleaved(
    keys: CkksKeys, enc: EncryptedInterleaved, *, bound: float | None = None
) -> NDArray[np.float64]:
    """Device: decrypt, decode and (for partials) sum back to ``[n_tokens, n_features]``.

    Raises :class:`ckks_ops.CkksOverflowError` if ``bound`` (on every real value of the result
    and of each partial; a complex slot holds two: ``|z| <= sqrt(2) bound``) or a decoded slot
    reaches the ciphertext's headroom (:func:`ckks_ops.check_headroom`)."""
    if not isinstance(keys, CkksKeys):
        raise CkksInputError("decrypt_interleaved needs the device's CkksKeys (secret key)")
    enc.check(keys.slots)
    lay = enc.layout
    k, rows, groups = lay.k, lay.rows, lay.n_groups
    out = np.empty((lay.n_tokens, lay.n_features), dtype=np.float64)
    slot_bound = None if bound is None else math.sqrt(2.0) * bound
    for b, block in enumerate(enc.blocks):
        z = np.zeros((rows, groups, k), dtype=np.complex128)
        vals = keys.decrypt_many(block, slot_bound).reshape(len(block), rows, k)
        for i in range(len(block)):
            if lay.partials:
                g, d = divmod(i, k)
                z[:, g, :] += np.roll(vals[i], d, axis=1)
            else:
                z[:, i, :] = vals[i]
        flat = z.reshape(rows, groups * k)[:, : lay.n_features]
        lo, hi, half = lay.block_tokens(b)
        out[lo : lo + half] = flat.real[:half]
        out[lo + half : hi] = flat.imag[: hi - lo - half]
    return out


# --------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class _Calibration:
    """What SEAL says about period-``P`` plaintexts at one level (module docstring).

    ``slot_points [P]``: the slot values ``y_j`` of ``Y = X^(N/2P)``; per prime, ``perm``
    (NTT points sorted by class, ``N/(2P)`` per class) and ``roots [2P]`` (``Y`` at the
    points of each class, mod q); ``vander[k] [2P, 2P]``: ``roots^m mod q``.
    """

    period: int
    slot_points: NDArray[np.complex128]
    perms: tuple[NDArray[np.intp], ...]
    inv_perms: tuple[NDArray[np.intp], ...]
    vanders: tuple[NDArray[np.uint64], ...]
    #: per prime, the run index of each class when classes are contiguous runs, else None
    blocks: tuple[NDArray[np.intp] | None, ...]


_CAL_LOCK = threading.Lock()
_CAL_CACHE: dict[tuple[Any, ...], _Calibration] = {}


def _calibration(session: Any, parms_id: tuple[int, ...], period: int) -> _Calibration:
    """Read, from SEAL, the slots and the NTT classes of ``Y = X^(N/2P)`` at ``parms_id``."""
    key = (session.params, tuple(parms_id), period)  # SEAL's tables depend on these alone
    with _CAL_LOCK:
        if key in _CAL_CACHE:
            return _CAL_CACHE[key]
    seal = _ops._sealapi()
    moduli = session.moduli(parms_id)
    n_poly = session.params.poly_modulus_degree
    stride = n_poly // (2 * period)
    # The polynomial Y (coefficient form) as c0 of a ciphertext (c1 = 1 keeps it from being
    # "transparent"); SEAL's own NTT then gives Y at every NTT point of every prime.
    data = np.zeros((2, len(moduli), n_poly), dtype=np.uint64)
    data[0, :, stride] = 1
    data[1, :, 0] = 1
    hdr = _ops._SEAL_HEADER.unpack_from(_ops._save_bytes(seal.Ciphertext(session.context)))
    raw = RawCiphertext(
        parms_id=tuple(parms_id),  # type: ignore[arg-type]
        is_ntt_form=False,
        scale=1.0,
        correction_factor=1,
        data=data,
        header_version=(int(hdr[2]), int(hdr[3])),
    )
    ct = _ops._load_from_bytes(seal.Ciphertext(session.context), session.context, raw.to_bytes())
    session.evaluator.transform_to_ntt_inplace(ct)
    ntt = RawCiphertext.parse(_ops._save_bytes(ct))
    assert ntt is not None and ntt.is_ntt_form
    perms, inv_perms, vanders, blocks = [], [], [], []
    for k, q in enumerate(moduli):
        vals = ntt.data[0, k]
        roots, cls = np.unique(vals, return_inverse=True)
        counts = np.bincount(cls)
        if len(roots) != 2 * period or np.any(counts != n_poly // (2 * period)):
            raise CkksInputError(
                f"SEAL's NTT of X^{stride} mod prime {k} does not take {2 * period} values"
            )
        perm = np.argsort(cls, kind="stable")
        inv = np.empty_like(perm)
        inv[perm] = np.arange(n_poly)
        perms.append(perm)
        inv_perms.append(inv)
        runs = perm.reshape(2 * period, -1)
        contiguous = bool(np.all(runs % runs.shape[1] == np.arange(runs.shape[1])))
        blocks.append(runs[:, 0] // runs.shape[1] if contiguous else None)
        vanders.append(
            np.array(
                [[pow(int(r), m, q) for m in range(2 * period)] for r in roots], dtype=np.uint64
            )
        )
    slot_points = _slot_points(session, stride, ntt, period)
    cal = _Calibration(
        period, slot_points, tuple(perms), tuple(inv_perms), tuple(vanders), tuple(blocks)
    )
    with _CAL_LOCK:
        _CAL_CACHE[key] = cal
    return cal


def _slot_points(session: Any, stride: int, ntt: RawCiphertext, period: int) -> NDArray[Any]:
    """The slot values ``y_j`` of ``Y`` as SEAL decodes them (no key needed: the NTT values of
    ``Y`` are loaded as a plaintext), checked against the canonical embedding with SEAL's
    generator 3, ``exp(i pi 3^j / (2P))``, and for period ``P``."""
    seal = _ops._sealapi()
    j = np.arange(period)
    analytic = np.exp(1j * np.pi * np.array([pow(3, int(i), 4 * period) for i in j]) / (2 * period))
    # A plaintext's SEAL members: parms_id (4 u64), coeff_count (u64), scale (f64), then its
    # data as a SEAL DynArray (inner header, u64 count, residues).
    values = np.ascontiguousarray(ntt.data[0], dtype="<u8")
    payload = values.tobytes()
    maj, mnr = ntt.header_version
    inner = _ops._SEAL_HEADER.pack(
        _ops._SEAL_MAGIC,
        _ops._SEAL_HEADER.size,
        maj,
        mnr,
        0,
        0,
        _ops._SEAL_HEADER.size + 8 + len(payload),
    )
    members = (
        struct.pack("<4QQd", *ntt.parms_id, values.size, 1.0)
        + inner
        + struct.pack("<Q", values.size)
        + payload
    )
    total = _ops._SEAL_HEADER.size + len(members)
    blob = _ops._SEAL_HEADER.pack(_ops._SEAL_MAGIC, _ops._SEAL_HEADER.size, maj, mnr, 0, 0, total)
    plain = _ops._load_from_bytes(seal.Plaintext(), session.context, blob + members)
    z = np.asarray(session.encoder.decode_complex(plain))
    if not np.allclose(z, np.tile(z[:period], len(z) // period), atol=1e-9) or not np.allclose(
        z[:period], analytic, atol=1e-9
    ):
        raise CkksInputError(f"SEAL's slots of X^{stride} are not the expected roots of unity")
    return z[:period]


def periodic_coefficients(
    cal_points: NDArray[np.complex128], z: NDArray[Any], scale: float
) -> NDArray[np.float64]:
    """Integer coefficients ``round(a_m D)`` of ``Y^m`` for period-``P`` slot values ``z [..., P]``
    (module docstring; rounded half away from zero like SEAL's encoder). Returns ``[..., 2P]``."""
    period = cal_points.shape[0]
    m = np.arange(2 * period)
    basis = np.conj(cal_points)[:, None] ** m[None, :]  # [P, 2P]
    a = np.real(np.asarray(z, dtype=np.complex128) @ basis) / period
    return _ops._round_half_away(a * scale)


# --------------------------------------------------------------------------- server side
#: Bytes of float64 limb products per chunk of outputs: the chunk's matrix product, its
#: recombination and its copy into SEAL order stay in the CPU's last-level cache.
_CHUNK_BYTES = 4 << 20


@dataclass(frozen=True)
class _PrimeWeights:
    """One prime's weights, limb-split, per chunk of outputs: ``a_chunks[j] [2P, nw*ch_j,
    nx*G]`` (the NTT classes in the batch order of :func:`_batch_order`)."""

    q: int
    plan: Any  # ckks_ops._LimbPlan
    a_chunks: tuple[NDArray[np.float64], ...]
    bias: NDArray[np.uint64] | None  # [2P (batch order), kH/k groups]: the d = 0 bias


@dataclass(frozen=True)
class _Prepared:
    """Weights of one projection at one level, per prime (see :func:`_prepare`)."""

    primes: tuple[_PrimeWeights, ...]
    n_out: int  # k * ceil(d_out / k) partials per block
    chunk: int  # outputs per chunk


def _plan_for(q_bits: int, inner: int) -> Any:
    """Limb plan of the interleaved kernel: exact (``nx inner 2^(bx+bw) <= 2^53``) with the
    least work per output residue, ``nx nw inner`` limb multiply-adds plus about 30 per output
    limb (the modular recombination, which dominates when ``inner = d_in / k`` is small)."""
    best, best_cost = None, math.inf
    for nx in range(1, 16):
        bx = math.ceil((q_bits - 1) / nx)
        for nw in range(1, 12):
            bw = math.ceil((q_bits - 1) / nw)
            if nx * inner * 2.0 ** (bx + bw) > 2.0**53:
                continue
            cost = nx * nw * inner + 30 * nw
            if cost < best_cost:
                best, best_cost = _ops._LimbPlan(nx, bx, nw, bw), cost
    if best is None:
        raise CkksInputError(f"{inner} inputs per class are too many for an exact float64 kernel")
    return best


def _batch_order(cal: _Calibration, p: int) -> NDArray[np.intp]:
    """The class at each batch position of prime ``p``'s kernel: in SEAL's order of the NTT
    points (class runs left to right) when every class is a contiguous run, so that inputs and
    outputs need no gather; else the classes in order (a permutation of the points then)."""
    blk = cal.blocks[p]
    n_cls = 2 * cal.period
    return np.arange(n_cls) if blk is None else np.argsort(blk)


def _stack_limbs(vals: NDArray[np.uint64], q: int, plan: Any) -> NDArray[np.float64]:
    """``vals [C, n_out, G]`` in ``[0, q)`` -> ``A [C, nw*n_out, nx*G]`` (X-limb shifts folded
    in, W-limbs stacked by rows), as :func:`ckks_ops._weight_limbs` does for one matrix."""
    n_cls, n_out, g = vals.shape
    a_mat = np.empty((n_cls, plan.nw * n_out, plan.nx * g), dtype=np.float64)
    for a in range(plan.nx):
        wa = _ops._centre(_ops._mulpow2_mod(vals, a * plan.bx, q), q)
        for c, limb in enumerate(_ops._split_limbs(wa, plan.nw, plan.bw)):
            a_mat[:, c * n_out : (c + 1) * n_out, a * g : (a + 1) * g] = limb
    return a_mat


_PREP_LOCK = threading.Lock()
_PREP_CACHE: OrderedDict[tuple[Any, ...], _Prepared] = OrderedDict()
_PREP_CACHE_SIZE = 64


def _weight_slots(w: NDArray[np.float64], k: int, period: int) -> NDArray[np.float64]:
    """Slot values ``[G, H, k(d), P]``: ``W[g k + c, h k + (c + d) mod k]``, period ``P``."""
    d_in, d_out = w.shape
    groups_in, groups_out = math.ceil(d_in / k), math.ceil(d_out / k)
    wp = np.zeros((groups_in * k, groups_out * k))
    wp[:d_in, :d_out] = w
    w4 = wp.reshape(groups_in, k, groups_out, k)  # [g, c, h, c']
    c = np.arange(k)
    d = np.arange(k)
    # z[g, h, d, c] = w4[g, c, h, (c + d) % k]
    z = w4[:, c[None, :], :, (c[None, :] + d[:, None]) % k]  # [d, c, g, h]
    z = np.transpose(z, (2, 3, 0, 1))
    return np.tile(z, (1, 1, 1, period // k)) if period > k else z


def _chunk_size(n_poly: int, nw: int, n_out: int) -> int:
    """Outputs per chunk: ``nw`` limb rows of ``2 N`` float64 products each fill
    :data:`_CHUNK_BYTES` (at least one output, at most all)."""
    return max(1, min(n_out, _CHUNK_BYTES // (8 * nw * 2 * n_poly)))


def _prepare(
    session: Any,
    parms_id: tuple[int, ...],
    w: NDArray[np.float64],
    bias: NDArray[np.float64] | None,
    k: int,
    in_scale: float,
) -> _Prepared:
    key = (
        session.params,
        parms_id,
        k,
        in_scale,
        hashlib.sha1(w.tobytes()).hexdigest(),
        w.shape,
        None if bias is None else hashlib.sha1(bias.tobytes()).hexdigest(),
    )
    with _PREP_LOCK:
        if key in _PREP_CACHE:
            _PREP_CACHE.move_to_end(key)
            return _PREP_CACHE[key]
    period = max(k, 2)
    cal = _calibration(session, parms_id, period)
    moduli = session.moduli(parms_id)
    w_scale = session.scale
    total_bits = sum(q.bit_length() for q in moduli)
    coef_w = periodic_coefficients(cal.slot_points, _weight_slots(w, k, period), w_scale)
    big = float(np.max(np.abs(coef_w))) if coef_w.size else 0.0
    if big > 0 and math.log2(big) + 2 >= total_bits:
        raise CkksInputError(
            f"weight too large for {session.params.name}: its plaintext needs "
            f"{math.log2(big):.0f} bits, the level has {total_bits}"
        )
    groups_in, groups_out = coef_w.shape[0], coef_w.shape[1]
    n_out = groups_out * k
    # [G, H, k, 2P] -> [2P(m), H*k, G]
    coef = np.transpose(coef_w, (3, 1, 2, 0)).reshape(2 * period, n_out * groups_in)
    coef_b = None
    if bias is not None:
        bp = np.zeros(n_out)
        bp[: bias.shape[0]] = bias
        zb = (1.0 + 1.0j) * bp.reshape(groups_out, k)
        if period > k:
            zb = np.tile(zb, (1, period // k))
        coef_b = periodic_coefficients(cal.slot_points, zb, in_scale * w_scale)  # [H, 2P]
    plans = [_plan_for(q.bit_length(), groups_in) for q in moduli]
    chunk = _chunk_size(session.params.poly_modulus_degree, max(p.nw for p in plans), n_out)
    primes = []
    for p, q in enumerate(moduli):
        order = _batch_order(cal, p)
        vander = cal.vanders[p][order]
        vals = _ops._modmatmul(vander, _ops._int_mod(coef, q), q)  # [2P(batch), ...]
        vals = vals.reshape(2 * period, n_out, groups_in)
        a_chunks = tuple(
            _stack_limbs(vals[:, lo : lo + chunk], q, plans[p]) for lo in range(0, n_out, chunk)
        )
        bias_vals = None
        if coef_b is not None:
            bias_vals = _ops._modmatmul(vander, _ops._int_mod(coef_b.T, q), q)  # [2P, H]
        primes.append(_PrimeWeights(q, plans[p], a_chunks, bias_vals))
    prep = _Prepared(tuple(primes), n_out, chunk)
    with _PREP_LOCK:
        _PREP_CACHE[key] = prep
        while len(_PREP_CACHE) > _PREP_CACHE_SIZE:
            _PREP_CACHE.popitem(last=False)
    return prep


def _recombine2(s: NDArray[np.float64], n_out: int, bw: int, q: int) -> NDArray[np.uint64]:
    """``(s1 2^bw + s0) mod q`` in ``[0, q)`` with ``s0 = s[:, :n_out]``, ``s1 = s[:, n_out:]``
    (exact integer floats, ``|s1|, |s0| <= 2^53``); returns ``[C, n_out, M]``.

    The quotient ``floor((s1 2^bw + s0) / q)`` is estimated in float64 (relative error about
    2^-52, so off by at most one: ``|value| / q < 2^(55 + bw - bits(q))`` and ``bw < 50``); the
    remainder is computed modulo 2^64 in uint64 (exact: the true remainder lies in ``(-q, 2q)``)
    and corrected once either way. ``s`` is one cache-sized chunk (:data:`_CHUNK_BYTES`).
    """
    hi, lo = s[:, n_out:], s[:, :n_out]
    qhat = hi * float(2**bw)
    qhat += lo
    qhat *= 1.0 / q
    np.floor(qhat, out=qhat)
    rem = hi.astype(np.int64).view(np.uint64)
    rem <<= np.uint64(bw)
    rem += lo.astype(np.int64).view(np.uint64)
    rem -= qhat.astype(np.int64).view(np.uint64) * np.uint64(q)
    v = rem.view(np.int64)
    np.add(v, np.int64(q), out=v, where=v < 0)
    np.subtract(v, np.int64(q), out=v, where=v >= np.int64(q))
    return rem


def _reduce_limbs(s: NDArray[np.float64], n_out: int, plan: Any, q: int) -> NDArray[np.uint64]:
    """The residues ``[C, n_out, M]`` of the limb products ``s [C, nw*n_out, M]``:
    ``sum_c 2^(c bw) s_c mod q``."""
    if plan.nw == 1:
        return _ops._reduce_exact_float(s, q).view(np.uint64)
    if plan.nw == 2:
        return _recombine2(s, n_out, plan.bw, q)
    acc = _ops._reduce_exact_float(s[:, (plan.nw - 1) * n_out :], q).view(np.uint64)
    for c in range(plan.nw - 2, -1, -1):
        r = _ops._reduce_exact_float(s[:, c * n_out : (c + 1) * n_out], q)
        t = _ops._mulpow2_mod(acc, plan.bw, q).view(np.int64) + r
        acc = np.where(t >= q, t - np.int64(q), t).view(np.uint64)
    return acc


def _input_limbs(
    raws: Sequence[RawCiphertext], p: int, q: int, plan: Any, cal: _Calibration
) -> NDArray[np.float64]:
    """The inputs' residues of prime ``p`` in batch order (:func:`_batch_order`), centred and
    split into X-limbs: ``B [C, nx*G, 2W]``."""
    groups = len(raws)
    n_cls = 2 * cal.period
    xk = np.stack([r.data[:, p, :] for r in raws])  # [G, 2, N]
    if np.any(xk >= np.uint64(q)):
        raise CkksInputError(f"input residues exceed prime {p} of the level")
    if cal.blocks[p] is None:
        xk = xk[:, :, cal.perms[p]]
    xs = xk.reshape(groups, 2, n_cls, -1)  # [G, 2, C, W]
    xc = _ops._centre(np.transpose(xs, (2, 0, 1, 3)).reshape(n_cls, groups, -1), q)
    b_mat = np.empty((n_cls, plan.nx * groups, xc.shape[2]), dtype=np.float64)
    for a, limb in enumerate(_ops._split_limbs(xc, plan.nx, plan.bx)):
        b_mat[:, a * groups : (a + 1) * groups] = limb
    return b_mat


def _mac_chunks(
    session: Any,
    raws: Sequence[RawCiphertext],
    w: NDArray[np.float64],
    bias: NDArray[np.float64] | None,
    k: int,
) -> Iterator[list[RawCiphertext]]:
    """The partials ``Z_{h,d}`` of one block before rescale, ``h k + d`` order, one chunk of
    outputs at a time (module docstring): per prime and NTT class ``Z = V X mod q``, one
    batched float64 matrix product over the classes and the limb recombination, then the
    residues copied into SEAL's order of the NTT points. Each chunk's arrays are its own."""
    first = raws[0]
    _ops._block_moduli(session, raws)
    _, n_primes, n_poly = first.data.shape
    prep = _prepare(session, first.parms_id, w, bias, k, first.scale)
    period = max(k, 2)
    n_cls, width = 2 * period, n_poly // (2 * period)
    cal = _calibration(session, first.parms_id, period)
    b_mats = [_input_limbs(raws, p, pw.q, pw.plan, cal) for p, pw in enumerate(prep.primes)]
    out_scale = first.scale * session.scale
    for j, lo in enumerate(range(0, prep.n_out, prep.chunk)):
        ch = min(prep.chunk, prep.n_out - lo)
        y = np.empty((ch, 2, n_primes, n_poly), dtype=np.uint64)
        for p, pw in enumerate(prep.primes):
            s = np.matmul(pw.a_chunks[j], b_mats[p])  # [C, nw*ch, 2W], exact integers
            ys = _reduce_limbs(s, ch, pw.plan, pw.q).reshape(n_cls, ch, 2, width)
            if pw.bias is not None:
                rows = np.arange(-lo % k, ch, k)  # the d = 0 partials of the chunk
                t = ys[:, rows, 0] + pw.bias[:, (lo + rows) // k, None]
                ys[:, rows, 0] = np.where(t >= np.uint64(pw.q), t - np.uint64(pw.q), t)
            dest = y[:, :, p, :]
            if cal.blocks[p] is not None:  # batch order is SEAL's order: one strided copy
                dest.reshape(ch, 2, n_cls, width)[...] = np.transpose(ys, (1, 2, 0, 3))
            else:
                dest[...] = np.transpose(ys, (1, 2, 0, 3)).reshape(ch, 2, n_poly)[
                    :, :, cal.inv_perms[p]
                ]
        yield _ops._products_like(first, y, out_scale)


def _mac_block(
    session: Any,
    raws: Sequence[RawCiphertext],
    w: NDArray[np.float64],
    bias: NDArray[np.float64] | None,
    k: int,
) -> list[RawCiphertext]:
    """All partials of one block before rescale (:func:`_mac_chunks`), ``h k + d`` order."""
    return [r for chunk in _mac_chunks(session, raws, w, bias, k) for r in chunk]


def project_interleaved(
    pub: PublicCkks | CkksKeys,
    enc: EncryptedInterleaved,
    weight: Any,
    bias: Any = None,
    *,
    timings: ProjectTimings | None = None,
    rescale: str = "server",
) -> EncryptedInterleaved:
    """Server: ``Y = X W + b`` on interleaved ciphertexts; returns the partials (module
    docstring): per block ``ceil(d_out/k) k`` ciphertexts, each one rescale (none with
    ``rescale="device"``, :data:`ckks_ops.RESCALE_AT`), no rotation."""
    if not isinstance(pub, _ops._Session):
        raise CkksInputError("project needs a PublicCkks (or CkksKeys) context")
    at_server = _ops.check_rescale(rescale)
    if enc.layout.partials:
        raise CkksInputError("partial sums cannot be projected again: decrypt them first")
    w, b = _ops._weight_and_bias(weight, bias, enc.n_features)
    enc.check(pub.slots)
    lay = enc.layout

    def mac(raws: list[RawCiphertext]) -> Iterator[list[RawCiphertext]]:
        # Many small matrix products: one BLAS thread each (OpenBLAS' thread hand-off costs
        # more than it saves there; measured 15x slower with TenSEAL loaded).
        with limit_blas_threads(1):
            yield from _mac_chunks(pub, raws, w, b, lay.k)

    blocks = _ops._project_blocks(pub, enc.blocks, mac, timings, at_server)
    out_layout = dataclasses.replace(lay, n_features=w.shape[1], partials=True)
    return EncryptedInterleaved(out_layout, blocks)


# --------------------------------------------------------------------------- serialization
def serialize_interleaved(enc: EncryptedInterleaved, prefix: bytes = b"") -> bytearray:
    """Bytes on the wire: ``b"PTILV1\\n"``, u32 JSON length, JSON header (layout, per-ciphertext
    byte lengths), then each ciphertext's SEAL bytes, block-major; after ``prefix``
    (:func:`ckks_ops._serialize_blocks`)."""
    return _ops._serialize_blocks(_MAGIC, {"layout": enc.layout.to_dict()}, enc, prefix)


def _merge_heads(heads: list[dict[str, Any]]) -> dict[str, Any]:
    """Heads of interleaved outputs over consecutive column ranges (whole groups of ``k``
    but the last), merged as :func:`packing.concat_outputs` merges layouts."""
    lays = [h["layout"] for h in heads]
    first = lays[0]
    for a, b in itertools.pairwise(lays):
        same = all(a[f] == b[f] for f in ("n_tokens", "slots", "k", "partials"))
        if not same or int(a["n_features"]) % int(a["k"]):
            raise CkksInputError("interleaved outputs join only on whole groups of k")
    return {"layout": {**first, "n_features": sum(int(la["n_features"]) for la in lays)}}


def join_interleaved(
    parts: Sequence[bytes | bytearray | memoryview], prefix: bytes = b""
) -> bytearray:
    """:func:`serialize_interleaved` bytes of one projection's outputs over consecutive
    column ranges, joined (the bytes of the whole; the server merges its workers' parts),
    after ``prefix``."""
    return _ops._join_blocks(_MAGIC, parts, _merge_heads, "interleaved", prefix)


def is_interleaved(data: bytes | bytearray | memoryview) -> bool:
    return bytes(data[: len(_MAGIC)]) == _MAGIC


def deserialize_interleaved(
    ctx: PublicCkks | CkksKeys, data: bytes | bytearray | memoryview
) -> EncryptedInterleaved:
    """Inverse of :func:`serialize_interleaved`; checks the layout against ``ctx``."""
    head, blocks = _ops._parse_blocks(_MAGIC, data, "interleaved")
    try:
        lay_d = head["layout"]
        layout = InterleavedLayout(
            n_tokens=int(lay_d["n_tokens"]),
            n_features=int(lay_d["n_features"]),
            slots=int(lay_d["slots"]),
            k=int(lay_d["k"]),
            partials=bool(lay_d["partials"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CkksInputError(f"interleaved bytes: bad header ({exc})") from exc
    enc = EncryptedInterleaved(layout, blocks)
    enc.check(ctx.slots)
    return enc
