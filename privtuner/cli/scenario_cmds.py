"""Commands on scenario files: validate, schema, simulate."""

from __future__ import annotations

import argparse
import json
from typing import Any

from privtuner.cli.argtypes import seed


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="validate scenario files (all problems, one per line)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the JSON Schema of scenario files (for editors)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("simulate", help="draw the system instance and print one row per device")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--seed", type=seed, default=None, help="override the scenario seed")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_simulate)


def cmd_validate(args: argparse.Namespace) -> int:
    from privtuner.batch.tasks import spec_problems
    from privtuner.errors import ScenarioError
    from privtuner.scenario import expand_sweep, load_scenario

    problems: list[str] = []
    for f in args.files:
        try:
            spec = load_scenario(f)
            points = expand_sweep(spec)
            # what a batch would turn into error rows (over-long or repeated point names)
            point_problems = spec_problems(spec)
        except ScenarioError as exc:
            problems.extend(exc.lines())
            continue
        if point_problems:
            problems.extend(f"{f}: {p}" for p in point_problems)
            continue
        extra = f" ({len(points)} sweep points)" if spec.sweep else ""
        print(f"{f}: ok{extra}")
    if problems:
        raise ScenarioError(problems)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from privtuner.scenario.schema import ScenarioSpec

    print(json.dumps(ScenarioSpec.model_json_schema(), indent=2))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from privtuner.pipeline import instance
    from privtuner.scenario import load_scenario

    spec = load_scenario(args.file)
    inst = instance(spec, args.seed)
    snr_db = inst.snr_equal_share_db()
    rate = inst.rate_equal_share_bps()
    if args.json:
        out = inst.to_dict()
        out["devices"]["snr_equal_share_db"] = snr_db.tolist()
        out["devices"]["rate_equal_share_bps"] = rate.tolist()
        print(json.dumps(out, indent=2))
        return 0
    share_khz = inst.bandwidth_hz / inst.n_devices / 1e3
    print(
        f"# {inst.name}: {inst.n_devices} devices, seed {inst.seed}, "
        f"B = {inst.bandwidth_hz / 1e6:g} MHz (equal share {share_khz:g} kHz)"
    )
    print(f"{'device':>6} {'distance_m':>11} {'gain_db':>9} {'snr_db':>8} {'rate_mbps':>10}")
    for i in range(inst.n_devices):
        d = inst.distance_m[i]
        dist = "-" if np.isnan(d) else f"{d:.1f}"
        print(f"{i:>6} {dist:>11} {inst.gain_db[i]:>9.2f} {snr_db[i]:>8.2f} {rate[i] / 1e6:>10.3f}")
    return 0
