"""Commands on scenario files: validate, schema, simulate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from privtuner.cli.argtypes import seed


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="validate scenario files (all problems, one per line)")
    p.add_argument(
        "files", nargs="+", metavar="PATH", help="scenario files or folders (*.yaml, *.yml)"
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the JSON Schema of scenario files (for editors)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("simulate", help="draw the system instance and print one row per device")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--seed", type=seed, default=None, help="override the scenario seed")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_simulate)


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate files and folders (``*.yaml``/``*.yml`` inside, as ``batch`` reads them): the
    schema, every sweep point, and every check ``solve`` runs that needs no solving
    (:func:`privtuner.pipeline.check_solvable`)."""
    from privtuner.batch.tasks import discover_scenario_files, duplicate_problems
    from privtuner.errors import ScenarioError, short
    from privtuner.scenario.validation import os_reason

    problems: list[str] = []
    named: list[tuple[str, str]] = []  # (scenario or point name, file): a batch's row keys
    seen: set[Path] = set()  # the same file given twice is read once, as in a batch
    for arg in args.files:
        try:
            files = discover_scenario_files([arg])
        except ScenarioError as exc:
            problems.extend(exc.lines())
            continue
        except (OSError, ValueError) as exc:  # a name the OS refuses (too long, ...)
            problems.append(f"{short(arg)}: cannot read: {os_reason(exc)}")
            continue
        for f in files:
            if f.resolve() in seen:
                continue
            seen.add(f.resolve())
            try:
                n_points, names = _validate_file(f)
            except ScenarioError as exc:
                problems.extend(exc.lines())
                continue
            named.extend((name, str(f)) for name in names)
            print(f"{f}: ok" + (f" ({n_points} sweep points)" if n_points else ""))
    # what a batch of these files refuses: two files giving the same scenario names
    problems.extend(duplicate_problems(named, "scenario name"))
    if problems:
        raise ScenarioError(problems)
    return 0


def _validate_file(path: Any) -> tuple[int, list[str]]:
    """Load, expand and check one scenario file; its number of sweep points (0: no sweep)
    and the names of its points (the scenario's name without a sweep)."""
    from privtuner.batch.tasks import fold_point_problems, spec_problems
    from privtuner.errors import ScenarioError
    from privtuner.pipeline import check_solvable
    from privtuner.scenario import expand_sweep, load_scenario

    spec = load_scenario(path)
    try:
        points = expand_sweep(spec)
    except ScenarioError as exc:  # named by the file, not by the scenario's name
        raise ScenarioError(fold_point_problems(exc.problems), str(path)) from None
    # what a batch would turn into error rows (a constant objective), once per distinct line
    problems = list(dict.fromkeys(f"{path}: {p}" for p in spec_problems(spec, points)))
    if problems:
        raise ScenarioError(problems)
    for point in points:
        label = point.name.removeprefix(spec.name)  # "[a=1,b=2]" of a sweep point
        try:
            check_solvable(point, source=f"sweep point {label}" if spec.sweep else None)
        except ScenarioError as exc:
            problems.extend(exc.lines())
    if problems:  # a problem of every point is one line with a count
        raise ScenarioError(fold_point_problems(problems), str(path))
    return (len(points) if spec.sweep else 0), [p.name for p in points]


def cmd_schema(args: argparse.Namespace) -> int:
    from privtuner.costmodels.privacy import privacy_metric_names
    from privtuner.optimizer import available_methods
    from privtuner.scenario.schema import scenario_json_schema

    schema = scenario_json_schema(list(available_methods()), privacy_metric_names())
    print(json.dumps(schema, indent=2))
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
