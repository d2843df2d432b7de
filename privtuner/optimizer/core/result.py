"""The outcome of a solve: :class:`SolveResult` (allocation, objective, bound, gap, status).

Two statuses and a gap (style principle 3): ``termination`` says why the solver stopped
("converged", "gap_closed", "iteration_limit", "time_limit", "infeasible"), ``status`` how good
the answer is ("optimal" within ``gap``, "feasible", "infeasible", "error"). Every allocation is
re-evaluated with :meth:`AllocationProblem.evaluate`; build results with
:meth:`SolveResult.from_allocation` so that energies and latencies come from that one place.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from privtuner.arrays import json_safe, readonly
from privtuner.costmodels.privacy import SECURITY_CAP_BITS
from privtuner.units import w_to_dbm

if TYPE_CHECKING:
    from privtuner.optimizer.core.problem import AllocationProblem, Evaluation

Status = Literal["optimal", "feasible", "infeasible", "error"]
Termination = Literal["converged", "gap_closed", "iteration_limit", "time_limit", "infeasible"]
STATUSES = ("optimal", "feasible", "infeasible", "error")
TERMINATIONS = ("converged", "gap_closed", "iteration_limit", "time_limit", "infeasible")


def _empty(dtype: Any = float) -> NDArray[Any]:
    """An empty read-only array (the fields of a result without an allocation)."""
    return readonly([], dtype)


_ARRAY_FIELDS = (
    "sets",
    "bandwidth_hz",
    "tx_power_w",
    "cpu_hz",
    "server_cpu_hz",
    "security_bits",
    "security_bits_uncapped",
    "privacy",
    "rate_bps",
    "energy_compute_j",
    "energy_tx_j",
    "energy_server_j",
    "energy_j",
    "latency_compute_s",
    "latency_tx_s",
    "latency_downlink_s",
    "latency_server_s",
    "latency_s",
)


def fold_device_reasons(reasons: list[str] | tuple[str, ...]) -> list[str]:
    """Reasons ``"device <i>: <text>"`` with the same text folded into one line
    ``"devices 0, 3, 7 (3 devices): <text>"`` (first-seen order; other reasons kept as they
    are). A list of many devices is cut after 12 indices."""
    groups: dict[str, list[str]] = {}
    order: list[tuple[str, str]] = []
    for r in reasons:
        head, sep, text = r.partition(": ")
        if sep and head.startswith("device ") and head[7:].isdigit():
            if text not in groups:
                groups[text] = []
                order.append(("dev", text))
            groups[text].append(head[7:])
        else:
            order.append(("raw", r))
    out = []
    for kind, text in order:
        if kind == "raw":
            out.append(text)
            continue
        ids = groups[text]
        if len(ids) == 1:
            out.append(f"device {ids[0]}: {text}")
        else:
            shown = ", ".join(ids[:12]) + (", ..." if len(ids) > 12 else "")
            out.append(f"devices {shown} ({len(ids)} devices): {text}")
    return out


def _dbm(p_w: float) -> float:
    """Transmit power in dBm (-inf for 0 W, without a warning)."""
    with np.errstate(divide="ignore"):
        return float(w_to_dbm(p_w))


def versions() -> dict[str, str]:
    """Versions of privtuner, Python and the numerical libraries (recorded in every result)."""
    import scipy

    from privtuner import __version__

    return {
        "privtuner": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }


@dataclass(frozen=True)
class SolveResult:
    """A solver's answer for one :class:`AllocationProblem` (arrays ``[n_devices]``).

    Energies are for the whole run [J]; latencies per round [s]. ``lower_bound`` is a certified
    lower bound on the optimal objective (``None`` if the method does not certify one) and
    ``gap = (objective - lower_bound) / max(|objective|, |lower_bound|)``.

    ``security_bits`` is the estimate capped at 256 bits, the figure the default privacy
    metric optimises (:data:`privtuner.costmodels.privacy.SECURITY_CAP_BITS`);
    ``security_bits_uncapped`` the raw HE-standard extrapolation beyond the table's top.
    ``device_ids`` are the planner's names of the devices (``devices.csv`` column
    ``device_id``), empty when none were given. ``suggestions`` say what would make an
    infeasible instance feasible.
    """

    method: str
    status: Status
    termination: Termination
    problem_name: str = "problem"
    n_devices: int = 0
    sets: NDArray[np.int64] = field(default_factory=lambda: _empty(np.int64))
    set_names: tuple[str, ...] = ()
    bandwidth_hz: NDArray[np.float64] = field(default_factory=_empty)
    tx_power_w: NDArray[np.float64] = field(default_factory=_empty)
    cpu_hz: NDArray[np.float64] = field(default_factory=_empty)
    server_cpu_hz: NDArray[np.float64] = field(default_factory=_empty)
    security_bits: NDArray[np.float64] = field(default_factory=_empty)
    security_bits_uncapped: NDArray[np.float64] = field(default_factory=_empty)
    privacy: NDArray[np.float64] = field(default_factory=_empty)
    rate_bps: NDArray[np.float64] = field(default_factory=_empty)
    energy_compute_j: NDArray[np.float64] = field(default_factory=_empty)
    energy_tx_j: NDArray[np.float64] = field(default_factory=_empty)
    energy_server_j: NDArray[np.float64] = field(default_factory=_empty)
    energy_j: NDArray[np.float64] = field(default_factory=_empty)
    latency_compute_s: NDArray[np.float64] = field(default_factory=_empty)
    latency_tx_s: NDArray[np.float64] = field(default_factory=_empty)
    latency_downlink_s: NDArray[np.float64] = field(default_factory=_empty)
    latency_server_s: NDArray[np.float64] = field(default_factory=_empty)
    latency_s: NDArray[np.float64] = field(default_factory=_empty)
    total_energy_j: float = math.nan
    total_privacy: float = math.nan
    objective: float = math.nan
    lower_bound: float | None = None
    gap: float | None = None
    max_violation: float = math.nan
    violations: dict[str, float] = field(default_factory=dict)
    iterations: int = 0
    nodes: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    message: str = ""
    device_ids: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_evaluation(
        cls,
        problem: AllocationProblem,
        evaluation: Evaluation,
        *,
        method: str,
        status: Status,
        termination: Termination,
        lower_bound: float | None = None,
        **extra: Any,
    ) -> SolveResult:
        """A result whose allocation figures all come from ``evaluation``."""
        ev = evaluation
        names = problem.set_names
        obj = float(ev.objective)
        gap = None
        if lower_bound is not None and math.isfinite(lower_bound):
            denom = max(abs(obj), abs(lower_bound), 1e-300)
            gap = (obj - lower_bound) / denom  # not clamped: a negative gap is a wrong bound
        extra.setdefault("seed", problem.seed)
        extra.setdefault("versions", versions())
        return cls(
            method=method,
            status=status,
            termination=termination,
            problem_name=problem.name,
            n_devices=problem.n_devices,
            sets=ev.sets,
            set_names=tuple(names[int(k)] if 0 <= int(k) < len(names) else "?" for k in ev.sets),
            bandwidth_hz=ev.bandwidth_hz,
            tx_power_w=ev.tx_power_w,
            cpu_hz=ev.cpu_hz,
            server_cpu_hz=ev.server_cpu_hz,
            security_bits=readonly(np.minimum(ev.security_bits, SECURITY_CAP_BITS)),
            security_bits_uncapped=ev.security_bits,
            privacy=ev.privacy,
            rate_bps=ev.rate_bps,
            energy_compute_j=ev.energy_compute_j,
            energy_tx_j=ev.energy_tx_j,
            energy_server_j=ev.energy_server_j,
            energy_j=ev.energy_j,
            latency_compute_s=ev.latency_compute_s,
            latency_tx_s=ev.latency_tx_s,
            latency_downlink_s=ev.latency_downlink_s,
            latency_server_s=ev.latency_server_s,
            latency_s=ev.latency_s,
            total_energy_j=ev.total_energy_j,
            total_privacy=float(np.sum(ev.privacy)),
            objective=obj,
            lower_bound=None if lower_bound is None else float(lower_bound),
            gap=gap,
            max_violation=ev.max_violation,
            violations=dict(ev.violations),
            **extra,
        )

    @classmethod
    def from_allocation(
        cls,
        problem: AllocationProblem,
        *,
        method: str,
        sets: ArrayLike,
        bandwidth_hz: ArrayLike,
        tx_power_w: ArrayLike,
        cpu_hz: ArrayLike,
        server_cpu_hz: ArrayLike,
        status: Status,
        termination: Termination,
        lower_bound: float | None = None,
        **extra: Any,
    ) -> SolveResult:
        """Evaluate the allocation with :meth:`AllocationProblem.evaluate` and wrap it."""
        ev = problem.evaluate(
            np.asarray(sets, dtype=np.int64), bandwidth_hz, tx_power_w, cpu_hz, server_cpu_hz
        )
        return cls.from_evaluation(
            problem,
            ev,
            method=method,
            status=status,
            termination=termination,
            lower_bound=lower_bound,
            **extra,
        )

    @classmethod
    def make_infeasible(
        cls,
        problem: AllocationProblem,
        *,
        method: str,
        reasons: list[str] | tuple[str, ...],
        **extra: Any,
    ) -> SolveResult:
        """A result saying the problem has no feasible allocation, and why."""
        extra.setdefault("seed", problem.seed)
        extra.setdefault("versions", versions())
        return cls(
            method=method,
            status="infeasible",
            termination="infeasible",
            problem_name=problem.name,
            n_devices=problem.n_devices,
            reasons=tuple(reasons),
            message="; ".join(reasons),
            **extra,
        )

    @classmethod
    def error(
        cls,
        problem: AllocationProblem,
        *,
        method: str,
        message: str,
        termination: Termination = "iteration_limit",
        **extra: Any,
    ) -> SolveResult:
        """A result saying the solver found no usable allocation (``status='error'``)."""
        extra.setdefault("seed", problem.seed)
        extra.setdefault("versions", versions())
        return cls(
            method=method,
            status="error",
            termination=termination,
            problem_name=problem.name,
            n_devices=problem.n_devices,
            message=message,
            **extra,
        )

    # ------------------------------------------------------------------ views
    @property
    def has_allocation(self) -> bool:
        return self.sets.shape[0] > 0

    @property
    def feasible(self) -> bool:
        """True when the result carries a feasible allocation (status optimal or feasible)."""
        return self.status in ("optimal", "feasible") and self.has_allocation

    @property
    def success(self) -> bool:
        """Same as :attr:`feasible`: the solve produced an allocation that can be used."""
        return self.feasible

    def device_label(self, i: int) -> str:
        """Device ``i``'s planner name (``device_id``, white space folded to single spaces)
        if given, else its index."""
        name = self.device_ids[i] if i < len(self.device_ids) else ""
        return " ".join(name.split()) or str(i)

    def replace(self, **changes: Any) -> SolveResult:
        from dataclasses import replace

        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (non-finite floats become ``null``)."""
        out: dict[str, Any] = {
            "method": self.method,
            "status": self.status,
            "termination": self.termination,
            "problem_name": self.problem_name,
            "n_devices": self.n_devices,
            "objective": self.objective,
            "lower_bound": self.lower_bound,
            "gap": self.gap,
            "total_energy_j": self.total_energy_j,
            "total_privacy": self.total_privacy,
            "max_violation": self.max_violation,
            "violations": self.violations,
            "iterations": self.iterations,
            "nodes": self.nodes,
            "timings_s": self.timings_s,
            "seed": self.seed,
            "versions": self.versions,
            "options": self.options,
            "reasons": list(self.reasons),
            "suggestions": list(self.suggestions),
            "message": self.message,
            "devices": {
                "device_ids": list(self.device_ids),
                "set_names": list(self.set_names),
                **{name: getattr(self, name) for name in _ARRAY_FIELDS},
            },
            "history": self.history,
        }
        return dict(json_safe(out))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def allocation_rows(self) -> list[dict[str, Any]]:
        """One dict per device in SI units, unrounded (the batch's ``allocation_json``; the
        planner's CSV is :func:`privtuner.rows.planner_rows`). ``device_id`` only when the
        scenario named its devices."""
        rows = []
        for i in range(self.sets.shape[0]):
            row: dict[str, Any] = {"device": i}
            if self.device_ids:
                row["device_id"] = self.device_ids[i]
            row.update(
                {
                    "set_index": int(self.sets[i]),
                    "set_name": self.set_names[i],
                    **{name: float(getattr(self, name)[i]) for name in _ARRAY_FIELDS[1:]},
                }
            )
            rows.append(row)
        return rows

    def summary_lines(self) -> list[str]:
        lines = [f"method {self.method}: status {self.status} ({self.termination})"]
        if self.status == "infeasible":
            lines += [f"  infeasible: {r}" for r in fold_device_reasons(self.reasons)]
            lines += [f"  to make it feasible: {s}" for s in self.suggestions]
            return lines
        if not self.has_allocation:
            if self.message:
                lines.append(f"  {self.message}")
            return lines
        lines.append(
            f"objective {self.objective:.10g}   total energy {self.total_energy_j:.6g} J   "
            f"total privacy {self.total_privacy:.6g}"
        )
        if self.lower_bound is not None:
            gap = "n/a" if self.gap is None else f"{self.gap:.3g}"
            if self.gap is not None and self.objective is not None:
                # the gap is relative to |objective|, which holds the privacy reward too: the
                # absolute figure is what the energy term can still be off by (w_E-weighted J)
                gap += f" (absolute {self.objective - self.lower_bound:.3g})"
            lines.append(f"lower bound {self.lower_bound:.10g}   gap {gap}")
        elif self.status in ("optimal", "feasible"):
            lines.append("lower bound none (not certified)")
        if self.message:
            lines.append(f"note: {self.message}")
        total_t = self.timings_s.get("total", math.nan)
        lines.append(
            f"iterations {self.iterations}   nodes {self.nodes}   time {total_t:.3g} s   "
            f"max violation {self.max_violation:.2g}   seed {self.seed}"
        )
        return lines

    def table(self, max_rows: int = 50) -> str:
        """A readable text table: summary then one row per device (first ``max_rows``) and a
        totals line with units. ``sec_bits`` is the capped security the objective uses;
        energies are per run, latencies per round."""
        lines = self.summary_lines()
        if not self.has_allocation:
            return "\n".join(lines)
        width = max([5, *(len(self.device_label(i)) for i in range(min(self.n_devices, max_rows)))])
        width = min(width, 16)
        head = (
            f"{'dev':>{width}} {'set':<28} {'sec_bits':>8} {'b_kHz':>10} {'p_dBm':>6} "
            f"{'f_GHz':>7} {'fs_GHz':>7} {'E_cmp_J':>10} {'E_tx_J':>10} {'E_srv_J':>10} "
            f"{'T_s':>8}"
        )
        lines += ["", "energies E_* per run [J], latency T per round [s]", head]
        n = self.sets.shape[0]
        for i in range(min(n, max_rows)):
            lines.append(
                f"{self.device_label(i):>{width}.{width}} {self.set_names[i]:<28.28} "
                f"{self.security_bits[i]:>8.1f} {self.bandwidth_hz[i] / 1e3:>10.3f} "
                f"{_dbm(self.tx_power_w[i]):>6.2f} "
                f"{self.cpu_hz[i] / 1e9:>7.4f} {self.server_cpu_hz[i] / 1e9:>7.4f} "
                f"{self.energy_compute_j[i]:>10.4g} {self.energy_tx_j[i]:>10.4g} "
                f"{self.energy_server_j[i]:>10.4g} {self.latency_s[i]:>8.4f}"
            )
        if n > max_rows:
            lines.append(f"... {n - max_rows} more devices (use --csv for all)")
        lines.append(
            f"{'total':>{width}} {'':<28} {'':>8} {np.sum(self.bandwidth_hz) / 1e3:>10.3f} "
            f"{'':>6} {'':>7} {np.sum(self.server_cpu_hz) / 1e9:>7.4f} "
            f"{np.sum(self.energy_compute_j):>10.4g} {np.sum(self.energy_tx_j):>10.4g} "
            f"{np.sum(self.energy_server_j):>10.4g} {np.max(self.latency_s):>8.4f}"
        )
        lines.append(
            f"totals: energy {self.total_energy_j:.6g} J per run; bandwidth "
            f"{np.sum(self.bandwidth_hz) / 1e3:.6g} kHz; server CPU "
            f"{np.sum(self.server_cpu_hz) / 1e9:.6g} GHz; slowest device "
            f"{np.max(self.latency_s):.6g} s per round; security "
            f"{np.min(self.security_bits):.1f}-{np.max(self.security_bits):.1f} bits (capped at "
            f"{SECURITY_CAP_BITS:g}; uncapped estimate up to "
            f"{np.max(self.security_bits_uncapped):.1f})"
        )
        return "\n".join(lines)
