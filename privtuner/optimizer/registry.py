"""Solver registry: methods registered by name, one :func:`solve` facade (like scipy's
``minimize``). Unknown methods and options are errors that list the valid ones.

A solver is ``fn(problem, *, rel_tol, max_iterations, time_limit_s, seed, **own) ->
SolveResult``; it is registered with :func:`register_solver`. :func:`solve` checks the options,
explains infeasibility before solving (``feasibility.py``), turns an
:class:`~privtuner.errors.InfeasibleError` into an infeasible result, and re-checks the
returned allocation against :meth:`AllocationProblem.evaluate` (a result that violates a
constraint by more than ``FEAS_TOL_REL`` is downgraded to status ``error``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from privtuner.errors import InfeasibleError, SolverError
from privtuner.optimizer.problem import FEAS_TOL_REL, AllocationProblem
from privtuner.optimizer.result import SolveResult

SolverFn = Callable[..., SolveResult]

#: Options every method accepts, with their defaults.
COMMON_OPTIONS: dict[str, Any] = {
    "rel_tol": 1e-6,
    "max_iterations": 100,
    "time_limit_s": 300.0,
    "seed": None,
}


@dataclass(frozen=True)
class SolverInfo:
    name: str
    description: str
    fn: SolverFn
    options: dict[str, Any] = field(default_factory=dict)  # method-specific, with defaults
    check_feasibility: bool = True
    #: returns a certified lower bound (``status='optimal'`` only with a gap within rel_tol)
    certifies: bool = False
    #: a global method: its objective is the optimum (``exact``, ``enumerate``), not a
    #: heuristic's local or restricted answer
    global_optimum: bool = False
    #: largest number of devices the method is meant for (``None``: no limit)
    max_devices: int | None = None


_REGISTRY: dict[str, SolverInfo] = {}


def register_solver(
    name: str,
    description: str,
    options: Mapping[str, Any] | None = None,
    check_feasibility: bool = True,
    *,
    certifies: bool = False,
    global_optimum: bool = False,
    max_devices: int | None = None,
) -> Callable[[SolverFn], SolverFn]:
    """Decorator registering ``fn`` as method ``name``.

    ``options``: the method's own options and their defaults (besides ``COMMON_OPTIONS``).
    ``check_feasibility``: run the pre-solve infeasibility explanation in :func:`solve`.
    ``certifies`` / ``global_optimum`` / ``max_devices``: capability flags (see
    :class:`SolverInfo`), used by the conformance harness (``optimizer.testing``).
    """

    def deco(fn: SolverFn) -> SolverFn:
        _REGISTRY[name] = SolverInfo(
            name,
            description,
            fn,
            dict(options or {}),
            check_feasibility,
            certifies,
            global_optimum,
            max_devices,
        )
        return fn

    return deco


def _load_builtin() -> None:
    import privtuner.optimizer  # noqa: F401  (importing the package registers the methods)


def available_methods() -> dict[str, str]:
    """Registered method names -> one-line descriptions."""
    _load_builtin()
    return {name: info.description for name, info in sorted(_REGISTRY.items())}


def solver_info(method: str) -> SolverInfo:
    _load_builtin()
    if method not in _REGISTRY:
        raise SolverError(
            f"unknown method {method!r}; valid methods: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[method]


def solve(problem: AllocationProblem, method: str = "exact", **options: Any) -> SolveResult:
    """Solve ``problem`` with ``method``; every option is checked against the method's list.

    Common options: ``rel_tol`` (relative optimality gap / AO tolerance), ``max_iterations``,
    ``time_limit_s``, ``seed`` (defaults to ``problem.seed``). Returns a :class:`SolveResult`;
    an infeasible problem gives ``status='infeasible'`` with the reasons.
    """
    info = solver_info(method)
    valid = {**COMMON_OPTIONS, **info.options}
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise SolverError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for method {method!r}; "
            f"valid options: {', '.join(sorted(valid))}"
        )
    opts = {**valid, **options}
    if opts["seed"] is None:
        opts["seed"] = problem.seed
    _check_common(opts)
    t0 = time.perf_counter()
    if info.check_feasibility:
        from privtuner.optimizer.feasibility import explain_infeasibility

        reasons = explain_infeasibility(problem)
        if reasons:
            res = SolveResult.infeasible(problem, method=method, reasons=reasons, seed=opts["seed"])
            return _finish(res, t0, opts)
    try:
        res = info.fn(problem, **opts)
    except InfeasibleError as exc:
        res = SolveResult.infeasible(problem, method=method, reasons=exc.reasons, seed=opts["seed"])
    if res.status in ("optimal", "feasible") and not (res.max_violation <= FEAS_TOL_REL):
        bad = {k: v for k, v in res.violations.items() if not v <= FEAS_TOL_REL}
        res = res.replace(
            status="error",
            message=(res.message + "; " if res.message else "")
            + f"allocation violates constraints (relative): {bad}",
        )
    return _finish(res, t0, opts)


def _finish(res: SolveResult, t0: float, opts: dict[str, Any]) -> SolveResult:
    timings = dict(res.timings_s)
    timings["total"] = time.perf_counter() - t0
    options = {k: v for k, v in opts.items()}
    return res.replace(timings_s=timings, options={**options, **res.options})


def _check_common(opts: dict[str, Any]) -> None:
    rel_tol = opts["rel_tol"]
    if not (isinstance(rel_tol, int | float) and 0 < rel_tol < 1):
        raise SolverError(f"option rel_tol must be in (0, 1) (got {rel_tol!r})")
    it = opts["max_iterations"]
    if not (isinstance(it, int) and not isinstance(it, bool) and it >= 1):
        raise SolverError(f"option max_iterations must be an integer >= 1 (got {it!r})")
    tl = opts["time_limit_s"]
    if not (isinstance(tl, int | float) and tl > 0 and not math.isnan(tl)):
        raise SolverError(f"option time_limit_s must be > 0 (got {tl!r})")
    seed = opts["seed"]
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise SolverError(f"option seed must be an integer >= 0 (got {seed!r})")
