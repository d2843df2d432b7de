"""build_cost_table: composition of op counts and fitted curves into per-round costs."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from privtuner.costmodels import build_cost_table
from privtuner.costmodels.catalogue import generate_catalogue
from privtuner.costmodels.fitting import (
    DEFAULT_MODEL_PATH,
    CostModel,
    OutOfDomainError,
    fit_records,
    load_cost_model,
    synthetic_records,
)
from privtuner.costmodels.model import slot_values_per_step, step_costs
from privtuner.costmodels.security import security_bits
from privtuner.costmodels.types import CkksParams
from privtuner.costmodels.workload import op_counts_per_step
from privtuner.errors import CostModelError, ParameterError, ScenarioError
from privtuner.optimizer.testing.tolerances import TOLERANCES as TOL
from privtuner.scenario.schema import ScenarioSpec


@pytest.fixture(scope="module")
def model() -> CostModel:
    return fit_records(synthetic_records(generate_catalogue(), seed=11, noise_rel=0.01))


def spec(**overrides: object) -> ScenarioSpec:
    """The default scenario with every catalogue set admitted (no precision floor) in column
    packing (the hand compositions below are column packing's) unless ``overrides`` say
    otherwise."""
    return ScenarioSpec().with_overrides(
        {"fhe.min_precision_bits": 0.0, "fhe.packing": "column", **overrides}
    )


def test_table_matches_hand_composition(model: CostModel) -> None:
    s = spec(**{"workload.steps_per_round": 2})
    table = build_cost_table(s, model)
    assert table.n_sets == len(generate_catalogue())
    assert table.rounds == s.workload.rounds
    f = model.reference_frequency_hz
    for i, p in enumerate(table.params):
        c = op_counts_per_step(s.workload, p, "column")  # per step; two steps per round
        ev = {op: model.evaluate(op, p) for op in model.curves}
        dev = 2 * (c.encryptions * ev["encrypt"] + c.decryptions * ev["decrypt"]) * f
        srv = 2 * (c.server_macs * ev["project_mac"] + c.server_rescales * ev["rescale"]) * f
        assert table.device_cycles[i] == pytest.approx(dev, rel=TOL["same_formula_rel"])
        assert table.server_cycles[i] == pytest.approx(srv, rel=TOL["same_formula_rel"])
        assert table.uplink_bits[i] == pytest.approx(
            2 * 8 * c.ciphertexts_up * ev["ct_bytes_fresh"]
        )
        assert table.downlink_bits[i] == pytest.approx(
            2 * 8 * c.ciphertexts_down * ev["ct_bytes_product"]
        )
        assert table.security_bits[i] == security_bits(p.poly_modulus_degree, p.log2_q)
        # The default metric saturates at the standard table's 256-bit top.
        assert table.privacy[i] == min(table.security_bits[i], 256.0)
        assert table.precision_bits[i] == model.precision_by_set[p.name]
    assert np.all(table.device_cycles > 0) and np.all(table.uplink_bits > table.downlink_bits)
    assert table.provenance["cost_model"]["cpu_model"] == ["synthetic"]


def test_device_clear_term(model: CostModel) -> None:
    s = spec()
    base = build_cost_table(s, model)
    with_clear = CostModel(
        curves=model.curves,
        reference_frequency_hz=model.reference_frequency_hz,
        precision_by_set=model.precision_by_set,
        device_clear_s_per_token=1e-4,
    )
    t = build_cost_table(s, with_clear)
    extra = s.workload.steps_per_round * s.workload.tokens_per_step * 1e-4 * 3.0e9
    assert np.allclose(t.device_cycles - base.device_cycles, extra)
    assert np.array_equal(t.server_cycles, base.server_cycles)


def test_filters_and_metric(model: CostModel) -> None:
    t = build_cost_table(
        spec(**{"fhe.ring_degrees": [8192], "objective.privacy_metric": "log2_n"}), model
    )
    assert {p.poly_modulus_degree for p in t.params} == {8192}
    assert t.privacy_metric == "log2_n" and np.all(t.privacy == 13.0)
    t = build_cost_table(spec(**{"fhe.min_precision_bits": 20.0}), model)
    assert np.all(t.precision_bits >= 20.0)
    assert 0 < t.n_sets < len(generate_catalogue())
    assert t.provenance["dropped_for_precision"]
    with pytest.raises(ParameterError, match="min_precision_bits"):
        build_cost_table(spec(**{"fhe.min_precision_bits": 59.0}), model)
    with pytest.raises(ParameterError, match="unknown privacy metric"):
        build_cost_table(spec(**{"objective.privacy_metric": "bogus"}), model)


def _study(path: Path, losses: dict[tuple[str, str], float], mode: str = "simulate") -> str:
    """An accuracy study's JSON as `privtuner accuracy` writes it (the fields the filter
    reads: a plaintext reference run, then one run per set and packing)."""
    runs: list[dict[str, object]] = [{"mode": "plain", "set_name": None, "packing": None}]
    runs += [
        {"mode": mode, "set_name": s, "packing": p, "accuracy_loss_points": v}
        for (s, p), v in losses.items()
    ]
    path.write_text(json.dumps({"mode": mode, "runs": runs}))
    return str(path)


def test_accuracy_filter(tmp_path: Path, model: CostModel) -> None:
    """fhe.max_accuracy_loss_points keeps the sets whose measured loss is at most the bound
    (a study's largest loss per set and packing counts); a set the study lacks, an unreadable
    study and an empty catalogue are each one clear error."""
    cat = generate_catalogue()
    loss = {(p.name, "column"): (41 - p.scale_bits) / 10 for p in cat}  # s20: 2.1 points
    study = _study(tmp_path / "acc.json", loss)
    t = build_cost_table(
        spec(**{"fhe.max_accuracy_loss_points": 1.0, "fhe.accuracy_study": study}), model
    )
    assert {p.name for p in t.params} == {p.name for p in cat if p.scale_bits >= 31}
    assert set(t.provenance["dropped_for_accuracy"]) == {p.name for p in cat if p.scale_bits < 31}
    assert t.provenance["accuracy_study"] == study
    # without the bound the study is not read: every set stays
    assert build_cost_table(spec(**{"fhe.accuracy_study": "/nonexistent"}), model).n_sets == len(
        cat
    )
    # an encrypted run of a set measured worse than its simulation counts
    worst = cat[-1]
    both = json.loads(Path(study).read_text())
    both["runs"].append(
        {
            "mode": "encrypted",
            "set_name": worst.name,
            "packing": "column",
            "accuracy_loss_points": 5,
        }
    )
    Path(study).write_text(json.dumps(both))
    t = build_cost_table(
        spec(**{"fhe.max_accuracy_loss_points": 1.0, "fhe.accuracy_study": study}), model
    )
    assert worst.name in t.provenance["dropped_for_accuracy"]
    partial = _study(tmp_path / "partial.json", dict(list(loss.items())[1:]))
    with pytest.raises(CostModelError, match=rf"no column run of {cat[0].name}.*--sets"):
        build_cost_table(
            spec(**{"fhe.max_accuracy_loss_points": 1.0, "fhe.accuracy_study": partial}), model
        )
    with pytest.raises(ParameterError, match=r"no catalogue set is left: fhe.max_accuracy_loss"):
        build_cost_table(
            spec(**{"fhe.max_accuracy_loss_points": 0.0, "fhe.accuracy_study": study}), model
        )
    (tmp_path / "bad.json").write_text("{not json")
    plain_only = _study(tmp_path / "plain.json", {})
    for bad, message in [
        (str(tmp_path / "bad.json"), "not JSON"),
        (plain_only, "no simulate or encrypted run"),
        (str(tmp_path / "missing.json"), "cannot read it"),
    ]:
        with pytest.raises(CostModelError, match=message):
            build_cost_table(
                spec(**{"fhe.max_accuracy_loss_points": 1.0, "fhe.accuracy_study": bad}), model
            )


def test_accuracy_bound_needs_a_study() -> None:
    with pytest.raises(ScenarioError, match="max_accuracy_loss_points needs accuracy_study"):
        spec(**{"fhe.max_accuracy_loss_points": 1.0})


def test_outside_domain_is_an_error() -> None:
    small = [p for p in generate_catalogue() if p.poly_modulus_degree <= 16384]
    m = fit_records(synthetic_records(small, seed=1))
    with pytest.raises(CostModelError) as exc:
        build_cost_table(spec(), m)
    assert str(exc.value).startswith("catalogue set N32768_")
    assert str(exc.value).endswith(
        "with scale bits 20-40 the model covers ring degrees [4096, 8192, 16384]: give "
        "fhe.ring_degrees among them, or use a cost model fitted on more sets (fhe.cost_model)"
    )
    assert "extrapolate" not in str(exc.value)
    t = build_cost_table(spec(**{"fhe.ring_degrees": [4096, 8192, 16384]}), m)
    assert t.n_sets == len(small)


def test_outside_domain_names_the_scale_fields_and_the_covered_range(model: CostModel) -> None:
    """A scenario's user cannot pass ``extrapolate=True``: the message names the fields."""
    with pytest.raises(CostModelError) as exc:
        build_cost_table(spec(**{"fhe.scale_bits_min": 50, "fhe.scale_bits_max": 60}), model)
    message = str(exc.value)
    assert "extrapolate" not in message
    assert message.startswith("catalogue set N8192_q60-50-60_s50 lies outside the cost model's ")
    assert message.endswith(
        "model covers scale bits 20-40: give fhe.scale_bits_min and fhe.scale_bits_max within "
        "them, or use a cost model fitted on more sets (fhe.cost_model)"
    )
    assert isinstance(exc.value.__cause__, OutOfDomainError)
    assert pickle.loads(pickle.dumps(exc.value.__cause__)).where == exc.value.__cause__.where


def test_precision_falls_back_to_curve(model: CostModel) -> None:
    m = CostModel(curves=model.curves, reference_frequency_hz=3e9)  # no per-set records
    t = build_cost_table(spec(), m)
    for i, p in enumerate(t.params):
        assert t.precision_bits[i] == pytest.approx(model.evaluate("precision_bits", p))
    curves = {k: v for k, v in model.curves.items() if k != "precision_bits"}
    t = build_cost_table(spec(), CostModel(curves=curves, reference_frequency_hz=3e9))
    assert all(math.isnan(x) for x in t.precision_bits)
    with pytest.raises(CostModelError, match="no precision"):
        build_cost_table(
            spec(**{"fhe.min_precision_bits": 5.0}),
            CostModel(curves=curves, reference_frequency_hz=3e9),
        )


def test_missing_ops_and_paths(tmp_path: Path, model: CostModel) -> None:
    curves = {k: v for k, v in model.curves.items() if k != "rescale"}
    with pytest.raises(CostModelError, match="lacks curves for rescale"):
        build_cost_table(spec(), CostModel(curves=curves, reference_frequency_hz=3e9))
    path = model.save(tmp_path / "model.json")
    a = build_cost_table(spec(), path)
    b = build_cost_table(spec(**{"fhe.cost_model": str(path)}))
    assert np.array_equal(a.server_cycles, b.server_cycles)


def test_default_model_missing_is_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the shipped file (the package ships it: pretend it is gone), ``"default"``
    fails with an error that says what to do."""
    import privtuner.costmodels.fitting as fitting

    assert DEFAULT_MODEL_PATH.is_file()  # shipped
    monkeypatch.setattr(fitting, "DEFAULT_MODEL_PATH", tmp_path / "missing.json")
    with pytest.raises(CostModelError, match=r"default cost model .* does not exist"):
        build_cost_table(spec())


def test_slot_values_per_step() -> None:
    # Default BERT-Tiny workload (H=128, FFN=512, 2 layers, LoRA on Q and V, pooler), T tokens:
    # forward uploads T x d_in for each of the 12 layer projections and 8 tokens x 128 for the
    # pooler; backward (all but layer-0 Q, K, V) uploads T x d_out, downloads T x d_in.
    wl = spec().workload
    t, b, h, f = wl.tokens_per_step, wl.batch_size, wl.hidden_size, wl.intermediate_size
    fwd_in = 2 * (5 * h + f)  # per token: Q, K, V, O, FFN-in read h; FFN-out reads f
    fwd_out = 2 * (5 * h + f)
    bwd_up = (h + f + h) + (3 * h + h + f + h)  # layer 0 O, FFN-in, FFN-out; layer 1 all
    bwd_down = (h + h + f) + (3 * h + h + h + f)
    up, down = slot_values_per_step(wl)
    assert up == t * (fwd_in + bwd_up) + b * 2 * h
    assert down == t * (fwd_out + bwd_down) + b * 2 * h


def test_step_costs_with_per_value_and_load_terms(model: CostModel) -> None:
    # Add encrypt_one / decrypt_one / project_load curves (borrowed from other ops; decrypt_one
    # is half of decrypt) and check the composition formulas of the module docstring by hand.
    curves = dict(model.curves)
    curves["encrypt_one"] = dataclasses.replace(model.curves["decrypt"], op="encrypt_one")
    dec = model.curves["decrypt"]
    half = {
        k: (0.5 * v if dec.curve_form.kind == "linear" or k == "c" else v)
        for k, v in dec.coefficients.items()
    }
    curves["decrypt_one"] = dataclasses.replace(dec, op="decrypt_one", coefficients=half)
    curves["project_load"] = dataclasses.replace(model.curves["encrypt"], op="project_load")
    m = CostModel(curves=curves, reference_frequency_hz=3e9, device_clear_s_per_token=2e-5)
    wl = spec().workload
    p = CkksParams(16384, (48, 28, 48), 28)
    c = op_counts_per_step(wl, p, "column")
    up, down = slot_values_per_step(wl)
    ev = {op: m.evaluate(op, p) for op in curves}
    per_enc = (ev["encrypt"] - ev["encrypt_one"]) / (p.slots - 1)
    per_dec = (ev["decrypt"] - ev["decrypt_one"]) / (p.slots - 1)
    k = step_costs(m, wl, p, packing="column")
    assert k["encrypt_s"] == pytest.approx(
        c.encryptions * ev["encrypt_one"] + (up - c.encryptions) * per_enc,
        rel=TOL["same_formula_rel"],
    )
    assert k["decrypt_s"] == pytest.approx(
        c.decryptions * ev["decrypt_one"] + (down - c.decryptions) * per_dec,
        rel=TOL["same_formula_rel"],
    )
    # T = 512 tokens in 8192 slots: partly filled blocks cost less than full ones
    assert k["encrypt_s"] < c.encryptions * ev["encrypt"]
    assert k["server_s"] == pytest.approx(
        c.server_macs * ev["project_mac"]
        + c.server_rescales * ev["rescale"]
        + c.ciphertexts_up * ev["project_load"],
        rel=TOL["same_formula_rel"],
    )
    assert k["clear_s"] == pytest.approx(wl.tokens_per_step * 2e-5)
    assert k["step_s"] == pytest.approx(k["device_s"] + k["server_s"])
    two = step_costs(m, wl, p, steps=2, packing="column")
    assert two["server_s"] == pytest.approx(2 * k["server_s"])
    assert two["encrypt_s"] == pytest.approx(2 * k["encrypt_s"])
    t = build_cost_table(spec(**{"workload.steps_per_round": 2}), m)
    i = t.params.index(p)
    assert t.device_cycles[i] == pytest.approx(two["device_s"] * 3e9, rel=TOL["same_formula_rel"])
    assert t.server_cycles[i] == pytest.approx(two["server_s"] * 3e9, rel=TOL["same_formula_rel"])


def test_shipped_model_invariants() -> None:
    """The shipped model: every fitted time/size grows with N at fixed chain; sizes grow
    with the prime bits; physical forms have non-negative work coefficients; the kernel's
    cost per MAC never falls as the limb count rises at fixed N and zero bits; curves
    carry their held-out errors."""
    assert DEFAULT_MODEL_PATH.is_file(), f"shipped cost model missing: {DEFAULT_MODEL_PATH}"
    m = load_cost_model("default")
    cat = generate_catalogue()
    chains = sorted({p.coeff_mod_bit_sizes for p in cat})
    for op, curve in m.curves.items():
        assert math.isfinite(curve.heldout_rel_err) and curve.n_sets >= 10, op
        if op in ("precision_bits", "precision_bits_il"):  # falls with N at fixed scale
            continue
        for chain in chains:
            ps = sorted(
                (p for p in cat if p.coeff_mod_bit_sizes == chain),
                key=lambda p: p.poly_modulus_degree,
            )
            vals = [m.evaluate(op, p) for p in ps]
            assert all(v > 0 for v in vals), (op, chain)
            assert all(b >= a for a, b in itertools.pairwise(vals)), (op, chain, vals)
        if curve.curve_form.physical:
            work = {k: v for k, v in curve.coefficients.items() if k != "c"}
            assert all(v >= 0 for v in work.values()), (op, curve.coefficients)
    for op in ("ct_bytes_fresh", "ct_bytes_product", "ct_bytes_unrescaled"):
        for n in (4096, 8192, 16384, 32768):
            ps = sorted((p for p in cat if p.poly_modulus_degree == n), key=lambda p: p.log2_q)
            vals = [m.evaluate(op, p) for p in ps]
            assert all(b >= a for a, b in itertools.pairwise(vals)), (op, n, vals)
    # the unrescaled product keeps the scale prime: larger than the rescaled one
    for p in cat:
        assert m.evaluate("ct_bytes_unrescaled", p) > m.evaluate("ct_bytes_product", p), p.name
    t = build_cost_table(spec(), m)
    for chain in chains:
        idx = [i for i, p in enumerate(t.params) if p.coeff_mod_bit_sizes == chain]
        idx.sort(key=lambda i: t.params[i].poly_modulus_degree)
        for arr in (t.device_cycles, t.server_cycles, t.uplink_bits, t.downlink_bits):
            assert all(arr[b] >= arr[a] for a, b in itertools.pairwise(idx))


def test_step_costs_sums_kernel_cost_per_block_shape(model: CostModel) -> None:
    from privtuner.costmodels.model import kernel_macs_per_step, kernel_op
    from privtuner.costmodels.workload import projections

    base = model.curves["project_mac"]
    twice = {
        k: (2 * v if base.curve_form.kind == "linear" or k == "c" else v)
        for k, v in base.coefficients.items()
    }
    curves = dict(model.curves)
    curves["project_mac@512x128"] = dataclasses.replace(base, coefficients=twice)
    m = CostModel(curves=curves, reference_frequency_hz=3e9)
    wl = spec().workload
    p = CkksParams(8192, (40, 20, 40), 20)
    assert kernel_op(m, 512, 128) == "project_mac@512x128"
    assert kernel_op(m, 128, 512) == kernel_op(model, 512, 128) == "project_mac"
    macs = kernel_macs_per_step(m, wl, p)
    c = op_counts_per_step(wl, p, "column")
    assert sum(macs.values()) == c.server_macs
    # 512 x 128 blocks: ffn_out forward and ffn_in backward of every layer
    n_wide = sum(
        pr.d_in * pr.d_out
        for pr in projections(wl)
        if (pr.kind == "ffn_out") or (pr.kind == "ffn_in" and pr.needs_backward)
    )
    assert macs["project_mac@512x128"] == n_wide > 0
    ev = model.evaluate("project_mac", p)
    plain = step_costs(model, wl, p, packing="column")["server_s"]
    shaped = step_costs(m, wl, p, packing="column")["server_s"]
    assert shaped - plain == pytest.approx(n_wide * ev, rel=1e-9)
    assert (
        build_cost_table(spec(), m).server_cycles.sum()
        > build_cost_table(spec(), model).server_cycles.sum()
    )


# ----------------------------------------------------------------- interleaved packing
def test_interleaved_outputs_by_inputs_per_class() -> None:
    """Default BERT-Tiny step at N = 8192 (T = 512, k = 16; the pooler's 8 tokens: k = 128),
    tallied by hand: forward q, k, v, o and ffn_in read 128 features (G = 8), ffn_out 512
    (G = 32), the pooler G = 1; backward swaps d_in and d_out (layer 0 from o on)."""
    from privtuner.costmodels.model import interleaved_outputs_per_step

    p = CkksParams(8192, (60, 40, 60), 40)
    got = interleaved_outputs_per_step(ScenarioSpec().workload, p)
    assert got == {8: 3712, 32: 512, 1: 256}
    assert sum(got.values()) == op_counts_per_step(ScenarioSpec().workload, p).server_rescales


class _Curve:
    def __init__(self, d_in: int, value: float) -> None:
        self.provenance = {"d_in": d_in}
        self.kernel_d_in = d_in
        self.value = value


class _KernelModel:
    """Only ``project_il`` curves: G = 1, 8, 32 at k = 16."""

    def __init__(self) -> None:
        self.curves = {
            "project_il@16x128": _Curve(16, 1.0),
            "project_il": _Curve(128, 2.0),
            "project_il@512x128": _Curve(512, 5.0),
        }

    def evaluate(self, op: str, params: CkksParams) -> float:
        return self.curves[op].value


@pytest.mark.parametrize(
    ("g", "expected"),
    [(1, 1.0), (8, 2.0), (32, 5.0), (4, 1.0 + 3 / 7), (20, 2.0 + 12 * 3 / 24), (96, 13.0)],
)
def test_interleaved_kernel_interpolates_in_g(g: int, expected: float) -> None:
    from privtuner.costmodels.model import interleaved_output_s

    p = CkksParams(8192, (60, 40, 60), 40)
    assert interleaved_output_s(_KernelModel(), p, g) == pytest.approx(expected)  # type: ignore[arg-type]


def test_interleaved_step_composition(model: CostModel) -> None:
    from privtuner.costmodels.model import interleaved_outputs_per_step

    wl = ScenarioSpec().workload
    p = CkksParams(8192, (60, 40, 60), 40)
    c = op_counts_per_step(wl, p, "interleaved")
    ev = {op: model.evaluate(op, p) for op in model.curves}
    k = step_costs(model, wl, p, packing="interleaved")
    outs = interleaved_outputs_per_step(wl, p)
    # one project_il curve (synthetic records: the 128 x 128 block only): flat in G
    srv = sum(outs.values()) * ev["project_il"] + c.server_rescales * ev["rescale"]
    assert k["server_s"] == pytest.approx(srv, rel=TOL["same_formula_rel"])
    assert k["encrypt_s"] == pytest.approx(c.encryptions * ev["encrypt_il"])
    assert k["decrypt_s"] == pytest.approx(c.decryptions * ev["decrypt_il"])
    assert k["bytes_up"] == pytest.approx(c.ciphertexts_up * ev["ct_bytes_fresh"])
    col = step_costs(model, wl, p, packing="column")
    assert k["bytes_up"] < col["bytes_up"] / 15  # 266 ciphertexts up instead of 4480
    table = build_cost_table(spec(**{"fhe.packing": "interleaved"}), model)
    assert table.provenance["packing"] == "interleaved"
    i = table.params.index(p)
    assert table.uplink_bits[i] == pytest.approx(8 * k["bytes_up"] * wl.steps_per_round)


def test_interleaved_needs_its_curves() -> None:
    m = fit_records(
        [r for r in synthetic_records(generate_catalogue(), seed=3) if not r["op"].endswith("_il")]
    )
    with pytest.raises(CostModelError, match=r"encrypt_il.*fhe.packing: column"):
        build_cost_table(spec(**{"fhe.packing": "interleaved"}), m)
    assert build_cost_table(spec(), m).n_sets > 0  # column packing needs none of them


def test_device_rescale_composition(model: CostModel) -> None:
    """fhe.rescale: device swaps the server's rescale for the unrescaled product's writing,
    the download for the unrescaled size and the decryptions for the two-prime ones; the rest
    of the step is unchanged (hand composition, both packings)."""
    wl = ScenarioSpec().workload
    p = CkksParams(8192, (60, 40, 60), 40)
    ev = {op: model.evaluate(op, p) for op in model.curves}
    for packing, dec in (("interleaved", "decrypt_il"), ("column", "decrypt")):
        c = op_counts_per_step(wl, p, packing)
        srv = step_costs(model, wl, p, packing=packing)
        dev = step_costs(model, wl, p, packing=packing, rescale="device")
        assert dev["server_s"] - srv["server_s"] == pytest.approx(
            c.server_rescales * (ev["product_out"] - ev["rescale"]), rel=1e-9
        )
        assert dev["bytes_down"] == pytest.approx(c.ciphertexts_down * ev["ct_bytes_unrescaled"])
        assert dev["decrypt_s"] == pytest.approx(c.decryptions * ev[f"{dec}_unrescaled"])
        assert dev["encrypt_s"] == srv["encrypt_s"] and dev["bytes_up"] == srv["bytes_up"]
        # the synthetic truth: writing a product is cheaper than rescaling it, its bytes more
        assert dev["server_s"] < srv["server_s"] and dev["bytes_down"] > srv["bytes_down"]
    base = build_cost_table(spec(), model)
    table = build_cost_table(spec(**{"fhe.rescale": "device"}), model)
    assert table.provenance["rescale"] == "device" and base.provenance["rescale"] == "server"
    assert table.params == base.params
    assert np.all(table.server_cycles < base.server_cycles)
    assert np.all(table.downlink_bits > base.downlink_bits)
    assert np.array_equal(table.uplink_bits, base.uplink_bits)


def test_device_rescale_needs_its_curves() -> None:
    m = fit_records(
        [r for r in synthetic_records(generate_catalogue(), seed=3) if "unrescaled" not in r["op"]]
    )
    with pytest.raises(CostModelError, match=r"ct_bytes_unrescaled.*fhe.rescale: server"):
        build_cost_table(spec(**{"fhe.rescale": "device"}), m)
    assert build_cost_table(spec(), m).n_sets > 0  # the server's rescale needs none of them
    with pytest.raises(ScenarioError, match="rescale"):
        spec(**{"fhe.rescale": "client"})


def test_device_rescale_column_splits_its_decryption_per_value() -> None:
    """Column packing with fhe.rescale: device prices its decryptions like the server's
    option (a part per ciphertext plus a part per slot value), from the two-prime curves
    ``decrypt_unrescaled`` / ``decrypt_unrescaled_one``; a model that splits the one-prime
    decryption but lacks ``decrypt_unrescaled_one`` is refused, not priced unsplit."""
    from privtuner.costmodels.fitting import SYNTHETIC_TRUTH

    truth = {
        **SYNTHETIC_TRUTH,
        "decrypt_one": ("nlogn_l", {"a": 1.0e-10, "c": 1.0e-5}),
        "decrypt_unrescaled_one": ("nlogn_l", {"a": 2.0e-10, "c": 1.5e-5}),
    }
    recs = synthetic_records(generate_catalogue(), seed=5, noise_rel=0.01, truth=truth)
    m = fit_records(recs)
    wl = ScenarioSpec().workload
    p = CkksParams(32768, (60, 40, 60), 40)
    c = op_counts_per_step(wl, p, "column")
    v_down = slot_values_per_step(wl)[1]
    assert v_down < c.decryptions * p.slots  # the blocks are partly filled: the split matters
    full, one = (m.evaluate(op, p) for op in ("decrypt_unrescaled", "decrypt_unrescaled_one"))
    want = c.decryptions * one + (v_down - c.decryptions) * (full - one) / (p.slots - 1)
    dev = step_costs(m, wl, p, packing="column", rescale="device")
    assert dev["decrypt_s"] == pytest.approx(want, rel=1e-9)
    lacking = fit_records([r for r in recs if r["op"] != "decrypt_unrescaled_one"])
    with pytest.raises(CostModelError, match=r"decrypt_unrescaled_one.*fhe.rescale: server\)"):
        step_costs(lacking, wl, p, packing="column", rescale="device")
    assert step_costs(lacking, wl, p, packing="column")["decrypt_s"] > 0


def test_server_rescale_ignores_the_unrescaled_curves(model: CostModel) -> None:
    """fhe.rescale: server is priced without the device option's curves: a broken
    ``product_out`` curve changes nothing (and is refused only where it is used)."""
    p = CkksParams(8192, (60, 40, 60), 40)
    wl = ScenarioSpec().workload
    bad = dataclasses.replace(model.curves["product_out"], coefficients={"a": -1.0, "c": -1.0})
    broken = dataclasses.replace(model, curves={**model.curves, "product_out": bad})
    for packing in ("column", "interleaved"):
        assert step_costs(broken, wl, p, packing=packing) == step_costs(
            model, wl, p, packing=packing
        )
        with pytest.raises(CostModelError, match="product_out is not positive"):
            step_costs(broken, wl, p, packing=packing, rescale="device")


def test_missing_curves_message_names_the_option_that_needs_them() -> None:
    """The refusal suggests only the scenario option that would do without the missing
    curves: fhe.packing: column does not help a model without the unrescaled ones."""
    recs = [
        r for r in synthetic_records(generate_catalogue(), seed=3) if "unrescaled" not in r["op"]
    ]
    m = fit_records(recs)
    with pytest.raises(CostModelError) as err:
        build_cost_table(spec(**{"fhe.packing": "interleaved", "fhe.rescale": "device"}), m)
    assert (
        "fhe.rescale: server" in str(err.value)
        and "fhe.packing" not in str(err.value).split(";")[1]
    )
    assert "\n" not in str(err.value)


def test_rescale_choose_prices_both_and_the_optimiser_picks(model: CostModel) -> None:
    """fhe.rescale: choose holds every set twice, each entry priced exactly as the single-option
    table prices it; the optimum over both is at least as good as over either alone (each is
    a restriction of it), and where the server's CPU is scarce the devices take the device
    option."""
    from privtuner import solve
    from privtuner.optimizer.core.problem import AllocationProblem
    from privtuner.system_sim import build_instance

    over = {"devices.count": 4}
    tabs = {
        r: build_cost_table(spec(**over, **{"fhe.rescale": r}), model)
        for r in ("server", "device", "choose")
    }
    both = tabs["choose"]
    assert both.n_sets == 2 * tabs["server"].n_sets == 2 * tabs["device"].n_sets
    assert both.provenance["rescale"] == "choose" and len(set(both.set_names)) == both.n_sets
    for i, name in enumerate(both.set_names):
        option = "device" if name.endswith("+rescale=device") else "server"
        j = tabs[option].set_names.index(name.removesuffix("+rescale=device"))
        for arr in ("device_cycles", "server_cycles", "uplink_bits", "downlink_bits", "privacy"):
            assert getattr(both, arr)[i] == getattr(tabs[option], arr)[j], (name, arr)
    assert both.select(np.arange(both.n_sets) % 2 == 1).set_names[0].endswith("+rescale=device")
    s = spec(**over, **{"fhe.rescale": "choose"})
    inst = build_instance(s, 0)
    for factor in (1.0, 0.01):
        res = {}
        for r, t in tabs.items():
            p = AllocationProblem.from_instance(inst, t, s.objective, s.fhe)
            res[r] = solve(p.with_server_cpu(p.server_cpu_hz * factor), "exact")
        assert all(x.status == "optimal" for x in res.values()), factor
        best_single = min(res["server"].objective, res["device"].objective)
        assert res["choose"].objective <= best_single + 1e-9 * abs(best_single), factor
    picked = [n.endswith("+rescale=device") for n in res["choose"].set_names]
    assert all(picked)  # 1 % of the server's CPU: every device rescales itself
