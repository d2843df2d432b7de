"""Allocation optimiser (spec sections 4 and 5).

``solve(problem, method=...)`` dispatches to a registered method: ``exact`` (dual decomposition
+ branch-and-bound, certified), ``enumerate`` (every set combination x convex solve), ``ao``
(paper-faithful alternating B&B + fractional programming) and the baselines of spec 5.3.
"""

import importlib

from privtuner.optimizer.problem import FEAS_TOL_REL, AllocationProblem, Evaluation
from privtuner.optimizer.registry import available_methods, register_solver, solve
from privtuner.optimizer.result import SolveResult

# Importing a solver module registers its methods. Optional modules (written separately) may
# be absent in a partial build: only their own absence is tolerated.
for _name in ("exact", "enumerate", "ao", "baselines", "reference"):
    _mod = f"privtuner.optimizer.{_name}"
    try:
        importlib.import_module(_mod)
    except ModuleNotFoundError as _exc:
        if _exc.name != _mod:
            raise

__all__ = [
    "FEAS_TOL_REL",
    "AllocationProblem",
    "Evaluation",
    "SolveResult",
    "available_methods",
    "register_solver",
    "solve",
]
