"""File helpers shared by the batch, the CLI and the studies: atomic writes and float-exact CSV.

* :func:`atomic_path` / :func:`atomic_write_bytes` / :func:`atomic_write_text`: a file is
  written under a temporary name in its own folder, flushed to disk (``fsync``) and renamed
  over the target with :func:`os.replace` (atomic on POSIX), so a reader (or a rerun after a
  kill) sees either the old file or the complete new one, never a half-written one.
* :func:`unwritable_reason`: before any work, why an output path cannot be written (a folder
  where a file is wanted, a read-only folder, ...), or ``None``.
* :func:`csv_cell` / :func:`csv_text` / :func:`write_csv`: CSV whose floats read back to the
  same bits (``repr``: the shortest round-trip form), missing values as empty cells.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; on a normal exit it is fsynced and
    renamed over ``path``, on any exception (or a kill) it is removed and ``path`` is kept.

    The folder of ``path`` is created if needed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def unwritable_reason(path: str | Path, *, folder: bool = False) -> str | None:
    """Why output ``path`` cannot be written, as a short phrase, or ``None`` when it can.

    ``path`` is a file (a folder of files when ``folder``) that must not be the other kind,
    in a folder (or below the nearest existing folder: missing folders are created when
    writing) where a file can be created; that is tried with a probe file, so read-only
    mounts and permissions are seen as they are (also for root).
    """
    p = Path(path)
    if p.exists() or p.is_symlink():
        if folder and not p.is_dir():
            return "is a file, not a folder"
        if not folder and p.is_dir():
            return "is a folder; give a file path"
        if not folder and not p.is_file():
            return "is not a regular file"
    where = p if folder else p.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        return f"{where} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".privtuner-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot write in folder {where} ({exc.strerror or exc})"
    return None


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def csv_cell(v: Any) -> str:
    """One CSV cell: empty for None, the shortest round-trip ``repr`` for a float (Python or
    numpy), ``str`` otherwise."""
    if v is None:
        return ""
    if isinstance(v, float | np.floating):
        return repr(float(v))
    return str(v)


def csv_columns(rows: Sequence[Mapping[str, Any]], first: Sequence[str] = ()) -> list[str]:
    """``first``, then every other key of ``rows`` in first-seen order."""
    columns = list(first)
    seen = set(columns)
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                columns.append(k)
    return columns


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV text of dict rows (header first; ``columns`` default: :func:`csv_columns`); a key
    missing from a row is an empty cell. No rows and no columns: empty text."""
    cols = list(columns) if columns is not None else csv_columns(rows)
    if not cols:
        return ""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for r in rows:
        writer.writerow([csv_cell(r.get(c)) for c in cols])
    return buf.getvalue()


def write_csv(
    rows: Sequence[Mapping[str, Any]], path: str | Path, columns: Sequence[str] | None = None
) -> Path:
    """Write :func:`csv_text` of ``rows`` to ``path`` atomically; returns the path."""
    return atomic_write_text(path, csv_text(rows, columns))
