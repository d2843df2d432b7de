"""Per-token time of one encrypted 128x128 projection: naive layout vs column-packed kernel.

Naive (the baseline of spec section 1): one token per ciphertext, TenSEAL
``CKKSVector.matmul`` (rotation-based vector x matrix, Galois keys), measured on a few tokens.
Kernel: :func:`privtuner.fhe_profiling.ckks_ops.project` on a full block of N/2 tokens
(column packing, exact modular matrix product, one rescale per output).
Both at the same parameter set, in the same run. Prints one JSON object.

    python benchmarks/bench_encrypted_projection.py [--naive-tokens 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np

from privtuner.costmodels.types import CkksParams
from privtuner.fhe_profiling import ckks_ops as ops
from privtuner.fhe_profiling.env import environment, tune_allocator


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8192, help="poly modulus degree N")
    ap.add_argument("--chain", default="60-40-60", help="coefficient modulus bit sizes")
    ap.add_argument("--scale-bits", type=int, default=40)
    ap.add_argument("--d", type=int, default=128, help="projection is d x d")
    ap.add_argument("--naive-tokens", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="timed kernel runs (median)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--default-allocator",
        action="store_true",
        help="leave glibc's malloc as it is (default: env.tune_allocator, as the server does)",
    )
    args = ap.parse_args(argv)
    if not args.default_allocator:
        tune_allocator()

    params = CkksParams(args.n, tuple(int(b) for b in args.chain.split("-")), args.scale_bits)
    rng = np.random.default_rng(args.seed)
    d = args.d
    w = rng.normal(0.0, 1.0 / math.sqrt(d), size=(d, d))
    keys = ops.make_context(params)
    pub = ops.load_public_context(keys.public_bytes(), params)

    # --- naive: one token per ciphertext ---
    naive_server, naive_total, naive_err, naive_bytes = [], [], [], []
    for _ in range(args.naive_tokens):
        x = rng.uniform(-1, 1, size=d)
        tm: dict[str, float] = {}
        y = ops.naive_project(keys, x, w, timings=tm)
        naive_server.append(tm["matmul_s"])
        naive_total.append(tm["encrypt_s"] + tm["matmul_s"] + tm["decrypt_s"])
        naive_err.append(float(np.max(np.abs(y - x @ w))))
        naive_bytes.append((tm["bytes_up"], tm["bytes_down"]))

    # --- kernel: a full block of N/2 tokens ---
    t_tokens = params.slots
    x = rng.uniform(-1, 1, size=(t_tokens, d))
    enc_s, srv_s, dec_s, errs = [], [], [], []
    split = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        enc = ops.encrypt_columns(keys, x)
        t1 = time.perf_counter()
        served = ops.deserialize_columns(pub, ops.serialize_columns(enc))
        tm2 = ops.ProjectTimings()
        t2 = time.perf_counter()
        y_enc = ops.project(pub, served, w, timings=tm2)
        t3 = time.perf_counter()
        back = ops.deserialize_columns(keys, ops.serialize_columns(y_enc))
        t4 = time.perf_counter()
        got = ops.decrypt_columns(keys, back)
        t5 = time.perf_counter()
        enc_s.append(t1 - t0)
        srv_s.append(t3 - t2)
        dec_s.append(t5 - t4)
        errs.append(float(np.max(np.abs(got - x @ w))))
        split.append(tm2)
    k_srv = statistics.median(srv_s) / t_tokens
    k_tot = statistics.median(enc_s) + statistics.median(srv_s) + statistics.median(dec_s)
    k_tot /= t_tokens
    n_srv = statistics.median(naive_server)
    n_tot = statistics.median(naive_total)
    result: dict[str, object] = {
        "params": params.to_dict(),
        "projection": [d, d],
        "naive": {
            "tokens_measured": args.naive_tokens,
            "server_s_per_token": n_srv,
            "end_to_end_s_per_token": n_tot,
            "max_abs_err": max(naive_err),
            "bytes_up_per_token": naive_bytes[-1][0],
            "bytes_down_per_token": naive_bytes[-1][1],
        },
        "kernel": {
            "tokens_per_block": t_tokens,
            "repeats": args.repeats,
            "server_s_per_token": k_srv,
            "end_to_end_s_per_token": k_tot,
            "server_s_per_block": statistics.median(srv_s),
            "server_split_s": {
                "parse_expand": statistics.median(t.load_s for t in split),
                "mac_kernel": statistics.median(t.mac_s for t in split),
                "rescale_serialize": statistics.median(t.rescale_s for t in split),
            },
            "device_encrypt_s_per_block": statistics.median(enc_s),
            "device_decrypt_s_per_block": statistics.median(dec_s),
            "bytes_up_per_block": enc.nbytes,
            "bytes_down_per_block": y_enc.nbytes,
            "max_abs_err": max(errs),
        },
        "ratio_server_per_token": n_srv / k_srv,
        "ratio_end_to_end_per_token": n_tot / k_tot,
        "target_ratio": 150,
        "environment": environment(),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
