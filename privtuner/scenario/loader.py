"""Load, validate and expand scenario files.

* YAML is read with a loader that accepts numbers as users write them (``1e7``, ``2.4e9``;
  PyYAML's default resolver reads an exponent without a dot as a string).
* Every problem of a file is collected and reported together, one line each:
  ``devices.p_max_dbm: must be in [-30, 40] (got 55)``; unknown keys list the valid ones.
* ``devices.csv`` is read relative to the YAML file into ``devices.explicit``.
* ``sweep:`` expands as a cartesian product of dotted-path values into named scenarios.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from privtuner.errors import ScenarioError
from privtuner.scenario.schema import ScenarioSpec


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


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at ``loc`` (for listing valid keys)."""
    model: Any = ScenarioSpec
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = _unwrap_model(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    text = repr(v) if isinstance(v, str) else str(v)
    return text if len(text) <= 60 else text[:57] + "..."


def format_validation_error(exc: ValidationError) -> list[str]:
    """Turn a pydantic ValidationError into one line per problem, deduplicated."""
    lines: list[str] = []
    errors = exc.errors(include_url=False)
    paths = [
        tuple(p for p in e["loc"] if not (isinstance(p, str) and _is_union_tag(p))) for e in errors
    ]
    for err, loc in zip(errors, paths, strict=True):
        if err["type"] in {"model_type", "dict_type"} and paths.count(loc) > 1:
            continue  # the other union member's error says more
        path = ".".join(str(p) for p in loc) or "<root>"
        etype = err["type"]
        if etype == "extra_forbidden":
            parent = _model_at(loc[:-1])
            valid = sorted(parent.model_fields) if parent else []
            lines.append(f"{path}: unknown key; valid keys: {', '.join(valid)}")
            continue
        msg = err["msg"]
        msg = msg.removeprefix("Value error, ")
        msg = msg.replace("Input should be", "must be")
        if etype == "finite_number":
            msg = "must be a finite number"
        got = err.get("input")
        if etype == "missing":
            lines.append(f"{path}: required field is missing")
        elif "(got" in msg or isinstance(got, dict):
            lines.append(f"{path}: {msg}")
        else:
            lines.append(f"{path}: {msg} (got {_fmt_value(got)})")
    seen: set[str] = set()
    out = []
    for line in lines:
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


def _is_union_tag(part: str) -> bool:
    # pydantic adds union member tags such as "float" or "Uniform" / "function-after[...]"
    return part in {"float", "int", "Uniform", "str", "bool"} or part.startswith(
        ("function-", "list[", "tuple[", "constrained-")
    )


def validate_data(
    data: Any, source: str | None = None, base_dir: Path | None = None
) -> ScenarioSpec:
    """Validate a parsed YAML document into a :class:`ScenarioSpec` (collecting all problems)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(
            [f"<root>: must be a mapping of sections (got {type(data).__name__})"], source
        )
    problems: list[str] = []
    data = dict(data)
    devices = data.get("devices")
    if isinstance(devices, dict) and devices.get("csv") is not None:
        csv_path = devices["csv"]
        if not isinstance(csv_path, str):
            problems.append(f"devices.csv: must be a path string (got {_fmt_value(csv_path)})")
        else:
            rows, csv_problems = read_devices_csv(csv_path, base_dir or Path.cwd())
            problems.extend(csv_problems)
            devices = {k: v for k, v in devices.items() if k != "csv"}
            if not csv_problems:
                if devices.get("explicit") is not None:
                    problems.append("devices: give at most one of explicit or csv")
                devices["explicit"] = rows
            data["devices"] = devices
    fhe = data.get("fhe")
    if isinstance(fhe, dict) and isinstance(fhe.get("cost_model"), str) and base_dir is not None:
        model = fhe["cost_model"]
        if model != "default" and not Path(model).is_absolute():
            # resolved once here, like devices.csv, so every caller sees an absolute path
            data["fhe"] = {**fhe, "cost_model": str((base_dir / model).resolve())}
    sweep = data.get("sweep")
    if sweep is not None:
        sweep_problems = _check_sweep(sweep)
        if sweep_problems:  # reported once here, not again by the schema
            problems.extend(sweep_problems)
            data.pop("sweep")
    try:
        spec = ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        problems.extend(format_validation_error(exc))
        raise ScenarioError(problems, source) from None
    if problems:
        raise ScenarioError(problems, source)
    return spec


def read_devices_csv(path_text: str, base_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Read an explicit device CSV (header row; numeric cells; empty cell = scenario default)."""
    path = (base_dir / path_text).resolve()
    if not path.is_file():
        return [], [f"devices.csv: file not found: {path}"]
    allowed = {"distance_m", "gain_db", "p_max_dbm", "f_max_hz", "kappa"}
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        unknown = [h for h in header if h not in allowed]
        if unknown:
            return [], [
                f"devices.csv ({path.name}): unknown column(s) {unknown}; valid columns: "
                f"{', '.join(sorted(allowed))}"
            ]
        for i, raw in enumerate(reader, start=2):
            row: dict[str, Any] = {}
            for key, cell in raw.items():
                if cell is None or cell.strip() == "":
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    problems.append(
                        f"devices.csv ({path.name}) line {i}: {key}: must be a number "
                        f"(got {cell!r})"
                    )
                    continue
                if not math.isfinite(value):
                    problems.append(
                        f"devices.csv ({path.name}) line {i}: {key}: must be a finite number "
                        f"(got {cell!r})"
                    )
                    continue
                row[key] = value
            rows.append(row)
    if not rows and not problems:
        problems.append(f"devices.csv ({path.name}): no device rows")
    return rows, problems


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


# ----------------------------------------------------------------------------- overrides/sweeps


def _check_sweep(sweep: Any) -> list[str]:
    if not isinstance(sweep, dict) or not sweep:
        return ["sweep: must be a non-empty mapping of dotted path -> list of values"]
    problems = []
    for key, values in sweep.items():
        if not isinstance(key, str) or not key:
            problems.append(f"sweep: keys must be dotted paths (got {_fmt_value(key)})")
        elif key.startswith("sweep") or key in {"schema_version"}:
            problems.append(f"sweep.{key}: cannot sweep this field")
        elif not isinstance(values, list) or not values:
            problems.append(f"sweep.{key}: must be a non-empty list of values")
        elif _model_at(tuple(key.split(".")[:-1])) is None and "." in key:
            problems.append(f"sweep.{key}: unknown section {key.rsplit('.', 1)[0]!r}")
    return problems


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def apply_overrides(spec: ScenarioSpec, overrides: dict[str, Any]) -> ScenarioSpec:
    """A new validated ScenarioSpec with dotted-path overrides applied (all problems reported)."""
    data = spec.model_dump(mode="python", exclude_none=True)
    for dotted, value in overrides.items():
        _set_dotted(data, dotted, value)
    return validate_data(data, f"{spec.name} (overrides)")


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
