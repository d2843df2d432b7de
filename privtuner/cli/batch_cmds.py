"""Commands for many scenarios and figures: batch, plot, reproduce."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from privtuner.cli.argtypes import csv_list, positive_int, seed, seed_list


def register(sub: Any) -> None:
    p = sub.add_parser(
        "batch",
        help="solve every scenario (and sweep point) of files/folders; one row per "
        "(scenario, seed, method); resumable",
    )
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    p.add_argument(
        "--out", required=True, metavar="RESULTS", help="results table (.parquet or .csv)"
    )
    p.add_argument(
        "--methods",
        type=csv_list,
        default=None,
        help="comma-separated methods for every scenario (default: each scenario's solver.method)",
    )
    p.add_argument(
        "--seeds",
        type=seed_list,
        default=None,
        help="comma-separated seeds for every scenario point (default: each point's seed)",
    )
    p.add_argument(
        "--jobs", type=positive_int, default=1, help="worker processes (default 1: in-process)"
    )
    p.add_argument("--executor", choices=("local", "dask"), default="local")
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="dask scheduler address (default with --executor dask: a LocalCluster on loopback)",
    )
    p.add_argument(
        "--chunk-size", type=positive_int, default=None, help="tasks per chunk (default: auto)"
    )
    p.add_argument("--retry-errors", action="store_true", help="rerun rows with status 'error'")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("plot", help="figures (PNG and PDF) from a results table or result JSON")
    p.add_argument(
        "results",
        metavar="RESULTS",
        help=".parquet/.csv batch or reproduce table, solve --out JSON (allocation, convergence, "
        "bounds) or solve --csv allocation CSV (allocation)",
    )
    p.add_argument(
        "--kind",
        required=True,
        choices=("tradeoff", "pareto", "scaling", "convergence", "bounds", "allocation"),
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--methods", type=csv_list, default=None, help="only these methods")
    p.add_argument("--scenario", default=None, help="only this sweep (sweep_base) or scenario")
    p.add_argument("--seed", type=seed, default=None, help="only this seed")
    p.add_argument(
        "--y",
        default="energy_j",
        metavar="COLUMN",
        help="quantity of the scaling figures' first panel (default energy_j; e.g. "
        "energy_tx_j, security_bits_mean, latency_max_s, time_solve_s)",
    )
    log = p.add_mutually_exclusive_group()
    log.add_argument("--log-y", dest="log_y", action="store_const", const=True, default=None)
    log.add_argument("--linear-y", dest="log_y", action="store_const", const=False)
    logx = p.add_mutually_exclusive_group()
    logx.add_argument("--log-x", dest="log_x", action="store_const", const=True, default=None)
    logx.add_argument("--linear-x", dest="log_x", action="store_const", const=False)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "reproduce",
        help="run the bundled sweep set (scenarios/reproduce) and write every figure + CSV",
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--quick", action="store_true", help="small version (tests, < 1 min)")
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=min(2, os.cpu_count() or 1),
        help="worker processes (default: min(2, CPUs))",
    )
    p.add_argument("--scenarios", default=None, metavar="DIR", help="another sweep folder")
    p.add_argument("--methods", type=csv_list, default=None, help="override the method list")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_reproduce)


def cmd_batch(args: argparse.Namespace) -> int:
    from privtuner.batch import run_batch

    summary = run_batch(
        args.paths,
        args.out,
        methods=args.methods,
        seeds=args.seeds,
        jobs=args.jobs,
        executor=args.executor,
        scheduler=args.scheduler,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
        retry_errors=args.retry_errors,
    )
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
        return 0
    counts = ", ".join(f"{k or 'none'} {v}" for k, v in sorted(summary.status_counts.items()))
    print(
        f"{summary.out}: {summary.n_run} rows written this run ({summary.n_skipped} of "
        f"{summary.n_tasks} already done), {summary.n_table_rows} rows in the table; "
        f"{summary.wall_s:.2f} s"
        + (f" ({summary.tasks_per_s:.1f} tasks/s)" if summary.n_run else "")
        + f"; status of this run's {summary.n_tasks} tasks: {counts}"
    )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from privtuner.cli.outputs import check_output_paths
    from privtuner.plot_inputs import read_plot_rows
    from privtuner.studies import write_result_figures

    check_output_paths(("--out", args.out, True))
    rows = read_plot_rows(args.results, args.kind)
    _check_selection(rows, args)
    written = write_result_figures(
        rows,
        args.out,
        kinds=[args.kind],
        strict=True,
        methods=args.methods,
        scenario=args.scenario,
        seed=args.seed,
        y=args.y,
        log_x=args.log_x,
        log_y=args.log_y,
    )
    for p in written:
        print(p)
    return 0


#: Most available values a refused ``plot`` selection lists.
MAX_LISTED = 10


def _listing(values: list[Any]) -> str:
    """``a, b, c`` of at most :data:`MAX_LISTED` values, then ``and N more``."""
    shown = ", ".join(str(v) for v in values[:MAX_LISTED])
    more = len(values) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "") if values else "(none)"


def _check_selection(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Refuse a ``--methods`` / ``--scenario`` / ``--seed`` value that no row has, listing
    the values the table holds."""
    from privtuner.errors import PrivtunerError, short

    def present(*columns: str) -> list[Any]:
        return list(dict.fromkeys(r[c] for c in columns for r in rows if r.get(c) is not None))

    methods, names, seeds = present("method"), present("sweep_base", "scenario"), present("seed")
    for flag, wanted, have, what in (
        ("--methods", args.methods or [], methods, "methods"),
        ("--scenario", [] if args.scenario is None else [args.scenario], names, "sweeps/scenarios"),
        ("--seed", [] if args.seed is None else [args.seed], seeds, "seeds"),
    ):
        for value in wanted:
            if value not in have:
                raise PrivtunerError(
                    f"{flag} {short(str(value))}: not in {args.results}; "
                    f"{what} there: {_listing(have)}"
                )


def cmd_reproduce(args: argparse.Namespace) -> int:
    from privtuner.cli.outputs import check_output_paths
    from privtuner.studies import reproduce

    check_output_paths(("--out", args.out, True))

    info = reproduce(
        args.out,
        quick=args.quick,
        jobs=args.jobs,
        scenarios_dir=args.scenarios,
        methods=args.methods,
        progress=not args.no_progress,
    )
    b = info["batch"]
    print(
        f"{args.out}: {b['n_tasks']} rows ({b['n_run']} run), {len(info['figures'])} files "
        f"in {info['wall_s']:.1f} s; status: "
        + ", ".join(f"{k} {v}" for k, v in sorted(b["status_counts"].items()))
    )
    return 0
