"""Per useful token time of one encrypted 128x128 projection: naive, column, interleaved.

Naive (the baseline of spec section 1): one token per ciphertext, TenSEAL
``CKKSVector.matmul`` (rotation-based vector x matrix, Galois keys), measured on a few tokens.
Column packing (:mod:`privtuner.fhe_profiling.ckks_ops`, the PrivTuner-style baseline) and
interleaved packing (:mod:`privtuner.fhe_profiling.interleaved`, the default), each at
T = 512 tokens (the default step's token count) and T = N/2, through the same
:mod:`privtuner.fhe_profiling.packing` interface: encrypt, serialize, server projection,
serialize, decrypt; at T = 512 also with the protocol option ``rescale="device"`` (the server
returns unrescaled products). All at the same parameter set, in the same run (ratios of one
run). Prints one JSON object.

    python benchmarks/bench_encrypted_projection.py [--naive-tokens 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

import numpy as np

from privtuner.costmodels.types import CkksParams
from privtuner.fhe_profiling import ckks_ops as ops
from privtuner.fhe_profiling import packing as pk
from privtuner.fhe_profiling.env import environment, tune_allocator


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8192, help="poly modulus degree N")
    ap.add_argument("--chain", default="60-40-60", help="coefficient modulus bit sizes")
    ap.add_argument("--scale-bits", type=int, default=40)
    ap.add_argument("--d", type=int, default=128, help="projection is d x d")
    ap.add_argument("--naive-tokens", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="timed kernel runs (median)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (server tables)")
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

    xs = {t: rng.uniform(-1, 1, size=(t, d)) for t in sorted({512, params.slots})}
    kernels = {
        f"{packing}@T={t}": _kernel(keys, pub, packing, x, w, args)
        for t, x in xs.items()
        for packing in ("column", "interleaved")
    }
    # the protocol option rescale="device" (the server returns unrescaled products), on the
    # same inputs
    for packing in ("column", "interleaved"):
        kernels[f"{packing}@T=512+rescale=device"] = _kernel(
            keys, pub, packing, xs[512], w, args, rescale="device"
        )
    n_srv = statistics.median(naive_server)
    n_tot = statistics.median(naive_total)
    il, col = kernels["interleaved@T=512"], kernels["column@T=512"]
    result: dict[str, object] = {
        "params": params.to_dict(),
        "projection": [d, d],
        "load_avg_1m": environment().get("load_avg_1m"),
        "naive": {
            "tokens_measured": args.naive_tokens,
            "server_s_per_token": n_srv,
            "end_to_end_s_per_token": n_tot,
            "max_abs_err": max(naive_err),
            "bytes_up_per_token": naive_bytes[-1][0],
            "bytes_down_per_token": naive_bytes[-1][1],
        },
        "kernels": kernels,
        "interleaved_over_column_at_T512": {
            "end_to_end_per_token": col["end_to_end_s_per_token"] / il["end_to_end_s_per_token"],
            "server_per_token": col["server_s_per_token"] / il["server_s_per_token"],
            "bytes_up": col["bytes_up"] / il["bytes_up"],
            "target_end_to_end": 10,
        },
        "device_rescale_at_T512": {
            p: {
                q: kernels[f"{p}@T=512+rescale=device"][q] / kernels[f"{p}@T=512"][q]
                for q in ("server_s_per_token", "end_to_end_s_per_token", "bytes_down")
            }
            for p in ("column", "interleaved")
        },
        "interleaved_device_rescale_over_column_at_T512": {
            "end_to_end_per_token": col["end_to_end_s_per_token"]
            / kernels["interleaved@T=512+rescale=device"]["end_to_end_s_per_token"],
            "server_per_token": col["server_s_per_token"]
            / kernels["interleaved@T=512+rescale=device"]["server_s_per_token"],
        },
        "naive_over_interleaved_at_T512": {
            "server_per_token": n_srv / il["server_s_per_token"],
            "end_to_end_per_token": n_tot / il["end_to_end_s_per_token"],
        },
        "environment": environment(),
    }
    print(json.dumps(result, indent=2))
    return result


def _kernel(
    keys: ops.CkksKeys,
    pub: ops.PublicCkks,
    packing: str,
    x: np.ndarray,
    w: np.ndarray,
    args: Any,
    rescale: str = "server",
) -> dict[str, object]:
    """Median over ``args.repeats`` runs of one projection of ``x [T, d]`` in ``packing``,
    its products rescaled by ``rescale`` (the protocol option)."""
    tokens = x.shape[0]
    enc_s, srv_s, dec_s, errs, split, ser_s = [], [], [], [], [], []
    for _ in range(args.warmup + args.repeats):
        t0 = time.perf_counter()
        enc = pk.encrypt(keys, x, packing)
        t1 = time.perf_counter()
        served = pk.deserialize(pub, pk.serialize(enc))
        tm = ops.ProjectTimings()
        t2 = time.perf_counter()
        y_enc = pk.project(pub, served, w, timings=tm, rescale=rescale)
        t_ser = time.perf_counter()
        down = pk.serialize(y_enc)  # the server writes its products' bytes here (one buffer)
        t3 = time.perf_counter()
        back = pk.deserialize(keys, down)
        t4 = time.perf_counter()
        got = pk.decrypt(keys, back)
        t5 = time.perf_counter()
        enc_s.append(t1 - t0)
        srv_s.append(t3 - t2)
        dec_s.append(t5 - t4)
        errs.append(float(np.max(np.abs(got - x @ w))))
        split.append(tm)
        ser_s.append(t3 - t_ser)
    enc_s, srv_s, dec_s, split, ser_s = (
        v[args.warmup :] for v in (enc_s, srv_s, dec_s, split, ser_s)
    )
    total = statistics.median(enc_s) + statistics.median(srv_s) + statistics.median(dec_s)
    return {
        "tokens": tokens,
        "rescale": rescale,
        "repeats": args.repeats,
        "ciphertexts_up": enc.n_ciphertexts,
        "ciphertexts_down": y_enc.n_ciphertexts,
        "server_s_per_token": statistics.median(srv_s) / tokens,
        "end_to_end_s_per_token": total / tokens,
        "server_s": statistics.median(srv_s),
        "server_split_s": {
            "parse_expand": statistics.median(t.load_s for t in split),
            "mac_kernel": statistics.median(t.mac_s for t in split),
            "rescale_serialize": statistics.median(
                t.rescale_s + s for t, s in zip(split, ser_s, strict=True)
            ),
        },
        "device_encrypt_s": statistics.median(enc_s),
        "device_decrypt_s": statistics.median(dec_s),
        "bytes_up": enc.nbytes,
        "bytes_down": y_enc.nbytes,
        "max_abs_err": max(errs),
    }


if __name__ == "__main__":
    main()
