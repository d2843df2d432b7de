"""Studies that solve several problems and hand the results to :mod:`privtuner.plotting`.

* :func:`tradeoff_curve`: the energy-privacy trade-off of one scenario (re-solves over privacy
  weights, or privacy requirements for the constrained objective);
* :func:`write_solve_figures`: the figures of ``privtuner solve --plots DIR`` (per-device
  allocation and a small trade-off);
* :func:`reproduce`: ``privtuner reproduce``: the sweep set bundled in the package
  (``privtuner/scenario/bundled/reproduce/*.yaml``, read through :mod:`importlib.resources`)
  through :func:`privtuner.batch.run_batch`, then every figure with the CSV table of the
  numbers it shows.

Plotting stays pure (:mod:`privtuner.plotting` never solves); solving happens here.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from privtuner.errors import PrivtunerError
from privtuner.io import write_csv

#: The bundled sweep set of ``privtuner reproduce`` (folder of
#: :mod:`privtuner.scenario.resources`).
REPRODUCE_FOLDER = "reproduce"

#: Baselines of spec section 5.3 (registered by the optimiser).
BASELINES = (
    "equal_bandwidth",
    "fixed_largest_n",
    "fixed_smallest_n",
    "ao_random_theta",
    "ao_greedy_theta",
    "comm_only",
    "comp_only",
)

#: Methods ``reproduce`` runs on every sweep: exact, ao and the baselines.
REPRODUCE_METHODS = ("exact", "ao", *BASELINES)

#: Methods of ``reproduce --quick``.
QUICK_METHODS = ("exact", "ao", "equal_bandwidth", "fixed_largest_n")


# ----------------------------------------------------------------------------- trade-off


def tradeoff_curve(
    problem_factory: Callable[[float], Any],
    weights: Sequence[float],
    method: str = "exact",
    *,
    x: str = "privacy_weight",
    progress: bool = False,
    **options: Any,
) -> list[dict[str, Any]]:
    """Solve ``problem_factory(w)`` for each ``w`` in ``weights`` with ``method``.

    ``x`` names what the values are (``privacy_weight`` for the weighted objective,
    ``privacy_min`` for the constrained one); each returned row (the columns of
    :data:`privtuner.rows.COLUMNS` that apply) carries it, so
    :func:`privtuner.plotting.plot_tradeoff` draws the curve. An infeasible point is a row
    with its status, not an exception.
    """
    from privtuner.optimizer import solve
    from privtuner.rows import normalize_row, result_output_columns

    rows = []
    for w in _progress(weights, progress, f"trade-off ({method})", "solve"):
        problem = problem_factory(float(w))
        t0 = time.perf_counter()
        result = solve(problem, method, **options)
        row = {
            "key": f"{problem.name}|{x}={w:g}|method={method}",
            "scenario": f"{problem.name}[{x}={w:g}]",
            "sweep_base": problem.name,
            "sweep_params_json": json.dumps({f"objective.{x}": float(w)}),
            "seed": problem.seed,
            "method": method,
            "n_devices": problem.n_devices,
            "bandwidth_hz": problem.bandwidth_hz,
            "server_cpu_hz": problem.server_cpu_hz,
            "deadline_s": problem.deadline_s,
            "objective_kind": problem.objective_kind,
            "energy_weight": problem.energy_weight,
            "privacy_weight": problem.privacy_weight,
            "privacy_min": problem.privacy_min,
            "privacy_metric": problem.costs.privacy_metric,
            "rounds": problem.rounds,
        }
        row.update(result_output_columns(result))
        row["time_solve_s"] = time.perf_counter() - t0
        rows.append(normalize_row(row))
    return rows


def _progress(items: Sequence[Any], enabled: bool, desc: str, unit: str) -> Any:
    """``items`` with a tqdm progress bar on stderr when ``enabled``."""
    if not enabled:
        return items
    import sys

    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def _base_allowed(problem: Any) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Sets allowed by security and precision alone (without a privacy floor) ``[n_sets]``."""
    c = problem.costs
    min_sec = float(problem.meta.get("min_security_bits", 0.0))
    min_prec = float(problem.meta.get("min_precision_bits", 0.0))
    ok = c.security_bits >= min_sec
    if min_prec > 0:
        ok &= c.precision_bits >= min_prec
    return np.asarray(ok, dtype=bool)


def privacy_problem_factory(problem: Any) -> tuple[Callable[[float], Any], str]:
    """A factory varying the privacy trade-off of ``problem`` and the name of what it varies:
    ``privacy_weight`` (weighted objective) or ``privacy_min`` (constrained: the allowed sets
    are those meeting the security/precision floors with privacy >= the value)."""
    if problem.objective_kind == "weighted":
        return (lambda w: problem.replace(privacy_weight=w)), "privacy_weight"
    base = _base_allowed(problem)

    def constrained(pmin: float) -> Any:
        ok = base & (problem.costs.privacy >= pmin)
        allowed = np.broadcast_to(ok, (problem.n_devices, problem.n_sets)).copy()
        return problem.replace(privacy_min=pmin, allowed=allowed)

    return constrained, "privacy_min"


def default_tradeoff_values(
    problem: Any, n_points: int = 7, method: str = "exact", **options: Any
) -> list[float]:
    """A grid of trade-off values that spans the interesting range of ``problem``.

    Constrained: up to ``n_points`` of the distinct privacy values of the allowed sets
    (evenly spread, both ends kept). Weighted: 0, the scenario's own weight, and weights
    around w* = w_E E0 / (n (Phi_max - Phi_min)), where E0 is the energy of the w_P = 0
    solution: at w* the privacy term is comparable to the energy term, so the sets change
    over the grid w* x [0.03, 30] (log-spaced).
    """
    if problem.objective_kind == "constrained":
        vals = np.unique(problem.costs.privacy[_base_allowed(problem)])
        if vals.size <= n_points:
            return [float(v) for v in vals]
        idx = np.unique(np.round(np.linspace(0, vals.size - 1, n_points)).astype(int))
        return [float(vals[i]) for i in idx]
    from privtuner.optimizer import solve

    res0 = solve(problem.replace(privacy_weight=0.0), method, **options)
    priv = problem.costs.privacy[_base_allowed(problem)]
    spread = float(np.ptp(priv)) if priv.size else 0.0
    e0 = float(res0.total_energy_j) if res0.has_allocation else math.nan
    values = {0.0, float(problem.privacy_weight)}
    if spread > 0 and math.isfinite(e0) and e0 > 0:
        w_star = problem.energy_weight * e0 / (problem.n_devices * spread)
        values.update(float(w) for w in w_star * np.geomspace(0.03, 30.0, max(2, n_points - 2)))
    return sorted(values)


def write_solve_figures(
    problem: Any,
    result: Any,
    out_dir: str | Path,
    *,
    weights: Sequence[float] | None = None,
    method: str | None = None,
    n_points: int = 7,
    source: str = "",
    progress: bool = False,
    **options: Any,
) -> list[Path]:
    """Figures of one solved scenario (``privtuner solve --plots DIR``):

    * ``allocation.png/.pdf`` (+ ``allocation.csv`` and its ``allocation.provenance.json``,
      the same files as ``solve --csv``, :func:`write_allocation`): the per-device allocation
      of ``result``;
    * ``tradeoff.png/.pdf`` (+ ``tradeoff.csv``): total energy and chosen sets vs the privacy
      weight (or the privacy requirement for the constrained objective), re-solving
      ``problem`` with ``method`` (default ``result.method``) at ``weights`` (default
      :func:`default_tradeoff_values`).

    Returns the written paths. A result without an allocation (infeasible) writes nothing.
    """
    from privtuner.plotting import plot_allocation, plot_tradeoff, save_figure
    from privtuner.rows import allocation_records

    out = Path(out_dir)
    if not result.has_allocation:
        return []
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    alloc = allocation_records(result)
    fig = plot_allocation(alloc, title=f"{problem.name}: {result.method} (seed {result.seed})")
    paths += save_figure(fig, out, "allocation")
    paths += write_allocation(
        result, out / "allocation.csv", source=source, protocol=protocol_of(problem)
    )
    method = method or result.method
    factory, x = privacy_problem_factory(problem)
    values = (
        list(weights)
        if weights is not None
        else default_tradeoff_values(problem, n_points, method, **options)
    )
    rows = tradeoff_curve(factory, values, method, x=x, progress=progress, **options)
    paths += save_figure(plot_tradeoff(rows, x=x), out, "tradeoff")
    paths.append(write_csv(_tradeoff_table(rows, x), out / "tradeoff.csv"))
    return paths


def protocol_of(problem: Any) -> dict[str, Any]:
    """The protocol options ``problem``'s costs were priced with: ``fhe.packing`` and
    ``fhe.rescale`` (from its cost table's provenance; None where it does not say)."""
    prov = getattr(getattr(problem, "costs", None), "provenance", None) or {}
    return {k: prov.get(k) for k in ("packing", "rescale")}


def write_allocation(
    result: Any, path: str | Path, *, source: str = "", protocol: Mapping[str, Any] | None = None
) -> list[Path]:
    """The planner's allocation CSV (:func:`privtuner.rows.planner_rows`: one row per device,
    units and per-run / per-round in the column names, rounded) and its provenance sidecar
    ``<stem>.provenance.json`` (:func:`privtuner.rows.provenance`: scenario, method, seed,
    status, gap, totals, the protocol options priced (``protocol``, :func:`protocol_of`),
    column meanings, versions). Returns both paths."""
    from privtuner.io import atomic_write_text
    from privtuner.rows import PLANNER_COLUMNS, planner_rows, provenance, sidecar_path

    csv_path = write_csv(planner_rows(result), path, list(PLANNER_COLUMNS))
    meta = provenance(result, source=source, protocol=protocol)
    side = atomic_write_text(sidecar_path(path), json.dumps(meta, indent=2) + "\n")
    return [csv_path, side]


def _tradeoff_table(rows: Sequence[Mapping[str, Any]], x: str) -> list[dict[str, Any]]:
    keep = (
        x,
        "method",
        "seed",
        "status",
        "energy_j",
        "energy_compute_j",
        "energy_tx_j",
        "energy_server_j",
        "objective",
        "security_bits_mean",
        "security_bits_uncapped_mean",
        "privacy_total",
        "sets_summary",
    )
    return [{k: r.get(k) for k in keep} for r in rows]


# ----------------------------------------------------------------------------- reproduce


def quick_spec(spec: Any) -> Any:
    """``reproduce --quick``: each sweep list cut to at most 3 values (first, middle, last),
    the ``seed`` sweep to its first value, and at most 10 devices per scenario."""
    if not spec.sweep:
        return spec
    sweep: dict[str, list[Any]] = {}
    for key, values in spec.sweep.items():
        vals = list(values)
        if key == "seed":
            vals = vals[:1]
        elif key == "devices.count":
            vals = [v for v in vals if v <= 10] or vals[:1]
        if len(vals) > 3:
            vals = [vals[0], vals[len(vals) // 2], vals[-1]]
        sweep[key] = vals
    return spec.model_copy(update={"sweep": sweep})


def reproduce(
    out_dir: str | Path,
    *,
    quick: bool = False,
    jobs: int = 1,
    scenarios_dir: str | Path | None = None,
    methods: Sequence[str] | None = None,
    progress: bool = True,
    executor: str = "local",
) -> dict[str, Any]:
    """Run the bundled sweep set and write every figure with its CSV table into ``out_dir``.

    ``out_dir/results.csv`` holds one row per (scenario, seed, method) (resumable: rerunning
    skips finished rows); ``out_dir/figures/`` the PNG + PDF figures and one CSV per figure
    with the numbers it shows; ``out_dir/summary.json`` what ran and how long it took.
    Returns that summary.
    """
    from privtuner.batch import bundled_tasks, collect_tasks, read_table, run_batch
    from privtuner.scenario.resources import bundled_source

    t0 = time.perf_counter()
    use_methods = list(methods) if methods else list(QUICK_METHODS if quick else REPRODUCE_METHODS)
    transform = quick_spec if quick else None
    if scenarios_dir is None:
        src = bundled_source(REPRODUCE_FOLDER + "/*")
        tasks = bundled_tasks(REPRODUCE_FOLDER, methods=use_methods, transform=transform)
    else:
        src = str(scenarios_dir)
        if not Path(scenarios_dir).is_dir():
            raise PrivtunerError(
                f"reproduce: scenario folder {src} not found (give --scenarios DIR)"
            )
        tasks = collect_tasks([scenarios_dir], methods=use_methods, transform=transform)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.csv"
    summary = run_batch(
        None, results_path, tasks=tasks, jobs=jobs, progress=progress, executor=executor
    )
    t_batch = time.perf_counter() - t0
    keys = {t.key for t in tasks}
    rows = [r for r in read_table(results_path) if r.get("key") in keys]
    fig_dir = out / "figures"
    written = write_result_figures(rows, fig_dir, progress=progress)
    wall = time.perf_counter() - t0
    info = {
        "quick": quick,
        "jobs": jobs,
        "scenarios_dir": src,
        "methods": use_methods,
        "batch": summary.to_dict(),
        "batch_wall_s": t_batch,
        "figures_wall_s": wall - t_batch,
        "wall_s": wall,
        "figures": [str(p.relative_to(out)) for p in written],
    }
    (out / "summary.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def write_result_figures(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    kinds: Sequence[str] | None = None,
    strict: bool = False,
    progress: bool = False,
    **plot_options: Any,
) -> list[Path]:
    """Figures of ``kinds`` (default every kind of :data:`privtuner.plotting.PLOT_KINDS`),
    each as PNG + PDF with a CSV of the plotted numbers (``<stem>.csv``). Kinds the rows
    cannot support are skipped (e.g. no ``ao`` rows: no convergence figure), or raise with
    ``strict`` (``privtuner plot``). ``plot_options`` go to
    :func:`privtuner.plotting.figures_from_results` (methods, scenario, seed, y, log_x,
    log_y). ``progress``: a progress bar over the kinds on stderr."""
    from privtuner.plotting import PLOT_KINDS, figures_from_results, save_figure, select_rows

    out = Path(out_dir)
    written: list[Path] = []
    picked = select_rows(
        rows,
        methods=plot_options.get("methods"),
        scenario=plot_options.get("scenario"),
        seed=plot_options.get("seed"),
    )
    for kind in _progress(list(kinds or PLOT_KINDS), progress, "figures", "kind"):
        try:
            figs = figures_from_results(rows, kind, **plot_options)
        except PrivtunerError:
            if strict:
                raise
            continue
        for stem, fig in figs.items():
            written += save_figure(fig, out, stem)
            table = figure_table(picked, kind, stem, y=plot_options.get("y", "energy_j"))
            if table:
                written.append(write_csv(table, out / f"{stem}.csv"))
    return written


def figure_table(
    rows: Sequence[Mapping[str, Any]], kind: str, stem: str, *, y: str = "energy_j"
) -> list[dict[str, Any]]:
    """The numbers behind one figure of :func:`write_result_figures` (rows already
    selected): per method and x, the means, sample standard deviations (ddof=1) and the
    counts ``n_ok`` / ``n_runs`` / ``fraction_without_allocation`` of every aggregated point."""
    from privtuner.plotting import (
        TRADEOFF_COLUMNS,
        aggregate,
        allocation_row,
        bounds_row,
        convergence_rows,
        group_by_base,
        packing_series,
        row_allocation,
        row_history,
        scaling_stem,
        slug,
        tradeoff_axis,
        with_objective_gap,
    )
    from privtuner.rows import planner_records, swept_columns

    def agg_rows(group: Sequence[Mapping[str, Any]], x: str) -> list[dict[str, Any]]:
        group = with_objective_gap(group)
        ys = (y, "objective", "objective_gap_pct", "security_bits_mean")
        aggs = {col: aggregate(group, x, col) for col in dict.fromkeys(ys)}
        table = []
        for m, d in aggs[y].items():
            for i, xv in enumerate(d["x"]):
                row: dict[str, Any] = {x: float(xv), "method": m}
                for col, agg in aggs.items():
                    if m in agg:
                        row[f"{col}_mean"] = _fin(agg[m]["mean"][i])
                        row[f"{col}_std"] = _fin(agg[m]["std"][i])
                n_ok, n_all = int(d["n_ok"][i]), int(d["n_all"][i])
                row.update(
                    n_ok=n_ok,
                    n_runs=n_all,
                    fraction_without_allocation=(n_all - n_ok) / n_all if n_all else None,
                )
                table.append(row)
        return table

    if kind in ("tradeoff", "pareto"):
        for base, group in group_by_base(rows).items():
            if stem == f"{kind}_{slug(base)}":
                series = packing_series(group)
                return agg_rows(series, tradeoff_axis(series))
    elif kind == "scaling":
        taken: dict[str, None] = {}
        for base, group in group_by_base(rows).items():
            for col in swept_columns(group):
                if col in TRADEOFF_COLUMNS:
                    continue
                name = scaling_stem(col, base, taken)
                taken[name] = None
                if stem == name:
                    return agg_rows(group, col)
    elif kind in ("convergence", "bounds"):
        picked = convergence_rows(rows) if kind == "convergence" else [bounds_row(rows)]
        return [
            {
                "scenario": r.get("scenario"),
                "seed": r.get("seed"),
                "iteration": i + 1,
                **{k: v for k, v in h.items() if not isinstance(v, list | dict)},
            }
            for r in picked
            if r is not None
            for i, h in enumerate(row_history(r))
        ]
    elif kind == "allocation":
        pick = allocation_row(rows)
        if pick is not None:  # the planner's columns, as solve --csv / --plots write them
            return [
                {"scenario": pick.get("scenario"), "method": pick.get("method"), **a}
                for a in planner_records(row_allocation(pick))
            ]
    return []


def _fin(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None
