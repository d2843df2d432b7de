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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from privtuner.errors import PrivtunerError
from privtuner.io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    csv_columns,
    csv_text,
    unwritable_reason,
)
from privtuner.rows import COLUMNS, coerce, normalize_row

#: Output formats by file suffix.
OUTPUT_SUFFIXES = (".parquet", ".csv")

#: What the ``pyarrow`` of the ``batch`` extra is needed for when writing ``--out x.parquet``.
PARQUET_OUTPUT = "Parquet output (or use --out x.csv)"

#: Columns every privtuner results table has; an existing ``--out`` without them is foreign.
IDENTITY_COLUMNS = ("key", "scenario", "seed", "method", "status")


def check_output(out: str | Path) -> Path:
    """Check, before any work, that ``out`` is a table path that can be written (known
    suffix; not a folder; its folder writable; its parts folder not a file; ``pyarrow``
    installed for Parquet)."""
    out = Path(out)
    reason = unwritable_reason(out)
    parts = parts_dir_for(out)
    if reason is None and parts.exists() and not parts.is_dir():
        reason = f"{parts} (its parts folder) is not a folder"
    if reason is None and out.suffix.lower() not in OUTPUT_SUFFIXES:
        reason = f"unknown table format {out.suffix or '(none)'!r}; use .parquet or .csv"
    if reason is not None:
        raise PrivtunerError(f"--out {out}: {reason}")
    if out.suffix.lower() == ".parquet":
        from privtuner.errors import require

        require("pyarrow", extra="batch", purpose=PARQUET_OUTPUT)
    return out


def read_own_table(out: str | Path) -> list[dict[str, Any]]:
    """The rows of an existing output ``out`` that a batch extends; none if it does not exist.

    A file that is not a privtuner results table (unreadable in its format, or without the
    :data:`IDENTITY_COLUMNS`) raises :class:`PrivtunerError`: a batch never overwrites it.
    """
    out = Path(out)
    if not out.exists():
        return []
    refuse = f"--out {out}: not a privtuner results table ({{}}); refusing to overwrite it"
    try:
        columns = table_columns(out)
    except PrivtunerError:
        raise
    except Exception:  # csv.Error, pyarrow's ArrowInvalid, UnicodeDecodeError ...
        raise PrivtunerError(refuse.format(f"cannot read it as {out.suffix[1:]}")) from None
    missing = [c for c in IDENTITY_COLUMNS if c not in columns]
    if missing:
        raise PrivtunerError(refuse.format("no column(s) " + ", ".join(map(repr, missing))))
    return [normalize_row(r) for r in read_table(out)]


def table_columns(path: Path) -> list[str]:
    """Column names of a table file: the CSV header (``[]`` for an empty file) or the
    Parquet schema."""
    if path.suffix.lower() == ".csv":
        csv.field_size_limit(2**31 - 1)
        with path.open(newline="", encoding="utf-8") as fh:
            return next(csv.reader(fh), [])
    from privtuner.errors import require

    require("pyarrow", extra="batch", purpose="reading Parquet results")
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def lock_path_for(out: str | Path) -> Path:
    """The lock file of output ``out``: ``.<name>.lock`` next to it."""
    p = Path(out)
    return p.with_name(f".{p.name}.lock")


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on output ``out`` (a ``flock`` on :func:`lock_path_for`) while
    a batch reads, extends and rewrites it; a second writer is refused at once with a
    :class:`PrivtunerError` naming the holder's process id.

    The kernel releases a ``flock`` when its holder dies (even by SIGKILL), so a stale lock
    file never blocks. The file is removed on release, while still locked; a writer that
    locked a file just removed that way sees a different inode at the path and tries again.
    """
    import fcntl

    lock = lock_path_for(out)
    lock.parent.mkdir(parents=True, exist_ok=True)  # a missing folder of --out is created
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise PrivtunerError(
                f"--out {out}: another batch (pid {holder}) is writing this table; wait for "
                "it to finish or choose another --out"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield lock
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


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

    pa: Any = require("pyarrow", extra="batch", purpose=PARQUET_OUTPUT)
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
