"""Validation of scenario documents against the schema, with every problem collected.

Generic over the root model (the scenario schema's ``ScenarioSpec``, passed in), so that
``scenario.schema`` can use it (``ScenarioSpec.with_overrides``) without an import cycle:
this module imports no scenario module.

* every problem of a document is reported together, one line each:
  ``devices.p_max_dbm: must be in [-30, 40] (got 55)``; unknown keys list the valid ones;
* ``devices.csv`` is read relative to the YAML file into ``devices.explicit``;
* dotted-path overrides (sweeps, the CLI) are applied and the result validated again.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from privtuner.errors import ScenarioError

M = TypeVar("M", bound=BaseModel)


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at ``loc`` under ``root`` (for listing
    valid keys)."""
    model: Any = root
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


def format_validation_error(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """Turn a pydantic ValidationError of model ``root`` into one line per problem,
    deduplicated."""
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
            parent = _model_at(root, loc[:-1])
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


def validate_model(
    root: type[M], data: Any, source: str | None = None, base_dir: Path | None = None
) -> M:
    """Validate a parsed scenario document into the model ``root`` (the scenario schema),
    collecting all problems: ``devices.csv`` read relative to ``base_dir``, a relative
    ``fhe.cost_model`` resolved against it, the sweep checked."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(
            [f"<root>: must be a mapping of sections (got {type(data).__name__})"], source
        )
    problems: list[str] = []
    data = dict(data)
    devices = data.get("devices")
    csv_lines: list[int] = []  # file line of each CSV device row
    devices_csv = devices.get("csv") if isinstance(devices, dict) else None
    if isinstance(devices, dict) and devices.get("csv") is not None:
        csv_path = devices["csv"]
        if not isinstance(csv_path, str):
            problems.append(f"devices.csv: must be a path string (got {_fmt_value(csv_path)})")
        else:
            rows, csv_problems = read_devices_csv(csv_path, base_dir or Path.cwd(), csv_lines)
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
        sweep_problems = _check_sweep(sweep, root)
        if sweep_problems:  # reported once here, not again by the schema
            problems.extend(sweep_problems)
            data.pop("sweep")
    try:
        spec = root.model_validate(data)
    except ValidationError as exc:
        lines = format_validation_error(exc, root)
        if csv_lines:
            lines = [_csv_row_line(p, csv_lines, str(devices_csv)) for p in lines]
        problems.extend(lines)
        raise ScenarioError(problems, source) from None
    if problems:
        raise ScenarioError(problems, source)
    return spec


def _csv_row_line(problem: str, lines: list[int], csv_name: str) -> str:
    """``devices.explicit.<i>.<field>: ...`` of a CSV device row as
    ``devices.csv (<file>) line <n>: <field>: ...`` (the file's own line number)."""
    head, sep, rest = problem.partition(": ")
    parts = head.split(".")
    if not (sep and parts[:2] == ["devices", "explicit"] and len(parts) >= 3):
        return problem
    if not (parts[2].isdigit() and int(parts[2]) < len(lines)):
        return problem
    field = ".".join(parts[3:])
    where = f"devices.csv ({Path(csv_name).name}) line {lines[int(parts[2])]}"
    return f"{where}: {field + ': ' if field else ''}{rest}"


#: Text (not numeric) columns of a device CSV.
TEXT_COLUMNS = ("device_id",)


def read_devices_csv(
    path_text: str, base_dir: Path, lines: list[int] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Read an explicit device CSV (header row; numeric cells, ``device_id`` text; empty cell
    = scenario default). ``lines``, when given, receives each row's line number in the file."""
    path = (base_dir / path_text).resolve()
    if not path.is_file():
        return [], [f"devices.csv: file not found: {path}"]
    allowed = {"distance_m", "gain_db", "p_max_dbm", "f_max_hz", "kappa", *TEXT_COLUMNS}
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
        for raw in reader:
            # the row's first line: where it ends less the line breaks inside quoted cells
            i = reader.line_num - sum(c.count("\n") for c in raw.values() if isinstance(c, str))
            row: dict[str, Any] = {}
            for key, cell in raw.items():
                if cell is None or cell.strip() == "":
                    continue
                if key in TEXT_COLUMNS:
                    row[key] = cell.strip()
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
            if lines is not None:
                lines.append(i)
    if not rows and not problems:
        problems.append(f"devices.csv ({path.name}): no device rows")
    return rows, problems


def _check_sweep(sweep: Any, root: type[BaseModel]) -> list[str]:
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
        elif _model_at(root, tuple(key.split(".")[:-1])) is None and "." in key:
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


def apply_overrides(spec: M, overrides: dict[str, Any]) -> M:
    """A new validated spec (of ``spec``'s own model) with dotted-path overrides applied
    (all problems reported)."""
    data = spec.model_dump(mode="python", exclude_none=True)
    for dotted, value in overrides.items():
        _set_dotted(data, dotted, value)
    return validate_model(type(spec), data, f"{getattr(spec, 'name', 'spec')} (overrides)")
