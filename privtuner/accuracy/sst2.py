"""SST-2 (GLUE; Socher et al., "Recursive Deep Models for Semantic Compositionality Over a
Sentiment Treebank", EMNLP 2013) from a local folder, and deterministic batches.

The folder holds ``train.tsv`` and ``dev.tsv``, one example per line, ``label<TAB>sentence``,
read *by position* (the GLUE files name the second column differently: ``sentence`` in train,
``content`` in some dev copies). A first line whose label is not 0/1 is a header. Never
downloads anything.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from privtuner.errors import ScenarioError, short

#: The two files of a data folder.
SPLITS: tuple[str, ...] = ("train", "dev")
#: Labels of SST-2 (0 negative, 1 positive).
LABELS: tuple[str, ...] = ("0", "1")


@dataclass(frozen=True)
class Examples:
    """Sentences and their labels (0/1), in file order."""

    sentences: tuple[str, ...]
    labels: tuple[int, ...]
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int | None, seed: int) -> Examples:
        """``n`` examples drawn without replacement (seeded), in file order; all if ``n`` is
        None or not smaller than the set."""
        if n is None or n >= len(self):
            return self
        return self.split_off(n, seed)[1]

    def split_off(self, n: int, seed: Any) -> tuple[Examples, Examples]:
        """``(rest, held)``: ``n`` examples drawn without replacement (numpy
        ``Generator(seed)``) held out, both parts in file order."""
        held = np.zeros(len(self), dtype=bool)
        held[np.random.default_rng(seed).permutation(len(self))[:n]] = True
        return self._take(np.flatnonzero(~held)), self._take(np.flatnonzero(held))

    def _take(self, idx: np.ndarray) -> Examples:
        return Examples(
            tuple(self.sentences[i] for i in idx), tuple(self.labels[i] for i in idx), self.source
        )


def read_tsv(path: str | Path) -> Examples:
    """Examples of one ``label<TAB>sentence`` file (header line allowed, empty lines skipped).

    Raises :class:`ScenarioError` naming the file and line of the first bad row.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([f"cannot read the SST-2 file ({exc})"], source=str(p)) from exc
    sentences: list[str] = []
    labels: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        label, tab, sentence = line.partition("\t")
        label = label.strip()
        if lineno == 1 and label not in LABELS:
            continue  # header
        if not tab or label not in LABELS or not sentence.strip():
            raise ScenarioError(
                [
                    f"line {lineno}: expected 'label<TAB>sentence' with label 0 or 1 "
                    f"(got '{short(line)}')"
                ],
                source=str(p),
            )
        labels.append(int(label))
        sentences.append(sentence.strip())
    if not labels:
        raise ScenarioError(["no labelled example (label<TAB>sentence lines)"], source=str(p))
    return Examples(tuple(sentences), tuple(labels), str(p))


def load_sst2(data_dir: str | Path) -> dict[str, Examples]:
    """``{"train": ..., "dev": ...}`` from ``data_dir/train.tsv`` and ``data_dir/dev.tsv``."""
    d = Path(data_dir)
    if not d.is_dir():
        raise ScenarioError(
            ["--data: not a folder; give the folder holding train.tsv and dev.tsv"], str(d)
        )
    missing = [f"{s}.tsv" for s in SPLITS if not (d / f"{s}.tsv").is_file()]
    if missing:
        raise ScenarioError(
            [f"--data: missing {', '.join(missing)} (label<TAB>sentence files)"], str(d)
        )
    return {s: read_tsv(d / f"{s}.tsv") for s in SPLITS}


def tokenize(tokenizer: Any, sentences: Sequence[str], max_len: int) -> list[list[int]]:
    """WordPiece ids of each sentence, ``[CLS] ... [SEP]``, truncated to ``max_len`` tokens."""
    if max_len < 2:
        raise ScenarioError([f"max_len: must be >= 2 ([CLS] and [SEP]) (got {max_len})"])
    enc = tokenizer(list(sentences), truncation=True, max_length=max_len)
    return [list(ids) for ids in enc["input_ids"]]


def collate(ids: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[Any, Any]:
    """``(input_ids [B, S], attention_mask [B, S])`` padded to the longest sequence."""
    import torch

    s = max(len(x) for x in ids)
    out = torch.full((len(ids), s), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), s), dtype=torch.long)
    for i, x in enumerate(ids):
        out[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return out, mask


#: Batches per mega-batch of length-grouped batching (HF ``LengthGroupedSampler``'s 50).
MEGABATCH_BATCHES = 50


def epoch_batches(
    n: int,
    batch_size: int,
    seed: int,
    epoch: int,
    lengths: Sequence[int] | None = None,
) -> Iterator[np.ndarray]:
    """Indices of the batches of one epoch: a permutation drawn from ``Generator([seed,
    epoch])`` cut into ``batch_size`` pieces (the last one may be shorter).

    With ``lengths`` (tokens per example), length-grouped batches as transformers'
    ``group_by_length`` (``LengthGroupedSampler``): the permutation is cut into mega-batches of
    :data:`MEGABATCH_BATCHES` batches, each sorted by decreasing length (stable) before it is
    cut, so a batch holds sentences of similar length and pads little. Same examples per
    epoch, same seed, same batches.
    """
    if batch_size < 1:
        raise ScenarioError([f"batch_size: must be >= 1 (got {batch_size})"])
    order = np.random.default_rng([seed, epoch]).permutation(n)
    if lengths is not None:
        if len(lengths) != n:
            raise ValueError(f"lengths: {len(lengths)} values for {n} examples")
        lens = np.asarray(lengths)
        mega = MEGABATCH_BATCHES * batch_size
        order = np.concatenate(
            [
                part[np.argsort(-lens[part], kind="stable")]
                for part in (order[i : i + mega] for i in range(0, n, mega))
            ]
        )
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]
