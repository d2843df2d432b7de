"""Extreme but valid problems (issue 15): the infeasibility pre-check is linear in the devices,
bounded by the time limit and summarised; a constant objective is refused at once; ``ao``
keeps its time limit at thousands of devices."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from privtuner.errors import SolverError
from privtuner.optimizer import solve
from privtuner.optimizer.methods.exact import feasibility
from privtuner.optimizer.methods.exact.continuous import Caps
from privtuner.optimizer.methods.exact.feasibility import explain_infeasibility
from privtuner.optimizer.testing.factory import random_problem

REPO = Path(__file__).resolve().parents[2]


def _latency_s(reason: str) -> float:
    m = re.search(r"minimum latency (\S+) s", reason)
    assert m, reason
    return float(m.group(1))


def test_many_unreachable_devices_are_summarised() -> None:
    """Before: one line per device (5,034 lines at 100,000 devices)."""
    p = random_problem(np.random.default_rng(0), 40, 3)
    q = p.with_bandwidth(p.bandwidth_hz * 1e-6)
    every = explain_infeasibility(q, max_listed=None)
    assert len(every) > feasibility.MAX_LISTED_DEVICES
    assert all(r.startswith("device ") and "unreachable" in r for r in every)
    short = explain_infeasibility(q)
    assert short[0] == (
        f"{len(every)} of 40 devices cannot meet the deadline {q.deadline_s:.4g} s even alone "
        "(all bandwidth, max power, f_max, all server CPU, fastest allowed set); the 5 slowest "
        "follow (all: privtuner solve --verbose)"
    )
    slowest = sorted(every, key=_latency_s, reverse=True)[:5]
    assert short[1:] == [r for r in every if r in slowest]  # in device order
    assert solve(q, "exact").reasons == tuple(short)


def test_devices_without_a_set_are_summarised() -> None:
    p = random_problem(np.random.default_rng(1), 30, 3, objective_kind="constrained")
    q = p.replace(
        privacy_min=float(np.max(p.costs.privacy)) + 1, allowed=np.zeros((30, 3), dtype=bool)
    )
    every = explain_infeasibility(q, max_listed=None)
    assert len(every) == 30 and every[0].startswith("device 0: no allowed CKKS set: privacy")
    (line,) = explain_infeasibility(q)
    why = every[0].split(": no allowed CKKS set: ", 1)[1]
    assert line == f"30 of 30 devices have no allowed CKKS set (devices 0, 1, 2, 3, 4, ...): {why}"


def test_precheck_is_linear_in_the_devices() -> None:
    """Before: a per-device scan of every pair (quadratic: minutes at 50,000 devices)."""
    p = random_problem(np.random.default_rng(2), 50_000, 3)
    q = p.with_bandwidth(p.bandwidth_hz * 1e-9)
    t0 = time.perf_counter()
    reasons = explain_infeasibility(q)
    assert time.perf_counter() - t0 < 10
    assert reasons[0].endswith("(all: privtuner solve --verbose)") and len(reasons) == 6


def test_joint_check_keeps_the_time_limit() -> None:
    """80,000 (device, set) pairs, each feasible alone: one margin evaluation alone takes
    seconds; with a time limit the check stops between blocks of pairs."""
    p = random_problem(np.random.default_rng(0), 20_000, 4, deadline_factor=1.0)
    t0 = time.perf_counter()
    assert explain_infeasibility(p, 0.05) == []
    assert time.perf_counter() - t0 < 1.5


def test_blocks_of_pairs_give_the_same_margins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The time-limited evaluation solves the pairs in blocks: the same numbers."""
    rng = np.random.default_rng(3)
    for _ in range(3):
        p = random_problem(rng, 12, 3, deadline_factor=float(rng.uniform(0.5, 1.5)))
        q = p.with_bandwidth(p.bandwidth_hz * float(rng.uniform(0.05, 1.0)))
        pd, ok = feasibility._alone_pairs(q)
        sub = pd.take(np.flatnonzero(ok))
        caps = Caps(q.bandwidth_hz, q.server_cpu_hz)
        args = (sub, caps, sub.dev, 12, np.zeros(12, dtype=np.int64), 1)
        whole = feasibility.resource_margin(*args)
        monkeypatch.setattr(feasibility, "BLOCK_PAIRS", 5)
        blocks = feasibility.resource_margin(*args, t_end=time.perf_counter() + 1e6)
        monkeypatch.undo()
        assert sub.size > 5
        np.testing.assert_array_equal(whole[0], blocks[0])
        np.testing.assert_array_equal(whole[1], blocks[1])


@pytest.mark.parametrize("kind", ["weighted", "constrained"])
def test_constant_objective_is_refused_at_once(kind: str) -> None:
    """Before: ``exact`` ran to its time limit, reporting gap 1.0 on an objective of 0."""
    p = random_problem(np.random.default_rng(4), 6, 3, objective_kind=kind)
    q = p.replace(energy_weight=0.0, privacy_weight=0.0)
    for method in ("exact", "ao"):
        t0 = time.perf_counter()
        with pytest.raises(SolverError, match=r"the objective is constant \(energy_weight 0"):
            solve(q, method, time_limit_s=5.0)
        assert time.perf_counter() - t0 < 1.0
    # a privacy term alone is an objective (weighted)
    if kind == "weighted":
        r = solve(p.replace(energy_weight=0.0), "exact", time_limit_s=30.0)
        assert r.status in ("optimal", "feasible")


def test_constant_objective_one_line_in_validate_and_solve(tmp_path: Path) -> None:
    f = tmp_path / "zero.yaml"
    f.write_text("name: z\ndevices: {count: 3}\nobjective: {energy_weight: 0, privacy_weight: 0}\n")
    why = (
        "the objective is constant (energy_weight 0 and privacy_weight 0): every feasible "
        "allocation is optimal; give energy_weight (or, weighted, privacy_weight) a positive value"
    )
    out = tmp_path / "r.json"
    # solve: as validate, the file and the field, and no --out (before: "error: <why>" after
    # writing an error result with termination "iteration_limit")
    for args in (["validate"], ["solve", "--out", str(out)]):
        proc = subprocess.run(
            [sys.executable, "-m", "privtuner", *args, str(f)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 1 and proc.stderr.splitlines() == [
            f"error: {f}: objective: {why}"
        ]
    assert not out.exists()


def test_solve_verbose_lists_every_device(tmp_path: Path) -> None:
    f = tmp_path / "narrow.yaml"
    f.write_text("name: narrow\ndevices: {count: 12}\nsystem: {bandwidth_hz: 1e4}\n")

    def run(*extra: str) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "privtuner", "solve", str(f), *extra],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        lines = proc.stderr.splitlines()
        hints = [ln for ln in lines if ln.startswith("hint: ")]
        errors = [ln for ln in lines if not ln.startswith("hint: ")]
        assert hints and all(ln.startswith("error: infeasible: ") for ln in errors)
        return errors

    short, every = run(), run("--verbose")
    assert len(every) == 12 and len(short) == 6
    assert short[0].startswith("error: infeasible: 12 of 12 devices cannot meet the deadline")
    assert set(short[1:]) <= set(every)


def test_ao_keeps_its_time_limit_at_thousands_of_devices() -> None:
    """Before: a 2 s limit at 3,000 devices took about 40 s (each convex solve of stage B
    ran to the end; now each gets Clarabel's time_limit of what is left)."""
    solve(random_problem(np.random.default_rng(0), 5, 4, deadline_factor=1.0), "ao")  # warm
    p = random_problem(np.random.default_rng(0), 3000, 4, deadline_factor=1.0)
    limit_s = 2.0
    t0 = time.perf_counter()
    r = solve(p, "ao", time_limit_s=limit_s)
    wall_s = time.perf_counter() - t0
    assert r.termination == "time_limit"
    assert wall_s <= limit_s + 2.5, r.timings_s  # slack: one solver set-up, the re-check
