"""Thin command-line interface: each command is a few lines over a library call.

``privtuner --version`` imports nothing heavy. Every :class:`~privtuner.errors.PrivtunerError`
becomes one line per problem on stderr and exit code 1; ``--debug`` shows the traceback.
Command groups live in sibling modules, each exposing ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from privtuner import __version__

# Command modules, in help order. Each defines register(subparsers) and sets
# ``func`` on its parsers; heavy imports happen inside the command functions.
COMMAND_MODULES = (
    "privtuner.cli.scenario_cmds",
    "privtuner.cli.solve_cmds",
    "privtuner.cli.batch_cmds",
    "privtuner.cli.profile_cmds",
    "privtuner.cli.lora_cmds",
    "privtuner.cli.accuracy_cmds",
)


class Parser(argparse.ArgumentParser):
    """argparse with the project's error format: a bad argument is one ``error:`` line on
    stderr and exit code 1 (subcommand parsers inherit this class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"error: {self.prog}: {message} (see '{self.prog} -h')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="privtuner",
        description="Energy-privacy optimisation of CKKS-encrypted LoRA fine-tuning at the "
        "wireless edge.",
    )
    parser.add_argument("--version", action="version", version=f"privtuner {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # command group not present in this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["--version"], ["-V"]):  # fast path: no parser, no imports
        print(f"privtuner {__version__}")
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from privtuner.errors import PrivtunerError, one_line

    try:
        return int(args.func(args) or 0)
    except PrivtunerError as exc:
        if args.debug:
            raise
        for line in exc.lines():  # one bounded line each (control characters escaped)
            print(f"error: {one_line(line, 1000)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_stdout()


#: Exit status after the reader of stdout went away (128 + SIGPIPE, as a shell reports it).
EXIT_BROKEN_PIPE = 141


def _closed_stdout() -> int:
    """The reader of our output closed the pipe (``privtuner simulate FILE | head``): stop
    quietly. Later writes and the interpreter's final flush go to /dev/null, so no
    ``BrokenPipeError`` traceback is printed at exit."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured)
        pass
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def run() -> None:  # pragma: no cover - console entry
    try:
        code = main()
        sys.stdout.flush()  # a closed pipe shows up here for buffered output
    except BrokenPipeError:
        code = _closed_stdout()
    sys.exit(code)
