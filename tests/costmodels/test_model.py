"""build_cost_table: composition of op counts and fitted curves into per-round costs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from privtuner.costmodels import build_cost_table
from privtuner.costmodels.catalogue import generate_catalogue
from privtuner.costmodels.fitting import (
    DEFAULT_MODEL_PATH,
    CostModel,
    fit_records,
    synthetic_records,
)
from privtuner.costmodels.security import security_bits
from privtuner.costmodels.workload import op_counts_per_step
from privtuner.errors import CostModelError, ParameterError
from privtuner.scenario.schema import ScenarioSpec


@pytest.fixture(scope="module")
def model() -> CostModel:
    return fit_records(synthetic_records(generate_catalogue(), seed=11, noise_rel=0.01))


def spec(**overrides: object) -> ScenarioSpec:
    """The default scenario with every catalogue set admitted (no precision floor) unless
    ``overrides`` say otherwise."""
    return ScenarioSpec().with_overrides({"fhe.min_precision_bits": 0.0, **overrides})


def test_table_matches_hand_composition(model: CostModel) -> None:
    s = spec(**{"workload.steps_per_round": 2})
    table = build_cost_table(s, model)
    assert table.n_sets == len(generate_catalogue())
    assert table.rounds == s.workload.rounds
    f = model.reference_frequency_hz
    for i, p in enumerate(table.params):
        c = op_counts_per_step(s.workload, p)  # per step; two steps per round
        ev = {op: model.evaluate(op, p) for op in model.curves}
        dev = 2 * (c.encryptions * ev["encrypt"] + c.decryptions * ev["decrypt"]) * f
        srv = 2 * (c.server_macs * ev["project_mac"] + c.server_rescales * ev["rescale"]) * f
        assert table.device_cycles[i] == pytest.approx(dev, rel=1e-12)
        assert table.server_cycles[i] == pytest.approx(srv, rel=1e-12)
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


def test_outside_domain_is_an_error() -> None:
    small = [p for p in generate_catalogue() if p.poly_modulus_degree <= 16384]
    m = fit_records(synthetic_records(small, seed=1))
    with pytest.raises(CostModelError, match=r"N32768.*restrict fhe.ring_degrees"):
        build_cost_table(spec(), m)
    t = build_cost_table(spec(**{"fhe.ring_degrees": [4096, 8192, 16384]}), m)
    assert t.n_sets == len(small)


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


@pytest.mark.skipif(DEFAULT_MODEL_PATH.exists(), reason="default model shipped")
def test_default_model_missing_is_clear_error() -> None:
    with pytest.raises(CostModelError, match=r"default cost model .* does not exist yet"):
        build_cost_table(spec())
