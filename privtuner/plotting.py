"""Figures: pure functions from results to :class:`matplotlib.figure.Figure`. Never solves.

Inputs are plain data: rows of a batch results table (:func:`privtuner.batch.read_table`, one
dict per (scenario, seed, method); see :data:`privtuner.rows.COLUMNS`), per-device allocation
records (:func:`privtuner.rows.allocation_records`) or a solver ``history`` (list of dicts, one
per iteration). Figures are built with the object-oriented API on the Agg canvas (no pyplot
state, no display needed); :func:`save_figure` writes PNG and PDF.

Kinds (``privtuner plot --kind``):

* ``tradeoff``: total energy per run [J] and mean (capped) security [bits] vs the privacy
  weight w_P (weighted objective) or the privacy requirement Phi_min (constrained), with the
  CKKS set chosen for each device (spec section 4, objective (a)/(b));
* ``pareto``: total energy vs achieved security per method, with the Pareto front;
* ``scaling``: total energy [J] (or another column), the objective and the objective gap to
  the best method vs each swept input (number of devices, total bandwidth, maximum power,
  deadline, ...) for every method (exact, ao, baselines);
* ``convergence``: objective vs iteration of ``ao`` (spec 5.1) from the result history;
* ``bounds``: lower and upper bound vs iteration of ``exact`` (spec 5.2);
* ``allocation``: per-device bars: bandwidth, transmit power, CPU, server CPU, CKKS set.

Aggregated points are means over the seeds with an allocation, error bars +-1 sample standard
deviation (ddof=1), stated in each figure's caption with n per point; proposed methods
(:data:`PROPOSED_METHODS`) are drawn solid, baselines dashed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

NDArrayF = np.ndarray[Any, np.dtype[np.float64]]

#: Row statuses that carry an allocation.
OK_STATUSES = ("optimal", "feasible")

#: Axis label (with unit) and display scale of results columns.
COLUMN_AXES: dict[str, tuple[str, float]] = {
    "n_devices": ("number of devices K [-]", 1.0),
    "bandwidth_hz": ("total bandwidth B [MHz]", 1e-6),
    "p_max_dbm": ("maximum transmit power p_max [dBm]", 1.0),
    "f_max_hz": ("maximum device CPU f_max [GHz]", 1e-9),
    "server_cpu_hz": ("server CPU F_s [GHz]", 1e-9),
    "deadline_s": ("per-round deadline T_max [s]", 1.0),
    "privacy_weight": ("privacy weight w_P [1/unit of privacy]", 1.0),
    "privacy_min": ("privacy requirement Phi_min [unit of privacy]", 1.0),
    "energy_weight": ("energy weight w_E [1/J]", 1.0),
    "noise_dbm_per_hz": ("noise PSD N0 [dBm/Hz]", 1.0),
    "cell_radius_m": ("cell radius [m]", 1.0),
    "shadowing_db": ("shadowing std [dB]", 1.0),
    "downlink_rate_bps": ("downlink rate [Mbit/s]", 1e-6),
    "rounds": ("fine-tuning rounds [-]", 1.0),
    "steps_per_round": ("steps per round [-]", 1.0),
    "lora_rank": ("LoRA rank r [-]", 1.0),
    "min_security_bits": ("minimum security [bits]", 1.0),
    "min_precision_bits": ("minimum precision [bits]", 1.0),
    "energy_j": ("total energy per run [J]", 1.0),
    "objective": ("objective [-]", 1.0),
    "objective_gap_pct": ("objective above the best method [%]", 1.0),
    "gap": ("certified relative optimality gap [-]", 1.0),
    "security_bits_min": ("lowest security of chosen sets [bits]", 1.0),
    "energy_compute_j": ("device compute energy [J]", 1.0),
    "energy_tx_j": ("uplink energy [J]", 1.0),
    "energy_server_j": ("server energy [J]", 1.0),
    "latency_max_s": ("slowest device latency per round [s]", 1.0),
    "security_bits_mean": ("mean security of chosen sets [bits]", 1.0),
    "time_solve_s": ("solve time [s]", 1.0),
}

#: Swept inputs drawn as trade-offs (:func:`plot_tradeoff`) rather than scaling figures.
TRADEOFF_COLUMNS = ("privacy_weight", "privacy_min")

#: Display order and style of methods (others follow, in order of appearance).
METHOD_ORDER = (
    "exact",
    "enumerate",
    "ao",
    "ao_random_theta",
    "ao_greedy_theta",
    "equal_bandwidth",
    "fixed_largest_n",
    "fixed_smallest_n",
    "comm_only",
    "comp_only",
)
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "*", "h")

#: The methods this project proposes (drawn solid, filled, thick); every other is a baseline
#: (dashed, hollow markers, thin).
PROPOSED_METHODS = ("exact", "enumerate", "ao")
_PROPOSED_COLORS = ("#0b4f9c", "#6a3d9a", "#c0392b")
_BASELINE_COLORS = ("#2ca02c", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f", "#bcbd22", "#e377c2")


def _axis(column: str, privacy_metric: str | None = None) -> tuple[str, float]:
    label, scale = COLUMN_AXES.get(column, (column, 1.0))
    if privacy_metric and column in ("privacy_weight", "privacy_min"):
        unit = "bit" if privacy_metric == "security_bits" else privacy_metric
        label = label.replace("unit of privacy", unit)
    return label, scale


def _new_figure(width_in: float = 6.4, height_in: float = 4.2) -> Figure:
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    # attach the Agg canvas so the figure renders without pyplot
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    return fig


def _ordered_methods(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in rows:
        m = str(r.get("method"))
        if m not in seen:
            seen.append(m)
    known = [m for m in METHOD_ORDER if m in seen]
    return known + [m for m in seen if m not in known]


def _style(method: str, methods: Sequence[str]) -> dict[str, Any]:
    """Line and marker style of ``method``: proposed methods (:data:`PROPOSED_METHODS`) solid
    with filled markers, baselines dashed with hollow markers, each its own colour/marker. A
    packing variant ``"exact [column]"`` (:func:`packing_series`) keeps its method's colour;
    the ``column`` baseline packing is dotted with hollow markers."""
    i = methods.index(method) if method in methods else 0
    marker = _MARKERS[i % len(_MARKERS)]
    name, _, variant = method.partition(" [")
    if name in PROPOSED_METHODS:
        color = _PROPOSED_COLORS[PROPOSED_METHODS.index(name)]
        if variant.startswith("column"):
            return {"marker": marker, "color": color, "ls": ":", "lw": 2.0, "mfc": "white"}
        return {"marker": marker, "color": color, "ls": "-", "lw": 2.0, "mfc": color}
    base = [m for m in methods if m.partition(" [")[0] not in PROPOSED_METHODS]
    j = base.index(method) if method in base else i
    color = _BASELINE_COLORS[j % len(_BASELINE_COLORS)]
    return {"marker": marker, "color": color, "ls": "--", "lw": 1.1, "mfc": "white"}


def _f(v: Any) -> float:
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def row_ok(r: Mapping[str, Any]) -> bool:
    return r.get("status") in OK_STATUSES and math.isfinite(_f(r.get("energy_j")))


def aggregate(
    rows: Iterable[Mapping[str, Any]], x: str, y: str = "energy_j"
) -> dict[str, dict[str, NDArrayF]]:
    """Per method: sorted ``x`` values and mean, sample standard deviation (ddof=1; NaN, i.e.
    undefined, for fewer than two runs) of ``y`` over the rows (seeds) at each x that carry
    an allocation, with ``n_ok`` / ``n_all`` counts (failed rows are counted, not averaged). Returns
    ``{method: {"x", "mean", "std", "n_ok", "n_all"}}``."""
    groups: dict[str, dict[float, list[float]]] = {}
    totals: dict[str, dict[float, int]] = {}
    rows = list(rows)
    for r in rows:
        xv = _f(r.get(x))
        if not math.isfinite(xv):
            continue
        m = str(r.get("method"))
        totals.setdefault(m, {}).setdefault(xv, 0)
        totals[m][xv] += 1
        groups.setdefault(m, {}).setdefault(xv, [])
        if row_ok(r) and math.isfinite(_f(r.get(y))):
            groups[m][xv].append(_f(r.get(y)))
    out: dict[str, dict[str, NDArrayF]] = {}
    for m in _ordered_methods(rows):
        if m not in groups:
            continue
        xs = sorted(groups[m])
        vals = [groups[m][xv] for xv in xs]
        out[m] = {
            "x": np.array(xs, dtype=float),
            "mean": np.array([np.mean(v) if v else np.nan for v in vals], dtype=float),
            "std": np.array(
                [np.std(v, ddof=1) if len(v) > 1 else np.nan for v in vals], dtype=float
            ),
            "n_ok": np.array([len(v) for v in vals], dtype=float),
            "n_all": np.array([totals[m][xv] for xv in xs], dtype=float),
        }
    return out


def _set_x_scale(ax: Axes, xs: NDArrayF) -> None:
    xs = xs[np.isfinite(xs)]
    if xs.size < 2:
        return
    pos = xs[xs > 0]
    if pos.size and pos.max() / pos.min() >= 50:
        if np.any(xs <= 0):
            ax.set_xscale("symlog", linthresh=float(pos.min()))
        else:
            ax.set_xscale("log")


def _same_curve(a: Mapping[str, NDArrayF], b: Mapping[str, NDArrayF]) -> bool:
    """Two aggregated curves at the same x with the same means (to 1e-9 relative)."""
    if a["x"].shape != b["x"].shape or not np.array_equal(a["x"], b["x"]):
        return False
    return bool(np.allclose(a["mean"], b["mean"], rtol=1e-9, atol=0.0, equal_nan=True))


def _plot_methods(
    ax: Axes,
    agg: Mapping[str, Mapping[str, NDArrayF]],
    scale_x: float,
    methods: Sequence[str],
) -> None:
    """Mean +- std per method; a curve equal to one drawn before it says so in its label
    (``"ao (= exact)"``); where some runs had no allocation, a hollow black ring and the
    fraction ``k/n`` of such runs next to the point."""
    drawn: list[str] = []
    for m, d in agg.items():
        st = _style(m, methods)
        x = d["x"] * scale_x
        ok = np.isfinite(d["mean"])
        same = [p for p in drawn if _same_curve(agg[p], d)] if np.any(ok) else []
        label = (f"{m} (= {same[0]}, drawn over it)" if same else m) + _missing_note(ok)
        drawn.append(m)
        ax.errorbar(
            x[ok],
            d["mean"][ok],
            yerr=_bar(d["std"][ok]),
            label=label,
            capsize=2,
            ms=5 if not same else 8,
            **st,
        )
        partial = ok & (d["n_ok"] < d["n_all"])
        if np.any(partial):  # some seeds failed there: hollow marker on top
            ax.plot(
                x[partial],
                d["mean"][partial],
                ls="none",
                marker=st["marker"],
                ms=9,
                mfc="none",
                mec="k",
                mew=1.0,
            )
            for xv, yv, k, n in zip(
                x[partial],
                d["mean"][partial],
                d["n_ok"][partial],
                d["n_all"][partial],
                strict=True,
            ):
                ax.annotate(
                    f"{int(n - k)}/{int(n)}",
                    (xv, yv),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize="x-small",
                    color=st["color"],
                )


def _bar(std: NDArrayF) -> NDArrayF:
    """Error bar half-lengths: no bar (0) where the std is undefined (n < 2 runs)."""
    return np.nan_to_num(std, nan=0.0)


def _missing_note(ok: np.ndarray[Any, np.dtype[np.bool_]]) -> str:
    """Legend note for points where no run of a method had an allocation (not drawn)."""
    k, n = int(np.sum(~ok)), int(ok.size)
    if k == 0:
        return ""
    return " (no allocation at any point)" if k == n else f" (no allocation at {k} of {n} points)"


def error_bar_caption(agg: Mapping[str, Mapping[str, NDArrayF]]) -> str:
    """What the points and error bars of an aggregated figure are, with n per point."""
    ns = np.concatenate([d["n_ok"] for d in agg.values()]) if agg else np.zeros(0)
    ns = ns[ns > 0]
    if ns.size == 0:
        n_text = "no run with an allocation"
    elif ns.min() == ns.max():
        n_text = f"n = {int(ns.min())} run{'s' if ns.min() > 1 else ''} (seeds) per point"
    else:
        n_text = f"n = {int(ns.min())}-{int(ns.max())} runs (seeds) per point"
    return (
        f"Points: mean over the runs with an allocation ({n_text}); error bars: +-1 sample "
        "standard deviation (ddof=1; none for n = 1). Black ring and k/n: k of the n runs "
        "at that point infeasible or without allocation. Solid: proposed methods; dashed: "
        "baselines."
    )


def _caption(fig: Figure, text: str) -> None:
    fig.supxlabel(text, fontsize="x-small", wrap=True)


def _set_y_scale(ax: Axes, agg: Mapping[str, Mapping[str, NDArrayF]], log_y: bool | None) -> None:
    means = np.concatenate([d["mean"] for d in agg.values()]) if agg else np.zeros(0)
    means = means[np.isfinite(means) & (means > 0)]
    if log_y is None:
        log_y = bool(means.size and means.max() / means.min() > 30)
    if log_y and means.size:
        ax.set_yscale("log")


def _methods_axes(
    ax: Axes,
    rows: Sequence[Mapping[str, Any]],
    x: str,
    y: str,
    order: Sequence[str],
    *,
    log_x: bool | None,
    log_y: bool | None,
) -> dict[str, dict[str, NDArrayF]]:
    """One panel: ``y`` vs ``x`` per method (mean +- std), labelled with units."""
    agg = aggregate(rows, x, y)
    metric = next((str(r.get("privacy_metric")) for r in rows if r.get("privacy_metric")), None)
    xlabel, xscale = _axis(x, metric)
    _plot_methods(ax, agg, xscale, order)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_axis(y)[0])
    if agg:
        xs = np.concatenate([d["x"] * xscale for d in agg.values()])
        if log_x is None:
            _set_x_scale(ax, xs)
        elif log_x:
            ax.set_xscale("log" if np.all(xs > 0) else "symlog")
        _set_y_scale(ax, agg, log_y)
    ax.grid(True, alpha=0.3)
    return agg


def _legend(ax: Axes, rows: Sequence[Mapping[str, Any]]) -> None:
    n_fail = sum(1 for r in rows if not row_ok(r))
    ax.legend(
        title=f"{n_fail} of {len(rows)} runs without allocation" if n_fail else None,
        fontsize="small",
        title_fontsize="small",
    )


def plot_energy_vs(
    rows: Sequence[Mapping[str, Any]],
    x: str,
    *,
    methods: Sequence[str] | None = None,
    y: str = "energy_j",
    title: str | None = None,
    log_x: bool | None = None,
    log_y: bool | None = None,
) -> Figure:
    """Total energy [J] (or ``y``) vs input column ``x`` for each method: mean +- std over the
    seeds that returned an allocation; a hollow black marker and k/n where k of n seeds did
    not (infeasible or error; counted in the legend title). The caption defines the error
    bars. ``log_x`` / ``log_y``: None chooses from the data's range."""
    rows = [r for r in rows if methods is None or r.get("method") in methods]
    order = _ordered_methods(rows)
    fig = _new_figure(6.4, 4.6)
    ax = fig.add_subplot()
    agg = _methods_axes(ax, rows, x, y, order, log_x=log_x, log_y=log_y)
    _legend(ax, rows)
    xname = ax.get_xlabel().split(" [")[0]
    ax.set_title(title or f"{_axis(y)[0].split(' [')[0]} vs {xname}")
    _caption(fig, error_bar_caption(agg))
    return fig


def with_objective_gap(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ``objective_gap_pct``: the run's objective above the best objective of any
    method on the same scenario point and seed, in % of that best's magnitude (0 for the
    best). Methods that optimise the same weighted objective compare fairly on it, where
    energy alone would penalise a method for buying privacy."""
    best: dict[tuple[Any, Any], float] = {}
    for r in rows:
        if row_ok(r) and math.isfinite(_f(r.get("objective"))):
            k = (r.get("scenario"), r.get("seed"))
            best[k] = min(best.get(k, math.inf), _f(r.get("objective")))
    out = []
    for r in rows:
        row = dict(r)
        b = best.get((r.get("scenario"), r.get("seed")), math.nan)
        obj = _f(r.get("objective"))
        row["objective_gap_pct"] = (
            100.0 * (obj - b) / max(abs(b), 1e-12)
            if row_ok(r) and math.isfinite(obj) and math.isfinite(b)
            else None
        )
        out.append(row)
    return out


def plot_method_panels(
    rows: Sequence[Mapping[str, Any]],
    x: str,
    *,
    methods: Sequence[str] | None = None,
    y: str = "energy_j",
    title: str | None = None,
    log_x: bool | None = None,
    log_y: bool | None = None,
) -> Figure:
    """Methods compared vs input ``x`` in three panels side by side: ``y`` (total energy
    [J] by default), the objective the methods minimise, and each run's objective gap to the
    best method on the same point and seed [%] (:func:`with_objective_gap`)."""
    rows = with_objective_gap([r for r in rows if methods is None or r.get("method") in methods])
    order = _ordered_methods(rows)
    fig = _new_figure(14.0, 4.8)
    axes = fig.subplots(1, 3, sharex=True)
    agg = _methods_axes(axes[0], rows, x, y, order, log_x=log_x, log_y=log_y)
    _methods_axes(axes[1], rows, x, "objective", order, log_x=log_x, log_y=False)
    _methods_axes(axes[2], rows, x, "objective_gap_pct", order, log_x=log_x, log_y=False)
    axes[0].set_title(_axis(y)[0].split(" [")[0], fontsize="medium")
    axes[1].set_title("objective (what the methods minimise)", fontsize="medium")
    axes[2].set_title("objective gap to the best method", fontsize="medium")
    _legend(axes[0], rows)
    xname = axes[0].get_xlabel().split(" [")[0]
    fig.suptitle(title or f"methods vs {xname}")
    _caption(fig, error_bar_caption(agg))
    return fig


def plot_scaling(
    rows: Sequence[Mapping[str, Any]],
    *,
    methods: Sequence[str] | None = None,
    y: str = "energy_j",
    log_x: bool | None = None,
    log_y: bool | None = None,
) -> dict[str, Figure]:
    """One :func:`plot_method_panels` figure per swept input of ``rows`` (rows grouped by
    sweep): ``{"energy_vs_<column>": Figure}``. The privacy weight / requirement are left to
    :func:`plot_tradeoff`."""
    from privtuner.rows import swept_columns

    figs: dict[str, Figure] = {}
    for base, group in group_by_base(rows).items():
        for col in swept_columns(group):
            if col in TRADEOFF_COLUMNS:  # drawn by plot_tradeoff
                continue
            name = scaling_stem(col, base, figs)
            label = _axis(col)[0].split(" [")[0]
            figs[name] = plot_method_panels(
                group,
                col,
                methods=methods,
                y=y,
                log_x=log_x,
                log_y=log_y,
                title=f"{base}: methods vs {label}",
            )
    return figs


def packing_series(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``rows`` with each method labelled by its protocol variant when the rows hold more than
    one: its packing (``"exact [column]"``, a sweep over ``fhe.packing``), who rescales
    (``"exact [rescale=device]"``, over ``fhe.rescale``) or both (``"exact [column,
    rescale=device]"``): one curve per method and variant, side by side, never two variants
    averaged into one; otherwise ``rows`` unchanged."""
    varied = [k for k in ("packing", "rescale") if len({r.get(k) for r in rows} - {None, ""}) > 1]
    if not varied:
        return list(rows)

    def label(r: Mapping[str, Any]) -> str:
        parts = [str(r.get(k)) if k == "packing" else f"{k}={r.get(k)}" for k in varied]
        return f"{r.get('method')} [{', '.join(parts)}]"

    return [{**r, "method": label(r)} for r in rows]


def group_by_base(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Rows grouped by sweep (``sweep_base``, else the scenario name), in first-seen order."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r.get("sweep_base") or r.get("scenario")), []).append(r)
    return groups


def scaling_stem(col: str, base: str, taken: Mapping[str, Any]) -> str:
    """File stem of the scaling figure of ``col`` (the sweep's name added when taken)."""
    name = f"energy_vs_{col}"
    return f"{name}_{slug(base)}" if name in taken else name


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_") or "x"


def row_allocation(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    text = row.get("allocation_json")
    if not text:
        return []
    value = json.loads(str(text))
    return list(value) if isinstance(value, list) else []


def row_history(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    text = row.get("history_json")
    if not text:
        return []
    value = json.loads(str(text))
    return list(value) if isinstance(value, list) else []


def tradeoff_axis(rows: Sequence[Mapping[str, Any]]) -> str:
    """The trade-off variable of ``rows``: ``privacy_min`` if the rows use the constrained
    objective (and it varies), else ``privacy_weight``."""
    kinds = {r.get("objective_kind") for r in rows}
    if kinds == {"constrained"} or (
        "constrained" in kinds and len({r.get("privacy_min") for r in rows}) > 1
    ):
        return "privacy_min"
    return "privacy_weight"


def plot_tradeoff(
    rows: Sequence[Mapping[str, Any]],
    *,
    x: str | None = None,
    methods: Sequence[str] | None = None,
    set_method: str | None = None,
    seed: int | None = None,
) -> Figure:
    """Energy-privacy trade-off (spec section 4): three panels sharing the x axis
    (privacy weight w_P, or requirement Phi_min for the constrained objective):

    1. total energy [J] per method, mean +- std over seeds;
    2. mean security of the chosen CKKS sets [bits] per method;
    3. the CKKS set chosen for each device by ``set_method`` (default ``exact`` if present)
       at ``seed`` (default: the smallest seed), one marker per device and x value, coloured
       by set.
    """
    rows = [r for r in rows if methods is None or r.get("method") in methods]
    x = x or tradeoff_axis(rows)
    order = _ordered_methods(rows)
    metric = next((str(r.get("privacy_metric")) for r in rows if r.get("privacy_metric")), None)
    xlabel, xscale = _axis(x, metric)
    fig = _new_figure(6.8, 8.0)
    ax_e, ax_s, ax_d = fig.subplots(3, 1, sharex=True, height_ratios=[1.2, 1.0, 1.3])
    agg_e = aggregate(rows, x, "energy_j")
    _plot_methods(ax_e, agg_e, xscale, order)
    ax_e.set_ylabel("total energy per run [J]")
    ax_e.set_title("energy-privacy trade-off")
    ax_e.grid(True, alpha=0.3)
    means = np.concatenate([d["mean"] for d in agg_e.values()]) if agg_e else np.empty(0)
    means = means[np.isfinite(means) & (means > 0)]
    if means.size and means.max() > 30.0 * means.min():  # e.g. both packings: ~100x apart
        ax_e.set_yscale("log")
    if len(agg_e) > 5:  # many curves (methods x packings): the legend beside the panel
        ax_e.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax_e.legend(fontsize="small", ncol=2)
    agg_s = aggregate(rows, x, "security_bits_mean")
    _plot_methods(ax_s, agg_s, xscale, order)
    ax_s.set_ylabel("mean security of chosen sets\n(capped at 256) [bits]")
    ax_s.grid(True, alpha=0.3)
    over = [c for c in ax_s.containers if "drawn over" in str(c.get_label())]
    if over:  # say which curves hide others here (the energy legend cannot)
        beside = {"loc": "upper left", "bbox_to_anchor": (1.0, 1.0)} if len(agg_e) > 5 else {}
        ax_s.legend(handles=over, fontsize="x-small", **beside)
    _caption(fig, error_bar_caption(agg_e))
    if agg_e:
        _set_x_scale(ax_e, np.concatenate([d["x"] * xscale for d in agg_e.values()]))
    # panel 3: chosen set per device
    ok_rows = [r for r in rows if row_ok(r)]
    if set_method is None:
        set_method = "exact" if any(r.get("method") == "exact" for r in ok_rows) else None
        if set_method is None and ok_rows:
            set_method = _ordered_methods(ok_rows)[0]
    chosen = [r for r in ok_rows if r.get("method") == set_method]
    if chosen:
        seeds = sorted({int(r["seed"]) for r in chosen if r.get("seed") is not None})
        use_seed = seed if seed is not None else (seeds[0] if seeds else None)
        chosen = [r for r in chosen if use_seed is None or r.get("seed") == use_seed]
    names: list[str] = []
    pts: list[tuple[float, int, str]] = []
    for r in chosen:
        xv = _f(r.get(x)) * xscale
        for a in row_allocation(r):
            name = str(a.get("set_name", ""))
            pts.append((xv, int(a.get("device", 0)), name))
            if name not in names:
                names.append(name)
    names.sort(key=_set_sort_key)
    for j, name in enumerate(names):
        xs = [p[0] for p in pts if p[2] == name]
        ds = [p[1] for p in pts if p[2] == name]
        ax_d.scatter(xs, ds, marker="s", s=28, color=f"C{j % 10}", label=name)
    ax_d.set_ylabel("device [index]")
    ax_d.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=12))
    ax_d.set_xlabel(xlabel)
    if set_method:
        ax_d.set_title(
            f"CKKS set chosen per device ({set_method}"
            + (f", seed {chosen[0].get('seed')})" if chosen else ")"),
            fontsize="medium",
        )
    if names:
        ax_d.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax_d.grid(True, alpha=0.3)
    return fig


def pareto_points(rows: Sequence[Mapping[str, Any]], x: str) -> dict[str, dict[str, NDArrayF]]:
    """Per method, one point per trade-off value ``x``: mean achieved security
    (``security_bits_mean``, capped) and mean total energy over the runs with an allocation,
    their sample standard deviations (ddof=1) and run counts:
    ``{method: {"x", "security", "security_std", "energy", "energy_std", "n_ok", "n_all"}}``."""
    sec = aggregate(rows, x, "security_bits_mean")
    eng = aggregate(rows, x, "energy_j")
    return {
        m: {
            "x": d["x"],
            "security": sec[m]["mean"],
            "security_std": sec[m]["std"],
            "energy": d["mean"],
            "energy_std": d["std"],
            "n_ok": d["n_ok"],
            "n_all": d["n_all"],
        }
        for m, d in eng.items()
        if m in sec
    }


def pareto_front(security: NDArrayF, energy: NDArrayF) -> NDArrayF:
    """Indices of the non-dominated points (no other point has at least the security for at
    most the energy, one of them strictly), sorted by security."""
    ok = np.flatnonzero(np.isfinite(security) & np.isfinite(energy))
    order = ok[np.lexsort((energy[ok], -security[ok]))]  # security down, energy up
    front: list[int] = []
    best = math.inf
    for i in order:
        if energy[i] < best:
            front.append(int(i))
            best = float(energy[i])
    return np.array(sorted(front, key=lambda i: security[i]), dtype=np.int64)


def plot_pareto(
    rows: Sequence[Mapping[str, Any]],
    *,
    x: str | None = None,
    methods: Sequence[str] | None = None,
    log_y: bool | None = None,
) -> Figure:
    """Energy vs achieved security, methods compared (each method's points are its trade-off
    values ``x``: privacy weight or requirement, mean over seeds with +-1 std bars in both
    directions), and the Pareto front over all methods (black step line): the least energy
    for at least that much security."""
    rows = [r for r in rows if methods is None or r.get("method") in methods]
    x = x or tradeoff_axis(rows)
    order = _ordered_methods(rows)
    pts = pareto_points(rows, x)
    fig = _new_figure(6.8, 5.0)
    ax = fig.add_subplot()
    all_s, all_e = [], []
    for m, d in pts.items():
        st = _style(m, order)
        ok = np.isfinite(d["security"]) & np.isfinite(d["energy"])
        idx = np.flatnonzero(ok)[np.argsort(d["security"][ok], kind="stable")]
        ax.errorbar(
            d["security"][idx],
            d["energy"][idx],
            xerr=_bar(d["security_std"][idx]),
            yerr=_bar(d["energy_std"][idx]),
            label=m + _missing_note(ok),
            capsize=2,
            ms=5,
            **st,
        )
        all_s.append(d["security"][idx])
        all_e.append(d["energy"][idx])
    if all_s:
        s_all, e_all = np.concatenate(all_s), np.concatenate(all_e)
        front = pareto_front(s_all, e_all)
        if front.size:
            ax.step(
                s_all[front],
                e_all[front],
                where="pre",
                color="k",
                lw=0.8,
                alpha=0.7,
                label="Pareto front (all methods)",
                zorder=0,
            )
        _set_y_scale(ax, {"all": {"mean": e_all}}, log_y)
    ax.set_xlabel("achieved mean security of chosen sets (capped at 256) [bits]")
    ax.set_ylabel("total energy per run [J]")
    metric = next((str(r.get("privacy_metric")) for r in rows if r.get("privacy_metric")), None)
    ax.set_title(f"energy vs security, one point per {_axis(x, metric)[0].split(' [')[0]}")
    ax.grid(True, alpha=0.3)
    _legend(ax, rows)
    _caption(fig, error_bar_caption(aggregate(rows, x, "energy_j")))
    return fig


def _set_sort_key(name: str) -> tuple[int, str]:
    head = name[1:].split("_", 1)[0] if name.startswith("N") else ""
    return (int(head) if head.isdigit() else 0, name)


def _history_series(history: Sequence[Mapping[str, Any]], *keys: str) -> NDArrayF:
    for k in keys:
        if any(k in h for h in history):
            return np.array([_f(h.get(k)) for h in history], dtype=float)
    return np.full(len(history), np.nan)


def _iterations(history: Sequence[Mapping[str, Any]]) -> tuple[NDArrayF, str]:
    """x values and axis label of a history: its ``iteration`` (or ``iter``) entries, else
    its B&B ``node`` numbers, else 1, 2, ..."""
    for keys, label in ((("iteration", "iter"), "iteration [-]"), (("node",), "B&B node [-]")):
        it = _history_series(history, *keys)
        if not np.all(np.isnan(it)):
            return it, label
    return np.arange(1, len(history) + 1, dtype=float), "iteration [-]"


def plot_convergence(
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    title: str = "alternating optimisation: convergence",
) -> Figure:
    """Objective vs iteration for each labelled history (spec 5.1: AO alternates B&B over the
    CKKS sets and fractional programming over the resources until the relative change < eps).
    Each history entry is a dict with ``objective`` (and optionally ``iteration``)."""
    fig = _new_figure()
    ax = fig.add_subplot()
    labels = list(histories)
    xlabel = "iteration [-]"
    for i, label in enumerate(labels):
        h = list(histories[label])
        if not h:
            continue
        y = _history_series(h, "objective", "upper_bound")
        it, xlabel = _iterations(h)
        ax.plot(it, y, marker=_MARKERS[i % len(_MARKERS)], ms=4, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("objective w_E E - w_P Phi [-]")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if labels:
        ax.legend(fontsize="small")
    return fig


def plot_bounds(
    history: Sequence[Mapping[str, Any]],
    *,
    title: str = "exact method: lower and upper bounds",
) -> Figure:
    """Lower bound (dual / B&B) and upper bound (best feasible objective) vs iteration of the
    exact method (spec 5.2), with the relative gap on a second axis."""
    h = list(history)
    it, xlabel = _iterations(h)
    lb = _history_series(h, "lower_bound", "lb")
    ub = _history_series(h, "upper_bound", "ub", "objective")
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.plot(it, ub, marker="v", ms=4, label="upper bound (feasible)")
    ax.plot(it, lb, marker="^", ms=4, label="lower bound (certified)")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("objective [-]")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = (ub - lb) / np.maximum(np.maximum(np.abs(ub), np.abs(lb)), 1e-300)
    ok = np.isfinite(gap) & (gap > 0)
    if np.any(ok):
        ax2 = ax.twinx()
        ax2.semilogy(it[ok], gap[ok], color="0.5", ls=":", label="relative gap")
        ax2.set_ylabel("relative gap [-]")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize="small")
    else:
        ax.legend(fontsize="small")
    return fig


def plot_allocation(
    allocation: Sequence[Mapping[str, Any]], *, title: str = "per-device allocation"
) -> Figure:
    """Per-device bars of one allocation: bandwidth b_n [kHz], transmit power p_n [mW],
    device CPU f_n [GHz], server CPU f_s,n [GHz], security of the chosen CKKS set [bits] (set
    name on the bar) and energy split (compute / uplink / server) [J]."""
    alloc = list(allocation)
    dev = np.array([int(a.get("device", i)) for i, a in enumerate(alloc)], dtype=float)

    def col(key: str) -> NDArrayF:
        return np.array([_f(a.get(key)) for a in alloc], dtype=float)

    fig = _new_figure(max(7.2, min(16.0, 0.16 * len(alloc) + 3.0)), 9.0)
    axes = fig.subplots(6, 1, sharex=True)
    b = col("bandwidth_hz") / 1e3
    panels = [
        (b, "bandwidth b_n [kHz]"),
        (col("tx_power_w") * 1e3, "tx power p_n [mW]"),
        (col("cpu_hz") / 1e9, "device CPU f_n [GHz]"),
        (col("server_cpu_hz") / 1e9, "server CPU f_s,n [GHz]"),
    ]
    for ax, (vals, label) in zip(axes[:4], panels, strict=True):
        ax.bar(dev, vals, color="C0")
        ax.set_ylabel(label, fontsize="small")
        ax.grid(True, axis="y", alpha=0.3)
    names = [str(a.get("set_name", "")) for a in alloc]
    uniq = sorted(set(names), key=_set_sort_key)
    colors = [f"C{uniq.index(n) % 10}" for n in names]
    ax = axes[4]
    from privtuner.costmodels.privacy import SECURITY_CAP_BITS

    ax.bar(dev, np.minimum(col("security_bits"), SECURITY_CAP_BITS), color=colors)
    for j, n in enumerate(uniq):
        ax.bar([np.nan], [np.nan], color=f"C{j % 10}", label=n)
    ax.set_ylabel("set security\n(capped) [bits]", fontsize="small")
    if uniq:
        ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.grid(True, axis="y", alpha=0.3)
    ax = axes[5]
    e_c, e_t, e_s = col("energy_compute_j"), col("energy_tx_j"), col("energy_server_j")
    ax.bar(dev, e_c, label="device compute", color="C0")
    ax.bar(dev, e_t, bottom=e_c, label="uplink", color="C1")
    ax.bar(dev, e_s, bottom=e_c + e_t, label="server", color="C2")
    ax.set_ylabel("energy per run [J]", fontsize="small")
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.grid(True, axis="y", alpha=0.3)
    _device_ticks(ax, dev, [str(a.get("device_id") or "") for a in alloc])
    axes[0].set_title(title)
    return fig


#: Most device tick labels drawn on an allocation figure (every k-th device beyond).
MAX_DEVICE_TICKS = 25


def _device_ticks(ax: Axes, dev: NDArrayF, ids: Sequence[str]) -> None:
    """Integer device ticks, at most :data:`MAX_DEVICE_TICKS` (every k-th device beyond);
    named devices (``device_id``) labelled by name, turned vertical."""
    n = len(dev)
    step = max(1, math.ceil(n / MAX_DEVICE_TICKS))
    pos = dev[::step]
    named = any(ids)
    if named:
        labels = [ids[i] or str(int(dev[i])) for i in range(0, n, step)]
        ax.set_xticks(pos, labels, rotation=90, fontsize="x-small")
        ax.set_xlabel("device [device_id]")
    else:
        ax.set_xticks(pos, [str(int(d)) for d in pos], fontsize="small" if n < 15 else "x-small")
        ax.set_xlabel("device [index]")
    if n:
        ax.set_xlim(float(np.min(dev)) - 0.6, float(np.max(dev)) + 0.6)


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``<out_dir>/<stem>.png`` (150 dpi) and ``.pdf``; returns the two paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = out / f"{stem}.{ext}"
        fig.savefig(p, dpi=150, bbox_inches="tight")
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------- from results

PLOT_KINDS = ("tradeoff", "pareto", "scaling", "convergence", "bounds", "allocation")


def select_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    methods: Sequence[str] | None = None,
    scenario: str | None = None,
    seed: int | None = None,
) -> list[Mapping[str, Any]]:
    """Rows of ``methods`` (all if None), of the sweep or scenario named ``scenario`` (its
    ``sweep_base`` or ``scenario`` column), and of ``seed``."""
    out = []
    for r in rows:
        if methods is not None and r.get("method") not in methods:
            continue
        if scenario is not None and scenario not in (r.get("sweep_base"), r.get("scenario")):
            continue
        if seed is not None and r.get("seed") != seed:
            continue
        out.append(r)
    return out


def _best_row(rows: Sequence[Mapping[str, Any]], method: str | None) -> Mapping[str, Any] | None:
    cands = [r for r in rows if row_ok(r) and (method is None or r.get("method") == method)]
    return cands[0] if cands else None


def convergence_rows(rows: Sequence[Mapping[str, Any]], limit: int = 8) -> list[Mapping[str, Any]]:
    """Up to ``limit`` ``ao`` rows with the longest histories (most iterations to show), in
    table order."""
    cands = [(i, r) for i, r in enumerate(rows) if r.get("method") == "ao" and row_ok(r)]
    cands = [(i, r) for i, r in cands if row_history(r)]
    best = sorted(cands, key=lambda ir: (-len(row_history(ir[1])), ir[0]))[:limit]
    return [r for _, r in sorted(best, key=lambda ir: ir[0])]


def bounds_row(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The ``exact`` row with the longest history (the most B&B work to show), or None."""
    best: Mapping[str, Any] | None = None
    best_len = 0
    for r in rows:
        if r.get("method") == "exact" and row_ok(r):
            n = len(row_history(r))
            if n > best_len:
                best, best_len = r, n
    return best


def figures_from_results(
    rows: Sequence[Mapping[str, Any]],
    kind: str,
    *,
    methods: Sequence[str] | None = None,
    scenario: str | None = None,
    seed: int | None = None,
    y: str = "energy_j",
    log_x: bool | None = None,
    log_y: bool | None = None,
) -> dict[str, Figure]:
    """Figures of ``kind`` (:data:`PLOT_KINDS`) from results rows: ``{file stem: Figure}``.

    * tradeoff: one figure per sweep base whose privacy weight/requirement varies (a sweep
      over ``fhe.packing`` or ``fhe.rescale`` too: one curve per method and variant,
      :func:`packing_series`);
    * pareto: energy vs achieved security per method, for the same sweeps (:func:`plot_pareto`);
    * scaling: :func:`plot_scaling` (``y``, objective and objective gap vs each swept input);
    * convergence: the ``ao`` histories of :func:`convergence_rows` (the 8 longest);
    * bounds: the ``exact`` row with the longest history (:func:`bounds_row`);
    * allocation: the first row with an allocation (``exact`` preferred).

    ``methods`` / ``scenario`` / ``seed`` select rows (:func:`select_rows`); ``y``,
    ``log_x``, ``log_y`` apply to the scaling figures (``log_y`` to pareto too).
    Raises :class:`~privtuner.errors.PrivtunerError` when the rows hold nothing to plot for
    ``kind`` (the message says what is missing).
    """
    from privtuner.errors import PrivtunerError

    if kind not in PLOT_KINDS:
        raise PrivtunerError(f"--kind {kind!r}: unknown plot kind; valid: {', '.join(PLOT_KINDS)}")
    if y not in COLUMN_AXES:
        raise PrivtunerError(
            f"--y {y!r}: not a plottable results column; valid: {', '.join(sorted(COLUMN_AXES))}"
        )
    if not rows:
        raise PrivtunerError("no rows in these results (an empty table)")
    rows = select_rows(rows, methods=methods, scenario=scenario, seed=seed)
    if not rows:
        raise PrivtunerError(
            "no rows left after selecting "
            + ", ".join(
                f"{k} {v!r}"
                for k, v in (("methods", methods), ("scenario", scenario), ("seed", seed))
                if v is not None
            )
        )
    figs: dict[str, Figure] = {}
    if kind in ("tradeoff", "pareto"):
        for base, by_base in group_by_base(rows).items():
            group = packing_series(by_base)
            x = tradeoff_axis(group)
            if len({r.get(x) for r in group}) > 1:
                if kind == "tradeoff":
                    figs[f"tradeoff_{slug(base)}"] = plot_tradeoff(group, x=x)
                else:
                    figs[f"pareto_{slug(base)}"] = plot_pareto(group, x=x, log_y=log_y)
        if not figs:
            raise PrivtunerError(
                "no trade-off in these results: need rows whose privacy_weight (or privacy_min "
                "for the constrained objective) varies within one sweep"
            )
    elif kind == "scaling":
        figs = plot_scaling(rows, y=y, log_x=log_x, log_y=log_y)
        if not figs:
            raise PrivtunerError(
                "no swept input in these results: need a sweep over e.g. devices.count, "
                "system.bandwidth_hz, devices.p_max_dbm or objective.deadline_s"
            )
    elif kind == "convergence":
        picked = convergence_rows(rows)
        if not picked:
            raise PrivtunerError("no 'ao' row with an iteration history in these results")
        histories = {f"{r.get('scenario')} (seed {r.get('seed')})": row_history(r) for r in picked}
        figs["convergence_ao"] = plot_convergence(histories)
    elif kind == "bounds":
        brow = bounds_row(rows)
        if brow is not None:
            figs["bounds_exact"] = plot_bounds(
                row_history(brow),
                title=f"exact: bounds, {brow.get('scenario')} (seed {brow.get('seed')})",
            )
        else:
            raise PrivtunerError("no 'exact' row with an iteration history in these results")
    else:
        row = allocation_row(rows)
        if row is None:
            raise PrivtunerError("no row with an allocation (status optimal/feasible)")
        figs["allocation"] = plot_allocation(
            row_allocation(row),
            title=f"{row.get('scenario')} ({row.get('method')}, seed {row.get('seed')})",
        )
    return figs


def allocation_row(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The row the allocation figure shows: the first ``exact`` row with an allocation, else
    the first row with one."""
    return _best_row(rows, "exact") or _best_row(rows, None)


def result_to_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A saved SolveResult JSON (``SolveResult.to_dict()``) as one results-table-like row, so
    ``privtuner plot result.json --kind allocation|convergence|bounds`` works."""
    dev = result.get("devices", {}) or {}
    names = list(dev.get("set_names", []) or [])
    # every per-device array of the result (bandwidth_hz, ..., latency_s)
    keys = [
        k for k, v in dev.items() if isinstance(v, list) and k not in ("set_names", "device_ids")
    ]
    ids = list(dev.get("device_ids", []) or [])
    alloc = []
    for i, name in enumerate(names):
        a: dict[str, Any] = {"device": i, "set_name": name}
        if i < len(ids) and ids[i]:
            a["device_id"] = ids[i]
        for k in keys:
            vals = dev.get(k) or []
            a[k] = vals[i] if i < len(vals) else None
        alloc.append(a)
    return [
        {
            "scenario": result.get("problem_name", "result"),
            "method": result.get("method"),
            "seed": result.get("seed"),
            "status": result.get("status"),
            "energy_j": result.get("total_energy_j"),
            "objective": result.get("objective"),
            "history_json": json.dumps(result.get("history") or []),
            "allocation_json": json.dumps(alloc),
        }
    ]


def plot_cost_fits(model: Any, records: Sequence[Mapping[str, Any]]) -> dict[str, Figure]:
    """Cost-model fit figures ``{"fit_<op>": Figure}``: each fitted curve of ``model`` (a
    :class:`~privtuner.costmodels.CostModel`) over its measured ``records``, drawn by the
    cost model's own :func:`privtuner.costmodels.fitting.fit_figure` (the one used by
    ``privtuner plot-fits``; not duplicated here). Ops without records are skipped."""
    from privtuner.costmodels.fitting import fit_figure, normalize_records

    recs = normalize_records(records)
    figs: dict[str, Figure] = {}
    for op, curve in sorted(model.curves.items()):
        rows = [r for r in recs if r["op"] == op]
        if rows:
            fig = fit_figure(curve, rows)
            if fig.canvas is None or type(fig.canvas).__name__ == "FigureCanvasBase":
                from matplotlib.backends.backend_agg import FigureCanvasAgg

                FigureCanvasAgg(fig)
            figs[f"fit_{op}"] = fig
    return figs
