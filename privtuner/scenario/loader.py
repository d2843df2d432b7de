"""Load, validate and expand scenario files.

* YAML is read with a loader that accepts numbers as users write them (``1e7``, ``2.4e9``;
  PyYAML's default resolver reads an exponent without a dot as a string).
* Every problem of a file is collected and reported together, one line each:
  ``devices.p_max_dbm: must be in [-30, 40] (got 55)``; unknown keys list the valid ones.
* ``devices.csv`` is read relative to the YAML file into ``devices.explicit``.
* ``sweep:`` expands as a cartesian product of dotted-path values into named scenarios
  (unique names within the name limit).
* Files come from other people: only regular UTF-8 files are read (a byte order mark is
  allowed), documents are bounded (:data:`MAX_DOCUMENT_BYTES`, :data:`MAX_DEPTH`,
  :data:`MAX_NODES` with aliases expanded; a sweep at ``validation.MAX_SWEEP_POINTS``),
  merge keys (``<<: *base``) are accepted, and every problem is one bounded line.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import yaml

from privtuner.errors import ScenarioError, short
from privtuner.scenario.schema import NAME_MAX_CHARS, ScenarioSpec
from privtuner.scenario.validation import apply_overrides, read_user_text, validate_model

__all__ = [
    "apply_overrides",
    "expand_sweep",
    "load_scenario",
    "load_scenario_text",
    "parse_yaml_text",
    "sweep_name",
    "validate_data",
]


class _Loader(yaml.SafeLoader):
    """SafeLoader that resolves 1e7, 2.4e9, -3E-2 ... as floats (YAML 1.2 style)."""


_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


#: Limits of a scenario document. A real scenario is a few kB with a nesting depth under 6;
#: these stop hostile files (alias bombs, deep nesting, huge sweeps) early with a clear error.
MAX_DOCUMENT_BYTES = 1_000_000
MAX_DEPTH = 32
#: Nodes of the document after expanding every alias (``*name``) and merge key.
MAX_NODES = 100_000

#: Sweep points whose problems are listed (the rest are counted).
MAX_LISTED_POINTS = 10

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    """A mapping with merge keys (``<<: *base``, the file's own keys win) and without
    duplicate own keys; keys must be scalars."""
    own = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    seen: set[Any] = set()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        mark = key_node.start_mark
        try:
            hash(key)
        except TypeError:
            what = f"a mapping key must be a scalar (got a {type(key).__name__})"
            raise yaml.constructor.ConstructorError(None, None, what, mark) from None
        if id(key_node) in own:
            if key in seen:
                what = f"duplicate key {short(repr(key))}"
                raise yaml.constructor.ConstructorError(None, None, what, mark)
            seen.add(key)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _check_size(text: str) -> None:
    """Bound the document before building it: bytes, nesting depth and node count with
    aliases expanded (read from the event stream, which needs no recursion)."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise _LimitError(f"document is larger than the limit of {MAX_DOCUMENT_BYTES} characters")
    anchors: dict[str, int] = {}
    open_nodes: list[list[Any]] = []  # [nodes inside so far, anchor] per open collection
    total = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_nodes) >= MAX_DEPTH:
                raise _LimitError(f"nesting deeper than the limit of {MAX_DEPTH} levels")
            open_nodes.append([1, event.anchor])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            size, anchor = open_nodes.pop()
        elif isinstance(event, yaml.ScalarEvent):
            size, anchor = 1, event.anchor
        elif isinstance(event, yaml.AliasEvent):
            size, anchor = anchors.get(event.anchor or "", 1), None
        else:
            continue
        if anchor is not None:
            anchors[anchor] = size
        if open_nodes:
            open_nodes[-1][0] += size
        total += size if not open_nodes else 0
        if total > MAX_NODES or (open_nodes and open_nodes[-1][0] > MAX_NODES):
            raise _LimitError(f"more than {MAX_NODES} values with aliases expanded (alias bomb?)")


class _LimitError(Exception):
    """A document over one of the size limits (turned into a ScenarioError)."""


def parse_yaml_text(text: str, source: str = "<string>") -> Any:
    """Parse YAML text; a syntax error becomes a ScenarioError with line and column, as do
    documents over the size limits (:data:`MAX_DOCUMENT_BYTES`, :data:`MAX_DEPTH`,
    :data:`MAX_NODES`) and values an explicit tag cannot build (``!!float abc``)."""
    try:
        _check_size(text)
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        what = exc.problem or exc.context or "invalid YAML"
        kind = "error" if isinstance(exc, yaml.constructor.ConstructorError) else "syntax error"
        raise ScenarioError([f"YAML {kind} at {where}: {what}"], source) from None
    except yaml.reader.ReaderError as exc:
        what = f"character #x{exc.character:04x} is not allowed (position {exc.position})"
        raise ScenarioError([f"YAML error: {what}"], source) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([f"YAML error: {short(str(exc), 200)}"], source) from None
    except _LimitError as exc:
        raise ScenarioError([f"YAML document too large: {exc}"], source) from None
    except RecursionError:
        raise ScenarioError(["YAML document too large: nesting too deep"], source) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # an explicit tag on a value it cannot build (!!float abc, !!int 1.5)
        raise ScenarioError(
            [f"YAML error: cannot build a value: {short(str(exc))}"], source
        ) from None


# ----------------------------------------------------------------------------- validation
def validate_data(
    data: Any, source: str | None = None, base_dir: Path | None = None
) -> ScenarioSpec:
    """Validate a parsed YAML document into a :class:`ScenarioSpec` (collecting all problems;
    ``scenario.validation.validate_model``)."""
    return validate_model(ScenarioSpec, data, source, base_dir)


def load_scenario(path: str | Path) -> ScenarioSpec:
    """Load and validate one scenario YAML file. Raises :class:`ScenarioError` listing every
    problem (syntax, types, ranges, unknown keys, missing CSV)."""
    p = Path(path)
    source = str(p)
    try:
        text = read_user_text(p, MAX_DOCUMENT_BYTES)
    except FileNotFoundError:
        raise ScenarioError([f"file not found: {p}"], None) from None
    except (OSError, ValueError) as exc:
        raise ScenarioError([f"cannot read file: {exc}"], source) from None
    data = parse_yaml_text(text, source)
    return validate_data(data, source, p.parent)


def load_scenario_text(text: str, base_dir: Path | None = None) -> ScenarioSpec:
    """Validate a scenario given as YAML text (base_dir resolves a devices CSV path)."""
    return validate_data(parse_yaml_text(text), "<string>", base_dir)


# ----------------------------------------------------------------------------- sweeps


def _fmt_override(v: Any) -> str:
    if isinstance(v, float):
        text = f"{v:g}"
        return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    return str(v)


def sweep_name(base: str, combo: dict[str, Any]) -> str:
    """Stable scenario name of one sweep point: ``base[a.b=1,c=2]`` in sweep-key order."""
    if not combo:
        return base
    return base + "[" + ",".join(f"{k}={_fmt_override(v)}" for k, v in combo.items()) + "]"


def expand_sweep(spec: ScenarioSpec, *, check_names: bool = True) -> list[ScenarioSpec]:
    """Expand ``spec.sweep`` as a cartesian product (keys in file order, last fastest).

    Each point is a validated ScenarioSpec without a sweep, named by :func:`sweep_name`.
    A spec without a sweep expands to ``[spec]``. Problems of all points are reported together.
    ``check_names=False`` leaves over-long and repeated point names to the caller (a batch
    turns such points into error rows instead of refusing the file).
    """
    if not spec.sweep:
        return [spec]
    keys = list(spec.sweep)
    base = spec.model_copy(update={"sweep": None})
    problems: list[str] = []
    out = []
    failed = 0
    for values in itertools.product(*(spec.sweep[k] for k in keys)):
        combo = dict(zip(keys, values, strict=True))
        try:
            point = apply_overrides(base, combo)
        except ScenarioError as exc:
            failed += 1
            if failed <= MAX_LISTED_POINTS:
                label = short(sweep_name("", combo))
                problems.extend(f"sweep point {label}: {p}" for p in exc.problems)
            continue
        out.append(point.model_copy(update={"name": sweep_name(spec.name, combo)}))
    if failed > MAX_LISTED_POINTS:
        problems.append(f"sweep: {failed - MAX_LISTED_POINTS} more sweep point(s) have problems")
    if check_names:
        problems.extend(_name_problems([p.name for p in out]))
    if problems:
        raise ScenarioError(problems, spec.name)
    return out


def _name_problems(names: list[str]) -> list[str]:
    """Sweep point names must be unique (they key a batch's rows) and within the name
    limit."""
    problems = []
    long = [n for n in names if len(n) > NAME_MAX_CHARS]
    if long:
        problems.append(
            f"name: sweep point names up to {max(map(len, long))} characters exceed the limit "
            f"of {NAME_MAX_CHARS} (shorten name or the sweep values), e.g. {short(long[0])}"
        )
    seen: set[str] = set()
    for n in names:
        if n in seen:
            problems.append(
                f"sweep: two points get the same name {short(n)} (values that differ only "
                "beyond 6 significant digits)"
            )
            break
        seen.add(n)
    return problems
