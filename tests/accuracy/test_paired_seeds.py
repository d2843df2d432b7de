"""Paired-seed summary of accuracy studies (report.paired_seed_summary, benchmarks script)."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest

from privtuner.accuracy.report import paired_seed_summary

ROOT = Path(__file__).resolve().parents[2]


def _study(seed: int, plain: list[float], sim: list[float]) -> dict[str, Any]:
    def run(mode: str, set_name: str | None, accs: list[float]) -> dict[str, Any]:
        return {
            "mode": mode,
            "set_name": set_name,
            "packing": None if set_name is None else "interleaved",
            "epochs": [{"epoch": i + 1, "dev_accuracy": a} for i, a in enumerate(accs)],
        }

    return {
        "mode": "simulate",
        "model": "minilm",
        "model_config": {"hidden_size": 384},
        "config": {"seed": seed, "epochs": len(plain), "lr": 1e-3},
        "runs": [run("plain", None, plain), run("simulate", "S", sim)],
    }


def test_differences_and_interval_by_hand() -> None:
    """Differences 1, 2, 3 points: mean 2, sd 1, sem 1/sqrt(3), t(0.975, 2) = 4.303 (table)."""
    studies = [
        _study(0, [0.80, 0.85], [0.81, 0.85]),
        _study(1, [0.82, 0.86], [0.84, 0.85]),
        _study(2, [0.79, 0.84], [0.82, 0.86]),
    ]
    out = paired_seed_summary(studies)
    assert out["seeds"] == [0, 1, 2]
    d = out["runs"]["simulate:S@interleaved"]["difference_points"]
    last = d["epoch_1"]
    assert last["values"] == pytest.approx([1.0, 2.0, 3.0])
    assert last["mean"] == pytest.approx(2.0)
    assert last["sd"] == pytest.approx(1.0)
    assert last["sem"] == pytest.approx(1 / math.sqrt(3))
    half = 4.3027 / math.sqrt(3)
    assert last["ci95"] == pytest.approx([2.0 - half, 2.0 + half], abs=1e-3)
    assert d["epoch_2"]["values"] == pytest.approx([0.0, -1.0, 2.0])
    p = out["plain_accuracy_points"]["epoch_1"]
    assert p["mean"] == pytest.approx(80.333333) and p["sd"] == pytest.approx(1.527525)
    # the LoRA paper's protocol: each seed's best epoch (85, 86, 84), their median 85
    b = out["plain_best_epoch_points"]
    assert b["values"] == pytest.approx([85.0, 86.0, 84.0]) and b["median"] == pytest.approx(85.0)
    assert b["best_epochs"] == [2, 2, 2]
    studies[1]["runs"][0]["epochs"][0]["dev_accuracy"] = 0.87
    b = paired_seed_summary(studies)["plain_best_epoch_points"]
    assert b["best_epochs"] == [2, 1, 2] and b["median"] == pytest.approx(85.0)
    assert b["mean"] == pytest.approx((85 + 87 + 84) / 3)
    assert "plain_selected_epoch_points" not in out  # no holdout
    for st, (ep, acc) in zip(studies, ((1, 0.80), (2, 0.86), (1, 0.79)), strict=True):
        st["runs"][0].update(selected_epoch=ep, selected_dev_accuracy=acc)
    sel = paired_seed_summary(studies)["plain_selected_epoch_points"]
    assert sel["values"] == pytest.approx([80.0, 86.0, 79.0])
    assert sel["selected_epochs"] == [1, 2, 1] and sel["median"] == pytest.approx(80.0)


def test_only_the_seed_may_differ() -> None:
    a, b = _study(0, [0.8], [0.8]), _study(1, [0.8], [0.8])
    with pytest.raises(ValueError, match="repeat a seed"):
        paired_seed_summary([a, copy.deepcopy(a)])
    with pytest.raises(ValueError, match="at least two"):
        paired_seed_summary([a])
    c = copy.deepcopy(b)
    c["config"]["lr"] = 2e-3
    with pytest.raises(ValueError, match=r"differ in config \['lr'\]"):
        paired_seed_summary([a, c])
    # an option a study's config lacks (written before the option existed) is its default
    c = copy.deepcopy(b)
    c["config"]["head"] = "linear"
    assert paired_seed_summary([a, c])["seeds"] == [0, 1]
    c["config"]["head"] = "mlp"
    with pytest.raises(ValueError, match=r"differ in config \['head'\]"):
        paired_seed_summary([a, c])
    # a study written before --holdout has no holdout_examples in its data: none held out
    a2, c = copy.deepcopy(a), copy.deepcopy(b)
    a2["data"] = {"train_file": "train.tsv", "train_examples": 96}
    c["data"] = {**a2["data"], "holdout_examples": 0}
    assert paired_seed_summary([a2, c])["seeds"] == [0, 1]
    c["data"]["holdout_examples"] = 20
    with pytest.raises(ValueError, match="differ in 'data'"):
        paired_seed_summary([a2, c])
    c["config"]["holdout"] = 20  # the option named, not the data record it changes
    with pytest.raises(ValueError, match=r"differ in config \['holdout'\]"):
        paired_seed_summary([a2, c])
    c = copy.deepcopy(b)
    c["model"] = "bert-tiny"
    with pytest.raises(ValueError, match="differ in 'model'"):
        paired_seed_summary([a, c])
    # the data, initial weights and error model matter as much as the config
    for key, other in (
        ("data", {"train_file": "other/train.tsv", "train_examples": 100}),
        ("weights", "/models/other"),
        ("error_model", {"date": "2026-12-01"}),
    ):
        c = copy.deepcopy(b)
        c[key] = other
        with pytest.raises(ValueError, match=f"differ in '{key}'"):
            paired_seed_summary([a, c])
    with pytest.raises(ValueError, match="study 2 is not an accuracy study"):
        paired_seed_summary([a, {"mode": "simulate"}])
    with pytest.raises(ValueError, match="study 1 is not an accuracy study"):
        paired_seed_summary([[1, 2], a])  # type: ignore[list-item]
    c = copy.deepcopy(b)
    c["runs"] = c["runs"][1:]
    with pytest.raises(ValueError, match="no plain run"):
        paired_seed_summary([a, c])


def test_script_prints_json_and_one_line_errors(tmp_path: Path, capsys: Any) -> None:
    spec = importlib.util.spec_from_file_location(
        "accuracy_seeds", ROOT / "benchmarks" / "accuracy_seeds.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    dirs = []
    for seed, sim in ((0, 0.80), (1, 0.83)):
        d = tmp_path / f"s{seed}"
        d.mkdir()
        (d / "accuracy.json").write_text(json.dumps(_study(seed, [0.81], [sim])))
        dirs.append(str(d))
    assert mod.main(dirs) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["runs"]["simulate:S@interleaved"]["difference_points"]["epoch_1"]["values"] == (
        pytest.approx([-1.0, 2.0])
    )
    assert mod.main([dirs[0], str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read") and err.count("\n") == 1
