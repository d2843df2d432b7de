"""What an infeasible result says to do, and the result's boolean status properties."""

from __future__ import annotations

import numpy as np
import pytest

from privtuner.optimizer import SolveResult, solve
from privtuner.optimizer.core.result import fold_device_reasons
from privtuner.optimizer.methods.exact.remedies import (
    devices_to_drop,
    passes,
    smallest_passing,
    suggest_remedies,
)
from privtuner.optimizer.testing.factory import random_problem


@pytest.fixture(scope="module")
def base():  # type: ignore[no-untyped-def]
    problem = random_problem(np.random.default_rng(3), 8, 6)
    assert passes(problem)
    return problem


def test_result_status_properties(base) -> None:  # type: ignore[no-untyped-def]
    ok = solve(base, "exact")
    assert ok.feasible and ok.success
    inf = SolveResult.make_infeasible(base, method="exact", reasons=["device 0: x"])
    assert not inf.feasible and not inf.success
    # the old classmethod name is gone: `if result.infeasible:` can no longer be always true
    assert not hasattr(SolveResult, "infeasible")
    err = SolveResult.error(base, method="exact", message="m")
    assert not err.feasible


@pytest.mark.parametrize(
    ("attr", "change", "factor"),
    [
        ("deadline_s", "with_deadline", 0.3),
        ("server_cpu_hz", "with_server_cpu", 0.05),
    ],
)
def test_smallest_value_is_the_threshold(base, attr: str, change: str, factor: float) -> None:  # type: ignore[no-untyped-def]
    bad = getattr(base, change)(getattr(base, attr) * factor)
    assert not passes(bad)
    fn = getattr(type(bad), change)
    v = smallest_passing(bad, fn, getattr(bad, attr))
    assert v is not None and v > getattr(bad, attr)
    # the value found passes the test and the solver finds an allocation there;
    # 1 % less fails the test again (so fails the solver too)
    at = fn(bad, v * 1.001)
    assert passes(at) and solve(at, "exact").feasible
    assert solve(fn(bad, v * 0.99), "exact").status == "infeasible"
    lines = suggest_remedies(bad)
    assert any(line.startswith(("objective.deadline_s", "server.cpu_hz")) for line in lines)


def test_devices_to_drop_are_enough_and_needed(base) -> None:  # type: ignore[no-untyped-def]
    bad = base.with_server_cpu(base.server_cpu_hz * 0.3)
    assert not passes(bad)
    outage, heavy = devices_to_drop(bad)
    dropped = sorted(outage + heavy)
    assert dropped
    keep = np.setdiff1d(np.arange(bad.n_devices), dropped)
    assert passes(bad.subset(keep))
    assert solve(bad.subset(keep), "exact").feasible
    # the devices that miss the deadline alone are not enough to leave out here
    assert heavy
    assert not passes(bad.subset(np.setdiff1d(np.arange(bad.n_devices), outage)))
    lines = suggest_remedies(bad, labels=tuple(f"ap{i}" for i in range(bad.n_devices)))
    assert any(line.startswith("leave out") and f"ap{dropped[0]}" in line for line in lines)


def test_identical_device_reasons_fold_into_one_line() -> None:
    reasons = [f"device {i}: no allowed CKKS set: minimum security 600 bits" for i in range(4)]
    reasons.insert(2, "device 9: deadline 1 s unreachable")
    reasons.append("all 5 devices together: too much")
    assert fold_device_reasons(reasons) == [
        "devices 0, 1, 2, 3 (4 devices): no allowed CKKS set: minimum security 600 bits",
        "device 9: deadline 1 s unreachable",
        "all 5 devices together: too much",
    ]
    many = fold_device_reasons([f"device {i}: same" for i in range(30)])
    assert many == [
        "devices 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ... (30 devices): same",
    ]
