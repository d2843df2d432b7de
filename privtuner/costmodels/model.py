"""The cost table the optimiser consumes: op counts x fitted per-op costs (spec section 3).

For each catalogue set theta (filtered by the scenario's ``fhe`` section) and the workload's
per-round op counts (:mod:`privtuner.costmodels.workload`, E_r = ``steps_per_round`` steps):

* C_dev(theta) = f_ref x [T_enc(theta) + T_dec(theta) + E_r T t_clear]                 [cycles]
* C_srv(theta) = f_ref x [n_up t_load(theta) + sum_s n_mac,s t_mac,s(theta)
                          + n_rescale t_rescale(theta)]                                [cycles]
* S_up(theta)  = 8 x n_up x bytes_fresh(theta)                                        [bits]
* S_down(theta) = 8 x n_down x bytes_product(theta)                                   [bits]

where t_* are the fitted single-thread CPU seconds per op (n_mac,s: the multiply-accumulates
of kernel block shape s = d_in x d_out, forward W and backward W^T blocks of
:func:`workload.projections`; t_mac,s its ``project_mac@{d_in}x{d_out}`` curve when the model
has one, else the base ``project_mac`` (128 x 128) curve: the kernel's cost per MAC depends
on the block shape, see :func:`kernel_macs_per_step`), ``f_ref`` the profiled CPU's
reference frequency (cycles = measured seconds x f_ref, spec section 3), T the tokens per
step and t_clear the model's ``device_clear_s_per_token`` (0 when the model does not carry
it; see :func:`clear_s_per_token_from_steps`). Uplink ciphertexts are fresh encryptions;
downlink ones are server products after one rescale.

Encryption and decryption of a ciphertext cost a fixed part (NTTs, encryption, zstd
serialization) plus a part per slot value (Python list conversion of the values):

* T_enc = n_enc t_enc1 + (V_up - n_enc) (t_enc - t_enc1) / (N/2 - 1),

with ``t_enc`` measured with all N/2 slots filled, ``t_enc1`` with one (``encrypt_one``) and
V_up the slot values encrypted (tokens x features, :func:`slot_values_per_step`); likewise
T_dec with ``decrypt``/``decrypt_one`` and V_down. Column packing with T < N/2 tokens fills a
block only partly, so this matters at large N. Without the ``*_one`` curves (older models)
T_enc = n_enc t_enc. ``t_load`` (``project_load``: the server parsing an uploaded
ciphertext and expanding its seed) is paid once per input ciphertext, not per MAC; older
models without it lump it into ``t_mac``.

Who rescales (``fhe.rescale``, the protocol option of ``fhe_profiling.ckks_ops.RESCALE_AT``):
with ``server`` (default) every output ciphertext costs the server one ``rescale`` (SEAL's
rescale and the compact serialization of the one-prime result) and downloads
``bytes_product``; with ``device`` the server writes each product unrescaled (``product_out``),
the download is ``bytes_unrescaled`` (the scale prime kept) and the device's decryption is the
two-prime one (``decrypt_unrescaled``/``decrypt_unrescaled_one``, ``decrypt_il_unrescaled``):

* C_srv(theta) = f_ref x [... + n_rescale t_product_out(theta)],
* S_down(theta) = 8 x n_down x bytes_unrescaled(theta).

"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from privtuner.costmodels.catalogue import ALLOWED_RING_DEGREES, generate_catalogue
from privtuner.costmodels.fitting import (
    INTERLEAVED_PROFILE_K,
    CostModel,
    OutOfDomainError,
    kernel_curve_name,
    load_cost_model,
    precision_key,
)
from privtuner.costmodels.privacy import get_privacy_metric
from privtuner.costmodels.security import security_bits
from privtuner.costmodels.types import CkksParams, CostTable
from privtuner.costmodels.workload import (
    DEFAULT_PACKING,
    OpCounts,
    interleaved_layout,
    op_counts_per_round,
    op_counts_per_step,
    projections,
)
from privtuner.errors import CostModelError, ParameterError
from privtuner.scenario.schema import SCALE_BITS_RANGE, ScenarioSpec, WorkloadSpec

#: Ops a cost model must carry for :func:`build_cost_table`.
REQUIRED_OPS: tuple[str, ...] = (
    "encrypt",
    "decrypt",
    "project_mac",
    "rescale",
    "ct_bytes_fresh",
    "ct_bytes_product",
)


#: Ops used when the model has them (see the module docstring); older models lack them.
OPTIONAL_OPS: tuple[str, ...] = ("encrypt_one", "decrypt_one", "project_load")

#: Ops the interleaved packing needs besides ``rescale``, the byte sizes and ``project_load``.
INTERLEAVED_OPS: tuple[str, ...] = ("encrypt_il", "decrypt_il", "project_il")

#: Who rescales the server's products (the protocol option), default first.
RESCALE_AT: tuple[str, ...] = ("server", "device")
#: ``fhe.rescale``: one of :data:`RESCALE_AT`, or ``choose``: every set priced both ways, the
#: optimiser picks per device (the device variant's entries are named ``...+rescale=device``).
RESCALE_CHOICES: tuple[str, ...] = (*RESCALE_AT, "choose")

#: Ops ``rescale="device"`` needs, by packing (see the module docstring).
UNRESCALED_OPS: dict[str, tuple[str, ...]] = {
    "column": ("product_out", "ct_bytes_unrescaled", "decrypt_unrescaled"),
    "interleaved": ("product_out", "ct_bytes_unrescaled", "decrypt_il_unrescaled"),
}


def check_rescale(rescale: str) -> str:
    """``rescale`` if it is one of :data:`RESCALE_AT`, else a :class:`ParameterError` naming
    the valid ones."""
    if rescale not in RESCALE_AT:
        raise ParameterError(f"rescale: unknown value {rescale!r}; valid: {', '.join(RESCALE_AT)}")
    return rescale


def _op_names(rescale: str) -> dict[str, str]:
    """The curve behind each role of the step formulas for ``rescale``: the server's output
    op, the download size and the decryptions."""
    if check_rescale(rescale) == "server":
        return {
            "out": "rescale",
            "bytes_down": "ct_bytes_product",
            "decrypt": "decrypt",
            "decrypt_one": "decrypt_one",
            "decrypt_il": "decrypt_il",
        }
    return {
        "out": "product_out",
        "bytes_down": "ct_bytes_unrescaled",
        "decrypt": "decrypt_unrescaled",
        "decrypt_one": "decrypt_unrescaled_one",
        "decrypt_il": "decrypt_il_unrescaled",
    }


def slot_values_per_step(workload: WorkloadSpec) -> tuple[int, int]:
    """``(V_up, V_down)``: slot values encrypted and decrypted per step (tokens x features of
    every uploaded and downloaded ciphertext; column packing, same rule as
    :func:`workload.projection_counts`). Independent of the CKKS set."""
    up = down = 0
    for p in projections(workload):
        up += p.tokens * p.d_in
        down += p.tokens * p.d_out
        if p.needs_backward:
            up += p.tokens * p.d_out
            down += p.tokens * p.d_in
    return up, down


def kernel_op(model: CostModel, d_in: int, d_out: int) -> str:
    """The curve pricing one MAC of a ``d_in x d_out`` kernel block: the shape-specific
    ``project_mac@{d_in}x{d_out}`` if ``model`` has it, else the base ``project_mac``."""
    name = kernel_curve_name(d_in, d_out)
    return name if model.has(name) else "project_mac"


def kernel_macs_per_step(
    model: CostModel, workload: WorkloadSpec, params: CkksParams
) -> dict[str, int]:
    """Server multiply-accumulates of one step, by the curve that prices them (:func:`kernel_op`).

    A projection with ``blocks = ceil(tokens / (N/2))`` runs ``blocks`` kernel blocks of shape
    ``d_in x d_out`` forward (``Y = X W``) and, if it needs its input gradient, ``blocks`` of
    shape ``d_out x d_in`` backward (``dX = dY W^T``), each ``d_in d_out`` MACs (spec
    section 1; counts as :func:`workload.projection_counts`). The values sum to
    ``op_counts_per_step(...).server_macs``.
    """
    out: dict[str, int] = {}
    for p in projections(workload):
        blocks = math.ceil(p.tokens / params.slots)
        shapes = [(p.d_in, p.d_out)]
        if p.needs_backward:
            shapes.append((p.d_out, p.d_in))
        for d_in, d_out in shapes:
            op = kernel_op(model, d_in, d_out)
            out[op] = out.get(op, 0) + blocks * d_in * d_out
    return out


def _per_value_s(model: CostModel, op: str, params: CkksParams, full_s: float) -> float | None:
    """Seconds per extra slot value from ``op`` (all slots) and ``op_one`` (one value)."""
    one_op = f"{op}_one"
    if not model.has(one_op) or params.slots < 2:
        return None
    one_s = model.evaluate(one_op, params)
    return max(full_s - one_s, 0.0) / (params.slots - 1)


def interleaved_outputs_per_step(workload: WorkloadSpec, params: CkksParams) -> dict[int, int]:
    """Output partials of one interleaved step by ``G``, the inputs per class product
    (``ceil(d_in / k)``; forward ``d_in x d_out`` and backward ``d_out x d_in`` blocks, counts
    as :func:`workload.projection_counts`). The values sum to ``server_rescales``."""
    out: dict[int, int] = {}
    for p in projections(workload):
        shapes = [(p.d_in, p.d_out)] + ([(p.d_out, p.d_in)] if p.needs_backward else [])
        for d_in, d_out in shapes:
            k, blocks = interleaved_layout(p.tokens, d_in, params.slots)
            g = math.ceil(d_in / k)
            out[g] = out.get(g, 0) + blocks * math.ceil(d_out / k) * k
    return out


def interleaved_kernel_points(model: CostModel) -> list[tuple[int, str]]:
    """``(G, curve)`` of the model's ``project_il`` curves, by ``G = d_in / k`` of the block
    each was profiled on (``k`` = :data:`fitting.INTERLEAVED_PROFILE_K`), sorted."""
    pts = []
    for name, curve in model.curves.items():
        if name == "project_il" or name.startswith("project_il@"):
            d_in = int(curve.provenance.get("d_in", curve.kernel_d_in))
            pts.append((max(1, math.ceil(d_in / INTERLEAVED_PROFILE_K)), name))
    return sorted(pts)


def interleaved_output_s(model: CostModel, params: CkksParams, g: int) -> float:
    """Kernel seconds per output partial with ``g`` inputs per class product: the profiled
    ``project_il`` curves interpolated linearly in ``g`` (the work per output is ``nx nw g``
    limb multiply-adds plus a fixed recombination, spec section 1), extrapolated along the
    nearest segment beyond them."""
    pts = interleaved_kernel_points(model)
    if not pts:
        raise CostModelError("cost model lacks curves for project_il")
    vals = [(gp, model.evaluate(name, params)) for gp, name in pts]
    if len(vals) == 1:
        return vals[0][1]
    i = 0
    while i < len(vals) - 2 and g > vals[i + 1][0]:
        i += 1
    (g0, t0), (g1, t1) = vals[i], vals[i + 1]
    return max(t0 + (t1 - t0) * (g - g0) / (g1 - g0), 0.5 * min(t0, t1))


def _required(model: CostModel, packing: str, rescale: str = "server") -> list[str]:
    need = list(REQUIRED_OPS)
    if packing == "interleaved":
        need += [op for op in INTERLEAVED_OPS if op != "project_il"]
        if not interleaved_kernel_points(model):
            need.append("project_il")
    if rescale in ("device", "choose"):
        need += UNRESCALED_OPS[packing]
        if packing == "column" and model.has("decrypt_one"):
            # the server's decryption is split per slot value: the device's must be too
            need.append("decrypt_unrescaled_one")
    return [op for op in need if not model.has(op)]


def _missing_fix(missing: list[str]) -> str:
    """``", or set ..."``: the scenario option that does without the ``missing`` curves of
    :func:`_required` (``fhe.packing: column`` for the interleaved ops, ``fhe.rescale:
    server`` for the unrescaled ones), or ``""``."""
    fixes = []
    if any(op in INTERLEAVED_OPS for op in missing):
        fixes.append("fhe.packing: column")
    if any("unrescaled" in op or op == "product_out" for op in missing):
        fixes.append("fhe.rescale: server")
    return f", or set {' and '.join(fixes)}" if fixes else ""


def step_costs(
    model: CostModel,
    workload: WorkloadSpec,
    params: CkksParams,
    steps: int = 1,
    packing: str = DEFAULT_PACKING,
    rescale: str = "server",
) -> dict[str, float]:
    """Predicted costs of ``steps`` steps of ``workload`` with ``params`` in ``packing``, the
    products rescaled by ``rescale`` (module formulas).

    Keys: ``encrypt_s``, ``decrypt_s`` (device crypto), ``clear_s`` (device clear-text work),
    ``device_s`` (their sum), ``server_s``, ``step_s`` (device + server) [single-thread CPU
    seconds], ``bytes_up``, ``bytes_down`` [bytes], ``ciphertexts_up``, ``ciphertexts_down``.
    Raises :class:`CostModelError` if the model lacks a required curve or a set lies outside
    a curve's domain.
    """
    names = _op_names(rescale)
    missing = _required(model, packing, rescale)
    if missing:
        raise CostModelError(
            f"cost model lacks curves for {', '.join(missing)} (packing {packing!r}, rescale "
            f"{rescale!r}; profile the model again{_missing_fix(missing)})"
        )
    c: OpCounts = op_counts_per_step(workload, params, packing).scaled(steps)
    t = {op: model.evaluate(op, params) for op in REQUIRED_OPS}
    # the other protocol option's curves are not evaluated: they must not decide this price
    unrescaled = (*UNRESCALED_OPS[packing], "decrypt_unrescaled_one") if rescale == "device" else ()
    for op in (*OPTIONAL_OPS, "encrypt_il", "decrypt_il", *unrescaled):
        if model.has(op):
            t[op] = model.evaluate(op, params)
    if packing == "interleaved":
        outs = {g: steps * n for g, n in interleaved_outputs_per_step(workload, params).items()}
        kernel = {f"project_il[G={g}]": interleaved_output_s(model, params, g) for g in outs}
        t.update(kernel)
        kernel_s = sum(n * t[f"project_il[G={g}]"] for g, n in outs.items())
    else:
        macs = {op: steps * n for op, n in kernel_macs_per_step(model, workload, params).items()}
        t.update({op: model.evaluate(op, params) for op in macs})
        kernel_s = sum(n * t[op] for op, n in macs.items())
    bad = [op for op, x in t.items() if not (math.isfinite(x) and x > 0)]
    if bad:
        raise CostModelError(f"set {params.name}: fitted cost of {', '.join(bad)} is not positive")
    if packing == "interleaved":  # every ciphertext holds all slots: no per-value share
        enc_s = c.encryptions * t["encrypt_il"]
        dec_s = c.decryptions * t[names["decrypt_il"]]
    else:
        enc_s, dec_s = _column_crypto_s(model, workload, params, steps, c, t, names)
    server_s = kernel_s + c.server_rescales * t[names["out"]]
    if "project_load" in t:
        server_s += c.ciphertexts_up * t["project_load"]
    clear_s = steps * workload.tokens_per_step * (model.device_clear_s_per_token or 0.0)
    return {
        "encrypt_s": enc_s,
        "decrypt_s": dec_s,
        "clear_s": clear_s,
        "device_s": enc_s + dec_s + clear_s,
        "server_s": server_s,
        "step_s": enc_s + dec_s + clear_s + server_s,
        "bytes_up": c.ciphertexts_up * t["ct_bytes_fresh"],
        "bytes_down": c.ciphertexts_down * t[names["bytes_down"]],
        "ciphertexts_up": float(c.ciphertexts_up),
        "ciphertexts_down": float(c.ciphertexts_down),
    }


def _column_crypto_s(
    model: CostModel,
    workload: WorkloadSpec,
    params: CkksParams,
    steps: int,
    c: OpCounts,
    t: dict[str, float],
    names: dict[str, str],
) -> tuple[float, float]:
    """Column packing's ``(encrypt_s, decrypt_s)``: a fixed part per ciphertext plus a part per
    slot value when the model has the ``*_one`` curves (module docstring); the decryption
    curves named by ``names`` (:func:`_op_names`)."""
    v_up, v_down = (steps * v for v in slot_values_per_step(workload))
    enc_s = c.encryptions * t["encrypt"]
    per_value = _per_value_s(model, "encrypt", params, t["encrypt"])
    if per_value is not None:
        enc_s = c.encryptions * t["encrypt_one"] + max(v_up - c.encryptions, 0) * per_value
    dec, dec_one = names["decrypt"], names["decrypt_one"]
    dec_s = c.decryptions * t[dec]
    per_value = _per_value_s(model, dec, params, t[dec])
    if per_value is not None:
        dec_s = c.decryptions * t[dec_one] + max(v_down - c.decryptions, 0) * per_value
    return enc_s, dec_s


def clear_s_per_token_from_steps(records: list[dict[str, Any]]) -> float:
    """``device_clear_s_per_token`` from measured encrypted LoRA steps: the median over
    records of ``device_clear_s / tokens`` (profile-lora records, clock ``"cpu"``; the
    clear-text work on the device per token: embeddings, LayerNorm, softmax, GELU, LoRA,
    loss, autograd and AdamW). Raises :class:`CostModelError` without usable records."""
    vals = []
    for r in records:
        if str(r.get("clock", "")) != "cpu":
            continue
        tokens = int(float(r["tokens"]))
        if tokens > 0:
            vals.append(float(r["device_clear_s"]) / tokens)
    if not vals:
        raise CostModelError("no CPU-clock LoRA step records to measure the clear-text work")
    return float(np.median(vals))


def catalogue_for(spec: ScenarioSpec) -> list[CkksParams]:
    """The catalogue restricted by ``spec.fhe`` (ring degrees, scale range, min security)."""
    fhe = spec.fhe
    return generate_catalogue(
        ring_degrees=fhe.ring_degrees,
        scale_bits_range=(fhe.scale_bits_min, fhe.scale_bits_max),
        min_security_bits=fhe.min_security_bits,
    )


def precision_of(model: CostModel, params: CkksParams, packing: str = "column") -> float:
    """Precision [bits] of one encrypted projection with ``params`` in ``packing``: measured
    value from the records if the set was profiled, else the fitted ``precision_bits`` (or
    ``precision_bits_il``) curve, else NaN."""
    il = packing == "interleaved"
    key = precision_key(params.name, il)
    if key in model.precision_by_set:
        return float(model.precision_by_set[key])
    op = "precision_bits_il" if il else "precision_bits"
    if model.has(op):
        return model.evaluate(op, params)
    return math.nan


def _outside_domain(
    spec: ScenarioSpec,
    model: CostModel,
    ops: Sequence[str],
    params: CkksParams,
    exc: OutOfDomainError,
) -> str:
    """Why a catalogue set of ``spec`` cannot be priced, for a scenario's user: the set, the
    curve and its profiled range, the scenario fields to change and the values the cost model
    covers (ring degrees for a ring degree outside the domain, else scale bits)."""
    fhe = spec.fhe

    def inside(p: CkksParams) -> bool:
        try:
            precision_of(model, p, fhe.packing)
            for op in ops:
                model.evaluate(op, p)
        except CostModelError:
            return False
        return True

    def sets(degrees: Sequence[int], lo: int, hi: int) -> list[CkksParams]:
        try:  # every integer scale in [lo, hi] (step 1): what any scale range can give
            return generate_catalogue(degrees, (lo, hi), fhe.min_security_bits, step_bits=1)
        except ParameterError:
            return []

    head = (
        f"catalogue set {params.name} lies outside the cost model's profiled domain ({exc.where})"
    )
    model_hint = "or use a cost model fitted on more sets (fhe.cost_model)"
    if exc.variable == "poly_modulus_degree":
        lo, hi = fhe.scale_bits_min, fhe.scale_bits_max
        covered = [
            n
            for n in ALLOWED_RING_DEGREES
            if (cands := sets([n], lo, hi)) and all(inside(p) for p in cands)
        ]
        where = f"with scale bits {lo}-{hi} the model covers ring degrees {covered}"
        fix = "give fhe.ring_degrees among them"
    else:
        degrees = list(fhe.ring_degrees)
        by_scale: dict[int, list[CkksParams]] = {}
        for p in sets(degrees, *SCALE_BITS_RANGE):
            by_scale.setdefault(p.scale_bits, []).append(p)
        covered = sorted(s for s, ps in by_scale.items() if all(inside(p) for p in ps))
        where = f"with fhe.ring_degrees {degrees} the model covers scale bits {_ranges(covered)}"
        fix = "give fhe.scale_bits_min and fhe.scale_bits_max within them"
    if not covered:
        return (
            f"{head}; no set of this scenario lies inside it: use a cost model fitted on more "
            "sets (fhe.cost_model)"
        )
    return f"{head}; {where}: {fix}, {model_hint}"


def _ranges(values: Sequence[int]) -> str:
    """``20-40`` (or ``20-30, 34-40``): runs of consecutive integers."""
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs)


def _accuracy_losses(spec: ScenarioSpec) -> dict[tuple[str, str], float]:
    """The accuracy study's losses when ``fhe.max_accuracy_loss_points`` is set, else {}."""
    if spec.fhe.max_accuracy_loss_points is None:
        return {}
    from privtuner.costmodels.accuracy import load_accuracy_losses

    assert spec.fhe.accuracy_study is not None  # the schema requires it
    return load_accuracy_losses(spec.fhe.accuracy_study)


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
    packing, rescale = spec.fhe.packing, spec.fhe.rescale
    missing = _required(model, packing, rescale)
    if missing:
        raise CostModelError(
            f"cost model lacks curves for {', '.join(missing)} needed by fhe.packing "
            f"{packing!r} and fhe.rescale {rescale!r}; profile and fit a model with them"
            f"{_missing_fix(missing)}"
        )
    metric = get_privacy_metric(spec.objective.privacy_metric)
    wl = spec.workload
    f_ref = model.reference_frequency_hz
    clear_s_per_token = model.device_clear_s_per_token or 0.0
    if packing == "interleaved":
        kernel_ops = [name for _, name in interleaved_kernel_points(model)]
        kernel_ops += [op for op in ("encrypt_il", "decrypt_il") if model.has(op)]
    else:
        kernel_ops = sorted(
            {op for p in catalogue_for(spec) for op in kernel_macs_per_step(model, wl, p)}
        )
    if rescale != "server":
        extra = (*UNRESCALED_OPS[packing], "decrypt_unrescaled_one")
        kernel_ops += [op for op in extra if model.has(op)]
    options = RESCALE_AT if rescale == "choose" else (rescale,)
    ops_used = (*REQUIRED_OPS, *(op for op in OPTIONAL_OPS if model.has(op)), *kernel_ops)

    sets: list[CkksParams] = []
    variants: list[str] = []
    rows: list[dict[str, float]] = []
    dropped_precision: list[str] = []
    dropped_accuracy: list[str] = []
    max_loss = spec.fhe.max_accuracy_loss_points
    losses = _accuracy_losses(spec)
    for p in catalogue_for(spec):
        try:
            prec = precision_of(model, p, packing)
            for op in ops_used:
                model.evaluate(op, p)  # domain check of every curve used
        except OutOfDomainError as exc:
            raise CostModelError(_outside_domain(spec, model, ops_used, p, exc)) from exc
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
        if max_loss is not None:
            loss = losses.get((p.name, packing))
            if loss is None:
                raise CostModelError(
                    f"fhe.accuracy_study {spec.fhe.accuracy_study} has no {packing} run of "
                    f"{p.name}; run `privtuner accuracy --mode simulate --sets {p.name} "
                    f"--packing {packing}` or restrict the catalogue (fhe.ring_degrees, scale)"
                )
            if loss > max_loss:
                dropped_accuracy.append(p.name)
                continue
        for option in options:
            try:
                k = step_costs(
                    model, wl, p, steps=wl.steps_per_round, packing=packing, rescale=option
                )
            except CostModelError as exc:
                raise CostModelError(f"catalogue set {p.name}: {exc}") from exc
            rows.append(
                {
                    "device_cycles": k["device_s"] * f_ref,
                    "server_cycles": k["server_s"] * f_ref,
                    "uplink_bits": 8.0 * k["bytes_up"],
                    "downlink_bits": 8.0 * k["bytes_down"],
                    "privacy": metric(p),
                    "security_bits": security_bits(p.poly_modulus_degree, p.log2_q),
                    "precision_bits": prec,
                }
            )
            sets.append(p)
            variants.append("rescale=device" if rescale == "choose" and option == "device" else "")
    if not sets:
        reasons = []
        if dropped_precision:
            reasons.append(
                f"fhe.min_precision_bits = {spec.fhe.min_precision_bits:g} rejects "
                f"{', '.join(dropped_precision)}"
            )
        if dropped_accuracy:
            reasons.append(
                f"fhe.max_accuracy_loss_points = {max_loss:g} rejects {', '.join(dropped_accuracy)}"
            )
        raise ParameterError(f"no catalogue set is left: {'; '.join(reasons)}")

    def col(name: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.array([r[name] for r in rows], dtype=float)

    provenance: dict[str, Any] = {
        "cost_model": dict(model.provenance),
        "reference_frequency_hz": f_ref,
        "device_clear_s_per_token": clear_s_per_token,
        "dropped_for_precision": dropped_precision,
        "dropped_for_accuracy": dropped_accuracy,
        "accuracy_study": spec.fhe.accuracy_study if max_loss is not None else None,
        "packing": packing,
        "rescale": rescale,
        "op_counts_per_round": {
            p.name: op_counts_per_round(wl, p, packing).to_dict() for p in sets
        },
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
        variants=tuple(variants) if rescale == "choose" else (),
    )
