"""The packings of the split protocol behind one interface (spec section 1; scenario
``fhe.packing``).

* ``interleaved`` (default): :mod:`interleaved` — feature-interleaved complex slots, N real
  values per ciphertext whatever the token count; the server returns ``k`` partial sums per
  group of ``k`` output features (no rotation, no Galois key), summed by the device.
* ``column``: :mod:`ckks_ops` — the PrivTuner-style baseline, one feature of up to N/2 tokens
  per ciphertext (mostly empty at realistic batch sizes).

Both carry their layout in their bytes (distinct magics), so the server serves either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from numpy.typing import NDArray

from privtuner.errors import ParameterError
from privtuner.fhe_profiling import ckks_ops, interleaved
from privtuner.fhe_profiling.ckks_ops import (
    CkksInputError,
    CkksKeys,
    EncryptedColumns,
    ProjectTimings,
    PublicCkks,
)
from privtuner.fhe_profiling.interleaved import EncryptedInterleaved

__all__ = [
    "DEFAULT_PACKING",
    "PACKINGS",
    "Encrypted",
    "check_packing",
    "concat_outputs",
    "decrypt",
    "deserialize",
    "encrypt",
    "output_group",
    "packing_of",
    "project",
    "serialize",
]

#: The packings, default first.
PACKINGS: tuple[str, ...] = ("interleaved", "column")
DEFAULT_PACKING = PACKINGS[0]

Encrypted = EncryptedColumns | EncryptedInterleaved


def check_packing(name: str) -> str:
    """``name`` if it is a packing, else a :class:`ParameterError` naming the valid ones."""
    if name not in PACKINGS:
        raise ParameterError(f"packing: unknown packing {name!r}; valid: {', '.join(PACKINGS)}")
    return name


def packing_of(enc: Encrypted) -> str:
    return "interleaved" if isinstance(enc, EncryptedInterleaved) else "column"


def encrypt(keys: CkksKeys, x: Any, packing: str = DEFAULT_PACKING, **kw: Any) -> Encrypted:
    """Device: encrypt ``x [T, d]`` in ``packing``."""
    if check_packing(packing) == "interleaved":
        return interleaved.encrypt_interleaved(keys, x, **kw)
    return ckks_ops.encrypt_columns(keys, x, **kw)


def decrypt(keys: CkksKeys, enc: Encrypted, *, bound: float | None = None) -> NDArray[Any]:
    """Device: decrypt (and, for interleaved partials, sum) back to ``[T, d]``; ``bound`` (on
    every value, :func:`ckks_ops.projection_bound`) and the decrypted values are checked
    against the headroom (:class:`ckks_ops.CkksOverflowError`)."""
    if isinstance(enc, EncryptedInterleaved):
        return interleaved.decrypt_interleaved(keys, enc, bound=bound)
    return ckks_ops.decrypt_columns(keys, enc, bound=bound)


def project(
    pub: PublicCkks | CkksKeys,
    enc: Encrypted,
    weight: Any,
    bias: Any = None,
    *,
    timings: ProjectTimings | None = None,
    rescale: str = "server",
) -> Encrypted:
    """Server: ``X W + b`` in the packing of ``enc``; ``rescale`` says who rescales the
    products (:data:`ckks_ops.RESCALE_AT`)."""
    if isinstance(enc, EncryptedInterleaved):
        return interleaved.project_interleaved(
            pub, enc, weight, bias, timings=timings, rescale=rescale
        )
    return ckks_ops.project(pub, enc, weight, bias, timings=timings, rescale=rescale)


def output_group(enc: Encrypted) -> int:
    """Outputs that must stay together when a projection of ``enc`` is split by columns:
    ``k`` for interleaved (its partials come in groups of ``k``), 1 for column packing."""
    return enc.layout.k if isinstance(enc, EncryptedInterleaved) else 1


def concat_outputs(a: Encrypted, b: Encrypted) -> Encrypted:
    """Projection outputs of the same inputs over consecutive column ranges, joined (the
    server's workers each compute one range)."""
    if type(a) is not type(b) or len(a.blocks) != len(b.blocks):
        raise CkksInputError("only outputs of the same packing and blocks can be joined")
    blocks = [x + y for x, y in zip(a.blocks, b.blocks, strict=True)]
    n = a.n_features + b.n_features
    if isinstance(a, EncryptedInterleaved):
        assert isinstance(b, EncryptedInterleaved)
        if a.n_features % a.layout.k or a.layout.k != b.layout.k:
            raise CkksInputError("interleaved outputs join only on whole groups of k")
        return EncryptedInterleaved(dataclasses.replace(a.layout, n_features=n), blocks)
    return EncryptedColumns(n_tokens=a.n_tokens, n_features=n, blocks=blocks)


def join_serialized(
    parts: Sequence[bytes | bytearray | memoryview], prefix: bytes = b""
) -> bytearray:
    """The serialized outputs of one projection over consecutive column ranges (each part
    :func:`serialize` bytes), joined without parsing a ciphertext: byte for byte
    ``prefix + serialize(concat_outputs(...))``. The server merges its workers' parts this
    way, straight after its reply's header (``prefix``)."""
    if not parts:
        raise CkksInputError("nothing to join")
    if interleaved.is_interleaved(bytes(parts[0][:16])):
        return interleaved.join_interleaved(parts, prefix)
    return ckks_ops.join_columns(parts, prefix)


def serialize(enc: Encrypted, prefix: bytes = b"") -> bytearray:
    """The wire bytes of ``enc`` after ``prefix`` (a message header: one buffer, each
    ciphertext's bytes written once)."""
    if isinstance(enc, EncryptedInterleaved):
        return interleaved.serialize_interleaved(enc, prefix)
    return ckks_ops.serialize_columns(enc, prefix)


def deserialize(ctx: PublicCkks | CkksKeys, data: bytes | bytearray | memoryview) -> Encrypted:
    """Either packing's bytes, told apart by their magic."""
    if interleaved.is_interleaved(data):
        return interleaved.deserialize_interleaved(ctx, data)
    if bytes(data[: len(ckks_ops._COLUMNS_MAGIC)]) == ckks_ops._COLUMNS_MAGIC:
        return ckks_ops.deserialize_columns(ctx, data)
    raise CkksInputError("ciphertext bytes: neither interleaved nor column packing")
