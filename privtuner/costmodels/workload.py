"""Homomorphic operation counts of one fine-tuning step per packing (spec section 1).

Projections (frozen dense layers the server evaluates on ciphertexts), in forward order:
per layer ``query``, ``key``, ``value`` (H x H, all three read the layer input),
``attention_output`` (H x H), ``ffn_in`` (H x FFN), ``ffn_out`` (FFN x H); then the
``pooler`` (H x H, once, if ``include_pooler``), which reads only the [CLS] token of each
sequence, so it sees ``batch_size`` tokens, not T.

A projection with ``d_in`` inputs and ``d_out`` outputs over ``t`` tokens, forward, at
``N/2`` slots:

* ``interleaved`` (default; ``fhe_profiling.interleaved``): ``k`` features per ciphertext,
  two tokens per slot (complex), blocks of ``N/k`` tokens (:func:`interleaved_layout`):
  ``blocks * ceil(d_in/k)`` encryptions and ciphertexts up; per block
  ``ceil(d_in/k) * ceil(d_out/k) * k`` ciphertext x (periodic) plaintext multiply-accumulates
  and ``ceil(d_out/k) * k`` partial ciphertexts (one rescale each, down, decrypted);
* ``column`` (the PrivTuner-style baseline): ciphertext j of a block holds feature j of up to
  N/2 tokens, ``blocks = ceil(t / (N/2))``: ``blocks * d_in`` encryptions, ciphertexts up;
  ``blocks * d_in * d_out`` ciphertext x plaintext-scalar multiply-accumulates;
  ``blocks * d_out`` rescales (one per output ciphertext), ciphertexts down, decryptions.

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

#: The protocol's packings (``fhe.packing``), default first; see the module docstring.
PACKINGS: tuple[str, ...] = ("interleaved", "column")
DEFAULT_PACKING = PACKINGS[0]


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


def _pow2_floor(x: int) -> int:
    return 1 << (max(int(x), 1).bit_length() - 1)


def interleaved_layout(tokens: int, features: int, slots: int) -> tuple[int, int]:
    """``(k, blocks)`` of the interleaved packing for ``[tokens, features]`` at ``slots = N/2``
    (module docstring; the rule of ``fhe_profiling.interleaved.choose_layout``, which uses
    this function): the most features per ciphertext, a power of two ``<= features``, such
    that ``ceil(tokens / 2)`` slot rows of ``k`` slots fit; ``k = 1`` and blocks of N tokens
    beyond N tokens."""
    if tokens < 1 or features < 1 or slots < 1:
        raise ParameterError(
            f"interleaved layout needs tokens, features and slots >= 1 (got {tokens}, "
            f"{features}, {slots})"
        )
    rows_needed = math.ceil(tokens / 2)
    k = 1 if rows_needed >= slots else min(_pow2_floor(slots // rows_needed), _pow2_floor(features))
    return k, math.ceil(tokens / (2 * (slots // k)))


def _direction_counts(tokens: int, d_in: int, d_out: int, slots: int, packing: str) -> OpCounts:
    """Counts of one product ``[tokens, d_in] x [d_in, d_out]`` in ``packing``."""
    if packing == "column":
        blocks = math.ceil(tokens / slots)
        up, down, macs = blocks * d_in, blocks * d_out, blocks * d_in * d_out
    elif packing == "interleaved":
        k, blocks = interleaved_layout(tokens, d_in, slots)
        groups_in, groups_out = math.ceil(d_in / k), math.ceil(d_out / k)
        up, down = blocks * groups_in, blocks * groups_out * k
        macs = blocks * groups_in * groups_out * k
    else:
        raise ParameterError(f"packing: unknown packing {packing!r}; valid: {', '.join(PACKINGS)}")
    return OpCounts(
        encryptions=up,
        decryptions=down,
        server_macs=macs,
        server_rescales=down,
        ciphertexts_up=up,
        ciphertexts_down=down,
    )


def projection_counts(
    proj: Projection, params: CkksParams, packing: str = DEFAULT_PACKING
) -> OpCounts:
    """Forward (+ backward if ``proj.needs_backward``) counts of one projection (module rule)."""
    fwd = _direction_counts(proj.tokens, proj.d_in, proj.d_out, params.slots, packing)
    if not proj.needs_backward:
        return fwd
    return fwd + _direction_counts(proj.tokens, proj.d_out, proj.d_in, params.slots, packing)


def op_counts_per_step(
    workload: WorkloadSpec, params: CkksParams, packing: str = DEFAULT_PACKING
) -> OpCounts:
    """Total counts of one fine-tuning step (sum over :func:`projections`)."""
    if params.slots < 1:
        raise ParameterError(f"poly_modulus_degree must be >= 2 (got {params.poly_modulus_degree})")
    total = ZERO_COUNTS
    for p in projections(workload):
        total = total + projection_counts(p, params, packing)
    return total


def op_counts_per_round(
    workload: WorkloadSpec, params: CkksParams, packing: str = DEFAULT_PACKING
) -> OpCounts:
    """Counts of one round: per-step counts x ``steps_per_round``."""
    return op_counts_per_step(workload, params, packing).scaled(workload.steps_per_round)


def describe(
    workload: WorkloadSpec, params: CkksParams, packing: str = DEFAULT_PACKING
) -> list[dict[str, Any]]:
    """One row per projection with its counts (for reports and debugging)."""
    rows = []
    for p in projections(workload):
        row: dict[str, Any] = asdict(p)
        row.update(projection_counts(p, params, packing).to_dict())
        rows.append(row)
    return rows
