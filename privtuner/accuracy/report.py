"""Outputs of an accuracy study (:func:`privtuner.accuracy.training.run_study`), written
atomically (:mod:`privtuner.io`): ``accuracy.json`` (everything), ``accuracy.csv`` (one row
per run and epoch), ``loss_curves.csv`` (one row per run and step) and ``accuracy.png``
(final dev accuracy against the scale bits, one line per ring degree N and packing, the
plaintext accuracy as a dashed line; with ``plain`` alone: dev accuracy per epoch)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from privtuner.io import atomic_write_bytes, atomic_write_text, csv_text

#: Columns of ``accuracy.csv``.
CSV_COLUMNS: tuple[str, ...] = (
    "run",
    "mode",
    "set_name",
    "packing",
    "poly_modulus_degree",
    "scale_bits",
    "epoch",
    "steps",
    "dev_accuracy",
    "dev_loss",
    "train_loss_mean",
    "holdout_accuracy",
    "holdout_loss",
    "final_dev_accuracy",
    "selected_epoch",
    "selected_dev_accuracy",
    "accuracy_loss_points",
    "loss_traj_max_rel_err",
    "params_max_rel_err",
    "wall_s",
    "eval_s",
    "s_per_step",
)


def run_key(r: Mapping[str, Any]) -> str:
    return r["mode"] if r["set_name"] is None else f"{r['mode']}:{r['set_name']}@{r['packing']}"


def csv_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in result["runs"]:
        for e in r["epochs"]:
            rows.append({"run": run_key(r), **{k: r.get(k) for k in CSV_COLUMNS[1:]}, **e})
    return rows


def loss_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"run": run_key(r), "step": i + 1, "loss": loss}
        for r in result["runs"]
        for i, loss in enumerate(r["losses"])
    ]


def figure_png(result: Mapping[str, Any]) -> bytes:
    """The study's figure as PNG bytes."""
    from privtuner.plotting import _new_figure

    fig = _new_figure()
    ax = fig.add_subplot()
    runs = result["runs"]
    plain = runs[0]
    others = runs[1:]
    if not others:
        ep = [e["epoch"] for e in plain["epochs"]]
        ax.plot(ep, [100 * e["dev_accuracy"] for e in plain["epochs"]], "o-", label="plain")
        ax.set_xlabel("epoch")
    else:
        lines: dict[tuple[int, str], list[tuple[int, float]]] = {}
        for r in others:
            key = (int(r["poly_modulus_degree"]), str(r["packing"]))
            lines.setdefault(key, []).append((r["scale_bits"], 100 * r["final_dev_accuracy"]))
        styles = ("-", "--", "-.", ":")
        for i, ((n, packing), pts) in enumerate(sorted(lines.items())):
            pts.sort()
            # markers shrink and line styles cycle, so lines that coincide stay visible
            ax.plot(
                *zip(*pts, strict=True),
                marker="osD^v<>p"[i % 8],
                markersize=max(3.0, 9.0 - 1.5 * i),
                ls=styles[i % len(styles)],
                alpha=0.85,
                label=f"{result['mode']} N={n} {packing}",
            )
        ax.axhline(100 * plain["final_dev_accuracy"], color="k", ls="--", label="plain")
        ax.set_xlabel("CKKS scale [bits]")
    ax.set_ylabel("SST-2 dev accuracy [%]")
    ax.set_title(f"{result['model']}: {len(plain['losses'])} steps per run", fontsize=9)
    ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    return buf.getvalue()


def write_outputs(result: Mapping[str, Any], out_dir: str | Path) -> dict[str, str]:
    """Write the four files (each atomically); returns their paths by kind."""
    out = Path(out_dir)
    png = figure_png(result)  # rendered before anything is written
    paths = {
        "json": out / "accuracy.json",
        "csv": out / "accuracy.csv",
        "loss_curves": out / "loss_curves.csv",
        "figure": out / "accuracy.png",
    }
    atomic_write_text(paths["csv"], csv_text(csv_rows(result), CSV_COLUMNS))
    atomic_write_text(paths["loss_curves"], csv_text(loss_rows(result), ("run", "step", "loss")))
    atomic_write_bytes(paths["figure"], png)
    atomic_write_text(paths["json"], json.dumps(result, indent=1, default=str) + "\n")
    return {k: str(v) for k, v in paths.items()}


def paired_seed_summary(studies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy loss against plaintext over studies that differ only in their seed.

    Each study (an ``accuracy.json``, :func:`training.run_study`) holds a ``plain`` run and
    the runs compared with it, all of one seed (same initialisation, batches and, in
    ``simulate``, CKKS error draws). A single seed cannot tell a lasting loss of accuracy
    from the spread of fine-tuning itself (two runs whose losses agree to 1e-6 for hundreds
    of steps still end a point apart once they part); the paired difference ``run - plain``
    per seed, averaged over seeds, can. Per run key (:func:`run_key`) and epoch: the
    differences [points], their mean, sample standard deviation, standard error and a
    two-sided 95 % Student-t interval of the mean; and the plaintext accuracy's own mean and
    spread over the seeds (the seed-to-seed spread of the recipe).

    ``plain_best_epoch_points`` also gives the plaintext accuracy under the LoRA paper's GLUE
    protocol (Hu et al., ICLR 2022, for the GLUE results of its Table 2: "the median over 5
    random seeds; the result for each run is taken from the best epoch"): the epoch is picked
    on the dev set itself, so it reads optimistic, and is reported beside
    the per-epoch figures, not instead of them. Where every plain run held training examples
    out (``--holdout``), ``plain_selected_epoch_points`` gives the dev accuracy of the epoch
    chosen on them (:func:`training.selected_epoch`), a choice the dev set plays no part in;
    its median over seeds is the LoRA paper's statistic with that unbiased choice.

    Raises ``ValueError`` if the studies differ in anything but the seed (model, data, recipe)
    or repeat a seed; a recipe option that one study's config lacks (written before the option
    existed) counts as its default (:class:`training.TrainConfig`), and so does a data record
    without ``holdout_examples`` (0).
    """
    import math
    import statistics

    from scipy import stats

    if len(studies) < 2:
        raise ValueError("a paired-seed summary needs at least two studies")
    for i, s in enumerate(studies):
        cfg = s.get("config") if isinstance(s, Mapping) else None
        if not (isinstance(cfg, Mapping) and "seed" in cfg and isinstance(s.get("runs"), list)):
            raise ValueError(f"study {i + 1} is not an accuracy study (no config.seed or runs)")
    seeds = [int(s["config"]["seed"]) for s in studies]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"studies repeat a seed: {seeds}")
    import dataclasses

    from privtuner.accuracy.training import TrainConfig

    defaults = {
        f.name: f.default
        for f in dataclasses.fields(TrainConfig)
        if f.default is not dataclasses.MISSING
    }

    def recipe(study: Mapping[str, Any]) -> dict[str, Any]:
        return {**defaults, **{k: v for k, v in study["config"].items() if k != "seed"}}

    def provenance(study: Mapping[str, Any], key: str) -> Any:
        v = study.get(key)
        if key == "data" and isinstance(v, Mapping):
            return {"holdout_examples": 0, **v}  # written before --holdout: none held out
        return v

    ref = studies[0]
    for s in studies[1:]:
        # the config first: an option (--max-train, --holdout) also changes the data record
        cfg, ref_cfg = recipe(s), recipe(ref)
        diff = sorted(k for k in set(cfg) | set(ref_cfg) if cfg.get(k) != ref_cfg.get(k))
        if diff:
            raise ValueError(f"studies differ in config {diff} (only the seed may differ)")
        # what the runs depend on besides the config: data, initial weights, error model
        for key in ("mode", "model", "model_config", "weights", "data", "error_model"):
            v, ref_v = provenance(s, key), provenance(ref, key)
            if v != ref_v:
                raise ValueError(f"studies differ in {key!r}: {v!r} vs {ref_v!r}")

    def by_key(study: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        runs = {run_key(r): r for r in study["runs"]}
        if "plain" not in runs:
            raise ValueError(f"study of seed {study['config']['seed']} has no plain run")
        return runs

    keyed = [by_key(s) for s in studies]
    common = sorted(set.intersection(*(set(k) for k in keyed)) - {"plain"})

    def describe(values: list[float]) -> dict[str, Any]:
        n = len(values)
        mean = statistics.fmean(values)
        sd = statistics.stdev(values)
        sem = sd / math.sqrt(n)
        half = float(stats.t.ppf(0.975, n - 1)) * sem
        return {
            "n": n,
            "values": values,
            "mean": mean,
            "sd": sd,
            "sem": sem,
            "ci95": [mean - half, mean + half],
        }

    def accuracies(run: Mapping[str, Any]) -> list[float]:
        return [100.0 * float(e["dev_accuracy"]) for e in run["epochs"]]

    plain = [accuracies(k["plain"]) for k in keyed]
    n_epochs = min(len(a) for a in plain)
    best = [max(a[:n_epochs]) for a in plain]
    out: dict[str, Any] = {
        "seeds": seeds,
        "plain_accuracy_points": {
            f"epoch_{e + 1}": describe([a[e] for a in plain]) for e in range(n_epochs)
        },
        "plain_best_epoch_points": {
            **describe(best),
            "median": statistics.median(best),
            "best_epochs": [a[:n_epochs].index(b) + 1 for a, b in zip(plain, best, strict=True)],
            "protocol": "each seed's best epoch on the dev set, median over seeds (LoRA paper, "
            "Hu et al. 2022, Table 2): dev-selected, so optimistic",
        },
        "runs": {},
    }
    selected = [k["plain"].get("selected_dev_accuracy") for k in keyed]
    if all(v is not None for v in selected):
        # the epoch chosen on held-out training examples (training.selected_epoch): no dev
        chosen = [100.0 * float(v) for v in selected if v is not None]
        out["plain_selected_epoch_points"] = {
            **describe(chosen),
            "median": statistics.median(chosen),
            "selected_epochs": [k["plain"].get("selected_epoch") for k in keyed],
            "protocol": "each seed's epoch chosen on held-out training examples, median and "
            "mean over seeds: the dev set plays no part in the choice",
        }
    for key in common:
        per_epoch = {}
        for e in range(n_epochs):
            d = [accuracies(k[key])[e] - accuracies(k["plain"])[e] for k in keyed]
            per_epoch[f"epoch_{e + 1}"] = describe(d)
        out["runs"][key] = {"difference_points": per_epoch}
    return out
