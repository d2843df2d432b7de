"""Fitting profiler records into per-operation cost curves (spec section 3).

Records (written by the TenSEAL profiler in ``privtuner.fhe_profiling``, read here): CSV, one row
per (op, parameter set), columns :data:`RECORD_COLUMNS`; ``op`` is one of :data:`RECORD_OPS`
(``value`` is the mean over the samples, the statistic a sum of many ops estimates, and
``median`` the median; profiles before 2026-11-23 stored the median in ``value`` and have no
``median`` column; ``project_mac`` is seconds per single ciphertext x plaintext-scalar
multiply-accumulate, ``rescale`` seconds per output ciphertext, ``ct_bytes_*`` bytes per
serialized ciphertext, ``precision_bits`` = -log2(max abs error of one encrypted projection));
``d_in`` / ``d_out`` name the projection block an op was measured on (``project_mac`` is
profiled on several blocks and fitted into one curve per block, :func:`fit_records`).

Fitting: for each op, every candidate form of :data:`TIME_FORMS` (times and sizes) or
:data:`PRECISION_FORMS` (precision) is fitted by least squares on relative residuals
(rows weighted by 1/|y|; power laws by ordinary least squares on log y), scored by
leave-one-parameter-set-out relative error, and the form with the smallest mean held-out
relative error wins; forms within 5 % (relative) of that error count as tied and the one with
fewer coefficients is kept (parsimony), then the smaller error, then table order.
Deterministic: no randomness, no clock. Each :class:`FittedCurve` keeps its coefficients, R^2,
held-out errors, valid domain and provenance; a :class:`CostModel` is a set of curves plus
metadata, stored as JSON.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from privtuner.costmodels.types import CkksParams
from privtuner.errors import CostModelError

#: Operation names a records file may contain, with the unit of their ``value``.
RECORD_OPS: dict[str, str] = {
    "keygen": "s",
    "encrypt": "s",
    "encrypt_one": "s",
    "decrypt": "s",
    "decrypt_one": "s",
    "project_load": "s",
    "project_mac": "s",
    "rescale": "s",
    "ct_bytes_fresh": "bytes",
    "ct_bytes_product": "bytes",
    "precision_bits": "bits",
    # interleaved packing (fhe_profiling.interleaved): per ciphertext / per output partial
    "encrypt_il": "s",
    "decrypt_il": "s",
    "project_il": "s",
    "precision_bits_il": "bits",
    # the protocol option rescale="device" (fhe.rescale): the server writes its products
    # unrescaled, the device decrypts them at the input level's primes
    "product_out": "s",
    "ct_bytes_unrescaled": "bytes",
    "decrypt_unrescaled": "s",
    "decrypt_unrescaled_one": "s",
    "decrypt_il_unrescaled": "s",
}

#: Kernel ops fitted per block shape (``d_in``, ``d_out``): see :func:`fit_records`.
KERNEL_OPS: tuple[str, ...] = ("project_mac", "project_il")
#: Block at which the interleaved kernel is profiled: ``k`` features per ciphertext.
INTERLEAVED_PROFILE_K = 16

#: Columns of a records CSV, in order.
RECORD_COLUMNS: tuple[str, ...] = (
    "op",
    "set_name",
    "poly_modulus_degree",
    "coeff_mod_bit_sizes",
    "scale_bits",
    "log2_q",
    "value",
    "unit",
    "p10",
    "p90",
    "repeats",
    "cpu_model",
    "cpu_freq_hz",
    "threads",
    "tenseal_version",
    "numpy_version",
    "python_version",
    "date",
    "load_avg_1m",
    "d_in",
    "d_out",
    "median",
)

#: Columns a records file may lack (older profiles): ``d_in`` / ``d_out``, the projection block
#: an op was measured on, read as :data:`KERNEL_D_IN` x :data:`KERNEL_D_IN` when absent (the
#: only block older profiles measured).
OPTIONAL_RECORD_COLUMNS: tuple[str, ...] = ("d_in", "d_out")
#: Statistics a records file may lack (older profiles): read as None.
OPTIONAL_STAT_COLUMNS: tuple[str, ...] = ("median",)

_INT_COLUMNS = (
    "poly_modulus_degree",
    "scale_bits",
    "log2_q",
    "repeats",
    "threads",
    "d_in",
    "d_out",
)
_FLOAT_COLUMNS = ("value", "p10", "p90", "cpu_freq_hz", "load_avg_1m", "median")

#: Format version of cost-model JSON files.
COST_MODEL_FORMAT = 1

# ----------------------------------------------------------------------------- records


def params_of_record(rec: Mapping[str, Any]) -> CkksParams:
    """The :class:`CkksParams` a record was measured with."""
    return CkksParams(
        int(rec["poly_modulus_degree"]),
        tuple(int(b) for b in rec["coeff_mod_bit_sizes"]),
        int(rec["scale_bits"]),
    )


def _parse_record(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    problems: list[str] = []
    rec: dict[str, Any] = {k: raw.get(k) for k in RECORD_COLUMNS}
    op = str(rec["op"] or "")
    if op not in RECORD_OPS:
        problems.append(f"op: unknown operation {op!r}; valid: {', '.join(RECORD_OPS)}")
    for col in _INT_COLUMNS:
        v = rec[col]
        try:
            rec[col] = int(float(v)) if v not in (None, "") else None
        except (TypeError, ValueError):
            problems.append(f"{col}: not an integer (got {v!r})")
    for col in _FLOAT_COLUMNS:
        v = rec[col]
        try:
            rec[col] = float(v) if v not in (None, "") else None
        except (TypeError, ValueError):
            problems.append(f"{col}: not a number (got {v!r})")
    bits = rec["coeff_mod_bit_sizes"]
    try:
        if isinstance(bits, str):
            rec["coeff_mod_bit_sizes"] = tuple(int(b) for b in bits.split("-") if b != "")
        else:
            rec["coeff_mod_bit_sizes"] = tuple(int(b) for b in bits or ())
    except (TypeError, ValueError):
        problems.append(f"coeff_mod_bit_sizes: expected dash-joined integers (got {bits!r})")
    for col in ("poly_modulus_degree", "scale_bits", "value"):
        if rec[col] is None:
            problems.append(f"{col}: missing")
    for col in OPTIONAL_RECORD_COLUMNS:
        if rec[col] is None and not any(p.startswith(f"{col}:") for p in problems):
            rec[col] = KERNEL_D_IN
        elif rec[col] is not None and rec[col] < 1:
            problems.append(f"{col}: projection block size must be >= 1 (got {rec[col]})")
    if not problems:
        if not rec["coeff_mod_bit_sizes"]:
            problems.append("coeff_mod_bit_sizes: empty")
        elif rec["log2_q"] is not None and rec["log2_q"] != sum(rec["coeff_mod_bit_sizes"]):
            problems.append(
                f"log2_q: {rec['log2_q']} != sum of coeff_mod_bit_sizes "
                f"{sum(rec['coeff_mod_bit_sizes'])}"
            )
        if rec["value"] is not None and not math.isfinite(rec["value"]):
            problems.append(f"value: not finite (got {rec['value']})")
    if problems:
        raise CostModelError(f"{where}: " + "; ".join(problems))
    rec["log2_q"] = sum(rec["coeff_mod_bit_sizes"])
    for col in (
        "set_name",
        "unit",
        "cpu_model",
        "tenseal_version",
        "numpy_version",
        "python_version",
        "date",
    ):
        rec[col] = "" if rec[col] is None else str(rec[col])
    if not rec["unit"]:
        rec["unit"] = RECORD_OPS[op]
    return rec


def normalize_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Typed copies of ``records`` (ints, floats, chain tuple); raises on malformed rows."""
    return [_parse_record(r, f"record {i}") for i, r in enumerate(records)]


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read a records CSV (columns :data:`RECORD_COLUMNS`) into typed dicts.

    Integers for N, scale, log2 Q, repeats, threads, d_in, d_out; floats for value, p10, p90,
    frequency, load; ``coeff_mod_bit_sizes`` as a tuple of ints. Files without the
    :data:`OPTIONAL_RECORD_COLUMNS` (older profiles) read them as 128 x 128. Raises
    :class:`CostModelError` naming the file, the row and the column on any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise CostModelError(f"records file not found: {path}")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [
            c
            for c in RECORD_COLUMNS
            if c not in header and c not in (*OPTIONAL_RECORD_COLUMNS, *OPTIONAL_STAT_COLUMNS)
        ]
        if missing:
            raise CostModelError(f"{path}: missing record columns: {', '.join(missing)}")
        rows = [_parse_record(r, f"{path}: row {i + 2}") for i, r in enumerate(reader)]
    if not rows:
        raise CostModelError(f"{path}: no records")
    return rows


def _record_strings(rec: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in RECORD_COLUMNS:
        v = rec.get(c)
        if c == "coeff_mod_bit_sizes":
            out[c] = "-".join(str(int(b)) for b in v or ())
        elif v is None:
            out[c] = ""
        else:
            out[c] = repr(v) if isinstance(v, float) else str(v)
    return out


def write_records(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write records to CSV with the :data:`RECORD_COLUMNS` header (chain dash-joined)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(RECORD_COLUMNS))
        w.writeheader()
        for r in records:
            w.writerow(_record_strings(r))
    return path


def records_sha256(records: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 of the canonical form of ``records`` (rows as strings, sorted): order-free."""
    rows = sorted(json.dumps(_record_strings(r), sort_keys=True) for r in records)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


# ----------------------------------------------------------------------------- forms

Variables = Mapping[str, NDArray[np.float64]]


@dataclass(frozen=True)
class CurveForm:
    """A candidate form y = f(N, log2 Q, L, scale; coefficients).

    ``kind="linear"``: y = features(v) @ coef; ``kind="power"``: log y = features(v) @ beta with
    coefficient ``c = exp(beta_0)`` and the exponents as stored (y = c * prod v_i^a_i).
    ``variables``: what it reads (``poly_modulus_degree``, ``log2_q``, ``n_primes``,
    ``scale_bits``, ``zero_bits``, ``limb_products``, ``limb_rows``; see :func:`variables_of`).
    ``physical``: the form is a cost model of the operation's work (per-word and per-limb
    counts with non-negative coefficients, fitted by non-negative least squares on all but
    the constant ``c``; a power form: least squares in log space, a fit with a negative
    exponent rejected as unidentifiable), preferred by :func:`fit_curve` when its held-out
    error is as good.
    """

    name: str
    formula: str
    coef_names: tuple[str, ...]
    variables: tuple[str, ...]
    features: Callable[[Variables], NDArray[np.float64]]
    kind: str = "linear"
    physical: bool = False

    def design(self, v: Variables) -> NDArray[np.float64]:
        return np.asarray(self.features(v), dtype=float)

    def predict(self, coef: Sequence[float], v: Variables) -> NDArray[np.float64]:
        x = self.design(v)
        beta = np.asarray(coef, dtype=float)
        if self.kind == "power":
            beta = np.concatenate([[math.log(beta[0])], beta[1:]])
            return np.asarray(np.exp(x @ beta), dtype=float)
        return np.asarray(x @ beta, dtype=float)


def _n(v: Variables) -> NDArray[np.float64]:
    return np.asarray(v["poly_modulus_degree"], dtype=float)


def _ones(v: Variables) -> NDArray[np.float64]:
    return np.ones_like(_n(v))


def _stack(*cols: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.column_stack(cols)


def _compact_forms(suffix: str, bytes_var: str, strided_var: str, over: str) -> list[CurveForm]:
    """``compact{suffix}`` (the wire size, ``a*N*W + c``) and ``compact_io{suffix}`` (the
    strided packing work, ``a*N*L + b*N*S + c``) over the byte counts ``bytes_var`` /
    ``strided_var`` of a product's level (see the forms' notes below)."""
    return [
        CurveForm(
            f"compact{suffix}",
            f"a*N*W + c  (a >= 0; W = sum_k ceil(bits_k / 8) over {over})",
            ("a", "c"),
            ("poly_modulus_degree", bytes_var),
            lambda v: _stack(_n(v) * v[bytes_var], _ones(v)),
            physical=True,
        ),
        CurveForm(
            f"compact_io{suffix}",
            f"a*N*L + b*N*S + c  (a, b >= 0; S = sum_k ceil(bits_k / 8) over {over} "
            "narrower than 8 bytes)",
            ("a", "b", "c"),
            ("poly_modulus_degree", "n_primes", strided_var),
            lambda v: _stack(_n(v) * v["n_primes"], _n(v) * v[strided_var], _ones(v)),
            physical=True,
        ),
    ]


TIME_FORMS: tuple[CurveForm, ...] = (
    CurveForm(
        "nlogn_l",
        "a*N*log2(N)*L + c",
        ("a", "c"),
        ("poly_modulus_degree", "n_primes"),
        lambda v: _stack(_n(v) * np.log2(_n(v)) * v["n_primes"], _ones(v)),
    ),
    CurveForm(
        "n_l",
        "a*N*L + c  (a >= 0)",
        ("a", "c"),
        ("poly_modulus_degree", "n_primes"),
        lambda v: _stack(_n(v) * v["n_primes"], _ones(v)),
        physical=True,
    ),
    CurveForm(
        "n_logq",
        "a*N*log2Q + c",
        ("a", "c"),
        ("poly_modulus_degree", "log2_q"),
        lambda v: _stack(_n(v) * v["log2_q"], _ones(v)),
    ),
    CurveForm(
        "n_logq_n",
        "a*N*log2Q + b*N + c",
        ("a", "b", "c"),
        ("poly_modulus_degree", "log2_q"),
        lambda v: _stack(_n(v) * v["log2_q"], _n(v), _ones(v)),
    ),
    CurveForm(
        "power",
        "c * N^a * log2Q^b",
        ("c", "a", "b"),
        ("poly_modulus_degree", "log2_q"),
        lambda v: _stack(_ones(v), np.log(_n(v)), np.log(np.asarray(v["log2_q"], dtype=float))),
        kind="power",
    ),
    CurveForm(
        "words_zstd",
        "a*N*L + b*N*Z + c  (a, b >= 0; Z = sum_k (64 - bits_k))",
        ("a", "b", "c"),
        ("poly_modulus_degree", "n_primes", "zero_bits"),
        lambda v: _stack(_n(v) * v["n_primes"], _n(v) * v["zero_bits"], _ones(v)),
        physical=True,
    ),
    *_compact_forms("", "product_bytes", "strided_bytes", "the product's primes"),
    *_compact_forms(
        "_unrescaled",
        "unrescaled_bytes",
        "unrescaled_strided_bytes",
        "the unrescaled product's primes",
    ),
    CurveForm(
        "limbs",
        "a*N*P + c  (a >= 0; P = sum_k limb products of prime k)",
        ("a", "c"),
        ("poly_modulus_degree", "limb_products"),
        lambda v: _stack(_n(v) * v["limb_products"], _ones(v)),
        physical=True,
    ),
    CurveForm(
        "limbs_zstd",
        "a*N*P + b*N*Z + c  (a, b >= 0)",
        ("a", "b", "c"),
        ("poly_modulus_degree", "limb_products", "zero_bits"),
        lambda v: _stack(_n(v) * v["limb_products"], _n(v) * v["zero_bits"], _ones(v)),
        physical=True,
    ),
    CurveForm(
        "power_limbs",
        "c * N^a * P^b  (a, b >= 0)",
        ("c", "a", "b"),
        ("poly_modulus_degree", "limb_products"),
        lambda v: _stack(
            _ones(v), np.log(_n(v)), np.log(np.asarray(v["limb_products"], dtype=float))
        ),
        kind="power",
        physical=True,
    ),
    CurveForm(
        "limbs_rows",
        "a*N*P + b*N*R + c  (a, b >= 0; R = sum_k W-limbs of prime k)",
        ("a", "b", "c"),
        ("poly_modulus_degree", "limb_products", "limb_rows"),
        lambda v: _stack(_n(v) * v["limb_products"], _n(v) * v["limb_rows"], _ones(v)),
        physical=True,
    ),
    CurveForm(
        "power_limbs_rows",
        "c * N^a * P^b * R^d  (a, b, d >= 0)",
        ("c", "a", "b", "d"),
        ("poly_modulus_degree", "limb_products", "limb_rows"),
        lambda v: _stack(
            _ones(v),
            np.log(_n(v)),
            np.log(np.asarray(v["limb_products"], dtype=float)),
            np.log(np.asarray(v["limb_rows"], dtype=float)),
        ),
        kind="power",
        physical=True,
    ),
    CurveForm(
        "limbs_words_zstd",
        "a*N*P + b*N*Z + d*N*L + c  (a, b, d >= 0)",
        ("a", "b", "d", "c"),
        ("poly_modulus_degree", "limb_products", "zero_bits", "n_primes"),
        lambda v: _stack(
            _n(v) * v["limb_products"], _n(v) * v["zero_bits"], _n(v) * v["n_primes"], _ones(v)
        ),
        physical=True,
    ),
)
"""Candidate forms for times [s] and sizes [bytes] (spec section 3).

L = number of primes of the chain; the generic forms (``nlogn_l`` .. ``power``) are those of
the spec. The *physical* forms count the work of the measured operations:

* ``n_l`` (words): SEAL keeps one 64-bit word per coefficient and prime whatever the
  prime's bit size, so an NTT/encode/encrypt/decrypt costs ~ N log N per prime; over one ring
  degree octave the log factor changes by < 8 %, and ``a N L`` fits as well
  (Microsoft SEAL 4 manual; Kim, Polyakov, Zucca, "Revisiting homomorphic encryption
  schemes for finite fields", 2021, sec. 5 on RNS cost per prime word).
* ``zstd``: every op measured by the profiler includes SEAL's serialization, which
  compresses the words with Zstandard (``compr_mode_type::zstd``, SEAL >= 3.6). A word of a
  b-bit prime has 64 - b zero high bits that zstd squeezes out, and the entropy coding of
  that redundancy is work; incompressible (60-bit) data is stored raw, fast. Hence the
  term ``b N Z`` with ``Z = sum_k (64 - bits_k)``: measured, the time of these ops *falls*
  as the prime bits grow (more bits, fewer zero bits), while the encryption itself is flat
  in the bits (profile note in :mod:`privtuner.costmodels.model`).
* ``compact`` (``ct_bytes_product`` only): the server ships its products in a compact format
  (``fhe_profiling.ckks_ops.RawCiphertext.to_compact``) that stores each residue of prime k in
  ``ceil(bits_k / 8)`` bytes, two polynomials of N residues per prime of the product's level
  (the chain without its special prime and the prime the rescale drops): ``W`` counts those
  bytes per coefficient (:func:`product_bytes`), so the size is ``2 N W`` plus a header.
* ``compact_io`` (the ops that write or read products: ``rescale``, ``decrypt*``): a residue
  of a prime narrower than 64 bits is packed to and unpacked from its ``ceil(bits / 8)``
  bytes by a strided copy, while 8-byte residues are copied whole: measured, decryption and
  rescale cost ~20 % more at 40-56-bit ``q0`` than at 60 bits. ``S`` counts those strided
  bytes per coefficient (:func:`strided_bytes`).
* ``compact_unrescaled`` / ``compact_io_unrescaled``: the same for a product the server does
  not rescale (``fhe.rescale: device``: ``ct_bytes_unrescaled``, and ``product_out``,
  ``decrypt_unrescaled*``, ``decrypt_il_unrescaled``), whose level keeps the scale prime
  (:func:`unrescaled_bytes`).
* ``limbs``: the column-packed projection kernel (``fhe_profiling.ckks_ops``) splits each
  residue of prime k into ``nx_k`` limbs and each weight into ``nw_k`` limbs so that float64
  BLAS stays exact; its multiply-accumulate does ``nx_k nw_k`` limb products per prime, so
  ``P = sum_k nx_k nw_k`` over the data primes (:func:`limb_products`), non-decreasing in
  every prime's bit size. ``power_limbs`` (``c N^a P^b``, exponents >= 0) lets the cost per
  coefficient grow with N (the kernel's working set leaves the caches: measured, its cost
  per MAC and per coefficient doubles from N = 8192 to 16384).
* ``limbs_rows`` / ``power_limbs_rows``: besides its ``P`` limb products (one BLAS GEMM),
  the kernel reduces each of the ``nw_k`` W-limb partial sums of an output exactly and
  shifts it into the result (a few elementwise passes per output, prime and W-limb), so
  ``R = sum_k nw_k`` (:func:`limb_rows`) counts work that ``P`` does not: measured, the
  60-40 chain (``P = 12``, ``R = 6``) costs 23 % less per MAC than the 56-36 chain (``P =
  12``, ``R = 8``) at N = 16384, which a form in ``P`` alone cannot follow.

Physical forms are fitted with non-negative coefficients on their work terms (the constant
``c`` is free), so they are non-decreasing in N by construction.
"""

PRECISION_FORMS: tuple[CurveForm, ...] = (
    CurveForm(
        "scale_log2n",
        "a*scale_bits + b*log2(N) + c",
        ("a", "b", "c"),
        ("poly_modulus_degree", "scale_bits"),
        lambda v: _stack(v["scale_bits"], np.log2(_n(v)), _ones(v)),
    ),
    CurveForm(
        "scale",
        "a*scale_bits + c",
        ("a", "c"),
        ("scale_bits",),
        lambda v: _stack(v["scale_bits"], _ones(v)),
    ),
)
"""Candidate forms for precision [bits]: CKKS error ~ noise(N) / scale, so
precision = -log2(err) is about scale_bits - (1/2) log2 N - const (Cheon et al. 2017, sec. 3)."""

FORMS_BY_NAME: dict[str, CurveForm] = {f.name: f for f in (*TIME_FORMS, *PRECISION_FORMS)}


#: Physical forms that model the projection kernel's limb products: only for ``project_mac``.
_KERNEL_FORMS = (
    "limbs",
    "limbs_zstd",
    "power_limbs",
    "limbs_rows",
    "power_limbs_rows",
    "limbs_words_zstd",
)
#: The compact wire format's size: only for ``ct_bytes_product``; its packing work: only for
#: the ops that write or read products.
_COMPACT_FORMS = ("compact", "compact_io", "compact_unrescaled", "compact_io_unrescaled")
_COMPACT_IO_OPS = ("rescale", "decrypt", "decrypt_one", "decrypt_il")
#: ops that write or read unrescaled products (``fhe.rescale: device``)
_UNRESCALED_IO_OPS = (
    "product_out",
    "decrypt_unrescaled",
    "decrypt_unrescaled_one",
    "decrypt_il_unrescaled",
)


def candidate_forms(op: str) -> tuple[CurveForm, ...]:
    """Candidate forms for ``op``: precision forms for ``precision_bits`` (and ``_il``); every
    time form for ``project_mac``; the time forms without the column kernel's limb forms for
    the other ops (``project_il``, the interleaved kernel per output partial, has its own limb
    plan: its work per output is ``N`` residues per prime, the ``n_l`` family)."""
    if op in ("precision_bits", "precision_bits_il"):
        return PRECISION_FORMS
    if op == "project_mac":
        return tuple(f for f in TIME_FORMS if f.name not in _COMPACT_FORMS)
    own = {
        "ct_bytes_product": "compact",
        "ct_bytes_unrescaled": "compact_unrescaled",
        **dict.fromkeys(_COMPACT_IO_OPS, "compact_io"),
        **dict.fromkeys(_UNRESCALED_IO_OPS, "compact_io_unrescaled"),
    }.get(op)
    other_compact = tuple(f for f in _COMPACT_FORMS if f != own)
    return tuple(f for f in TIME_FORMS if f.name not in (*_KERNEL_FORMS, *other_compact))


#: Inputs per output of the profiled projection block (BERT-Tiny hidden size), which sets the
#: kernel's limb plan (:func:`limb_plan`).
KERNEL_D_IN = 128
#: Largest integer float64 represents exactly: 2^53.
_FLOAT64_EXACT_BITS = 53


def limb_plan(q_bits: int, d_in: int = KERNEL_D_IN) -> tuple[int, int]:
    """``(nx, nw)``: the limbs the exact float64 kernel cuts a ``q_bits``-bit residue and
    weight into, fewest products ``nx * nw`` with ``nx d_in 2^(bx + bw) <= 2^53``,
    ``bx = ceil((q_bits - 1) / nx)``, ``bw = ceil((q_bits - 1) / nw)``.

    The same rule as ``privtuner.fhe_profiling.ckks_ops._limb_plan`` (a test checks they
    agree), restated here so that the cost model needs no crypto library.
    """
    if q_bits < 2 or d_in < 1:
        raise CostModelError(f"limb_plan: need q_bits >= 2 and d_in >= 1 (got {q_bits}, {d_in})")
    best: tuple[int, int] | None = None
    for nx in range(1, 12):
        bx = math.ceil((q_bits - 1) / nx)
        for nw in range(1, 12):
            bw = math.ceil((q_bits - 1) / nw)
            if nx * d_in * 2.0 ** (bx + bw) > 2.0**_FLOAT64_EXACT_BITS:
                continue
            if best is None or nx * nw < best[0] * best[1]:
                best = (nx, nw)
    if best is None:
        raise CostModelError(f"limb_plan: d_in = {d_in} too large for an exact float64 kernel")
    return best


def _data_limb_plans(params: CkksParams, d_in: int) -> list[tuple[int, int]]:
    """:func:`limb_plan` of each data prime (all but the last, special prime)."""
    data = params.coeff_mod_bit_sizes[:-1] or params.coeff_mod_bit_sizes
    return [limb_plan(int(bits), d_in) for bits in data]


def limb_products(params: CkksParams, d_in: int = KERNEL_D_IN) -> int:
    """``P = sum_k nx_k nw_k`` over the data primes (all but the last, special prime): limb
    matrix products per ciphertext x plaintext multiply-accumulate of the kernel."""
    return sum(nx * nw for nx, nw in _data_limb_plans(params, d_in))


def limb_rows(params: CkksParams, d_in: int = KERNEL_D_IN) -> int:
    """``R = sum_k nw_k`` over the data primes: W-limb partial sums the kernel reduces and
    shifts into each output (per prime; ``ckks_ops._apply_limbs``: ``nw_k`` exact reductions,
    ``nw_k - 1`` shift-adds), its elementwise work per output besides its ``P`` limb products
    (:func:`limb_products`). Not counted: the split of each input into ``nx_k`` X-limbs (per
    input, ``d_in / d_out`` of an output's share, and ``sum_k nx_k`` is not ``R``)."""
    return sum(nw for _, nw in _data_limb_plans(params, d_in))


def _product_widths(params: CkksParams) -> list[int]:
    """``ceil(bits_k / 8)`` per prime of a projection's rescaled product (the chain without
    the special prime and the dropped scale prime; the first prime alone for a two-prime
    chain): bytes per residue of the compact wire format."""
    bits = params.coeff_mod_bit_sizes
    return [(int(b) + 7) // 8 for b in (bits[:-2] or bits[:1])]


def product_bytes(params: CkksParams) -> int:
    """``W = sum_k ceil(bits_k / 8)`` over the primes of a projection's rescaled product
    (:func:`_product_widths`): bytes per coefficient and polynomial of the compact format."""
    return sum(_product_widths(params))


def _unrescaled_widths(params: CkksParams) -> list[int]:
    """``ceil(bits_k / 8)`` per prime of a product the server does not rescale (the chain
    without the special prime): bytes per residue of the compact wire format."""
    return [(int(b) + 7) // 8 for b in params.coeff_mod_bit_sizes[:-1]]


def unrescaled_bytes(params: CkksParams) -> int:
    """``W`` of :func:`product_bytes` for an unrescaled product (:func:`_unrescaled_widths`)."""
    return sum(_unrescaled_widths(params))


def unrescaled_strided_bytes(params: CkksParams) -> int:
    """``S`` of :func:`strided_bytes` for an unrescaled product."""
    return sum(w for w in _unrescaled_widths(params) if w < 8)


def strided_bytes(params: CkksParams) -> int:
    """``S = sum_k ceil(bits_k / 8)`` over the product's primes (:func:`product_bytes`) whose
    residues take fewer than 8 bytes: what the compact format packs by a strided copy."""
    return sum(w for w in _product_widths(params) if w < 8)


def zero_bits(params: CkksParams) -> int:
    """``Z = sum_k (64 - bits_k)`` over the chain: zero high bits per coefficient that
    SEAL's 64-bit words carry (what its zstd serialization compresses away)."""
    return int(sum(64 - int(b) for b in params.coeff_mod_bit_sizes))


def variables_of(
    params: Sequence[CkksParams], d_in: int = KERNEL_D_IN
) -> dict[str, NDArray[np.float64]]:
    """Arrays ``[n]`` of the fit variables of each parameter set (``limb_products`` for a
    kernel block with ``d_in`` inputs per output)."""
    return {
        "poly_modulus_degree": np.array([p.poly_modulus_degree for p in params], dtype=float),
        "log2_q": np.array([p.log2_q for p in params], dtype=float),
        "n_primes": np.array([len(p.coeff_mod_bit_sizes) for p in params], dtype=float),
        "scale_bits": np.array([p.scale_bits for p in params], dtype=float),
        "zero_bits": np.array([zero_bits(p) for p in params], dtype=float),
        "product_bytes": np.array([product_bytes(p) for p in params], dtype=float),
        "strided_bytes": np.array([strided_bytes(p) for p in params], dtype=float),
        "unrescaled_bytes": np.array([unrescaled_bytes(p) for p in params], dtype=float),
        "unrescaled_strided_bytes": np.array(
            [unrescaled_strided_bytes(p) for p in params], dtype=float
        ),
        "limb_products": np.array([limb_products(p, d_in) for p in params], dtype=float),
        "limb_rows": np.array([limb_rows(p, d_in) for p in params], dtype=float),
    }


def _subset(v: Variables, idx: NDArray[np.intp]) -> dict[str, NDArray[np.float64]]:
    return {k: np.asarray(a)[idx] for k, a in v.items()}


def _solve(form: CurveForm, v: Variables, y: NDArray[np.float64]) -> list[float] | None:
    """Least squares on relative residuals; None if the design is rank-deficient."""
    x = form.design(v)
    if x.shape[0] < x.shape[1]:
        return None
    if form.kind == "power":
        if np.any(y <= 0):
            return None
        if np.linalg.matrix_rank(x) < x.shape[1]:
            return None
        beta, *_ = np.linalg.lstsq(x, np.log(y), rcond=None)
        if form.physical and np.any(beta[1:] < 0):
            return None  # a physical power law has non-negative exponents
        return [math.exp(float(beta[0])), *(float(b) for b in beta[1:])]
    w = 1.0 / np.abs(y)
    xw = x * w[:, None]
    if np.linalg.matrix_rank(xw) < x.shape[1]:
        return None
    if form.physical:
        return _nnls_free_last(xw, y * w)
    beta, *_ = np.linalg.lstsq(xw, y * w, rcond=None)
    return [float(b) for b in beta]


def _nnls_free_last(x: NDArray[np.float64], y: NDArray[np.float64]) -> list[float]:
    """min ||x beta - y|| with beta >= 0 except the last (constant) coefficient, which is free.

    The free constant is eliminated by projecting onto the orthogonal complement of the last
    column (Lawson & Hanson, "Solving Least Squares Problems", 1974, ch. 23: NNLS), then
    recovered by least squares given the others.
    """
    from scipy.optimize import nnls

    ones = x[:, -1]
    rest = x[:, :-1]
    if rest.shape[1] == 0:
        c = float(ones @ y / (ones @ ones))
        return [c]
    proj = np.eye(len(y)) - np.outer(ones, ones) / float(ones @ ones)
    beta, _ = nnls(proj @ rest, proj @ y)
    c = float(ones @ (y - rest @ beta) / (ones @ ones))
    return [*(float(b) for b in beta), c]


# ----------------------------------------------------------------------------- curves

_DOMAIN_ALWAYS = ("poly_modulus_degree", "log2_q")


class OutOfDomainError(CostModelError):
    """A fitted curve evaluated outside its valid domain: ``variable`` = ``value`` is not in
    ``[low, high]`` (the range of the profiled records). The message speaks to a Python
    caller (``extrapolate=True``); a scenario's cost table names its fields instead
    (:func:`privtuner.costmodels.model.build_cost_table`)."""

    def __init__(self, op: str, variable: str, value: float, low: float, high: float) -> None:
        self.op, self.variable, self.value, self.low, self.high = op, variable, value, low, high
        super().__init__(
            f"cost curve '{op}' evaluated outside its valid domain: {variable} = {value:g} not "
            f"in [{low:g}, {high:g}] (pass extrapolate=True to allow)"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # pickles whole (errors of worker processes)
        return (type(self), (self.op, self.variable, self.value, self.low, self.high))

    @property
    def where(self) -> str:
        """``log2_q = 170, profiled [100, 160]`` (curve named), for a scenario's message."""
        return (
            f"curve '{self.op}': {self.variable} = {self.value:g}, profiled "
            f"[{self.low:g}, {self.high:g}]"
        )


@dataclass(frozen=True)
class FittedCurve:
    """One fitted per-op cost curve with its fit statistics, valid domain and provenance.

    * ``value = form(N, log2 Q, L, scale; coefficients)`` in ``unit`` (s, bytes or bits);
    * ``r2``: coefficient of determination of the full fit (original scale);
    * ``heldout_rel_err``: mean |pred - y| / |y| over leave-one-parameter-set-out fits;
      ``heldout_max_rel_err`` the largest; ``n_points`` rows, ``n_sets`` parameter sets;
    * ``domain``: variable -> [min, max] over the records; outside it evaluation raises
      :class:`CostModelError` unless ``extrapolate=True``;
    * ``candidates``: held-out error of every candidate form tried (None: not identifiable);
    * ``kernel_d_in``: inputs per output of the kernel block the curve was measured on (sets
      the limb plan of the ``limb_products`` variable; :data:`KERNEL_D_IN` unless a
      shape-specific ``project_mac`` curve, see :func:`kernel_curve_name`).
    """

    op: str
    unit: str
    form: str
    formula: str
    coefficients: dict[str, float]
    r2: float
    heldout_rel_err: float
    heldout_max_rel_err: float
    n_points: int
    n_sets: int
    domain: dict[str, tuple[float, float]]
    provenance: dict[str, Any] = field(default_factory=dict)
    candidates: dict[str, float | None] = field(default_factory=dict)
    kernel_d_in: int = KERNEL_D_IN

    @property
    def curve_form(self) -> CurveForm:
        try:
            return FORMS_BY_NAME[self.form]
        except KeyError:
            raise CostModelError(
                f"curve {self.op}: unknown form {self.form!r}; valid: {', '.join(FORMS_BY_NAME)}"
            ) from None

    def check_domain(self, v: Variables) -> None:
        """Raise :class:`CostModelError` if any point lies outside :attr:`domain`."""
        for var, (lo, hi) in self.domain.items():
            vals = np.asarray(v[var], dtype=float)
            bad = vals[(vals < lo - 1e-9) | (vals > hi + 1e-9)]
            if bad.size:
                raise OutOfDomainError(self.op, var, float(bad[0]), lo, hi)

    def predict(self, v: Variables, extrapolate: bool = False) -> NDArray[np.float64]:
        """Vectorised evaluation on variable arrays (see :func:`variables_of`)."""
        if not extrapolate:
            self.check_domain(v)
        form = self.curve_form
        coef = [self.coefficients[k] for k in form.coef_names]
        return form.predict(coef, v)

    def evaluate(self, params: CkksParams, extrapolate: bool = False) -> float:
        """The curve's value for one parameter set, in :attr:`unit`."""
        return float(self.predict(variables_of([params], self.kernel_d_in), extrapolate)[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "unit": self.unit,
            "form": self.form,
            "formula": self.formula,
            "coefficients": dict(self.coefficients),
            "r2": _json_float(self.r2),
            "heldout_rel_err": _json_float(self.heldout_rel_err),
            "heldout_max_rel_err": _json_float(self.heldout_max_rel_err),
            "n_points": self.n_points,
            "n_sets": self.n_sets,
            "domain": {k: [lo, hi] for k, (lo, hi) in self.domain.items()},
            "provenance": dict(self.provenance),
            "candidates": {k: _json_float(e) for k, e in self.candidates.items()},
            "kernel_d_in": self.kernel_d_in,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FittedCurve:
        try:
            curve = cls(
                op=str(d["op"]),
                unit=str(d["unit"]),
                form=str(d["form"]),
                formula=str(d.get("formula", "")),
                coefficients={str(k): float(x) for k, x in d["coefficients"].items()},
                r2=_float_or_nan(d.get("r2")),
                heldout_rel_err=_float_or_nan(d.get("heldout_rel_err")),
                heldout_max_rel_err=_float_or_nan(d.get("heldout_max_rel_err")),
                n_points=int(d.get("n_points", 0)),
                n_sets=int(d.get("n_sets", 0)),
                domain={str(k): (float(b[0]), float(b[1])) for k, b in d["domain"].items()},
                provenance=dict(d.get("provenance", {})),
                candidates={
                    str(k): (None if e is None else float(e))
                    for k, e in d.get("candidates", {}).items()
                },
                kernel_d_in=int(d.get("kernel_d_in", KERNEL_D_IN)),
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise CostModelError(f"malformed fitted curve {d.get('op', '?')!r}: {exc!r}") from exc
        form = curve.curve_form
        missing = [k for k in form.coef_names if k not in curve.coefficients]
        if missing:
            raise CostModelError(f"fitted curve {curve.op!r}: missing coefficients {missing}")
        bad = [k for k in form.coef_names if not math.isfinite(curve.coefficients[k])]
        if bad:
            raise CostModelError(f"fitted curve {curve.op!r}: coefficient(s) {bad} not finite")
        c = curve.coefficients[form.coef_names[0]]
        if form.kind == "power" and not c > 0:
            raise CostModelError(
                f"fitted curve {curve.op!r}: a power law c * prod v^a needs c > 0 "
                f"(got {form.coef_names[0]} = {c:g})"
            )
        return curve


def _json_float(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _float_or_nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _r2(y: NDArray[np.float64], pred: NDArray[np.float64]) -> float:
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - np.mean(y)) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - ss_res / ss_tot


def _heldout_errors(
    form: CurveForm, v: Variables, y: NDArray[np.float64], groups: NDArray[np.intp]
) -> NDArray[np.float64] | None:
    """Relative errors of leave-one-group-out predictions; None if some fold is unidentifiable."""
    errs = np.empty_like(y)
    for g in np.unique(groups):
        test = np.flatnonzero(groups == g)
        train = np.flatnonzero(groups != g)
        coef = _solve(form, _subset(v, train), y[train])
        if coef is None:
            return None
        pred = form.predict(coef, _subset(v, test))
        errs[test] = np.abs(pred - y[test]) / np.abs(y[test])
    return errs


#: Relative tolerance on held-out error within which forms count as tied (then a physical
#: form, then fewer coefficients, is preferred).
SELECTION_REL_TOL = 0.05
#: Absolute tolerance (fraction) added to :data:`SELECTION_REL_TOL`: half a percentage point of
#: mean held-out relative error is below the run-to-run noise of the profiler's medians.
SELECTION_ABS_TOL = 0.005


def fit_curve(
    op: str,
    params: Sequence[CkksParams],
    values: Sequence[float],
    forms: Sequence[CurveForm] | None = None,
    provenance: Mapping[str, Any] | None = None,
    kernel_d_in: int = KERNEL_D_IN,
) -> FittedCurve:
    """Fit ``values[i]`` measured at ``params[i]`` with each candidate form; keep the best.

    Selection by mean leave-one-parameter-set-out relative error (rows of the same set are held
    out together): among the forms within ``SELECTION_REL_TOL`` (5 %, relative) plus
    ``SELECTION_ABS_TOL`` (0.5 percentage point) of the smallest error, a physical form
    (:attr:`CurveForm.physical`) first, then the one with fewest coefficients, then the smaller
    error, then order in ``forms``. ``kernel_d_in``: the block's inputs per output (limb plan
    of the ``limb_products`` variable; only shape-specific ``project_mac`` curves differ from
    :data:`KERNEL_D_IN`). Raises :class:`CostModelError` if no form is identifiable
    (e.g. every record at one N).
    """
    if op not in RECORD_OPS:
        raise CostModelError(f"unknown operation {op!r}; valid: {', '.join(RECORD_OPS)}")
    if len(params) != len(values) or not params:
        raise CostModelError(
            f"{op}: need one value per parameter set (got {len(values)} values "
            f"for {len(params)} sets)"
        )
    y = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(y)) or np.any(y == 0):
        raise CostModelError(f"{op}: values must be finite and non-zero to fit relative errors")
    forms = tuple(forms) if forms is not None else candidate_forms(op)
    v = variables_of(params, kernel_d_in)
    keys = sorted({p.name for p in params})
    groups = np.array([keys.index(p.name) for p in params], dtype=np.intp)
    scored: list[tuple[float, int, int, CurveForm, NDArray[np.float64]]] = []
    # identifiability is judged on the full data: a physical feature constant over the
    # records (e.g. the limb count on a one-scale catalogue) makes its form unidentifiable
    candidates: dict[str, float | None] = {}
    for order, form in enumerate(forms):
        if len(keys) < len(form.coef_names) + 1:
            candidates[form.name] = None
            continue
        errs = _heldout_errors(form, v, y, groups)
        if errs is None or not np.all(np.isfinite(errs)):
            candidates[form.name] = None
            continue
        mean_err = float(np.mean(errs))
        candidates[form.name] = mean_err
        scored.append((round(mean_err, 12), len(form.coef_names), order, form, errs))
    if not scored:
        raise CostModelError(
            f"{op}: no candidate form can be fitted and cross-validated from {len(keys)} "
            f"parameter sets (N values {sorted({p.poly_modulus_degree for p in params})}); "
            "profile more sets, with at least two ring degrees and two moduli"
        )
    # Among forms tied with the best held-out error (SELECTION_REL_TOL + SELECTION_ABS_TOL):
    # physical forms first, then the fewest coefficients (nested forms otherwise tie to
    # within noise), then the smaller error, then table order.
    best_err = min(t[0] for t in scored)
    tie = best_err * (1.0 + SELECTION_REL_TOL) + SELECTION_ABS_TOL + 1e-15
    near = [t for t in scored if t[0] <= tie]
    near.sort(key=lambda t: (not t[3].physical, t[1], t[0], t[2]))
    _, _, _, best, errs = near[0]
    coef = _solve(best, v, y)
    if coef is None:  # pragma: no cover - identifiable in every fold implies identifiable
        raise CostModelError(f"{op}: form {best.name} is not identifiable")
    pred = best.predict(coef, v)
    used = sorted(set(_DOMAIN_ALWAYS) | set(best.variables))
    domain = {k: (float(np.min(v[k])), float(np.max(v[k]))) for k in used}
    return FittedCurve(
        op=op,
        unit=RECORD_OPS[op],
        form=best.name,
        formula=best.formula,
        coefficients=dict(zip(best.coef_names, coef, strict=True)),
        r2=_r2(y, pred),
        heldout_rel_err=float(np.mean(errs)),
        heldout_max_rel_err=float(np.max(errs)),
        n_points=int(y.size),
        n_sets=len(keys),
        domain=domain,
        provenance=dict(provenance or {}),
        candidates=candidates,
        kernel_d_in=int(kernel_d_in),
    )


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class CostModel:
    """Fitted per-op cost curves + metadata (one JSON file, format :data:`COST_MODEL_FORMAT`).

    * ``curves``: op -> :class:`FittedCurve` (ops of :data:`RECORD_OPS` that were profiled);
    * ``reference_frequency_hz``: CPU frequency of the profiled machine; cycles = seconds x it;
    * ``precision_by_set``: measured precision [bits] by :attr:`CkksParams.name` (records);
    * ``device_clear_s_per_token``: optional device clear-text work [s per token per step]
      (embeddings, LayerNorm, softmax, LoRA, ...); None means not measured (counted as 0);
    * ``provenance``: records hash, library versions, CPU, dates, number of records.
    """

    curves: dict[str, FittedCurve]
    reference_frequency_hz: float
    provenance: dict[str, Any] = field(default_factory=dict)
    precision_by_set: dict[str, float] = field(default_factory=dict)
    device_clear_s_per_token: float | None = None

    def has(self, op: str) -> bool:
        return op in self.curves

    def curve(self, op: str) -> FittedCurve:
        try:
            return self.curves[op]
        except KeyError:
            raise CostModelError(
                f"cost model has no curve for {op!r}; it has: {', '.join(sorted(self.curves))}"
            ) from None

    def evaluate(self, op: str, params: CkksParams, extrapolate: bool = False) -> float:
        """Per-op cost of ``op`` for ``params`` in the curve's unit (s, bytes or bits)."""
        return self.curve(op).evaluate(params, extrapolate)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": COST_MODEL_FORMAT,
            "kind": "privtuner.ckks_cost_model",
            "reference_frequency_hz": self.reference_frequency_hz,
            "device_clear_s_per_token": self.device_clear_s_per_token,
            "provenance": dict(self.provenance),
            "precision_by_set": dict(sorted(self.precision_by_set.items())),
            "curves": {op: c.to_dict() for op, c in sorted(self.curves.items())},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "cost model") -> CostModel:
        if not isinstance(d, Mapping):
            raise CostModelError(f"{source}: expected a JSON object")
        if d.get("format") != COST_MODEL_FORMAT:
            raise CostModelError(
                f"{source}: unsupported cost-model format {d.get('format')!r} "
                f"(expected {COST_MODEL_FORMAT})"
            )
        try:
            f_ref = float(d["reference_frequency_hz"])
            curves = {str(op): FittedCurve.from_dict(c) for op, c in d["curves"].items()}
            clear = d.get("device_clear_s_per_token")
            model = cls(
                curves=curves,
                reference_frequency_hz=f_ref,
                provenance=dict(d.get("provenance", {})),
                precision_by_set={
                    str(k): float(x) for k, x in d.get("precision_by_set", {}).items()
                },
                device_clear_s_per_token=None if clear is None else float(clear),
            )
        except CostModelError as exc:
            raise CostModelError(f"{source}: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CostModelError(f"{source}: malformed cost model ({exc!r})") from exc
        if not (math.isfinite(f_ref) and f_ref > 0):
            raise CostModelError(f"{source}: reference_frequency_hz must be > 0 (got {f_ref})")
        return model

    @classmethod
    def from_json(cls, text: str, source: str = "cost model") -> CostModel:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CostModelError(f"{source}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, source)


#: Where the shipped default model lives (written from a real profiling run, see issue 3).
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "data" / "ckks_default.json"


def load_cost_model(source: str | Path = "default") -> CostModel:
    """Load ``"default"`` (the shipped :data:`DEFAULT_MODEL_PATH`) or a model JSON file path."""
    if isinstance(source, str) and source == "default":
        path = DEFAULT_MODEL_PATH
        if not path.is_file():
            raise CostModelError(
                "the shipped default cost model (privtuner/costmodels/data/ckks_default.json) "
                "does not exist yet: run 'privtuner profile --out DIR' and 'privtuner fit "
                "DIR/records.csv --out model.json', then set fhe.cost_model to that file"
            )
    else:
        path = Path(source)
        if not path.is_file():
            raise CostModelError(f"cost model file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CostModelError(f"{path}: cannot read the cost model ({exc})") from None
    return CostModel.from_json(text, source=str(path))


def _provenance(recs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    def uniq(col: str) -> list[str]:
        return sorted({str(r[col]) for r in recs if r.get(col) not in (None, "")})

    dates = uniq("date")
    return {
        "records_sha256": records_sha256(recs),
        "n_records": len(recs),
        "cpu_model": uniq("cpu_model"),
        "threads": uniq("threads"),
        "tenseal_version": uniq("tenseal_version"),
        "numpy_version": uniq("numpy_version"),
        "python_version": uniq("python_version"),
        "date_first": dates[0] if dates else "",
        "date_last": dates[-1] if dates else "",
    }


def kernel_curve_name(d_in: int, d_out: int, op: str = "project_mac") -> str:
    """Name of the shape-specific kernel curve: ``"{op}@{d_in}x{d_out}"`` (``project_mac``:
    seconds per multiply-accumulate of a ``d_in x d_out`` column block; ``project_il``:
    seconds per output partial of an interleaved block, profiled at ``k`` =
    :data:`INTERLEAVED_PROFILE_K`). The base block's curve (128 x 128 when profiled) is plain
    ``op``; see :func:`fit_records`."""
    return f"{op}@{int(d_in)}x{int(d_out)}"


def precision_key(set_name: str, interleaved: bool) -> str:
    """Key of :attr:`CostModel.precision_by_set`: the set name (column packing), or
    ``"{set_name}@interleaved"``."""
    return f"{set_name}@interleaved" if interleaved else set_name


def _base_kernel_shape(rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """The block whose kernel curve is named plain ``project_mac``: 128 x 128 if profiled,
    else the block with the most records (then the smallest)."""
    shapes = [(int(r["d_in"]), int(r["d_out"])) for r in rows]
    if (KERNEL_D_IN, KERNEL_D_IN) in shapes:
        return (KERNEL_D_IN, KERNEL_D_IN)
    return min(set(shapes), key=lambda s: (-shapes.count(s), s[0] * s[1], s))


def fit_records(
    records: Iterable[Mapping[str, Any]] | str | Path,
    reference_frequency_hz: float | None = None,
    device_clear_s_per_token: float | None = None,
) -> CostModel:
    """Fit every op present in ``records`` (list of dicts or a CSV path) into a :class:`CostModel`.

    The reference frequency is ``reference_frequency_hz`` if given, else the median
    ``cpu_freq_hz`` of the records; the records must come from one CPU model. Deterministic:
    same records, same model (the JSON holds no wall-clock time of fitting).

    ``project_mac`` records are fitted per projection block (``d_in``, ``d_out``): the kernel's
    cost per multiply-accumulate depends on the block shape (its limb splitting is paid per
    input, its reductions and output buffers per output; measured at N = 8192 a 512 x 128
    block costs about half as much per MAC as a 128 x 128 one). The base block's curve is
    ``project_mac``, every other block's :func:`kernel_curve_name`.
    """
    recs = read_records(records) if isinstance(records, str | Path) else normalize_records(records)
    if not recs:
        raise CostModelError("no records to fit")
    cpus = {r["cpu_model"] for r in recs}
    if len(cpus) > 1:
        raise CostModelError(
            f"records come from several CPU models {sorted(cpus)}; fit one machine at a time"
        )
    if reference_frequency_hz is None:
        freqs = [r["cpu_freq_hz"] for r in recs if r["cpu_freq_hz"] and r["cpu_freq_hz"] > 0]
        if not freqs:
            raise CostModelError(
                "records carry no cpu_freq_hz; give the reference frequency explicitly "
                "(fit --reference-frequency-hz)"
            )
        reference_frequency_hz = float(statistics.median(freqs))
    if not (math.isfinite(reference_frequency_hz) and reference_frequency_hz > 0):
        raise CostModelError(f"reference frequency must be > 0 Hz (got {reference_frequency_hz})")
    curves: dict[str, FittedCurve] = {}
    for op in RECORD_OPS:
        rows = [r for r in recs if r["op"] == op]
        if not rows:
            continue
        if op in KERNEL_OPS:
            shapes = sorted({(int(r["d_in"]), int(r["d_out"])) for r in rows})
            base = _base_kernel_shape(rows)
            for d_in, d_out in shapes:
                sub = [r for r in rows if (r["d_in"], r["d_out"]) == (d_in, d_out)]
                prov = _provenance(sub)
                prov["reference_frequency_hz"] = reference_frequency_hz
                prov["d_in"], prov["d_out"] = d_in, d_out
                name = op if (d_in, d_out) == base else kernel_curve_name(d_in, d_out, op)
                curves[name] = fit_curve(
                    op,
                    [params_of_record(r) for r in sub],
                    [r["value"] for r in sub],
                    provenance=prov,
                    kernel_d_in=d_in,
                )
            continue
        prov = _provenance(rows)
        prov["reference_frequency_hz"] = reference_frequency_hz
        curves[op] = fit_curve(
            op, [params_of_record(r) for r in rows], [r["value"] for r in rows], provenance=prov
        )
    precision: dict[str, list[float]] = {}
    for r in recs:
        if r["op"] in ("precision_bits", "precision_bits_il"):
            key = precision_key(params_of_record(r).name, r["op"] == "precision_bits_il")
            precision.setdefault(key, []).append(float(r["value"]))
    provenance = _provenance(recs)
    provenance["reference_frequency_hz"] = reference_frequency_hz
    return CostModel(
        curves=curves,
        reference_frequency_hz=reference_frequency_hz,
        provenance=provenance,
        precision_by_set={k: float(statistics.median(v)) for k, v in precision.items()},
        device_clear_s_per_token=device_clear_s_per_token,
    )


# ----------------------------------------------------------------------------- synthetic

#: Ground truth of :func:`synthetic_records` (op -> (form name, coefficients)). Made-up
#: magnitudes of the right order for a laptop CPU; for tests only, never a shipped model.
SYNTHETIC_TRUTH: dict[str, tuple[str, dict[str, float]]] = {
    "keygen": ("nlogn_l", {"a": 4.0e-8, "c": 2.0e-3}),
    "encrypt": ("nlogn_l", {"a": 2.0e-9, "c": 1.0e-4}),
    "decrypt": ("nlogn_l", {"a": 5.0e-10, "c": 2.0e-5}),
    "project_mac": ("power_limbs", {"c": 5.0e-11, "a": 1.3, "b": 0.5}),
    "rescale": ("nlogn_l", {"a": 1.0e-9, "c": 1.0e-5}),
    "ct_bytes_fresh": ("n_logq", {"a": 0.17, "c": 120.0}),
    "ct_bytes_product": ("n_logq_n", {"a": 0.08, "b": 1.5, "c": 110.0}),
    "precision_bits": ("scale_log2n", {"a": 1.0, "b": -0.5, "c": -3.0}),
    "encrypt_il": ("nlogn_l", {"a": 2.5e-9, "c": 1.0e-4}),
    "decrypt_il": ("nlogn_l", {"a": 8.0e-10, "c": 2.0e-5}),
    "project_il": ("n_l", {"a": 4.0e-8, "c": 1.0e-5}),
    "precision_bits_il": ("scale_log2n", {"a": 1.0, "b": -0.5, "c": -5.0}),
    "product_out": ("nlogn_l", {"a": 2.0e-10, "c": 5.0e-6}),
    "ct_bytes_unrescaled": ("n_logq_n", {"a": 0.12, "b": 2.0, "c": 110.0}),
    "decrypt_unrescaled": ("nlogn_l", {"a": 7.0e-10, "c": 2.0e-5}),
    "decrypt_il_unrescaled": ("nlogn_l", {"a": 1.1e-9, "c": 2.0e-5}),
}


def synthetic_records(
    params: Sequence[CkksParams],
    seed: int | np.random.Generator,
    noise_rel: float = 0.02,
    noise_bits: float = 0.1,
    truth: Mapping[str, tuple[str, Mapping[str, float]]] | None = None,
    reference_frequency_hz: float = 3.0e9,
) -> list[dict[str, Any]]:
    """Seeded synthetic records from known curves (``truth``, default :data:`SYNTHETIC_TRUTH`).

    value = truth(params) x (1 + noise_rel z) for times and sizes, truth + noise_bits z for
    precision, z ~ N(0, 1). ``cpu_model`` is ``"synthetic"`` so a model fitted from them is
    recognisable. For tests and examples only.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    truth = SYNTHETIC_TRUTH if truth is None else truth
    v = variables_of(params)
    out: list[dict[str, Any]] = []
    for op, (form_name, coefs) in truth.items():
        form = FORMS_BY_NAME[form_name]
        y = form.predict([coefs[k] for k in form.coef_names], v)
        z = rng.standard_normal(len(params))
        if RECORD_OPS[op] == "bits":
            vals = y + noise_bits * z
            lo, hi = vals - noise_bits, vals + noise_bits
        else:
            vals = y * (1.0 + noise_rel * z)
            lo, hi = vals * (1.0 - noise_rel), vals * (1.0 + noise_rel)
        for i, p in enumerate(params):
            out.append(
                {
                    "op": op,
                    "set_name": p.name,
                    "poly_modulus_degree": p.poly_modulus_degree,
                    "coeff_mod_bit_sizes": p.coeff_mod_bit_sizes,
                    "scale_bits": p.scale_bits,
                    "log2_q": p.log2_q,
                    "value": float(vals[i]),
                    "unit": RECORD_OPS[op],
                    "p10": float(lo[i]),
                    "p90": float(hi[i]),
                    "repeats": 5,
                    "cpu_model": "synthetic",
                    "cpu_freq_hz": reference_frequency_hz,
                    "threads": 1,
                    "tenseal_version": "synthetic",
                    "numpy_version": np.__version__,
                    "python_version": "synthetic",
                    "date": "2000-01-01T00:00:00",
                    "load_avg_1m": 0.0,
                    "d_in": KERNEL_D_IN,
                    "d_out": KERNEL_D_IN,
                }
            )
    return out


# ----------------------------------------------------------------------------- plots

_AXIS_LABELS = {
    "s": "time per operation [s]",
    "bytes": "serialized ciphertext size [bytes]",
    "bits": "precision [bits]",
}


def fit_figure(curve: FittedCurve, records: Sequence[Mapping[str, Any]]) -> Any:
    """A matplotlib Figure of ``curve`` over its measured ``records`` (same op).

    Left: measured medians (p10-p90 bars) against N, and the curve over N in its domain, one
    colour per (log2 Q, L, scale) chain. Right: fitted vs measured with the y = x line. Pure:
    no files, no pyplot state (``matplotlib.figure.Figure``; save with ``fig.savefig``).
    """
    from matplotlib.figure import Figure  # imported lazily: plotting is optional

    recs = normalize_records(records)
    recs = [r for r in recs if r["op"] == curve.op]
    if not recs:
        raise CostModelError(f"no records of op {curve.op!r} to plot")
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    params = [params_of_record(r) for r in recs]
    y = np.array([r["value"] for r in recs], dtype=float)
    chains = sorted({(p.coeff_mod_bit_sizes, p.scale_bits) for p in params})
    n_lo, n_hi = curve.domain["poly_modulus_degree"]
    n_grid = np.geomspace(n_lo, n_hi, 60)
    colours = [f"C{i % 10}" for i in range(len(chains))]
    for (chain, sb), colour in zip(chains, colours, strict=True):
        idx = [
            i for i, p in enumerate(params) if (p.coeff_mod_bit_sizes, p.scale_bits) == (chain, sb)
        ]
        xs = np.array([params[i].poly_modulus_degree for i in idx], dtype=float)
        ys = y[idx]
        lo = np.array(
            [recs[i]["p10"] if recs[i]["p10"] is not None else ys[k] for k, i in enumerate(idx)],
            dtype=float,
        )
        hi = np.array(
            [recs[i]["p90"] if recs[i]["p90"] is not None else ys[k] for k, i in enumerate(idx)],
            dtype=float,
        )
        yerr = np.vstack([np.clip(ys - lo, 0, None), np.clip(hi - ys, 0, None)])
        label = f"log2Q={sum(chain)}, L={len(chain)}, scale={sb}"
        ax.errorbar(xs, ys, yerr=yerr, fmt="o", color=colour, label=label, capsize=2)
        v = variables_of([CkksParams(round(n), chain, sb) for n in n_grid])
        ax.plot(n_grid, curve.predict(v, extrapolate=True), "-", color=colour, lw=1)
    ax.set_xscale("log", base=2)
    if curve.unit != "bits":
        ax.set_yscale("log")
    ax.set_xlabel("ring degree N")
    ax.set_ylabel(f"{curve.op}: {_AXIS_LABELS.get(curve.unit, curve.unit)}")
    ax.set_title(f"{curve.op}: {curve.formula}")
    ax.legend(fontsize=7)
    pred = curve.predict(variables_of(params), extrapolate=True)
    ax2.plot(y, pred, "o", ms=4)
    lims = [float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))]
    ax2.plot(lims, lims, "k--", lw=1, label="y = x")
    if curve.unit != "bits":
        ax2.set_xscale("log")
        ax2.set_yscale("log")
    unit = curve.unit
    ax2.set_xlabel(f"measured [{unit}]")
    ax2.set_ylabel(f"fitted [{unit}]")
    ax2.set_title(
        f"R^2 = {curve.r2:.4f}, held-out error mean {100 * curve.heldout_rel_err:.1f}% "
        f"(max {100 * curve.heldout_max_rel_err:.1f}%)",
        fontsize=9,
    )
    ax2.legend(fontsize=8)
    return fig
