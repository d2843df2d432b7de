"""Commands ``solve`` (one scenario -> allocation) and ``methods`` (registered solvers)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "solve",
        help="solve a scenario: the CKKS set, bandwidth, power and CPU of every device",
    )
    p.add_argument("file", metavar="FILE", help="scenario YAML file")
    p.add_argument(
        "--method",
        default=None,
        help="solver (default: the scenario's solver.method; see 'privtuner methods')",
    )
    p.add_argument("--seed", type=int, default=None, help="override the scenario seed")
    p.add_argument("--rel-tol", type=float, default=None, help="override solver.rel_tol")
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="override solver.time_limit_s",
    )
    p.add_argument("--out", default=None, metavar="RESULT.json", help="write the result JSON")
    p.add_argument(
        "--csv",
        default=None,
        metavar="ALLOCATION.csv",
        help="write one row per device (what a planner hands on)",
    )
    p.add_argument(
        "--plots",
        default=None,
        metavar="DIR",
        help="write the per-device allocation figure and an energy-privacy trade-off figure "
        "(re-solved over privacy weights) with their CSV tables",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar for --plots")
    p.add_argument("--json", action="store_true", help="print the result JSON, not a table")
    p.add_argument("--max-rows", type=int, default=50, help="device rows in the table")
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser("methods", help="list the registered solver methods")
    p.set_defaults(func=cmd_methods)


def cmd_solve(args: argparse.Namespace) -> int:
    import sys

    from privtuner.errors import InfeasibleError, SolverError
    from privtuner.io import atomic_write_text
    from privtuner.optimizer import solve
    from privtuner.optimizer.core.options import options_from_spec
    from privtuner.optimizer.core.result import fold_device_reasons
    from privtuner.pipeline import build_problem
    from privtuner.rows import device_ids
    from privtuner.scenario import load_scenario
    from privtuner.studies import write_allocation

    spec = load_scenario(args.file)
    if spec.sweep:
        raise SolverError(
            f"{args.file}: the scenario has a sweep; solve it with 'privtuner batch' "
            "(or remove the sweep)"
        )
    for flag, path in (("--out", args.out), ("--csv", args.csv), ("--plots", args.plots)):
        if path:
            check_writable(flag, path, folder=flag == "--plots")
    note = random_channel_note(spec)
    if note:
        print(f"note: {note}", file=sys.stderr)
    problem = build_problem(spec, args.seed)
    method = args.method or spec.solver.method
    options: dict[str, Any] = options_from_spec(
        spec.solver, rel_tol=args.rel_tol, time_limit_s=args.time_limit
    )
    result = solve(problem, method, **options).replace(device_ids=device_ids(spec))
    if result.status == "infeasible":
        from privtuner.optimizer.methods.exact.remedies import suggest_remedies

        result = result.replace(suggestions=tuple(suggest_remedies(problem, result.device_ids)))
    if args.out:
        atomic_write_text(args.out, result.to_json() + "\n")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False))
        sys.stdout.flush()
    if result.status == "infeasible":
        for line in result.suggestions:
            print(f"hint: to make it feasible: {line}", file=sys.stderr)
        raise InfeasibleError(fold_device_reasons(result.reasons))
    if result.status == "error":
        raise SolverError(f"method {method!r} found no usable allocation: {result.message}")
    if args.csv:
        write_allocation(result, args.csv, source=str(args.file))
    if args.plots:
        from privtuner.studies import write_solve_figures

        written = write_solve_figures(
            problem,
            result,
            args.plots,
            source=str(args.file),
            progress=not args.no_progress,
            **options,
        )
        print(f"wrote {len(written)} figure/table files to {args.plots}", file=sys.stderr)
    if not args.json:
        print(
            f"# {problem.name}: {problem.n_devices} devices, {problem.n_sets} CKKS sets, "
            f"deadline {problem.deadline_s:g} s per round"
        )
        print(result.table(max_rows=args.max_rows))
    sys.stdout.flush()
    return 0


def check_writable(flag: str, path: str, *, folder: bool = False) -> None:
    """Fail before solving when ``path`` (a file, or a folder with ``folder``) cannot be
    written: its nearest existing ancestor must be a folder in which a file can be created."""
    import os
    import tempfile
    from pathlib import Path

    from privtuner.errors import PrivtunerError

    target = Path(path)
    if target.is_dir() != folder and target.exists():
        kind = "a file" if folder else "a folder"
        raise PrivtunerError(f"{flag} {path}: is {kind}; give a {'folder' if folder else 'file'}")
    probe = target if folder else target.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is not a folder")
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".privtuner-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise PrivtunerError(f"{flag} {path}: cannot write there ({why})") from None


def random_channel_note(spec: Any) -> str | None:
    """One line when explicit devices placed by ``distance_m`` get random shadowing or fading
    (drawn from the seed; a planner may expect the path loss alone), else None."""
    explicit = spec.devices.explicit or []
    if not any(d.distance_m is not None for d in explicit):
        return None
    sysm = spec.system
    if sysm.shadowing_db <= 0 and sysm.fading == "none":
        return None
    drawn = []
    if sysm.shadowing_db > 0:
        drawn.append(f"log-normal shadowing ({sysm.shadowing_db:g} dB)")
    if sysm.fading != "none":
        drawn.append(f"{sysm.fading} fading")
    return (
        f"devices placed by distance_m get random {' and '.join(drawn)} drawn from the seed "
        "(see 'privtuner simulate'); set system.shadowing_db: 0 and system.fading: none for "
        "path loss alone, or give gain_db"
    )


def cmd_methods(args: argparse.Namespace) -> int:
    from privtuner.optimizer import available_methods

    methods = available_methods()
    width = max((len(m) for m in methods), default=0)
    for name, desc in methods.items():
        print(f"{name:<{width}}  {desc}")
    return 0
