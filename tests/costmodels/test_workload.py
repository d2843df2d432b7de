"""Op counts per packing against hand-computed two-layer examples (column) and the layout rule."""

from __future__ import annotations

import pytest

from privtuner.costmodels.types import CkksParams
from privtuner.costmodels.workload import (
    OpCounts,
    op_counts_per_round,
    op_counts_per_step,
    projections,
)
from privtuner.errors import ParameterError
from privtuner.scenario.schema import WorkloadSpec

N4096 = CkksParams(4096, (40, 20, 40), 20)  # 2048 slots


def small(**kw: object) -> WorkloadSpec:
    base: dict[str, object] = dict(
        num_layers=2,
        hidden_size=8,
        intermediate_size=16,
        num_heads=2,
        batch_size=2,
        sequence_length_tokens=3,
        lora_targets=("query", "value"),
    )
    base.update(kw)
    return WorkloadSpec(**base)  # type: ignore[arg-type]


def test_two_layer_lora_q_v_one_block() -> None:
    # H=8, FFN=16, T=6 tokens -> one block per projection (N/2 = 2048 slots); pooler sees 2.
    # Forward, per layer: d_in = 8,8,8,8,8,16 (sum 56); d_out = 8,8,8,8,16,8 (sum 56);
    #   d_in*d_out = 64*4 + 128 + 128 = 512.  Two layers + pooler (8x8): 120 up, 120 down,
    #   1088 MACs.
    # Backward (layer-0 Q, K, V excluded: they read the embedding output):
    #   layer 0 O, FFN-in, FFN-out: up 8+16+8 = 32, down 8+8+16 = 32, MACs 64+128+128 = 320;
    #   layer 1 all six: up 56, down 56, MACs 512; pooler: 8, 8, 64.
    #   Total backward: 96 up, 96 down, 896 MACs.
    c = op_counts_per_step(small(), N4096, "column")
    assert c == OpCounts(
        encryptions=216,
        decryptions=216,
        server_macs=1984,
        server_rescales=216,
        ciphertexts_up=216,
        ciphertexts_down=216,
    )


def test_two_layer_two_blocks_and_steps_per_round() -> None:
    # T = 5 x 500 = 2500 tokens -> ceil(2500 / 2048) = 2 blocks for the layers; the pooler
    # sees 5 tokens -> 1 block.  Layers (both): 2 blocks x (forward 112 up / 1024 MACs +
    # backward 88 up / 832 MACs); pooler 1 block x (8 + 8 up, 64 + 64 MACs).
    wl = small(batch_size=5, sequence_length_tokens=500, steps_per_round=3)
    c = op_counts_per_step(wl, N4096, "column")
    layers_up = 2 * (112 + 88)  # blocks x (forward d_in sums + backward d_out sums)
    layers_mac = 2 * (1024 + 832)
    assert c.encryptions == layers_up + 8 + 8
    assert c.server_macs == layers_mac + 64 + 64
    assert c.decryptions == c.encryptions and c.server_rescales == c.decryptions
    # N = 8192 holds 4096 tokens per ciphertext: one block again, the counts of the first test
    c8 = op_counts_per_step(wl, CkksParams(8192, (40, 20, 40), 20), "column")
    assert c8.encryptions == 216
    assert op_counts_per_round(wl, N4096, "column") == c.scaled(3)
    assert op_counts_per_round(wl, N4096, "column").server_macs == 3 * c.server_macs


def test_backward_rule_follows_first_adapter() -> None:
    # LoRA only on layer-0 FFN-out: nothing in layer 0 needs an input gradient; layer 1 and
    # the pooler do.  Backward = layer 1 (56 up, 512 MACs) + pooler (8, 64).
    c = op_counts_per_step(small(lora_targets=("ffn_out",)), N4096, "column")
    assert c.encryptions == 120 + 56 + 8
    assert c.server_macs == 1088 + 512 + 64
    flags = {p.name: p.needs_backward for p in projections(small(lora_targets=("ffn_out",)))}
    assert not any(v for k, v in flags.items() if k.startswith("layer0"))
    assert all(v for k, v in flags.items() if k.startswith("layer1")) and flags["pooler"]


def test_no_pooler_and_names() -> None:
    ps = projections(small(include_pooler=False))
    assert [p.name for p in ps][:6] == [
        "layer0.query",
        "layer0.key",
        "layer0.value",
        "layer0.attention_output",
        "layer0.ffn_in",
        "layer0.ffn_out",
    ]
    assert len(ps) == 12
    c = op_counts_per_step(small(include_pooler=False), N4096, "column")
    assert c.encryptions == 216 - 16


@pytest.mark.parametrize("n", [4096, 8192, 16384, 32768])
def test_bert_tiny_default_counts(n: int) -> None:
    # Default workload: BERT-Tiny, T = 8 x 64 = 512 tokens -> 1 block at every N.
    wl = WorkloadSpec()
    c = op_counts_per_step(wl, CkksParams(n, (40, 20, 40), 20), "column")
    fwd_up = 2 * (128 * 5 + 512) + 128
    bwd_up = (128 + 512 + 128) + (128 * 4 + 512 + 128) + 128
    assert c.encryptions == fwd_up + bwd_up
    fwd_mac = 2 * (4 * 128 * 128 + 2 * 128 * 512) + 128 * 128
    bwd_mac = (128 * 128 + 2 * 128 * 512) + (4 * 128 * 128 + 2 * 128 * 512) + 128 * 128
    assert c.server_macs == fwd_mac + bwd_mac


@pytest.mark.parametrize(("n", "k"), [(4096, 8), (8192, 16), (16384, 32), (32768, 64)])
def test_bert_tiny_interleaved_counts(n: int, k: int) -> None:
    """Interleaved packing, T = 512: k = N / 512 features per ciphertext (two tokens per slot,
    256 rows of k slots), the pooler's 8 tokens take k = 128 (all its features, 1 ciphertext).
    Every count is the column one with d_in -> d_in / k up, and outputs unchanged."""
    wl = WorkloadSpec()
    c = op_counts_per_step(wl, CkksParams(n, (40, 20, 40), 20), "interleaved")
    fwd_up = 2 * (128 * 5 + 512) // k + 1
    bwd_up = ((128 + 512 + 128) + (128 * 4 + 512 + 128)) // k + 1
    assert c.encryptions == c.ciphertexts_up == fwd_up + bwd_up
    col = op_counts_per_step(wl, CkksParams(n, (40, 20, 40), 20), "column")
    assert c.ciphertexts_down == c.decryptions == c.server_rescales == col.ciphertexts_down
    # k partials per group of k outputs, each summing d_in / k products: d_in d_out / k MACs;
    # the pooler (forward and backward, 128 x 128) at its own k = 128
    pooler = 2 * 128 * 128
    assert c.server_macs == (col.server_macs - pooler) // k + pooler // 128
    with pytest.raises(ParameterError, match="unknown packing"):
        op_counts_per_step(wl, CkksParams(n, (40, 20, 40), 20), "rows")
