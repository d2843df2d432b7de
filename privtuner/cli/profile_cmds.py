"""Commands on FHE cost models: profile (TenSEAL), fit, plot-fits.

``profile`` needs the ``fhe`` extra and delegates to
``privtuner.fhe_profiling.profiler.run_profile_cli(args)``; ``fit`` and ``plot-fits`` need only
numpy (and matplotlib for the plots).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from privtuner.cli.argtypes import nonnegative_float, positive_float, positive_int


def register(sub: Any) -> None:
    # --- profile: real TenSEAL timings (implemented in privtuner.fhe_profiling.profiler) ---
    p = sub.add_parser(
        "profile", help="time real CKKS operations (TenSEAL) for the catalogue; writes records"
    )
    p.add_argument("--quick", action="store_true", help="few sets and repeats (smoke run)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--sets", nargs="+", default=None, metavar="NAME", help="only these catalogue set names"
    )
    p.add_argument(
        "--repeats", type=positive_int, default=None, metavar="N", help="timed repetitions"
    )
    p.set_defaults(func=cmd_profile)

    # --- fit ---
    p = sub.add_parser("fit", help="fit per-op cost curves from profiling records (CSV)")
    p.add_argument("records", metavar="RECORDS.csv")
    p.add_argument("--out", required=True, metavar="MODEL.json", help="cost model to write")
    p.add_argument(
        "--reference-frequency-hz",
        type=positive_float,
        default=None,
        help="CPU reference frequency [Hz] (default: median cpu_freq_hz of the records)",
    )
    p.add_argument(
        "--device-clear-s-per-token",
        type=nonnegative_float,
        default=None,
        help="device clear-text work [s per token per step] to store in the model (without "
        "it the model counts none; benchmarks/validate_cost_model.py --refit measures it from "
        "real LoRA steps)",
    )
    p.add_argument("--json", action="store_true", help="print the fit summary as JSON")
    p.set_defaults(func=cmd_fit)

    # --- plot-fits ---
    p = sub.add_parser("plot-fits", help="plot each fitted curve over its measured points (PNG)")
    p.add_argument("model", metavar="MODEL.json")
    p.add_argument("--records", required=True, metavar="RECORDS.csv")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the PNG files")
    p.set_defaults(func=cmd_plot_fits)


def cmd_profile(args: argparse.Namespace) -> int:
    import importlib

    from privtuner.errors import PrivtunerError, require

    require("tenseal", purpose="privtuner profile")
    name = "privtuner.fhe_profiling.profiler"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise PrivtunerError(f"the profiler ({name}) is not part of this build") from exc
    run_profile_cli = getattr(module, "run_profile_cli", None)
    if run_profile_cli is None:
        raise PrivtunerError(f"{name} has no run_profile_cli(args); profiling is unavailable")
    return int(run_profile_cli(args) or 0)


def _fit_summary(model: Any) -> list[dict[str, Any]]:
    rows = []
    for op, c in sorted(model.curves.items()):
        rows.append(
            {
                "op": op,
                "unit": c.unit,
                "form": c.form,
                "formula": c.formula,
                "coefficients": c.coefficients,
                "r2": c.r2,
                "heldout_rel_err": c.heldout_rel_err,
                "heldout_max_rel_err": c.heldout_max_rel_err,
                "n_sets": c.n_sets,
            }
        )
    return rows


def cmd_fit(args: argparse.Namespace) -> int:
    from privtuner.costmodels.fitting import fit_records, read_records

    records = read_records(args.records)
    model = fit_records(
        records,
        reference_frequency_hz=args.reference_frequency_hz,
        device_clear_s_per_token=args.device_clear_s_per_token,
    )
    path = model.save(args.out)
    if args.device_clear_s_per_token is None:
        print(
            "note: no --device-clear-s-per-token: the model counts no clear-text work on the "
            "device (embeddings, LayerNorm, softmax, LoRA, AdamW; the shipped model carries "
            "it); benchmarks/validate_cost_model.py --refit measures it from real LoRA steps",
            file=sys.stderr,
        )
    summary = _fit_summary(model)
    if args.json:
        print(json.dumps({"model": str(path), "curves": summary}, indent=2))
        return 0
    print(
        f"# {len(records)} records, reference frequency "
        f"{model.reference_frequency_hz / 1e9:.3f} GHz -> {path}"
    )
    print(f"{'op':<17} {'form':<12} {'R^2':>8} {'heldout':>9} {'max':>8} {'sets':>5}  formula")
    for r in summary:
        print(
            f"{r['op']:<17} {r['form']:<12} {r['r2']:>8.4f} {100 * r['heldout_rel_err']:>8.2f}% "
            f"{100 * r['heldout_max_rel_err']:>7.2f}% {r['n_sets']:>5}  {r['formula']}"
        )
    return 0


def cmd_plot_fits(args: argparse.Namespace) -> int:
    from privtuner.costmodels.fitting import fit_figure, load_cost_model, read_records

    model = load_cost_model(Path(args.model))
    records = read_records(args.records)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for op, curve in sorted(model.curves.items()):
        rows = [r for r in records if r["op"] == op]
        if not rows:
            continue
        fig = fit_figure(curve, rows)
        path = out / f"fit_{op}.png"
        fig.savefig(path, dpi=120)
        print(path)
    return 0
