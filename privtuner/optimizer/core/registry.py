"""Solver registry: methods registered by name, one :func:`solve` facade (like scipy's
``minimize``). Unknown methods and options are errors that list the valid ones.

A solver is ``fn(problem, *, rel_tol, max_iterations, time_limit_s, seed, **own) ->
SolveResult``; it is registered with :func:`register_solver`, its own options given as a
frozen dataclass of defaults (or a mapping). :func:`solve` checks the options (the common ones
as a frozen :class:`~privtuner.optimizer.core.options.SolveOptions`), explains infeasibility
before solving (the pre-solve check installed by ``optimizer.methods``, see
:func:`set_presolve`), turns an :class:`~privtuner.errors.InfeasibleError` into an infeasible
result, and re-checks the returned allocation against :meth:`AllocationProblem.evaluate` (a
result that violates a constraint by more than ``FEAS_TOL_REL`` is downgraded to status
``error``).

The core knows no method: ``privtuner.optimizer`` imports ``optimizer.methods``, which
registers the built-in methods, before anything can reach this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from privtuner.errors import InfeasibleError, SolverError
from privtuner.optimizer.core.options import SolveOptions, own_option_defaults
from privtuner.optimizer.core.problem import FEAS_TOL_REL, AllocationProblem
from privtuner.optimizer.core.result import SolveResult

SolverFn = Callable[..., SolveResult]
#: A pre-solve infeasibility explanation ``check(problem, time_limit_s)``: the reasons
#: (empty: none detected), found within the time limit [s].
Presolve = Callable[[AllocationProblem, float], list[str]]


@dataclass(frozen=True)
class SolverInfo:
    """A registered method and its capability flags."""

    name: str
    description: str
    fn: SolverFn
    options: dict[str, Any] = field(default_factory=dict)  # method-specific, with defaults
    #: run the pre-solve infeasibility explanation before the method
    check_feasibility: bool = True
    #: returns a certified lower bound (``status='optimal'`` only with a gap within rel_tol)
    certifies: bool = False
    #: a global method: its objective is the optimum (``exact``, ``enumerate``), not a
    #: heuristic's local or restricted answer
    global_optimum: bool = False
    #: largest number of devices the method is meant for (``None``: no limit)
    max_devices: int | None = None


_REGISTRY: dict[str, SolverInfo] = {}
_PRESOLVE: list[Presolve] = []


def set_presolve(fn: Presolve) -> None:
    """Install the pre-solve infeasibility explanation (``optimizer.methods`` installs
    ``methods.exact.feasibility.explain_infeasibility`` with its time limit)."""
    _PRESOLVE[:] = [fn]


def register_solver(
    name: str,
    description: str,
    options: Mapping[str, Any] | Any = None,
    check_feasibility: bool = True,
    *,
    certifies: bool = False,
    global_optimum: bool = False,
    max_devices: int | None = None,
) -> Callable[[SolverFn], SolverFn]:
    """Decorator registering ``fn`` as method ``name``.

    ``options``: the method's own options and their defaults (besides
    :class:`SolveOptions`): a frozen dataclass (class or instance) or a mapping.
    ``check_feasibility``: run the pre-solve infeasibility explanation in :func:`solve`.
    ``certifies`` / ``global_optimum`` / ``max_devices``: capability flags (see
    :class:`SolverInfo`), used by the conformance harness (``optimizer.testing``).
    """

    def deco(fn: SolverFn) -> SolverFn:
        _REGISTRY[name] = SolverInfo(
            name,
            description,
            fn,
            own_option_defaults(options),
            check_feasibility,
            certifies,
            global_optimum,
            max_devices,
        )
        return fn

    return deco


def available_methods() -> dict[str, str]:
    """Registered method names -> one-line descriptions."""
    return {name: info.description for name, info in sorted(_REGISTRY.items())}


def solver_info(method: str) -> SolverInfo:
    """The registered method ``method`` (an error listing the valid ones if unknown)."""
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
    valid = {**SolveOptions.defaults(), **info.options}
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise SolverError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for method {method!r}; "
            f"valid options: {', '.join(sorted(valid))}"
        )
    opts = {**valid, **options}
    common = SolveOptions(
        **{k: opts[k] for k in SolveOptions.names() if k != "seed"},
        seed=problem.seed if opts["seed"] is None else opts["seed"],
    )
    opts.update(common.as_dict())
    if problem.constant_objective:
        raise SolverError(problem.constant_objective)
    t0 = time.perf_counter()
    run_opts = opts
    if info.check_feasibility:
        # the time limit covers the pre-check too: the method gets what is left
        reasons = [r for check in _PRESOLVE for r in check(problem, common.time_limit_s)]
        if reasons:
            res = SolveResult.make_infeasible(
                problem, method=method, reasons=reasons, seed=opts["seed"]
            )
            return _finish(res, t0, opts)
        left_s = common.time_limit_s - (time.perf_counter() - t0)
        run_opts = {**opts, "time_limit_s": max(left_s, 1e-3)}
    try:
        res = info.fn(problem, **run_opts)
    except InfeasibleError as exc:
        res = SolveResult.make_infeasible(
            problem, method=method, reasons=exc.reasons, seed=opts["seed"]
        )
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
