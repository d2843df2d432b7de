"""Conformance harness: every registered method on one bank of reference instances.

The reference optimum of each instance comes from ``enumerate``, whose fixed-set solver
(``optimizer/reference.py``: log variables, SciPy SLSQP, its own model code) shares nothing
with ``exact``'s dual decomposition. The bank (``optimizer.testing.hard_bank``) is drawn in
the hard regimes: server CPU just above its relaxation minimum, bandwidth 1.01-1.4x its
relaxation minimum, unconstrained draws; the fractions are asserted below.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pytest

from privtuner.optimizer import AllocationProblem, available_methods, solve, solver_info
from privtuner.optimizer.testing import (
    TOLERANCES,
    BankInstance,
    Reference,
    bank_instance,
    check_result,
    hard_bank,
    reference_optimum,
)

#: seeds of the bank (fixed: same instances every run); size from the environment for
#: longer local runs
BANK_FIRST_SEED = 710_000
BANK_SIZE = int(os.environ.get("PRIVTUNER_BANK_SIZE", "300"))


@pytest.fixture(scope="module")
def bank() -> list[tuple[BankInstance, Reference]]:
    return [(bi, reference_optimum(bi.problem)) for bi in hard_bank(BANK_FIRST_SEED, BANK_SIZE)]


def _feasible(bank: list[tuple[BankInstance, Reference]]) -> list[tuple[BankInstance, Reference]]:
    return [(bi, ref) for bi, ref in bank if ref.feasible]


def test_bank_exercises_the_hard_regimes(bank: list[tuple[BankInstance, Reference]]) -> None:
    """At least a third of the feasible instances bind the server CPU at the optimum, and
    another third have a bandwidth within 1.4x of the relaxation minimum (disjoint counts);
    infeasible and near-infeasible instances are present too."""
    feas = _feasible(bank)
    statuses = [ref.result.status for _, ref in bank]
    assert statuses.count("infeasible") >= 0.1 * len(bank)
    # the reference decides every instance: optimal or proved infeasible
    assert set(statuses) <= {"optimal", "infeasible"}, statuses
    cpu = [bi for bi, ref in feas if ref.server_cpu_binds]
    tight_bw = [bi for bi, ref in feas if not ref.server_cpu_binds and bi.bandwidth_ratio <= 1.4]
    assert len(feas) >= 0.4 * len(bank)
    assert len(cpu) >= len(feas) / 3, (len(cpu), len(feas))
    assert len(tight_bw) >= len(feas) / 3, (len(tight_bw), len(feas))


def test_exact_matches_the_independent_reference(
    bank: list[tuple[BankInstance, Reference]],
) -> None:
    """``exact`` equals the reference optimum to 1e-6 on every feasible instance, its lower
    bound never exceeds the reference optimum, 'optimal' only with a certified gap, and it
    never reports infeasible for a feasible instance (nor feasible for an infeasible one)."""
    failures: list[str] = []
    agreed = 0
    for bi, ref in bank:
        r = solve(bi.problem, "exact")
        bad = check_result(r, ref, certifies=True, exact_objective=True)
        if ref.feasible and r.status != "optimal":
            bad.append(f"exact: status {r.status} on a feasible instance ({r.message})")
        if ref.result.status == "infeasible" and r.status != "infeasible":
            bad.append(f"exact: status {r.status} on an infeasible instance")
        if bad:
            failures.append(f"seed {bi.seed} ({bi.regime}): " + "; ".join(bad))
        elif ref.feasible:
            agreed += 1
    assert not failures, "\n".join(failures)
    assert agreed == len(_feasible(bank)) and agreed >= 0.4 * len(bank)


#: methods other than exact checked on the first instances of the bank (time)
OTHER_METHODS_BANK = 25


def _other_methods() -> list[str]:
    return [m for m in available_methods() if m not in ("exact",)]


@pytest.mark.parametrize("method", _other_methods())
def test_every_registered_method_conforms(
    bank: list[tuple[BankInstance, Reference]], method: str
) -> None:
    """Every method: feasible allocations, never better than the reference optimum, never
    'infeasible' on a feasible instance, a global method equals the reference, a certifying
    one's bound is valid, and 'optimal' only where that is true."""
    info = solver_info(method)
    failures: list[str] = []
    for bi, ref in bank[:OTHER_METHODS_BANK]:
        r = solve(bi.problem, method)
        bad = check_result(r, ref, certifies=info.certifies, exact_objective=info.global_optimum)
        if r.status == "optimal" and not (info.certifies or info.global_optimum):
            bad.append(f"{method}: a heuristic reports 'optimal'")
        if bad:
            failures.append(f"seed {bi.seed} ({bi.regime}): " + "; ".join(bad))
    assert not failures, "\n".join(failures)


def test_exact_never_worse_than_ao(bank: list[tuple[BankInstance, Reference]]) -> None:
    """On the feasible bank instances, and on larger hard ones (9-25 devices, server CPU and
    bandwidth both tight) where no reference is available: ao never beats exact's objective
    and never goes below exact's certified lower bound."""
    checked = 0
    cases: list[AllocationProblem] = [bi.problem for bi, ref in _feasible(bank)[:30]]
    cases += [bank_instance(720_000 + i, "hard", n_devices=9 + 4 * i).problem for i in range(5)]
    for p in cases:
        e = solve(p, "exact")
        a = solve(p, "ao")
        if a.status not in ("optimal", "feasible"):
            continue
        assert e.status == "optimal", (p.name, e.status, e.message)
        tol = TOLERANCES["objective_rel"] * max(abs(e.objective), 1.0)
        assert e.objective <= a.objective + tol, (p.name, e.objective, a.objective)
        assert e.lower_bound is not None and e.lower_bound <= a.objective + tol
        checked += 1
    assert checked >= 25


# ---------------------------------------------------------------------- regression tests
def _issue_problem(seed: int, overrides: dict[str, Any], sets: list[int]) -> AllocationProblem:
    from pathlib import Path

    from privtuner.scenario import load_scenario

    root = Path(__file__).resolve().parents[2]
    # the issue-10 instances, with the column packing's costs they were found with
    spec = load_scenario(root / "scenarios" / "default.yaml").with_overrides(
        {"fhe.packing": "column", **overrides}
    )
    p = AllocationProblem.from_spec(spec, seed=seed)
    allowed = np.zeros((p.n_devices, p.n_sets), dtype=bool)
    allowed[:, sets] = True
    return p.with_allowed(allowed)


def test_regression_server_cpu_binding_wrong_optimum() -> None:
    """Issue reproducer (seed 9232): exact said optimal -45298.74 on [3, 0] with that as its
    lower bound; the optimum is -50881.64 on [3, 3] (ao and the reference find it)."""
    p = _issue_problem(
        9232,
        {
            "devices.count": 2,
            "system.bandwidth_hz": 14208711.64,
            "server.cpu_hz": 326372097.76,
            "objective.deadline_s": 1397.48,
            "system.cell_radius_m": 507.54,
            "workload.rounds": 10,
            "objective.kind": "weighted",
            "objective.privacy_weight": 100.0,
        },
        [0, 3, 4],
    )
    ref = reference_optimum(p)
    e = solve(p, "exact")
    assert ref.feasible and ref.server_cpu_binds
    assert check_result(e, ref, certifies=True, exact_objective=True) == []
    assert e.status == "optimal" and list(e.sets) == list(ref.result.sets)
    assert e.objective < -50000


def test_regression_false_infeasibility() -> None:
    """Issue reproducer (seed 9009): exact said infeasible and enumerate optimal 6154.37; the
    optimum is 3122.66 on [0, 0, 0, 0] with the server CPU binding."""
    p = _issue_problem(
        9009,
        {
            "devices.count": 4,
            "system.bandwidth_hz": 845739.71,
            "server.cpu_hz": 926235348.22,
            "objective.deadline_s": 1268.10,
            "system.cell_radius_m": 713.29,
            "workload.rounds": 10,
            "fhe.min_precision_bits": 0,
            "objective.kind": "weighted",
            "objective.privacy_weight": 0.0,
        },
        [0, 3, 8],
    )
    ref = reference_optimum(p)
    e = solve(p, "exact")
    assert ref.feasible and ref.server_cpu_binds
    assert check_result(e, ref, certifies=True, exact_objective=True) == []
    assert e.status == "optimal" and math.isclose(e.objective, ref.result.objective, rel_tol=1e-6)
    assert e.objective < 3200
