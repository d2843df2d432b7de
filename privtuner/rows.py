"""The results-table row: its columns and how a scenario point and a solve result fill them.

One row per (scenario point, seed, method), written by :mod:`privtuner.batch`, by
:func:`privtuner.studies.tradeoff_curve`, and read by :mod:`privtuner.plotting`. This module
holds what they share and nothing that solves or writes files:

* :data:`COLUMNS` (ordered, typed), :data:`TIMING_COLUMNS`, :data:`SWEEP_COLUMNS`;
* :func:`spec_input_columns` (inputs from a scenario point), :func:`result_output_columns`
  and :func:`allocation_records` (outputs from a :class:`~privtuner.optimizer.SolveResult`),
  :func:`versions` (provenance);
* :data:`PLANNER_COLUMNS`, :func:`planner_rows` and :func:`provenance`: the allocation CSV a
  planner hands on (``solve --csv`` and ``solve --plots``) and its sidecar JSON;
* :func:`normalize_row` (every column, typed), :func:`comparable` (without what differs
  between runs), :func:`sweep_values` / :func:`swept_columns` (the sweep axes of rows).
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from privtuner.arrays import json_safe

# ----------------------------------------------------------------------------- table schema

#: Ordered columns of a results table with their type (``str``, ``int``, ``float``, ``bool``).
#: Missing values are empty in CSV and null in Parquet. JSON-valued columns end in ``_json``.
COLUMNS: dict[str, type] = {
    # identity
    "key": str,
    "scenario": str,
    "sweep_base": str,
    "sweep_params_json": str,
    "source": str,
    "seed": int,
    "method": str,
    # inputs (from the scenario point)
    "n_devices": int,
    "bandwidth_hz": float,
    "noise_dbm_per_hz": float,
    "cell_radius_m": float,
    "shadowing_db": float,
    "fading": str,
    "p_max_dbm": float,
    "p_max_dbm_low": float,
    "p_max_dbm_high": float,
    "f_max_hz": float,
    "f_max_hz_low": float,
    "f_max_hz_high": float,
    "server_cpu_hz": float,
    "downlink_rate_bps": float,
    "objective_kind": str,
    "energy_weight": float,
    "privacy_weight": float,
    "privacy_metric": str,
    "privacy_min": float,
    "deadline_s": float,
    "rounds": int,
    "steps_per_round": int,
    "tokens_per_step": int,
    "lora_rank": int,
    "ring_degrees": str,
    "min_security_bits": float,
    "min_precision_bits": float,
    "cost_model": str,
    "packing": str,
    "rescale": str,
    "rel_tol": float,
    "max_iterations": int,
    "time_limit_s": float,
    # outputs
    "status": str,
    "termination": str,
    "message": str,
    "objective": float,
    "lower_bound": float,
    "gap": float,
    "energy_j": float,
    "energy_compute_j": float,
    "energy_tx_j": float,
    "energy_server_j": float,
    "privacy_total": float,
    "security_bits_mean": float,
    "security_bits_min": float,
    "security_bits_uncapped_mean": float,
    "ring_degree_mean": float,
    "sets": str,
    "sets_summary": str,
    "n_distinct_sets": int,
    "latency_max_s": float,
    "bandwidth_used_hz": float,
    "server_cpu_used_hz": float,
    "iterations": int,
    "nodes": int,
    "history_json": str,
    "allocation_json": str,
    # timings (not part of the results proper: they differ between runs)
    "time_build_s": float,
    "time_solve_s": float,
    "time_total_s": float,
    "solver_timings_json": str,
    # provenance
    "version_privtuner": str,
    "version_numpy": str,
    "version_cvxpy": str,
    "version_python": str,
}

#: Columns that legitimately differ between two runs of the same task (timings).
TIMING_COLUMNS: tuple[str, ...] = (
    "time_build_s",
    "time_solve_s",
    "time_total_s",
    "solver_timings_json",
)

#: Scenario dotted paths -> results column (used to label sweep axes).
SWEEP_COLUMNS: dict[str, str] = {
    "devices.count": "n_devices",
    "system.bandwidth_hz": "bandwidth_hz",
    "system.noise_dbm_per_hz": "noise_dbm_per_hz",
    "system.cell_radius_m": "cell_radius_m",
    "system.shadowing_db": "shadowing_db",
    "devices.p_max_dbm": "p_max_dbm",
    "devices.f_max_hz": "f_max_hz",
    "server.cpu_hz": "server_cpu_hz",
    "server.downlink_rate_bps": "downlink_rate_bps",
    "objective.energy_weight": "energy_weight",
    "objective.privacy_weight": "privacy_weight",
    "objective.privacy_min": "privacy_min",
    "objective.deadline_s": "deadline_s",
    "workload.rounds": "rounds",
    "workload.steps_per_round": "steps_per_round",
    "workload.lora_rank": "lora_rank",
    "fhe.min_security_bits": "min_security_bits",
    "fhe.min_precision_bits": "min_precision_bits",
    "seed": "seed",
}

# ----------------------------------------------------------------------------- rows


def normalize_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row with every :data:`COLUMNS` key, values coerced to the column type or None.

    Extra keys are kept (as they are) after the known columns.
    """
    out: dict[str, Any] = {}
    for name, typ in COLUMNS.items():
        out[name] = coerce(row.get(name), typ)
    for k, v in row.items():
        if k not in out:
            out[k] = v
    return out


def coerce(v: Any, typ: type) -> Any:
    """``v`` as column type ``typ`` (``str``, ``int``, ``float``, ``bool``); None for missing,
    empty text, NaN or infinity."""
    if v is None or (isinstance(v, str) and v == ""):
        return None  # empty text is "missing" too: CSV and Parquet read back the same
    if typ is float:
        f = float(v)
        return f if math.isfinite(f) else None
    if typ is int:
        return int(float(v)) if isinstance(v, str) else int(v)
    if typ is bool:
        if isinstance(v, str):
            return v.strip().lower() in {"1", "true", "yes"}
        return bool(v)
    return str(v)


_VERSIONS: dict[str, str] = {}


def versions() -> dict[str, str]:
    """Provenance columns: privtuner, numpy, cvxpy and Python versions (cached)."""
    if not _VERSIONS:
        from importlib import metadata

        import numpy as np

        import privtuner

        try:  # the installed distribution's version: importing cvxpy takes ~1 s per process
            cvx = metadata.version("cvxpy")
        except metadata.PackageNotFoundError:  # pragma: no cover - cvxpy is a core dependency
            cvx = ""
        _VERSIONS.update(
            version_privtuner=privtuner.__version__,
            version_numpy=np.__version__,
            version_cvxpy=cvx,
            version_python=platform.python_version(),
        )
    return dict(_VERSIONS)


def _mid_low_high(value: Any) -> tuple[float, float, float]:
    """(midpoint, low, high) of a per-device scenario value (number or uniform range)."""
    low = getattr(value, "low", None)
    if low is None:
        v = float(value)
        return v, v, v
    high = float(value.high)
    return 0.5 * (float(low) + high), float(low), high


def spec_input_columns(spec: Any) -> dict[str, Any]:
    """The input columns of a results row, flattened from a scenario point."""
    dev = spec.devices
    n = len(dev.explicit) if dev.explicit is not None else int(dev.count)
    p_mid, p_low, p_high = _mid_low_high(dev.p_max_dbm)
    f_mid, f_low, f_high = _mid_low_high(dev.f_max_hz)
    if dev.explicit is not None:
        explicit_p = [d.p_max_dbm for d in dev.explicit if d.p_max_dbm is not None]
        explicit_f = [d.f_max_hz for d in dev.explicit if d.f_max_hz is not None]
        if explicit_p:
            p_low, p_high = min([p_low, *explicit_p]), max([p_high, *explicit_p])
        if explicit_f:
            f_low, f_high = min([f_low, *explicit_f]), max([f_high, *explicit_f])
    return {
        "n_devices": n,
        "bandwidth_hz": float(spec.system.bandwidth_hz),
        "noise_dbm_per_hz": float(spec.system.noise_dbm_per_hz),
        "cell_radius_m": float(spec.system.cell_radius_m),
        "shadowing_db": float(spec.system.shadowing_db),
        "fading": str(spec.system.fading),
        "p_max_dbm": p_mid,
        "p_max_dbm_low": p_low,
        "p_max_dbm_high": p_high,
        "f_max_hz": f_mid,
        "f_max_hz_low": f_low,
        "f_max_hz_high": f_high,
        "server_cpu_hz": float(spec.server.cpu_hz),
        "downlink_rate_bps": float(spec.server.downlink_rate_bps),
        "objective_kind": str(spec.objective.kind),
        "energy_weight": float(spec.objective.energy_weight),
        "privacy_weight": float(spec.objective.privacy_weight),
        "privacy_metric": str(spec.objective.privacy_metric),
        "privacy_min": float(spec.objective.privacy_min),
        "deadline_s": float(spec.objective.deadline_s),
        "rounds": int(spec.workload.rounds),
        "steps_per_round": int(spec.workload.steps_per_round),
        "tokens_per_step": int(spec.workload.tokens_per_step),
        "lora_rank": int(spec.workload.lora_rank),
        "ring_degrees": ",".join(str(d) for d in spec.fhe.ring_degrees),
        "min_security_bits": float(spec.fhe.min_security_bits),
        "min_precision_bits": float(spec.fhe.min_precision_bits),
        "cost_model": str(spec.fhe.cost_model),
        "packing": str(spec.fhe.packing),
        "rescale": str(spec.fhe.rescale),
        "rel_tol": float(spec.solver.rel_tol),
        "max_iterations": int(spec.solver.max_iterations),
        "time_limit_s": float(spec.solver.time_limit_s),
    }


def _num(x: Any) -> float | None:
    """A finite float, or None (for missing / infinite / NaN values)."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def allocation_records(result: Any) -> list[dict[str, Any]]:
    """Per-device allocation of a :class:`~privtuner.optimizer.SolveResult` as plain dicts:
    :meth:`SolveResult.allocation_rows` (SI units) plus ``ring_degree`` parsed from the set
    name. Empty for a result without an allocation (infeasible / error)."""
    rows = [dict(r) for r in result.allocation_rows()]
    for r in rows:
        r["ring_degree"] = _ring_degree(str(r.get("set_name", "")))
    return [json_safe(r) for r in rows]


def _ring_degree(set_name: str) -> int | None:
    """Ring degree N parsed from a catalogue set name ``N<degree>_q..._s...``."""
    if set_name.startswith("N"):
        head = set_name[1:].split("_", 1)[0]
        if head.isdigit():
            return int(head)
    return None


def _sum(values: Iterable[Any]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(sum(vals)) if vals else None


def result_output_columns(result: Any) -> dict[str, Any]:
    """The output columns of a results row from a SolveResult (see :data:`COLUMNS`)."""
    alloc = allocation_records(result)
    sec = [a["security_bits"] for a in alloc if a.get("security_bits") is not None]
    raw = [
        a["security_bits_uncapped"] for a in alloc if a.get("security_bits_uncapped") is not None
    ]
    ring = [a["ring_degree"] for a in alloc if a.get("ring_degree") is not None]
    counts: dict[str, int] = {}
    for a in alloc:
        counts[a["set_name"]] = counts.get(a["set_name"], 0) + 1
    reasons = tuple(result.reasons)
    message = "; ".join(str(r) for r in reasons) if reasons else str(result.message or "")
    latencies = [a["latency_s"] for a in alloc if a.get("latency_s") is not None]
    has = bool(alloc)
    return {
        "status": str(result.status),
        "termination": str(result.termination or ""),
        "message": message,
        "objective": _num(result.objective) if has else None,
        "lower_bound": _num(result.lower_bound),
        "gap": _num(result.gap),
        "energy_j": _num(result.total_energy_j) if has else None,
        "energy_compute_j": _sum(a.get("energy_compute_j") for a in alloc),
        "energy_tx_j": _sum(a.get("energy_tx_j") for a in alloc),
        "energy_server_j": _sum(a.get("energy_server_j") for a in alloc),
        "privacy_total": _num(result.total_privacy) if has else None,
        "security_bits_mean": float(sum(sec) / len(sec)) if sec else None,
        "security_bits_min": float(min(sec)) if sec else None,
        "security_bits_uncapped_mean": float(sum(raw) / len(raw)) if raw else None,
        "ring_degree_mean": float(sum(ring) / len(ring)) if ring else None,
        "sets": ",".join(str(a["set_name"]) for a in alloc),
        "sets_summary": ";".join(f"{k}x{v}" for k, v in sorted(counts.items())),
        "n_distinct_sets": len(counts) if has else None,
        "latency_max_s": max(latencies) if latencies else None,
        "bandwidth_used_hz": _sum(a.get("bandwidth_hz") for a in alloc),
        "server_cpu_used_hz": _sum(a.get("server_cpu_hz") for a in alloc),
        "iterations": _int_or_none(result.iterations),
        "nodes": _int_or_none(result.nodes),
        "history_json": json.dumps(json_safe(list(result.history or []))),
        "allocation_json": json.dumps(alloc),
        "solver_timings_json": json.dumps(json_safe(dict(result.timings_s or {}))),
    }


def _int_or_none(x: Any) -> int | None:
    return None if x is None else int(x)


def _is_timing_key(key: str) -> bool:
    return key.startswith(("time", "wall", "elapsed")) or key.endswith(("time_s", "elapsed_s"))


def _strip_history_timings(text: Any) -> Any:
    if not text:
        return None
    history = json.loads(str(text))
    if not isinstance(history, list):
        return text
    return json.dumps(
        [
            {k: v for k, v in h.items() if not _is_timing_key(str(k))} if isinstance(h, dict) else h
            for h in history
        ]
    )


def comparable(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows without what legitimately differs between two runs of the same tasks: the
    :data:`TIMING_COLUMNS` and timing entries of the solver history (``time_s``, ...); empty
    text as None. Two runs of the same tasks (local, dask, resumed) compare equal."""
    out = []
    for r in rows:
        row = {k: (None if v == "" else v) for k, v in r.items() if k not in TIMING_COLUMNS}
        if "history_json" in row:
            row["history_json"] = _strip_history_timings(row["history_json"])
        out.append(row)
    return out


# ----------------------------------------------------------------------------- sweep axes


def sweep_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep combination of a row (``{}`` for a scenario without a sweep)."""
    text = row.get("sweep_params_json")
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def swept_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Results columns that vary over the sweep keys of ``rows`` (seed excluded), in order."""
    keys: list[str] = []
    for r in rows:
        for k in sweep_values(r):
            col = SWEEP_COLUMNS.get(k)
            if col and col != "seed" and col not in keys:
                keys.append(col)
    return [c for c in keys if len({r.get(c) for r in rows}) > 1]


# ----------------------------------------------------------------------------- planner CSV

#: Columns of the planner's allocation CSV (``solve --csv``, ``solve --plots``): name ->
#: (meaning with unit, significant digits kept; 0 = as is). Energies are for the whole
#: fine-tuning run, latencies per round; ``security_bits`` is what the default privacy
#: metric optimises (capped at 256 bits), ``security_bits_uncapped`` the raw estimate.
PLANNER_COLUMNS: dict[str, tuple[str, int]] = {
    "device": ("device index in the scenario (0-based)", 0),
    "device_id": ("device name from the scenario's devices.csv (empty if none)", 0),
    "set_name": ("chosen CKKS parameter set", 0),
    "ring_degree": ("ring degree N of the set", 0),
    "security_bits": ("security of the set [bits], capped at 256 (what the solver uses)", 4),
    "security_bits_uncapped": ("raw HE-standard estimate [bits], extrapolated past 256", 4),
    "privacy": ("privacy value Phi of the set under the scenario's privacy metric", 6),
    "bandwidth_hz": ("uplink bandwidth b_n [Hz]", 9),
    "tx_power_w": ("transmit power p_n [W]", 6),
    "tx_power_dbm": ("transmit power p_n [dBm]", 5),
    "cpu_hz": ("device CPU frequency f_n [Hz]", 9),
    "server_cpu_hz": ("server CPU frequency for the device f_s,n [Hz]", 9),
    "rate_bps": ("uplink rate [bit/s]", 6),
    "energy_compute_j_per_run": ("device compute energy over the run [J]", 6),
    "energy_tx_j_per_run": ("uplink transmit energy over the run [J]", 6),
    "energy_server_j_per_run": ("server energy for the device over the run [J]", 6),
    "energy_j_per_run": ("total energy for the device over the run [J]", 6),
    "latency_compute_s_per_round": ("device compute latency per round [s]", 6),
    "latency_tx_s_per_round": ("uplink latency per round [s]", 6),
    "latency_downlink_s_per_round": ("downlink latency per round [s]", 6),
    "latency_server_s_per_round": ("server latency per round [s]", 6),
    "latency_s_per_round": ("total latency per round [s] (<= the deadline)", 6),
}

#: Planner column -> SolveResult per-device field (where the names differ).
PLANNER_SOURCE = {
    "energy_compute_j_per_run": "energy_compute_j",
    "energy_tx_j_per_run": "energy_tx_j",
    "energy_server_j_per_run": "energy_server_j",
    "energy_j_per_run": "energy_j",
    "latency_compute_s_per_round": "latency_compute_s",
    "latency_tx_s_per_round": "latency_tx_s",
    "latency_downlink_s_per_round": "latency_downlink_s",
    "latency_server_s_per_round": "latency_server_s",
    "latency_s_per_round": "latency_s",
}


#: Planner columns that share a capacity (spec section 4: sum_n b_n <= B, sum_n f_s,n <= F_s):
#: their rounded values never sum to more than the full-precision allocation's
#: (:func:`round_within_sum`).
SHARED_RESOURCE_COLUMNS = ("bandwidth_hz", "server_cpu_hz")

#: Planner columns under a per-device upper limit (spec section 4: p_n <= p_max,n,
#: f_n <= f_max,n, latency <= the deadline): rounded down (:func:`significant_floor`), so a
#: value the solver kept at its limit is not written half a unit of its last digit above it.
DEVICE_LIMIT_COLUMNS = ("tx_power_w", "tx_power_dbm", "cpu_hz", "latency_s_per_round")


def significant(x: Any, digits: int) -> Any:
    """``x`` rounded to ``digits`` significant digits (non-floats and ``digits=0`` as is)."""
    if digits <= 0 or not isinstance(x, float) or not math.isfinite(x) or x == 0.0:
        return x
    return float(f"{x:.{digits}g}")


def significant_floor(x: Any, digits: int) -> Any:
    """``x`` (its shortest repr, the number a CSV or JSON holds) rounded down (towards -inf)
    to ``digits`` significant digits, on the grid of ``x``'s own decimal exponent (as
    :func:`significant`, non-floats, ``digits=0``, ``0.0`` and non-finite values as is)."""
    from decimal import ROUND_FLOOR, Decimal

    if digits <= 0 or not isinstance(x, float) or not math.isfinite(x) or x == 0.0:
        return x
    d = Decimal(repr(x))
    return float(d.quantize(Decimal(1).scaleb(d.adjusted() - digits + 1), rounding=ROUND_FLOOR))


def round_within_sum(values: Sequence[Any], digits: int) -> list[Any]:
    """``values`` (floats; None kept) rounded to ``digits`` significant digits so that the
    rounded sum, as written (decimal), is at most the sum of ``values`` (as written: their
    shortest repr; so values already rounded are kept as they are): each value is
    rounded to nearest; while the sum is above the exact one, the value rounded up the most
    (absolute) is rounded down instead. Every value stays within one unit of its last kept
    digit, and a shared resource's rounded shares stay within what the allocation itself
    uses, hence within the capacity (README, ``solve --csv``)."""
    from decimal import Decimal

    def dec(v: float) -> Decimal:
        return Decimal(repr(v))  # what the CSV holds (csv_cell writes the repr)

    out = [significant(v, digits) for v in values]
    idx = [i for i, v in enumerate(values) if isinstance(v, float) and math.isfinite(v)]
    bound = sum((dec(values[i]) for i in idx), Decimal(0))
    total = sum((dec(out[i]) for i in idx), Decimal(0))
    ups = sorted(
        (i for i in idx if dec(out[i]) > dec(values[i])),
        key=lambda i: dec(out[i]) - dec(values[i]),
        reverse=True,
    )
    for i in ups:
        if total <= bound:
            break
        down = significant_floor(values[i], digits)
        total -= dec(out[i]) - dec(down)
        out[i] = down
    return out


def planner_rows(result: Any) -> list[dict[str, Any]]:
    """The allocation of a :class:`~privtuner.optimizer.SolveResult` as the planner's CSV rows
    (:data:`PLANNER_COLUMNS`, rounded to the digits listed there). Empty without an
    allocation."""
    return planner_records(allocation_records(result))


def planner_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-device allocation records in SI units (:func:`allocation_records`, a results
    row's ``allocation_json``) as planner CSV rows (:data:`PLANNER_COLUMNS`, rounded; the
    shared resources, :data:`SHARED_RESOURCE_COLUMNS`, by :func:`round_within_sum`, so their
    sum never exceeds the full-precision sum, which the solver kept within the capacity; the
    per-device limited ones, :data:`DEVICE_LIMIT_COLUMNS`, down)."""
    from privtuner.units import w_to_dbm

    out = []
    fulls = []
    for rec in records:
        full = dict(rec)
        p_w = _num(full.get("tx_power_w"))
        full["tx_power_dbm"] = float(w_to_dbm(p_w)) if p_w else None
        if full.get("ring_degree") is None:
            full["ring_degree"] = _ring_degree(str(full.get("set_name", "")))
        row = {}
        for col, (_, digits) in PLANNER_COLUMNS.items():
            rounded = significant_floor if col in DEVICE_LIMIT_COLUMNS else significant
            row[col] = rounded(full.get(PLANNER_SOURCE.get(col, col)), digits)
        out.append(row)
        fulls.append(full)
    for col in SHARED_RESOURCE_COLUMNS:  # their sum within the allocation's (the capacity)
        exact = [_float_or_none(f.get(col)) for f in fulls]
        for row, v in zip(out, round_within_sum(exact, PLANNER_COLUMNS[col][1]), strict=True):
            row[col] = v
    return out


def _float_or_none(x: Any) -> float | None:
    return None if x is None else float(x)


def device_ids(spec: Any) -> tuple[str, ...]:
    """The ``device_id`` of each explicit device of a scenario point (empty text where a row
    has none), or ``()`` when no device is named."""
    explicit = getattr(spec.devices, "explicit", None) or []
    ids = tuple(str(getattr(d, "device_id", None) or "") for d in explicit)
    return ids if any(ids) else ()


def provenance(
    result: Any,
    *,
    scenario: str = "",
    source: str = "",
    protocol: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the allocation CSV came from (its sidecar JSON): scenario, method, seed, status,
    gap, objective, totals with units, the protocol options the costs were priced with
    (``fhe.packing``, ``fhe.rescale``), the columns' meanings and the versions."""
    rows = allocation_records(result)

    def total(key: str) -> float | None:
        return _sum(r.get(key) for r in rows)

    return json_safe(
        {
            "scenario": scenario or result.problem_name,
            "scenario_file": source,
            "method": result.method,
            "seed": result.seed,
            "status": result.status,
            "termination": result.termination,
            "objective": result.objective,
            "lower_bound": result.lower_bound,
            "gap": result.gap,
            "n_devices": result.n_devices,
            "totals": {
                "energy_j_per_run": total("energy_j"),
                "energy_compute_j_per_run": total("energy_compute_j"),
                "energy_tx_j_per_run": total("energy_tx_j"),
                "energy_server_j_per_run": total("energy_server_j"),
                "bandwidth_hz": total("bandwidth_hz"),
                "server_cpu_hz": total("server_cpu_hz"),
                "latency_max_s_per_round": max(
                    (r["latency_s"] for r in rows if r.get("latency_s") is not None),
                    default=None,
                ),
            },
            "protocol": dict(protocol or {}),
            "reasons": list(result.reasons),
            "suggestions": list(getattr(result, "suggestions", ())),
            "columns": {k: v[0] for k, v in PLANNER_COLUMNS.items()},
            "versions": dict(result.versions or {}),
        }
    )


def sidecar_path(csv_path: str | Path) -> Path:
    """The provenance sidecar of an allocation CSV: ``allocation.csv`` ->
    ``allocation.provenance.json`` (same folder)."""
    p = Path(csv_path)
    return p.with_name(p.stem + ".provenance.json")
