"""``privtuner accuracy``: files written atomically, errors as one line."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privtuner", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_simulate_writes_json_csv_losses_and_figure(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "accuracy", "--data", str(tiny["data"]), "--model", str(tiny["config"]),
        "--vocab", str(tiny["vocab"]), "--mode", "simulate",
        "--sets", "N4096_q40-20-40_s20", "N8192_q60-40-60_s40",
        "--packing", "interleaved", "column", "--steps", "3", "--batch-size", "16",
        "--max-len", "16", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    result = json.loads((out / "accuracy.json").read_text())
    assert [r["mode"] for r in result["runs"]] == ["plain"] + ["simulate"] * 4
    assert len(summary["runs"]) == 5
    assert result["error_model"]["command"] == "privtuner accuracy-calibrate"
    with (out / "accuracy.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and rows[0]["run"] == "plain"
    with (out / "loss_curves.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 5 * 3
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # deterministic for a seed
    again = _cli(*args[:-1], str(tmp_path / "again"))
    assert again.returncode == 0
    r2 = json.loads((tmp_path / "again" / "accuracy.json").read_text())
    assert [r["losses"] for r in r2["runs"]] == [r["losses"] for r in result["runs"]]
    # the study is what a scenario's fhe.accuracy_study reads (the catalogue filter)
    from privtuner.costmodels.accuracy import load_accuracy_losses

    losses = load_accuracy_losses(out / "accuracy.json")
    sets = ("N4096_q40-20-40_s20", "N8192_q60-40-60_s40")
    assert set(losses) == {(s, p) for s in sets for p in ("interleaved", "column")}
    for r in result["runs"][1:]:
        assert losses[(r["set_name"], r["packing"])] == r["accuracy_loss_points"]


def test_holdout_comes_out_of_the_max_train_subset_and_is_reported(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    """--holdout N takes N of the --max-train sentences (training keeps the rest); every
    epoch's held-out accuracy is in the CSV, the selected epoch in the CSV and on stdout."""
    out = tmp_path / "out"
    proc = _cli(
        "accuracy", "--data", str(tiny["data"]), "--model", str(tiny["config"]),
        "--vocab", str(tiny["vocab"]), "--epochs", "2", "--max-train", "48", "--holdout", "16",
        "--batch-size", "16", "--max-len", "16", "--no-progress", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "accuracy.json").read_text())
    assert result["data"]["train_examples"] == 32 and result["data"]["holdout_examples"] == 16
    plain = result["runs"][0]
    assert len(plain["losses"]) == 2 * 2  # 32 training sentences, batches of 16
    with (out / "accuracy.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for row, e in zip(rows, plain["epochs"], strict=True):
        assert float(row["holdout_accuracy"]) == pytest.approx(e["holdout_accuracy"])
        assert row["selected_epoch"] == str(plain["selected_epoch"])
    run = json.loads(proc.stdout)["runs"][0]
    assert run["selected_epoch"] == plain["selected_epoch"] in (1, 2)
    assert run["selected_dev_accuracy"] == plain["selected_dev_accuracy"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "/nonexistent"], "error: /nonexistent: --data: not a folder; give the folder"),
        (["--full", "--mode", "simulate"], "error: --full: only with --mode plain"),
        (["--sets", "nope", "--mode", "simulate"], "error: --sets: unknown catalogue set(s)"),
        (["--model", "/nonexistent"], "error: --model: bert-tiny, minilm, a Hugging Face"),
        (["--epochs", "0"], "error: epochs: must be a positive integer (got 0)"),
        (["--vocab", "/nonexistent/v.txt"], "error: --vocab: no such file: /nonexistent/v.txt"),
        (["--dropout", "1"], "error: dropout: must be in [0, 1) (got 1.0)"),
        (
            ["--seed", "-1", "--dropout", "0.1"],
            "error: privtuner accuracy: argument --seed: must be in [0, 2**63 - 1] (got -1)",
        ),
        (
            ["--holdout", "500"],
            "error: --holdout: must be smaller than the 96 training examples (got 500)",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tiny: dict[str, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    base = ["accuracy", "--data", str(tiny["data"]), "--model", str(tiny["config"])]
    proc = _cli(*base, "--vocab", str(tiny["vocab"]), "--no-progress", "--out", str(out), *extra)
    assert _one_error_line(proc).startswith(message)
    assert not out.exists() or not any(out.iterdir())


def test_sentences_longer_than_the_model_are_refused_before_training(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    """The tiny model has 32 positions; one dev sentence of 40 words (42 tokens) at --max-len 64
    is refused up front, naming --max-len; --max-len 32 truncates it and runs."""
    with (tiny["data"] / "dev.tsv").open("a") as f:
        f.write("1\t" + " ".join(["film"] * 40) + "\n")
    out = tmp_path / "out"
    base = ["accuracy", "--data", str(tiny["data"]), "--model", str(tiny["config"])]
    base += ["--vocab", str(tiny["vocab"]), "--no-progress", "--steps", "1", "--out", str(out)]
    proc = _cli(*base, "--max-len", "64")
    assert _one_error_line(proc) == (
        "error: --max-len: sentences of 42 tokens exceed the model's "
        "max_position_embeddings=32; give --max-len 32 or less (got 64)"
    )
    assert not out.exists() or not any(out.iterdir())
    proc = _cli(*base, "--max-len", "32")
    assert proc.returncode == 0, proc.stderr
