"""In-memory access to the residues of SEAL ciphertexts and plaintexts (no scratch files).

TenSEAL's ``sealapi`` binds ``Ciphertext.data()`` as the *value* of the first residue, not its
address, and saves and loads objects only through file paths; moving one 128 KB product in
and out of SEAL that way (write, SEAL load, SEAL save with zstd, read) cost more than the
rescale itself. This module finds the residue buffer of a live SEAL object through the
object layout of SEAL 4.1's ``Ciphertext`` (``parms_id_`` [4 x u64], ``is_ntt_form_``,
``size_``, ``poly_modulus_degree_``, ``coeff_modulus_size_``, ``scale_``,
``correction_factor_``, then ``DynArray data_`` {pool handle, capacity, size, pointer}) and
of a pybind11 instance (the C++ object's address right after the Python object header).

It trusts nothing it has not checked: :func:`available` verifies the layout once per process
on a ciphertext SEAL itself made (every field against SEAL's accessors, every residue
against SEAL's own serialization, and a write through the view against SEAL's serialization
after it), and each access re-reads the header fields and compares them with
SEAL's accessors before it returns a view. Where a check fails (another TenSEAL or SEAL
build), :func:`available` is ``False`` and callers use the file path, which gives the same
values. Views are only valid while the object lives and is not resized: callers copy out or
write in at once.
"""

from __future__ import annotations

import ctypes
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from privtuner.errors import require

__all__ = ["available", "ciphertext_residues", "plaintext_available", "plaintext_residues"]

#: offset of the C++ object pointer in a pybind11 instance (after ``PyObject_HEAD``)
_PYBIND_VALUE_OFFSET = 2 * ctypes.sizeof(ctypes.c_void_p)
#: ``Ciphertext``: parms_id (4 u64), is_ntt_form (bool, padded), size, N, L (size_t), scale
#: (double), correction_factor (u64); DynArray at 80: pool handle (16), capacity, size, data*
_CT_HEAD = struct.Struct("<4Q B7x Q Q Q d Q")
_CT_DYN = struct.Struct("<QQQ")
_CT_DYN_OFFSET = 96
_CT_BYTES = _CT_DYN_OFFSET + _CT_DYN.size
#: ``Plaintext``: parms_id (4 u64), coeff_count (size_t), scale (double); DynArray at 48
_PT_HEAD = struct.Struct("<4Q Q d")
_PT_DYN_OFFSET = 64
_PT_BYTES = _PT_DYN_OFFSET + _CT_DYN.size

_LOCK = threading.Lock()
_VERIFIED: bool | None = None
_PT_VERIFIED: bool | None = None


def _cpp_address(obj: Any) -> int:
    if sys.getsizeof(obj) < _PYBIND_VALUE_OFFSET + ctypes.sizeof(ctypes.c_void_p):
        return 0
    addr = ctypes.c_void_p.from_address(id(obj) + _PYBIND_VALUE_OFFSET).value
    return int(addr or 0)


def _view(address: int, count: int) -> NDArray[np.uint64]:
    return np.ctypeslib.as_array((ctypes.c_uint64 * count).from_address(address))


def _ciphertext_view(ct: Any) -> NDArray[np.uint64] | None:
    """The residues ``[size, L, N]`` of ``ct`` in SEAL's memory, or ``None`` if its header
    does not match SEAL's accessors."""
    addr = _cpp_address(ct)
    if not addr:
        return None
    raw = ctypes.string_at(addr, _CT_BYTES)
    p0, p1, p2, p3, _ntt, size, n, n_primes, scale, _corr = _CT_HEAD.unpack_from(raw)
    capacity, count, data = _CT_DYN.unpack_from(raw, _CT_DYN_OFFSET)
    if (
        [p0, p1, p2, p3] != list(ct.parms_id())
        or size != ct.size()
        or n != ct.poly_modulus_degree()
        or n_primes != ct.coeff_modulus_size()
        or scale != ct.scale
        or count != size * n * n_primes
        or capacity < count
        or not data
    ):
        return None
    if count == 0:
        return np.empty((size, n_primes, n), dtype=np.uint64)
    view = _view(data, count)
    if int(view[0]) != int(ct.data()):
        return None
    return view.reshape(size, n_primes, n)


def _plaintext_view(pt: Any) -> NDArray[np.uint64] | None:
    """The residues ``[coeff_count]`` of ``pt`` in SEAL's memory, or ``None`` if its header
    does not match SEAL's accessors."""
    addr = _cpp_address(pt)
    if not addr:
        return None
    raw = ctypes.string_at(addr, _PT_BYTES)
    p0, p1, p2, p3, count, scale = _PT_HEAD.unpack_from(raw)
    capacity, size, data = _CT_DYN.unpack_from(raw, _PT_DYN_OFFSET)
    if (
        [p0, p1, p2, p3] != list(pt.parms_id())
        or count != pt.coeff_count()
        or size != count
        or capacity < count
        or scale != pt.scale
        or not data
        or count == 0
    ):
        return None
    view = _view(data, count)
    if int(view[0]) != int(pt.data(0)) or int(view[count - 1]) != int(pt.data(count - 1)):
        return None
    return view


def _sealapi() -> Any:
    return require("tenseal.sealapi", purpose="CKKS operations")


def _verify_plaintext(keys: Any) -> bool:
    """Check the plaintext layout on a decryption SEAL made under ``keys`` (a ``CkksKeys``)."""
    seal = _sealapi()
    ct = seal.Ciphertext(keys.context)
    keys.public_encryptor.encrypt_zero(keys.context.first_parms_id(), ct)
    pt = seal.Plaintext()
    keys.decryptor.decrypt(ct, pt)
    view = _plaintext_view(pt)
    if view is None:
        return False
    idx = np.random.default_rng(0).integers(0, view.size, size=256)
    return all(int(view[i]) == int(pt.data(int(i))) for i in idx)


def _verify(session: Any, serialized: Callable[[Any], NDArray[np.uint64] | None]) -> bool:
    """Check the layout on a ciphertext SEAL made under ``session`` (its public key) against
    ``serialized`` (the residues of SEAL's own serialization of a ciphertext)."""
    seal = _sealapi()
    ct = seal.Ciphertext(session.context)
    seal.Encryptor(session.context, session.public_key).encrypt_zero(
        session.context.first_parms_id(), ct
    )
    ct.scale = 3.0
    view = _ciphertext_view(ct)
    saved = serialized(ct)
    if view is None or saved is None or not np.array_equal(view, saved):
        return False
    # a write through the view must be what SEAL then serializes
    view[1, 0, 0] = np.uint64(1) if int(view[1, 0, 0]) != 1 else np.uint64(2)
    again = serialized(ct)
    return again is not None and np.array_equal(again, view)


def available(session: Any, serialized: Callable[[Any], NDArray[np.uint64] | None]) -> bool:
    """Whether the in-memory path is verified in this process (checked once, on a ciphertext
    made under ``session``, a ``CkksKeys`` or ``PublicCkks``, against ``serialized``: the
    residues SEAL's file serialization gives for a ciphertext)."""
    global _VERIFIED
    if _VERIFIED is None:
        with _LOCK:
            if _VERIFIED is None:
                try:
                    _VERIFIED = _verify(session, serialized)
                except (ValueError, RuntimeError, AttributeError, TypeError):
                    _VERIFIED = False
    return bool(_VERIFIED)


def ciphertext_residues(ct: Any) -> NDArray[np.uint64] | None:
    """A writable view of ``ct``'s residues ``[size, L, N]`` (``None`` when unverified)."""
    return _ciphertext_view(ct) if _VERIFIED else None


def plaintext_available(keys: Any) -> bool:
    """Whether plaintext residues can be read in memory (checked once, with ``keys``, a
    ``CkksKeys``: its decryptor makes the plaintext the check reads)."""
    global _PT_VERIFIED
    if _PT_VERIFIED is None:
        with _LOCK:
            if _PT_VERIFIED is None:
                try:
                    _PT_VERIFIED = _verify_plaintext(keys)
                except (ValueError, RuntimeError, AttributeError, TypeError):
                    _PT_VERIFIED = False
    return bool(_PT_VERIFIED)


def plaintext_residues(pt: Any) -> NDArray[np.uint64] | None:
    """A view of ``pt``'s residues ``[L * N]`` (``None`` when unverified)."""
    return _plaintext_view(pt) if _PT_VERIFIED else None
