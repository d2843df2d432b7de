"""The allocation problem (spec sections 3 and 4): :class:`AllocationProblem` and
:class:`Evaluation`.

Per device n with CKKS set k = theta_n, per round (spec section 4; the formulas are
computed by the kernel ``core/model.py``)::

    r_n   = b_n log2(1 + p_n g_n / (N0 b_n))                 uplink rate [bit/s]
    tau_n = S_up,k / r_n                                     uplink time [s]
    E_n   = kappa_d,n C_dev,k f_n^2 + p_n tau_n + kappa_s C_srv,k f_s,n^2        [J]
    T_n   = C_dev,k / f_n + tau_n + S_down,k / r_dl + C_srv,k / f_s,n <= T_max  [s]
    sum_n b_n <= B,  sum_n f_s,n <= F_s,  0 <= p_n <= p_max,n,  0 < f_n <= f_max,n

Objective (energies for the whole run, ``rounds`` x per round)::

    weighted:    min sum_n [ w_E rounds E_n - w_P Phi(theta_n) ]
    constrained: min sum_n   w_E rounds E_n     s.t. Phi(theta_n) >= Phi_min (a set filter)

:meth:`AllocationProblem.evaluate` is the single source of truth: every solver's allocation is
re-evaluated with it (energies, latencies, objective, constraint violations).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from privtuner.arrays import readonly
from privtuner.costmodels.types import CostTable
from privtuner.errors import CostModelError, SolverError
from privtuner.optimizer.core.model import device_terms, energy_objective, run_energy_j

if TYPE_CHECKING:
    from privtuner.scenario.schema import FheSpec, ObjectiveSpec, ScenarioSpec
    from privtuner.system_sim.instance import SystemInstance

#: Relative constraint violation below which an allocation counts as feasible. All solvers and
#: tests use this one tolerance (violations are relative: to B, F_s, T_max, p_max, f_max).
FEAS_TOL_REL = 1e-7

ObjectiveKind = Literal["weighted", "constrained"]


def constant_objective_reason(kind: str, energy_weight: float, privacy_weight: float) -> str | None:
    """Why no allocation is better than another, or ``None``: w_E = 0 and no privacy term
    (``privacy_weight`` 0, or kind ``constrained``, whose privacy is a constraint). Every
    feasible allocation is then optimal, and a solver would search to its limits for
    nothing, so such a problem is refused (spec section 4 objective)."""
    if energy_weight != 0 or (kind == "weighted" and privacy_weight != 0):
        return None
    why = "kind constrained" if kind == "constrained" else "privacy_weight 0"
    return (
        f"the objective is constant (energy_weight 0 and {why}): every feasible allocation is "
        "optimal; give energy_weight (or, weighted, privacy_weight) a positive value"
    )


@dataclass(frozen=True)
class Evaluation:
    """An allocation evaluated by :meth:`AllocationProblem.evaluate` (arrays ``[n_devices]``).

    Energies are for the whole run (``rounds`` x per round) in joules; latencies are per round
    in seconds. ``violations`` maps a constraint name to its largest *relative* violation
    (0 when satisfied); ``max_violation`` is their maximum.
    """

    sets: NDArray[np.int64]
    bandwidth_hz: NDArray[np.float64]
    tx_power_w: NDArray[np.float64]
    cpu_hz: NDArray[np.float64]
    server_cpu_hz: NDArray[np.float64]
    rate_bps: NDArray[np.float64]
    energy_compute_j: NDArray[np.float64]
    energy_tx_j: NDArray[np.float64]
    energy_server_j: NDArray[np.float64]
    latency_compute_s: NDArray[np.float64]
    latency_tx_s: NDArray[np.float64]
    latency_downlink_s: NDArray[np.float64]
    latency_server_s: NDArray[np.float64]
    privacy: NDArray[np.float64]
    security_bits: NDArray[np.float64]
    objective: float
    violations: dict[str, float]

    @property
    def energy_j(self) -> NDArray[np.float64]:
        """Total energy per device for the whole run [J]."""
        return self.energy_compute_j + self.energy_tx_j + self.energy_server_j

    @property
    def latency_s(self) -> NDArray[np.float64]:
        """Per-round latency per device [s]."""
        return (
            self.latency_compute_s
            + self.latency_tx_s
            + self.latency_downlink_s
            + self.latency_server_s
        )

    @property
    def total_energy_j(self) -> float:
        return float(np.sum(self.energy_j))

    @property
    def max_violation(self) -> float:
        return max(self.violations.values()) if self.violations else 0.0

    def is_feasible(self, tol: float = FEAS_TOL_REL) -> bool:
        return bool(self.max_violation <= tol)


@dataclass(frozen=True)
class AllocationProblem:
    """A :class:`SystemInstance` + a :class:`CostTable` + the objective (spec sections 3-4).

    Arrays ``[n_devices]`` (read-only): ``gain_lin`` g_n, ``p_max_w``, ``f_max_hz``,
    ``kappa_dev``; ``allowed`` ``[n_devices, n_sets]``: the sets a device may use (security,
    precision and, for ``constrained``, the privacy floor). Solvers never mutate a problem.
    """

    gain_lin: NDArray[np.float64]
    p_max_w: NDArray[np.float64]
    f_max_hz: NDArray[np.float64]
    kappa_dev: NDArray[np.float64]
    bandwidth_hz: float
    noise_w_per_hz: float
    server_cpu_hz: float
    kappa_srv: float
    downlink_rate_bps: float
    costs: CostTable
    allowed: NDArray[np.bool_]
    objective_kind: ObjectiveKind = "weighted"
    energy_weight: float = 1.0
    privacy_weight: float = 0.0
    privacy_min: float = 0.0
    deadline_s: float = 1.0
    seed: int = 0
    name: str = "problem"
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = np.asarray(self.gain_lin).shape[0] if np.ndim(self.gain_lin) == 1 else -1
        problems: list[str] = []
        if n < 1:
            raise SolverError("AllocationProblem.gain_lin must be a non-empty 1-D array")
        for name in ("gain_lin", "p_max_w", "f_max_hz", "kappa_dev"):
            arr = readonly(getattr(self, name))
            if arr.shape != (n,):
                problems.append(f"{name}: shape {arr.shape}, expected ({n},)")
            elif not np.all(np.isfinite(arr)):
                problems.append(f"{name}: must be finite")
            object.__setattr__(self, name, arr)
        if not problems:
            if np.any(self.gain_lin <= 0):
                problems.append("gain_lin: must be > 0")
            if np.any(self.p_max_w < 0):
                problems.append("p_max_w: must be >= 0")
            if np.any(self.f_max_hz <= 0):
                problems.append("f_max_hz: must be > 0")
            if np.any(self.kappa_dev < 0):
                problems.append("kappa_dev: must be >= 0")
        for name in (
            "bandwidth_hz",
            "noise_w_per_hz",
            "server_cpu_hz",
            "downlink_rate_bps",
            "deadline_s",
        ):
            v = float(getattr(self, name))
            if not (np.isfinite(v) and v > 0):
                problems.append(f"{name}: must be finite and > 0 (got {v:g})")
            object.__setattr__(self, name, v)
        for name in ("kappa_srv", "energy_weight", "privacy_weight", "privacy_min"):
            v = float(getattr(self, name))
            if not (np.isfinite(v) and v >= 0):
                problems.append(f"{name}: must be finite and >= 0 (got {v:g})")
            object.__setattr__(self, name, v)
        if self.objective_kind not in ("weighted", "constrained"):
            problems.append(
                f"objective_kind: must be 'weighted' or 'constrained' (got {self.objective_kind!r})"
            )
        c = self.costs
        for name in ("device_cycles", "server_cycles", "uplink_bits", "downlink_bits"):
            arr = getattr(c, name)
            if not (np.all(np.isfinite(arr)) and np.all(arr >= 0)):
                problems.append(f"costs.{name}: must be finite and >= 0")
        if c.n_sets < 1:
            problems.append("costs: the cost table has no CKKS set")
        allowed = readonly(self.allowed, dtype=bool)
        if allowed.shape != (n, c.n_sets):
            problems.append(f"allowed: shape {allowed.shape}, expected ({n}, {c.n_sets})")
        object.__setattr__(self, "allowed", allowed)
        if problems:
            raise SolverError("invalid AllocationProblem: " + "; ".join(problems))

    # ------------------------------------------------------------------ sizes and helpers
    @property
    def n_devices(self) -> int:
        return int(self.gain_lin.shape[0])

    @property
    def n_sets(self) -> int:
        return self.costs.n_sets

    @property
    def rounds(self) -> int:
        return int(self.costs.rounds)

    @property
    def set_names(self) -> list[str]:
        return self.costs.set_names

    @property
    def energy_scale(self) -> float:
        """Objective weight of one joule of per-round energy: w_E x rounds."""
        return self.energy_weight * self.rounds

    @property
    def constant_objective(self) -> str | None:
        """Why the objective is constant (see :func:`constant_objective_reason`), or None."""
        return constant_objective_reason(
            self.objective_kind, self.energy_weight, self.privacy_weight
        )

    @property
    def set_constant(self) -> NDArray[np.float64]:
        """Per-set additive objective term ``[n_sets]``: -w_P Phi_k (weighted), 0 (constrained)."""
        if self.objective_kind == "weighted":
            return -self.privacy_weight * self.costs.privacy
        return np.zeros(self.n_sets)

    @property
    def snr_hz(self) -> NDArray[np.float64]:
        """Gamma_n = p_max,n g_n / N0 [Hz]: the rate at max power is b log2(1 + Gamma_n / b)."""
        return self.p_max_w * self.gain_lin / self.noise_w_per_hz

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_instance(
        cls,
        instance: SystemInstance,
        costs: CostTable,
        objective: ObjectiveSpec,
        fhe: FheSpec,
    ) -> AllocationProblem:
        """Combine a drawn instance, a cost table and the objective / FHE restrictions.

        A set is allowed when its security >= ``fhe.min_security_bits``, its precision >=
        ``fhe.min_precision_bits``, its ring degree is in ``fhe.ring_degrees``, its scale bits
        in ``[fhe.scale_bits_min, fhe.scale_bits_max]`` and, for ``constrained``, its privacy
        >= ``objective.privacy_min``.
        """
        if costs.privacy_metric != objective.privacy_metric:
            raise CostModelError(
                f"objective.privacy_metric: the cost table was built for "
                f"'{costs.privacy_metric}', the objective asks for '{objective.privacy_metric}'"
            )
        ok = costs.security_bits >= fhe.min_security_bits
        if fhe.min_precision_bits > 0:  # unknown (NaN) precision passes only a zero floor
            ok &= costs.precision_bits >= fhe.min_precision_bits
        ok &= np.array([p.poly_modulus_degree in fhe.ring_degrees for p in costs.params])
        ok &= np.array(
            [fhe.scale_bits_min <= p.scale_bits <= fhe.scale_bits_max for p in costs.params]
        )
        if objective.kind == "constrained":
            ok &= costs.privacy >= objective.privacy_min
        allowed = np.broadcast_to(ok, (instance.n_devices, costs.n_sets)).copy()
        return cls(
            gain_lin=instance.gain_lin,
            p_max_w=instance.p_max_w,
            f_max_hz=instance.f_max_hz,
            kappa_dev=instance.kappa_dev,
            bandwidth_hz=instance.bandwidth_hz,
            noise_w_per_hz=instance.noise_w_per_hz,
            server_cpu_hz=instance.server_cpu_hz,
            kappa_srv=instance.kappa_srv,
            downlink_rate_bps=instance.downlink_rate_bps,
            costs=costs,
            allowed=allowed,
            objective_kind=objective.kind,
            energy_weight=objective.energy_weight,
            privacy_weight=objective.privacy_weight,
            privacy_min=objective.privacy_min,
            deadline_s=objective.deadline_s,
            seed=instance.seed,
            name=instance.name,
            meta={
                "min_security_bits": fhe.min_security_bits,
                "min_precision_bits": fhe.min_precision_bits,
            },
        )

    @classmethod
    def from_spec(cls, spec: ScenarioSpec, seed: int | None = None) -> AllocationProblem:
        """``build_instance(spec, seed)`` + ``build_cost_table(spec)`` + the spec's objective.

        The same problem as :func:`privtuner.pipeline.build_problem` (which the CLI, the batch
        and the studies use), without its cost-table cache: the optimiser's core cannot import
        the pipeline, which imports it."""
        from privtuner.costmodels import build_cost_table
        from privtuner.system_sim import build_instance

        instance = build_instance(spec, seed)
        costs = build_cost_table(spec)
        return cls.from_instance(instance, costs, spec.objective, spec.fhe)

    # ------------------------------------------------------------------ derived problems
    def replace(self, **changes: Any) -> AllocationProblem:
        """A new problem with fields replaced (validated again)."""
        return replace(self, **changes)

    def with_bandwidth(self, bandwidth_hz: float) -> AllocationProblem:
        return self.replace(bandwidth_hz=float(bandwidth_hz))

    def with_deadline(self, deadline_s: float) -> AllocationProblem:
        return self.replace(deadline_s=float(deadline_s))

    def with_server_cpu(self, server_cpu_hz: float) -> AllocationProblem:
        return self.replace(server_cpu_hz=float(server_cpu_hz))

    def with_allowed(self, allowed: ArrayLike) -> AllocationProblem:
        return self.replace(allowed=np.asarray(allowed, dtype=bool))

    def subset(self, idx: Any) -> AllocationProblem:
        """The problem restricted to devices ``idx`` (same system constants and sets)."""
        return self.replace(
            gain_lin=self.gain_lin[idx],
            p_max_w=self.p_max_w[idx],
            f_max_hz=self.f_max_hz[idx],
            kappa_dev=self.kappa_dev[idx],
            allowed=self.allowed[idx],
        )

    # ------------------------------------------------------------------ evaluation
    def _check_allocation(
        self,
        sets: ArrayLike,
        bandwidth_hz: ArrayLike,
        tx_power_w: ArrayLike,
        cpu_hz: ArrayLike,
        server_cpu_hz: ArrayLike,
    ) -> tuple[NDArray[Any], ...]:
        """The allocation as arrays ``[n]`` (set indices, b, p, f, f_s); a shape or type
        error is a :class:`SolverError`."""
        n = self.n_devices
        k = np.asarray(sets)
        if k.shape != (n,) or not np.issubdtype(k.dtype, np.integer):
            raise SolverError(f"evaluate: sets must be {n} integer set indices (got {k!r})")
        arrays = [k]
        for name, v in (
            ("bandwidth_hz", bandwidth_hz),
            ("tx_power_w", tx_power_w),
            ("cpu_hz", cpu_hz),
            ("server_cpu_hz", server_cpu_hz),
        ):
            a = np.asarray(v, dtype=float)
            if a.shape != (n,):
                raise SolverError(f"evaluate: {name} must have shape ({n},), got {a.shape}")
            arrays.append(a)
        return tuple(arrays)

    def _violations(
        self,
        sets_allowed: bool,
        latency_s: NDArray[np.float64],
        b: NDArray[np.float64],
        p: NDArray[np.float64],
        f: NDArray[np.float64],
        fs: NDArray[np.float64],
    ) -> dict[str, float]:
        """Relative constraint violations (definitions in :meth:`evaluate`); NaN is inf."""
        n = self.n_devices
        violations: dict[str, float] = {"allowed": 0.0 if sets_allowed else float("inf")}
        violations["deadline"] = max(
            0.0, float(np.max((latency_s - self.deadline_s) / self.deadline_s))
        )
        violations["bandwidth"] = max(
            0.0, (float(np.sum(b)) - self.bandwidth_hz) / self.bandwidth_hz
        )
        violations["server_cpu"] = max(
            0.0, (float(np.sum(fs)) - self.server_cpu_hz) / self.server_cpu_hz
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            pv = np.where(
                p > self.p_max_w, (p - self.p_max_w) / np.maximum(self.p_max_w, 1e-300), 0.0
            )
        violations["tx_power"] = max(0.0, float(np.max(pv)), float(np.max(-p)) if n else 0.0)
        violations["cpu"] = max(0.0, float(np.max((f - self.f_max_hz) / self.f_max_hz)))
        violations["nonnegative"] = max(float(np.max(-b)), float(np.max(-fs)), 0.0)
        for key, val in violations.items():
            if np.isnan(val):
                violations[key] = float("inf")
        return violations

    def evaluate(
        self,
        sets: ArrayLike,
        bandwidth_hz: ArrayLike,
        tx_power_w: ArrayLike,
        cpu_hz: ArrayLike,
        server_cpu_hz: ArrayLike,
    ) -> Evaluation:
        """Energies, latencies, objective and relative constraint violations of an allocation.

        Uses the model of spec section 4 exactly (the kernel ``core.model.device_terms``).
        Violations (relative):
        ``bandwidth`` (sum b - B)/B, ``server_cpu`` (sum f_s - F_s)/F_s, ``deadline``
        max (T_n - T_max)/T_max, ``tx_power`` max (p - p_max)/p_max and negative p,
        ``cpu`` max (f - f_max)/f_max, ``nonnegative`` negative b or f_s, ``allowed``
        (inf if a device uses a set it may not use, or an index out of range).
        A device that must upload with zero rate (or compute at zero frequency) has infinite
        latency and so an infinite deadline violation.
        """
        k, b, p, f, fs = self._check_allocation(
            sets, bandwidth_hz, tx_power_w, cpu_hz, server_cpu_hz
        )
        in_range = (k >= 0) & (k < self.n_sets)
        ks = np.where(in_range, k, 0).astype(np.int64)
        ok_set = in_range & self.allowed[np.arange(self.n_devices), ks]
        c = self.costs
        terms = device_terms(self, ks, b, p, f, fs)
        violations = self._violations(bool(np.all(ok_set)), terms.latency_s, b, p, f, fs)
        e_dev_j, e_tx_j, e_srv_j = run_energy_j(self, terms)
        objective = energy_objective(self, terms) + float(np.sum(self.set_constant[ks]))
        return Evaluation(
            sets=readonly(k, dtype=np.int64),
            bandwidth_hz=readonly(b),
            tx_power_w=readonly(p),
            cpu_hz=readonly(f),
            server_cpu_hz=readonly(fs),
            rate_bps=readonly(terms.rate_bps),
            energy_compute_j=readonly(e_dev_j),
            energy_tx_j=readonly(e_tx_j),
            energy_server_j=readonly(e_srv_j),
            latency_compute_s=readonly(terms.device_s),
            latency_tx_s=readonly(terms.uplink_s),
            latency_downlink_s=readonly(terms.downlink_s),
            latency_server_s=readonly(terms.server_s),
            privacy=readonly(c.privacy[ks]),
            security_bits=readonly(c.security_bits[ks]),
            objective=float(objective),
            violations=violations,
        )
