"""SST-2 files read by position, and deterministic batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from privtuner.accuracy import sst2
from privtuner.errors import ScenarioError


def test_reads_by_position_whatever_the_header_names(tmp_path: Path) -> None:
    a = tmp_path / "a.tsv"
    a.write_text("label\tsentence\n0\tdull , boring\n1\ta fine film\t\n")
    b = tmp_path / "b.tsv"
    b.write_text("label\tcontent\n1\ta fine film\n\n0\tbad\n")
    c = tmp_path / "c.tsv"
    c.write_text("1\tno header here\n0\tnone\n")
    assert sst2.read_tsv(a).labels == (0, 1)
    assert sst2.read_tsv(a).sentences == ("dull , boring", "a fine film")
    assert sst2.read_tsv(b).sentences == ("a fine film", "bad")
    assert sst2.read_tsv(c).labels == (1, 0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "label\tsentence\n2\tbad label\n",
            r"line 2: expected 'label<TAB>sentence' .*\(got '2\\x09bad label'\)",
        ),
        ("label\tsentence\n1 no tab\n", r"line 2: .*got '1 no tab'"),
        ("label\tsentence\n0\t  \n", r"line 2: "),
        ("label\tsentence\n", r"no labelled example"),
    ],
)
def test_bad_rows_are_named_by_file_and_line(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "x.tsv"
    p.write_text(text)
    with pytest.raises(ScenarioError, match=match) as info:
        sst2.read_tsv(p)
    assert info.value.lines()[0].startswith(str(p))


def test_load_names_missing_files(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("0\tx\n")
    with pytest.raises(ScenarioError, match=r"--data: missing dev.tsv"):
        sst2.load_sst2(tmp_path)
    with pytest.raises(ScenarioError, match=r"--data: not a folder"):
        sst2.load_sst2(tmp_path / "nope")


def test_batches_are_a_seeded_permutation_per_epoch() -> None:
    b0 = list(sst2.epoch_batches(10, 4, seed=3, epoch=0))
    assert [len(b) for b in b0] == [4, 4, 2]
    assert sorted(np.concatenate(b0).tolist()) == list(range(10))
    again = list(sst2.epoch_batches(10, 4, seed=3, epoch=0))
    assert all(np.array_equal(x, y) for x, y in zip(b0, again, strict=True))
    other = np.concatenate(list(sst2.epoch_batches(10, 4, seed=3, epoch=1)))
    assert not np.array_equal(np.concatenate(b0), other)


def test_length_grouped_batches_pad_less_and_keep_every_example() -> None:
    """Same examples as the plain permutation, each mega-batch (50 batches) in decreasing
    length, and far less padding than random batches on a skewed length distribution."""
    lengths = np.random.default_rng(0).geometric(0.08, size=1000) + 2
    plain = list(sst2.epoch_batches(1000, 8, seed=1, epoch=0))
    grouped = list(sst2.epoch_batches(1000, 8, seed=1, epoch=0, lengths=lengths.tolist()))
    assert sorted(np.concatenate(grouped).tolist()) == list(range(1000))
    assert [len(b) for b in grouped] == [len(b) for b in plain]
    # mega-batch i holds the same examples as positions 400 i .. 400 i + 399 of the permutation
    flat_p, flat_g = np.concatenate(plain), np.concatenate(grouped)
    for i in range(0, 1000, 400):
        assert set(flat_g[i : i + 400]) == set(flat_p[i : i + 400])
        assert np.all(np.diff(lengths[flat_g[i : i + 400]]) <= 0)

    def padded(batches: list[np.ndarray]) -> int:
        return sum(len(b) * int(lengths[b].max()) for b in batches)

    assert padded(grouped) < 0.7 * padded(plain)
    again = list(sst2.epoch_batches(1000, 8, seed=1, epoch=0, lengths=lengths.tolist()))
    assert all(np.array_equal(x, y) for x, y in zip(grouped, again, strict=True))
    with pytest.raises(ValueError, match="lengths: 3 values for 1000 examples"):
        list(sst2.epoch_batches(1000, 8, seed=1, epoch=0, lengths=[1, 2, 3]))


def test_subset_is_seeded_and_keeps_file_order() -> None:
    ex = sst2.Examples(tuple(f"s{i}" for i in range(20)), tuple(i % 2 for i in range(20)), "m")
    a, b = ex.subset(5, seed=1), ex.subset(5, seed=1)
    assert a == b and len(a) == 5
    assert list(a.sentences) == sorted(a.sentences, key=lambda s: int(s[1:]))
    assert ex.subset(None, 0) is ex and ex.subset(50, 0) is ex


def test_split_off_holds_out_a_seeded_disjoint_part_in_file_order() -> None:
    ex = sst2.Examples(tuple(f"s{i}" for i in range(20)), tuple(i % 2 for i in range(20)), "m")
    rest, held = ex.split_off(6, [3, 5])
    assert len(held) == 6 and len(rest) == 14
    assert sorted(rest.sentences + held.sentences, key=lambda s: int(s[1:])) == list(ex.sentences)
    for part in (rest, held):
        assert list(part.sentences) == sorted(part.sentences, key=lambda s: int(s[1:]))
        pairs = zip(part.sentences, part.labels, strict=True)
        assert all(lab == int(s[1:]) % 2 for s, lab in pairs)
    assert ex.split_off(6, [3, 5]) == (rest, held)
    assert ex.split_off(6, [4, 5])[1] != held


def test_collate_pads_to_the_longest() -> None:
    pytest.importorskip("torch")
    ids, mask = sst2.collate([[2, 5, 3], [2, 3]], pad_id=0)
    assert ids.tolist() == [[2, 5, 3], [2, 3, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
