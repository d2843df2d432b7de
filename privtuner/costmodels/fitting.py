"""Fitting profiler records into per-operation cost curves (spec section 3).

Records format (written by the TenSEAL profiler, read here): CSV, one row per (op, parameter
set), with the columns :data:`RECORD_COLUMNS`.
"""

from __future__ import annotations

#: Operation names a records file may contain, with the unit of their ``value``.
RECORD_OPS: dict[str, str] = {
    "keygen": "s",
    "encrypt": "s",
    "decrypt": "s",
    "project_mac": "s",
    "rescale": "s",
    "ct_bytes_fresh": "bytes",
    "ct_bytes_product": "bytes",
    "precision_bits": "bits",
}

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
)
