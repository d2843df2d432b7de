"""Wall time of one encrypted BERT-Tiny LoRA training step over the split CKKS protocol.

8 sequences x 64 tokens (T = 512), forward and backward, at the default N = 8192 catalogue
set (largest scale), server in its own process (one server for the warm-up and the timed
step, as a long-running server), in both packings in the same run (interleaved, the default,
and column, the PrivTuner-style baseline). Prints JSON: per packing the time split, bytes
moved, peak memory per party and the precision vs the plaintext step; the column/interleaved
ratios; the targets (bytes up <= 40 MB, server <= 3 s, step <= 8 s). Not a timed test.

    .venv/bin/python benchmarks/bench_lora_step.py [--sequences 8] [--seq-len 64] [--set NAME]
        [--packing interleaved column]
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--set", default=None, help="catalogue set name (default: N=8192 default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--in-process", action="store_true")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed one")
    ap.add_argument(
        "--packing", nargs="+", default=["interleaved", "column"], choices=("interleaved", "column")
    )
    ap.add_argument(
        "--server-workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="server processes per projection; each count is measured (scaling)",
    )
    args = ap.parse_args()

    from privtuner.fhe_profiling import lora_profile as lp

    sets = lp.select_sets([args.set] if args.set else None, quick=True)
    records = [
        rec
        for workers in args.server_workers
        for rec in lp.profile_lora(
            sets,
            tokens=args.sequences * args.seq_len,
            seq_len=args.seq_len,
            seed=args.seed,
            separate_process=not args.in_process,
            progress=False,
            warmup_steps=args.warmup,
            packings=args.packing,
            server_workers=workers,
        )
    ]
    keys = (
        "set_name",
        "packing",
        "server_workers",
        "warmup_steps",
        "allocator",
        "tokens",
        "batch_size",
        "seq_len",
        "data_source",
        "total_s",
        "encrypt_s",
        "serialize_s",
        "deserialize_s",
        "decrypt_s",
        "server_s",
        "server_project_s",
        "transport_s",
        "device_clear_s",
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
        "max_rel_err",
        "grad_max_rel_err",
        "device_peak_rss_bytes",
        "server_peak_rss_bytes",
        "separate_processes",
        "load_avg_1m",
        "cpu_model",
        "cpu_count",
        "torch_threads",
        "tenseal_version",
        "torch_version",
        "date",
    )
    steps = {f"{r['packing']}@{r['server_workers']}w": {k: r[k] for k in keys} for r in records}
    best = max(args.server_workers)
    by = {r["packing"]: steps[f"{r['packing']}@{best}w"] for r in records}
    out: dict[str, object] = {"steps": steps, "server_workers_compared": best}
    if len(args.server_workers) > 1:
        out["server_scaling"] = {
            p: {
                f"{w}w": steps[f"{p}@{min(args.server_workers)}w"]["server_s"]
                / steps[f"{p}@{w}w"]["server_s"]
                for w in args.server_workers
            }
            for p in args.packing
        }
    if "interleaved" in by:
        il = by["interleaved"]
        out["targets"] = {
            "bytes_up_le_40MB": float(il["bytes_up"]) <= 40e6,
            "server_le_3s": float(il["server_s"]) <= 3.0,
            "step_le_8s": float(il["total_s"]) <= 8.0,
        }
    if {"interleaved", "column"} <= set(by):
        il, col = by["interleaved"], by["column"]
        out["column_over_interleaved"] = {
            q: float(col[q]) / float(il[q])
            for q in ("total_s", "server_s", "encrypt_s", "decrypt_s", "bytes_up", "bytes_down")
            if float(il[q]) > 0
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
