"""``exact`` with and without the per-node dual ascent, on every bundled reproduce scenario.

The node bound of ``exact``'s branch-and-bound is the node's Lagrangian dual D(mu, nu). Without
the ascent (``max_ascent=0``) it is the best D met along the price fixed point; with it
(default) D is maximised by a cutting-plane method (``optimizer.exact._Exact.ascend``). Both
are valid bounds, so where both close the gap they agree on the objective to ``rel_tol``
(reported); the ascent should need fewer nodes and less time. Same rel_tol and time limit
as ``privtuner reproduce``.

    .venv/bin/python benchmarks/bench_exact_ascent.py [--time-limit 20] [--rel-tol 1e-4]
        [--max-ascent 40] [FILES ...]

Prints one JSON object: per setting the total and largest time, total nodes, rows with the
gap closed and rows stopped by the time limit; and the rows where the two differ.
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path
from typing import Any

from privtuner.optimizer.core.problem import AllocationProblem
from privtuner.optimizer.core.registry import solve
from privtuner.scenario.loader import expand_sweep, load_scenario

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help="scenario YAML files (default: scenarios/reproduce)")
    ap.add_argument("--time-limit", type=float, default=20.0, help="seconds per solve")
    ap.add_argument("--rel-tol", type=float, default=1e-4)
    ap.add_argument("--max-ascent", type=int, default=40, help="the setting compared with 0")
    args = ap.parse_args(argv)
    files = args.files or sorted(glob.glob(str(ROOT / "scenarios" / "reproduce" / "*.yaml")))
    settings = (0, args.max_ascent)
    rows: list[dict[str, Any]] = []
    for f in files:
        for spec in expand_sweep(load_scenario(f)):
            problem = AllocationProblem.from_spec(spec, seed=spec.seed)
            row: dict[str, Any] = {"scenario": spec.name}
            for asc in settings:
                t0 = time.perf_counter()
                r = solve(
                    problem,
                    "exact",
                    max_ascent=asc,
                    time_limit_s=args.time_limit,
                    rel_tol=args.rel_tol,
                )
                row[f"ascent_{asc}"] = {
                    "time_s": round(time.perf_counter() - t0, 4),
                    "status": r.status,
                    "termination": r.termination,
                    "nodes": r.nodes,
                    "gap": r.gap,
                    "objective": r.objective,
                }
            rows.append(row)
    summary: dict[str, Any] = {}
    for asc in settings:
        runs = [r[f"ascent_{asc}"] for r in rows]
        summary[f"ascent_{asc}"] = {
            "rows": len(runs),
            "total_time_s": round(sum(x["time_s"] for x in runs), 3),
            "max_time_s": max(x["time_s"] for x in runs),
            "total_nodes": sum(x["nodes"] or 0 for x in runs),
            "gap_closed": sum(x["termination"] == "gap_closed" for x in runs),
            "time_limit": sum(x["termination"] == "time_limit" for x in runs),
            "infeasible": sum(x["status"] == "infeasible" for x in runs),
        }
    worst = 0.0  # over rows where both runs closed the gap: the same certified optimum
    for r in rows:
        a, b = r["ascent_0"], r[f"ascent_{args.max_ascent}"]
        if a["termination"] == b["termination"] == "gap_closed":
            x, y = a["objective"], b["objective"]
            worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-300))
    out = {
        "time_limit_s": args.time_limit,
        "rel_tol": args.rel_tol,
        "summary": summary,
        "max_objective_rel_diff_both_closed": worst,
        "differing_rows": [
            r for r in rows if r["ascent_0"]["nodes"] != r[f"ascent_{args.max_ascent}"]["nodes"]
        ],
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
