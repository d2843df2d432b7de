"""Batch solving: many scenarios x seeds x methods, one table row each, resumable.

``run_batch(paths, out)`` expands every scenario file (and every sweep in it, see
:func:`privtuner.scenario.expand_sweep`) into *tasks*, one per (scenario point, seed, method),
solves them on local worker processes or on a ``dask.distributed`` cluster, and writes one row
per task to ``out`` (``.parquet`` or ``.csv``).

Crash safety (a kill at any moment loses at most the rows in flight):

* tasks run in chunks; each finished chunk is written at once to ``<out>.parts/`` as a JSON
  Lines file, first under a temporary name, then renamed with :func:`os.replace` (atomic on
  POSIX), so a part file is either complete or absent;
* a rerun reads the finished rows (from ``out`` and from the parts), skips their keys, runs the
  rest, then writes ``out`` atomically (temporary file + :func:`os.replace`) and removes the
  parts;
* one batch at a time writes ``out`` (:func:`~privtuner.batch.storage.output_lock`, a
  ``flock`` that dies with its process); a file at ``out`` that is not a results table is
  never overwritten; worker processes end when the batch process dies;
* an error in one task (infeasible scenario, solver failure, any exception) becomes a row with
  ``status`` ``"infeasible"`` or ``"error"`` and a ``message``; it never stops the batch.

The row key is ``"<scenario name>|seed=<seed>|method=<method>"``. Rows are ordered as the tasks
are expanded (files in the given order, directories sorted, sweep points in file order), so an
interrupted-and-resumed batch writes the same table as an uninterrupted one.

Local parallelism uses processes (cvxpy is not thread-safe), started with ``spawn``.

Modules: :mod:`~privtuner.batch.tasks` (scenario expansion), :mod:`~privtuner.batch.execute`
(one task -> one row), :mod:`~privtuner.batch.storage` (parts and the table, CSV / Parquet),
:mod:`~privtuner.batch.executors` (local processes, dask), :mod:`~privtuner.batch.run`
(``run_batch``). The row schema is :mod:`privtuner.rows` (shared with the studies and plots),
the scenario -> problem path :mod:`privtuner.pipeline`.
"""

from privtuner.batch.execute import run_chunk, run_task, solve_point
from privtuner.batch.run import BatchSummary, default_chunk_size, run_batch
from privtuner.batch.storage import (
    OUTPUT_SUFFIXES,
    check_output,
    lock_path_for,
    output_lock,
    parts_dir_for,
    read_parts,
    read_table,
    write_part,
    write_table,
)
from privtuner.batch.tasks import (
    SCENARIO_SUFFIXES,
    BatchTask,
    bundled_tasks,
    check_methods,
    collect_tasks,
    discover_scenario_files,
    spec_problems,
    task_key,
    tasks_for_spec,
    tasks_from_sources,
)
from privtuner.pipeline import build_problem
from privtuner.rows import (
    COLUMNS,
    SWEEP_COLUMNS,
    TIMING_COLUMNS,
    allocation_records,
    comparable,
    normalize_row,
    result_output_columns,
    spec_input_columns,
    sweep_values,
    swept_columns,
)

__all__ = [
    "COLUMNS",
    "OUTPUT_SUFFIXES",
    "SCENARIO_SUFFIXES",
    "SWEEP_COLUMNS",
    "TIMING_COLUMNS",
    "BatchSummary",
    "BatchTask",
    "allocation_records",
    "build_problem",
    "bundled_tasks",
    "check_methods",
    "check_output",
    "collect_tasks",
    "comparable",
    "default_chunk_size",
    "discover_scenario_files",
    "lock_path_for",
    "normalize_row",
    "output_lock",
    "parts_dir_for",
    "read_parts",
    "read_table",
    "result_output_columns",
    "run_batch",
    "run_chunk",
    "run_task",
    "solve_point",
    "spec_input_columns",
    "spec_problems",
    "sweep_values",
    "swept_columns",
    "task_key",
    "tasks_for_spec",
    "tasks_from_sources",
    "write_part",
    "write_table",
]
