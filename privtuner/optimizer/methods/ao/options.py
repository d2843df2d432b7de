"""The own options of ``method: ao`` (and of its stages): :class:`AoOptions`, the one table
of their defaults (used by ``ao``, ``ao_greedy_theta``, stage A's knapsack and stage B)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from privtuner.errors import SolverError

FpMethod = Literal["quadratic", "dinkelbach"]
FP_METHODS: tuple[FpMethod, ...] = ("quadratic", "dinkelbach")
InitKind = Literal["equal", "fastest", "random", "fixed_set"]
INITS: tuple[InitKind, ...] = ("equal", "fastest", "random", "fixed_set")


def check_fp_method(fp_method: str) -> None:
    """``fp_method`` must be one of :data:`FP_METHODS`."""
    if fp_method not in FP_METHODS:
        raise SolverError(f"option fp_method must be one of {list(FP_METHODS)} (got {fp_method!r})")


@dataclass(frozen=True)
class AoOptions:
    """``fp_method``: stage B's surrogate ("quadratic" | "dinkelbach"); ``init``: the starting
    point ("equal" | "fastest" | "random" | "fixed_set"); ``fp_rel_tol`` and
    ``fp_max_iterations``: stage B's stopping rule; ``bnb_rel_tol`` and ``bnb_max_nodes``:
    stage A's branch-and-bound tolerance and node limit."""

    fp_method: str = "quadratic"
    init: str = "equal"
    fp_rel_tol: float = 1e-7
    fp_max_iterations: int = 100
    bnb_rel_tol: float = 1e-9
    bnb_max_nodes: int = 200_000

    def __post_init__(self) -> None:
        check_fp_method(self.fp_method)
        if self.init not in INITS:
            raise SolverError(f"option init must be one of {list(INITS)} (got {self.init!r})")


#: The defaults (stage A's and stage B's functions take theirs from here).
AO_DEFAULTS = AoOptions()
