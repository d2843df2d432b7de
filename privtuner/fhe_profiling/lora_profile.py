"""Profiling of real encrypted BERT-Tiny LoRA training steps, per CKKS parameter set.

For each catalogue set theta, one training step of the split protocol (``protocol.py``, spec
section 1) on a real batch, and the same step in clear on the same batch:

* wall-time split [s]: device ``encrypt`` (encode + encrypt + SEAL save), ``serialize``,
  ``deserialize``, ``decrypt`` (decrypt + decode), ``server`` (the server's handling of the
  projection messages, ``server_project`` of it in computing the products; writing their
  bytes into the reply is serialization, not ``server_project``), ``transport`` and
  ``device_clear`` (autograd, LoRA, non-linearities, loss, AdamW), ``total``;
* bytes up and down per step (projection messages), ciphertexts up and down;
* precision: max abs logit error vs plaintext, max normwise relative error of logits, loss
  and every LoRA/head gradient (:func:`protocol.compare_steps`);
* peak resident memory [bytes] of each party (server in its own process by default).

Clocks (``clock`` of :func:`profile_step`): ``"wall"`` (default) times the step as it runs
(``time.perf_counter``, server in its own process); ``"cpu"`` runs both parties in one
thread (in-process transport), with numpy's OpenBLAS and torch limited to one thread, and
times every phase with ``time.thread_time``, the CPU-seconds clock of the CKKS profiler
(:mod:`privtuner.fhe_profiling.profiler`). Only ``"cpu"`` records are comparable with the
fitted cost model (its per-op costs are single-thread CPU seconds, cycles = seconds x f_ref,
spec section 3) on a machine shared with other work, where wall time includes waiting for
a CPU. ``clock`` is recorded in every record.

:func:`compare_with_cost_model` checks the fitted cost model of spec section 3 (op counts of
``costmodels.workload`` x fitted per-op seconds/bytes) against these measurements.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import random
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from privtuner.costmodels.types import CkksParams
from privtuner.errors import CostModelError, ParameterError, ScenarioError

#: Target relative error of the cost model vs a measured step (issue 4).
COST_MODEL_TOLERANCE = 0.15

#: Clocks :func:`profile_step` can time a step with (see the module docstring).
CLOCKS: tuple[str, ...] = ("wall", "cpu")

#: Columns of the records CSV, in order.
RECORD_COLUMNS: tuple[str, ...] = (
    "set_name",
    "packing",
    "rescale",
    "server_workers",
    "poly_modulus_degree",
    "coeff_mod_bit_sizes",
    "scale_bits",
    "log2_q",
    "tokens",
    "batch_size",
    "seq_len",
    "num_layers",
    "hidden_size",
    "intermediate_size",
    "num_heads",
    "vocab_size",
    "lora_rank",
    "lora_alpha",
    "lora_targets",
    "data_source",
    "encrypt_s",
    "serialize_s",
    "deserialize_s",
    "decrypt_s",
    "server_s",
    "server_project_s",
    "transport_s",
    "device_clear_s",
    "total_s",
    "plain_step_s",
    "keygen_s",
    "bytes_up",
    "bytes_down",
    "setup_bytes_up",
    "ciphertexts_up",
    "ciphertexts_down",
    "projections_forward",
    "projections_backward",
    "logits_max_abs_err",
    "logits_rel_err",
    "loss_rel_err",
    "grad_max_rel_err",
    "max_rel_err",
    "precision_bits",
    "loss",
    "device_peak_rss_bytes",
    "server_peak_rss_bytes",
    "separate_processes",
    "seed",
    "clock",
    "warmup_steps",
    "timed_steps",
    "fresh_process",
    "allocator",
    "cpu_model",
    "cpu_freq_hz",
    "cpu_count",
    "threads",
    "torch_threads",
    "load_avg_1m",
    "python_version",
    "tenseal_version",
    "torch_version",
    "numpy_version",
    "date",
)

_FALLBACK_WORDS = {
    1: "good great fine lovely brilliant moving funny charming wonderful superb".split(),
    0: "bad dull awful boring tedious weak poor messy stale clumsy".split(),
    -1: "the movie film story plot acting cast is was a an and but with its this".split(),
}


def find_shared_data() -> Path | None:
    """``$PRIVTUNER_SHARED_DATA`` or ``<repo>/../shared/data`` if it exists (optional data)."""
    env = os.environ.get("PRIVTUNER_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2].parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


def generated_corpus(n: int, seed: int) -> tuple[list[str], list[int]]:
    """``n`` synthetic review-like sentences with labels (a sentiment word decides the label)."""
    rng = np.random.default_rng(seed)
    sentences, labels = [], []
    for _ in range(n):
        label = int(rng.integers(0, 2))
        length = int(rng.integers(4, 14))
        words = list(rng.choice(_FALLBACK_WORDS[-1], size=length))
        words.insert(int(rng.integers(0, length + 1)), str(rng.choice(_FALLBACK_WORDS[label])))
        sentences.append(" ".join(words))
        labels.append(label)
    return sentences, labels


def load_sentences(
    n: int, seed: int, tsv_path: str | Path | None = None
) -> tuple[list[str], list[int], str]:
    """``n`` labelled sentences drawn (seeded) from an SST-2 ``train.tsv`` (``label\\tsentence``
    or ``sentence\\tlabel`` with a header), else generated: ``(sentences, labels, source)``."""
    path = Path(tsv_path) if tsv_path is not None else None
    if path is None:
        shared = find_shared_data()
        if shared is not None and (shared / "sst2" / "train.tsv").is_file():
            path = shared / "sst2" / "train.tsv"
    if path is None:
        s, lab = generated_corpus(n, seed)
        return s, lab, "generated"
    if not path.is_file():
        raise ScenarioError([f"data file not found (got {str(path)!r})"])
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or not {"sentence", "label"} <= set(rows[0]):
        raise ScenarioError(["a TSV with the columns 'sentence' and 'label' is needed"], str(path))
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(rows), size=n, replace=len(rows) < n)
    return [rows[i]["sentence"] for i in idx], [int(rows[i]["label"]) for i in idx], str(path)


def make_batch(
    tokens: int,
    seq_len: int,
    seed: int,
    vocab_path: str | Path | None = None,
    tsv_path: str | Path | None = None,
    vocab_size: int | None = None,
) -> dict[str, Any]:
    """A batch of ``tokens // seq_len`` sequences of ``seq_len`` tokens (padded/truncated).

    Tokenizer: ``vocab_path``, else the shared uncased vocab, else a vocab generated from the
    fallback lexicon. Returns ``input_ids``, ``attention_mask``, ``labels`` (torch tensors),
    ``batch_size``, ``source``. Token ids must be below ``vocab_size`` when given.
    """
    import torch

    from privtuner.fhe_profiling import bert

    if seq_len < 2 or tokens < seq_len or tokens % seq_len:
        raise ScenarioError(
            [f"tokens: must be a positive multiple of seq_len={seq_len} >= 2 (got {tokens})"]
        )
    batch_size = tokens // seq_len
    sentences, labels, source = load_sentences(batch_size, seed, tsv_path)
    vp = Path(vocab_path) if vocab_path is not None else None
    if vp is None:
        shared = find_shared_data()
        if shared is not None and (shared / "bert-uncased" / "vocab.txt").is_file():
            vp = shared / "bert-uncased" / "vocab.txt"
    if vp is None:
        tmp = Path(tempfile.mkdtemp(prefix="privtuner-vocab-"))
        words = sorted({w for s in sentences for w in s.lower().split()})
        vp = bert.write_vocab(tmp / "vocab.txt", words)
    tok = bert.load_tokenizer(vp)
    ids, mask = bert.encode_batch(tok, sentences, seq_len)
    if vocab_size is not None and int(ids.max()) >= vocab_size:
        raise ScenarioError(
            [f"vocab: token id {int(ids.max())} >= the model's vocab_size={vocab_size}"]
        )
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.tensor(labels, dtype=torch.long),
        "batch_size": batch_size,
        "source": source,
    }


def default_params(catalogue: Sequence[CkksParams] | None = None) -> CkksParams:
    """The default set: N = 8192 with the largest scale in the catalogue."""
    if catalogue is None:
        from privtuner.costmodels.catalogue import generate_catalogue

        catalogue = generate_catalogue()
    cands = [p for p in catalogue if p.poly_modulus_degree == 8192]
    if not cands:
        raise ParameterError("the catalogue has no N=8192 set (the default for LoRA profiling)")
    return max(cands, key=lambda p: (p.scale_bits, p.log2_q))


def select_sets(names: Iterable[str] | None, quick: bool = False) -> list[CkksParams]:
    """Catalogue sets by name (``None``: all, or only :func:`default_params` if ``quick``)."""
    from privtuner.costmodels.catalogue import catalogue_by_name, generate_catalogue

    cat = generate_catalogue()
    if names is None:
        return [default_params(cat)] if quick else list(cat)
    by_name = catalogue_by_name(cat)
    names = list(names)
    bad = [n for n in names if n not in by_name]
    if bad:
        raise ParameterError(f"--sets: unknown catalogue set(s) {bad}; valid: {', '.join(by_name)}")
    return [by_name[n] for n in names]


def environment() -> dict[str, Any]:
    """Machine and library versions recorded with each measurement (``env.environment()``
    of the CKKS profiler, plus the CPU count and torch)."""
    import torch

    from privtuner.fhe_profiling.env import environment as ckks_env

    return {
        **ckks_env(),
        "cpu_count": os.cpu_count() or 1,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }


def profile_step(
    params: CkksParams,
    model: Any,
    weights: Any,
    batch: dict[str, Any],
    *,
    separate_process: bool = True,
    lr: float = 1e-3,
    seed: int = 0,
    clock: str = "wall",
    warmup_steps: int = 0,
    timed_steps: int = 1,
    packing: str = "interleaved",
    server_workers: int = 1,
    rescale: str = "server",
) -> dict[str, Any]:
    """One encrypted step with ``params`` vs the plaintext step: a record (:data:`RECORD_COLUMNS`).

    ``packing``: the protocol's packing (:mod:`packing`: ``interleaved`` or ``column``);
    ``server_workers``: processes the server splits each projection's outputs over;
    ``rescale``: who rescales the products (:data:`ckks_ops.RESCALE_AT`, protocol option).

    ``model`` is copied (the caller's is not trained). ``clock``: ``"wall"`` or ``"cpu"``
    (single-thread CPU seconds, both parties in this thread; needs ``separate_process=False``).
    ``warmup_steps`` untimed encrypted steps (same set and batch, fresh keys) run first: the
    first step of a process also pays one-time costs (lazy imports, torch and SEAL
    initialisation, growing the heap to the set's working set) that a long-running device
    and server pay once, not per step. ``timed_steps`` steps are then timed and every phase
    time in the record is their mean (the rest is from the last one).
    """
    from privtuner.fhe_profiling import protocol as proto

    if clock not in CLOCKS:
        raise ParameterError(f"clock: unknown clock {clock!r}; valid: {', '.join(CLOCKS)}")
    if clock == "cpu" and separate_process:
        raise ParameterError(
            "clock='cpu' times both parties in one thread: use separate_process=False "
            "(profile-lora --in-process)"
        )
    _check_step_counts(warmup_steps, timed_steps)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    ref = proto.plain_step(copy.deepcopy(model), weights, ids, mask, labels)

    if clock == "cpu":

        def one_step() -> tuple[Any, Any]:
            return _cpu_clock_step(
                params, weights, copy.deepcopy(model), lr, ids, mask, labels, packing, rescale
            )

        for _ in range(warmup_steps):
            one_step()
        timed = [one_step() for _ in range(timed_steps)]
    else:
        # One server for all steps (a long-running server keeps its per-weight tables), a new
        # device session (fresh keys, public context uploaded again) per step.
        transport: Any = (
            proto.ProcessTransport(weights, server_workers=server_workers)
            if separate_process
            else proto.InProcessTransport(proto.ProjectionServer(weights, workers=server_workers))
        )

        def session_step() -> tuple[Any, Any]:
            client = proto.DeviceClient(
                params, transport, copy.deepcopy(model), lr=lr, packing=packing, rescale=rescale
            )
            return client.train_step(ids, mask, labels), client

        with transport:
            for _ in range(warmup_steps):
                session_step()
            timed = [session_step() for _ in range(timed_steps)]
    res, client = timed[-1]
    # every phase time: the mean over the timed steps (counts and bytes are identical)
    res.timings_s = {k: float(np.mean([r.timings_s[k] for r, _ in timed])) for k in res.timings_s}
    cmp = proto.compare_steps(res, ref)
    cfg, lora = model.config, model.lora
    t = res.timings_s
    err = cmp["logits_max_abs_err"]
    rec: dict[str, Any] = {
        "set_name": params.name,
        "packing": packing,
        "rescale": rescale,
        "server_workers": int(server_workers),
        "poly_modulus_degree": params.poly_modulus_degree,
        "coeff_mod_bit_sizes": "-".join(str(b) for b in params.coeff_mod_bit_sizes),
        "scale_bits": params.scale_bits,
        "log2_q": params.log2_q,
        "tokens": int(ids.numel()),
        "batch_size": int(ids.shape[0]),
        "seq_len": int(ids.shape[1]),
        "num_layers": cfg.num_hidden_layers,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_heads": cfg.num_attention_heads,
        "vocab_size": cfg.vocab_size,
        "lora_rank": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_targets": "+".join(lora.targets),
        "data_source": batch.get("source", ""),
        **{
            f"{k}_s": float(t[k])
            for k in (
                "encrypt",
                "serialize",
                "deserialize",
                "decrypt",
                "server",
                "server_project",
                "transport",
                "device_clear",
                "total",
            )
        },
        "plain_step_s": float(ref.timings_s["total"]),
        "keygen_s": client.keygen_s,
        "bytes_up": res.bytes_up,
        "bytes_down": res.bytes_down,
        "setup_bytes_up": client.setup_bytes_up,
        "ciphertexts_up": res.ciphertexts_up,
        "ciphertexts_down": res.ciphertexts_down,
        "projections_forward": res.projections_forward,
        "projections_backward": res.projections_backward,
        **{
            k: cmp[k]
            for k in (
                "logits_max_abs_err",
                "logits_rel_err",
                "loss_rel_err",
                "grad_max_rel_err",
                "max_rel_err",
            )
        },
        "precision_bits": -math.log2(err) if err > 0 else float("inf"),
        "loss": res.loss,
        "device_peak_rss_bytes": res.peak_rss_bytes["device"],
        "server_peak_rss_bytes": res.peak_rss_bytes["server"],
        "separate_processes": bool(separate_process),
        "seed": seed,
        "clock": clock,
        "warmup_steps": int(warmup_steps),
        "timed_steps": int(timed_steps),
        "fresh_process": False,
        **environment(),
    }
    rec["grad_rel_err"] = {k.split(":", 1)[1]: v for k, v in cmp.items() if ":" in k}
    return rec


def _check_step_counts(warmup_steps: int, timed_steps: int) -> None:
    if warmup_steps < 0:
        raise ParameterError(f"warmup_steps must be >= 0 (got {warmup_steps})")
    if timed_steps < 1:
        raise ParameterError(f"timed_steps must be >= 1 (got {timed_steps})")


def profile_lora(
    sets: Sequence[CkksParams],
    *,
    tokens: int = 512,
    seq_len: int = 64,
    seed: int = 0,
    config_path: str | Path | None = None,
    weights_dir: str | Path | None = None,
    vocab_path: str | Path | None = None,
    tsv_path: str | Path | None = None,
    lora_rank: int = 8,
    lora_alpha: float = 16.0,
    lora_targets: Sequence[str] = ("query", "value"),
    separate_process: bool = True,
    progress: bool = True,
    clock: str = "wall",
    warmup_steps: int = 0,
    fresh_process: bool = False,
    timed_steps: int = 1,
    packings: Sequence[str] = ("interleaved",),
    server_workers: int = 1,
    rescale: str = "server",
) -> list[dict[str, Any]]:
    """One encrypted step per set in ``sets`` on the same model and batch; returns records.

    The model is BERT-Tiny from ``config_path`` (default: built-in values) with seeded random
    weights, or real weights from ``weights_dir``; the batch is ``tokens // seq_len``
    sentences of SST-2 (or generated text). LoRA ``B`` starts at ``N(0, 0.02^2)`` (not zero)
    so that every LoRA gradient is non-zero and checked. ``clock``, ``warmup_steps`` and
    ``timed_steps``: see :func:`profile_step`. ``fresh_process``: measure each set in a new
    (spawned) Python process that rebuilds the same seeded model and batch, so no set
    inherits the heap, SEAL memory pools or caches of the sets before it (measured on this
    machine: the fourth set of one process ran 15-30 % slower than the same set in a new
    process). ``packings``: each set is measured once per packing (:mod:`packing`).
    ``rescale``: who rescales the server's products (:data:`ckks_ops.RESCALE_AT`).
    """
    from tqdm.auto import tqdm

    from privtuner.costmodels.model import check_rescale
    from privtuner.fhe_profiling.packing import check_packing

    if not sets:
        raise ParameterError("no CKKS parameter set to profile")
    if not packings:
        raise ParameterError("no packing to profile")
    for name in packings:
        check_packing(name)
    check_rescale(rescale)
    _check_step_counts(warmup_steps, timed_steps)  # before any process is spawned
    setup: dict[str, Any] = {
        "tokens": tokens,
        "seq_len": seq_len,
        "seed": seed,
        "config_path": None if config_path is None else str(config_path),
        "weights_dir": None if weights_dir is None else str(weights_dir),
        "vocab_path": None if vocab_path is None else str(vocab_path),
        "tsv_path": None if tsv_path is None else str(tsv_path),
        "lora_rank": lora_rank,
        "lora_alpha": lora_alpha,
        "lora_targets": tuple(lora_targets),
    }
    step_kw: dict[str, Any] = {
        "server_workers": server_workers,
        "rescale": rescale,
        "separate_process": separate_process,
        "seed": seed,
        "clock": clock,
        "warmup_steps": warmup_steps,
        "timed_steps": timed_steps,
    }
    records = []
    jobs = [(p, name) for p in sets for name in packings]
    bar = tqdm(jobs, desc="profile-lora", unit="step", disable=not progress)
    if fresh_process:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        for p, name in bar:
            bar.set_postfix_str(f"{p.name} {name}")
            kw = {**step_kw, "packing": name}
            with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
                records.append(ex.submit(_profile_one, p, setup, kw).result())
        return records
    model, weights, batch = _setup_model_and_batch(**setup)
    for p, name in bar:
        bar.set_postfix_str(f"{p.name} {name}")
        records.append(profile_step(p, model, weights, batch, **step_kw, packing=name))
    return records


def _setup_model_and_batch(
    *,
    tokens: int,
    seq_len: int,
    seed: int,
    config_path: str | None,
    weights_dir: str | None,
    vocab_path: str | None,
    tsv_path: str | None,
    lora_rank: int,
    lora_alpha: float,
    lora_targets: tuple[str, ...],
) -> tuple[Any, Any, dict[str, Any]]:
    """The seeded BERT-Tiny + LoRA model, its server weights and the batch (deterministic:
    the same arguments give the same model and batch in any process). Tunes the allocator
    (:func:`env.tune_allocator`, as the CKKS profiler)."""
    import torch

    from privtuner.fhe_profiling import bert
    from privtuner.fhe_profiling.env import tune_allocator

    tune_allocator()
    random.seed(seed)
    torch.manual_seed(seed)
    lora = bert.LoraConfig(
        rank=lora_rank, alpha=lora_alpha, targets=tuple(lora_targets), b_init_std=0.02
    )
    if weights_dir is not None:
        model, weights = bert.load_hf_weights(weights_dir, lora, seed=seed)
    else:
        model, weights = bert.init_model(bert.load_config(config_path), lora, seed=seed)
    batch = make_batch(tokens, seq_len, seed, vocab_path, tsv_path, model.config.vocab_size)
    return model, weights, batch


def _profile_one(
    params: CkksParams, setup: dict[str, Any], step_kw: dict[str, Any]
) -> dict[str, Any]:
    """One set measured in this (fresh) process: :func:`profile_lora` with ``fresh_process``."""
    model, weights, batch = _setup_model_and_batch(**setup)
    rec = profile_step(params, model, weights, batch, **step_kw)
    rec["fresh_process"] = True
    return rec


def _cpu_clock_step(
    params: CkksParams,
    weights: Any,
    model: Any,
    lr: float,
    ids: Any,
    mask: Any,
    labels: Any,
    packing: str = "interleaved",
    rescale: str = "server",
) -> tuple[Any, Any]:
    """One encrypted step with both parties in this thread, timed in CPU seconds.

    Clock ``time.thread_time`` (CPU seconds of this thread, as the CKKS profiler), OpenBLAS
    and torch limited to one thread for the step (so all work runs in this thread). Phases as
    :class:`protocol.StepResult` (``encrypt``, ``serialize``, ``deserialize``, ``decrypt``,
    ``server`` = CPU time in the server's handling of the projection messages, ``transport``
    = round trip minus server, ``device_clear`` = the rest, ``total``). Returns
    ``(StepResult, client)``.
    """
    import time

    import torch

    from privtuner.fhe_profiling import protocol as proto
    from privtuner.fhe_profiling.env import limit_blas_threads

    class CpuClockServer(proto.ProjectionServer):
        """Adds ``cpu_project_s``: thread CPU seconds in the handling of projection messages."""

        def handle(self, message: proto.Message) -> proto.Message:
            if message[:4] != proto.MSG_PROJECT:
                return super().handle(message)
            t0 = time.thread_time()
            reply = super().handle(message)
            self._timers["cpu_project_s"] += time.thread_time() - t0
            return reply

    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with limit_blas_threads(1), proto.InProcessTransport(CpuClockServer(weights)) as transport:
            client = proto.DeviceClient(
                params,
                transport,
                model,
                lr=lr,
                packing=packing,
                rescale=rescale,
                clock=time.thread_time,
            )
            t0 = time.thread_time()
            res = client.train_step(ids, mask, labels)
            total = time.thread_time() - t0
            srv = client._server_stats(reset=False)
    finally:
        torch.set_num_threads(old_threads)
    tm = client._timers
    server = float(srv.get("cpu_project_s", 0.0))
    crypto = sum(tm[k] for k in ("encrypt", "serialize", "deserialize", "decrypt"))
    res.timings_s.update(
        encrypt=tm["encrypt"],
        serialize=tm["serialize"],
        deserialize=tm["deserialize"],
        decrypt=tm["decrypt"],
        server=server,
        transport=max(tm["round_trip"] - server, 0.0),
        device_clear=total - crypto - tm["round_trip"],
        total=total,
    )
    return res, client


def write_records(records: Sequence[dict[str, Any]], out_dir: str | Path) -> dict[str, Path]:
    """``lora_records.csv`` (:data:`RECORD_COLUMNS`) and ``lora_records.json`` (all fields)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "lora_records.csv", out / "lora_records.json"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(RECORD_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow(r)
    json_path.write_text(json.dumps(list(records), indent=2, default=str))
    return {"csv": csv_path, "json": json_path}


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records from ``lora_records.json`` or ``lora_records.csv``."""
    p = Path(path)
    if p.suffix == ".json":
        data = json.loads(p.read_text())
        return list(data)
    with p.open(newline="") as f:
        return [dict(r) for r in csv.DictReader(f)]


# --------------------------------------------------------------------------- cost model check


def _record_params(rec: dict[str, Any]) -> CkksParams:
    bits = rec["coeff_mod_bit_sizes"]
    if isinstance(bits, str):
        bits = [int(b) for b in bits.split("-")]
    return CkksParams(
        int(rec["poly_modulus_degree"]), tuple(int(b) for b in bits), int(rec["scale_bits"])
    )


def _record_workload(rec: dict[str, Any]) -> Any:
    from privtuner.scenario.schema import WorkloadSpec

    return WorkloadSpec.model_validate(
        {
            "num_layers": int(rec["num_layers"]),
            "hidden_size": int(rec["hidden_size"]),
            "intermediate_size": int(rec["intermediate_size"]),
            "num_heads": int(rec["num_heads"]),
            "vocab_size": int(rec["vocab_size"]),
            "lora_rank": int(rec["lora_rank"]),
            "lora_alpha": float(rec["lora_alpha"]),
            "lora_targets": tuple(str(rec["lora_targets"]).split("+")),
            "batch_size": int(rec["batch_size"]),
            "sequence_length_tokens": int(rec["seq_len"]),
            "steps_per_round": 1,
            "include_pooler": True,
        }
    )


def record_packing(rec: dict[str, Any]) -> str:
    """The packing a step record was measured with (records before the interleaved packing
    carry none: column)."""
    return str(rec.get("packing") or "column")


def record_rescale(rec: dict[str, Any]) -> str:
    """Who rescaled the products in a step record (records before the option: the server)."""
    return str(rec.get("rescale") or "server")


def record_key(rec: dict[str, Any]) -> str:
    """``set_name`` (column packing) or ``set_name@interleaved``, with ``+rescale=device``
    where the device rescaled: one key per measured step."""
    from privtuner.costmodels.fitting import precision_key

    key = precision_key(str(rec["set_name"]), record_packing(rec) == "interleaved")
    return key if record_rescale(rec) == "server" else f"{key}+rescale=device"


def predict_step(model: Any, rec: dict[str, Any]) -> dict[str, float]:
    """The cost model's prediction of one step of the record's workload and set (spec sec. 3).

    :func:`privtuner.costmodels.model.step_costs` (op counts of
    ``costmodels.workload`` x fitted per-op CPU seconds and bytes): ``encrypt_s``,
    ``decrypt_s``, ``server_s``, ``bytes_up``, ``bytes_down``, ``ciphertexts_up``,
    ``ciphertexts_down``, ``device_s = encrypt_s + decrypt_s + T t_clear`` (``t_clear`` the
    model's ``device_clear_s_per_token``, 0 if None), ``step_s = device_s + server_s``.
    ``model``: a :class:`privtuner.costmodels.fitting.CostModel`.
    """
    from privtuner.costmodels.model import step_costs

    p = _record_params(rec)
    k = step_costs(
        model, _record_workload(rec), p, packing=record_packing(rec), rescale=record_rescale(rec)
    )
    return {
        q: float(k[q])
        for q in (
            "encrypt_s",
            "decrypt_s",
            "server_s",
            "bytes_up",
            "bytes_down",
            "ciphertexts_up",
            "ciphertexts_down",
            "device_s",
            "step_s",
        )
    }


def measured_step(rec: dict[str, Any]) -> dict[str, float]:
    """The measured counterparts of :func:`predict_step` from a record.

    ``encrypt_s`` = encode + encrypt (+ SEAL save), ``decrypt_s`` = deserialize + decrypt,
    ``server_s`` = the server's handling time, ``device_s`` = encrypt + serialize +
    deserialize + decrypt + clear-text work, ``step_s`` = ``total_s`` minus transport.
    """
    f = {
        k: float(rec[k])
        for k in (
            "encrypt_s",
            "serialize_s",
            "deserialize_s",
            "decrypt_s",
            "server_s",
            "transport_s",
            "device_clear_s",
            "total_s",
            "bytes_up",
            "bytes_down",
            "ciphertexts_up",
            "ciphertexts_down",
        )
    }
    return {
        "encrypt_s": f["encrypt_s"] + f["serialize_s"],
        "decrypt_s": f["decrypt_s"] + f["deserialize_s"],
        "server_s": f["server_s"],
        "bytes_up": f["bytes_up"],
        "bytes_down": f["bytes_down"],
        "ciphertexts_up": f["ciphertexts_up"],
        "ciphertexts_down": f["ciphertexts_down"],
        "device_s": f["encrypt_s"]
        + f["serialize_s"]
        + f["deserialize_s"]
        + f["decrypt_s"]
        + f["device_clear_s"],
        "step_s": f["total_s"] - f["transport_s"],
    }


def compare_with_cost_model(
    records: Sequence[dict[str, Any]], model: Any, tolerance: float = COST_MODEL_TOLERANCE
) -> list[dict[str, Any]]:
    """Relative error of the cost model per set and quantity: one row per (set, quantity).

    ``model``: a :class:`privtuner.costmodels.fitting.CostModel` (see :func:`predict_step`).
    Row: ``set_name, packing, rescale, quantity, measured, predicted, rel_err = (predicted -
    measured) / measured, within = |rel_err| <= tolerance``.
    """
    rows: list[dict[str, Any]] = []
    for rec in records:
        pred, meas = predict_step(model, rec), measured_step(rec)
        for q in pred:
            m, p = meas[q], pred[q]
            rel = (p - m) / m if m else (0.0 if p == 0 else math.inf)
            rows.append(
                {
                    "set_name": rec["set_name"],
                    "packing": record_packing(rec),
                    "rescale": record_rescale(rec),
                    "quantity": q,
                    "measured": m,
                    "predicted": p,
                    "rel_err": rel,
                    "within": abs(rel) <= tolerance,
                }
            )
    return rows


def format_comparison(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of :func:`compare_with_cost_model` rows."""
    lines = [
        "| set | packing | rescale | quantity | measured | predicted | rel. error |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['set_name']} | {r.get('packing', 'column')} | {r.get('rescale', 'server')} | "
            f"{r['quantity']} | "
            f"{r['measured']:.4g} | "
            f"{r['predicted']:.4g} | {100 * r['rel_err']:+.1f}% |"
        )
    return "\n".join(lines)


#: Quantities of :func:`validation_report` (issue 4: time split and bytes per step).
VALIDATION_QUANTITIES: tuple[str, ...] = (
    "encrypt_s",
    "decrypt_s",
    "server_s",
    "device_s",
    "step_s",
    "bytes_up",
    "bytes_down",
    "ciphertexts_up",
    "ciphertexts_down",
)

#: What the cost model must predict within :data:`COST_MODEL_TOLERANCE` (issue 4): the step
#: time and the bytes each way, per set; the other quantities are reported as the split.
TARGET_QUANTITIES: tuple[str, ...] = ("step_s", "bytes_up", "bytes_down")


def validation_report(
    records: Sequence[dict[str, Any]], model: Any, tolerance: float = COST_MODEL_TOLERANCE
) -> dict[str, Any]:
    """Per set and quantity: predicted, measured, relative error, within ``tolerance``.

    ``records``: profile-lora records measured with ``clock="cpu"`` (others raise: wall time
    on a shared machine is not what the cost model predicts). ``device_s`` and ``step_s``
    are also given (``*_heldout``) with the model's step-measured constant
    ``device_clear_s_per_token`` re-estimated from the *other* records (leave one set out),
    because the shipped constant comes from these records.
    Returns a JSON-able dict: ``sets`` (name -> quantity -> row), ``max_abs_rel_err`` and
    ``all_within`` (over :data:`VALIDATION_QUANTITIES`), ``target_max_abs_rel_err`` and
    ``target_within`` (over :data:`TARGET_QUANTITIES`, the requirement),
    ``max_abs_rel_err_heldout``, the model's constants, provenance and curve errors.
    """
    from privtuner.costmodels.model import clear_s_per_token_from_steps

    if not records:
        raise CostModelError("no profile-lora records to validate the cost model with")
    wall = sorted({str(r["set_name"]) for r in records if str(r.get("clock", "")) != "cpu"})
    if wall:
        raise CostModelError(
            f"records of {wall} were not measured with clock='cpu' (single-thread CPU "
            "seconds, the profiler's clock); re-measure with profile_lora(..., clock='cpu', "
            "separate_process=False)"
        )
    sets: dict[str, Any] = {}
    worst = 0.0
    worst_target = 0.0
    worst_held = 0.0
    for rec in records:
        pred, meas = predict_step(model, rec), measured_step(rec)
        rows: dict[str, Any] = {}
        for q in VALIDATION_QUANTITIES:
            m, p = meas[q], pred[q]
            rel = (p - m) / m if m else (0.0 if p == 0 else math.inf)
            rows[q] = {
                "predicted": p,
                "measured": m,
                "rel_err": rel,
                "within": abs(rel) <= tolerance,
            }
            worst = max(worst, abs(rel))
            if q in TARGET_QUANTITIES:
                worst_target = max(worst_target, abs(rel))
        others = [r for r in records if str(r["set_name"]) != str(rec["set_name"])]
        if others:
            held_model = _with_clear(model, clear_s_per_token_from_steps(others))
            held = predict_step(held_model, rec)
            for q in ("device_s", "step_s"):
                m, p = meas[q], held[q]
                rel = (p - m) / m if m else 0.0
                rows[f"{q}_heldout"] = {
                    "predicted": p,
                    "measured": m,
                    "rel_err": rel,
                    "within": abs(rel) <= tolerance,
                }
                worst_held = max(worst_held, abs(rel))
        rows["measured_device_clear_s"] = float(rec["device_clear_s"])
        rows["load_avg_1m"] = float(rec.get("load_avg_1m") or "nan")
        rows["packing"] = record_packing(rec)
        rows["rescale"] = record_rescale(rec)
        sets[record_key(rec)] = rows
    return {
        "tolerance": tolerance,
        "clock": "cpu (time.thread_time, one thread, both parties in one process)",
        "device_clear_s_per_token": getattr(model, "device_clear_s_per_token", None),
        "model_provenance": dict(getattr(model, "provenance", {})),
        "curves": {
            op: {
                "form": c.form,
                "heldout_rel_err": c.heldout_rel_err,
                "heldout_max_rel_err": c.heldout_max_rel_err,
            }
            for op, c in sorted(getattr(model, "curves", {}).items())
        },
        "sets": sets,
        "max_abs_rel_err": worst,
        "all_within": worst <= tolerance,
        "target_quantities": list(TARGET_QUANTITIES),
        "target_max_abs_rel_err": worst_target,
        "target_within": worst_target <= tolerance,
        "max_abs_rel_err_heldout": worst_held,
    }


def _with_clear(model: Any, clear_s_per_token: float) -> Any:
    """A copy of ``model`` with ``device_clear_s_per_token`` replaced (frozen dataclass or not)."""
    import dataclasses

    if dataclasses.is_dataclass(model) and not isinstance(model, type):
        return dataclasses.replace(model, device_clear_s_per_token=clear_s_per_token)
    out = copy.copy(model)
    out.device_clear_s_per_token = clear_s_per_token
    return out


def write_records_csv(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Records to one CSV file (:data:`RECORD_COLUMNS`), e.g. the shipped
    ``costmodels/data/lora_step_records.csv``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(RECORD_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow(r)
    return path
