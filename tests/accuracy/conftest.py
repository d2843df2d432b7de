"""A tiny SST-2-like folder, BERT config and vocab for the accuracy tests (seconds each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from privtuner.fhe_profiling import bert
from privtuner.fhe_profiling.lora_profile import _FALLBACK_WORDS, generated_corpus

#: A BERT small enough for encrypted steps in CI (H = 16, 2 layers).
TINY_CONFIG = {
    "vocab_size": 64,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
}


def write_tiny(folder: Path, n_train: int = 96, n_dev: int = 32) -> dict[str, Path]:
    """``train.tsv`` (header ``label<TAB>sentence``), ``dev.tsv`` (header ``label<TAB>content``,
    as the GLUE dev copy), ``config.json`` and ``vocab.txt`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed, header in (
        ("train", n_train, 1, "label\tsentence"),
        ("dev", n_dev, 2, "label\tcontent"),
    ):
        sentences, labels = generated_corpus(n, seed)
        rows = [header, *(f"{y}\t{s}" for s, y in zip(sentences, labels, strict=True))]
        (folder / f"{name}.tsv").write_text("\n".join(rows) + "\n")
    words = sorted({w for ws in _FALLBACK_WORDS.values() for w in ws})
    vocab = bert.write_vocab(folder / "vocab.txt", words)
    config = folder / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    return {"data": folder, "config": config, "vocab": vocab}


@pytest.fixture
def tiny(tmp_path: Path) -> dict[str, Path]:
    return write_tiny(tmp_path / "tiny")
