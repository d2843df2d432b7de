"""Argument types of the CLI: a bad value is refused while the arguments are parsed, with one
line naming the option, the value and what is allowed (see :class:`privtuner.cli.Parser`)."""

from __future__ import annotations

import argparse
from typing import Any, TypeVar

T = TypeVar("T", int, float)

#: Largest seed (numpy's generators take seeds in [0, 2**63 - 1], as the scenario schema).
MAX_SEED = 2**63 - 1


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer (got {text[:40]!r})") from None


def _bounded(value: T, ok: bool, allowed: str) -> T:
    """``value`` when ``ok``, else the parse error ``must be <allowed> (got <value>)``."""
    if not ok:
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        raise argparse.ArgumentTypeError(f"must be {allowed} (got {shown})")
    return value


def seed(text: str) -> int:
    """A seed: an integer in [0, 2**63 - 1]."""
    value = _int(text)
    return _bounded(value, 0 <= value <= MAX_SEED, "in [0, 2**63 - 1]")


def positive_int(text: str) -> int:
    """An integer >= 1 (jobs, chunk size)."""
    value = _int(text)
    return _bounded(value, value >= 1, ">= 1")


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text[:40]!r})") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number (got {text[:40]!r})")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (a measured time per token)."""
    value = _float(text)
    return _bounded(value, value >= 0, ">= 0")


def positive_float(text: str) -> float:
    """A finite number > 0 (a frequency)."""
    value = _float(text)
    return _bounded(value, value > 0, "> 0")


def time_limit_s(text: str) -> float:
    """A solver time limit [s]: in (0, 1e6] (the scenario's ``solver.time_limit_s`` caps it at
    1e6; on the command line a limit below its 1e-3 floor is allowed, to stop at once)."""
    value = _float(text)
    return _bounded(value, 0 < value <= 1e6, "in (0, 1e6] seconds")


def rel_tol(text: str) -> float:
    """A relative gap tolerance: in [1e-12, 1), the scenario's ``solver.rel_tol`` range."""
    value = _float(text)
    return _bounded(value, 1e-12 <= value < 1, "in [1e-12, 1)")


def _no_repeat(items: list[Any], what: str, text: str) -> None:
    """Refuse a list that names an item twice (a batch would make the same row twice)."""
    seen: set[Any] = set()
    for item in items:
        if item in seen:
            raise argparse.ArgumentTypeError(
                f"repeats {what} {item if isinstance(item, int) else repr(item[:40])}; give each "
                f"{what} once (got {text[:40]!r})"
            )
        seen.add(item)


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (a row count, where 0 shows none)."""
    value = _int(text)
    return _bounded(value, value >= 0, ">= 0")


def csv_list(text: str) -> list[str]:
    """Comma-separated names (surrounding blanks stripped); an empty list or an empty item
    (``a,,b``, a trailing comma) is refused rather than silently dropped, and so is a
    repeated name."""
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated non-empty names (got {text[:40]!r})"
        )
    _no_repeat(items, "name", text)
    return items


def seed_list(text: str) -> list[int]:
    """Comma-separated seeds, each in [0, 2**63 - 1]; no empty item, no seed twice."""
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated seeds, none empty (got {text[:40]!r})"
        )
    seeds = [seed(t) for t in items]
    _no_repeat(seeds, "seed", text)
    return seeds
