"""Conformance testing of the solvers (in the spirit of cvxpy's solver test helpers).

* :func:`hard_bank` draws seeded small instances from the real shipped cost model in the
  hard regimes: the server CPU close to the smallest capacity that is still feasible (so it
  binds at the optimum), the bandwidth 1.01-1.4x its relaxation minimum, and unconstrained
  draws; random set restrictions per device, both objectives and both privacy metrics.
* :func:`reference_optimum` solves an instance with ``enumerate`` (the independent fixed-set
  solver of ``reference.py``) and classifies which constraints bind at its optimum.
* ``testing.tolerances.TOLERANCES`` is the one tolerance table of the checks;
  :func:`check_result` checks one method's result against the reference: feasibility, the
  objective, the certificate (lower bound <= reference optimum) and a truthful status.

Used by ``tests/optimizer/test_conformance.py`` and ``benchmarks/bench_optimizer.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from privtuner.optimizer.core.problem import AllocationProblem
from privtuner.optimizer.core.registry import solve
from privtuner.optimizer.core.result import SolveResult
from privtuner.optimizer.methods.exact.feasibility import devices_in_outage, explain_infeasibility
from privtuner.optimizer.testing.tolerances import TOLERANCES

REGIMES = ("server_cpu", "bandwidth", "free", "hard")
#: the bank's regimes in turn: about half of the server-CPU instances are infeasible (their
#: capacity is drawn just above the relaxation's minimum), so they come more often
BANK_CYCLE = (
    "server_cpu",
    "bandwidth",
    "server_cpu",
    "bandwidth",
    "server_cpu",
    "free",
    "bandwidth",
)


@dataclass(frozen=True)
class BankInstance:
    """One instance of the bank; ``bandwidth_ratio`` / ``server_cpu_ratio`` are the capacity
    over its relaxation minimum (``inf`` when the capacity alone never makes it infeasible)."""

    problem: AllocationProblem
    regime: str
    seed: int
    bandwidth_ratio: float
    server_cpu_ratio: float
    description: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=8)
def _costs(min_precision_bits: int, privacy_metric: str) -> Any:
    from privtuner.costmodels import build_cost_table

    return build_cost_table(_base_spec(min_precision_bits, privacy_metric))


@lru_cache(maxsize=8)
def _base_spec(min_precision_bits: int, privacy_metric: str) -> Any:
    from privtuner.scenario.schema import ScenarioSpec

    # the schema's defaults are the bundled default scenario (spec section 6), in column
    # packing: its costs are the ones the bank's regimes were calibrated on (the interleaved
    # packing's are ~16x smaller uplinks, which rarely bind)
    return ScenarioSpec(name="bank").with_overrides(
        {
            "fhe.min_precision_bits": min_precision_bits,
            "objective.privacy_metric": privacy_metric,
            "fhe.packing": "column",
        }
    )


def relaxation_feasible(problem: AllocationProblem) -> bool:
    """No infeasibility detected by the pre-solve test (the convex relaxation over the sets)."""
    return not explain_infeasibility(problem)


def relaxation_minimum(problem: AllocationProblem, which: str, iters: int = 14) -> float:
    """Smallest capacity (``bandwidth`` or ``server_cpu``) at which the relaxation is
    feasible, by bisection in log scale (``inf`` if infeasible even at 1e6 x; relative
    precision about 1e-4)."""
    field_name = "bandwidth_hz" if which == "bandwidth" else "server_cpu_hz"
    cap = float(getattr(problem, field_name))

    def ok(v: float) -> bool:
        return relaxation_feasible(problem.replace(**{field_name: v}))

    hi = cap
    for _ in range(20):
        if ok(hi):
            break
        hi *= 4.0
    else:
        return math.inf
    lo = hi / 4.0
    for _ in range(40):
        if not ok(lo):
            break
        lo /= 4.0
        hi = lo * 4.0
    else:
        return 0.0
    for _ in range(iters):
        mid = math.sqrt(lo * hi)
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def bank_instance(
    seed: int,
    regime: str | None = None,
    n_devices: int | None = None,
    drop_outage: bool = False,
) -> BankInstance:
    """One seeded instance: 2-4 devices (or ``n_devices``); each device allowed a random 3-6
    of the 6-set default catalogue or 3-4 of the 19-set catalogue without a precision floor.

    Regimes: ``server_cpu`` (F_s 1.0005-2x its relaxation minimum), ``bandwidth`` (B
    1.01-1.4x its relaxation minimum, F_s generous), ``free`` (as drawn), ``hard`` (B
    1.05-1.4x its minimum, then F_s 1.0005-1.3x its minimum at that B: both tight).
    ``drop_outage``: remove the devices that miss the deadline even alone (deep fades at the
    cell edge) before the capacities are set, as a planner would.

    Length (~90 lines): one seeded sequence of draws; kept in one function so that no
    refactoring can reorder the generator's calls (which would change every bank instance).
    """
    from privtuner.system_sim import build_instance

    rng = np.random.default_rng(seed)
    regime = regime or REGIMES[int(rng.integers(0, len(REGIMES)))]
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES} (got {regime!r})")
    n = int(rng.integers(2, 5)) if n_devices is None else int(n_devices)
    precision = int(rng.choice([20, 0]))
    metric = "security_bits" if rng.random() < 0.7 else "log2_n"
    kind = "weighted" if rng.random() < 0.75 else "constrained"
    costs = _costs(precision, metric)
    spec = _base_spec(precision, metric)
    w_p = float(rng.choice([0.0, 20.0, 100.0, float(rng.uniform(0, 200))]))
    if metric == "log2_n":
        w_p *= 30.0  # log2 N spans ~3 units where the security spans ~100 bits
    overrides: dict[str, Any] = {
        "devices.count": n,
        "system.cell_radius_m": float(rng.uniform(150, 800)),
        "devices.p_max_dbm": float(rng.uniform(10, 23)),
        "devices.f_max_hz": float(rng.uniform(1.0e9, 2.5e9)),
        "workload.rounds": int(rng.integers(1, 21)),
        "system.bandwidth_hz": float(np.exp(rng.uniform(np.log(0.5e6), np.log(20e6)))),
        "server.cpu_hz": float(np.exp(rng.uniform(np.log(0.3e9), np.log(60e9)))),
        "objective.deadline_s": float(rng.uniform(500, 2000)),
        "objective.kind": kind,
        "objective.privacy_weight": w_p,
    }
    if kind == "constrained":
        overrides["objective.privacy_min"] = float(
            np.quantile(costs.privacy, rng.uniform(0.0, 0.6))
        )
    spec = spec.with_overrides(overrides)
    inst = build_instance(spec, int(rng.integers(0, 2**31)))
    problem = AllocationProblem.from_instance(inst, costs, spec.objective, spec.fhe)
    # random restriction of the sets per device (inside what the filters allow)
    allowed = problem.allowed.copy()
    for i in range(n):
        ok = np.flatnonzero(allowed[i])
        if ok.size == 0:
            continue
        lo, hi = (3, 6) if costs.n_sets <= 6 else (3, 4)
        size = min(ok.size, int(rng.integers(lo, hi + 1)))
        keep = rng.choice(ok, size=size, replace=False)
        allowed[i] = False
        allowed[i, keep] = True
    problem = problem.with_allowed(allowed).replace(name=f"bank-{seed}-{regime}", seed=int(seed))
    if drop_outage:
        out = devices_in_outage(
            problem.replace(
                bandwidth_hz=problem.bandwidth_hz * 1e3, server_cpu_hz=problem.server_cpu_hz * 1e3
            )
        )
        if out.size and out.size < problem.n_devices:
            problem = problem.subset(np.setdiff1d(np.arange(problem.n_devices), out))
    b_ratio = f_ratio = math.nan
    # a server CPU generous enough that the bandwidth alone decides feasibility
    generous_cpu_hz = max(4.0 * problem.server_cpu_hz, 100e9 * problem.n_devices)
    if regime == "bandwidth":
        problem = problem.with_server_cpu(generous_cpu_hz)
        problem, b_ratio = _tighten(problem, "bandwidth", rng, 1.01, 1.4)
    elif regime == "server_cpu":
        problem, f_ratio = _tighten(problem, "server_cpu", rng, 1.0005, 2.0)
    elif regime == "hard":
        problem = problem.with_server_cpu(generous_cpu_hz)
        problem, b_ratio = _tighten(problem, "bandwidth", rng, 1.05, 1.4)
        problem, f_ratio = _tighten(problem, "server_cpu", rng, 1.0005, 1.3)
    return BankInstance(
        problem,
        regime,
        seed,
        b_ratio,
        f_ratio,
        {k: v for k, v in overrides.items()} | {"precision": precision, "metric": metric},
    )


def _tighten(
    problem: AllocationProblem, which: str, rng: np.random.Generator, lo: float, hi: float
) -> tuple[AllocationProblem, float]:
    """The capacity ``which`` set to a uniform ``[lo, hi]`` multiple of its relaxation
    minimum (unchanged, ratio NaN, when that minimum is not finite and positive)."""
    cap_min = relaxation_minimum(problem, which)
    if not (math.isfinite(cap_min) and cap_min > 0):
        return problem, math.nan
    ratio = float(rng.uniform(lo, hi))
    field_name = "bandwidth_hz" if which == "bandwidth" else "server_cpu_hz"
    return problem.replace(**{field_name: cap_min * ratio}), ratio


def hard_bank(first_seed: int, count: int) -> list[BankInstance]:
    """``count`` small instances, seeds ``first_seed, first_seed + 1, ...``, the regimes of
    :data:`BANK_CYCLE` in turn."""
    return [bank_instance(first_seed + i, BANK_CYCLE[i % len(BANK_CYCLE)]) for i in range(count)]


@dataclass(frozen=True)
class Reference:
    """The independent reference optimum of an instance (``enumerate``) and what binds."""

    result: SolveResult
    feasible: bool
    server_cpu_binds: bool
    bandwidth_binds: bool


def reference_optimum(problem: AllocationProblem, **options: Any) -> Reference:
    """Solve with ``enumerate`` (independent of ``exact``) and classify the binding
    constraints at its optimum."""
    r = solve(problem, "enumerate", **options)
    tol = TOLERANCES["binding_rel"]
    ok = r.status == "optimal"
    cpu = ok and float(np.sum(r.server_cpu_hz)) >= problem.server_cpu_hz * (1 - tol)
    bw = ok and float(np.sum(r.bandwidth_hz)) >= problem.bandwidth_hz * (1 - tol)
    return Reference(r, ok, bool(cpu), bool(bw))


def check_result(
    result: SolveResult, reference: Reference, certifies: bool, exact_objective: bool
) -> list[str]:
    """Conformance failures of one method's ``result`` against the ``reference`` (empty
    list: conforms). ``certifies``: the method claims a lower bound; ``exact_objective``: its
    objective must equal the reference optimum (a global method), else only not beat it."""
    out: list[str] = []
    ref = reference.result
    t = TOLERANCES
    if ref.status == "infeasible":
        if result.status in ("optimal", "feasible"):
            out.append(
                f"{result.method}: found an allocation ({result.objective:.10g}) where the "
                "reference proves infeasibility"
            )
        return out
    if not reference.feasible:
        return out  # the reference could not decide: nothing to compare
    opt = ref.objective
    scale = max(abs(opt), 1e-12)
    if result.status == "infeasible":
        out.append(f"{result.method}: infeasible, reference optimum {opt:.10g}")
        return out
    if result.status in ("optimal", "feasible"):
        if not result.max_violation <= t["feasibility_rel"]:
            out.append(f"{result.method}: violation {result.max_violation:.3g}")
        if result.objective < opt - t["objective_rel"] * scale:
            out.append(
                f"{result.method}: objective {result.objective:.12g} below the reference "
                f"optimum {opt:.12g} (reference not optimal?)"
            )
    if certifies and result.lower_bound is not None and math.isfinite(result.lower_bound):
        if result.lower_bound > opt + t["bound_rel"] * scale:
            out.append(
                f"{result.method}: invalid certificate: lower bound {result.lower_bound:.12g} "
                f"> reference optimum {opt:.12g}"
            )
    if result.status == "optimal":
        if exact_objective and abs(result.objective - opt) > t["objective_rel"] * scale:
            out.append(
                f"{result.method}: status optimal at {result.objective:.12g}, reference "
                f"optimum {opt:.12g}"
            )
        if certifies and (result.gap is None or result.gap > t["objective_rel"]):
            out.append(f"{result.method}: status optimal with gap {result.gap}")
    return out
