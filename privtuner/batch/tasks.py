"""Batch tasks: scenario files and sweeps expanded into (scenario point, seed, method) tasks.

The row key is ``"<scenario name>|seed=<seed>|method=<method>"``. Tasks are ordered as they are
expanded (files in the given order, directories sorted, sweep points in file order), so an
interrupted-and-resumed batch writes the same table as an uninterrupted one.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from privtuner.errors import ScenarioError, short

#: File name suffixes read as scenario files when a directory is given.
SCENARIO_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class BatchTask:
    """One unit of work: solve scenario point ``spec_json`` with ``seed`` and ``method``.

    Picklable and small (the spec travels as JSON), so it can go to a process or a dask worker.
    """

    key: str
    scenario: str
    sweep_base: str
    sweep_params_json: str
    source: str
    seed: int
    method: str
    spec_json: str
    options: tuple[tuple[str, Any], ...] = ()
    #: why the point cannot be solved (found at expansion); the task becomes an error row
    problem: str = ""


def task_key(scenario: str, seed: int, method: str) -> str:
    """Stable row key: ``"<scenario>|seed=<seed>|method=<method>"``."""
    return f"{scenario}|seed={seed}|method={method}"


def discover_scenario_files(paths: Iterable[str | Path]) -> list[Path]:
    """Scenario files from files and directories (directories: ``*.yaml``/``*.yml``, sorted).

    Raises :class:`ScenarioError` for a path that does not exist or a directory with no
    scenario file.
    """
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                q for q in p.iterdir() if q.is_file() and q.suffix.lower() in SCENARIO_SUFFIXES
            )
            if not found:
                problems.append(f"{p}: directory contains no scenario file (*.yaml, *.yml)")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            problems.append(f"{p}: no such file or directory")
    if problems:
        raise ScenarioError(problems)
    # the same file given twice is read once
    seen: set[Path] = set()
    unique = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique


def _sweep_points(
    spec: Any, points: list[Any] | None = None
) -> list[tuple[Any, dict[str, Any], str]]:
    """(point spec, sweep combination, problem) triples in :func:`expand_sweep` order.

    ``problem`` is ``""``, or why the point cannot be solved or become rows of its own: a
    constant objective (refused by the solver), a generated name over the schema's
    ``NAME_MAX_CHARS`` characters, or a name equal to an earlier point's (values that print
    alike under ``%g``); such a point is an error row (one per repeated name). ``points``:
    the sweep already expanded, if the caller has it.
    """
    from privtuner.scenario import expand_sweep

    if points is None:
        points = expand_sweep(spec, check_names=False)  # name problems become error rows
    if not spec.sweep:
        return [(points[0], {}, _point_problem(spec, points[0]))]
    keys = list(spec.sweep)
    combos = [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(spec.sweep[k] for k in keys))
    ]
    first: dict[str, dict[str, Any]] = {}
    out: list[tuple[Any, dict[str, Any], str]] = []
    for point, combo in zip(points, combos, strict=True):
        if point.name in first:
            problem = (
                f"sweep values {short(repr(first[point.name]), 100)} and "
                f"{short(repr(combo), 100)} give the same "
                f"point name {point.name!r}; make the swept values differ in their first 6 "
                "digits"
            )
            # one row per key: the earlier point's row carries the problem
            out = [(p, c, problem if p.name == point.name else q) for p, c, q in out]
            continue
        first[point.name] = combo
        out.append((point, combo, _point_problem(spec, point)))
    return out


def _point_problem(spec: Any, point: Any) -> str:
    """Why one expanded point cannot be solved ("" when it can)."""
    from privtuner.optimizer.core.problem import constant_objective_reason
    from privtuner.scenario.schema import NAME_MAX_CHARS

    if len(point.name) > NAME_MAX_CHARS:
        return (
            f"sweep point name has {len(point.name)} characters (at most {NAME_MAX_CHARS}); "
            f"shorten name ({len(spec.name)} characters) or the sweep"
        )
    o = point.objective
    constant = constant_objective_reason(o.kind, o.energy_weight, o.privacy_weight)
    return f"objective: {constant}" if constant else ""


def spec_problems(spec: Any, points: list[Any] | None = None) -> list[str]:
    """Problems that make a batch turn points of ``spec`` into error rows, one line each
    (``privtuner validate`` reports them); ``[]`` when every point can run. ``points``: the
    sweep already expanded, if the caller has it."""
    return [q for _, _, q in _sweep_points(spec, points) if q]


def tasks_for_spec(
    spec: Any,
    *,
    source: str = "",
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    options: dict[str, Any] | None = None,
) -> list[BatchTask]:
    """Tasks of one (possibly sweeping) :class:`~privtuner.scenario.ScenarioSpec`.

    ``methods`` defaults to each point's ``solver.method``; ``seeds`` to each point's ``seed``
    (refused, as :class:`ScenarioError`, when ``spec`` sweeps ``seed``).
    ``options`` are extra solver options for every task (the point's ``solver.rel_tol``,
    ``max_iterations`` and ``time_limit_s`` are always passed).
    """
    if seeds is not None and "seed" in (spec.sweep or {}):
        # each override seed would rerun every swept seed: copies of one instance
        raise ScenarioError(
            [
                "sweep: seed is swept, so --seeds would repeat the same instances; drop --seeds "
                "or the seed sweep"
            ],
            source or spec.name,
        )
    tasks = []
    for point, combo, problem in _sweep_points(spec):
        spec_json = point.model_dump_json()
        point_methods = list(methods) if methods else [point.solver.method]
        point_seeds = [int(s) for s in seeds] if seeds is not None else [int(point.seed)]
        for seed in point_seeds:
            for method in point_methods:
                tasks.append(
                    BatchTask(
                        key=task_key(point.name, seed, method),
                        scenario=point.name,
                        sweep_base=spec.name,
                        sweep_params_json=json.dumps(combo, sort_keys=False),
                        source=source,
                        seed=seed,
                        method=method,
                        spec_json=spec_json,
                        options=tuple(sorted((options or {}).items())),
                        problem=problem,
                    )
                )
    return tasks


def collect_tasks(
    paths: Iterable[str | Path],
    *,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    options: dict[str, Any] | None = None,
    transform: Callable[[Any], Any] | None = None,
) -> list[BatchTask]:
    """Every task of the scenario files and directories in ``paths``, in a stable order.

    ``transform`` (optional) maps each loaded spec before expansion (``reproduce --quick``
    uses it to shorten sweeps). Every file's problems are collected and raised together as one
    :class:`ScenarioError`; duplicate row keys (two files producing the same scenario name) are
    an error too.
    """
    from privtuner.scenario import load_scenario

    files = discover_scenario_files(paths)
    # relative paths are resolved by the loader
    sources = [(str(f), partial(load_scenario, f)) for f in files]
    return tasks_from_sources(
        sources, methods=methods, seeds=seeds, options=options, transform=transform
    )


def bundled_tasks(
    folder: str,
    *,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    options: dict[str, Any] | None = None,
    transform: Callable[[Any], Any] | None = None,
) -> list[BatchTask]:
    """:func:`collect_tasks` of the scenarios bundled in the package under ``folder``
    (e.g. ``"reproduce"``; see :mod:`privtuner.scenario.resources`)."""
    from privtuner.scenario.resources import bundled_names, bundled_source, load_bundled

    sources = [(bundled_source(n), partial(load_bundled, n)) for n in bundled_names(folder)]
    return tasks_from_sources(
        sources, methods=methods, seeds=seeds, options=options, transform=transform
    )


def tasks_from_sources(
    sources: Iterable[tuple[str, Callable[[], Any]]],
    *,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    options: dict[str, Any] | None = None,
    transform: Callable[[Any], Any] | None = None,
) -> list[BatchTask]:
    """Tasks of (source label, spec loader) pairs, in order; the problems of every source
    (and duplicate row keys) are raised together as one :class:`ScenarioError`."""
    problems: list[str] = []
    tasks: list[BatchTask] = []
    for source, load in sources:
        label = None  # the loader names the file itself
        try:
            spec = load()
            label = source  # expansion errors name the scenario, which two files may share
            if transform is not None:
                spec = transform(spec)
            tasks.extend(
                tasks_for_spec(spec, source=source, methods=methods, seeds=seeds, options=options)
            )
        except ScenarioError as exc:
            problems.extend(
                ScenarioError(fold_point_problems(exc.problems), label or exc.source).lines()
            )
    problems.extend(duplicate_problems(((t.key, t.source) for t in tasks), "row key"))
    if problems:
        raise ScenarioError(problems)
    return tasks


def duplicate_problems(named: Iterable[tuple[str, str]], what: str) -> list[str]:
    """(name, source) pairs -> one line per pair of sources that give the same names (rows
    of a batch, or scenario names for ``privtuner validate``): ``duplicate <what> 'x' and
    N more (from A and B); ...``."""
    first: dict[str, str] = {}
    shared: dict[tuple[str, str], list[str]] = {}
    for name, source in named:
        if name in first:
            shared.setdefault((first[name], source), []).append(name)
        else:
            first[name] = source
    return [
        f"duplicate {what} {short(names[0])!r}"
        + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        + f" (from {a} and {b}); give the scenarios distinct names"
        for (a, b), names in shared.items()
    ]


def fold_point_problems(problems: Sequence[str]) -> list[str]:
    """Problems of one file, a problem repeated over sweep points on one line: ``sweep point
    [a=1]: X`` for n points becomes ``X (n sweep points, e.g. [a=1])``; other lines are kept.
    Order: first occurrence."""
    points: dict[tuple[bool, str], list[str]] = {}
    for line in problems:
        head, sep, rest = line.partition("]: ")
        if line.startswith("sweep point [") and sep:
            points.setdefault((True, rest), []).append(head.removeprefix("sweep point ") + "]")
        else:
            points.setdefault((False, line), [])
    out = []
    for (is_point, text), labels in points.items():
        if not is_point:
            out.append(text)
        elif len(labels) == 1:
            out.append(f"sweep point {labels[0]}: {text}")
        else:
            out.append(f"{text} ({len(labels)} sweep points, e.g. {labels[0]})")
    return out


def check_methods(methods: Iterable[str]) -> None:
    """Raise :class:`~privtuner.errors.SolverError` naming any unregistered method (and the
    valid ones) before a batch starts, rather than writing a table of error rows."""
    from privtuner.errors import SolverError
    from privtuner.optimizer import available_methods

    valid = available_methods()
    bad = sorted({m for m in methods if m not in valid})
    if bad:
        raise SolverError(
            f"unknown method(s) {', '.join(map(repr, bad))}; valid methods: {', '.join(valid)}"
        )
