"""Fuzz the scenario loader with seeded mutations of every bundled and repository scenario
and the devices CSV (``privtuner.scenario.fuzz``) and print the outcome counts as JSON.

    nice -n 10 python benchmarks/fuzz_scenarios.py --cases 10000 --seed 0

``--stage load`` loads each file and expands its sweep; ``--stage validate`` (default) also
draws the first point's instance and runs every check ``privtuner validate`` runs
(``privtuner.pipeline.check_solvable``). Target: ``foreign_exceptions`` and ``hangs`` 0.
Exit code 1 if either is not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from privtuner.pipeline import check_solvable, instance
from privtuner.scenario.fuzz import load_and_expand, run_fuzz


def validate_target(path: Path) -> None:
    """Load, expand, draw the first point's instance and run the checks of ``validate``."""
    points = load_and_expand(path)
    assert isinstance(points, list)
    instance(points[0])
    check_solvable(points[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--time-limit",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a case running longer counts as a hang",
    )
    ap.add_argument("--stage", choices=("load", "validate"), default="validate")
    args = ap.parse_args()
    target = validate_target if args.stage == "validate" else load_and_expand
    t0 = time.perf_counter()
    report = run_fuzz(args.cases, args.seed, target=target, time_limit_s=args.time_limit)
    out = {
        "seed": args.seed,
        "stage": args.stage,
        **report.to_dict(),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out, indent=2))
    return 1 if out["foreign_exceptions"] or out["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
