"""Wall time of one encrypted BERT-Tiny LoRA training step over the split CKKS protocol.

8 sequences x 64 tokens (T = 512), forward and backward, at the default N = 8192 catalogue
set (largest scale), server in its own process. Prints JSON: the time split, bytes moved,
peak memory per party and the precision vs the plaintext step. Not a timed test.

    .venv/bin/python benchmarks/bench_lora_step.py [--sequences 8] [--seq-len 64] [--set NAME]
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
    args = ap.parse_args()

    from privtuner.fhe_profiling import lora_profile as lp

    sets = lp.select_sets([args.set] if args.set else None, quick=True)
    (rec,) = lp.profile_lora(
        sets,
        tokens=args.sequences * args.seq_len,
        seq_len=args.seq_len,
        seed=args.seed,
        separate_process=not args.in_process,
        progress=False,
        warmup_steps=args.warmup,
    )
    keys = (
        "set_name",
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
        "cpu_model",
        "cpu_count",
        "torch_threads",
        "tenseal_version",
        "torch_version",
        "date",
    )
    print(json.dumps({k: rec[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()
