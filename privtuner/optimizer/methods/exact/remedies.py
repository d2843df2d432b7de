"""What would make an infeasible instance feasible: the planner's next step.

Built on the fast pre-solve test :func:`~privtuner.optimizer.methods.exact.feasibility.
explain_infeasibility` (no reasons = the test accepts the instance):

* :func:`smallest_passing`: the smallest per-round deadline, total bandwidth or server CPU
  (each alone, the others fixed) that the test accepts, by bisection in log space. The test
  is monotone in each (more of a resource never hurts) and, with a choice of CKKS sets, a
  relaxation: a value below the one found is certainly infeasible; at the value found the
  solver decides (for fixed sets the test is exact);
* :func:`devices_to_drop`: the devices that cannot meet the deadline even alone, then, while
  the rest together still do not fit, the fewest of the heaviest devices (largest minimum
  resource share at equal bandwidth and server-CPU prices) to leave out;
* :func:`suggest_remedies`: both, as one line each.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from privtuner.optimizer.core.problem import AllocationProblem
from privtuner.optimizer.methods.exact.continuous import (
    Caps,
    build_pairs,
    pair_feasible,
    solve_pairs,
)
from privtuner.optimizer.methods.exact.feasibility import devices_in_outage, explain_infeasibility

#: Largest factor over the current value searched before giving up.
MAX_FACTOR = 1e6
#: Relative precision of the bisection.
REL_TOL = 1e-3


def passes(problem: AllocationProblem) -> bool:
    """True when the pre-solve feasibility test finds no infeasibility."""
    return not explain_infeasibility(problem)


def smallest_passing(
    problem: AllocationProblem,
    change: Callable[[AllocationProblem, float], AllocationProblem],
    current: float,
) -> float | None:
    """Smallest value ``v >= current`` with ``passes(change(problem, v))`` (to
    :data:`REL_TOL`, rounded up), or None if none up to ``MAX_FACTOR x current``."""
    if not (math.isfinite(current) and current > 0):
        return None
    lo, hi = math.log(current), math.log(current)
    step = math.log(2.0)
    while not passes(change(problem, math.exp(hi))):
        lo = hi
        hi += step
        step *= 2.0
        if hi - math.log(current) > math.log(MAX_FACTOR):
            return None
    if hi == lo:
        return current
    while hi - lo > REL_TOL / 2:
        mid = 0.5 * (lo + hi)
        if passes(change(problem, math.exp(mid))):
            hi = mid
        else:
            lo = mid
    return math.exp(hi)


def _device_need(problem: AllocationProblem) -> NDArray[np.float64]:
    """Per device: its smallest share b/B/2 + f_s/F_s/2 that meets the deadline alone (any
    allowed set); +inf for a device that cannot meet it at all."""
    n, K = problem.n_devices, problem.n_sets
    dev = np.repeat(np.arange(n), K)
    ks = np.tile(np.arange(K), n)
    mask = problem.allowed.ravel()
    pd = build_pairs(problem, dev[mask], ks[mask], energy_free=True)
    ok = pair_feasible(pd)
    need = np.full(n, np.inf)
    if np.any(ok):
        sub = pd.take(np.flatnonzero(ok))
        caps = Caps(problem.bandwidth_hz, problem.server_cpu_hz)
        m = sub.size
        sol = solve_pairs(
            sub, caps, np.full(m, 0.5 / caps.bandwidth_hz), np.full(m, 0.5 / caps.server_cpu_hz)
        )
        np.minimum.at(need, sub.dev, sol.value)
    return need


def devices_to_drop(problem: AllocationProblem) -> tuple[list[int], list[int]]:
    """``(outage, heavy)``: devices that cannot meet the deadline even alone, and the fewest
    of the heaviest others whose removal as well makes the test pass (bisection on the count,
    heaviest first). Both empty when the instance passes already."""
    if passes(problem):
        return [], []
    return _drop(problem)


def _drop(problem: AllocationProblem) -> tuple[list[int], list[int]]:
    """:func:`devices_to_drop` of an instance the test rejects."""
    outage = [int(i) for i in devices_in_outage(problem)]
    rest = np.setdiff1d(np.arange(problem.n_devices), outage)
    if rest.size == 0 or passes(problem.subset(rest)):
        return outage, []
    order = rest[np.argsort(-_device_need(problem)[rest], kind="stable")]
    lo, hi = 0, order.size  # dropping every device passes trivially
    while hi - lo > 1:
        mid = (lo + hi) // 2
        keep = np.sort(order[mid:])
        if keep.size and passes(problem.subset(keep)):
            hi = mid
        else:
            lo = mid
    return outage, sorted(int(i) for i in order[:hi])


def _device_list(idx: list[int], labels: tuple[str, ...] = ()) -> str:
    names = [labels[i] if i < len(labels) and labels[i] else str(i) for i in idx]
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    return f"device{'s' if len(names) > 1 else ''} {shown}"


def suggest_remedies(problem: AllocationProblem, labels: tuple[str, ...] = ()) -> list[str]:
    """One line per remedy for an instance the pre-solve test rejects (empty if it passes):
    the smallest deadline, bandwidth and server CPU that pass the test (each alone), and the
    devices to leave out. ``labels``: device names to use instead of indices."""
    if passes(problem):
        return []
    if not problem.allowed.any(axis=1).all():
        return [
            "no resource helps: some devices have no allowed CKKS set (relax fhe/objective "
            "requirements)"
        ]
    lines = []
    changes = (
        (
            "objective.deadline_s",
            "per-round deadline",
            problem.deadline_s,
            "s",
            AllocationProblem.with_deadline,
        ),
        (
            "system.bandwidth_hz",
            "total bandwidth",
            problem.bandwidth_hz,
            "Hz",
            AllocationProblem.with_bandwidth,
        ),
        (
            "server.cpu_hz",
            "server CPU",
            problem.server_cpu_hz,
            "Hz",
            AllocationProblem.with_server_cpu,
        ),
    )
    for path, what, now, unit, change in changes:
        v = smallest_passing(problem, change, now)
        if v is None:
            lines.append(
                f"{path}: no {what} up to {MAX_FACTOR:g} x {now:.4g} {unit} suffices alone"
            )
        else:
            lines.append(
                f"{path}: a {what} of at least {v:.4g} {unit} (now {now:.4g} {unit}; "
                "others unchanged)"
            )
    outage, heavy = _drop(problem)  # the test rejects the instance (checked above)
    if outage:
        lines.append(
            f"leave out {_device_list(outage, labels)}: cannot meet the deadline even alone"
        )
    if heavy:
        lines.append(
            f"leave out {_device_list(heavy, labels)}"
            + (" as well" if outage else "")
            + ": the fewest of the most demanding devices for the rest to fit"
        )
    return lines
