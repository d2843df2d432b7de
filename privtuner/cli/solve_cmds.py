"""Commands ``solve`` (one scenario -> allocation) and ``methods`` (registered solvers)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from privtuner.cli.argtypes import nonnegative_int, rel_tol, seed, time_limit_s


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
    p.add_argument("--seed", type=seed, default=None, help="override the scenario seed")
    p.add_argument("--rel-tol", type=rel_tol, default=None, help="override solver.rel_tol")
    p.add_argument(
        "--time-limit",
        type=time_limit_s,
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
    p.add_argument(
        "--max-rows",
        type=nonnegative_int,
        default=50,
        metavar="N",
        help="device rows in the table (default 50; 0: the summary and totals only)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="infeasible: list every device that fails (default: a count and the worst)",
    )
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser("methods", help="list the registered solver methods")
    p.set_defaults(func=cmd_methods)


def cmd_solve(args: argparse.Namespace) -> int:
    import sys

    from privtuner.batch.tasks import spec_problems
    from privtuner.errors import InfeasibleError, ScenarioError, SolverError
    from privtuner.optimizer import SolveResult, solve, solver_info
    from privtuner.optimizer.core.options import options_from_spec
    from privtuner.optimizer.core.result import fold_device_reasons
    from privtuner.pipeline import checked_stages
    from privtuner.rows import device_ids
    from privtuner.scenario import load_scenario
    from privtuner.studies import protocol_of, write_allocation

    _check_output_paths(args)
    spec = load_scenario(args.file)
    if spec.sweep:
        raise SolverError(
            f"{args.file}: the scenario has a sweep; solve it with 'privtuner batch' "
            "(or remove the sweep)"
        )
    problems = spec_problems(spec, [spec])  # a constant objective: as validate, nothing written
    if problems:
        raise ScenarioError(problems, str(args.file))
    note = random_channel_note(spec)
    if note:
        print(f"note: {note}", file=sys.stderr)
    method = args.method or spec.solver.method
    if args.method:
        solver_info(args.method)  # an unknown --method is bad input: nothing is written
    # a problem of the scenario (the cost model, the catalogue) names the file and the field,
    # as 'privtuner validate' does
    stages = checked_stages(spec, args.seed, method=method, source=str(args.file))
    problem = stages.problem
    options: dict[str, Any] = options_from_spec(
        spec.solver, rel_tol=args.rel_tol, time_limit_s=args.time_limit
    )
    try:
        result = solve(problem, method, **options).replace(device_ids=device_ids(spec))
    except SolverError as exc:  # the method refused the instance: still a result to keep
        failed = SolveResult.error(problem, method=method, message=str(exc))
        _write_result(args, failed.replace(device_ids=device_ids(spec)))
        _note_not_written(args, "the solver found no usable allocation")
        raise
    if result.status == "infeasible":
        from privtuner.optimizer.methods.exact.remedies import suggest_remedies

        result = result.replace(suggestions=tuple(suggest_remedies(problem, result.device_ids)))
    _write_result(args, result)
    if result.status == "infeasible":
        for line in result.suggestions:
            print(f"hint: to make it feasible: {line}", file=sys.stderr)
        _note_not_written(args, "the instance is infeasible")
        raise InfeasibleError(
            (args.verbose and _all_reasons(problem)) or fold_device_reasons(result.reasons)
        )
    if result.status == "error":
        _note_not_written(args, "the solver found no usable allocation")
        raise SolverError(f"method {method!r} found no usable allocation: {result.message}")
    if args.csv:
        write_allocation(result, args.csv, source=str(args.file), protocol=protocol_of(problem))
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
        for line in _catalogue_notes(spec, stages.costs.provenance):
            print(f"# {line}")
        print(result.table(max_rows=args.max_rows))
    sys.stdout.flush()
    return 0


def _catalogue_notes(spec: Any, prov: Any) -> list[str]:
    """The catalogue sets the scenario's floors dropped (``prov``: the cost table's
    provenance)."""
    notes = []
    for key, what in (
        ("dropped_for_precision", f"below fhe.min_precision_bits={spec.fhe.min_precision_bits:g}"),
        (
            "dropped_for_accuracy",
            "losing more than fhe.max_accuracy_loss_points="
            f"{spec.fhe.max_accuracy_loss_points} in {prov.get('accuracy_study')}",
        ),
    ):
        if prov.get(key):
            n = len(prov[key])
            notes.append(f"dropped {n} set{'s' * (n != 1)} {what}: {', '.join(prov[key])}")
    return notes


def _write_result(args: argparse.Namespace, result: Any) -> None:
    """The result JSON to ``--out`` and/or stdout (``--json``), whatever its status."""
    import sys

    from privtuner.io import atomic_write_text

    if args.out:
        atomic_write_text(args.out, result.to_json() + "\n")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False))
        sys.stdout.flush()


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


def _all_reasons(problem: Any) -> list[str]:
    """Every infeasibility reason, one per device (the solve result summarises them)."""
    from privtuner.optimizer.methods.exact.feasibility import explain_infeasibility

    return explain_infeasibility(problem, max_listed=None)


def _note_not_written(args: argparse.Namespace, why: str) -> None:
    """One stderr line naming the outputs a failed solve leaves unwritten (--csv, --plots)."""
    import sys

    skipped = [f"{f} {p}" for f, p in (("--csv", args.csv), ("--plots", args.plots)) if p]
    if skipped:
        print(f"note: {' and '.join(skipped)} not written: {why}", file=sys.stderr)


def _check_output_paths(args: argparse.Namespace) -> None:
    """Refuse, before solving, an output path that cannot be written or is given twice."""
    from privtuner.cli.outputs import check_output_paths

    check_output_paths(
        ("--out", args.out, False), ("--csv", args.csv, False), ("--plots", args.plots, True)
    )


def cmd_methods(args: argparse.Namespace) -> int:
    from privtuner.optimizer import available_methods

    methods = available_methods()
    width = max((len(m) for m in methods), default=0)
    for name, desc in methods.items():
        print(f"{name:<{width}}  {desc}")
    return 0
