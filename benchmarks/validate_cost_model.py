"""End-to-end check of the fitted CKKS cost model against real encrypted LoRA steps (issue 4).

For each measured catalogue set: the cost model's prediction of one BERT-Tiny LoRA training
step (op counts of ``costmodels.workload`` x fitted per-op CPU seconds and bytes, spec
section 3) against the step measured by ``fhe_profiling.lora_profile`` with the profiler's
clock (single-thread CPU seconds, both parties in one thread: ``clock="cpu"``). Quantities:
device ``encrypt_s`` (encode + encrypt + serialization), device ``decrypt_s``
(deserialization + decrypt + decode), ``server_s``, ``device_s`` (encrypt + decrypt +
clear-text work), ``step_s`` (device + server), ``bytes_up``, ``bytes_down`` and the
ciphertext counts. Relative error = (predicted - measured) / measured.

The device clear-text work is a measured constant of the model
(``device_clear_s_per_token``, set from these records). Because it comes from the same
records, ``device_s`` and ``step_s`` are also reported with that constant re-estimated
without the set being checked (``heldout_clear``: leave-one-set-out), which is the honest
number for a set that was not measured.

    # compare already-measured records (fast; the shipped ones by default)
    .venv/bin/python benchmarks/validate_cost_model.py \\
        [--records privtuner/costmodels/data/lora_step_records.csv] [--model default]
    # measure a small subset now and compare: each set in a fresh process, one untimed
    # warm-up step, then two timed steps averaged (slow: ~3 x 35 s CPU per N=8192 set)
    .venv/bin/python benchmarks/validate_cost_model.py --run --sets N4096_q40-20-40_s20 \\
        [--tokens 512] [--seq-len 64] [--save-records DIR] [--warmup-steps 1] [--timed-steps 2]
        [--same-process] [--packing interleaved column] [--rescale server device]
    # refit the model from CKKS profile records + these step records (the clear-text
    # constant), write it, and compare (how the shipped ckks_default.json is made)
    .venv/bin/python benchmarks/validate_cost_model.py \\
        --refit privtuner/costmodels/data/ckks_default_records.csv \\
        --refit-out privtuner/costmodels/data/ckks_default.json

Prints JSON. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

SHIPPED_RECORDS = (
    Path(__file__).resolve().parents[1]
    / "privtuner"
    / "costmodels"
    / "data"
    / "lora_step_records.csv"
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", default=None, help="profile-lora records (.csv or .json)")
    ap.add_argument("--model", default="default", help="cost model JSON (default: shipped)")
    ap.add_argument("--run", action="store_true", help="measure --sets now (clock=cpu)")
    ap.add_argument("--sets", nargs="+", default=None, metavar="NAME")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-records", default=None, metavar="DIR")
    ap.add_argument("--tolerance", type=float, default=None)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument(
        "--warmup-steps", type=int, default=1, help="untimed steps per set before the timed one"
    )
    ap.add_argument(
        "--timed-steps", type=int, default=2, help="timed steps per set (phase times averaged)"
    )
    ap.add_argument(
        "--same-process",
        action="store_true",
        help="measure every set in this process (default: a fresh process per set)",
    )
    ap.add_argument(
        "--packing",
        nargs="+",
        default=["interleaved", "column"],
        choices=("interleaved", "column"),
        help="packings measured with --run (default both)",
    )
    ap.add_argument(
        "--rescale",
        nargs="+",
        default=["server"],
        choices=("server", "device"),
        help="who rescales the products (protocol option) in the steps measured with --run, or "
        "compared from --records (default server)",
    )
    ap.add_argument("--refit", default=None, metavar="RECORDS.csv", help="CKKS profile records")
    ap.add_argument("--refit-out", default=None, metavar="MODEL.json")
    args = ap.parse_args(argv)

    from privtuner.costmodels.fitting import load_cost_model
    from privtuner.fhe_profiling import lora_profile as lp

    tol = lp.COST_MODEL_TOLERANCE if args.tolerance is None else float(args.tolerance)
    t0 = time.perf_counter()
    if args.run:
        sets = lp.select_sets(args.sets, quick=False)
        records: list[dict[str, Any]] = []
        for p in sets:  # one set at a time: partial results survive an interrupt
            for rescale in args.rescale:
                records.extend(
                    lp.profile_lora(
                        [p],
                        tokens=args.tokens,
                        seq_len=args.seq_len,
                        seed=args.seed,
                        separate_process=False,
                        clock="cpu",
                        progress=args.progress,
                        warmup_steps=args.warmup_steps,
                        timed_steps=args.timed_steps,
                        fresh_process=not args.same_process,
                        packings=args.packing,
                        rescale=rescale,
                    )
                )
                if args.save_records:
                    lp.write_records(records, args.save_records)
                for r in records[-len(args.packing) :]:
                    print(
                        f"measured {p.name} {r['packing']} rescale={rescale}: "
                        f"total {r['total_s']:.1f} s CPU",
                        file=sys.stderr,
                    )
    else:
        path = Path(args.records) if args.records else SHIPPED_RECORDS
        records = lp.read_records(path)
        if args.sets:
            records = [r for r in records if r["set_name"] in set(args.sets)]
        records = [r for r in records if lp.record_packing(r) in set(args.packing)]
        records = [r for r in records if lp.record_rescale(r) in set(args.rescale)]
    if args.refit:
        from privtuner.costmodels.fitting import fit_records
        from privtuner.costmodels.model import clear_s_per_token_from_steps

        # the clear-text constant from the default protocol's steps (the device's clear-text
        # work does not depend on who rescales)
        steps = [r for r in records if lp.record_rescale(r) == "server"] or records
        model = fit_records(
            args.refit, device_clear_s_per_token=clear_s_per_token_from_steps(steps)
        )
        if args.refit_out:
            model.save(args.refit_out)
    else:
        model = load_cost_model(args.model)
    report = lp.validation_report(records, model, tolerance=tol)
    report["elapsed_s"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
