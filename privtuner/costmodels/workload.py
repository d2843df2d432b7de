"""Homomorphic operation counts of one fine-tuning step under column packing (spec section 1).

Projections (frozen dense layers the server evaluates on ciphertexts), in forward order:
per layer ``query``, ``key``, ``value`` (H x H, all three read the layer input),
``attention_output`` (H x H), ``ffn_in`` (H x FFN), ``ffn_out`` (FFN x H); then the
``pooler`` (H x H, once, if ``include_pooler``), which reads only the [CLS] token of each
sequence, so it sees ``batch_size`` tokens, not T.

Column packing: ciphertext j of a block holds feature j of up to N/2 tokens, so a projection
with ``d_in`` inputs and ``d_out`` outputs over ``t`` tokens uses ``blocks = ceil(t / (N/2))``
and, forward:

* ``blocks * d_in`` encryptions on the device, ciphertexts up;
* ``blocks * d_in * d_out`` ciphertext x plaintext-scalar multiply-accumulates on the server;
* ``blocks * d_out`` rescales (one per output ciphertext), ciphertexts down, decryptions.

Backward (dL/dX = dL/dY W^T) swaps ``d_in`` and ``d_out``.

Backward rule (which projections need their input gradient dL/dX): a projection's input gradient
is computed iff some trainable parameter lies strictly upstream of its input. The trainable
parameters are the LoRA adapters (on ``lora_targets`` of every layer; embeddings, LayerNorms and
frozen weights are not trained) and the classifier head, which is downstream of everything, so
it never makes a backward product necessary. The input of a projection depends on every
projection of an earlier *stage*, where the stages in order are, per layer, {query, key, value}
(parallel: none reads another's output), {attention_output}, {ffn_in}, {ffn_out}, then
{pooler}. Hence layer 0's query/key/value never need backward (they read the embedding output;
their own adapters need only dL/dY, which the device already has in clear); the first
projection after the first adapted stage, and every later one, does. The pooler's backward is
needed because adapters lie upstream of it (the head's own gradient uses the pooler output,
in clear on the device, and dL/dlogits only). All T tokens are counted in every layer (no
pruning of the last layer to the [CLS] rows).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from privtuner.costmodels.types import CkksParams
from privtuner.errors import ParameterError
from privtuner.scenario.schema import WorkloadSpec

#: Projection kinds of one transformer layer, in forward order, with their stage index.
LAYER_PROJECTIONS: tuple[tuple[str, int], ...] = (
    ("query", 0),
    ("key", 0),
    ("value", 0),
    ("attention_output", 1),
    ("ffn_in", 2),
    ("ffn_out", 3),
)
_STAGES_PER_LAYER = 4


@dataclass(frozen=True)
class Projection:
    """One frozen dense projection as the protocol runs it in one step."""

    name: str  # e.g. "layer0.query", "pooler"
    kind: str  # query, key, value, attention_output, ffn_in, ffn_out, pooler
    layer: int  # -1 for the pooler
    d_in: int
    d_out: int
    tokens: int  # tokens through this projection per step
    has_lora: bool
    needs_backward: bool  # input gradient dL/dX computed on ciphertexts


@dataclass(frozen=True)
class OpCounts:
    """Homomorphic operation counts (per step unless scaled; all counts, unitless).

    * ``encryptions`` / ``ciphertexts_up``: encode+encrypt on the device, each ciphertext uploaded
      fresh (forward activations and backward output gradients);
    * ``decryptions`` / ``ciphertexts_down``: decrypt+decode on the device of the server results;
    * ``server_macs``: ciphertext x plaintext-scalar multiply-accumulates on the server;
    * ``server_rescales``: rescales on the server (one per output ciphertext).
    """

    encryptions: int
    decryptions: int
    server_macs: int
    server_rescales: int
    ciphertexts_up: int
    ciphertexts_down: int

    def scaled(self, factor: int) -> OpCounts:
        """Counts x ``factor`` (e.g. steps per round)."""
        return OpCounts(**{k: v * int(factor) for k, v in asdict(self).items()})

    def __add__(self, other: OpCounts) -> OpCounts:
        a, b = asdict(self), asdict(other)
        return OpCounts(**{k: a[k] + b[k] for k in a})

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


ZERO_COUNTS = OpCounts(0, 0, 0, 0, 0, 0)


def projections(workload: WorkloadSpec) -> list[Projection]:
    """The projections of one step in forward order, with their backward flag (module rule)."""
    h, ffn = workload.hidden_size, workload.intermediate_size
    dims = {
        "query": (h, h),
        "key": (h, h),
        "value": (h, h),
        "attention_output": (h, h),
        "ffn_in": (h, ffn),
        "ffn_out": (ffn, h),
    }
    targets = set(workload.lora_targets)
    t = workload.tokens_per_step
    adapted_stages = [
        layer * _STAGES_PER_LAYER + stage
        for layer in range(workload.num_layers)
        for kind, stage in LAYER_PROJECTIONS
        if kind in targets
    ]
    first_adapted = min(adapted_stages) if adapted_stages else math.inf
    out: list[Projection] = []
    for layer in range(workload.num_layers):
        for kind, stage in LAYER_PROJECTIONS:
            g = layer * _STAGES_PER_LAYER + stage
            d_in, d_out = dims[kind]
            out.append(
                Projection(
                    name=f"layer{layer}.{kind}",
                    kind=kind,
                    layer=layer,
                    d_in=d_in,
                    d_out=d_out,
                    tokens=t,
                    has_lora=kind in targets,
                    needs_backward=g > first_adapted,
                )
            )
    if workload.include_pooler:
        g = workload.num_layers * _STAGES_PER_LAYER
        out.append(
            Projection(
                name="pooler",
                kind="pooler",
                layer=-1,
                d_in=h,
                d_out=h,
                tokens=workload.batch_size,
                has_lora=False,
                needs_backward=g > first_adapted,
            )
        )
    return out


def projection_counts(proj: Projection, params: CkksParams) -> OpCounts:
    """Forward (+ backward if ``proj.needs_backward``) counts of one projection (module rule)."""
    blocks = math.ceil(proj.tokens / params.slots)
    fwd = OpCounts(
        encryptions=blocks * proj.d_in,
        decryptions=blocks * proj.d_out,
        server_macs=blocks * proj.d_in * proj.d_out,
        server_rescales=blocks * proj.d_out,
        ciphertexts_up=blocks * proj.d_in,
        ciphertexts_down=blocks * proj.d_out,
    )
    if not proj.needs_backward:
        return fwd
    bwd = OpCounts(
        encryptions=blocks * proj.d_out,
        decryptions=blocks * proj.d_in,
        server_macs=blocks * proj.d_in * proj.d_out,
        server_rescales=blocks * proj.d_in,
        ciphertexts_up=blocks * proj.d_out,
        ciphertexts_down=blocks * proj.d_in,
    )
    return fwd + bwd


def op_counts_per_step(workload: WorkloadSpec, params: CkksParams) -> OpCounts:
    """Total counts of one fine-tuning step (sum over :func:`projections`)."""
    if params.slots < 1:
        raise ParameterError(f"poly_modulus_degree must be >= 2 (got {params.poly_modulus_degree})")
    total = ZERO_COUNTS
    for p in projections(workload):
        total = total + projection_counts(p, params)
    return total


def op_counts_per_round(workload: WorkloadSpec, params: CkksParams) -> OpCounts:
    """Counts of one round: per-step counts x ``steps_per_round``."""
    return op_counts_per_step(workload, params).scaled(workload.steps_per_round)


def describe(workload: WorkloadSpec, params: CkksParams) -> list[dict[str, Any]]:
    """One row per projection with its counts (for reports and debugging)."""
    rows = []
    for p in projections(workload):
        row: dict[str, Any] = asdict(p)
        row.update(projection_counts(p, params).to_dict())
        rows.append(row)
    return rows
