"""One small exception hierarchy. The CLI turns any :class:`PrivtunerError` into one clear line
per problem and exit code 1; anything else is a bug and keeps its traceback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Longest problem line the CLI prints (characters, after escaping); longer ones end in "...".
MAX_LINE_CHARS = 500
#: Longest echo of a user-given key or value inside a message (characters).
MAX_ECHO_CHARS = 80


def _escape_char(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """``text`` as one bounded line: control and line-separator characters escaped
    (``\\n``, ``\\x00``, ``\\u2028``), lone surrogates escaped, cut to ``limit`` characters
    with an ellipsis."""
    out = "".join(
        _escape_char(ch)
        if (ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or ch in "\u2028\u2029")
        or 0xD800 <= ord(ch) <= 0xDFFF
        else ch
        for ch in text
    )
    return out if len(out) <= limit else out[: limit - 3] + "..."


def short(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """A user-given key or value for a message: one line, at most ``limit`` characters."""
    return one_line(text, limit)


class PrivtunerError(Exception):
    """Base class of every error privtuner raises on purpose (bad input, infeasibility, ...)."""

    def lines(self) -> list[str]:
        """The message as one or more single-line problems, for the CLI error formatter."""
        return [str(self)]


class ScenarioError(PrivtunerError):
    """A scenario file (or CSV, or override) is invalid. Carries every problem found.

    Each problem is ``"<field path>: <what is wrong> (got <value>)"``, prefixed by the file.
    """

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = [one_line(p) for p in problems]
        self.source = None if source is None else one_line(source, 300)
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in self.problems))

    def __reduce__(self) -> tuple[Any, ...]:  # pickles whole (errors of worker processes)
        return (type(self), (self.problems, self.source))

    def lines(self) -> list[str]:
        prefix = f"{self.source}: " if self.source else ""
        return [prefix + p for p in self.problems]


class InfeasibleError(PrivtunerError):
    """The allocation problem has no feasible point; the message names device and constraint."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("infeasible: " + "; ".join(self.reasons))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reasons,))

    def lines(self) -> list[str]:
        return [f"infeasible: {r}" for r in self.reasons]


class ParameterError(PrivtunerError):
    """A CKKS parameter set is malformed or insecure (names N, the bits and the limit)."""


class CostModelError(PrivtunerError):
    """A fitted cost model is missing, malformed, or evaluated outside its valid domain."""


class SolverError(PrivtunerError):
    """Unknown solver/option, or a numerical failure the solver could not recover from."""


class MissingDependencyError(PrivtunerError):
    """An optional dependency is not installed; the message says what to install."""

    def __init__(self, package: str, extra: str = "fhe", purpose: str = "") -> None:
        why = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"the optional package '{package}' is not installed{why}; "
            f"install it with: pip install 'privtuner[{extra}]'"
        )
        self.package = package
        self.extra = extra


def require(module: str, extra: str = "fhe", purpose: str = "") -> object:
    """Import an optional dependency or raise :class:`MissingDependencyError`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from exc
