"""Output paths of the CLI, checked before any work: each must be writable
(:func:`privtuner.io.unwritable_reason`) and no two output flags may name the same path."""

from __future__ import annotations

from pathlib import Path


def check_output_paths(*outputs: tuple[str, str | None, bool]) -> None:
    """Refuse the first output that cannot be written, or that names the same path as an
    earlier one, with one line ``<flag> <path>: <why>``.

    ``outputs``: ``(flag, path, folder)`` triples; ``path`` None (flag not given) is skipped;
    ``folder``: the path is a folder of files, not a file.
    """
    from privtuner.errors import PrivtunerError
    from privtuner.io import unwritable_reason

    seen: dict[Path, str] = {}
    for flag, path, folder in outputs:
        if not path:
            continue
        reason = unwritable_reason(path, folder=folder)
        same = seen.get(Path(path).resolve())
        if reason is None and same is not None:
            reason = f"same path as {same}; give each output its own path"
        if reason:
            raise PrivtunerError(f"{flag} {path}: {reason}")
        seen[Path(path).resolve()] = flag
