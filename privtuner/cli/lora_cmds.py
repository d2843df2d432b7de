"""``profile-lora``: real encrypted BERT-Tiny LoRA training steps per catalogue set.

Needs the ``fhe`` extra; the heavy imports happen inside the command function.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from privtuner.cli.argtypes import nonnegative_int, positive_int, seed


def register(sub: Any) -> None:
    p = sub.add_parser(
        "profile-lora",
        help="time encrypted BERT-Tiny LoRA training steps (split CKKS protocol) per set",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--tokens",
        type=positive_int,
        default=None,
        metavar="T",
        help="tokens per step (default 512; 64 with --quick)",
    )
    p.add_argument(
        "--seq-len",
        type=positive_int,
        default=None,
        metavar="S",
        help="tokens per sequence (default 64; 32 with --quick); batch = tokens / seq-len",
    )
    p.add_argument(
        "--sets",
        nargs="+",
        default=None,
        metavar="NAME",
        help="catalogue set names (default: all; the N=8192 default set with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="small batch, default set only")
    p.add_argument("--seed", type=seed, default=0, help="seed of the model init and the batch")
    p.add_argument("--config", default=None, metavar="CONFIG.json", help="BERT config.json")
    p.add_argument("--weights", default=None, metavar="DIR", help="local HF BERT weights folder")
    p.add_argument("--vocab", default=None, metavar="VOCAB.txt", help="WordPiece vocab file")
    p.add_argument("--data", default=None, metavar="TSV", help="SST-2 style train.tsv")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run the server in this process (no per-party memory split)",
    )
    p.add_argument(
        "--cost-model",
        default=None,
        metavar="MODEL.json|default",
        help="also compare the fitted cost model with the measurements",
    )
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: wall-clock seconds per phase; cpu: single-thread CPU seconds per phase, "
        "the profiler's clock (implies --in-process)",
    )
    p.add_argument(
        "--warmup",
        type=nonnegative_int,
        default=0,
        metavar="K",
        help="untimed encrypted steps before the timed one, per set (default 0; 1 for timings "
        "that a long-running device and server would see)",
    )
    p.add_argument(
        "--timed-steps",
        type=positive_int,
        default=1,
        metavar="K",
        help="timed steps per set; every phase time is their mean (default 1)",
    )
    p.add_argument(
        "--fresh-process",
        action="store_true",
        help="measure each set in a new Python process (no state carried between sets)",
    )
    p.add_argument(
        "--packing",
        nargs="+",
        default=["interleaved"],
        choices=("interleaved", "column"),
        help="protocol packing(s); each set is measured once per packing (default interleaved; "
        "column is the PrivTuner-style baseline)",
    )
    p.add_argument(
        "--rescale",
        default="server",
        choices=("server", "device"),
        help="who rescales the server's products (protocol option; default server)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_profile_lora)


def cmd_profile_lora(args: argparse.Namespace) -> int:
    from privtuner.cli.outputs import check_output_paths
    from privtuner.errors import require

    for module in ("torch", "tenseal"):
        require(module, purpose="privtuner profile-lora")
    check_output_paths(("--out", args.out, True))
    from privtuner.fhe_profiling import lora_profile as lp

    tokens = args.tokens if args.tokens is not None else (64 if args.quick else 512)
    seq_len = args.seq_len if args.seq_len is not None else (32 if args.quick else 64)
    sets = lp.select_sets(args.sets, quick=args.quick)
    records = lp.profile_lora(
        sets,
        tokens=tokens,
        seq_len=seq_len,
        seed=args.seed,
        config_path=args.config,
        weights_dir=args.weights,
        vocab_path=args.vocab,
        tsv_path=args.data,
        separate_process=not (args.in_process or args.clock == "cpu"),
        progress=not args.no_progress,
        clock=args.clock,
        warmup_steps=args.warmup,
        timed_steps=args.timed_steps,
        fresh_process=args.fresh_process,
        packings=args.packing,
        rescale=args.rescale,
    )
    paths = lp.write_records(records, args.out)
    summary: dict[str, Any] = {"records": {k: str(v) for k, v in paths.items()}, "sets": []}
    for r in records:
        summary["sets"].append(
            {
                k: r[k]
                for k in (
                    "set_name",
                    "packing",
                    "rescale",
                    "total_s",
                    "encrypt_s",
                    "decrypt_s",
                    "server_s",
                    "device_clear_s",
                    "bytes_up",
                    "bytes_down",
                    "logits_max_abs_err",
                    "max_rel_err",
                    "device_peak_rss_bytes",
                    "server_peak_rss_bytes",
                )
            }
        )
    if args.cost_model is not None:
        import csv
        from pathlib import Path

        from privtuner.costmodels.fitting import load_cost_model

        rows = lp.compare_with_cost_model(records, load_cost_model(args.cost_model))
        cmp_path = Path(args.out) / "cost_model_comparison.csv"
        with cmp_path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        summary["cost_model_comparison"] = str(cmp_path)
        summary["cost_model_max_abs_rel_err"] = max(abs(r["rel_err"]) for r in rows)
    print(json.dumps(summary, indent=2))
    return 0
