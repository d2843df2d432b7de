"""Where batch chunks run: this process, local worker processes, or a dask cluster.

Each executor yields the rows of each finished chunk (in completion order). Local parallelism
uses processes (cvxpy is not thread-safe), started with ``spawn``; each worker exits when the
batch process dies, even by SIGKILL (:func:`exit_with_parent`).
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from privtuner.batch.execute import run_chunk
from privtuner.batch.tasks import BatchTask
from privtuner.errors import PrivtunerError

#: How long to try to reach a ``--scheduler`` address before giving up [s].
SCHEDULER_CONNECT_TIMEOUT_S = 5.0


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def exit_with_parent(parent_pid: int) -> None:
    """Make this worker process end when process ``parent_pid`` (the batch) dies.

    On Linux the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``);
    elsewhere a daemon thread polls :func:`os.getppid` every 0.5 s. A parent already gone
    (reparented before this ran) ends the worker at once.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
            _start_parent_watchdog(parent_pid)
    else:
        _start_parent_watchdog(parent_pid)
    if os.getppid() != parent_pid:
        os._exit(1)


def _start_parent_watchdog(parent_pid: int) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="privtuner-parent-watchdog", daemon=True).start()


def iter_local(chunks: list[list[BatchTask]], jobs: int) -> Iterator[list[dict[str, Any]]]:
    if jobs <= 1:
        for ch in chunks:
            yield run_chunk(ch)
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=ctx,
        initializer=exit_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        # keep a bounded number of chunks submitted (2 per worker) so an interrupt loses few
        pending: set[Future[list[dict[str, Any]]]] = set()
        it = iter(chunks)
        try:
            for ch in itertools.islice(it, 2 * jobs):
                pending.add(pool.submit(run_chunk, ch))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
                    nxt = next(it, None)
                    if nxt is not None:
                        pending.add(pool.submit(run_chunk, nxt))
        finally:
            for fut in pending:
                fut.cancel()


def require_dask() -> None:
    """Import ``dask.distributed`` (the ``batch`` extra) or raise
    :class:`~privtuner.errors.MissingDependencyError` saying what to install."""
    from privtuner.errors import require

    require("dask.distributed", extra="batch", purpose="--executor dask")


def iter_dask(
    chunks: list[list[BatchTask]], jobs: int, scheduler: str | None
) -> Iterator[list[dict[str, Any]]]:
    """Rows of each chunk run on dask: on the scheduler at address ``scheduler`` (reached
    now, within :data:`SCHEDULER_CONNECT_TIMEOUT_S`, so an unreachable one fails before any
    work), or on a LocalCluster of ``jobs`` worker processes on loopback."""
    require_dask()
    from dask.distributed import Client, LocalCluster

    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout=SCHEDULER_CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise PrivtunerError(
                f"--scheduler {scheduler}: cannot connect to a dask scheduler within "
                f"{SCHEDULER_CONNECT_TIMEOUT_S:g} s ({_one_line(exc)})"
            ) from None
    else:
        cluster = LocalCluster(
            n_workers=max(1, jobs),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # a free port: never the default 8787 another cluster may hold
        )
        client = Client(cluster)
    return _dask_rows(client, cluster, chunks)


def _dask_rows(client: Any, cluster: Any, chunks: list[list[BatchTask]]) -> Iterator[Any]:
    from dask.distributed import as_completed

    try:
        futures = [client.submit(run_chunk, ch, pure=False) for ch in chunks]
        for fut in as_completed(futures):
            try:  # run_chunk turns every task problem into a row: this is the cluster
                rows = fut.result()
            except Exception as exc:
                raise PrivtunerError(
                    f"--executor dask: lost a chunk on the cluster ({_one_line(exc)}); the "
                    "finished rows are kept and a rerun resumes"
                ) from None
            yield rows
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
