"""Real CKKS operations (Microsoft SEAL through ``tenseal.sealapi``) for the split protocol.

Parties (spec section 1): the device holds a :class:`CkksKeys` (secret key); the server holds a
:class:`PublicCkks` built from :meth:`CkksKeys.public_bytes` (encryption parameters and public
key, never the secret key, no Galois keys). Uploaded ciphertexts travel as SEAL's own
serialization (seeded, zstd), downloaded products in a compact residue format
(:meth:`RawCiphertext.to_compact`: each residue in the bytes its prime needs, 5 for a 40-bit
prime, where SEAL's zstd keeps 6, in byte planes); :class:`SealCiphertext` wraps those exact
bytes, so every byte count is what is shipped.

Column (feature-major) packing, spec section 1
-----------------------------------------------
An activation matrix ``X [T, d]`` is cut into ``ceil(T / (N/2))`` token blocks of ``N/2`` rows.
In block ``b``, ciphertext ``j`` holds feature ``j`` of tokens ``b*N/2 .. (b+1)*N/2 - 1`` in
its slots (zero-padded). A dense projection ``Y = X W + b`` (``W [d_in, d_out]``) is then, per
block, ``d_out`` linear combinations of the ``d_in`` input ciphertexts with plaintext scalars:

    ct(Y_j) = sum_i W_ij * ct(X_i) + b_j,      j = 0 .. d_out - 1,

with no rotation and no ciphertext x ciphertext product (depth one, one rescale per output).

The kernel: an exact modular matrix product
-------------------------------------------
A fresh CKKS ciphertext is a pair of polynomials ``(c0, c1)`` kept by SEAL in RNS and NTT form:
for each prime ``q_k`` of the current level, ``N`` residues per polynomial. SEAL encodes a real
constant ``c`` at scale ``D`` as the constant polynomial ``round(c D)`` (rounded half away from
zero), whose NTT is the same residue ``round(c D) mod q_k`` at every point; so
``Evaluator.multiply_plain`` by an encoded constant multiplies every residue by that number
(Cheon, Kim, Kim, Song, "Homomorphic encryption for arithmetic of approximate numbers",
ASIACRYPT 2017; SEAL 4 ``CKKSEncoder::encode(double)``). Hence, with
``W'_ij = round(W_ij * 2^scale_bits)``, all ``d_in * d_out`` multiply-accumulates of one
block are the modular matrix product, independently for every prime ``q_k``:

    Y[j, p, k, :] = sum_i (W'_ij mod q_k) * X[i, p, k, :]   (mod q_k),   p in {c0, c1},

which this module evaluates with float64 BLAS, exactly: residues are centred to
``(-q/2, q/2]`` and cut into ``n_x`` limbs of ``b_x`` bits (``X = sum_a 2^(a b_x) X_a``); the
shifts are folded into the weights (``W^(a) = W' 2^(a b_x) mod q``), which are cut into
``n_w`` limbs of ``b_w`` bits, so ``Y = sum_c 2^(c b_w) S_c`` with
``S_c = sum_a W^(a)_c X_a`` one real matrix product whose every partial sum is an integer of
magnitude ``<= n_x d_in 2^(b_x + b_w) <= 2^53`` (exact in float64, whatever the summation
order). ``S_c`` is reduced mod ``q`` and the limbs recombined by Horner's rule; a modular
product by ``2^e`` (``e <= 48``) uses a float64 quotient estimate, exact to +-1, corrected in
int64. The result is bit-for-bit what SEAL's ``multiply_plain`` + ``add_inplace`` produce
(a test checks this), at BLAS speed. The product ciphertext has scale ``D_x * 2^scale_bits``;
the bias ``b_j`` is added as the constant ``round(b_j D_x 2^scale_bits) mod q_k`` on ``c0``
(exactly SEAL's ``add_plain`` of an encoded constant at that scale); finally SEAL's
``Evaluator.rescale_to_next_inplace`` divides by the last prime of the level.

Device-side encryption is SEAL's symmetric (secret-key) encryption by default: its serialized
form replaces ``c1`` by the PRNG seed that generates it, halving the upload (SEAL 3.6+). The
server expands the seed when it loads the ciphertext. ``seeded=False`` uses public-key
encryption (full-size ciphertexts).
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import itertools
import json
import math
import os
import shutil
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from privtuner.costmodels.catalogue import validate_params
from privtuner.costmodels.types import CkksParams
from privtuner.errors import ParameterError, PrivtunerError, require
from privtuner.fhe_profiling import seal_memory

__all__ = [
    "CkksInputError",
    "CkksKeys",
    "CkksOverflowError",
    "EncryptedColumns",
    "PublicCkks",
    "RawCiphertext",
    "SealCiphertext",
    "check_headroom",
    "decrypt_columns",
    "deserialize_columns",
    "encrypt_columns",
    "load_public_context",
    "make_context",
    "naive_project",
    "project",
    "projection_bound",
    "serialize_columns",
]

# SEAL serialization constants (seal/serialization.h): magic 0xA15E, 16-byte header.
_SEAL_MAGIC = 0xA15E
_SEAL_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compr, reserved, size
_CT_MEMBERS = struct.Struct("<4QBQQQdQ")  # parms_id, is_ntt, size, N, L, scale, correction
_COMPR_NONE, _COMPR_ZLIB, _COMPR_ZSTD = 0, 1, 2
#: Largest shift of one float-assisted modular doubling step (see :func:`_mulpow2_mod`).
_MAX_POW2_STEP = 48
#: Column chunk of the kernel: keeps the limb matrix of one chunk near 32 MiB.
_KERNEL_CHUNK_BYTES = 32 * 2**20
#: Ciphertexts decoded at a time by :meth:`CkksKeys.decrypt_many` (their integers, a few MiB,
#: stay in the cache through the CRT's passes and the FFT: ~30 % faster than all at once).
_DECODE_CHUNK = 16

_PUBLIC_MAGIC = b"PTCKKSPUB1\n"
#: compact residues: magic, version, size, L, log2 N, NTT flag, parms_id, scale
_COMPACT_MAGIC = b"PTRC"
#: version 2: each prime's residues in byte planes (:func:`_byte_planes`)
_COMPACT_VERSION = 2
_COMPACT_HEAD = struct.Struct("<4sBBBBB4Qd")
_COLUMNS_MAGIC = b"PTCOLS1\n"


class CkksInputError(PrivtunerError, ValueError):
    """A bad argument to a CKKS operation (shape, dtype, non-finite value, wrong party)."""


class CkksOverflowError(PrivtunerError, ArithmeticError):
    """A decrypted value reached the headroom of its level: the result wrapped modulo the
    primes left (q0 after a projection's rescale) and is wrong (see :func:`check_headroom`)."""


# --------------------------------------------------------------------------- SEAL plumbing
def _sealapi() -> Any:
    return require("tenseal.sealapi", purpose="CKKS operations")


class _Scratch:
    """Per-process scratch files: ``sealapi`` objects save and load only through file paths.

    Files live in ``/dev/shm`` (RAM) when available, in a folder of this process; one file per
    thread, rewritten per call. A forked child must not share its parent's files (two
    processes rewriting one file read each other's ciphertexts): :meth:`reset` runs in every
    forked child (``os.register_at_fork``) and :meth:`path` also checks the pid, so a child
    makes its own folder. Only the process that made a folder removes it at exit (a forked
    child inherits the parent's ``atexit`` handlers); a new folder's maker first removes the
    folders of processes that died without that (:func:`_remove_stale_folders`).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the folder, lock and thread paths (a fresh process's state)."""
        self._dir: str | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._ids = itertools.count()

    def path(self) -> str:
        if self._pid != os.getpid():  # forked without the at-fork hook (e.g. os.fork in C)
            self.reset()
        p = getattr(self._local, "path", None)
        if p is not None and self._dir is not None and os.path.isdir(self._dir):
            return str(p)
        with self._lock:
            if self._dir is None or not os.path.isdir(self._dir):
                base = (
                    "/dev/shm"
                    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)
                    else None
                )
                _remove_stale_folders(base or tempfile.gettempdir())
                self._dir = tempfile.mkdtemp(prefix=f"privtuner-seal-{self._pid}-", dir=base)
                atexit.register(_remove_own_folder, self._dir, self._pid)
            p = os.path.join(self._dir, f"{self._pid}-{next(self._ids)}.bin")
        self._local.path = p
        return p


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, another user's
        return True
    return True


def _remove_stale_folders(base: str) -> None:
    """Remove this user's scratch folders (``privtuner-seal-PID-*``, or older ones named by
    their files ``PID-N.bin``) whose processes are all gone: a process killed by a signal
    never runs its ``atexit`` removal, and ``/dev/shm`` is memory."""
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    uid = os.getuid()
    for e in entries:
        if not e.name.startswith("privtuner-seal-"):
            continue
        try:
            if not e.is_dir(follow_symlinks=False) or e.stat(follow_symlinks=False).st_uid != uid:
                continue
            head = e.name[len("privtuner-seal-") :].split("-", 1)[0]
            pids = {int(head)} if head.isdigit() else set()
            pids |= {int(f.split("-", 1)[0]) for f in os.listdir(e.path) if f[:1].isdigit()}
        except (OSError, ValueError):
            continue
        if pids and not any(_pid_alive(pid) for pid in pids):
            shutil.rmtree(e.path, ignore_errors=True)


def _remove_own_folder(path: str, owner_pid: int) -> None:
    """``atexit``: remove ``path`` if this process made it (not in a forked child)."""
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)


_SCRATCH = _Scratch()
os.register_at_fork(after_in_child=_SCRATCH.reset)


def _save_bytes(obj: Any) -> bytes:
    """SEAL's serialization of ``obj`` (default compression), as bytes."""
    path = _SCRATCH.path()
    obj.save(path)
    with open(path, "rb") as fh:
        return fh.read()


def _raw_of(ct: Any) -> RawCiphertext | None:
    """A live SEAL ciphertext's fields and residues (a copy): in memory where
    :mod:`seal_memory` is verified, else through SEAL's serialization (``None`` if seeded)."""
    view = seal_memory.ciphertext_residues(ct)
    if view is None:
        return RawCiphertext.parse(_save_bytes(ct))
    return RawCiphertext(
        parms_id=tuple(int(v) for v in ct.parms_id()),  # type: ignore[arg-type]
        is_ntt_form=bool(ct.is_ntt_form()),
        scale=float(ct.scale),
        correction_factor=1,
        data=view.copy(),
    )


def _file_residues(ct: Any) -> NDArray[np.uint64] | None:
    """The residues of a SEAL ciphertext through SEAL's own file serialization (what
    :mod:`seal_memory` checks its in-memory view against)."""
    raw = RawCiphertext.parse(_save_bytes(ct))
    return None if raw is None else raw.data


def _load_from_bytes(obj: Any, context: Any, blob: bytes) -> Any:
    """``obj.load(context, blob)`` through a scratch file; SEAL validates the data."""
    path = _SCRATCH.path()
    with open(path, "wb") as fh:
        fh.write(blob)
    try:
        if context is None:
            obj.load(path)
        else:
            obj.load(context, path)
    except (ValueError, RuntimeError) as exc:
        raise CkksInputError(f"SEAL rejected serialized {type(obj).__name__}: {exc}") from exc
    return obj


class _Zstd:
    """Zstandard decompression through the copy SEAL links into TenSEAL's extension (ctypes)."""

    def __init__(self) -> None:
        self._lib: Any = None

    def _load(self) -> Any:
        if self._lib is None:
            mod: Any = require("_sealapi_cpp", purpose="reading SEAL ciphertexts")
            lib = ctypes.CDLL(str(mod.__file__))
            try:
                lib.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
                lib.ZSTD_getFrameContentSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
                lib.ZSTD_decompress.restype = ctypes.c_size_t
                lib.ZSTD_decompress.argtypes = [
                    ctypes.c_void_p,
                    ctypes.c_size_t,
                    ctypes.c_char_p,
                    ctypes.c_size_t,
                ]
                lib.ZSTD_isError.restype = ctypes.c_uint
                lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
            except AttributeError as exc:  # pragma: no cover - depends on the TenSEAL build
                raise PrivtunerError(
                    "this TenSEAL build does not export zstd; cannot read SEAL ciphertext bytes"
                ) from exc
            self._lib = lib
        return self._lib

    def decompress(self, data: bytes) -> bytes:
        lib = self._load()
        n = int(lib.ZSTD_getFrameContentSize(data, len(data)))
        if n >= 2**63:  # ZSTD_CONTENTSIZE_UNKNOWN / ERROR
            raise CkksInputError("corrupt ciphertext: zstd frame without a content size")
        out = ctypes.create_string_buffer(n)
        got = lib.ZSTD_decompress(out, n, data, len(data))
        if lib.ZSTD_isError(got) or got != n:
            raise CkksInputError("corrupt ciphertext: zstd decompression failed")
        return out.raw


_ZSTD = _Zstd()


def _unwrap_seal(blob: bytes) -> tuple[bytes, tuple[int, ...]]:
    """Strip SEAL's outer header and decompress: (members bytes, header fields)."""
    if len(blob) < _SEAL_HEADER.size:
        raise CkksInputError(f"not a SEAL object: {len(blob)} bytes")
    hdr = _SEAL_HEADER.unpack_from(blob)
    magic, hsize, _maj, _min, compr, _res, size = hdr
    if magic != _SEAL_MAGIC or hsize != _SEAL_HEADER.size or size != len(blob):
        raise CkksInputError("not a SEAL object: bad header (magic, header size or length)")
    body = blob[hsize:]
    if compr == _COMPR_NONE:
        return body, hdr
    if compr == _COMPR_ZSTD:
        return _ZSTD.decompress(body), hdr
    if compr == _COMPR_ZLIB:
        return zlib.decompress(body), hdr
    raise CkksInputError(f"SEAL object with unknown compression mode {compr}")


_SEAL_VERSION: list[tuple[int, int]] = []


def _seal_version() -> tuple[int, int]:
    """(major, minor) of the linked SEAL, as its serialization headers carry it."""
    if not _SEAL_VERSION:
        hdr = _SEAL_HEADER.unpack_from(_save_bytes(_sealapi().Ciphertext()))
        _SEAL_VERSION.append((int(hdr[2]), int(hdr[3])))
    return _SEAL_VERSION[0]


@dataclass(frozen=True, eq=False)
class RawCiphertext:
    """A SEAL ciphertext's fields and its RNS/NTT residues ``data [size, L, N]`` (uint64)."""

    parms_id: tuple[int, int, int, int]
    is_ntt_form: bool
    scale: float
    correction_factor: int
    data: NDArray[np.uint64]
    header_version: tuple[int, int] = field(default_factory=_seal_version)

    @property
    def size(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_primes(self) -> int:
        return int(self.data.shape[1])

    @property
    def poly_modulus_degree(self) -> int:
        return int(self.data.shape[2])

    @staticmethod
    def parse(blob: bytes) -> RawCiphertext | None:
        """Parse SEAL's ``Ciphertext::save`` bytes (or :meth:`to_compact` bytes); ``None`` for
        a seeded ciphertext (SEAL must expand its ``c1``)."""
        if blob[: len(_COMPACT_MAGIC)] == _COMPACT_MAGIC:
            return RawCiphertext.from_compact(blob)
        members, hdr = _unwrap_seal(blob)
        if len(members) < _CT_MEMBERS.size + _SEAL_HEADER.size + 8:
            raise CkksInputError("corrupt ciphertext: too short")
        p0, p1, p2, p3, ntt, size, n, n_primes, scale, corr = _CT_MEMBERS.unpack_from(members)
        off = _CT_MEMBERS.size
        inner = _SEAL_HEADER.unpack_from(members, off)
        if inner[0] != _SEAL_MAGIC or inner[4] != _COMPR_NONE:
            raise CkksInputError("corrupt ciphertext: bad inner data header")
        off += _SEAL_HEADER.size
        (count,) = struct.unpack_from("<Q", members, off)
        off += 8
        full = size * n * n_primes
        if count != full:
            if size == 2 and count == n * n_primes:
                return None  # seeded: c1 is a PRNG seed, SEAL must expand it
            raise CkksInputError(f"corrupt ciphertext: {count} residues, expected {full}")
        if len(members) < off + 8 * full:
            raise CkksInputError("corrupt ciphertext: truncated residue data")
        data = np.frombuffer(members, dtype="<u8", count=full, offset=off).astype(np.uint64)
        return RawCiphertext(
            parms_id=(p0, p1, p2, p3),
            is_ntt_form=bool(ntt),
            scale=float(scale),
            correction_factor=int(corr),
            data=data.reshape(size, n_primes, n),
            header_version=(int(hdr[2]), int(hdr[3])),
        )

    def _compact_head(self, moduli: Sequence[int]) -> bytes:
        """The header and residue widths of :meth:`to_compact` bytes."""
        size, n_primes, n = self.data.shape
        if len(moduli) != n_primes or n & (n - 1) or not 0 < size < 256:
            raise CkksInputError("to_compact: moduli or shape do not match the ciphertext")
        head = _COMPACT_HEAD.pack(
            _COMPACT_MAGIC,
            _COMPACT_VERSION,
            size,
            n_primes,
            n.bit_length() - 1,
            int(self.is_ntt_form),
            *self.parms_id,
            self.scale,
        )
        return head + bytes(_residue_bytes(q) for q in moduli)

    def compact_nbytes(self, moduli: Sequence[int]) -> int:
        """Length of :meth:`to_compact` bytes [bytes], without making them."""
        size, n_primes, n = self.data.shape
        return _COMPACT_HEAD.size + n_primes + size * n * sum(_residue_bytes(q) for q in moduli)

    def to_compact(self, moduli: Sequence[int]) -> bytes:
        """Compact wire bytes: a 49-byte header and the residue widths, then per prime ``q``
        of the level (``moduli``) its ``size x N`` residues in ``ceil(bits(q) / 8)`` bytes
        each, as little-endian byte planes (:func:`_byte_planes`: a 40-bit prime's residues
        as their low 4 bytes, then their fifth bytes; uniform residues leave a general
        compressor nothing more to take)."""
        out = bytearray(self.compact_nbytes(moduli))
        self.write_compact(moduli, out, 0)
        return bytes(out)

    def write_compact(self, moduli: Sequence[int], out: bytearray | memoryview, off: int) -> int:
        """:meth:`to_compact` bytes written into ``out`` at ``off`` (each byte plane one
        vectorized narrowing copy, no intermediate object); returns the offset after them."""
        head = self._compact_head(moduli)
        size, n_primes, n = self.data.shape
        end = off + self.compact_nbytes(moduli)
        if end > len(out):
            raise CkksInputError("write_compact: the buffer is too small")
        out[off : off + len(head)] = head
        off += len(head)
        for p in range(n_primes):
            res = self.data[:, p, :]
            for shift, width in _byte_planes(head[-n_primes + p]):
                dst = np.ndarray((size, n), dtype=_PLANE_DTYPES[width], buffer=out, offset=off)
                np.copyto(dst, res >> np.uint64(shift) if shift else res, casting="unsafe")
                off += size * n * width
        assert off == end
        return off

    @staticmethod
    def from_compact(blob: bytes | bytearray | memoryview) -> RawCiphertext:
        """Inverse of :meth:`to_compact` (residues are checked against their primes where
        they are used)."""
        (size, n_primes, n, ntt, parms, scale), widths, off = _compact_layout(blob)
        data = np.empty((size, n_primes, n), dtype=np.uint64)
        for p, w in enumerate(widths):
            res = data[:, p, :]
            for i, (shift, width) in enumerate(_byte_planes(w)):
                plane = np.ndarray((size, n), dtype=_PLANE_DTYPES[width], buffer=blob, offset=off)
                if i == 0:
                    res[...] = plane
                else:
                    res |= plane.astype(np.uint64) << np.uint64(shift)
                off += size * n * width
        return RawCiphertext(
            parms_id=parms,
            is_ntt_form=bool(ntt),
            scale=float(scale),
            correction_factor=1,
            data=data,
        )

    def to_bytes(self) -> bytes:
        """SEAL ``Ciphertext::save`` bytes, uncompressed (``SEALContext`` loads validate them)."""
        size, n_primes, n = self.data.shape
        maj, mnr = self.header_version
        payload = np.ascontiguousarray(self.data, dtype="<u8").tobytes()
        inner_len = _SEAL_HEADER.size + 8 + len(payload)
        members = b"".join(
            (
                _CT_MEMBERS.pack(
                    *self.parms_id,
                    int(self.is_ntt_form),
                    size,
                    n,
                    n_primes,
                    self.scale,
                    self.correction_factor,
                ),
                _SEAL_HEADER.pack(_SEAL_MAGIC, _SEAL_HEADER.size, maj, mnr, 0, 0, inner_len),
                struct.pack("<Q", size * n_primes * n),
                payload,
            )
        )
        total = _SEAL_HEADER.size + len(members)
        return _SEAL_HEADER.pack(_SEAL_MAGIC, _SEAL_HEADER.size, maj, mnr, 0, 0, total) + members


def _compact_layout(
    blob: bytes | bytearray | memoryview,
) -> tuple[tuple[int, int, int, int, tuple[int, int, int, int], float], bytes, int]:
    """Header of :meth:`RawCiphertext.to_compact` bytes, checked against the blob's length:
    ``((size, L, N, ntt, parms_id, scale), residue widths, offset of the residues)``."""
    if len(blob) < _COMPACT_HEAD.size:
        raise CkksInputError("corrupt compact ciphertext: too short")
    magic, ver, size, n_primes, log_n, ntt, p0, p1, p2, p3, scale = _COMPACT_HEAD.unpack_from(blob)
    if (
        magic != _COMPACT_MAGIC
        or ver != _COMPACT_VERSION
        or size == 0
        or n_primes == 0
        or log_n > 17
    ):
        raise CkksInputError("corrupt compact ciphertext: bad header")
    n = 1 << log_n
    off = _COMPACT_HEAD.size
    widths = bytes(blob[off : off + n_primes])
    off += n_primes
    if len(widths) != n_primes or any(not 1 <= w <= 8 for w in widths):
        raise CkksInputError("corrupt compact ciphertext: bad residue widths")
    if len(blob) != off + size * n * sum(widths):
        raise CkksInputError("corrupt compact ciphertext: wrong length")
    return (size, n_primes, n, ntt, (p0, p1, p2, p3), scale), widths, off


def _residue_bytes(q: int) -> int:
    """Bytes per residue of prime ``q`` in :meth:`RawCiphertext.to_compact`."""
    return (int(q).bit_length() + 7) // 8


#: little-endian unsigned integers of 1, 2, 4 and 8 bytes: the byte planes' element types
_PLANE_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("u1"),
    2: np.dtype("<u2"),
    4: np.dtype("<u4"),
    8: np.dtype("<u8"),
}


def _byte_planes(width: int) -> tuple[tuple[int, int], ...]:
    """The byte planes of residues ``width`` bytes wide, as ``(bit shift, bytes)``, lowest
    first: 8 -> one plane of 8; 5 -> 4 + 1; 6 -> 4 + 2; 7 -> 4 + 2 + 1; 3 -> 2 + 1. Each
    plane holds bytes ``shift/8 ..`` of every residue, so writing or reading it is one
    vectorized cast (a residue's bytes side by side would be a strided copy of odd width)."""
    if not 1 <= width <= 8:
        raise CkksInputError(f"compact residues: width {width} bytes outside 1..8")
    if width == 8:
        return ((0, 8),)
    planes, done = [], 0
    for size in (4, 2, 1):
        if width - done >= size:
            planes.append((8 * done, size))
            done += size
    return tuple(planes)


class SealCiphertext:
    """One CKKS ciphertext as the bytes that cross the network: SEAL's own serialization, or
    :meth:`RawCiphertext.to_compact` for the server's products.

    ``nbytes`` is the wire size; :meth:`raw` parses (and caches) the residues for the kernel.
    A server product is held as its residues (:meth:`of_raw`) and written straight into the
    reply (:meth:`write_into`): its compact bytes are made once, where they are sent.
    """

    __slots__ = ("_blob", "_moduli", "_raw")

    def __init__(self, blob: bytes | bytearray | memoryview) -> None:
        self._blob: bytes | None = bytes(blob)
        self._raw: RawCiphertext | None = None
        self._moduli: tuple[int, ...] = ()

    @classmethod
    def of_raw(cls, raw: RawCiphertext, moduli: Sequence[int]) -> SealCiphertext:
        """The ciphertext ``raw`` (residues of the level of primes ``moduli``), whose wire
        bytes are its compact bytes (:meth:`RawCiphertext.to_compact`), made when needed."""
        ct = cls.__new__(cls)
        ct._blob, ct._raw, ct._moduli = None, raw, tuple(int(q) for q in moduli)
        return ct

    @property
    def blob(self) -> bytes:
        """The wire bytes (compact bytes of a product made on first use)."""
        if self._blob is None:
            assert self._raw is not None
            self._blob = self._raw.to_compact(self._moduli)
        return self._blob

    @property
    def nbytes(self) -> int:
        if self._blob is None:
            assert self._raw is not None
            return self._raw.compact_nbytes(self._moduli)
        return len(self._blob)

    def write_into(self, out: bytearray | memoryview, off: int) -> int:
        """The wire bytes written into ``out`` at ``off``; returns the offset after them."""
        if self._blob is None:
            assert self._raw is not None
            return self._raw.write_compact(self._moduli, out, off)
        end = off + len(self._blob)
        out[off:end] = self._blob
        return end

    def raw(self, session: _Session) -> RawCiphertext:
        """The residues; a seeded ciphertext is expanded by SEAL (load + save) first."""
        if self._raw is None:
            parsed = RawCiphertext.parse(self.blob)
            if parsed is None:
                parsed = _raw_of(session.load_ciphertext(self))
                if parsed is None:  # pragma: no cover - SEAL never saves a loaded ct seeded
                    raise CkksInputError("SEAL did not expand a seeded ciphertext")
            self._raw = parsed
        return self._raw

    def __repr__(self) -> str:
        return f"SealCiphertext({self.nbytes} bytes)"


# --------------------------------------------------------------------------- contexts
def _seal_context(parms: Any, params: CkksParams) -> Any:
    seal = _sealapi()
    ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
    if not ctx.parameters_set():
        raise ParameterError(
            f"{params.name}: SEAL rejects the parameters at 128-bit security "
            f"({ctx.parameters_error_name()}: {ctx.parameters_error_message()})"
        )
    return ctx


def _encryption_parameters(params: CkksParams) -> Any:
    seal = _sealapi()
    n = int(params.poly_modulus_degree)
    if n <= 0 or n & (n - 1):
        raise ParameterError(f"poly_modulus_degree must be a power of two (got {n})")
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(n)
    try:
        parms.set_coeff_modulus(seal.CoeffModulus.Create(n, list(params.coeff_mod_bit_sizes)))
    except (ValueError, RuntimeError) as exc:
        raise ParameterError(
            f"{params.name}: SEAL cannot build coefficient modulus "
            f"{list(params.coeff_mod_bit_sizes)} for N={n}: {exc}"
        ) from exc
    return parms


class _Session:
    """SEAL context, encoder and evaluator shared by both parties (no key material)."""

    params: CkksParams
    #: SEAL ``PublicKey`` (set by both subclasses; :func:`_rescale` encrypts zero with it)
    public_key: Any

    def __init__(self, params: CkksParams, context: Any) -> None:
        seal = _sealapi()
        self.params = params
        self.context = context
        self.encoder = seal.CKKSEncoder(context)
        self.evaluator = seal.Evaluator(context)
        self._moduli: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._tls = threading.local()

    @property
    def scale(self) -> float:
        """The encoding scale D = 2^scale_bits (inputs and the weight constants)."""
        return float(2.0**self.params.scale_bits)

    @property
    def slots(self) -> int:
        return int(self.encoder.slot_count())

    def moduli(self, parms_id: Sequence[int]) -> tuple[int, ...]:
        """Primes q_0 .. q_{L-1} of the level ``parms_id`` (raises if unknown to the context)."""
        key = tuple(int(v) for v in parms_id)
        if key not in self._moduli:
            cd = self.context.get_context_data(list(key))
            if cd is None:
                raise CkksInputError(
                    f"ciphertext parms_id {key[0]:#x}... does not belong to {self.params.name}"
                )
            self._moduli[key] = tuple(int(m.value()) for m in cd.parms().coeff_modulus())
        return self._moduli[key]

    def has_next_level(self, parms_id: Sequence[int]) -> bool:
        cd = self.context.get_context_data([int(v) for v in parms_id])
        return cd is not None and cd.next_context_data() is not None

    def load_ciphertext(self, ct: SealCiphertext) -> Any:
        """A new SEAL ciphertext from ``ct``'s bytes (SEAL validates them)."""
        seal = _sealapi()
        blob = ct.blob
        if blob[: len(_COMPACT_MAGIC)] == _COMPACT_MAGIC:
            raw = RawCiphertext.from_compact(blob)
            self.check_residues(raw)
            blob = raw.to_bytes()
        return _load_from_bytes(seal.Ciphertext(self.context), self.context, blob)

    def check_residues(self, raw: RawCiphertext) -> tuple[int, ...]:
        """The primes of ``raw``'s level, after checking its shape and that every residue is
        below its prime (what SEAL's load checks; the in-memory path skips SEAL's load)."""
        moduli = self.moduli(raw.parms_id)
        size, n_primes, n = raw.data.shape
        if n_primes != len(moduli) or n != self.params.poly_modulus_degree or size < 2:
            raise CkksInputError("ciphertext shape does not match its parameter level")
        if np.any(raw.data >= np.array(moduli, dtype=np.uint64)[None, :, None]):
            raise CkksInputError("ciphertext residues exceed the primes of their level")
        return moduli

    def seal_view(self, raw: RawCiphertext, *, checked: bool = True) -> Any:
        """A SEAL ciphertext holding ``raw`` (size 2, NTT form), for immediate use: with the
        in-memory path (:mod:`seal_memory`) it is this thread's scratch ciphertext of that
        level, overwritten by the next call; otherwise a fresh SEAL load. ``checked=False``
        skips :meth:`check_residues` for residues the caller itself reduced below their
        primes (SEAL's load, the fallback, checks them anyway)."""
        if checked:
            self.check_residues(raw)
        if raw.size == 2 and raw.is_ntt_form and seal_memory.available(self, _file_residues):
            ct = self.scratch_ciphertext(raw.parms_id, "view")
            view = seal_memory.ciphertext_residues(ct)
            if view is not None and view.shape == raw.data.shape:
                view[...] = raw.data
                ct.scale = raw.scale
                return ct
        seal = _sealapi()
        return _load_from_bytes(seal.Ciphertext(self.context), self.context, raw.to_bytes())

    def scratch_ciphertext(self, parms_id: tuple[int, ...], role: str) -> Any:
        """This thread's scratch SEAL ciphertext ``role`` at level ``parms_id``: an encryption
        of zero (SEAL's NTT-form flag, size 2), made once, overwritten in memory by callers."""
        templates = getattr(self._tls, "templates", None)
        if templates is None:
            templates = self._tls.templates = {}
        ct = templates.get((parms_id, role))
        if ct is None:
            seal = _sealapi()
            ct = seal.Ciphertext(self.context)
            seal.Encryptor(self.context, self.public_key).encrypt_zero(list(parms_id), ct)
            templates[(parms_id, role)] = ct
        return ct

    def rescaled_scratch(self) -> Any:
        """This thread's SEAL ciphertext that receives rescaled products (SEAL resizes it to
        each result; reused so that no product allocates a new one)."""
        ct = getattr(self._tls, "rescaled", None)
        if ct is None:
            ct = self._tls.rescaled = _sealapi().Ciphertext(self.context)
        return ct

    def is_private(self) -> bool:
        return False


class CkksKeys(_Session):
    """The device's CKKS state: context, secret key (never leaves), public key, encryptors.

    Attributes: ``params``; ``secret_context`` (the SEAL context used with the secret key);
    ``public_bytes()`` serializes what the server may hold (parameters + public key).
    """

    def __init__(self, params: CkksParams) -> None:
        seal = _sealapi()
        validate_params(params)
        ctx = _seal_context(_encryption_parameters(params), params)
        super().__init__(params, ctx)
        keygen = seal.KeyGenerator(ctx)
        self._secret_key = keygen.secret_key()
        self.public_key = seal.PublicKey()
        keygen.create_public_key(self.public_key)
        self.symmetric_encryptor = seal.Encryptor(ctx, self._secret_key)
        self.public_encryptor = seal.Encryptor(ctx, self.public_key)
        self.decryptor = seal.Decryptor(ctx, self._secret_key)
        self._tenseal_ctx: Any = None

    @property
    def secret_context(self) -> Any:
        """The SEAL context the secret key belongs to (device side only)."""
        return self.context

    def is_private(self) -> bool:
        return True

    def decrypt_checked(
        self,
        ct: SealCiphertext,
        plain: Any,
        decode: Callable[[Any], Any],
        slot_bound: float | None = None,
    ) -> Any:
        """Decrypt ``ct`` into ``plain`` and ``decode`` it; ``slot_bound`` (a bound on its
        slots' magnitudes known in advance) and the decoded slots are checked against the
        headroom of the ciphertext's level (:func:`check_headroom`)."""
        raw = RawCiphertext.parse(ct.blob)
        loaded = self.load_ciphertext(ct) if raw is None else self.seal_view(raw)
        self.decryptor.decrypt(loaded, plain)
        vals = decode(plain)
        check_headroom(self, loaded, vals, slot_bound)
        return vals

    def decrypt_many(
        self, cts: Sequence[SealCiphertext], slot_bound: float | None = None
    ) -> NDArray[np.complex128]:
        """Decrypt and decode ``cts`` to their complex slots ``[len(cts), slots]``, with the
        checks of :meth:`decrypt_checked`.

        Ciphertexts at a level of one prime (every rescaled projection output) or two (an
        unrescaled product, ``rescale="device"``) take a batched path: SEAL decrypts each one
        (NTT form), SEAL's inverse NTT runs on two plaintexts at a time (as the two polynomials
        of a scratch ciphertext), two primes are joined by the CRT (:func:`_crt2_centred`), and
        the canonical embedding is one numpy FFT per :data:`_DECODE_CHUNK` of them
        (:func:`_slot_decoder`, checked against SEAL's decoder; a few ciphertexts at a time
        stay in the cache). Other levels, or a build where :mod:`seal_memory` is unverified,
        use SEAL's decoder.
        """
        seal = _sealapi()
        raws = [RawCiphertext.parse(ct.blob) for ct in cts]
        decoder = _slot_decoder(self)
        first = raws[0] if raws else None
        if (
            decoder is None
            or first is None
            or first.n_primes not in (1, 2)
            or any(r is None or r.parms_id != first.parms_id for r in raws)
        ):
            plain = seal.Plaintext()
            rows = [self.decrypt_checked(ct, plain, self.decode_complex, slot_bound) for ct in cts]
            return np.stack(rows) if rows else np.empty((0, self.slots), np.complex128)
        n, n_primes = self.params.poly_modulus_degree, first.n_primes
        pair = self.scratch_ciphertext(first.parms_id, "intt")
        pair_view = seal_memory.ciphertext_residues(pair)
        assert pair_view is not None  # _slot_decoder checked the memory paths
        out = seal.Ciphertext()
        coeffs = np.empty((len(raws), n_primes, n), dtype=np.uint64)
        plain = seal.Plaintext()
        for i, raw in enumerate(raws):
            assert raw is not None
            self.decryptor.decrypt(self.seal_view(raw), plain)
            pv = seal_memory.plaintext_residues(plain)
            if pv is None or pv.size != n_primes * n:
                raise CkksInputError("decrypted plaintext has an unexpected layout")
            pair_view[i % 2] = pv.reshape(n_primes, n)
            if i % 2 == 1 or i == len(raws) - 1:
                lo = i - i % 2
                # SEAL refuses a result with a zero c1 ("transparent"): a zero plaintext's
                # coefficients are zero, so a stand-in row is transformed and then dropped
                zero = [not np.any(pair_view[r]) for r in range(i + 1 - lo)]
                if i % 2 == 0 or zero[-1]:
                    pair_view[1] = 1
                self.evaluator.transform_from_ntt(pair, out)
                ov = seal_memory.ciphertext_residues(out)
                if ov is None:
                    raise CkksInputError("SEAL's inverse NTT has an unexpected layout")
                coeffs[lo : i + 1] = ov[: i + 1 - lo]
                for r, z in enumerate(zero):
                    if z:
                        coeffs[lo + r] = 0
        scales = np.array([r.scale for r in raws if r is not None])
        moduli = self.moduli(first.parms_id)
        vals = np.empty((len(raws), self.slots), dtype=np.complex128)
        # a few ciphertexts at a time: the integers' passes and the FFT stay in the cache
        for lo in range(0, len(raws), _DECODE_CHUNK):
            part = slice(lo, lo + _DECODE_CHUNK)
            if n_primes == 1:
                ints: NDArray[Any] = _centre(coeffs[part, 0], moduli[0])
            else:
                ints = _crt2_centred(coeffs[part], moduli[0], moduli[1])
            vals[part] = decoder(ints, scales[part])
        for raw, row in zip(raws, vals, strict=True):
            assert raw is not None
            check_headroom(self, _Level(raw.parms_id, raw.scale), row, slot_bound)
        return vals

    def decode_complex(self, plain: Any) -> NDArray[np.complex128]:
        """SEAL's complex decoding of ``plain``, as an array (the list-to-array step is a
        third of a decryption with ``np.asarray``)."""
        return np.fromiter(self.encoder.decode_complex(plain), np.complex128, self.slots)

    def decode_real(self, plain: Any) -> NDArray[np.float64]:
        """SEAL's real decoding of ``plain``, as an array."""
        return np.fromiter(self.encoder.decode_double(plain), np.float64, self.slots)

    def public_bytes(self) -> bytes:
        """Serialized public context: parameters + public key. No secret key, no Galois keys.

        Layout: ``b"PTCKKSPUB1\\n"``, u32 JSON length, JSON ``{params, parms_bytes, pk_bytes}``,
        SEAL ``EncryptionParameters`` bytes, SEAL ``PublicKey`` bytes.
        """
        parms_blob = _save_bytes(self.context.key_context_data().parms())
        pk_blob = _save_bytes(self.public_key)
        head = json.dumps(
            {
                "params": self.params.to_dict(),
                "parms_bytes": len(parms_blob),
                "pk_bytes": len(pk_blob),
            },
            sort_keys=True,
        ).encode()
        return _PUBLIC_MAGIC + struct.pack("<I", len(head)) + head + parms_blob + pk_blob

    def tenseal_context(self) -> Any:
        """A TenSEAL context with the same parameters and Galois keys (naive baseline only).

        It has its own, independent keys; it is created once and cached.
        """
        if self._tenseal_ctx is None:
            ts: Any = require("tenseal", purpose="the naive CKKS baseline")
            ctx = ts.context(
                ts.SCHEME_TYPE.CKKS,
                poly_modulus_degree=self.params.poly_modulus_degree,
                coeff_mod_bit_sizes=list(self.params.coeff_mod_bit_sizes),
            )
            ctx.global_scale = self.scale
            ctx.generate_galois_keys()
            self._tenseal_ctx = ctx
        return self._tenseal_ctx


class PublicCkks(_Session):
    """The server's CKKS state: parameters, public key, evaluator. Holds no secret key."""

    def __init__(self, params: CkksParams, context: Any, public_key: Any) -> None:
        super().__init__(params, context)
        self.public_key = public_key

    def is_private(self) -> bool:
        return False


def make_context(params: CkksParams) -> CkksKeys:
    """Context and key generation for ``params`` (device side): SEAL context at 128-bit
    security, secret key, public key. Raises :class:`ParameterError` if
    :func:`~privtuner.costmodels.catalogue.validate_params` or SEAL rejects them (e.g. a
    rescaling prime other than the scale, which would decrypt to garbage)."""
    return CkksKeys(params)


def load_public_context(data: bytes, params: CkksParams) -> PublicCkks:
    """Server side: rebuild the public context from :meth:`CkksKeys.public_bytes`.

    ``params`` is what the server expects; a mismatch, or a set that
    :func:`~privtuner.costmodels.catalogue.validate_params` rejects, raises
    :class:`ParameterError`.
    """
    seal = _sealapi()
    if not data.startswith(_PUBLIC_MAGIC):
        raise CkksInputError("public context bytes: bad magic (not from CkksKeys.public_bytes)")
    off = len(_PUBLIC_MAGIC)
    (hlen,) = struct.unpack_from("<I", data, off)
    off += 4
    head = json.loads(data[off : off + hlen])
    off += hlen
    got = CkksParams.from_dict(head["params"])
    if got != params:
        raise ParameterError(f"public context is for {got.name}, expected {params.name}")
    validate_params(params)
    parms_blob = data[off : off + head["parms_bytes"]]
    off += head["parms_bytes"]
    pk_blob = data[off : off + head["pk_bytes"]]
    if len(pk_blob) != head["pk_bytes"]:
        raise CkksInputError("public context bytes: truncated")
    parms = _load_from_bytes(seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS), None, parms_blob)
    if parms.poly_modulus_degree() != params.poly_modulus_degree or [
        m.bit_count() for m in parms.coeff_modulus()
    ] != list(params.coeff_mod_bit_sizes):
        raise ParameterError(f"public context parameters do not match {params.name}")
    ctx = _seal_context(parms, params)
    pk = _load_from_bytes(seal.PublicKey(), ctx, pk_blob)
    return PublicCkks(params, ctx, pk)


# --------------------------------------------------------------------------- packing
class _Blocks:
    """Counts of a packing's ``blocks: list[list[SealCiphertext]]``."""

    blocks: list[list[SealCiphertext]]

    @property
    def n_ciphertexts(self) -> int:
        return sum(len(b) for b in self.blocks)

    @property
    def nbytes(self) -> int:
        """Total SEAL-serialized size of all ciphertexts [bytes]."""
        return sum(ct.nbytes for b in self.blocks for ct in b)


@dataclass
class EncryptedColumns(_Blocks):
    """Column-packed ciphertexts of a ``[n_tokens, n_features]`` matrix.

    ``blocks[b][j]`` holds feature ``j`` of tokens ``b*N/2 .. min((b+1)*N/2, n_tokens) - 1``
    in slots ``0 ..``; unused slots encrypt zero (or, after :func:`project`, the bias).
    """

    n_tokens: int
    n_features: int
    blocks: list[list[SealCiphertext]] = field(default_factory=list)

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)


def _as_matrix(x: Any, name: str, ndim: int = 2) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        raise CkksInputError(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise CkksInputError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def encrypt_columns(keys: CkksKeys, x: Any, *, seeded: bool = True) -> EncryptedColumns:
    """Device: encode and encrypt ``x [T, d]`` in column packing at scale 2^scale_bits.

    ``seeded=True`` (default) uses SEAL symmetric encryption with the secret key, whose
    serialized form carries ``c1`` as a PRNG seed (about half the bytes); ``False`` uses the
    public key.
    """
    if not isinstance(keys, CkksKeys):
        raise CkksInputError("encrypt_columns needs the device's CkksKeys")
    seal = _sealapi()
    arr = _as_matrix(x, "x")
    t, d = arr.shape
    if t == 0 or d == 0:
        raise CkksInputError(f"x must have at least one token and one feature, got {arr.shape}")
    slots = keys.slots
    blocks: list[list[SealCiphertext]] = []
    plain = seal.Plaintext()
    for b0 in range(0, t, slots):
        cols = np.ascontiguousarray(arr[b0 : b0 + slots].T)
        block = []
        for j in range(d):
            try:
                keys.encoder.encode(cols[j].tolist(), keys.scale, plain)
            except (ValueError, RuntimeError) as exc:
                raise CkksInputError(
                    f"x[:, {j}] cannot be encoded under {keys.params.name} "
                    f"(max |x| = {np.max(np.abs(cols[j])):.3g}): {exc}"
                ) from exc
            if seeded:
                blob = _save_bytes(keys.symmetric_encryptor.encrypt_symmetric(plain))
            else:
                ct = seal.Ciphertext(keys.context)
                keys.public_encryptor.encrypt(plain, ct)
                blob = _save_bytes(ct)
            block.append(SealCiphertext(blob))
        blocks.append(block)
    return EncryptedColumns(n_tokens=t, n_features=d, blocks=blocks)


def decrypt_columns(
    keys: CkksKeys, enc: EncryptedColumns, *, bound: float | None = None
) -> NDArray[np.float64]:
    """Device: decrypt and decode column-packed ciphertexts back to ``[n_tokens, n_features]``.

    Raises :class:`CkksOverflowError` if ``bound`` (a bound on every value, e.g.
    :func:`projection_bound`) or a decrypted slot reaches the headroom (the result of a
    projection overflowed q0; every slot is checked, padding included)."""
    if not isinstance(keys, CkksKeys):
        raise CkksInputError("decrypt_columns needs the device's CkksKeys (secret key)")
    _check_layout(enc, keys.slots)
    out = np.empty((enc.n_tokens, enc.n_features), dtype=np.float64)
    for b, block in enumerate(enc.blocks):
        lo = b * keys.slots
        hi = min(lo + keys.slots, enc.n_tokens)
        out[lo:hi, :] = keys.decrypt_many(block, bound).real[:, : hi - lo].T
    return out


_DECODERS: dict[int, Callable[..., NDArray[np.complex128]] | None] = {}


def _slot_decoder(keys: CkksKeys) -> Callable[..., NDArray[np.complex128]] | None:
    """The batched CKKS decoder for ring degree ``N`` (``None`` where it cannot be used).

    A one-prime plaintext with centred coefficients ``a`` at scale ``D`` holds in slot ``j``
    the value ``m(zeta^(3^j mod 2N)) / D``, ``zeta = exp(i pi / N)`` (the canonical embedding
    of Cheon-Kim-Kim-Song, ASIACRYPT 2017, in SEAL's slot order with generator 3). With
    ``3^j = 2u + 1``: ``m(zeta^(2u+1)) = sum_i (a_i zeta^i) w^(u i)``, ``w = exp(2 pi i/N)``,
    that is ``N ifft(a zeta^i)[u]``. The slot order is checked once against SEAL's own
    ``decode_complex``; a mismatch disables the batched path.
    """
    n = keys.params.poly_modulus_degree
    if n in _DECODERS:
        return _DECODERS[n]
    decoder = None
    if seal_memory.available(keys, _file_residues) and seal_memory.plaintext_available(keys):
        two_n = 2 * n
        u = (np.array([pow(3, j, two_n) for j in range(n // 2)]) - 1) // 2
        twist = np.exp(1j * np.pi * np.arange(n) / n)

        def decode(
            coeffs: NDArray[np.int64] | NDArray[np.float64], scales: NDArray[np.float64]
        ) -> NDArray[np.complex128]:
            # centred coefficients (exact int64, or float64 for more than one prime)
            spec = np.fft.ifft(coeffs * twist, axis=1)
            out = np.take(spec, u, axis=1)
            out *= (n / scales)[:, None]
            return out

        if _decoder_matches(keys, decode):
            decoder = decode
    _DECODERS[n] = decoder
    return decoder


def _decoder_matches(keys: CkksKeys, decode: Callable[..., NDArray[np.complex128]]) -> bool:
    """Whether ``decode`` reproduces SEAL's ``decode_complex`` at the last level."""
    seal = _sealapi()
    rng = np.random.default_rng(0)
    z = rng.standard_normal(keys.slots) + 1j * rng.standard_normal(keys.slots)
    plain = seal.Plaintext()
    keys.encoder.encode(z.tolist(), keys.scale, plain)
    ct = seal.Ciphertext(keys.context)
    keys.public_encryptor.encrypt(plain, ct)
    while keys.has_next_level(ct.parms_id()):
        keys.evaluator.mod_switch_to_next_inplace(ct)
    keys.decryptor.decrypt(ct, plain)
    ref = keys.decode_complex(plain)
    pair = seal.Ciphertext(keys.context)
    keys.public_encryptor.encrypt_zero(ct.parms_id(), pair)
    view, pv = seal_memory.ciphertext_residues(pair), seal_memory.plaintext_residues(plain)
    if view is None or pv is None or view.shape[1] != 1:
        return False
    view[0, 0, :], view[1, 0, :] = pv, pv
    out = seal.Ciphertext()
    keys.evaluator.transform_from_ntt(pair, out)
    ov = seal_memory.ciphertext_residues(out)
    if ov is None:
        return False
    q = keys.moduli(ct.parms_id())[0]
    got = decode(_centre(ov[:, 0, :].copy(), q), np.array([plain.scale, plain.scale]))
    # both are double-precision FFTs of the same coefficients (about 1e-9 apart at scale
    # 2^40, below CKKS's own error); a wrong slot order would be O(1) off
    tol = 1e-6 * float(np.max(np.abs(ref)))
    return bool(np.max(np.abs(got - ref[None, :])) <= tol)


def headroom_log2(session: _Session, ct: Any) -> float:
    """log2 of the largest slot magnitude a SEAL ciphertext ``ct`` can hold:
    ``Q_l / (2 D)``, with ``Q_l`` the product of the primes of its level and ``D`` its scale
    (after a projection's rescale ``Q_l = q0``: ``2^(q0 - scale - 1)``; an unrescaled product,
    ``Q_l = q0 q1`` at scale ``D^2 ~ q1 D``, has the same).

    A slot vector ``z`` encodes to coefficients ``c = D sigma^-1(z)`` with ``|c_i| <= D max|z|``
    (Cheon, Kim, Kim, Song, ASIACRYPT 2017, canonical embedding), which decrypt correctly while
    ``|c_i| < Q_l / 2``; so ``max|z| < Q_l / (2 D)`` cannot wrap. A wrapped coefficient shifts
    every slot by about ``Q_l / D``, twice this headroom.
    """
    primes = session.moduli(ct.parms_id())
    return sum(math.log2(q) for q in primes) - math.log2(float(ct.scale)) - 1.0


@dataclass(frozen=True)
class _Level:
    """What :func:`headroom_log2` reads from a SEAL ciphertext, for a parsed one."""

    parms: tuple[int, ...]
    scale: float

    def parms_id(self) -> list[int]:
        return list(self.parms)


def check_headroom(
    session: _Session, ct: Any, values: Any, slot_bound: float | None = None
) -> None:
    """Raise :class:`CkksOverflowError` if the slots of ``ct`` may exceed its headroom
    (:func:`headroom_log2`; for a projection's output ``2^(q0 - scale - 1)``).

    Two checks: ``slot_bound`` (a bound on ``max|z|`` known without decrypting, e.g.
    :func:`projection_bound`) must be below the headroom, which guarantees no wrap; and every
    decoded value must be below it. The second alone catches most wraps (a wrapped coefficient
    shifts every slot by about twice the headroom) but not all: a result nearly constant over
    all slots can wrap back into range, so the device passes ``slot_bound``.
    """
    limit = headroom_log2(session, ct)
    headroom = f"the headroom 2^{limit:.1f} = {2.0**limit:.3g} (2^(log2 Q_level - scale - 1))"
    fix = "use a set with more bits of q0 above the scale or smaller values"
    if slot_bound is not None and not (
        slot_bound == 0.0 or (math.isfinite(slot_bound) and math.log2(slot_bound) < limit)
    ):
        raise CkksOverflowError(
            f"CKKS overflow under {session.params.name}: |X W + b| may reach {slot_bound:.3g} "
            f"(max_t ||x_t||_2 * max_j ||W_:j||_2 + max |b|), at or above {headroom}; the "
            f"result may have wrapped modulo the level's modulus: {fix}"
        )
    arr = np.abs(np.asarray(values))
    peak = float(np.max(arr)) if arr.size else 0.0
    if not (np.isfinite(peak) and (peak == 0.0 or math.log2(peak) < limit)):
        raise CkksOverflowError(
            f"CKKS overflow under {session.params.name}: a decrypted value of magnitude "
            f"{peak:.3g} reaches {headroom}; results this large wrap modulo the level's "
            f"modulus (wrong values): {fix}"
        )


def projection_bound(x: Any, weight_col_l2: float, bias_abs: float = 0.0) -> float:
    """A bound on every entry of ``X W + b``: ``max_t ||x_t||_2 * max_j ||W_:j||_2 + max|b|``
    (Cauchy-Schwarz per output; also bounds every partial sum over a subset of the inputs, as
    the interleaved packing's partials are). ``x [T, d_in]`` is the device's clear input,
    ``weight_col_l2`` and ``bias_abs`` the server's two numbers for the projection."""
    arr = np.asarray(x, dtype=np.float64)
    rows = float(np.max(np.linalg.norm(arr, axis=1))) if arr.size else 0.0
    return rows * float(weight_col_l2) + float(bias_abs)


def _check_layout(enc: EncryptedColumns, slots: int) -> None:
    need = math.ceil(enc.n_tokens / slots) if enc.n_tokens > 0 else 0
    if enc.n_blocks != need or any(len(b) != enc.n_features for b in enc.blocks):
        raise CkksInputError(
            f"EncryptedColumns layout: {enc.n_tokens} tokens x {enc.n_features} features need "
            f"{need} blocks of {enc.n_features} ciphertexts at {slots} slots, got "
            f"{[len(b) for b in enc.blocks]}"
        )


# --------------------------------------------------------------------------- kernel maths
def _round_half_away(v: NDArray[np.float64]) -> NDArray[np.float64]:
    """``std::round`` (half away from zero), exactly, as SEAL's encoder does."""
    r = np.trunc(v)
    frac = v - r
    return r + np.sign(v) * (np.abs(frac) >= 0.5)


def _int_mod(values: NDArray[np.float64], q: int) -> NDArray[np.uint64]:
    """Integer-valued floats (any magnitude) reduced mod ``q`` to uint64 in ``[0, q)``."""
    flat = values.ravel()
    if flat.size == 0 or float(np.max(np.abs(flat))) < 2.0**62:
        out = np.mod(flat.astype(np.int64), np.int64(q)).astype(np.uint64)
    else:
        out = np.fromiter((int(v) % q for v in flat.tolist()), dtype=np.uint64, count=flat.size)
    return out.reshape(values.shape)


def _mulpow2_mod(r: NDArray[np.uint64], e: int, q: int) -> NDArray[np.uint64]:
    """``r * 2^e mod q`` for ``r`` in ``[0, q)``, ``q < 2^61``, elementwise.

    Per step of ``s <= 48`` bits: the quotient ``floor(r 2^s / q) < 2^s`` is estimated in
    float64 with absolute error < 1/4 (so off by at most one), the remainder
    ``r 2^s - qhat q`` is computed modulo 2^64 in uint64 (exact, since the true remainder and
    the estimate differ by at most one ``q``) and corrected into ``[0, q)`` in int64.
    """
    qq = np.int64(q)
    out = r
    while e > 0:
        s = min(e, _MAX_POW2_STEP)
        e -= s
        qhat = np.floor(out.astype(np.float64) * (2.0**s / q)).astype(np.uint64)
        rem = ((out << np.uint64(s)) - qhat * np.uint64(q)).view(np.int64)
        rem = np.where(rem < 0, rem + qq, rem)
        rem = np.where(rem >= qq, rem - qq, rem)
        out = rem.view(np.uint64)
    return out


def _reduce_exact_float(s: NDArray[np.float64], q: int) -> NDArray[np.int64]:
    """Integer-valued floats with ``|s| <= 2^53`` reduced mod ``q`` into ``[0, q)`` (int64):
    the float quotient is off by at most one, the int64 remainder is corrected once either
    way (in place: the kernels call this on every product)."""
    qi = np.int64(q)
    rem = s.astype(np.int64)
    if q > 2**53:  # |s| < q: one conditional add
        np.add(rem, qi, out=rem, where=rem < 0)
        return rem
    qhat = s * (1.0 / q)
    np.floor(qhat, out=qhat)
    rem -= qhat.astype(np.int64) * qi
    np.add(rem, qi, out=rem, where=rem < 0)
    np.subtract(rem, qi, out=rem, where=rem >= qi)
    return rem


@dataclass(frozen=True)
class _LimbPlan:
    nx: int
    bx: int
    nw: int
    bw: int


def _limb_plan(q_bits: int, d_in: int) -> _LimbPlan:
    """Fewest limb products ``nx * nw`` with ``nx d_in 2^(bx + bw) <= 2^53`` (exact float64).

    Centred residues satisfy ``|v| < 2^(q_bits - 1)``; ``nx`` limbs of ``bx`` bits need
    ``nx bx >= q_bits - 1`` (the signed top limb is then at most ``2^bx`` in magnitude).
    """
    best: _LimbPlan | None = None
    for nx in range(1, 12):
        bx = math.ceil((q_bits - 1) / nx)
        for nw in range(1, 12):
            bw = math.ceil((q_bits - 1) / nw)
            if nx * d_in * 2.0 ** (bx + bw) > 2.0**53:
                continue
            if best is None or nx * nw < best.nx * best.nw:
                best = _LimbPlan(nx, bx, nw, bw)
    if best is None:
        raise CkksInputError(f"d_in = {d_in} is too large for an exact float64 kernel")
    return best


def _split_limbs(v: NDArray[np.int64], n: int, b: int) -> list[NDArray[np.float64]]:
    """Signed limbs: ``v = sum_a 2^(a b) limb_a``, low limbs in ``[0, 2^b)``, top signed."""
    mask = np.int64((1 << b) - 1)
    out = [((v >> np.int64(a * b)) & mask).astype(np.float64) for a in range(n - 1)]
    out.append((v >> np.int64((n - 1) * b)).astype(np.float64))
    return out


def _centre(v: NDArray[np.uint64], q: int) -> NDArray[np.int64]:
    """Residues ``v`` in ``[0, q)`` as the centred integers of ``(-q/2, q/2]`` (a new array)."""
    s = v.astype(np.int64)
    np.subtract(s, np.int64(q), out=s, where=v > np.uint64(q // 2))
    return s


def _crt2_centred(res: NDArray[np.uint64], q0: int, q1: int) -> NDArray[np.float64]:
    """The integers of ``(-q0 q1 / 2, q0 q1 / 2)`` with residues ``res [..., 2, N]`` modulo
    ``q0`` and ``q1``, as float64 (relative error below ``2^-50``; small ones exact).

    Garner's mixed radix with a centred first digit: ``x = a + q0 t``, ``a`` the centred
    residue mod ``q0`` and ``t = (x - a) / q0`` the centred residue of ``(a1 - a) q0^(-1)``
    mod ``q1`` (exact, :func:`_mul_const_mod`). ``|a| <= q0 / 2``, so where ``t != 0`` the
    float64 sum is within ``3 2^-53 |x|`` (``5 2^-53 |x|`` for ``q1 > 2^54``, whose ``t``
    is itself rounded to float64)."""
    a0, a1 = res[..., 0, :], res[..., 1, :]
    a = _centre(a0, q0)
    if q0 < 1 << 62 and q1 < 1 << 50:
        # r = a - q1 floor(a / q1) by a float quotient (off by at most one as |a| < 2^61), so
        # r lies in (-q1, 2 q1) and d = a1 - r + 2 q1 = a1 - a (mod q1) in (0, 4 q1), which
        # _mul_const_mod accepts
        qh = a.astype(np.float64)
        qh *= 1.0 / q1
        np.floor(qh, out=qh)
        d = qh.astype(np.int64)
        d *= np.int64(-q1)
        d += a
        np.subtract(a1.view(np.int64), d, out=d)
        d += np.int64(2 * q1)
    else:
        am = np.where(a < 0, a + np.int64(q1 * ((q0 // q1) + 1)), a).view(np.uint64) % np.uint64(q1)
        d = (a1 % np.uint64(q1)).astype(np.int64) - am.astype(np.int64)
        d += np.where(d < 0, np.int64(q1), np.int64(0))
    tm = _mul_const_mod(d.view(np.uint64), pow(q0, -1, q1), q1)
    t = tm.astype(np.float64)  # exact where q1 < 2^53; larger primes are centred in int64
    if q1 >= 1 << 53:
        t = _centre(tm, q1).astype(np.float64)
    else:
        np.subtract(t, float(q1), out=t, where=tm > np.uint64(q1 // 2))
    t *= float(q0)
    t += a
    return t


def _mul_const_mod(v: NDArray[np.uint64], c: int, q: int) -> NDArray[np.uint64]:
    """``v c mod q`` exactly for ``v`` in ``[0, 4 q)``, ``0 <= c < q``.

    For ``q < 2^50`` the quotient ``floor(v c / q) < 2^52`` is estimated in float64 (off by at
    most one, its error being about ``2^(bits(q) - 52)``), the remainder computed modulo
    2^64 in uint64 (exact: it lies in ``(-q, 2q)``) and corrected once; larger primes take
    the exact limb product :func:`_modmatmul`."""
    if q >= 1 << 50:
        cm = np.array([[c]], dtype=np.uint64)
        return _modmatmul(cm, (v % np.uint64(q)).reshape(1, -1), q).reshape(v.shape)
    qhat = v.astype(np.float64)
    qhat *= float(c) / q
    np.floor(qhat, out=qhat)
    rem = v * np.uint64(c)
    qq = qhat.astype(np.uint64)
    qq *= np.uint64(q)
    rem -= qq
    r = rem.view(np.int64)
    np.add(r, np.int64(q), out=r, where=r < 0)
    np.subtract(r, np.int64(q), out=r, where=r >= np.int64(q))
    return rem


@dataclass(frozen=True)
class _WeightLimbs:
    """A modular weight matrix prepared for :func:`_apply_limbs` (see :func:`_modmatmul`)."""

    q: int
    d_out: int
    d_in: int
    plan: _LimbPlan
    a_mat: NDArray[np.float64]  # [nw * d_out, nx * d_in]


def _weight_limbs(w_mod: NDArray[np.uint64], q: int) -> _WeightLimbs:
    """Weights ``w_mod [d_out, d_in]`` in ``[0, q)`` with the X-limb shifts folded in, each
    split into W-limbs (the matrix ``A [nw*d_out, nx*d_in]`` of :func:`_modmatmul`)."""
    d_out, d_in = w_mod.shape
    plan = _limb_plan(q.bit_length(), d_in)
    a_mat = np.empty((plan.nw * d_out, plan.nx * d_in), dtype=np.float64)
    for a in range(plan.nx):
        wa = _centre(_mulpow2_mod(w_mod, a * plan.bx, q), q)
        for c, limb in enumerate(_split_limbs(wa, plan.nw, plan.bw)):
            a_mat[c * d_out : (c + 1) * d_out, a * d_in : (a + 1) * d_in] = limb
    return _WeightLimbs(q, d_out, d_in, plan, a_mat)


def _apply_limbs(wl: _WeightLimbs, x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """``(w_mod @ x) mod q`` for ``x [d_in, M]`` in ``[0, q)``, exactly (see :func:`_modmatmul`)."""
    q, d_out, d_in, plan = wl.q, wl.d_out, wl.d_in, wl.plan
    m = x.shape[1]
    out = np.empty((d_out, m), dtype=np.uint64)
    chunk = max(256, _KERNEL_CHUNK_BYTES // (8 * plan.nx * d_in))
    b_mat = np.empty((plan.nx * d_in, min(chunk, m)), dtype=np.float64)
    for c0 in range(0, m, chunk):
        c1 = min(c0 + chunk, m)
        width = c1 - c0
        xs = _centre(x[:, c0:c1], q)
        for a, limb in enumerate(_split_limbs(xs, plan.nx, plan.bx)):
            b_mat[a * d_in : (a + 1) * d_in, :width] = limb
        s = wl.a_mat @ b_mat[:, :width]
        acc = _reduce_exact_float(s[(plan.nw - 1) * d_out :], q).view(np.uint64)
        for c in range(plan.nw - 2, -1, -1):
            r = _reduce_exact_float(s[c * d_out : (c + 1) * d_out], q)
            t = _mulpow2_mod(acc, plan.bw, q).view(np.int64) + r
            acc = np.where(t >= q, t - np.int64(q), t).view(np.uint64)
        out[:, c0:c1] = acc
    return out


def _modmatmul(w_mod: NDArray[np.uint64], x: NDArray[np.uint64], q: int) -> NDArray[np.uint64]:
    """``(w_mod @ x) mod q`` exactly: ``w_mod [d_out, d_in]``, ``x [d_in, M]`` in ``[0, q)``."""
    return _apply_limbs(_weight_limbs(w_mod, q), x)


def _block_moduli(session: _Session, xs: Sequence[RawCiphertext]) -> tuple[int, ...]:
    """The primes of a block's inputs, after checking they share level, scale, size 2 and NTT
    form, and match the session's ring degree."""
    first = xs[0]
    for i, r in enumerate(xs):
        if r.parms_id != first.parms_id or r.scale != first.scale or r.size != 2:
            raise CkksInputError(
                f"input ciphertext {i}: all inputs of a block must share level, scale and size 2"
            )
        if not r.is_ntt_form:
            raise CkksInputError(f"input ciphertext {i}: CKKS ciphertexts must be in NTT form")
    moduli = session.moduli(first.parms_id)
    _, n_primes, n = first.data.shape
    if n_primes != len(moduli) or n != session.params.poly_modulus_degree:
        raise CkksInputError("input ciphertext shape does not match its parameter level")
    return moduli


def _mac_raw(
    session: _Session,
    xs: Sequence[RawCiphertext],
    weight: NDArray[np.float64],
    bias: NDArray[np.float64] | None,
) -> list[RawCiphertext]:
    """The multiply-accumulate of one block, before rescale (bit-exact SEAL semantics).

    ``xs`` are the ``d_in`` input ciphertexts (same level and scale); returns ``d_out``
    ciphertexts ``sum_i round(W_ij 2^s) ct_i (+ round(b_j D_x 2^s))`` at scale ``D_x 2^s``.
    """
    first = xs[0]
    moduli = _block_moduli(session, xs)
    d_in, d_out = weight.shape
    _, n_primes, n = first.data.shape
    w_scale = session.scale
    out_scale = first.scale * w_scale
    total_bits = sum(q.bit_length() for q in moduli)
    w_int = _round_half_away(weight.T * w_scale)  # [d_out, d_in]
    big = float(np.max(np.abs(w_int))) if w_int.size else 0.0
    if big > 0 and math.log2(big) + 2 >= total_bits:
        raise CkksInputError(
            f"weight too large for {session.params.name}: max |W| * 2^{session.params.scale_bits}"
            f" needs {math.log2(big):.0f} bits, the level has {total_bits}"
        )
    b_int = None if bias is None else _round_half_away(bias * out_scale)
    y_all = np.empty((d_out, 2, n_primes, n), dtype=np.uint64)
    for k, q in enumerate(moduli):
        xk = np.stack([r.data[:, k, :] for r in xs]).reshape(d_in, 2 * n)
        if np.any(xk >= np.uint64(q)):
            raise CkksInputError(f"input residues exceed prime {k} of the level")
        yk = _modmatmul(_int_mod(w_int, q), xk, q).reshape(d_out, 2, n)
        if b_int is not None:
            bk = _int_mod(b_int, q)[:, None]
            t = yk[:, 0, :] + bk
            yk[:, 0, :] = np.where(t >= np.uint64(q), t - np.uint64(q), t)
        y_all[:, :, k, :] = yk
    return _products_like(first, y_all, out_scale)


def _products_like(
    first: RawCiphertext, y_all: NDArray[np.uint64], out_scale: float
) -> list[RawCiphertext]:
    """Raw products ``y_all [n_out, 2, L, N]`` at scale ``out_scale``, with the level and
    header of the block's first input."""
    return [
        RawCiphertext(
            parms_id=first.parms_id,
            is_ntt_form=True,
            scale=out_scale,
            correction_factor=first.correction_factor,
            data=y_all[j],
            header_version=first.header_version,
        )
        for j in range(y_all.shape[0])
    ]


#: Where a projection's products are rescaled (the request's ``rescale``, protocol option):
#: ``server`` (default) rescales each output once and returns one-prime ciphertexts;
#: ``device`` returns the unrescaled products (every prime of the input level, scale
#: ``scale_x * scale_w``) and the device decrypts them as they are. The plaintext is the same;
#: ``device`` spares the server one SEAL rescale per output (the floor of its time with
#: interleaved packing) and costs a download larger by the rescaling prime's bits.
RESCALE_AT: tuple[str, ...] = ("server", "device")


def check_rescale(value: str) -> bool:
    """``True`` if the server rescales (``value`` in :data:`RESCALE_AT`), else a clear error."""
    if value not in RESCALE_AT:
        raise CkksInputError(f"rescale: unknown value {value!r}; valid: {', '.join(RESCALE_AT)}")
    return value == "server"


def _not_transparent(session: _Session, raw: RawCiphertext) -> RawCiphertext:
    """``raw``, or ``raw`` plus a fresh public-key encryption of zero where its ``c1`` is zero.

    A product whose ``c1`` is zero (all its weights are zero) would be a *transparent*
    ciphertext, which SEAL refuses and which would reveal ``c0``: the encryption of zero keeps
    the plaintext and brings fresh randomness."""
    if raw.data[1, 0, 0] or np.any(raw.data[1]):  # a product's c1: nonzero at once, or zero
        return raw
    seal = _sealapi()
    zero = seal.Ciphertext(session.context)
    seal.Encryptor(session.context, session.public_key).encrypt_zero(list(raw.parms_id), zero)
    z = RawCiphertext.parse(_save_bytes(zero))
    assert z is not None
    moduli = np.array(session.moduli(raw.parms_id), dtype=np.uint64)[None, :, None]
    t = raw.data + z.data
    return dataclasses.replace(raw, data=np.where(t >= moduli, t - moduli, t))


def _unrescaled(session: _Session, raw: RawCiphertext) -> SealCiphertext:
    """A raw product as it is (``rescale="device"``): held as its residues of every prime of
    its level (its wire bytes are their compact bytes, :meth:`SealCiphertext.of_raw`), never
    transparent (:func:`_not_transparent`)."""
    raw = _not_transparent(session, raw)
    return SealCiphertext.of_raw(raw, session.moduli(raw.parms_id))


def _rescale(session: _Session, raw: RawCiphertext, *, computed: bool = False) -> SealCiphertext:
    """SEAL ``rescale_to_next`` of a raw product; returns the result (its wire bytes
    are its compact bytes, :meth:`SealCiphertext.of_raw`).

    ``computed``: ``raw`` is the server's own product, whose residues the kernel reduced below
    their primes (skips that check, which received ciphertexts need).

    A product whose ``c1`` is zero is made non-transparent first (:func:`_not_transparent`).
    """
    raw = _not_transparent(session, raw)
    src = session.seal_view(raw, checked=not computed)
    out = session.rescaled_scratch()
    session.evaluator.rescale_to_next(src, out)
    parms_id = tuple(int(v) for v in out.parms_id())
    view = seal_memory.ciphertext_residues(out)
    if view is None:
        parsed = _raw_of(out)
        assert parsed is not None  # SEAL never saves a computed ciphertext seeded
    else:  # the residues copied straight out of SEAL's memory (its scratch is reused)
        parsed = RawCiphertext(parms_id, True, float(out.scale), 1, view.copy())  # type: ignore[arg-type]
    return SealCiphertext.of_raw(parsed, session.moduli(parms_id))


@dataclass
class ProjectTimings:
    """Seconds spent in each part of :func:`project` (summed over blocks).

    ``load_s``: parsing the input ciphertexts (and SEAL expanding seeded ones); ``mac_s``: the
    exact kernel; ``rescale_s``: SEAL rescale of every output, its residues copied out of
    SEAL (with ``rescale="device"`` only the transparency check, :func:`_not_transparent`).
    ``rescale_each_s`` holds that time per output. The outputs' compact bytes are written
    later, by the serialization of the reply (:meth:`SealCiphertext.write_into`).
    """

    load_s: float = 0.0
    mac_s: float = 0.0
    rescale_s: float = 0.0
    rescale_each_s: list[float] = field(default_factory=list)
    #: the clock (wall time by default; the profiler passes ``time.thread_time``)
    clock: Callable[[], float] = time.perf_counter


def project(
    pub: PublicCkks | CkksKeys,
    enc: EncryptedColumns,
    weight: Any,
    bias: Any = None,
    *,
    timings: ProjectTimings | None = None,
    rescale: str = "server",
) -> EncryptedColumns:
    """Server: ``Y = X W + b`` on column-packed ciphertexts (see the module docstring).

    ``weight [d_in, d_out]`` and ``bias [d_out]`` are plaintext. Per block: ``d_in * d_out``
    exact ciphertext x plaintext-scalar multiply-accumulates (one modular matrix product), no
    rotation, then one SEAL rescale per output ciphertext (depth one), or none with
    ``rescale="device"`` (:data:`RESCALE_AT`). ``timings`` (optional) receives the split:
    parsing/expanding inputs, the kernel, the rescale + serialization.
    """
    if not isinstance(pub, _Session):
        raise CkksInputError("project needs a PublicCkks (or CkksKeys) context")
    at_server = check_rescale(rescale)
    w, b = _weight_and_bias(weight, bias, enc.n_features)
    _check_layout(enc, pub.slots)
    blocks = _project_blocks(
        pub, enc.blocks, lambda raws: [_mac_raw(pub, raws, w, b)], timings, at_server
    )
    return EncryptedColumns(n_tokens=enc.n_tokens, n_features=w.shape[1], blocks=blocks)


def _weight_and_bias(
    weight: Any, bias: Any, n_features: int
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """``weight [n_features, d_out]`` and ``bias [d_out]`` (or None) as checked float arrays."""
    w = _as_matrix(weight, "weight")
    if w.shape[0] != n_features:
        raise CkksInputError(
            f"weight has {w.shape[0]} input rows, the ciphertexts hold {n_features} features"
        )
    if w.shape[1] == 0:
        raise CkksInputError("weight must have at least one output column")
    b = None
    if bias is not None:
        b = _as_matrix(bias, "bias", ndim=1)
        if b.shape != (w.shape[1],):
            raise CkksInputError(f"bias must have shape ({w.shape[1]},), got {b.shape}")
    return w, b


def _project_blocks(
    pub: _Session,
    blocks: Sequence[Sequence[SealCiphertext]],
    mac: Callable[[list[RawCiphertext]], Iterable[list[RawCiphertext]]],
    timings: ProjectTimings | None,
    rescale: bool = True,
) -> list[list[SealCiphertext]]:
    """Per block: parse (and expand) the inputs, ``mac`` them (an iterable of chunks of
    products, each rescaled before the next chunk is made, while it is in the CPU's cache, or
    with ``rescale=False`` kept as they are, :func:`_unrescaled`); the stages timed into
    ``timings`` (:class:`ProjectTimings`). Both packings' server loop."""
    tm = timings if timings is not None else ProjectTimings()
    clock = tm.clock
    out: list[list[SealCiphertext]] = []
    for block in blocks:
        t0 = clock()
        raws = [ct.raw(pub) for ct in block]
        if not pub.has_next_level(raws[0].parms_id):
            raise CkksInputError(
                f"ciphertexts are at the last level of {pub.params.name}: no prime left to rescale"
            )
        t1 = clock()
        tm.load_s += t1 - t0
        outs: list[SealCiphertext] = []
        chunks = iter(mac(raws))  # a list does its work here, a generator at each next()
        while True:
            products = next(chunks, None)
            tm.mac_s += clock() - t1
            if products is None:
                break
            for r in products:
                t_r = clock()
                outs.append(_rescale(pub, r, computed=True) if rescale else _unrescaled(pub, r))
                dt = clock() - t_r
                tm.rescale_each_s.append(dt)
                tm.rescale_s += dt
            t1 = clock()
        out.append(outs)
    return out


# --------------------------------------------------------------------------- serialization
def _blocks_buffer(
    prefix: bytes, magic: bytes, head: dict[str, Any], lengths: list[list[int]]
) -> tuple[bytearray, int]:
    """The buffer of :func:`_serialize_blocks` bytes after ``prefix``, its lead (``prefix``,
    ``magic``, u32 JSON length, JSON ``head`` + ``lengths``) written; the offset of the first
    ciphertext's bytes."""
    raw_head = json.dumps({**head, "lengths": lengths}).encode()
    lead = b"".join([prefix, magic, struct.pack("<I", len(raw_head)), raw_head])
    out = bytearray(len(lead) + sum(map(sum, lengths)))
    out[: len(lead)] = lead
    return out, len(lead)


def _serialize_blocks(
    magic: bytes, head: dict[str, Any], enc: _Blocks, prefix: bytes = b""
) -> bytearray:
    """``magic``, u32 JSON length, JSON ``head`` + per-ciphertext byte lengths, then each
    ciphertext's SEAL bytes, block-major (the wire format of both packings), after ``prefix``
    (a message header: the reply is made in one buffer). Each ciphertext's bytes are written
    once, straight into the buffer."""
    lengths = [[ct.nbytes for ct in block] for block in enc.blocks]
    out, off = _blocks_buffer(prefix, magic, head, lengths)
    for block in enc.blocks:
        for ct in block:
            off = ct.write_into(out, off)
    assert off == len(out)
    return out


def _read_head(
    magic: bytes, data: bytes | bytearray | memoryview, what: str
) -> tuple[dict[str, Any], list[list[int]], int]:
    """The JSON head of :func:`_serialize_blocks` bytes, its per-ciphertext byte lengths by
    block and the offset of the first ciphertext (only the head is checked)."""
    if bytes(data[: len(magic)]) != magic:
        raise CkksInputError(f"{what} bytes: bad magic")
    off = len(magic)
    try:
        (hlen,) = struct.unpack_from("<I", data, off)
        head = json.loads(bytes(data[off + 4 : off + 4 + hlen]))
        lengths = [[int(n) for n in bl] for bl in head["lengths"]]
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise CkksInputError(f"{what} bytes: bad header ({exc})") from exc
    return head, lengths, off + 4 + hlen


def _join_blocks(
    magic: bytes,
    parts: Sequence[bytes | bytearray | memoryview],
    merge_head: Callable[[list[dict[str, Any]]], dict[str, Any]],
    what: str,
    prefix: bytes = b"",
) -> bytearray:
    """:func:`_serialize_blocks` bytes of outputs over consecutive column ranges joined into
    one, block by block, without parsing a ciphertext (one copy of every byte), after
    ``prefix``; the heads (less their ``lengths``) are merged by ``merge_head``."""
    heads, bodies = [], []
    for data in parts:
        head, lengths, off = _read_head(magic, data, what)
        del head["lengths"]
        if off + sum(map(sum, lengths)) != len(data):
            raise CkksInputError(f"{what} bytes: lengths do not match the data")
        spans = []
        for bl in lengths:
            spans.append((memoryview(data)[off : off + sum(bl)], bl))
            off += sum(bl)
        heads.append(head)
        bodies.append(spans)
    if len({len(b) for b in bodies}) != 1:
        raise CkksInputError(f"{what} bytes: parts with different numbers of blocks")
    n_blocks = len(bodies[0])
    lengths = [[n for b in bodies for n in b[i][1]] for i in range(n_blocks)]
    out, off = _blocks_buffer(prefix, magic, merge_head(heads), lengths)
    for i in range(n_blocks):
        for b in bodies:
            span = b[i][0]
            out[off : off + len(span)] = span
            off += len(span)
    assert off == len(out)
    return out


def _merge_column_heads(heads: list[dict[str, Any]]) -> dict[str, Any]:
    """Heads of column-packed outputs over consecutive column ranges, merged."""
    if len({int(h["n_tokens"]) for h in heads}) != 1:
        raise CkksInputError("column bytes: parts with different token counts")
    return {
        "n_tokens": heads[0]["n_tokens"],
        "n_features": sum(int(h["n_features"]) for h in heads),
    }


def join_columns(parts: Sequence[bytes | bytearray | memoryview], prefix: bytes = b"") -> bytearray:
    """:func:`serialize_columns` bytes of one projection's outputs over consecutive column
    ranges, joined (the bytes of the whole), after ``prefix``."""
    return _join_blocks(_COLUMNS_MAGIC, parts, _merge_column_heads, "column", prefix)


def _parse_blocks(
    magic: bytes, data: bytes | bytearray | memoryview, what: str
) -> tuple[dict[str, Any], list[list[SealCiphertext]]]:
    """Inverse of :func:`_serialize_blocks`: the JSON head and the blocks; checks the magic,
    lengths and each ciphertext's SEAL or compact header (the rest is checked where a
    ciphertext is loaded or parsed: level, residues below their primes)."""
    head, all_lengths, off = _read_head(magic, data, what)
    blocks: list[list[SealCiphertext]] = []
    for block_lengths in all_lengths:
        block = []
        for n in block_lengths:
            blob = data[off : off + n]
            if len(blob) != n or n < _SEAL_HEADER.size:
                raise CkksInputError(f"{what} bytes: truncated")
            if blob[: len(_COMPACT_MAGIC)] == _COMPACT_MAGIC:
                _compact_layout(blob)  # header and length; residues are read where used
            else:
                hdr = _SEAL_HEADER.unpack_from(blob)
                if hdr[0] != _SEAL_MAGIC or hdr[6] != n:
                    raise CkksInputError(
                        f"{what} bytes: a ciphertext is neither a SEAL object nor compact"
                    )
            block.append(SealCiphertext(blob))
            off += n
        blocks.append(block)
    if off != len(data):
        raise CkksInputError(f"{what} bytes: {len(data) - off} trailing bytes")
    return head, blocks


def serialize_columns(enc: EncryptedColumns, prefix: bytes = b"") -> bytearray:
    """Bytes on the wire: ``b"PTCOLS1\\n"``, u32 JSON length, JSON header (tokens, features,
    per-ciphertext byte lengths), then each ciphertext's SEAL bytes, block-major; after
    ``prefix`` (:func:`_serialize_blocks`)."""
    return _serialize_blocks(
        _COLUMNS_MAGIC, {"n_tokens": enc.n_tokens, "n_features": enc.n_features}, enc, prefix
    )


def deserialize_columns(
    ctx: PublicCkks | CkksKeys, data: bytes | bytearray | memoryview
) -> EncryptedColumns:
    """Inverse of :func:`serialize_columns`; checks the layout against ``ctx``'s slot count."""
    head, blocks = _parse_blocks(_COLUMNS_MAGIC, data, "column")
    try:
        enc = EncryptedColumns(int(head["n_tokens"]), int(head["n_features"]), blocks)
    except (KeyError, TypeError, ValueError) as exc:
        raise CkksInputError(f"column bytes: bad header ({exc})") from exc
    _check_layout(enc, ctx.slots)
    return enc


# --------------------------------------------------------------------------- baseline
def naive_project(
    keys: CkksKeys,
    x_row: Any,
    weight: Any,
    *,
    timings: dict[str, float] | None = None,
) -> NDArray[np.float64]:
    """Baseline: one token per ciphertext, TenSEAL ``CKKSVector.matmul`` (rotations; needs
    Galois keys). Encrypts ``x_row [d_in]``, multiplies by ``weight [d_in, d_out]``, decrypts.

    ``timings`` (optional) receives ``encrypt_s``, ``matmul_s`` (the server's share),
    ``decrypt_s`` and the serialized sizes ``bytes_up`` and ``bytes_down`` (TenSEAL format).
    """
    ts: Any = require("tenseal", purpose="the naive CKKS baseline")
    x = _as_matrix(x_row, "x_row", ndim=1)
    w = _as_matrix(weight, "weight")
    if w.shape[0] != x.shape[0]:
        raise CkksInputError(f"weight has {w.shape[0]} rows, x_row has {x.shape[0]} entries")
    ctx = keys.tenseal_context()
    t0 = time.perf_counter()
    vec = ts.ckks_vector(ctx, x.tolist())
    t1 = time.perf_counter()
    out = vec.matmul(w.tolist())
    t2 = time.perf_counter()
    res = np.asarray(out.decrypt(), dtype=np.float64)
    t3 = time.perf_counter()
    if timings is not None:
        timings.update(
            encrypt_s=t1 - t0,
            matmul_s=t2 - t1,
            decrypt_s=t3 - t2,
            bytes_up=float(len(vec.serialize())),
            bytes_down=float(len(out.serialize())),
        )
    return res
