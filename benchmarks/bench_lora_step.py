"""Wall time of one encrypted BERT-Tiny LoRA training step over the split CKKS protocol.

8 sequences x 64 tokens (T = 512), forward and backward, at the default N = 8192 catalogue
set (largest scale), server in its own process (one server for the warm-up and the timed
step, as a long-running server), in both packings in the same run (interleaved, the default,
and column, the PrivTuner-style baseline), with each server process count and each choice of
the party that rescales the products (the protocol option ``rescale``: ``server``, the default,
or ``device``, which downloads unrescaled products). Prints JSON: per variant the time split,
bytes moved, peak memory per party and the precision vs the plaintext step; the
column/interleaved ratios; the device/server-rescale ratios; the targets (bytes up <= 40 MB,
server <= 3 s, step <= 8 s) for the first --rescale value at the most server processes, and
for every interleaved variant. Not a timed test.

    .venv/bin/python benchmarks/bench_lora_step.py [--sequences 8] [--seq-len 64] [--set NAME]
        [--packing interleaved column] [--server-workers 1 2] [--rescale server device]
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
    ap.add_argument(
        "--rescale",
        nargs="+",
        default=["server"],
        choices=("server", "device"),
        help="who rescales the server's products (protocol option); each is measured",
    )
    args = ap.parse_args()
    # each value once, in the order given (a repeated one would be measured twice)
    args.packing, args.server_workers, args.rescale = (
        list(dict.fromkeys(v)) for v in (args.packing, args.server_workers, args.rescale)
    )

    from privtuner.fhe_profiling import lora_profile as lp

    sets = lp.select_sets([args.set] if args.set else None, quick=True)
    records = [
        rec
        for rescale in args.rescale
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
            rescale=rescale,
        )
    ]
    keys = (
        "set_name",
        "packing",
        "rescale",
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

    def name(packing: str, workers: int, rescale: str) -> str:
        # the default protocol keeps its earlier key (packing@Nw)
        return f"{packing}@{workers}w" + ("" if rescale == "server" else f"+rescale={rescale}")

    steps = {
        name(r["packing"], r["server_workers"], r["rescale"]): {k: r[k] for k in keys}
        for r in records
    }
    best = max(args.server_workers)
    base = args.rescale[0]
    by = {p: steps[name(p, best, base)] for p in args.packing}
    out: dict[str, object] = {
        "steps": steps,
        "server_workers_compared": best,
        "rescale_compared": base,
    }
    if len(args.server_workers) > 1:
        out["server_scaling"] = {
            p + ("" if r == "server" else f"+rescale={r}"): {
                f"{w}w": steps[name(p, min(args.server_workers), r)]["server_s"]
                / steps[name(p, w, r)]["server_s"]
                for w in args.server_workers
            }
            for p in args.packing
            for r in args.rescale
        }
    if len(args.rescale) > 1:
        out["device_over_server_rescale"] = {
            name(p, w, "server"): {
                q: float(steps[name(p, w, "device")][q]) / float(steps[name(p, w, "server")][q])
                for q in ("total_s", "server_s", "decrypt_s", "bytes_down")
            }
            for p in args.packing
            for w in args.server_workers
        }

    def targets(st: dict[str, object]) -> dict[str, bool]:
        return {
            "bytes_up_le_40MB": float(st["bytes_up"]) <= 40e6,  # type: ignore[arg-type]
            "server_le_3s": float(st["server_s"]) <= 3.0,  # type: ignore[arg-type]
            "step_le_8s": float(st["total_s"]) <= 8.0,  # type: ignore[arg-type]
        }

    if "interleaved" in by:
        out["targets"] = targets(by["interleaved"])
        out["targets_by_variant"] = {
            k: targets(v) for k, v in steps.items() if k.startswith("interleaved@")
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
