"""Each plot kind renders from a small results table: a Figure with labelled axes (units),
showing the numbers of the table; PNG and PDF written; no solving."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from privtuner import plotting
from privtuner.batch import normalize_row, read_table, write_table
from privtuner.errors import PrivtunerError

SETS = ["N8192_q44-24-44_s24", "N16384_q60-40-60_s40", "N32768_q60-40-60_s40"]
SEC = {SETS[0]: 269.7, SETS[1]: 409.9, SETS[2]: 761.6}


def _row(
    base: str,
    combo: dict[str, Any],
    seed: int,
    method: str,
    rng: np.random.Generator,
    n: int = 3,
    status: str = "optimal",
    **inputs: Any,
) -> dict[str, Any]:
    """A results row as the batch writes it (values made up, structure real)."""
    sets = [SETS[int(i)] for i in rng.integers(0, 3, n)]
    alloc = [
        {
            "device": i,
            "set_name": s,
            "security_bits": SEC[s],
            "bandwidth_hz": 1e6 * (1 + i),
            "tx_power_w": 0.1 + 0.01 * i,
            "cpu_hz": 1e9,
            "server_cpu_hz": 5e9,
            "energy_compute_j": 1.0 + i,
            "energy_tx_j": 0.5,
            "energy_server_j": 0.25,
        }
        for i, s in enumerate(sets)
    ]
    ok = status in ("optimal", "feasible")
    energy = sum(a["energy_compute_j"] + a["energy_tx_j"] + a["energy_server_j"] for a in alloc)
    energy *= 1.0 + 0.1 * rng.random()
    name = base + "[" + ",".join(f"{k}={v}" for k, v in combo.items()) + "]"
    row = {
        "key": f"{name}|seed={seed}|method={method}",
        "scenario": name,
        "sweep_base": base,
        "sweep_params_json": json.dumps(combo),
        "seed": seed,
        "method": method,
        "status": status,
        "objective_kind": "weighted",
        "privacy_metric": "security_bits",
        "energy_j": energy if ok else None,
        "objective": energy - 0.01 * sum(SEC[s] for s in sets) if ok else None,
        "energy_tx_j": sum(a["energy_tx_j"] for a in alloc) * (1 + rng.random()) if ok else None,
        "security_bits_mean": float(np.mean([SEC[s] for s in sets])) if ok else None,
        "allocation_json": json.dumps(alloc if ok else []),
        "history_json": json.dumps(
            [
                {"iteration": i + 1, "objective": 10 + 2.0**-i, "lower_bound": 10 - 2.0**-i}
                for i in range(5)
            ]
        ),
        **inputs,
    }
    return normalize_row(row)


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    out = []
    methods = ["exact", "ao", "equal_bandwidth"]
    for seed in (0, 1, 2):
        for n in (5, 10, 20):
            for m in methods:
                status = "infeasible" if (n == 20 and seed == 2 and m == "ao") else "optimal"
                out.append(
                    _row(
                        "devices",
                        {"devices.count": n, "seed": seed},
                        seed,
                        m,
                        rng,
                        n=n,
                        status=status,
                        n_devices=n,
                        privacy_weight=0.05,
                    )
                )
        for b in (5e6, 1e7, 2e7):
            for m in methods:
                out.append(
                    _row(
                        "bandwidth",
                        {"system.bandwidth_hz": b, "seed": seed},
                        seed,
                        m,
                        rng,
                        bandwidth_hz=b,
                        n_devices=3,
                        privacy_weight=0.05,
                    )
                )
        for w in (0.0, 0.01, 0.1, 1.0):
            for m in methods:
                out.append(
                    _row(
                        "tradeoff",
                        {"objective.privacy_weight": w, "seed": seed},
                        seed,
                        m,
                        rng,
                        privacy_weight=w,
                        n_devices=3,
                    )
                )
    return out


def _axes_labelled(fig: Figure) -> list[Axes]:
    axes = [ax for ax in fig.axes if ax.has_data()]
    assert axes
    for ax in axes:
        y = ax.get_ylabel()
        assert y and "[" in y and "]" in y, y
    # every column of panels has an x label with a unit on its bottom axes
    assert any("[" in ax.get_xlabel() for ax in axes)
    return axes


def test_energy_vs_shows_mean_over_seeds_and_marks_failures(rows: list[dict[str, Any]]) -> None:
    dev = [r for r in rows if r["sweep_base"] == "devices"]
    fig = plotting.plot_energy_vs(dev, "n_devices")
    (ax,) = _axes_labelled(fig)
    assert ax.get_xlabel() == "number of devices K [-]"
    assert ax.get_ylabel() == "total energy per run [J]"
    lines = {c.get_label(): c for c in ax.containers}
    assert set(lines) == {"exact", "ao", "equal_bandwidth"}
    for m in ("exact", "ao"):
        x, y = lines[m].lines[0].get_data()
        (bars,) = lines[m].lines[2]
        for xv, yv, seg in zip(x, y, bars.get_segments(), strict=True):
            vals = [
                r["energy_j"]
                for r in dev
                if r["method"] == m and r["n_devices"] == xv and r["status"] == "optimal"
            ]
            assert yv == pytest.approx(np.mean(vals))
            # error bars: sample standard deviation (ddof=1)
            half = (seg[1][1] - seg[0][1]) / 2
            assert half == pytest.approx(np.std(vals, ddof=1))
    # the ao point at 20 devices lacks a seed: a hollow marker and "1/3" on it, and the
    # legend says so
    hollow = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "none"]
    assert len(hollow) == 1 and list(hollow[0].get_xdata()) == [20.0]
    notes = [t for t in ax.texts if t.get_text() == "1/3"]
    assert len(notes) == 1 and notes[0].xy[0] == 20.0
    assert "1 of 27 runs without allocation" in ax.get_legend().get_title().get_text()
    # the caption defines the bars and n per point (2 runs where one seed failed)
    caption = " ".join(t.get_text() for t in fig.texts)
    assert "ddof=1" in caption and "n = 2-3 runs (seeds) per point" in caption


def test_proposed_methods_stand_out_and_equal_curves_say_so(rows: list[dict[str, Any]]) -> None:
    dev = [dict(r) for r in rows if r["sweep_base"] == "devices"]
    exact = {(r["seed"], r["n_devices"]): r["energy_j"] for r in dev if r["method"] == "exact"}
    for r in dev:  # fixed_largest_n finds the same energies as exact
        if r["method"] == "equal_bandwidth":
            r["method"] = "fixed_largest_n"
            r["energy_j"] = exact[(r["seed"], r["n_devices"])]
    fig = plotting.plot_energy_vs(dev, "n_devices")
    ax = fig.axes[0]
    cont = {c.get_label(): c.lines[0] for c in ax.containers}
    assert set(cont) == {"exact", "ao", "fixed_largest_n (= exact, drawn over it)"}
    line_exact = cont["exact"]
    line_base = cont["fixed_largest_n (= exact, drawn over it)"]
    assert line_exact.get_linestyle() == "-" and line_base.get_linestyle() == "--"
    assert line_exact.get_linewidth() > line_base.get_linewidth()
    assert line_base.get_markerfacecolor() == "white"
    assert line_exact.get_markerfacecolor() == line_exact.get_color()


def test_scaling_one_figure_per_swept_input(rows: list[dict[str, Any]], tmp_path: Path) -> None:
    figs = plotting.plot_scaling(rows)
    # the privacy-weight sweep is a trade-off figure, not a scaling one
    assert set(figs) == {"energy_vs_n_devices", "energy_vs_bandwidth_hz"}
    fig = figs["energy_vs_bandwidth_hz"]
    ax_e, ax_o, ax_g = _axes_labelled(fig)
    assert ax_e.get_xlabel() == "total bandwidth B [MHz]"
    x = ax_e.get_lines()[0].get_xdata()
    assert list(x) == [5.0, 10.0, 20.0]  # MHz
    # objective and objective-gap panels beside the energy panel
    assert ax_o.get_ylabel() == "objective [-]"
    assert ax_g.get_ylabel() == "objective above the best method [%]"
    bw = [r for r in rows if r["sweep_base"] == "bandwidth"]
    gaps = {c.get_label(): c.lines[0].get_ydata() for c in ax_g.containers}
    for m, ys in gaps.items():
        for xv, yv in zip([5e6, 1e7, 2e7], ys, strict=True):
            per_seed = []
            for seed in (0, 1, 2):
                here = [r for r in bw if r["bandwidth_hz"] == xv and r["seed"] == seed]
                best = min(r["objective"] for r in here)
                mine = next(r["objective"] for r in here if r["method"] == m)
                per_seed.append(100 * (mine - best) / abs(best))
            assert yv == pytest.approx(np.mean(per_seed))
    assert min(min(v) for v in gaps.values()) >= 0.0
    paths = plotting.save_figure(fig, tmp_path, "s")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"


def test_pareto_front_and_figure(rows: list[dict[str, Any]]) -> None:
    rng = np.random.default_rng(4)
    sec, eng = rng.uniform(100, 300, 40), rng.uniform(1, 10, 40)
    front = set(plotting.pareto_front(sec, eng).tolist())
    for i in range(40):  # brute force: on the front iff no other point dominates it
        dominated = any(
            sec[j] >= sec[i] and eng[j] <= eng[i] and (sec[j] > sec[i] or eng[j] < eng[i])
            for j in range(40)
        )
        assert (i in front) == (not dominated)
    tr = [r for r in rows if r["sweep_base"] == "tradeoff"]
    figs = plotting.figures_from_results(tr, "pareto")
    (ax,) = _axes_labelled(figs["pareto_tradeoff"])
    assert ax.get_xlabel().startswith("achieved mean security")
    assert ax.get_ylabel() == "total energy per run [J]"
    pts = plotting.pareto_points(tr, "privacy_weight")
    cont = {c.get_label(): c.lines[0] for c in ax.containers}
    assert set(cont) == {"exact", "ao", "equal_bandwidth"}
    for m, line in cont.items():
        xs, ys = line.get_data()
        order = np.argsort(pts[m]["security"], kind="stable")
        assert list(xs) == pytest.approx(list(pts[m]["security"][order]))
        assert list(ys) == pytest.approx(list(pts[m]["energy"][order]))
    assert any(ln.get_label() == "Pareto front (all methods)" for ln in ax.get_lines())


def _read_csv(path: Path) -> list[dict[str, Any]]:
    """A figure's CSV table, numbers as floats."""

    def num(v: str) -> Any:
        try:
            return float(v)
        except ValueError:
            return v

    with path.open() as fh:
        return [{k: num(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def _overlaps(fig: Figure, ax: Axes) -> int:
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]
    return sum(boxes[i].overlaps(boxes[i + 1]) for i in range(len(boxes) - 1))


@pytest.mark.parametrize("n", [25, 60, 250])
def test_allocation_device_ticks_readable(n: int) -> None:
    alloc = [
        {
            "device": i,
            "set_name": SETS[i % 3],
            "security_bits": SEC[SETS[i % 3]],
            "bandwidth_hz": 1e5,
            "tx_power_w": 0.1,
            "cpu_hz": 1e9,
            "server_cpu_hz": 1e9,
            "energy_compute_j": 1.0,
            "energy_tx_j": 1.0,
            "energy_server_j": 1.0,
        }
        for i in range(n)
    ]
    fig = plotting.plot_allocation(alloc)
    ax = fig.axes[5]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels and all(t.isdigit() for t in labels) and len(labels) <= 25
    assert _overlaps(fig, ax) == 0
    # the security bars show the capped security the solver uses
    assert max(p.get_height() for p in fig.axes[4].patches if np.isfinite(p.get_height())) <= 256
    named = [dict(a, device_id=f"site-{i:03d}-north") for i, a in enumerate(alloc)]
    fig = plotting.plot_allocation(named)
    ax = fig.axes[5]
    assert ax.get_xticklabels()[1].get_text().startswith("site-")
    assert _overlaps(fig, ax) == 0


def test_tradeoff_marks_the_set_of_every_device(rows: list[dict[str, Any]]) -> None:
    tr = [r for r in rows if r["sweep_base"] == "tradeoff"]
    fig = plotting.plot_tradeoff(tr)
    axes = _axes_labelled(fig)
    assert len(axes) == 3
    assert axes[2].get_xlabel() == "privacy weight w_P [1/bit]"
    assert "security" in axes[1].get_ylabel()
    # panel 3: one marker per (weight, device) of the exact rows of seed 0, coloured by set
    pts = sum(len(c.get_offsets()) for c in axes[2].collections)
    assert pts == 4 * 3
    labels = [c.get_label() for c in axes[2].collections]
    exact0 = [r for r in tr if r["method"] == "exact" and r["seed"] == 0]
    used = {a["set_name"] for r in exact0 for a in json.loads(r["allocation_json"])}
    assert set(labels) == used
    # the privacy weight 0 is on a symlog axis (range spans >= 50x)
    assert axes[0].get_xscale() == "symlog"


def test_tradeoff_constrained_axis() -> None:
    rng = np.random.default_rng(1)
    tr = [
        _row("c", {"objective.privacy_min": p}, 0, "exact", rng, privacy_min=p)
        | {"objective_kind": "constrained"}
        for p in (128.0, 256.0, 512.0)
    ]
    assert plotting.tradeoff_axis(tr) == "privacy_min"
    fig = plotting.plot_tradeoff(tr)
    assert fig.axes[2].get_xlabel() == "privacy requirement Phi_min [bit]"


def test_convergence_bounds_allocation(rows: list[dict[str, Any]]) -> None:
    figs = plotting.figures_from_results(rows, "convergence")
    (ax,) = _axes_labelled(figs["convergence_ao"])
    assert len(ax.get_lines()) == 8  # at most 8 histories
    assert list(ax.get_lines()[0].get_ydata()) == [10 + 2.0**-i for i in range(5)]
    fig = plotting.figures_from_results(rows, "bounds")["bounds_exact"]
    axes = _axes_labelled(fig)
    ub, lb = axes[0].get_lines()[:2]
    assert np.all(np.asarray(ub.get_ydata()) >= np.asarray(lb.get_ydata()))
    assert axes[1].get_ylabel() == "relative gap [-]"
    fig = plotting.figures_from_results(rows, "allocation")["allocation"]
    axes = _axes_labelled(fig)
    assert len(axes) == 6
    first = next(r for r in rows if r["method"] == "exact")
    alloc = json.loads(first["allocation_json"])
    heights = [p.get_height() for p in axes[0].patches]
    assert heights == pytest.approx([a["bandwidth_hz"] / 1e3 for a in alloc])
    assert axes[1].get_ylabel() == "tx power p_n [mW]"
    mw = [p.get_height() for p in axes[1].patches]
    assert mw == pytest.approx([1e3 * a["tx_power_w"] for a in alloc])


def test_nothing_to_plot_says_why(rows: list[dict[str, Any]]) -> None:
    eb = [r for r in rows if r["method"] == "equal_bandwidth"]
    with pytest.raises(PrivtunerError, match="no 'ao' row"):
        plotting.figures_from_results(eb, "convergence")
    with pytest.raises(PrivtunerError, match="unknown plot kind"):
        plotting.figures_from_results(rows, "pie")
    with pytest.raises(PrivtunerError, match="no trade-off"):
        plotting.figures_from_results([r for r in rows if r["sweep_base"] == "devices"], "tradeoff")


def test_from_saved_table_and_result_json(rows: list[dict[str, Any]], tmp_path: Path) -> None:
    path = write_table(rows, tmp_path / "t.csv")
    back = read_table(path)
    figs = plotting.figures_from_results(back, "tradeoff")
    assert set(figs) == {"tradeoff_tradeoff"}
    result = {
        "method": "exact",
        "status": "optimal",
        "problem_name": "p",
        "seed": 0,
        "total_energy_j": 3.0,
        "history": [{"iteration": 1, "objective": 2.0, "lower_bound": 1.0}],
        "devices": {
            "set_names": SETS[:2],
            "bandwidth_hz": [1e6, 2e6],
            "tx_power_w": [0.1, 0.2],
            "cpu_hz": [1e9, 1e9],
            "server_cpu_hz": [1e9, 2e9],
            "security_bits": [269.7, 409.9],
            "energy_compute_j": [1.0, 1.0],
            "energy_tx_j": [0.25, 0.25],
            "energy_server_j": [0.25, 0.25],
        },
    }
    r = plotting.result_to_rows(result)
    fig = plotting.figures_from_results(r, "allocation")["allocation"]
    assert [p.get_height() for p in fig.axes[0].patches] == [1e3, 2e3]
    plotting.figures_from_results(r, "bounds")


def test_cost_fit_figures_reuse_the_cost_model_plot() -> None:
    from privtuner.costmodels import fit_records, generate_catalogue
    from privtuner.costmodels.fitting import synthetic_records

    cat = generate_catalogue(ring_degrees=(4096, 8192, 16384), scale_bits_range=(20, 40))
    recs = synthetic_records(cat, 3)
    figs = plotting.plot_cost_fits(fit_records(recs), recs)
    assert "fit_encrypt" in figs and "fit_ct_bytes_fresh" in figs
    for fig in figs.values():
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
        fig.canvas.draw()


def test_plot_command_writes_tables_and_honours_options(
    rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    from privtuner.cli import main

    table = write_table(rows, tmp_path / "t.csv")
    out = tmp_path / "figs"
    code = main(
        [
            "plot",
            str(table),
            "--kind",
            "scaling",
            "--out",
            str(out),
            "--y",
            "energy_tx_j",
            "--log-y",
            "--scenario",
            "bandwidth",
            "--methods",
            "exact,ao",
        ]
    )
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "energy_vs_bandwidth_hz.csv",
        "energy_vs_bandwidth_hz.pdf",
        "energy_vs_bandwidth_hz.png",
    ]
    back = _read_csv(out / "energy_vs_bandwidth_hz.csv")
    assert {r["method"] for r in back} == {"exact", "ao"}
    for r in back:
        runs = [
            q["energy_tx_j"]
            for q in rows
            if q["sweep_base"] == "bandwidth"
            and q["method"] == r["method"]
            and q["bandwidth_hz"] == r["bandwidth_hz"]
        ]
        assert r["energy_tx_j_mean"] == pytest.approx(np.mean(runs))
        assert r["energy_tx_j_std"] == pytest.approx(np.std(runs, ddof=1))
        assert r["n_runs"] == 3 and r["fraction_without_allocation"] == 0.0
    # the seed option: one run per point, no error bars
    assert main(["plot", str(table), "--kind", "pareto", "--out", str(out), "--seed", "1"]) == 0
    pareto = _read_csv(out / "pareto_tradeoff.csv")
    assert {r["n_runs"] for r in pareto} == {1}
    assert main(["plot", str(table), "--kind", "scaling", "--out", str(out), "--y", "nope"]) == 1


def test_figure_tables_show_the_infeasible_fraction(
    rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    from privtuner.studies import write_result_figures

    written = write_result_figures(rows, tmp_path, kinds=["scaling"])
    table = _read_csv(tmp_path / "energy_vs_n_devices.csv")
    ao20 = next(r for r in table if r["method"] == "ao" and r["n_devices"] == 20)
    assert ao20["n_ok"] == 2 and ao20["n_runs"] == 3
    assert ao20["fraction_without_allocation"] == pytest.approx(1 / 3)
    assert tmp_path / "energy_vs_n_devices.csv" in written


def test_figure_tables_leave_an_undefined_std_empty(tmp_path: Path) -> None:
    """Before: ``energy_j_std`` was 0.0 where no run (n_ok=0) or one run (n_ok=1) had an
    allocation; the sample std (ddof=1) is undefined there, so the cell is empty."""
    from privtuner.studies import write_result_figures

    rng = np.random.default_rng(0)
    ok_seeds = {5: (0, 1, 2), 10: (0,), 20: ()}
    rows = [
        _row(
            "devices",
            {"devices.count": n, "seed": s},
            s,
            "ao",
            rng,
            n=n,
            status="optimal" if s in ok_seeds[n] else "infeasible",
            n_devices=n,
            privacy_weight=0.05,
        )
        for n in ok_seeds
        for s in (0, 1, 2)
    ]
    write_result_figures(rows, tmp_path, kinds=["scaling"])
    table = {r["n_devices"]: r for r in _read_csv(tmp_path / "energy_vs_n_devices.csv")}
    assert [table[n]["n_ok"] for n in ok_seeds] == [3, 1, 0]
    assert table[5]["energy_j_std"] > 0
    assert table[10]["energy_j_std"] == "" and table[20]["energy_j_std"] == ""
    assert table[10]["energy_j_mean"] > 0 and table[20]["energy_j_mean"] == ""


def test_figure_phase_shows_progress(
    rows: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from privtuner.studies import write_result_figures

    write_result_figures(rows, tmp_path, kinds=["scaling", "bounds"], progress=True)
    err = capsys.readouterr().err
    assert "figures" in err and "2/2" in err


def test_plot_refuses_an_unwritable_out_before_plotting(
    rows: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from privtuner.cli import main

    table = write_table(rows, tmp_path / "t.csv")
    for out, why in (
        ("/proc/figs", "cannot write in folder /proc (No such file or directory)"),
        (str(table), "is a file, not a folder"),
    ):
        assert main(["plot", str(table), "--kind", "scaling", "--out", out]) == 1
        assert capsys.readouterr().err == f"error: --out {out}: {why}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_plot_refuses_unknown_selections_and_lists_what_is_there(
    rows: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from privtuner.cli import main

    table = write_table(rows, tmp_path / "t.csv")
    out = tmp_path / "figs"

    def refused(*option: str) -> str:
        assert main(["plot", str(table), "--kind", "scaling", "--out", str(out), *option]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ")
        return err.strip()

    methods = "methods there: exact, ao, equal_bandwidth"
    assert refused("--methods", "exact,foo") == f"error: --methods foo: not in {table}; {methods}"
    assert refused("--methods", "foo") == f"error: --methods foo: not in {table}; {methods}"
    assert refused("--seed", "7") == f"error: --seed 7: not in {table}; seeds there: 0, 1, 2"
    line = refused("--scenario", "sweep-nope")
    names = list(dict.fromkeys([r["sweep_base"] for r in rows] + [r["scenario"] for r in rows]))
    assert line.startswith(
        f"error: --scenario sweep-nope: not in {table}; sweeps/scenarios there: "
    )
    assert names[0] + ", " + names[1] in line  # the sweep names come first
    assert line.endswith(f"{names[9]} and {len(names) - 10} more")  # bounded listing
    assert not out.exists()


def test_packing_sweep_draws_one_curve_per_method_and_packing(tmp_path: Path) -> None:
    """A trade-off swept over fhe.packing: a curve per (method, packing), the column packing
    dotted, and the figure's CSV one row per (method, packing, weight)."""
    from privtuner.studies import write_result_figures

    rng = np.random.default_rng(3)
    tr = [
        _row(
            "tp",
            {"fhe.packing": pk, "objective.privacy_weight": w},
            seed,
            m,
            rng,
            privacy_weight=w,
            packing=pk,
        )
        for pk in ("interleaved", "column")
        for w in (0.0, 10.0, 40.0)
        for seed in (0, 1)
        for m in ("exact", "ao")
    ]
    fig = plotting.figures_from_results(tr, "tradeoff")["tradeoff_tp"]
    ax = _axes_labelled(fig)[0]
    labels = {c.get_label(): c.lines[0] for c in ax.containers}
    assert {lab.split(" (")[0] for lab in labels} == {
        "exact [interleaved]",
        "exact [column]",
        "ao [interleaved]",
        "ao [column]",
    }
    styles = {lab.split(" (")[0]: line.get_linestyle() for lab, line in labels.items()}
    assert styles["exact [column]"] == ":" and styles["exact [interleaved]"] == "-"
    written = write_result_figures(tr, tmp_path, kinds=["tradeoff"])
    with open(tmp_path / "tradeoff_tp.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tmp_path / "tradeoff_tp.csv" in written
    assert len(table) == 4 * 3  # (method, packing) x weight, seeds aggregated
    col = [r for r in table if r["method"] == "exact [column]"]
    want = np.mean(
        [
            r["energy_j"]
            for r in tr
            if r["packing"] == "column" and r["method"] == "exact" and r["privacy_weight"] == 10.0
        ]
    )
    got = next(float(r["energy_j_mean"]) for r in col if float(r["privacy_weight"]) == 10.0)
    assert got == pytest.approx(want)
    # a single packing keeps the plain method names
    assert {r["method"] for r in plotting.packing_series(tr[:6])} == {"exact", "ao"}


def test_rescale_sweep_keeps_each_option_its_own_curve() -> None:
    """A trade-off swept over fhe.rescale (one packing): a curve per (method, rescale), not
    the two options' energies averaged into one curve; with both swept, both in the label."""
    rng = np.random.default_rng(4)
    tr = [
        _row(
            "tr",
            {"fhe.rescale": rs, "objective.privacy_weight": w},
            seed,
            "exact",
            rng,
            privacy_weight=w,
            packing="interleaved",
            rescale=rs,
        )
        for rs in ("server", "device")
        for w in (0.0, 10.0)
        for seed in (0, 1)
    ]
    series = plotting.packing_series(tr)
    assert {r["method"] for r in series} == {"exact [rescale=server]", "exact [rescale=device]"}
    agg = plotting.aggregate(series, "privacy_weight")
    want = np.mean(
        [r["energy_j"] for r in tr if r["rescale"] == "device" and r["privacy_weight"] == 10.0]
    )
    assert agg["exact [rescale=device]"]["mean"][1] == pytest.approx(want)
    both = [{**r, "packing": pk} for r in tr for pk in ("column", "interleaved")]
    assert "exact [column, rescale=device]" in {r["method"] for r in plotting.packing_series(both)}


@pytest.mark.parametrize(
    ("name", "content", "looks_like"),
    [
        # before: AttributeError: 'list' object has no attribute 'get' (a traceback)
        ("foreign.json", "[1, 2]", "it holds a JSON array, not an object"),
        # before: "(a JSON object without key(s) )", naming no key
        (
            "devices_null.json",
            json.dumps(
                {"method": "exact", "status": "optimal", "termination": "t", "devices": None}
            ),
            "its 'devices' is a JSON null, not an object",
        ),
        # before: "no row with an allocation (status optimal/feasible)" for the next two
        (
            "allocation.provenance.json",
            json.dumps(
                {
                    "scenario": "s",
                    "scenario_file": "s.yaml",
                    "status": "optimal",
                    "totals": {},
                    "columns": {},
                }
            ),
            "it looks like the provenance sidecar of a solve --csv allocation CSV",
        ),
        (
            "accuracy.json",
            json.dumps({"config": {"seed": 0}, "runs": [], "mode": "plain"}),
            "it looks like a privtuner accuracy study",
        ),
        # before: "no swept input in these results"
        (
            "schema.json",
            json.dumps(
                {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "properties": {},
                }
            ),
            "it looks like a JSON schema, as privtuner schema prints",
        ),
        # before: "no rows left after selecting " (ending in an empty string)
        ("ab.csv", "a,b\n", "no column(s) 'key', 'scenario', 'seed', 'method', 'status'"),
        (
            "energy_vs_n_devices.csv",
            "n_devices,method,energy_j_mean,energy_j_std,n_ok,n_runs\n5,exact,1.0,,1,1\n",
            "it looks like the data table of a figure",
        ),
    ],
)
def test_plot_says_which_files_are_not_results(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str,
    looks_like: str,
) -> None:
    from privtuner.cli import main

    path = tmp_path / name
    path.write_text(content)
    out = tmp_path / "figs"
    for kind in ("allocation", "scaling"):
        assert main(["plot", str(path), "--kind", kind, "--out", str(out)]) == 1
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(
            f"error: {path} is not a privtuner results table or solve-result JSON ({looks_like}"
        ), line
        assert line.endswith(
            "; plot reads a batch/reproduce results table (.csv/.parquet), a "
            "solve --out result JSON or a solve --csv allocation CSV"
        )
    assert not out.exists()


def test_plot_of_one_result_or_an_empty_table_says_what_it_needs(
    rows: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from privtuner.cli import main

    result = tmp_path / "r.json"
    result.write_text(
        json.dumps(
            {
                "method": "exact",
                "status": "optimal",
                "termination": "gap_closed",
                "devices": {"set_names": []},
            }
        )
    )
    empty = write_table([], tmp_path / "empty.csv")
    planner = tmp_path / "a.csv"
    planner.write_text(
        "device,set_name,bandwidth_hz,tx_power_w,cpu_hz,server_cpu_hz,energy_j_per_run\n"
    )
    out = str(tmp_path / "figs")
    for path, kind, text in (
        (
            result,
            "scaling",
            f"{result} is a solve result JSON, one allocation: --kind scaling "
            "needs a batch/reproduce results table; from this file plot --kind allocation or "
            "convergence or bounds",
        ),
        (empty, "scaling", "no rows in these results (an empty table)"),
        (planner, "allocation", f"{planner}: planner allocation CSV without device rows"),
        (
            planner,
            "bounds",
            f"{planner} is a solve --csv allocation CSV, one allocation: "
            "--kind bounds needs a batch/reproduce results table; from this file plot --kind "
            "allocation",
        ),
    ):
        assert main(["plot", str(path), "--kind", kind, "--out", out]) == 1
        assert capsys.readouterr().err == f"error: {text}\n"


@pytest.mark.parametrize(
    ("column", "cell", "why"),
    [
        # before: TypeError: int() argument must be ... not 'NoneType' (a traceback)
        ("device", "", "device: must be a device index, an integer >= 0 (got '')"),
        # before: silently device 1 (int(float('1.5')))
        ("device", "1.5", "device: must be a device index, an integer >= 0 (got '1.5')"),
        # before: "cannot read planner allocation CSV: could not convert string to float: 'x'"
        ("bandwidth_hz", "x", "bandwidth_hz: must be a number or empty (got 'x')"),
        # before: the allocation's energy silently the sum of the other rows
        (
            "energy_j_per_run",
            "",
            "energy_j_per_run: empty; the allocation figure needs every device's energy",
        ),
    ],
)
def test_a_bad_planner_csv_cell_names_the_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], column: str, cell: str, why: str
) -> None:
    from privtuner.cli import main

    cols = ["device", "set_name", "bandwidth_hz", "tx_power_w", "cpu_hz", "server_cpu_hz"]
    cols.append("energy_j_per_run")
    good = {"device": "0", "set_name": "N8192_q60-40-60_s40", "bandwidth_hz": "1e6"}
    good.update(tx_power_w="0.1", cpu_hz="1e9", server_cpu_hz="1e9", energy_j_per_run="2.5")
    bad = {**good, "device": "1", column: cell}
    planner = tmp_path / "a.csv"
    planner.write_text(
        "\n".join(",".join(r[c] for c in cols) for r in ({c: c for c in cols}, good, bad)) + "\n"
    )
    out = tmp_path / "figs"
    assert main(["plot", str(planner), "--kind", "allocation", "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"error: {planner} line 3: {why}\n"
    assert not out.exists()
