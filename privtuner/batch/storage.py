"""Batch storage: crash-safe part files and the results table (CSV or Parquet).

* each finished chunk of rows is written at once to ``<out>.parts/`` as a JSON Lines file,
  atomically (:func:`privtuner.io.atomic_write_bytes`), so a part file is either complete or
  absent;
* the table is written atomically too, so a kill while writing it keeps the old table (and
  the parts, from which a rerun rebuilds it).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from privtuner.errors import PrivtunerError
from privtuner.io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    csv_columns,
    csv_text,
)
from privtuner.rows import COLUMNS, coerce, normalize_row

#: Output formats by file suffix.
OUTPUT_SUFFIXES = (".parquet", ".csv")


def parts_dir_for(out: str | Path) -> Path:
    """The folder of part files of output ``out``: ``<out>.parts``."""
    p = Path(out)
    return p.with_name(p.name + ".parts")


def write_part(parts_dir: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write finished rows as one part file (JSON Lines), atomically. Names sort by time."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    name = f"part-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
    data = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows).encode("utf-8")
    return atomic_write_bytes(parts_dir / name, data)


def read_parts(parts_dir: Path) -> list[dict[str, Any]]:
    """Rows of every complete part file, oldest first. Temporary files (a write cut short by a
    kill) are removed; a part that does not parse (should not happen: parts are written
    atomically) is moved aside as ``*.bad`` and its rows are recomputed."""
    if not parts_dir.is_dir():
        return []
    rows: list[dict[str, Any]] = []
    for p in sorted(parts_dir.iterdir()):
        if p.name.endswith(".tmp"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            continue
        if not (p.name.startswith("part-") and p.suffix == ".jsonl"):
            continue
        try:
            text = p.read_text(encoding="utf-8")
            part_rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            if not all(isinstance(r, dict) and "key" in r for r in part_rows):
                raise ValueError("row without key")
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                os.replace(p, p.with_name(p.name + ".bad"))
            continue
        rows.extend(normalize_row(r) for r in part_rows)
    return rows


def write_table(rows: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Write rows to ``out`` (``.parquet`` or ``.csv``) atomically; columns in
    :data:`COLUMNS` order, then any extra columns in first-seen order."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise PrivtunerError(
            f"--out {out}: unknown table format {suffix or '(none)'!r}; use .parquet or .csv"
        )
    columns = csv_columns(rows, first=list(COLUMNS))
    if suffix == ".csv":
        atomic_write_text(out, csv_text(rows, columns))
    else:
        _write_parquet(rows, columns, out)
    return out


def _write_parquet(rows: Sequence[dict[str, Any]], columns: list[str], out: Path) -> None:
    from privtuner.errors import require

    pa: Any = require("pyarrow", extra="batch", purpose="Parquet output (or use --out x.csv)")
    import pyarrow.parquet as pq

    types = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    arrays = []
    fields = []
    for c in columns:
        typ = COLUMNS.get(c, str)
        values = [r.get(c) for r in rows]
        if c not in COLUMNS:
            values = [None if v is None else str(v) for v in values]
        arrays.append(pa.array(values, type=types[typ]))
        fields.append(pa.field(c, types[typ]))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results table (``.parquet`` or ``.csv``), values typed by :data:`COLUMNS`."""
    path = Path(path)
    if not path.is_file():
        raise PrivtunerError(f"{path}: results file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # JSON cells (solver histories, allocations) can exceed csv's 128 KiB default
            csv.field_size_limit(2**31 - 1)
            with path.open(newline="", encoding="utf-8") as fh:
                raw = list(csv.DictReader(fh))
            return [
                {k: (coerce(v, COLUMNS[k]) if k in COLUMNS else v) for k, v in r.items()}
                for r in raw
            ]
        if suffix == ".parquet":
            from privtuner.errors import require

            require("pyarrow", extra="batch", purpose="reading Parquet results")
            import pyarrow.parquet as pq

            return [dict(r) for r in pq.read_table(path).to_pylist()]
    except PrivtunerError:
        raise
    except Exception as exc:  # OSError, csv.Error, ValueError, pyarrow's ArrowInvalid ...
        raise PrivtunerError(f"{path}: cannot read results table: {exc}") from None
    raise PrivtunerError(f"{path}: unknown table format {suffix!r}; use .parquet or .csv")
