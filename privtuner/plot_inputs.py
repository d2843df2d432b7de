"""What ``privtuner plot`` reads, recognised by its content, not only by its suffix.

* a results table (``batch --out``, ``reproduce``'s ``results.csv``; ``.csv`` or ``.parquet``
  with the :data:`~privtuner.batch.storage.IDENTITY_COLUMNS`);
* a solve result JSON (``solve --out``, :meth:`SolveResult.to_dict`, with
  :data:`SOLVE_RESULT_KEYS`): one row (:func:`privtuner.plotting.result_to_rows`) for
  ``--kind allocation``, ``convergence`` or ``bounds``;
* a planner allocation CSV (``solve --csv``, ``solve --plots``' ``allocation.csv``, with the
  :data:`~privtuner.rows.PLANNER_COLUMNS`): one row for ``--kind allocation``, named from its
  ``.provenance.json`` sidecar where there is one.

Any other file (a provenance sidecar, an accuracy study, a JSON schema, a cost model, a
figure's data table, ...) is refused with one line saying what it looks like.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from privtuner.errors import PrivtunerError, short

#: Keys every solve result JSON (:meth:`~privtuner.optimizer.SolveResult.to_dict`) has.
SOLVE_RESULT_KEYS = ("method", "status", "termination", "devices")

#: Plot kinds a single solve result can draw (one allocation, one history).
RESULT_KINDS = ("allocation", "convergence", "bounds")

#: Planner CSV columns a planner allocation CSV must have to be plotted.
PLANNER_KEY_COLUMNS = (
    "device",
    "set_name",
    "bandwidth_hz",
    "tx_power_w",
    "cpu_hz",
    "server_cpu_hz",
    "energy_j_per_run",
)

#: What ``plot`` reads, for the refusal of anything else.
PLOT_READS = (
    "plot reads a batch/reproduce results table (.csv/.parquet), a solve --out result JSON "
    "or a solve --csv allocation CSV"
)


def read_plot_rows(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The results rows of ``path`` for ``privtuner plot --kind kind`` (see the module
    docstring). Raises :class:`PrivtunerError` with one line for a missing or unreadable file,
    a file that is none of these (saying what it looks like), or a single result asked for a
    ``kind`` that needs a results table."""
    from privtuner.batch.storage import IDENTITY_COLUMNS, read_table, table_columns

    path = Path(path)
    if not path.exists():
        raise PrivtunerError(f"{path}: results file not found")
    if not path.is_file():
        raise PrivtunerError(f"{path}: not a file; {PLOT_READS}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PrivtunerError(f"{path}: cannot read result JSON: {exc}") from None
        if not is_solve_result(data):
            raise _foreign(path, describe_json(data))
        _check_single(path, kind, "a solve result JSON", RESULT_KINDS)
        from privtuner.plotting import result_to_rows

        return result_to_rows(data)
    if suffix not in (".csv", ".parquet"):
        raise PrivtunerError(f"{path}: unknown file type {suffix or '(none)'!r}; {PLOT_READS}")
    try:
        columns = table_columns(path)
    except PrivtunerError:
        raise
    except Exception as exc:  # csv.Error, UnicodeDecodeError, pyarrow's ArrowInvalid ...
        raise PrivtunerError(f"{path}: cannot read results table: {short(str(exc))}") from None
    if all(c in columns for c in IDENTITY_COLUMNS):
        return read_table(path)
    if suffix == ".csv" and all(c in columns for c in PLANNER_KEY_COLUMNS):
        _check_single(path, kind, "a solve --csv allocation CSV", ("allocation",))
        return planner_csv_rows(path)
    raise _foreign(path, describe_columns(columns))


def is_solve_result(data: Any) -> bool:
    """Whether parsed JSON is a solve result (:data:`SOLVE_RESULT_KEYS`, ``devices`` an
    object)."""
    return (
        isinstance(data, Mapping)
        and all(k in data for k in SOLVE_RESULT_KEYS)
        and isinstance(data.get("devices"), Mapping)
    )


def _foreign(path: Path, looks_like: str) -> PrivtunerError:
    return PrivtunerError(
        f"{path} is not a privtuner results table or solve-result JSON ({looks_like}); {PLOT_READS}"
    )


def _check_single(path: Path, kind: str | None, what: str, kinds: Sequence[str]) -> None:
    if kind is not None and kind not in kinds:
        raise PrivtunerError(
            f"{path} is {what}, one allocation: --kind {kind} needs a batch/reproduce results "
            f"table; from this file plot --kind {' or '.join(kinds)}"
        )


def describe_json(data: Any) -> str:
    """What a JSON file that is not a solve result looks like (for the refusal)."""
    if not isinstance(data, Mapping):
        return f"it holds a JSON {_json_type(data)}, not an object"
    keys = set(data)
    if {"columns", "totals", "scenario_file"} <= keys:
        return (
            "it looks like the provenance sidecar of a solve --csv allocation CSV; plot that "
            "CSV with --kind allocation"
        )
    if {"config", "runs"} <= keys:
        return "it looks like a privtuner accuracy study; its figure is the accuracy.png beside it"
    if "$schema" in keys or {"properties", "type"} <= keys:
        return "it looks like a JSON schema, as privtuner schema prints"
    if data.get("kind") == "privtuner.ckks_cost_model":
        return "it looks like a CKKS cost model of privtuner profile; plot-fits draws its fits"
    if {"n_tasks", "n_run", "out"} <= keys:
        return "it looks like a batch --json summary; plot the table it names"
    missing = [k for k in SOLVE_RESULT_KEYS if k not in keys]
    if not missing:  # every key, but "devices" is no object
        return f"its 'devices' is a JSON {_json_type(data['devices'])}, not an object"
    return "a JSON object without key(s) " + ", ".join(map(repr, missing))


def _json_type(data: Any) -> str:
    if isinstance(data, list):
        return "array"
    if isinstance(data, str):
        return "string"
    if data is None:
        return "null"
    return "boolean" if isinstance(data, bool) else "number"


def describe_columns(columns: Sequence[str]) -> str:
    """What a table without the results columns looks like (for the refusal)."""
    from privtuner.batch.storage import IDENTITY_COLUMNS

    cols = set(columns)
    if not columns:
        return "it is empty"
    if "method" in cols and (
        "n_runs" in cols or "iteration" in cols or any(c.endswith("_mean") for c in cols)
    ):
        return (
            "it looks like the data table of a figure, written beside it by plot, reproduce "
            "or solve --plots"
        )
    if {"run", "mode", "set_name", "final_dev_accuracy"} <= cols or cols == {"run", "step", "loss"}:
        return "it looks like a table of a privtuner accuracy study"
    missing = [c for c in IDENTITY_COLUMNS if c not in cols]
    return "no column(s) " + ", ".join(map(repr, missing))


def planner_csv_rows(path: str | Path) -> list[dict[str, Any]]:
    """A planner allocation CSV (:data:`~privtuner.rows.PLANNER_COLUMNS`) as one results row
    with its allocation (``allocation_json`` in :func:`privtuner.rows.allocation_records`'
    field names), named (scenario, method, seed, status) from its ``.provenance.json``
    sidecar where there is one (solve writes the CSV only for an allocation: status
    ``feasible`` without one)."""
    from privtuner.rows import sidecar_path

    path = Path(path)
    raw: list[dict[str, Any]] = []
    alloc = []
    lines = []
    try:
        csv.field_size_limit(2**31 - 1)
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            for r in reader:
                raw.append(r)
                alloc.append(_planner_record(r, reader.line_num))
                lines.append(reader.line_num)
    except PrivtunerError as exc:
        raise PrivtunerError(f"{path} {exc}") from None
    except (OSError, ValueError, csv.Error) as exc:
        raise PrivtunerError(f"{path}: cannot read planner allocation CSV: {exc}") from None
    if not alloc:
        raise PrivtunerError(f"{path}: planner allocation CSV without device rows")
    meta: dict[str, Any] = {}
    side = sidecar_path(path)
    if side.is_file():
        try:
            value = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            value = None
        meta = dict(value) if isinstance(value, Mapping) else {}
    first = raw[0]
    missing = [ln for ln, a in zip(lines, alloc, strict=True) if a.get("energy_j") is None]
    if missing:  # a partial sum would pass for the allocation's energy
        raise PrivtunerError(
            f"{path} line {missing[0]}: energy_j_per_run: empty; the allocation figure needs "
            "every device's energy"
        )
    energies = [float(a["energy_j"]) for a in alloc]
    return [
        {
            "scenario": meta.get("scenario") or first.get("scenario") or path.stem,
            "method": meta.get("method") or first.get("method"),
            "seed": meta.get("seed"),
            "status": meta.get("status") or "feasible",
            "energy_j": sum(energies),
            "objective": meta.get("objective"),
            "allocation_json": json.dumps(alloc),
        }
    ]


def _planner_record(row: Mapping[str, Any], line: int) -> dict[str, Any]:
    """One planner CSV row (file line ``line``) in :func:`privtuner.rows.allocation_records`'
    field names; an empty numeric cell is missing (None), but ``device`` must be a device
    index (an integer >= 0): the allocation figure places each device by it."""
    from privtuner.rows import PLANNER_COLUMNS, PLANNER_SOURCE, coerce

    rec: dict[str, Any] = {}
    for col, text in row.items():
        if col not in PLANNER_COLUMNS:
            continue  # e.g. the scenario / method columns of a figure's table
        if col in ("set_name", "device_id"):
            if text:
                rec[col] = text
            continue
        if col == "device":
            value = _device_index(text)
            if value is None:
                raise PrivtunerError(
                    f"line {line}: device: must be a device index, an integer >= 0 "
                    f"(got {short(repr(text), 40)})"
                )
            rec[col] = value
            continue
        try:
            value = coerce(text, int if col == "ring_degree" else float)
        except (TypeError, ValueError):
            raise PrivtunerError(
                f"line {line}: {short(str(col), 40)}: must be a number or empty "
                f"(got {short(repr(text), 40)})"
            ) from None
        rec[PLANNER_SOURCE.get(col, col)] = value
    return rec


def _device_index(text: Any) -> int | None:
    """``text`` as a device index (``"3"``, ``"3.0"``), or None if it is none."""
    try:
        value = float(str(text))
    except ValueError:
        return None
    if not (value >= 0 and value.is_integer()):
        return None  # also NaN and infinity
    return int(value)
