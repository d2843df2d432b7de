"""privtuner.io: atomic writes (all or nothing) and float-exact CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from privtuner.io import atomic_path, atomic_write_text, csv_cell, csv_text, write_csv


class _Boom(Exception):
    pass


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "a.txt"
    atomic_write_text(p, "one\n")
    atomic_write_text(p, "two\n")
    assert p.read_text() == "two\n"
    assert [q.name for q in p.parent.iterdir()] == ["a.txt"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(_Boom), atomic_path(p) as tmp:
        tmp.write_text("half a")
        raise _Boom
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["a.txt"]


def test_csv_floats_round_trip_exactly(tmp_path: Path) -> None:
    values = [0.1 + 0.2, 1e-300, 2.0**-1074, 123456789.123456789, np.float64(1 / 3)]
    assert csv_cell(None) == "" and csv_cell(3) == "3" and csv_cell("x") == "x"
    assert csv_cell(np.float64(0.1)) == "0.1"
    rows = [{"i": i, "v": v, "note": None if i else "first"} for i, v in enumerate(values)]
    path = write_csv(rows, tmp_path / "t.csv")
    with path.open(newline="") as fh:
        back = list(csv.DictReader(fh))
    assert [float(r["v"]) for r in back] == [float(v) for v in values]
    assert [r["note"] for r in back] == ["first", "", "", "", ""]


def test_csv_columns_first_seen_and_missing_cells() -> None:
    text = csv_text([{"a": 1}, {"b": 2.5, "a": 3}])
    assert text == "a,b\n1,\n3,2.5\n"
    assert csv_text([]) == ""
    assert csv_text([{"a": 1}], columns=["b", "a"]) == "b,a\n,1\n"
