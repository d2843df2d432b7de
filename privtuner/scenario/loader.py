"""Load, validate and expand scenario files.

* YAML is read with a loader that accepts numbers as users write them (``1e7``, ``2.4e9``;
  PyYAML's default resolver reads an exponent without a dot as a string).
* Every problem of a file is collected and reported together, one line each:
  ``devices.p_max_dbm: must be in [-30, 40] (got 55)``; unknown keys list the valid ones.
* ``devices.csv`` is read relative to the YAML file into ``devices.explicit``.
* ``sweep:`` expands as a cartesian product of dotted-path values into named scenarios.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import yaml

from privtuner.errors import ScenarioError
from privtuner.scenario.schema import ScenarioSpec
from privtuner.scenario.validation import apply_overrides, validate_model

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


def _no_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def parse_yaml_text(text: str, source: str = "<string>") -> Any:
    """Parse YAML text; a syntax error becomes a ScenarioError with line and column."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        what = exc.problem or exc.context or "invalid YAML"
        raise ScenarioError([f"YAML syntax error at {where}: {what}"], source) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([f"YAML error: {exc}"], source) from None


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
    if not p.is_file():
        raise ScenarioError([f"file not found: {p}"], None)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
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


def expand_sweep(spec: ScenarioSpec) -> list[ScenarioSpec]:
    """Expand ``spec.sweep`` as a cartesian product (keys in file order, last fastest).

    Each point is a validated ScenarioSpec without a sweep, named by :func:`sweep_name`.
    A spec without a sweep expands to ``[spec]``. Problems of all points are reported together.
    """
    if not spec.sweep:
        return [spec]
    keys = list(spec.sweep)
    base = spec.model_copy(update={"sweep": None})
    problems: list[str] = []
    out = []
    for values in itertools.product(*(spec.sweep[k] for k in keys)):
        combo = dict(zip(keys, values, strict=True))
        try:
            point = apply_overrides(base, combo)
        except ScenarioError as exc:
            problems.extend(f"sweep point {sweep_name('', combo)}: {p}" for p in exc.problems)
            continue
        out.append(point.model_copy(update={"name": sweep_name(spec.name, combo)}))
    if problems:
        raise ScenarioError(problems, spec.name)
    return out
