"""The one tolerance table of the optimiser's tests and conformance checks (relative unless
the name says ``abs``). A test states which entry it uses; none writes its own number."""

from __future__ import annotations

from privtuner.optimizer.core.problem import FEAS_TOL_REL

TOLERANCES: dict[str, float] = {
    # objective of a certifying method vs the reference optimum (and the gap asked of exact)
    "objective_rel": 1e-6,
    # a lower bound may exceed the reference optimum by at most this (numerical noise)
    "bound_rel": 1e-7,
    # a constraint counts as binding at the reference optimum within this relative slack
    "binding_rel": 1e-6,
    # feasibility of every returned allocation
    "feasibility_rel": FEAS_TOL_REL,
    # the same formulas computed twice, in another order (floating-point rounding only)
    "same_formula_rel": 1e-12,
    # exact's pair oracle from another start (lambdas, uplink roots): its convergence
    # tolerance, |t_d + t_s + tau - T'| <= 1e-13 T' (measured: up to 7.3e-13)
    "warm_start_rel": 1e-11,
    # a local method (ao) may undercut the certified optimum by at most this (exact's
    # rel_tol 1e-6 plus the evaluation's rounding)
    "local_vs_certified_rel": 2e-6,
    # stage B's fractional programming vs the fixed-set optimum (conic solver accuracy)
    "fp_vs_fixed_set_rel": 1e-5,
    # two independent fixed-set solvers (market clearing vs SLSQP) on the same sets
    "independent_solvers_rel": 1e-9,
    # SCIP (an external MINLP solver, gap 1e-7 in scaled units) vs exact
    "scip_rel": 1e-4,
}
