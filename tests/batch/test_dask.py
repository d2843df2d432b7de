"""The dask executor gives the same table as the local one (a real ``dask.distributed``
LocalCluster with worker processes on loopback)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from privtuner import batch

pytest.importorskip("dask.distributed")

HERE = Path(__file__).resolve().parent


def _register_on_worker(tests_dir: str) -> bool:
    """Runs on each dask worker: register the test stand-in solvers there."""
    import sys

    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    import test_batch

    test_batch.register_stand_ins()
    return True


def _local_cluster(n_workers: int):  # type: ignore[no-untyped-def]
    """A dask LocalCluster of ``n_workers`` single-thread worker processes on loopback."""
    from dask.distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=":0",  # a free port: never the default 8787 another cluster may hold
    )


def _scenario(
    folder: Path, model: Path, seeds: str = "[0, 1, 2]", bandwidths: str = "[5e6, 2e7]"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / "dk.yaml"
    f.write_text(
        textwrap.dedent(
            f"""\
            name: dk
            devices: {{count: 4}}
            fhe: {{cost_model: {model}}}
            objective: {{deadline_s: 100000}}
            sweep:
              system.bandwidth_hz: {bandwidths}
              seed: {seeds}
            """
        )
    )
    return f


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(HERE))
    import test_batch

    return test_batch._synthetic_model(tmp_path_factory.mktemp("model") / "model.json")


def test_dask_cluster_equals_local(tmp_path: Path, model_path: Path) -> None:
    """Stand-in solvers registered on the workers; run_batch connects to the cluster by its
    scheduler address (``--scheduler``)."""
    import test_batch
    from dask.distributed import Client

    test_batch.register_stand_ins()
    f = _scenario(tmp_path / "sc", model_path)
    methods = ["standin_a", "standin_b"]
    local = tmp_path / "local.csv"
    batch.run_batch([f], local, methods=methods, progress=False)
    with (
        _local_cluster(2) as cluster,
        Client(cluster, timeout="30s") as client,
    ):
        assert all(client.run(_register_on_worker, str(HERE)).values())
        out = tmp_path / "dask.parquet"
        s = batch.run_batch(
            [f],
            out,
            methods=methods,
            executor="dask",
            scheduler=cluster.scheduler_address,
            chunk_size=2,
            progress=False,
        )
        assert s.n_run == 12
    assert batch.comparable(batch.read_table(out)) == batch.comparable(batch.read_table(local))


def test_dask_local_cluster_equals_local_processes_real_methods(
    tmp_path: Path, model_path: Path
) -> None:
    """The real optimiser: local executor with 2 processes vs dask's own LocalCluster."""
    from privtuner.optimizer import available_methods

    methods = ["exact", "ao"]
    assert set(methods) <= set(available_methods())
    f = _scenario(tmp_path / "sc", model_path, seeds="[0, 1]", bandwidths="[1e7]")
    local = tmp_path / "local.csv"
    batch.run_batch([f], local, methods=methods, jobs=2, progress=False)
    out = tmp_path / "dask.csv"
    batch.run_batch([f], out, methods=methods, jobs=2, executor="dask", progress=False)
    a, b = batch.read_table(local), batch.read_table(out)
    assert len(a) == 2 * len(methods)
    assert batch.comparable(a) == batch.comparable(b)


def test_unreachable_scheduler_is_one_line_quickly(tmp_path: Path, model_path: Path) -> None:
    """``--scheduler tcp://127.0.0.1:1``: before, a 30 s wait and then a traceback."""
    import subprocess
    import time

    f = _scenario(tmp_path / "sc", model_path, seeds="[0]", bandwidths="[1e7]")
    out = tmp_path / "r.csv"
    address = "tcp://127.0.0.1:1"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "privtuner", "batch", str(f), "--methods", "equal_bandwidth"),
            *("--out", str(out), "--executor", "dask", "--scheduler", address),
        ],
        capture_output=True,
        text=True,
        cwd=HERE.parents[1],
        timeout=120,
        check=False,
    )
    wall_s = time.perf_counter() - t0
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: --scheduler {address}: cannot connect to a dask scheduler within 5 s "
        f"(OSError: Timed out trying to connect to {address} after 5 s)"
    ]
    assert wall_s < 25
    assert not out.exists() and not batch.lock_path_for(out).exists()


def _register_dying_on_worker(tests_dir: str) -> bool:
    """Runs on each dask worker: the stand-ins, plus ``standin_die``, which kills its worker
    process on the 2e7 Hz points (a worker lost mid-run)."""
    import os

    from privtuner.optimizer import register_solver

    _register_on_worker(tests_dir)
    import test_batch

    ok = test_batch._uniform_set_solver("standin_die")

    def die(problem, **opts):  # type: ignore[no-untyped-def]
        if problem.bandwidth_hz > 1e7:
            os._exit(3)
        return ok(problem, **opts)

    register_solver("standin_die", "test stand-in", check_feasibility=False)(die)
    return True


def test_lost_chunk_is_one_line_and_finished_rows_are_kept(
    tmp_path: Path, model_path: Path
) -> None:
    """A worker dies mid-run (its chunk is lost on the cluster): one line naming the lost
    chunk and saying a rerun resumes, and the rerun completes the table, each task once
    (before: a KilledWorker traceback)."""
    import dask
    import test_batch
    from dask.distributed import Client

    from privtuner.errors import PrivtunerError
    from privtuner.optimizer import register_solver

    test_batch.register_stand_ins()
    # here (the client) it is a working stand-in: the batch checks its methods up front
    register_solver("standin_die", "test stand-in", check_feasibility=False)(
        test_batch._uniform_set_solver("standin_die")
    )
    f = _scenario(tmp_path / "sc", model_path, seeds="[0, 1]", bandwidths="[5e6, 2e7]")
    out = tmp_path / "r.csv"
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        _local_cluster(1) as cluster,
        Client(cluster, timeout="30s") as client,
    ):
        assert all(client.run(_register_dying_on_worker, str(HERE)).values())
        with pytest.raises(PrivtunerError) as exc:
            batch.run_batch(
                [f],
                out,
                methods=["standin_die"],
                executor="dask",
                scheduler=cluster.scheduler_address,
                chunk_size=1,
                progress=False,
            )
    message = str(exc.value)
    assert "\n" not in message and "lost a chunk on the cluster" in message
    assert "a rerun resumes" in message
    # a local rerun (where the stand-in works) completes the table from the parts, each
    # task once (how many finished before the worker died depends on the cluster's timing)
    s = batch.run_batch([f], out, methods=["standin_die"], progress=False)
    rows = batch.read_table(out)
    assert 1 <= s.n_run <= 4 and len(rows) == len({r["key"] for r in rows}) == 4
    assert all(r["status"] == "feasible" for r in rows)
