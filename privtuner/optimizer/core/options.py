"""The options every method accepts: :class:`SolveOptions`, the one table of their defaults.

The defaults are the scenario schema's (``scenario.schema.SolverSpec``: what a scenario file
gets when it says nothing), so a solve from Python and a solve from a scenario agree.
Method-specific options are frozen dataclasses of their own (e.g. ``methods.ao.AoOptions``),
registered with :func:`~privtuner.optimizer.core.registry.register_solver`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from privtuner.errors import SolverError
from privtuner.scenario.schema import SolverSpec

if TYPE_CHECKING:
    from privtuner.optimizer.core.problem import AllocationProblem

_SPEC_DEFAULTS = SolverSpec()


@dataclass(frozen=True)
class SolveOptions:
    """Common options of :func:`~privtuner.optimizer.solve` (validated on construction).

    ``rel_tol``: relative optimality gap (``exact``) / relative change that stops AO;
    ``max_iterations``: the method's iteration cap; ``time_limit_s``: wall-clock limit [s];
    ``seed``: seed of a randomised method (``None``: the problem's seed).
    """

    rel_tol: float = _SPEC_DEFAULTS.rel_tol
    max_iterations: int = _SPEC_DEFAULTS.max_iterations
    time_limit_s: float = _SPEC_DEFAULTS.time_limit_s
    seed: int | None = None

    def __post_init__(self) -> None:
        rel_tol = self.rel_tol
        if not (isinstance(rel_tol, int | float) and 0 < rel_tol < 1):
            raise SolverError(f"option rel_tol must be in (0, 1) (got {rel_tol!r})")
        it = self.max_iterations
        if not (isinstance(it, int) and not isinstance(it, bool) and it >= 1):
            raise SolverError(f"option max_iterations must be an integer >= 1 (got {it!r})")
        tl = self.time_limit_s
        if not (isinstance(tl, int | float) and tl > 0 and not math.isnan(tl)):
            raise SolverError(f"option time_limit_s must be > 0 (got {tl!r})")
        seed = self.seed
        if seed is not None and not (
            isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0
        ):
            raise SolverError(f"option seed must be an integer >= 0 (got {seed!r})")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Name -> default of every common option."""
        return {f.name: f.default for f in fields(cls)}

    def for_problem(self, problem: AllocationProblem) -> SolveOptions:
        """These options with ``seed`` set (the problem's seed when it is ``None``)."""
        if self.seed is not None:
            return self
        return SolveOptions(self.rel_tol, self.max_iterations, self.time_limit_s, problem.seed)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The defaults of the common options (method signatures take theirs from here).
DEFAULTS = SolveOptions()


def options_from_spec(solver: SolverSpec, **overrides: Any) -> dict[str, Any]:
    """``rel_tol``, ``max_iterations`` and ``time_limit_s`` of a scenario's ``solver``
    section, each replaced by ``overrides[name]`` when that is not ``None`` (the CLI's
    flags). The one place that turns a scenario into solve options (CLI, batch)."""
    unknown = sorted(set(overrides) - {"rel_tol", "max_iterations", "time_limit_s"})
    if unknown:
        raise SolverError(f"options_from_spec: unknown option(s) {unknown}")
    opts: dict[str, Any] = {
        "rel_tol": solver.rel_tol,
        "max_iterations": solver.max_iterations,
        "time_limit_s": solver.time_limit_s,
    }
    opts.update({k: v for k, v in overrides.items() if v is not None})
    return opts


def own_option_defaults(options: Any) -> dict[str, Any]:
    """Name -> default of a method's own options: a frozen dataclass (class or instance) or
    a mapping."""
    if options is None:
        return {}
    if isinstance(options, type):
        options = options()
    if hasattr(options, "__dataclass_fields__"):
        return asdict(options)
    return dict(options)
