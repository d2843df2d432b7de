"""The CKKS profiler: real SEAL operations for each catalogue set -> records (spec section 3).

For each parameter set theta it measures, with ``warmup`` discarded runs and ``repeats`` timed
ones (``value`` = the mean over all samples, with the ``median`` and the 10th and 90th
percentiles: per ciphertext where an op is timed per ciphertext, per repetition otherwise;
``repeats`` in a record is that number of samples). The mean, not the median, is what a step
of thousands of ops sums to: op times are right-skewed (p90 up to 1.4x the median, p10 about
0.9x, on this machine), and median-based curves under-predicted measured steps by 5-10 %:

* ``keygen`` [s]: context creation + secret and public key generation (:func:`make_context`);
* ``encrypt`` [s per ciphertext]: encode + symmetric (seeded) encryption + serialization of a
  full-slot vector; each of the ``d_in`` input columns of the block is timed on its own;
* ``encrypt_one`` [s per ciphertext]: the same with a single value in the slots (one token):
  with ``encrypt`` (all ``N/2`` slots) it gives the per-value share of encoding (Python list
  conversion, ``N/2 - 1`` values), so the cost model can price partly filled blocks
  (``ceil(d_in / 4)`` columns timed per repetition);
* ``project_load`` [s per input ciphertext]: the server's time to parse the uploaded
  ciphertext and have SEAL expand its seed (load + save + parse), paid once per input;
* ``project_mac`` [s per multiply-accumulate]: the exact kernel (``d_in * d_out`` ciphertext x
  plaintext-scalar MACs, limb splitting and reductions included), divided by ``d_in * d_out``;
  one record for the base block (``d_in x d_out``, 128 x 128) and one for each block of
  ``kernel_shapes`` (BERT-Tiny's FFN: 128 x 512 and 512 x 128), the kernel alone on the
  uploaded ciphertexts (repeated to ``d_in`` inputs), timed in the first ``shape_repeats``
  repetitions (and run untimed in the warm-up ones): the cost per MAC depends on the block
  shape (limb splitting per input, reductions and output buffers per output);
* ``rescale`` [s per output ciphertext]: SEAL ``rescale_to_next`` of one product, including
  handing the raw product to SEAL (in memory, :mod:`seal_memory`) and writing the result's
  compact bytes into the reply (the block's serialization, per output; the split is exact:
  the kernel reports its stages separately, see :class:`ckks_ops.ProjectTimings`);
* ``decrypt`` [s per ciphertext]: load + decrypt + decode of the ``d_out`` downloaded
  (rescaled) products of a block, as the device decrypts them (one batched decoding,
  :meth:`ckks_ops.CkksKeys.decrypt_many`), divided by ``d_out``; ``decrypt_one`` the same
  for a block of ``ceil(d_out / 4)`` products keeping one value each;
* ``ct_bytes_fresh`` / ``ct_bytes_product`` [bytes]: wire size of an uploaded (fresh, seeded,
  SEAL-serialized) and of a downloaded (product after rescale, compact) ciphertext;
* ``product_out``, ``ct_bytes_unrescaled``, ``decrypt_unrescaled`` (``_one``),
  ``decrypt_il_unrescaled``: the same block with the protocol option ``rescale="device"``
  (``fhe.rescale``): the server's compact serialization of each unrescaled product [s per
  output], its wire size [bytes] and the device's decryption of it (two primes) [s per
  ciphertext; ``_il``: per interleaved partial];
* ``precision_bits`` [bits]: ``-log2(max |Y_enc - (X W + b)|)`` of the projection with
  ``X ~ U(-1, 1) [N/2, d_in]``, ``W ~ N(0, 1/d_in)``, ``b ~ N(0, 0.01)`` (outputs O(1)).

Clock and threads: times are CPU seconds of the calling thread (``time.thread_time``), with
numpy's OpenBLAS limited to one thread while profiling (SEAL is single-threaded), so every
timed op runs entirely in that thread: the records measure the work (CPU seconds; times the
reference frequency = cycles, spec section 3), not the waiting for a CPU that other processes
hold; wall time on a loaded machine is larger. ``threads`` in the records says 1.

Every record carries ``d_in`` and ``d_out``, the block it was measured on, and
:func:`privtuner.fhe_profiling.env.environment` (CPU, frequency, threads,
versions, date, load average), taken when that set was measured. Randomness is seeded.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from privtuner.costmodels.types import CkksParams
from privtuner.errors import ParameterError
from privtuner.fhe_profiling import ckks_ops as ops
from privtuner.fhe_profiling.env import environment, limit_blas_threads, tune_allocator

#: The profiler's clock: CPU seconds of the calling thread (see the module docstring).
_clock = time.thread_time

__all__ = [
    "FULL",
    "QUICK",
    "ProfileConfig",
    "profile_set",
    "quick_sets",
    "run_profile",
    "run_profile_cli",
    "select_sets",
]


@dataclass(frozen=True)
class ProfileConfig:
    """How much to measure per set. ``d_in x d_out`` is the projection block (BERT-Tiny: 128);
    ``kernel_shapes`` the further ``(d_in, d_out)`` blocks whose kernel (``project_mac``) is
    also timed, in the first ``shape_repeats`` timed repetitions (0: none)."""

    repeats: int = 5
    warmup: int = 1
    keygen_repeats: int = 3
    d_in: int = 128
    d_out: int = 128
    seed: int = 0
    kernel_shapes: tuple[tuple[int, int], ...] = ((128, 512), (512, 128))
    shape_repeats: int = 2
    #: interleaved kernel blocks (``d_in`` x ``d_out`` at k = 16: ``d_in / 16`` inputs per
    #: class product) timed besides the base block
    interleaved_shapes: tuple[tuple[int, int], ...] = ((16, 128), (512, 128))

    def __post_init__(self) -> None:
        for name in ("repeats", "keygen_repeats", "d_in", "d_out"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(f"profile {name} must be >= 1 (got {getattr(self, name)})")
        if self.warmup < 0:
            raise ParameterError(f"profile warmup must be >= 0 (got {self.warmup})")
        if self.shape_repeats < 0:
            raise ParameterError(f"profile shape_repeats must be >= 0 (got {self.shape_repeats})")
        for shape in self.kernel_shapes:
            if len(shape) != 2 or min(int(d) for d in shape) < 1:
                raise ParameterError(
                    f"profile kernel_shapes entries must be (d_in, d_out) with both >= 1 "
                    f"(got {shape!r})"
                )


#: The full profile (target <= 20 min for the default catalogue on a 2-core machine).
FULL = ProfileConfig(repeats=5, warmup=1, keygen_repeats=5, shape_repeats=3)
#: ``--quick``: the same measurements, fewer repetitions, on :func:`quick_sets` (<= 3 min).
QUICK = ProfileConfig(repeats=2, warmup=0, keygen_repeats=1, shape_repeats=1)


def quick_sets(catalogue: Sequence[CkksParams]) -> list[CkksParams]:
    """The ``--quick`` subset: for every N, its smallest and largest scale (so every N and
    the whole log2 Q range stay covered for a fit), in catalogue order."""
    keep: set[CkksParams] = set()
    for n in sorted({p.poly_modulus_degree for p in catalogue}):
        same = [p for p in catalogue if p.poly_modulus_degree == n]
        keep.add(min(same, key=lambda p: (p.scale_bits, p.log2_q)))
        keep.add(max(same, key=lambda p: (p.scale_bits, p.log2_q)))
    return [p for p in catalogue if p in keep]


def _summary(values: Sequence[float]) -> tuple[float, float, float, float]:
    """``(mean, median, p10, p90)`` of the samples."""
    arr = np.asarray(values, dtype=float)
    return (
        float(np.mean(arr)),
        float(np.median(arr)),
        float(np.percentile(arr, 10)),
        float(np.percentile(arr, 90)),
    )


def _record(
    op: str,
    params: CkksParams,
    values: Sequence[float],
    unit: str,
    env: dict[str, Any],
    shape: tuple[int, int],
) -> dict[str, Any]:
    mean, med, p10, p90 = _summary(values)
    return {
        "op": op,
        "set_name": params.name,
        "poly_modulus_degree": params.poly_modulus_degree,
        "coeff_mod_bit_sizes": tuple(params.coeff_mod_bit_sizes),
        "scale_bits": params.scale_bits,
        "log2_q": params.log2_q,
        "value": mean,
        "median": med,
        "unit": unit,
        "p10": p10,
        "p90": p90,
        "repeats": len(values),
        **{k: env[k] for k in _ENV_COLUMNS},
        "d_in": int(shape[0]),
        "d_out": int(shape[1]),
    }


_ENV_COLUMNS = (
    "cpu_model",
    "cpu_freq_hz",
    "threads",
    "tenseal_version",
    "numpy_version",
    "python_version",
    "date",
    "load_avg_1m",
)


def profile_set(
    params: CkksParams, cfg: ProfileConfig = FULL, rng: np.random.Generator | None = None
) -> list[dict[str, Any]]:
    """Measure one parameter set; returns one record per op (see the module docstring)."""
    rng = np.random.default_rng(cfg.seed) if rng is None else rng
    env = environment()
    keygen_s: list[float] = []
    keys: ops.CkksKeys | None = None
    for i in range(cfg.warmup + cfg.keygen_repeats):
        t0 = _clock()
        keys = ops.make_context(params)
        dt = _clock() - t0
        if i >= cfg.warmup:
            keygen_s.append(dt)
    assert keys is not None
    pub = ops.load_public_context(keys.public_bytes(), params)

    slots = params.slots
    x = rng.uniform(-1.0, 1.0, size=(slots, cfg.d_in))
    w = rng.normal(0.0, 1.0 / math.sqrt(cfg.d_in), size=(cfg.d_in, cfg.d_out))
    b = rng.normal(0.0, 0.1, size=cfg.d_out)
    ref = x @ w + b
    shapes = [(int(a), int(c)) for a, c in cfg.kernel_shapes if (a, c) != (cfg.d_in, cfg.d_out)]
    shape_w = {
        s: (rng.normal(0.0, 1.0 / math.sqrt(s[0]), size=s), rng.normal(0.0, 0.1, size=s[1]))
        for s in shapes
    }
    shape_mac_s: dict[tuple[int, int], list[float]] = {s: [] for s in shapes}

    enc_s: list[float] = []
    enc_one_s: list[float] = []
    load_s: list[float] = []
    dec_one_s: list[float] = []
    mac_s: list[float] = []
    rescale_s: list[float] = []
    dec_s: list[float] = []
    bits: list[float] = []
    fresh_bytes: list[float] = []
    prod_bytes: list[float] = []
    dev: dict[str, list[float]] = {
        "product_out": [],
        "ct_bytes_unrescaled": [],
        "decrypt_unrescaled": [],
        "decrypt_unrescaled_one": [],
    }
    for i in range(cfg.warmup + cfg.repeats):
        # device: each column encrypted (and serialized) on its own, timed per ciphertext
        cts: list[ops.SealCiphertext] = []
        enc_each: list[float] = []
        for j in range(cfg.d_in):
            t0 = _clock()
            one = ops.encrypt_columns(keys, x[:, j : j + 1])
            enc_each.append(_clock() - t0)
            cts.append(one.blocks[0][0])
        enc = ops.EncryptedColumns(slots, cfg.d_in, [cts])
        one_each: list[float] = []
        for j in range(math.ceil(cfg.d_in / 4)):
            t0 = _clock()
            ops.encrypt_columns(keys, x[:1, j : j + 1])
            one_each.append(_clock() - t0)
        # the server starts from bytes (fresh objects: no cached parse from a previous run)
        served = ops.deserialize_columns(pub, ops.serialize_columns(enc))
        tm = ops.ProjectTimings(clock=_clock)
        y = ops.project(pub, served, w, b, timings=tm)
        if i < cfg.warmup + cfg.shape_repeats:
            # further block shapes: the kernel alone on the uploaded inputs (cycled to d_in)
            raws = [ct.raw(pub) for ct in served.blocks[0]]
            for s, (ws, bs) in shape_w.items():
                xs = [raws[k % len(raws)] for k in range(s[0])]
                t0 = _clock()
                ops._mac_raw(pub, xs, ws, bs)
                if i >= cfg.warmup:
                    shape_mac_s[s].append((_clock() - t0) / (s[0] * s[1]))
        t0 = _clock()
        down = ops.serialize_columns(y)
        ser_each = (_clock() - t0) / max(1, y.n_ciphertexts)
        back = ops.deserialize_columns(keys, down)
        # one block as the device decrypts it (batched decoding), per output ciphertext
        got, dec_each, dec_one_each = _time_decrypt(keys, back, cfg.d_out)
        # rescale="device": the products written unrescaled, decrypted at two primes
        tm_dev = ops.ProjectTimings(clock=_clock)
        y_dev = ops.project(pub, served, w, b, timings=tm_dev, rescale="device")
        t0 = _clock()
        down_dev = ops.serialize_columns(y_dev)
        ser_dev_each = (_clock() - t0) / max(1, y_dev.n_ciphertexts)
        back_dev = ops.deserialize_columns(keys, down_dev)
        _, dec_dev, dec_dev_one = _time_decrypt(keys, back_dev, cfg.d_out)
        if i < cfg.warmup:
            continue
        # an output's server cost: its rescale (none for product_out) and its wire bytes
        # written into the reply (SealCiphertext.write_into)
        dev["product_out"].extend(t + ser_dev_each for t in tm_dev.rescale_each_s)
        dev["ct_bytes_unrescaled"].extend(ct.nbytes for blk in y_dev.blocks for ct in blk)
        dev["decrypt_unrescaled"].extend(dec_dev)
        dev["decrypt_unrescaled_one"].extend(dec_dev_one)
        enc_s.extend(enc_each)
        enc_one_s.extend(one_each)
        dec_one_s.extend(dec_one_each)
        load_s.append(tm.load_s / cfg.d_in)
        mac_s.append(tm.mac_s / (cfg.d_in * cfg.d_out))
        rescale_s.extend(t + ser_each for t in tm.rescale_each_s)
        dec_s.extend(dec_each)
        err = float(np.max(np.abs(got - ref)))
        bits.append(-math.log2(err) if err > 0 else 64.0)
        fresh_bytes.extend(ct.nbytes for blk in enc.blocks for ct in blk)
        prod_bytes.extend(ct.nbytes for blk in y.blocks for ct in blk)
    base = (cfg.d_in, cfg.d_out)
    il = _profile_interleaved(params, cfg, keys, pub, rng)
    return [
        *(_record(op, params, vals, unit, env, shape) for op, unit, shape, vals in il),
        _record("keygen", params, keygen_s, "s", env, base),
        _record("encrypt", params, enc_s, "s", env, base),
        _record("encrypt_one", params, enc_one_s, "s", env, base),
        _record("decrypt", params, dec_s, "s", env, base),
        _record("decrypt_one", params, dec_one_s, "s", env, base),
        _record("project_load", params, load_s, "s", env, base),
        _record("project_mac", params, mac_s, "s", env, base),
        *(
            _record("project_mac", params, vals, "s", env, s)
            for s, vals in shape_mac_s.items()
            if vals
        ),
        _record("rescale", params, rescale_s, "s", env, base),
        _record("ct_bytes_fresh", params, fresh_bytes, "bytes", env, base),
        _record("ct_bytes_product", params, prod_bytes, "bytes", env, base),
        *(
            _record(op, params, vals, "bytes" if op.startswith("ct_bytes") else "s", env, base)
            for op, vals in dev.items()
        ),
        _record("precision_bits", params, bits, "bits", env, base),
    ]


def _time_decrypt(
    keys: ops.CkksKeys, back: ops.EncryptedColumns, d_out: int
) -> tuple[Any, list[float], list[float]]:
    """Decrypt one column block as the device does (batched decoding): the values, the time
    per output ciphertext, and the time per ciphertext of its first ``ceil(d_out / 4)`` kept
    with one value each (a block of one token)."""
    t0 = _clock()
    got = ops.decrypt_columns(keys, back)
    each = [(_clock() - t0) / d_out]
    few = back.blocks[0][: math.ceil(d_out / 4)]
    t0 = _clock()
    ops.decrypt_columns(keys, ops.EncryptedColumns(1, len(few), [list(few)]))
    return got, each, [(_clock() - t0) / len(few)]


def _profile_interleaved(
    params: CkksParams,
    cfg: ProfileConfig,
    keys: ops.CkksKeys,
    pub: ops.PublicCkks,
    rng: np.random.Generator,
) -> list[tuple[str, str, tuple[int, int], list[float]]]:
    """The interleaved packing's ops (:mod:`interleaved`) at ``k = 16`` features per ciphertext
    (``N/8`` tokens, all slots full): ``encrypt_il`` [s per ciphertext: complex encode,
    seeded encryption, serialization], ``project_il`` [s per output partial: the kernel
    alone, per block of ``cfg.d_in x cfg.d_out`` and of each ``interleaved_shapes`` block, the
    inputs cycled], ``decrypt_il`` [s per partial: load, decrypt, complex decode, sum],
    ``decrypt_il_unrescaled`` (the same for the partials of ``rescale="device"``),
    ``precision_bits_il``. Returns ``(op, unit, shape, samples)``."""
    from privtuner.costmodels.fitting import INTERLEAVED_PROFILE_K
    from privtuner.fhe_profiling import interleaved as il

    k = INTERLEAVED_PROFILE_K
    tokens = 2 * params.slots // k
    d_in, d_out = cfg.d_in, cfg.d_out
    x = rng.uniform(-1.0, 1.0, size=(tokens, d_in))
    w = rng.normal(0.0, 1.0 / math.sqrt(d_in), size=(d_in, d_out))
    b = rng.normal(0.0, 0.1, size=d_out)
    ref = x @ w + b
    layout = il.InterleavedLayout(tokens, d_in, params.slots, k)
    shapes = [(int(a), int(c)) for a, c in cfg.interleaved_shapes if (a, c) != (d_in, d_out)]
    shape_w = {s: rng.normal(0.0, 1.0 / math.sqrt(s[0]), size=s) for s in shapes}
    samples: dict[tuple[str, tuple[int, int]], list[float]] = {}

    def add(op: str, shape: tuple[int, int], value: float) -> None:
        samples.setdefault((op, shape), []).append(value)

    for i in range(cfg.warmup + cfg.repeats):
        timed = i >= cfg.warmup
        t0 = _clock()
        enc = il.encrypt_interleaved(keys, x, layout=layout)
        t_enc = (_clock() - t0) / enc.n_ciphertexts
        served = il.deserialize_interleaved(pub, il.serialize_interleaved(enc))
        tm = ops.ProjectTimings(clock=_clock)
        y = il.project_interleaved(pub, served, w, b, timings=tm)
        n_out = y.n_ciphertexts
        if i < cfg.warmup + cfg.shape_repeats:
            raws = [ct.raw(pub) for ct in served.blocks[0]]
            for s, ws in shape_w.items():
                xs = [raws[j % len(raws)] for j in range(math.ceil(s[0] / k))]
                t1 = _clock()
                outs = il._mac_block(pub, xs, ws, None, k)
                if timed:
                    add("project_il", s, (_clock() - t1) / len(outs))
        back = il.deserialize_interleaved(keys, il.serialize_interleaved(y))
        t2 = _clock()
        got = il.decrypt_interleaved(keys, back)
        t_dec = (_clock() - t2) / n_out
        y_dev = il.project_interleaved(pub, served, w, b, rescale="device")
        back_dev = il.deserialize_interleaved(keys, il.serialize_interleaved(y_dev))
        t3 = _clock()
        il.decrypt_interleaved(keys, back_dev)
        t_dec_dev = (_clock() - t3) / n_out
        if not timed:
            continue
        add("decrypt_il_unrescaled", (d_in, d_out), t_dec_dev)
        add("encrypt_il", (d_in, d_out), t_enc)
        add("project_il", (d_in, d_out), tm.mac_s / n_out)
        add("decrypt_il", (d_in, d_out), t_dec)
        err = float(np.max(np.abs(got - ref)))
        add("precision_bits_il", (d_in, d_out), -math.log2(err) if err > 0 else 64.0)
    units = {"precision_bits_il": "bits"}
    return [(op, units.get(op, "s"), shape, vals) for (op, shape), vals in samples.items()]


def select_sets(names: Sequence[str] | None = None, quick: bool = False) -> list[CkksParams]:
    """The default catalogue (its :func:`quick_sets` if ``quick``), or the named sets
    (unknown names raise, listing the valid ones)."""
    from privtuner.costmodels.catalogue import generate_catalogue

    catalogue = generate_catalogue()
    if not names:
        return quick_sets(catalogue) if quick else list(catalogue)
    by_name = {p.name: p for p in catalogue}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ParameterError(
            f"unknown catalogue set(s) {unknown}; valid: {', '.join(sorted(by_name))}"
        )
    return [by_name[n] for n in names]


def _write_parquet(records: Sequence[dict[str, Any]], path: Path) -> Path | None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    from privtuner.costmodels.fitting import RECORD_COLUMNS

    cols: dict[str, list[Any]] = {c: [] for c in RECORD_COLUMNS}
    for r in records:
        for c in RECORD_COLUMNS:
            v = r.get(c)
            if c == "coeff_mod_bit_sizes":
                v = "-".join(str(int(bit)) for bit in v or ())
            cols[c].append(v)
    pq.write_table(pa.table(cols), path)
    return path


def run_profile(
    out_dir: str | Path,
    quick: bool = False,
    sets: Sequence[str] | Sequence[CkksParams] | None = None,
    repeats: int | None = None,
    progress: bool = True,
    config: ProfileConfig | None = None,
    on_set: Callable[[CkksParams, list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Profile the catalogue (or ``sets``: names or :class:`CkksParams`) into ``out_dir``.

    Writes ``records.csv`` (columns :data:`~privtuner.costmodels.fitting.RECORD_COLUMNS`),
    ``records.parquet`` when pyarrow is installed, and ``profile_meta.json`` (configuration,
    environment, elapsed seconds). Returns the records. ``quick`` uses :data:`QUICK` on
    :func:`quick_sets` (unless ``sets`` is given); ``repeats`` overrides the number of timed
    repetitions. Calls :func:`env.tune_allocator` first (process-wide: freed memory stays in
    the heap, so no timed op pays for faulting fresh pages in).
    """
    from privtuner.costmodels.fitting import write_records

    allocator = tune_allocator()  # stable kernel timings: see env.tune_allocator
    cfg = config if config is not None else (QUICK if quick else FULL)
    if repeats is not None:
        cfg = replace(cfg, repeats=int(repeats))
    if sets and all(isinstance(s, CkksParams) for s in sets):
        params = [s for s in sets if isinstance(s, CkksParams)]
    else:
        params = select_sets([str(s) for s in sets] if sets else None, quick=quick)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    records: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    iterator: Any = params
    if progress:
        from tqdm import tqdm

        iterator = tqdm(params, desc="profile", unit="set")
    per_set_s: dict[str, float] = {}
    for p in iterator:
        if progress:
            iterator.set_postfix_str(p.name)
        t0 = time.perf_counter()
        with limit_blas_threads(1):
            recs = profile_set(p, cfg, rng)
        per_set_s[p.name] = time.perf_counter() - t0
        records.extend(recs)
        write_records(records, out / "records.csv")  # partial results survive an interrupt
        if on_set is not None:
            on_set(p, recs)
    elapsed = time.perf_counter() - t_start
    parquet = _write_parquet(records, out / "records.parquet")
    meta = {
        "config": asdict(cfg),
        "quick": quick,
        "sets": [p.name for p in params],
        "elapsed_s": elapsed,
        "per_set_s": per_set_s,
        "clock": "time.thread_time (CPU seconds of the profiling thread), OpenBLAS 1 thread",
        "environment_end": environment(),
        "allocator": allocator,
        "records_csv": "records.csv",
        "records_parquet": parquet.name if parquet else None,
    }
    (out / "profile_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return records


def run_profile_cli(args: argparse.Namespace) -> int:
    """``privtuner profile [--quick] --out DIR [--sets NAME ...] [--repeats N]``.

    Prints one JSON summary line (records path, number of records, elapsed seconds).
    """
    out = Path(args.out)
    t0 = time.perf_counter()
    records = run_profile(
        out,
        quick=bool(getattr(args, "quick", False)),
        sets=getattr(args, "sets", None),
        repeats=getattr(args, "repeats", None),
        progress=True,
    )
    summary = {
        "records_csv": str(out / "records.csv"),
        "records_parquet": str(out / "records.parquet")
        if (out / "records.parquet").exists()
        else None,
        "n_records": len(records),
        "sets": sorted({r["set_name"] for r in records}),
        "elapsed_s": round(time.perf_counter() - t0, 3),
    }
    print(json.dumps(summary))
    return 0
