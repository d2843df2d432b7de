"""Batch mechanics: row counts, keys, resume, kill safety (simulated and real SIGKILL), error
rows, table round trips, the CLI.

The mechanics tests run in-process with small stand-in solvers registered through the public
registry (``register_solver``) on a synthetic cost model (fitted from
``privtuner.costmodels.fitting.synthetic_records``), so they test the batch machinery, not the
optimiser. The end-to-end tests with the real methods skip while those are not registered.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from privtuner import batch
from privtuner.errors import PrivtunerError, ScenarioError, SolverError

REPO = Path(__file__).resolve().parents[2]

# ----------------------------------------------------------------------------- stand-ins

CALLS: list[tuple[str, str]] = []


def _synthetic_model(path: Path) -> Path:
    from privtuner.costmodels import fit_records, generate_catalogue
    from privtuner.costmodels.fitting import synthetic_records

    cat = generate_catalogue(
        ring_degrees=(4096, 8192, 16384, 32768), scale_bits_range=(20, 40), min_security_bits=128
    )
    fit_records(synthetic_records(cat, 0)).save(path)
    return path


def _uniform_set_solver(name: str, *, fail_below_hz: float | None = None, sleep_s: float = 0.0):
    """A stand-in 'solver': equal bandwidth / server CPU, max power and CPU, and the one set
    (same for every device) with the best objective. Deterministic; has a history."""
    from privtuner.optimizer import SolveResult

    def fn(problem: Any, **opts: Any) -> Any:
        CALLS.append((name, problem.name))
        if sleep_s:
            time.sleep(sleep_s)
        if fail_below_hz is not None and problem.bandwidth_hz < fail_below_hz:
            raise RuntimeError(f"stand-in failure at B={problem.bandwidth_hz:g}")
        n = problem.n_devices
        b = np.full(n, problem.bandwidth_hz / n)
        fs = np.full(n, problem.server_cpu_hz / n)
        best = None
        for k in np.flatnonzero(problem.allowed[0]):
            ev = problem.evaluate(np.full(n, k), b, problem.p_max_w, problem.f_max_hz, fs)
            if best is None or ev.objective < best[1]:
                best = (int(k), ev.objective)
        assert best is not None
        obj = best[1]
        hist = [
            {"iteration": i + 1, "objective": obj + 2.0**-i, "lower_bound": obj - 2.0**-i}
            for i in range(4)
        ]
        return SolveResult.from_allocation(
            problem,
            method=name,
            sets=np.full(n, best[0]),
            bandwidth_hz=b,
            tx_power_w=problem.p_max_w,
            cpu_hz=problem.f_max_hz,
            server_cpu_hz=fs,
            status="feasible",
            termination="converged",
            lower_bound=obj - 1.0,
            history=hist,
            iterations=4,
        )

    return fn


def register_stand_ins() -> None:
    from privtuner.optimizer import register_solver

    for name, kw in (
        ("standin_a", {}),
        ("standin_b", {}),
        ("standin_fail", {"fail_below_hz": 6e6}),
        ("standin_slow", {"sleep_s": 0.05}),
    ):
        register_solver(name, "test stand-in", check_feasibility=False)(
            _uniform_set_solver(name, **kw)
        )


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _synthetic_model(tmp_path_factory.mktemp("model") / "model.json")


@pytest.fixture(autouse=True)
def _stand_ins() -> None:
    register_stand_ins()
    CALLS.clear()


def sweep_file(folder: Path, model: Path, name: str = "sw", seeds: str | None = "[0, 1]") -> Path:
    """A sweep over bandwidth, privacy weight and (unless ``seeds`` is None) seed."""
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / f"{name}.yaml"
    seed_line = "" if seeds is None else f"\n  seed: {seeds}"
    f.write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            devices: {{count: 4}}
            fhe: {{cost_model: {model}}}
            objective: {{deadline_s: 100000}}
            solver: {{method: standin_a}}
            sweep:
              system.bandwidth_hz: [5e6, 1e7, 2e7]
              objective.privacy_weight: [0.0, 0.05]"""
        )
        + seed_line
        + "\n"
    )
    return f


# ----------------------------------------------------------------------------- tests


def test_rows_count_keys_and_inputs(tmp_path: Path, model_path: Path) -> None:
    f = sweep_file(tmp_path / "sc", model_path)
    out = tmp_path / "r.csv"
    s = batch.run_batch([f], out, methods=["standin_a", "standin_b"], progress=False)
    rows = batch.read_table(out)
    # 3 bandwidths x 2 weights x 2 seeds (sweep points) x 2 methods
    assert s.n_tasks == len(rows) == 3 * 2 * 2 * 2
    assert len({r["key"] for r in rows}) == len(rows)
    for r in rows:
        combo = json.loads(r["sweep_params_json"])
        assert r["bandwidth_hz"] == combo["system.bandwidth_hz"]
        assert r["privacy_weight"] == combo["objective.privacy_weight"]
        assert r["seed"] == combo["seed"]
        assert r["key"] == f"{r['scenario']}|seed={r['seed']}|method={r['method']}"
        assert r["status"] == "feasible" and r["n_devices"] == 4, r["message"]
        alloc = json.loads(r["allocation_json"])
        assert len(alloc) == 4
        assert r["energy_j"] == pytest.approx(
            sum(a["energy_compute_j"] + a["energy_tx_j"] + a["energy_server_j"] for a in alloc)
        )
    # --seeds overrides each point's seed: points x seeds x methods
    out2 = tmp_path / "r2.csv"
    g = sweep_file(tmp_path / "unseeded", model_path, seeds=None)
    s2 = batch.run_batch([g], out2, methods=["standin_a"], seeds=[3, 4, 5], progress=False)
    assert s2.n_tasks == 6 * 3
    assert {r["seed"] for r in batch.read_table(out2)} == {3, 4, 5}


def test_seeds_refused_for_a_seed_sweep(tmp_path: Path, model_path: Path) -> None:
    """Before: each override seed reran every swept seed, rows ``[...,seed=0]|seed=1`` and
    ``[...,seed=1]|seed=1`` were one instance and ``plot`` averaged the copies."""
    f = sweep_file(tmp_path / "sc", model_path)
    out = tmp_path / "r.csv"
    with pytest.raises(ScenarioError, match=r"sw\.yaml: sweep: seed is swept") as exc:
        batch.run_batch([f], out, methods=["standin_a"], seeds=[1, 2], progress=False)
    assert len(exc.value.lines()) == 1
    assert not out.exists()


def test_repeated_seeds_or_methods_refused_before_any_work(
    tmp_path: Path, model_path: Path
) -> None:
    """Before: a 'duplicate row key ... give the scenarios distinct names' error naming the
    same file twice; now the argument and the value it repeats."""
    f = sweep_file(tmp_path / "sc", model_path, seeds=None)
    out = tmp_path / "r.csv"
    with pytest.raises(
        PrivtunerError, match=r"^--seeds 2,1,2: repeats seed 2; give each seed once$"
    ):
        batch.run_batch([f], out, methods=["standin_a"], seeds=[2, 1, 2], progress=False)
    with pytest.raises(PrivtunerError, match=r"^--methods a,a: repeats method 'a'; give each"):
        batch.run_batch([f], out, methods=["a", "a"], progress=False)
    assert not out.exists() and not batch.parts_dir_for(out).exists()


def test_resume_skips_finished_rows(tmp_path: Path, model_path: Path) -> None:
    f = sweep_file(tmp_path / "sc", model_path)
    out = tmp_path / "r.parquet"
    batch.run_batch([f], out, methods=["standin_a"], progress=False)
    first = batch.read_table(out)
    assert len(CALLS) == 12
    CALLS.clear()
    s = batch.run_batch([f], out, methods=["standin_a"], progress=False)
    assert CALLS == [] and s.n_skipped == 12 and s.n_run == 0
    assert batch.comparable(batch.read_table(out)) == batch.comparable(first)
    # adding a method runs only its rows; the table holds both, in task order
    s = batch.run_batch([f], out, methods=["standin_a", "standin_b"], progress=False)
    assert {c[0] for c in CALLS} == {"standin_b"} and s.n_run == 12
    rows = batch.read_table(out)
    expected = [t.key for t in batch.collect_tasks([f], methods=["standin_a", "standin_b"])]
    assert [r["key"] for r in rows] == expected
    assert not batch.parts_dir_for(out).exists()


def _reference(tmp_path: Path, f: Path, methods: list[str]) -> list[dict[str, Any]]:
    ref = tmp_path / "ref.csv"
    batch.run_batch([f], ref, methods=methods, progress=False)
    return batch.comparable(batch.read_table(ref))


class _Killed(BaseException):
    """Stands for a kill: not an Exception, so the batch's per-task error handling does not
    catch it (like SIGKILL/KeyboardInterrupt, it unwinds the whole run)."""


@pytest.mark.parametrize("kill_seed", [0, 1, 2])
def test_kill_at_random_points_then_resume(
    tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch, kill_seed: int
) -> None:
    f = sweep_file(tmp_path / "sc", model_path)
    methods = ["standin_a", "standin_b"]
    ref = _reference(tmp_path, f, methods)
    out = tmp_path / "r.csv"
    rng = np.random.default_rng(kill_seed)
    real = batch.execute.solve_point
    kills = 0
    for _ in range(6):  # several kills, each after a random number of solves
        budget = {"left": int(rng.integers(0, 8))}

        def dying(*a: Any, budget: dict[str, int] = budget, **k: Any) -> Any:
            if budget["left"] == 0:
                raise _Killed
            budget["left"] -= 1
            return real(*a, **k)

        monkeypatch.setattr(batch.execute, "solve_point", dying)
        try:
            batch.run_batch([f], out, methods=methods, chunk_size=2, progress=False)
        except _Killed:
            kills += 1
        # whatever is on disk is valid: every part parses, no duplicate keys
        parts = batch.read_parts(batch.parts_dir_for(out))
        assert len({r["key"] for r in parts}) == len(parts)
        assert not list(batch.parts_dir_for(out).glob("*.bad"))
    assert kills >= 1
    monkeypatch.setattr(batch.execute, "solve_point", real)
    batch.run_batch([f], out, methods=methods, progress=False)
    assert batch.comparable(batch.read_table(out)) == ref


def test_partial_temp_part_and_corrupt_part_are_harmless(tmp_path: Path, model_path: Path) -> None:
    f = sweep_file(tmp_path / "sc", model_path)
    ref = _reference(tmp_path, f, ["standin_a"])
    out = tmp_path / "r.csv"
    parts = batch.parts_dir_for(out)
    # a finished part, a temp file cut short by a kill, and a damaged part
    tasks = batch.collect_tasks([f], methods=["standin_a"])
    batch.write_part(parts, batch.run_chunk(tasks[:3]))
    (parts / ".part-0001.jsonl.abcd.tmp").write_text('{"key": "half a ro')
    (parts / "part-99999999999999999999-1-dead.jsonl").write_text('{"key": "x", "bro')
    CALLS.clear()
    batch.run_batch([f], out, methods=["standin_a"], progress=False)
    assert len(CALLS) == len(tasks) - 3  # the finished part was kept
    assert batch.comparable(batch.read_table(out)) == ref


def test_kill_during_consolidation_keeps_old_table_and_parts(
    tmp_path: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = sweep_file(tmp_path / "sc", model_path)
    out = tmp_path / "r.csv"
    batch.run_batch([f], out, methods=["standin_a"], progress=False)
    before = out.read_bytes()

    def no_replace(src: Any, dst: Any) -> None:
        if Path(dst) == out:
            raise _Killed
        os.rename(src, dst)

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(_Killed):
        batch.run_batch([f], out, methods=["standin_a", "standin_b"], progress=False)
    monkeypatch.undo()
    assert out.read_bytes() == before  # the old table is intact
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    CALLS.clear()
    batch.run_batch([f], out, methods=["standin_a", "standin_b"], progress=False)
    assert CALLS == []  # the new rows were in the parts
    assert len(batch.read_table(out)) == 24


def test_errors_are_rows_and_retry(tmp_path: Path, model_path: Path) -> None:
    f = sweep_file(tmp_path / "sc", model_path)
    out = tmp_path / "r.csv"
    s = batch.run_batch([f], out, methods=["standin_fail"], progress=False)
    rows = batch.read_table(out)
    bad = [r for r in rows if r["status"] == "error"]
    assert s.n_errors == len(bad) == 4  # B = 5 MHz: 2 weights x 2 seeds
    assert all(r["bandwidth_hz"] == 5e6 for r in bad)
    assert all("stand-in failure" in r["message"] for r in bad)
    assert all(r["energy_j"] is None for r in bad)
    CALLS.clear()
    batch.run_batch([f], out, methods=["standin_fail"], progress=False)
    assert CALLS == []
    batch.run_batch([f], out, methods=["standin_fail"], progress=False, retry_errors=True)
    assert len(CALLS) == 4


def test_infeasible_is_a_row(tmp_path: Path, model_path: Path) -> None:
    f = tmp_path / "inf.yaml"
    f.write_text(
        f"name: inf\ndevices: {{count: 3}}\nfhe: {{cost_model: {model_path}}}\n"
        "objective: {kind: constrained, privacy_min: 1e6, deadline_s: 100000}\n"
    )
    out = tmp_path / "r.csv"
    batch.run_batch([f], out, methods=["standin_a"], progress=False)
    (row,) = batch.read_table(out)
    assert row["status"] in ("infeasible", "error")
    assert row["message"]


def test_unknown_method_and_bad_paths(tmp_path: Path, model_path: Path) -> None:
    f = sweep_file(tmp_path / "sc", model_path)
    with pytest.raises(SolverError, match=r"nope.*valid methods"):
        batch.run_batch([f], tmp_path / "r.csv", methods=["nope"], progress=False)
    with pytest.raises(ScenarioError, match="no such file"):
        batch.run_batch([tmp_path / "missing.yaml"], tmp_path / "r.csv", progress=False)
    with pytest.raises(PrivtunerError, match=r"\.parquet or \.csv"):
        batch.run_batch([f], tmp_path / "r.xlsx", progress=False)
    # two files producing the same scenario names: duplicate keys are an error
    g = tmp_path / "sc2"
    sweep_file(g, model_path)
    with pytest.raises(ScenarioError, match="duplicate row key"):
        batch.collect_tasks([f, g / "sw.yaml"], methods=["standin_a"])


def test_directory_expansion_and_relative_cost_model(tmp_path: Path, model_path: Path) -> None:
    d = tmp_path / "dir"
    sweep_file(d, model_path, name="one", seeds="[0]")
    sweep_file(d, model_path, name="two", seeds="[0]")
    (d / "rel.yaml").write_text(
        "name: rel\ndevices: {count: 2}\nfhe: {cost_model: ../model_copy.json}\n"
        "objective: {deadline_s: 100000}\n"
    )
    (tmp_path / "model_copy.json").write_bytes(model_path.read_bytes())
    tasks = batch.collect_tasks([d], methods=["standin_a"])
    assert [t.sweep_base for t in tasks].count("one") == 6
    assert [t.sweep_base for t in tasks].count("rel") == 1
    out = tmp_path / "r.csv"
    batch.run_batch([d], out, methods=["standin_a"], progress=False)
    assert {r["status"] for r in batch.read_table(out)} == {"feasible"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_round_trip_is_exact(tmp_path: Path, model_path: Path, suffix: str) -> None:
    f = sweep_file(tmp_path / "sc", model_path, seeds="[0]")
    rows = batch.run_chunk(batch.collect_tasks([f], methods=["standin_a"]))
    rows[0]["message"] = 'a, "quoted"\nmessage'
    path = batch.write_table(rows, tmp_path / f"t{suffix}")
    back = batch.read_table(path)
    assert back == [batch.normalize_row(r) for r in rows]


def test_real_sigkill_then_resume(tmp_path: Path, model_path: Path) -> None:
    """Kill a batch process with SIGKILL at random moments (several times), then finish it:
    the table equals an uninterrupted run, with no duplicate or missing rows."""
    f = sweep_file(tmp_path / "sc", model_path)
    methods = ["standin_slow"]
    ref = _reference(tmp_path, f, methods)
    out = tmp_path / "r.csv"
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""\
            import sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            import test_batch
            test_batch.register_stand_ins()
            from privtuner.batch import run_batch
            run_batch([{str(f)!r}], {str(out)!r}, methods={methods!r}, chunk_size=1,
                      progress=False)
            """
        )
    )
    rng = np.random.default_rng(7)
    parts = batch.parts_dir_for(out)
    killed: list[tuple[int, int]] = []
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO)
        # wait until at least one new part exists, then a random extra moment, then SIGKILL
        n0 = len(list(parts.glob("part-*"))) if parts.is_dir() else 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if parts.is_dir() and len(list(parts.glob("part-*"))) > n0:
                break
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.0, 0.12)))
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait()
        rows = batch.read_parts(parts)
        assert len({r["key"] for r in rows}) == len(rows)
        killed.append((rc, len(rows)))
    batch.run_batch([f], out, methods=methods, progress=False)
    final = batch.comparable(batch.read_table(out))
    assert final == ref
    assert len({r["key"] for r in final}) == 12
    assert any(rc == -signal.SIGKILL and n < 12 for rc, n in killed)  # a kill mid-run


def test_cli_batch_and_plot(tmp_path: Path, model_path: Path) -> None:
    """``privtuner batch`` / ``plot`` through a subprocess. The batch runs a real registered
    method (skips while the optimiser has none); ``plot`` reads a table written in-process."""
    f = sweep_file(tmp_path / "sc", model_path, seeds="[0]")
    table = tmp_path / "t.csv"
    batch.run_batch([f], table, methods=["standin_a", "standin_b"], progress=False)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "privtuner",
            "plot",
            str(table),
            "--kind",
            "scaling",
            "--out",
            str(tmp_path / "figs"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "figs" / "energy_vs_bandwidth_hz.png").is_file()
    assert (tmp_path / "figs" / "energy_vs_bandwidth_hz.pdf").is_file()
    assert not (tmp_path / "figs" / "energy_vs_privacy_weight.pdf").exists()
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "privtuner",
            "plot",
            str(table),
            "--kind",
            "convergence",
            "--out",
            str(tmp_path / "figs"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: no 'ao' row")

    from privtuner.optimizer import available_methods

    real = [m for m in ("equal_bandwidth", "exact") if m in available_methods()]
    if not real:
        pytest.skip("no real optimiser method registered yet")
    out = tmp_path / "cli.csv"
    args = [
        sys.executable,
        "-m",
        "privtuner",
        "batch",
        str(f),
        "--methods",
        real[0],
        "--out",
        str(out),
        "--no-progress",
        "--json",
    ]
    run = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["n_tasks"] == summary["n_run"] == 6
    rows = batch.read_table(out)
    assert len(rows) == 6 and all(r["method"] == real[0] for r in rows)
    run = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert json.loads(run.stdout)["n_skipped"] == 6
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "privtuner",
            "batch",
            str(f),
            "--methods",
            "nope",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 1 and "unknown method" in bad.stderr


def test_reproduce_pipeline_with_stand_ins(tmp_path: Path, model_path: Path) -> None:
    """``reproduce`` end to end on a small sweep folder: table, every figure kind the rows
    support (PNG + PDF) with its CSV, summary; a second call resumes (nothing to run)."""
    from privtuner.studies import reproduce

    src = tmp_path / "sweeps"
    sweep_file(src, model_path, name="tradeoff", seeds="[0, 1]")
    out = tmp_path / "out"
    info = reproduce(out, quick=True, scenarios_dir=src, methods=["standin_a"], progress=False)
    # quick: bandwidth 3 values, weights 2, seeds cut to 1
    assert info["batch"]["n_tasks"] == 6
    figs = set(info["figures"])
    for stem in ("tradeoff_tradeoff", "energy_vs_bandwidth_hz", "allocation"):
        assert {f"figures/{stem}.png", f"figures/{stem}.pdf", f"figures/{stem}.csv"} <= figs
    table = batch.read_table(out / "results.csv")
    assert len(table) == 6
    info2 = reproduce(out, quick=True, scenarios_dir=src, methods=["standin_a"], progress=False)
    assert info2["batch"]["n_run"] == 0
    assert json.loads((out / "summary.json").read_text())["batch"]["n_skipped"] == 6


def test_tradeoff_curve_and_solve_figures(tmp_path: Path, model_path: Path) -> None:
    from privtuner.optimizer import AllocationProblem, solve
    from privtuner.scenario import load_scenario_text
    from privtuner.studies import (
        default_tradeoff_values,
        privacy_problem_factory,
        tradeoff_curve,
        write_solve_figures,
    )

    spec = load_scenario_text(
        f"name: one\ndevices: {{count: 3}}\nfhe: {{cost_model: {model_path}}}\n"
        "objective: {deadline_s: 100000}\n"
    )
    problem = AllocationProblem.from_spec(spec)
    factory, x = privacy_problem_factory(problem)
    assert x == "privacy_weight"
    weights = default_tradeoff_values(problem, n_points=5, method="standin_a")
    assert weights[0] == 0.0 and problem.privacy_weight in weights and len(weights) >= 5
    rows = tradeoff_curve(factory, weights, "standin_a", x=x)
    assert [r["privacy_weight"] for r in rows] == weights
    # more privacy weight never lowers the privacy of the (best uniform) choice
    sec = [r["security_bits_mean"] for r in rows]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(sec))
    assert sec[-1] > sec[0]  # the grid spans the trade-off
    result = solve(problem, "standin_a")
    paths = write_solve_figures(problem, result, tmp_path / "figs", weights=weights[:3])
    names = {p.name for p in paths}
    assert {"allocation.png", "allocation.pdf", "tradeoff.png", "tradeoff.pdf"} <= names
    assert {"allocation.csv", "tradeoff.csv"} <= names
    # constrained: the factory filters sets by the requirement
    cspec = spec.with_overrides({"objective.kind": "constrained", "objective.privacy_min": 0})
    cproblem = AllocationProblem.from_spec(cspec)
    cfactory, cx = privacy_problem_factory(cproblem)
    assert cx == "privacy_min"
    reqs = default_tradeoff_values(cproblem, n_points=3)
    assert len(reqs) == 3
    p_hi = cfactory(reqs[-1])
    assert np.all(p_hi.costs.privacy[p_hi.allowed[0]] >= reqs[-1])
    crows = tradeoff_curve(cfactory, reqs, "standin_a", x=cx)
    assert all(r["security_bits_min"] >= q for r, q in zip(crows, reqs, strict=True))


@pytest.mark.slow
def test_cli_reproduce_quick(tmp_path: Path) -> None:
    """``privtuner reproduce --quick`` on the bundled sweep set (real optimiser, shipped
    cost model): exits 0 and writes the figures with their CSV (its run time is a benchmark
    matter, not asserted here)."""
    from privtuner.costmodels.fitting import DEFAULT_MODEL_PATH
    from privtuner.optimizer import available_methods
    from privtuner.studies import QUICK_METHODS

    assert DEFAULT_MODEL_PATH.is_file()
    assert set(QUICK_METHODS) <= set(available_methods())
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "privtuner",
            "reproduce",
            "--quick",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    info = json.loads((tmp_path / "summary.json").read_text())
    figs = set(info["figures"])
    for stem in ("tradeoff_tradeoff-weighted", "energy_vs_n_devices", "energy_vs_deadline_s"):
        assert f"figures/{stem}.png" in figs and f"figures/{stem}.csv" in figs
