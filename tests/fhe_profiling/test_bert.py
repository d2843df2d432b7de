"""BERT-Tiny + LoRA device model: config, HF-weight equivalence, LoRA, tokenizer, training."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from privtuner.errors import ScenarioError  # noqa: E402
from privtuner.fhe_profiling import bert  # noqa: E402

pytestmark = pytest.mark.fhe

TINY = bert.BertConfig(
    vocab_size=40,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
    max_position_embeddings=32,
)


def test_default_config_is_bert_tiny() -> None:
    cfg = bert.load_config()
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (2, 128, 2)
    assert (cfg.intermediate_size, cfg.vocab_size) == (512, 30522)
    names = cfg.projection_names()
    assert len(names) == 13 and names[-1] == "pooler"
    assert cfg.projection_shape("layer1.ffn_in") == (128, 512)
    assert cfg.projection_shape("layer0.ffn_out") == (512, 128)


def test_shared_config_matches_builtin(shared_data: Path) -> None:
    path = shared_data / "bert-uncased" / "bert_tiny_config.json"
    if not path.is_file():
        pytest.skip("bert_tiny_config.json not in the shared data")
    assert bert.load_config(path) == bert.BertConfig()


def test_bad_config_lists_every_problem(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"hidden_size": 130, "num_attention_heads": 4, "hidden_act": "relu"}))
    with pytest.raises(ScenarioError) as err:
        bert.load_config(p)
    lines = err.value.lines()
    assert len(lines) == 2
    assert any("hidden_size" in x and "130" in x for x in lines)
    assert any("hidden_act" in x and "relu" in x for x in lines)


def test_bad_lora_config_names_field() -> None:
    with pytest.raises(ScenarioError, match=r"lora\.targets"):
        bert.LoraConfig(targets=("query", "attn"))
    with pytest.raises(ScenarioError, match=r"lora\.rank"):
        bert.LoraConfig(rank=0)


def _hf_model(cfg: bert.BertConfig, seed: int):
    import transformers

    torch.manual_seed(seed)
    hf_cfg = transformers.BertConfig(
        **{k: v for k, v in cfg.to_dict().items()},
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = transformers.BertModel(hf_cfg).double().eval()
    with torch.no_grad():  # non-trivial biases and LayerNorm parameters
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def test_hf_weights_reproduce_hf_bert_model(tmp_path: Path) -> None:
    """Independent truth: transformers' own BertModel on the same saved weights."""
    hf = _hf_model(TINY, seed=3)
    hf.save_pretrained(tmp_path)
    model, weights = bert.load_hf_weights(tmp_path, dtype=torch.float64)
    assert set(weights) == set(TINY.projection_names())
    rng = np.random.default_rng(0)
    ids = torch.from_numpy(rng.integers(5, TINY.vocab_size, size=(3, 7)))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    tt = torch.zeros_like(ids)
    tt[:, 3:] = 1
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=tt)
        seq, pooled = model.encode(ids, mask, tt, bert.PlainProjector(weights, torch.float64))
    valid = mask.bool()
    np.testing.assert_allclose(
        seq[valid].numpy(), ref.last_hidden_state[valid].numpy(), rtol=0, atol=1e-10
    )
    np.testing.assert_allclose(pooled.numpy(), ref.pooler_output.numpy(), rtol=0, atol=1e-10)


def test_mean_pooling_pools_the_attended_tokens_of_hf_bert(tmp_path: Path) -> None:
    """Independent truth: transformers' last hidden states averaged over the attention mask
    (sentence-transformers' mean pooling); no pooler projection is asked for."""
    hf = _hf_model(TINY, seed=4)
    hf.save_pretrained(tmp_path)
    model, weights = bert.load_hf_weights(tmp_path, dtype=torch.float64)
    model.set_pooling("mean")
    ids = torch.from_numpy(np.random.default_rng(1).integers(5, TINY.vocab_size, size=(3, 6)))
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[0, 3:] = 0
    mask[2, 5:] = 0
    asked: list[str] = []
    plain = bert.PlainProjector(weights, torch.float64)

    def projector(name: str, x: torch.Tensor) -> torch.Tensor:
        asked.append(name)
        return plain(name, x)

    with torch.no_grad():
        hs = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        ref = torch.stack([hs[i, mask[i].bool()].mean(0) for i in range(3)])
        _, pooled = model.encode(ids, mask, None, projector)
    np.testing.assert_allclose(pooled.numpy(), ref.numpy(), rtol=0, atol=1e-10)
    assert "pooler" not in asked and len(asked) == 6 * TINY.num_hidden_layers
    with pytest.raises(ScenarioError, match="pooling: one of cls, mean"):
        model.set_pooling("max")


def test_hf_weights_missing_tensor_is_reported(tmp_path: Path) -> None:
    hf = _hf_model(TINY, seed=1)
    sd = {k: v for k, v in hf.state_dict().items() if "pooler" not in k}
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(TINY.to_dict()))
    with pytest.raises(ScenarioError, match=r"pooler\.dense\.weight"):
        bert.load_hf_weights(tmp_path)


def test_lora_zero_b_leaves_base_output_and_counts_parameters() -> None:
    lora = bert.LoraConfig(rank=4, alpha=8.0)
    model, weights = bert.init_model(TINY, lora, seed=0, dtype=torch.float64)
    trainable = model.trainable_named_parameters()
    n_lora = TINY.num_hidden_layers * 2 * (16 * 4 + 4 * 16)
    assert sum(p.numel() for p in trainable.values()) == n_lora + 16 * 2 + 2
    assert all(not p.requires_grad for p in model.frozen_parameters())
    ids = torch.tensor([[2, 7, 9, 3]])
    mask = torch.ones_like(ids)
    proj = bert.PlainProjector(weights, torch.float64)
    base = model(ids, mask, None, proj).detach()
    with torch.no_grad():
        for p in model.lora_b.values():
            p.normal_(0, 1.0, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(model(ids, mask, None, proj), base)
    with torch.no_grad():
        for p in model.lora_a.values():
            p.zero_()
    torch.testing.assert_close(model(ids, mask, None, proj), base, rtol=0, atol=1e-12)


def test_init_is_seeded() -> None:
    m1, w1 = bert.init_model(TINY, seed=5)
    m2, w2 = bert.init_model(TINY, seed=5)
    m3, _ = bert.init_model(TINY, seed=6)
    for k in w1:
        np.testing.assert_array_equal(w1[k][0], w2[k][0])
    sd1, sd2, sd3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    assert not torch.equal(sd1["word_embeddings.weight"], sd3["word_embeddings.weight"])


def test_tokenizer_from_generated_vocab(tmp_path: Path) -> None:
    vocab = bert.write_vocab(tmp_path / "vocab.txt", ["the", "movie", "is", "great", "##s"])
    tok = bert.load_tokenizer(vocab)
    ids, mask = bert.encode_batch(tok, ["The movie is great", "movies"], seq_len=6)
    assert ids.shape == (2, 6)
    # [CLS]=2 the=5 movie=6 is=7 great=8 [SEP]=3 ; [CLS] movie ##s [SEP] [PAD] [PAD]
    assert ids[0].tolist() == [2, 5, 6, 7, 8, 3]
    assert ids[1].tolist() == [2, 6, 9, 3, 0, 0]
    assert mask[1].tolist() == [1, 1, 1, 1, 0, 0]
    with pytest.raises(ScenarioError, match="vocab file"):
        bert.load_tokenizer(tmp_path / "nope.txt")


def test_plain_training_reduces_loss() -> None:
    lora = bert.LoraConfig(rank=4, alpha=8.0)
    model, weights = bert.init_model(TINY, lora, seed=0)
    proj = bert.PlainProjector(weights)
    rng = np.random.default_rng(1)
    ids = torch.from_numpy(rng.integers(5, TINY.vocab_size, size=(8, 6)))
    mask = torch.ones_like(ids)
    labels = torch.from_numpy(rng.integers(0, 2, size=8))
    opt = torch.optim.AdamW(model.trainable_named_parameters().values(), lr=5e-2)
    frozen_before = [p.detach().clone() for p in model.frozen_parameters()]
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(ids, mask, None, proj), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    for a, b in zip(frozen_before, model.frozen_parameters(), strict=True):
        assert torch.equal(a, b)


def test_config_dataclass_roundtrip() -> None:
    d = TINY.to_dict()
    assert bert.BertConfig(**d) == TINY
    assert {f.name for f in dataclasses.fields(bert.BertConfig)} == set(d)
