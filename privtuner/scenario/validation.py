"""Validation of scenario documents against the schema, with every problem collected.

Generic over the root model (the scenario schema's ``ScenarioSpec``, passed in), so that
``scenario.schema`` can use it (``ScenarioSpec.with_overrides``) without an import cycle:
this module imports no scenario module.

* every problem of a document is reported together, one line each:
  ``devices.p_max_dbm: must be in [-30, 40] (got 55)``; unknown keys list the valid ones;
* ``devices.csv`` is read relative to the YAML file into ``devices.explicit``
  (:func:`read_user_text`: regular files only, never ``/proc`` or a fifo; its contents are
  never echoed beyond a column name that looks like one; problems name the file line);
* dotted-path overrides (sweeps, the CLI) are applied and the result validated again.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from privtuner.errors import ScenarioError, short

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
    branches = [_union_branch(e["loc"]) for e in errors]
    for err, loc, branch in zip(errors, paths, branches, strict=True):
        if err["type"] in {"model_type", "dict_type"} and paths.count(loc) > 1:
            continue  # the other union member's error says more
        if isinstance(err.get("input"), dict) and any(
            len(q) > len(loc) and q[: len(loc)] == loc for q in paths
        ):
            continue  # a number-or-mapping union: the error inside the mapping says more
        if (
            isinstance(err.get("input"), dict)
            and branch is not None
            and not _is_model_tag(branch)
            and any(
                b != branch and q[: len(loc)] == loc for q, b in zip(paths, branches, strict=True)
            )
        ):
            continue  # a mapping given to a number-or-mapping union: the mapping's error
        path = ".".join(short(str(p)) for p in loc) or "<root>"
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


def _union_branch(loc: tuple[Any, ...]) -> str | None:
    """The tag of the union member an error comes from (the first tag in its location)."""
    return next((p for p in loc if isinstance(p, str) and _is_union_tag(p)), None)


def _is_model_tag(tag: str) -> bool:
    """A union member tag that names a model (``Uniform``, ``function-after[_ordered(),
    Uniform]``), not a scalar (``float``, ``function-before[_number(), float]``)."""
    m = re.search(r"(\w+)\]*$", tag)
    return m is not None and m[1][:1].isupper()


def _is_count(v: Any) -> bool:
    """``v`` is a number of devices the schema accepts as such (an integer >= 1)."""
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        return False
    return v >= 1 and v == int(v)


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
    ``fhe.cost_model`` resolved against it, the sweep checked. An empty document (no text,
    only comments: YAML ``null``) is refused; ``{}`` takes every default."""
    if data is None:  # an empty file, or one with only comments (``{}`` takes every default)
        raise ScenarioError(
            [
                "the file is empty (no YAML mapping): give keys among "
                f"{', '.join(root.model_fields)}, or write {{}} to take every default"
            ],
            source,
        )
    if not isinstance(data, dict):
        raise ScenarioError(
            [f"<root>: must be a mapping of sections (got {type(data).__name__})"], source
        )
    problems: list[str] = []
    csv_rows: tuple[str, list[int]] | None = None  # the CSV's label and each row's file line
    data = dict(data)
    devices = data.get("devices")
    if isinstance(devices, dict) and devices.get("csv") is not None:
        csv_path = devices["csv"]
        if not isinstance(csv_path, str):
            problems.append(f"devices.csv: must be a path string (got {_fmt_value(csv_path)})")
        else:
            rows, csv_problems, row_lines = read_devices_csv_lines(csv_path, base_dir or Path.cwd())
            csv_rows = (csv_label(csv_path), row_lines)
            problems.extend(csv_problems)
            devices = {k: v for k, v in devices.items() if k != "csv"}
            if not csv_problems:
                if devices.get("explicit") is not None:
                    problems.append("devices: give at most one of explicit or csv")
                count = devices.get("count")
                if _is_count(count) and count != len(rows):  # else the schema says why
                    n = len(rows)
                    problems.append(
                        f"devices.count: contradicts {csv_label(csv_path)}, which lists {n} "
                        f"device{'s' * (n != 1)} (the file sets the number of devices: leave "
                        f"count out, or give {n}) (got {_fmt_value(count)})"
                    )
                    devices.pop("count")
                devices["explicit"] = rows
            data["devices"] = devices
    fhe = data.get("fhe")
    if isinstance(fhe, dict) and base_dir is not None:
        # resolved once here, like devices.csv, so every caller sees an absolute path
        # (textually: a path that cannot be a file is reported when the file is read)
        fhe = dict(fhe)
        for key in ("cost_model", "accuracy_study"):
            path = fhe.get(key)
            if isinstance(path, str) and path != "default" and not Path(path).is_absolute():
                fhe[key] = os.path.abspath(base_dir / path)
        data["fhe"] = fhe
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
        if csv_rows is not None:
            lines = [_at_csv_line(line, *csv_rows) for line in lines]
        problems.extend(lines)
        raise ScenarioError(problems, source) from None
    if problems:
        raise ScenarioError(problems, source)
    return spec


#: Largest devices CSV read [bytes] (about 100,000 device rows).
MAX_CSV_BYTES = 10_000_000
#: Longest cell of a devices CSV [characters] (a number or a device name).
MAX_CSV_FIELD_CHARS = 131_072
#: Problems listed per CSV file; the rest are counted.
MAX_CSV_PROBLEMS = 20
#: Folders of pseudo-files that stat as regular files but are not data (never read).
_PSEUDO_ROOTS = ("/proc", "/sys", "/dev")
#: Text (not numeric) columns of a device CSV: the planner's device name, passed through.
TEXT_COLUMNS = ("device_id",)
_COLUMNS = ("distance_m", "gain_db", "p_max_dbm", "f_max_hz", "kappa", *TEXT_COLUMNS)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def read_user_text(path: Path, max_bytes: int) -> str:
    """The UTF-8 text of a regular file given by a user (a scenario or devices CSV).

    Refuses, with :class:`OSError` or :class:`ValueError` whose message is meant for the
    user: a path that cannot be a file name (NUL, unencodable characters, too long), a
    symlink loop, anything but a regular file (folder, fifo, device, ``/proc`` and
    ``/sys`` pseudo-files), a file over ``max_bytes``, and text that is not UTF-8. A UTF-8
    byte order mark (as spreadsheet programs write) is dropped."""
    try:
        os.fsencode(str(path))
        real = Path(os.path.realpath(path, strict=True))
        st = real.stat()
    except FileNotFoundError:
        raise FileNotFoundError("file not found") from None
    except (OSError, RuntimeError, UnicodeError, ValueError) as exc:
        raise OSError(os_reason(exc)) from None
    if str(real).startswith(tuple(r + "/" for r in _PSEUDO_ROOTS)) or not stat.S_ISREG(st.st_mode):
        raise OSError("not a regular file")
    with real.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(f"file is larger than the limit of {max_bytes} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def os_reason(exc: BaseException) -> str:
    """Why a path could not be read, for a user (``file name too long``, ``symlink loop``)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    if isinstance(exc, RuntimeError):
        return "symlink loop"
    if isinstance(exc, UnicodeError):
        return "the path has characters that cannot be a file name"
    if "null" in str(exc):
        return "the path contains a NUL character"
    return short(str(exc))


def _column_label(index: int, name: str) -> str:
    """A header cell for a message: the name if it looks like one, else only its position
    (file contents are never echoed)."""
    return repr(name) if _NAME_RE.fullmatch(name) else f"column {index + 1} (not a column name)"


_EXPLICIT_RE = re.compile(r"devices\.explicit\.(\d+)(?:\.(\w+))?: (.*)")


def _at_csv_line(problem: str, label: str, row_lines: list[int]) -> str:
    """A problem of ``devices.explicit.<i>`` read from a CSV, named by the CSV's file line
    (``devices.csv (d.csv) line 5: distance_m: ...``), as its parse errors are."""
    m = _EXPLICIT_RE.fullmatch(problem)
    if m is None or int(m[1]) >= len(row_lines):
        return problem
    column = f"{m[2]}: " if m[2] else ""
    return f"{label} line {row_lines[int(m[1])]}: {column}{m[3]}"


def read_devices_csv(path_text: str, base_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    rows, problems, _ = read_devices_csv_lines(path_text, base_dir)
    return rows, problems


def read_devices_csv_lines(
    path_text: str, base_dir: Path
) -> tuple[list[dict[str, Any]], list[str], list[int]]:
    """Read an explicit device CSV (header row; numeric cells, ``device_id`` text; empty cell =
    scenario default).

    Problems name the file and its line (``devices.csv (d.csv) line 5: ...``); at most
    :data:`MAX_CSV_PROBLEMS` are listed."""
    path = base_dir / path_text
    where = csv_label(str(path))
    try:
        text = read_user_text(path, MAX_CSV_BYTES)
    except FileNotFoundError:
        return [], [f"devices.csv: file not found: {path}"], []
    except (OSError, ValueError) as exc:
        return [], [f"{where}: cannot read {path}: {exc}"], []
    try:
        return _parse_devices_csv(text, where)
    except csv.Error as exc:
        return [], [f"{where}: not a valid CSV file: {short(str(exc))}"], []


def csv_label(path_text: str) -> str:
    """``devices.csv (NAME)``: how problems of a devices CSV name it."""
    return f"devices.csv ({short(Path(path_text).name, 60)})"


def _bounded_rows(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    """The rows of ``reader``, refusing a cell over :data:`MAX_CSV_FIELD_CHARS` (the csv
    module's own field limit is process-wide and raised by the batch's table reader)."""
    for cells in reader:
        if any(len(c) > MAX_CSV_FIELD_CHARS for c in cells):
            raise csv.Error(f"field larger than field limit ({MAX_CSV_FIELD_CHARS})")
        yield cells


def _parse_devices_csv(text: str, where: str) -> tuple[list[dict[str, Any]], list[str], list[int]]:
    raw = csv.reader(io.StringIO(text, newline=""))
    reader = _bounded_rows(raw)
    header: list[str] = next(reader, [])
    unknown = [_column_label(i, h) for i, h in enumerate(header) if h not in _COLUMNS]
    if unknown:
        listed = ", ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        valid = ", ".join(sorted(_COLUMNS))
        return [], [f"{where}: unknown column(s) {listed}; valid columns: {valid}"], []
    if len(set(header)) != len(header):
        return [], [f"{where}: a column appears twice in the header"], []
    rows: list[dict[str, Any]] = []
    lines: list[int] = []  # the file line of each row
    problems: list[str] = []
    id_lines: dict[str, int] = {}  # the file line of each device_id
    start = raw.line_num + 1  # a row's first line (a quoted cell may span lines)
    for cells in reader:
        line_no, start = start, raw.line_num + 1
        line = f"{where} line {line_no}"
        if len(cells) > len(header):
            problems.append(f"{line}: {len(cells)} fields, the header has {len(header)}")
            continue
        row: dict[str, Any] = {}
        for key, cell in zip(header, cells, strict=False):
            problem = _cell_value(cell, row, key)
            if problem:
                problems.append(f"{line}: {key}: {problem}")
        device_id = row.get("device_id")
        if device_id is not None:
            if device_id in id_lines:
                problems.append(
                    f"{line}: device_id: device ids must be unique: line {id_lines[device_id]} "
                    f"has this id too (got {short(repr(device_id), 40)})"
                )
            else:
                id_lines[device_id] = line_no
        if cells:
            rows.append(row)
            lines.append(line_no)
    if not rows and not problems:
        problems.append(f"{where}: no device rows")
    if len(problems) > MAX_CSV_PROBLEMS:
        more = len(problems) - MAX_CSV_PROBLEMS
        problems = [*problems[:MAX_CSV_PROBLEMS], f"{where}: {more} more problem(s) not shown"]
    return rows, problems, lines


def _cell_value(cell: str, row: dict[str, Any], key: str) -> str | None:
    """Put the number in ``cell`` into ``row[key]`` (a text column: the stripped text; empty:
    nothing); a problem, or None."""
    if cell.strip() == "":
        return None
    if key in TEXT_COLUMNS:
        row[key] = cell.strip()
        return None
    try:
        value = float(cell)
    except ValueError:
        return f"must be a number (got {short(repr(cell), 40)})"
    if not math.isfinite(value):
        return f"must be a finite number (got {short(repr(cell), 40)})"
    row[key] = value
    return None


#: Scenarios one sweep may expand to (the product of its value-list lengths).
MAX_SWEEP_POINTS = 10_000


def _check_sweep(sweep: Any, root: type[BaseModel]) -> list[str]:
    if not isinstance(sweep, dict) or not sweep:
        return ["sweep: must be a non-empty mapping of dotted path -> list of values"]
    problems = []
    points = math.prod(len(v) for v in sweep.values() if isinstance(v, list))
    if points > MAX_SWEEP_POINTS:
        problems.append(
            f"sweep: {points} points (the product of the value-list lengths) exceed the limit "
            f"of {MAX_SWEEP_POINTS}"
        )
    for key, values in sweep.items():
        if not isinstance(key, str) or not key:
            problems.append(f"sweep: keys must be dotted paths (got {_fmt_value(key)})")
        elif key.startswith("sweep") or key in {"schema_version"}:
            problems.append(f"sweep.{short(key)}: cannot sweep this field")
        elif not isinstance(values, list) or not values:
            problems.append(f"sweep.{short(key)}: must be a non-empty list of values")
        elif _model_at(root, tuple(key.split(".")[:-1])) is None and "." in key:
            section = short(repr(key.rsplit(".", 1)[0]))
            problems.append(f"sweep.{short(key)}: unknown section {section}")
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
