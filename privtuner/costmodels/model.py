"""The cost table the optimiser consumes: op counts x fitted per-op costs (spec section 3).

For each catalogue set theta (filtered by the scenario's ``fhe`` section) and the workload's
per-round op counts (:mod:`privtuner.costmodels.workload`, E_r = ``steps_per_round`` steps):

* C_dev(theta) = f_ref x [n_enc t_enc(theta) + n_dec t_dec(theta) + E_r T t_clear]   [cycles]
* C_srv(theta) = f_ref x [n_mac t_mac(theta) + n_rescale t_rescale(theta)]             [cycles]
* S_up(theta)  = 8 x n_up x bytes_fresh(theta)                                        [bits]
* S_down(theta) = 8 x n_down x bytes_product(theta)                                   [bits]

where t_* are the fitted seconds per op, ``f_ref`` the profiled CPU's reference frequency
(cycles = measured seconds x f_ref, spec section 3), T the tokens per step and t_clear the
model's optional ``device_clear_s_per_token`` (0 when the model does not carry it). Uplink
ciphertexts are fresh encryptions; downlink ones are server products after one rescale.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from privtuner.costmodels.catalogue import generate_catalogue
from privtuner.costmodels.fitting import CostModel, load_cost_model
from privtuner.costmodels.privacy import get_privacy_metric
from privtuner.costmodels.security import security_bits
from privtuner.costmodels.types import CkksParams, CostTable
from privtuner.costmodels.workload import op_counts_per_round
from privtuner.errors import CostModelError, ParameterError
from privtuner.scenario.schema import ScenarioSpec

#: Ops a cost model must carry for :func:`build_cost_table`.
REQUIRED_OPS: tuple[str, ...] = (
    "encrypt",
    "decrypt",
    "project_mac",
    "rescale",
    "ct_bytes_fresh",
    "ct_bytes_product",
)


def catalogue_for(spec: ScenarioSpec) -> list[CkksParams]:
    """The catalogue restricted by ``spec.fhe`` (ring degrees, scale range, min security)."""
    fhe = spec.fhe
    return generate_catalogue(
        ring_degrees=fhe.ring_degrees,
        scale_bits_range=(fhe.scale_bits_min, fhe.scale_bits_max),
        min_security_bits=fhe.min_security_bits,
    )


def precision_of(model: CostModel, params: CkksParams) -> float:
    """Precision [bits] of one encrypted projection with ``params``: measured value from the
    records if the set was profiled, else the fitted ``precision_bits`` curve, else NaN."""
    if params.name in model.precision_by_set:
        return float(model.precision_by_set[params.name])
    if model.has("precision_bits"):
        return model.evaluate("precision_bits", params)
    return math.nan


def build_cost_table(
    spec: ScenarioSpec, cost_model: CostModel | str | Path | None = None
) -> CostTable:
    """Per-round costs of every admissible catalogue set for ``spec.workload`` (module formulas).

    ``cost_model``: a :class:`CostModel`, a path to a model JSON file, ``"default"`` (the shipped
    model) or None (use ``spec.fhe.cost_model``; a relative path there must already have been
    resolved by the caller against the scenario file). Sets are kept if they pass the security
    limit and, when ``spec.fhe.min_precision_bits > 0``, have at least that precision. Every set
    must lie inside the fitted curves' valid domains (no silent extrapolation): otherwise
    :class:`CostModelError` names the set and suggests restricting ``fhe.ring_degrees`` or
    the scale range. The privacy value uses ``spec.objective.privacy_metric``.
    """
    if cost_model is None:
        cost_model = spec.fhe.cost_model
    model = cost_model if isinstance(cost_model, CostModel) else load_cost_model(cost_model)
    missing = [op for op in REQUIRED_OPS if not model.has(op)]
    if missing:
        raise CostModelError(f"cost model lacks curves for {', '.join(missing)}")
    metric = get_privacy_metric(spec.objective.privacy_metric)
    wl = spec.workload
    f_ref = model.reference_frequency_hz
    clear_s_per_token = model.device_clear_s_per_token or 0.0

    sets: list[CkksParams] = []
    rows: list[dict[str, float]] = []
    dropped_precision: list[str] = []
    for p in catalogue_for(spec):
        try:
            prec = precision_of(model, p)
            t = {op: model.evaluate(op, p) for op in REQUIRED_OPS}
        except CostModelError as exc:
            raise CostModelError(
                f"catalogue set {p.name}: {exc}; restrict fhe.ring_degrees / the scale range "
                "to the profiled domain or use a model fitted on more sets"
            ) from exc
        if spec.fhe.min_precision_bits > 0:
            if math.isnan(prec):
                raise CostModelError(
                    "fhe.min_precision_bits > 0 but the cost model has no precision for "
                    f"{p.name} (no precision_bits records or curve)"
                )
            if prec < spec.fhe.min_precision_bits:
                dropped_precision.append(p.name)
                continue
        bad = [op for op, x in t.items() if not (math.isfinite(x) and x > 0)]
        if bad:
            raise CostModelError(
                f"catalogue set {p.name}: fitted cost of {', '.join(bad)} is not positive"
            )
        c = op_counts_per_round(wl, p)
        device_s = (
            c.encryptions * t["encrypt"]
            + c.decryptions * t["decrypt"]
            + wl.steps_per_round * wl.tokens_per_step * clear_s_per_token
        )
        server_s = c.server_macs * t["project_mac"] + c.server_rescales * t["rescale"]
        rows.append(
            {
                "device_cycles": device_s * f_ref,
                "server_cycles": server_s * f_ref,
                "uplink_bits": 8.0 * c.ciphertexts_up * t["ct_bytes_fresh"],
                "downlink_bits": 8.0 * c.ciphertexts_down * t["ct_bytes_product"],
                "privacy": metric(p),
                "security_bits": security_bits(p.poly_modulus_degree, p.log2_q),
                "precision_bits": prec,
            }
        )
        sets.append(p)
    if not sets:
        raise ParameterError(
            f"no catalogue set reaches fhe.min_precision_bits = {spec.fhe.min_precision_bits:g} "
            f"(rejected: {', '.join(dropped_precision)})"
        )

    def col(name: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.array([r[name] for r in rows], dtype=float)

    provenance: dict[str, Any] = {
        "cost_model": dict(model.provenance),
        "reference_frequency_hz": f_ref,
        "device_clear_s_per_token": clear_s_per_token,
        "dropped_for_precision": dropped_precision,
        "op_counts_per_round": {p.name: op_counts_per_round(wl, p).to_dict() for p in sets},
        "curves": {
            op: {
                "form": model.curves[op].form,
                "heldout_rel_err": model.curves[op].heldout_rel_err,
            }
            for op in sorted(model.curves)
        },
    }
    return CostTable(
        params=tuple(sets),
        device_cycles=col("device_cycles"),
        server_cycles=col("server_cycles"),
        uplink_bits=col("uplink_bits"),
        downlink_bits=col("downlink_bits"),
        privacy=col("privacy"),
        security_bits=col("security_bits"),
        precision_bits=col("precision_bits"),
        privacy_metric=metric.name,
        rounds=wl.rounds,
        provenance=provenance,
    )
