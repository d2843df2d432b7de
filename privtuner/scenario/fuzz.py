"""A seeded mutation fuzzer of scenario files and device CSVs (issue 14, "Hostile scenario
files").

Every case starts from a bundled scenario (``privtuner/scenario/bundled``), a repository
scenario (``scenarios/``, when run from a checkout) or the example device CSV, and applies one
to three mutations: bytes (flips, non-UTF-8, NUL and control characters, truncation), values
(booleans, strings, denormals, huge and non-finite numbers, nested containers), structure
(deep nesting, alias bombs, merge keys, explicit tags, unhashable and over-long keys, huge
sweeps, empty device counts) and the devices CSV (BOM, non-UTF-8, a field over the csv
module's limit, extra fields, a symlink loop, a fifo, a folder, ``/proc`` and over-long
names).

:func:`run_fuzz` drives ``target(path)`` (default: :func:`load_and_expand`) over the cases
and counts the outcomes: accepted, :class:`~privtuner.errors.ScenarioError`, any other
exception (a bug: its type and a reproducible case label are kept) and cases over the time
limit (interrupted by ``SIGALRM``, so call it from the main thread). The same ``seed`` gives
the same cases. ``benchmarks/fuzz_scenarios.py`` runs 10,000 cases and prints the counts as
JSON; ``tests/scenario/test_fuzz.py`` runs a seeded share.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from privtuner.errors import ScenarioError
from privtuner.scenario.loader import expand_sweep, load_scenario, parse_yaml_text
from privtuner.scenario.resources import bundled_names, bundled_text

#: The repository's scenario folder (absent in an installed wheel: then bundled files only).
REPO_SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

#: Hostile values put in place of a field's value.
HOSTILE_VALUES: tuple[Any, ...] = (
    True,
    False,
    None,
    "yes",
    "1e7",
    "",
    "x" * 300,
    "a\nb\x00c",
    5e-324,
    -5e-324,
    1e308,
    -1e308,
    float("inf"),
    float("nan"),
    0,
    -1,
    2**70,
    10**400,
    [],
    {},
    [1, [2, [3]]],
    {"low": 1, "high": 0},
    {"low": True, "high": 2},
    "\ud800",
)

#: Plausible values (some mutants pass and reach the later stages).
PLAUSIBLE_VALUES: tuple[Any, ...] = (1, 2, 0.5, 30, 1e3, 1e7, 2e9, -100, "rayleigh", "none")

#: Hostile YAML fragments appended to, or put in front of, a document.
HOSTILE_SNIPPETS: tuple[str, ...] = (
    "seed: !!float abc\n",
    "seed: !!int 1.5\n",
    "seed: !!binary abc\n",
    "seed: !!timestamp 2001-13-45\n",
    "name: !!python/object:os.system ls\n",
    "? [1, 2]\n: 3\n",
    "? {a: 1}\n: 3\n",
    "base: &b {bandwidth_hz: 2e7}\nsystem:\n  <<: *b\n",
    "system:\n  <<: [*nope]\n",
    "devices: {count: }\n",
    "devices: {count: null, p_max_dbm: 20}\n",
    "system: {bandwidth_hz: 5e-324}\n",
    "server: {cpu_hz: 5e-324, downlink_rate_bps: 5e-324}\n",
    "objective: {deadline_s: 5e-324}\n",
    "solver: {method: exakt}\n",
    "objective: {privacy_metric: bits}\n",
    "fhe: {cost_model: /proc/self/environ}\n",
    "fhe: {cost_model: ../../../../../../etc/passwd}\n",
    "fhe: {packing: interleaved}\n",
    "name: '" + "n" * 195 + "'\nsweep: {seed: [0, 1]}\n",
    "sweep: {system.bandwidth_hz: [1.00000001e7, 1.00000002e7]}\n",
    "sweep: {seed: ["
    + ", ".join(map(str, range(200)))
    + "], devices.count: ["
    + ", ".join(map(str, range(1, 201)))
    + "]}\n",
    "sweep: {a.b.c.d: [1]}\n",
    "sweep: {seed: 5}\n",
    "x" * 5000 + ": 1\n",
    "? " + "k" * 5000 + "\n: 1\n",
    'name: "a\\u2028b\\x1b[31mred"\nseed: -1\n',
    "%YAML 1.1\n---\nseed: 1\n",
    "seed: 1\n---\nseed: 2\n",
    "a: &a [1]\nb: *a\nc: *zz\n",
)

#: Device CSV variants (text) and special files used as the devices CSV.
CSV_SPECIALS = ("symlink_loop", "fifo", "folder", "proc", "long_name", "dev_null", "missing")


@dataclass(frozen=True)
class Case:
    """One fuzz case: its label (seed, index, base file, mutations) and its files."""

    label: str
    yaml_text: str | bytes
    csv_text: str | bytes | None = None
    csv_special: str | None = None


@dataclass
class FuzzReport:
    """Outcome counts of a fuzz run (``foreign``: exceptions other than ScenarioError)."""

    cases: int = 0
    accepted: int = 0
    scenario_errors: int = 0
    foreign: Counter[str] = field(default_factory=Counter)
    hangs: int = 0
    max_case_s: float = 0.0
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "accepted": self.accepted,
            "scenario_errors": self.scenario_errors,
            "foreign_exceptions": sum(self.foreign.values()),
            "foreign_by_type": dict(sorted(self.foreign.items())),
            "hangs": self.hangs,
            "max_case_s": round(self.max_case_s, 3),
            "examples": self.examples,
        }


def seed_corpus() -> list[tuple[str, str]]:
    """(label, YAML text) of every bundled scenario and every repository scenario file."""
    out = [(f"bundled/{n}", bundled_text(n)) for n in bundled_names()]
    out += [(f"bundled/{n}", bundled_text(n)) for n in bundled_names("reproduce")]
    if REPO_SCENARIOS.is_dir():
        for p in sorted(REPO_SCENARIOS.rglob("*.yaml")):
            out.append((str(p.relative_to(REPO_SCENARIOS.parent)), p.read_text(encoding="utf-8")))
    return out


def seed_csv() -> str:
    """The example devices CSV (or a small one when not in a checkout)."""
    p = REPO_SCENARIOS / "examples" / "devices.csv"
    return p.read_text(encoding="utf-8") if p.is_file() else "distance_m,p_max_dbm\n100,20\n"


# ----------------------------------------------------------------------------- mutations
def _mutate_bytes(rng: random.Random, text: str) -> str | bytes:
    data = bytearray(text.encode("utf-8", "surrogatepass"))
    if not data:
        return bytes([rng.randrange(256)])
    op = rng.randrange(5)
    i = rng.randrange(len(data))
    if op == 0:
        data[i] = rng.randrange(256)
    elif op == 1:
        data[i:i] = rng.choice([b"\xff\xfe", b"\x00", b"\x1b", b"\xc3", b"\r", b"\t", b"\x85"])
    elif op == 2:
        del data[i : i + rng.randrange(1, 40)]
    elif op == 3:
        j = rng.randrange(i, len(data) + 1)
        data[j:j] = data[i:j] * rng.randrange(1, 4)
    else:
        del data[i:]
    return bytes(data)


def _mutate_value(
    rng: random.Random, text: str, values: tuple[Any, ...] = HOSTILE_VALUES
) -> str | bytes:
    """Parse the document, put one of ``values`` at a random place, dump it again."""
    try:
        data = parse_yaml_text(text)
    except Exception:  # the mutator must not depend on the loader it tests
        return text
    if not isinstance(data, dict):
        return text
    paths = list(_leaf_paths(data))
    if not paths:
        return text
    path = rng.choice(paths)
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = rng.choice(values)
    return _dump(data)


def _leaf_paths(data: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(data, dict):
        for k, v in data.items():
            yield (*prefix, k)
            yield from _leaf_paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield (*prefix, i)
            yield from _leaf_paths(v, (*prefix, i))


def _dump(data: Any) -> str | bytes:
    try:
        return yaml.dump(data, allow_unicode=True, sort_keys=False)
    except (UnicodeEncodeError, yaml.YAMLError):
        return yaml.dump(data, sort_keys=False).encode("utf-8", "surrogatepass")


def _mutate_structure(rng: random.Random, text: str) -> str | bytes:
    op = rng.randrange(6)
    if op == 0:
        depth = rng.choice([20, 40, 200, 5000])
        return text + "deep: " + "[" * depth + "]" * depth + "\n"
    if op == 1:
        width = rng.choice([5, 10, 20])
        lines = ["l0: &l0 [" + ", ".join(["x"] * width) + "]"]
        for k in range(1, rng.choice([4, 6, 9])):
            lines.append(f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * width) + "]")
        return text + "\n".join(lines) + "\n"
    if op == 2:
        key = rng.choice(["system", "devices", "sweep", "objective"])
        return text + f"{key}: &{key} {{}}\nother: *{key}\n"
    if op == 3:
        return text + rng.choice(HOSTILE_SNIPPETS)
    if op == 4:
        return rng.choice(HOSTILE_SNIPPETS) + text
    return text * rng.choice([2, 3])


def _mutate_csv(rng: random.Random, csv_text: str) -> str | bytes:
    op = rng.randrange(8)
    if op == 0:
        return "\ufeff" + csv_text
    if op == 1:
        return csv_text.encode("utf-8") + b"\xff\xfe,\x80\n"
    if op == 2:
        return csv_text + '"' + "9" * 200_000 + '"\n'
    if op == 3:
        return csv_text + "1,2,3,4,5,6,7,8\n"
    if op == 4:
        return "root:x:0:0:root:/root:/bin/bash\n" + csv_text
    if op == 5:
        return csv_text.replace(",", ",\x00", 1)
    if op == 6:
        return csv_text + "\n\n,,,,\n" + "nan,inf\n"
    return csv_text.replace("\n", "\r", rng.randrange(1, 4))


def make_case(seed: int, index: int, corpus: list[tuple[str, str]], csv_seed: str) -> Case:
    """Case ``index`` of run ``seed`` (deterministic)."""
    rng = random.Random(f"{seed}:{index}")
    base_label, text = rng.choice(corpus)
    ops: list[str] = []
    out: str | bytes = text
    csv_text: str | bytes | None = None
    special: str | None = None
    if rng.random() < 0.25:  # devices from a CSV
        assert isinstance(out, str)
        out = _with_csv(out)
        if rng.random() < 0.25:
            special = rng.choice(CSV_SPECIALS)
            ops.append(f"csv:{special}")
        else:
            csv_text = _mutate_csv(rng, csv_seed) if rng.random() < 0.8 else csv_seed
            ops.append("csv")
    if rng.random() < 0.3:  # a mild case: one plausible value, so later stages are reached
        ops.append("plausible")
        out = _mutate_value(rng, out, PLAUSIBLE_VALUES) if isinstance(out, str) else out
        return Case(_label(seed, index, base_label, ops), out, csv_text, special)
    for _ in range(rng.randrange(1, 4)):
        if isinstance(out, bytes):
            break
        kind = rng.choice(("bytes", "value", "value", "structure", "structure"))
        ops.append(kind)
        if kind == "bytes":
            out = _mutate_bytes(rng, out)
        elif kind == "value":
            out = _mutate_value(rng, out)
        else:
            out = _mutate_structure(rng, out)
    return Case(_label(seed, index, base_label, ops), out, csv_text, special)


def _label(seed: int, index: int, base: str, ops: list[str]) -> str:
    return f"seed={seed} case={index} base={base} ops={'+'.join(ops)}"


def _with_csv(text: str) -> str:
    """The document with its devices taken from ``devices.csv`` next to it."""
    try:
        data = parse_yaml_text(text)
    except Exception:  # the mutator must not depend on the loader it tests
        return text
    if not isinstance(data, dict):
        return text
    devices = data.get("devices")
    devices = devices if isinstance(devices, dict) else {}
    data["devices"] = {
        **{k: v for k, v in devices.items() if k not in {"count", "explicit"}},
        "csv": "devices.csv",
    }
    return yaml.dump(data, sort_keys=False)


def write_case(case: Case, folder: Path) -> Path:
    """Write the case's files into ``folder``; the scenario file's path."""
    scen = folder / "scenario.yaml"
    data = case.yaml_text
    scen.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    csv_path = folder / "devices.csv"
    if case.csv_text is not None:
        c = case.csv_text
        csv_path.write_bytes(c if isinstance(c, bytes) else c.encode("utf-8", "surrogatepass"))
    special = case.csv_special
    if special == "symlink_loop":
        os.symlink(folder / "loop_b", folder / "loop_a")
        os.symlink(folder / "loop_a", folder / "loop_b")
        os.symlink(folder / "loop_a", csv_path)
    elif special == "fifo":
        os.mkfifo(csv_path)
    elif special == "folder":
        csv_path.mkdir()
    elif special in {"proc", "long_name", "dev_null"}:
        target = {
            "proc": "/proc/self/environ",
            "dev_null": "/dev/null",
            "long_name": "d" * 300 + ".csv",
        }[special]
        text = scen.read_text(encoding="utf-8", errors="surrogateescape")
        scen.write_text(
            text.replace("csv: devices.csv", f"csv: {target}"),
            encoding="utf-8",
            errors="surrogateescape",
        )
    return scen


def load_and_expand(path: Path) -> object:
    """The default target: load the scenario and expand its sweep."""
    return expand_sweep(load_scenario(path))


class _Timeout(BaseException):
    """Raised by the alarm in a case over the time limit (not an Exception: never caught
    by the code under test)."""


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_fuzz(
    n_cases: int,
    seed: int = 0,
    *,
    target: Callable[[Path], object] = load_and_expand,
    time_limit_s: float = 10.0,
    start: int = 0,
    max_examples: int = 20,
) -> FuzzReport:
    """Run cases ``start .. start + n_cases - 1`` of run ``seed`` through ``target`` and count
    the outcomes (module docstring)."""
    corpus, csv_seed = seed_corpus(), seed_csv()
    report = FuzzReport()
    with tempfile.TemporaryDirectory(prefix="privtuner-fuzz-") as tmp:
        for index in range(start, start + n_cases):
            case = make_case(seed, index, corpus, csv_seed)
            folder = Path(tmp) / str(index)
            folder.mkdir()
            path = write_case(case, folder)
            t0 = time.perf_counter()
            try:
                with _alarm(time_limit_s):
                    target(path)
                report.accepted += 1
            except ScenarioError:
                report.scenario_errors += 1
            except _Timeout:
                report.hangs += 1
                _example(report, max_examples, f"hang: {case.label}")
            except Exception as exc:  # counting foreign exceptions is the point
                name = type(exc).__name__
                report.foreign[name] += 1
                _example(report, max_examples, f"{name}: {str(exc)[:200]!r}: {case.label}")
            report.max_case_s = max(report.max_case_s, time.perf_counter() - t0)
            report.cases += 1
            shutil.rmtree(folder)
    return report


def _example(report: FuzzReport, limit: int, text: str) -> None:
    if len(report.examples) < limit:
        report.examples.append(text)
