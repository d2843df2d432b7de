"""Allocation optimiser (spec sections 4 and 5).

``solve(problem, method=...)`` dispatches to a registered method: ``exact`` (dual decomposition
+ branch-and-bound, certified), ``enumerate`` (every set combination x convex solve), ``ao``
(paper-faithful alternating B&B + fractional programming) and the baselines of spec 5.3.

Layout (each part imports only the ones above it)::

    core/      the problem, the system-model kernel (core/model.py: every rate, time, energy
               and closed-form CPU frequency), allocations and results, the solve options
               and the registry (capability flags)
    methods/   exact/ (dual decomposition, its continuous stage, feasibility proofs),
               ao/ (stage A branch-and-bound, stage B fractional programming),
               enumerate/ (with the independent reference solver), baselines, shared starts
    testing/   the conformance harness (bank of instances, reference optimum, checks)

Importing this package imports ``methods``, which registers every built-in method.
"""

from privtuner.optimizer import methods as _methods  # noqa: F401  (registers the methods)
from privtuner.optimizer.core.options import SolveOptions
from privtuner.optimizer.core.problem import FEAS_TOL_REL, AllocationProblem, Evaluation
from privtuner.optimizer.core.registry import (
    available_methods,
    register_solver,
    solve,
    solver_info,
)
from privtuner.optimizer.core.result import SolveResult

__all__ = [
    "FEAS_TOL_REL",
    "AllocationProblem",
    "Evaluation",
    "SolveOptions",
    "SolveResult",
    "available_methods",
    "register_solver",
    "solve",
    "solver_info",
]
