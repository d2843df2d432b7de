"""The scenario -> instance -> cost table -> problem pipeline and its cost-table cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from privtuner import pipeline
from privtuner.optimizer import AllocationProblem
from privtuner.scenario import load_bundled

ARRAYS = ("gain_lin", "p_max_w", "f_max_hz", "kappa_dev", "allowed")


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    pipeline.clear_cache()
    yield
    pipeline.clear_cache()


def _same_problem(a: AllocationProblem, b: AllocationProblem) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("device_cycles", "server_cycles", "uplink_bits", "downlink_bits", "privacy"):
        np.testing.assert_array_equal(getattr(a.costs, name), getattr(b.costs, name))
    assert a.costs.params == b.costs.params
    for name in ("bandwidth_hz", "server_cpu_hz", "deadline_s", "privacy_weight", "seed"):
        assert getattr(a, name) == getattr(b, name), name


def test_build_problem_is_from_spec() -> None:
    spec = load_bundled()
    for seed in (0, 3):
        _same_problem(pipeline.build_problem(spec, seed), AllocationProblem.from_spec(spec, seed))
    # seed defaults to the spec's
    assert pipeline.build_problem(spec).seed == spec.seed


def test_stages_and_timings() -> None:
    st = pipeline.build_stages(load_bundled(), 2)
    assert st.problem.costs is st.costs
    assert st.instance.seed == 2 == st.problem.seed
    assert set(st.timings_s) == {"instance", "cost_table", "problem"}
    assert all(t >= 0 for t in st.timings_s.values())
    assert st.total_s == pytest.approx(sum(st.timings_s.values()))


def test_cache_shares_a_table_across_what_it_does_not_depend_on() -> None:
    spec = load_bundled()
    base = pipeline.cost_table(spec)
    same = spec.with_overrides(
        {"system.bandwidth_hz": 2e7, "devices.count": 5, "objective.privacy_weight": 3.0}
    )
    assert pipeline.cost_table(same) is base
    assert pipeline.build_problem(same, 4).costs is base
    # what the table depends on: workload, fhe, privacy metric
    other = spec.with_overrides({"workload.steps_per_round": spec.workload.steps_per_round + 1})
    t_other = pipeline.cost_table(other)
    assert t_other is not base
    assert not np.array_equal(t_other.device_cycles, base.device_cycles)
    assert pipeline.cost_table(spec.with_overrides({"fhe.min_security_bits": 192})) is not base
    # cache=False builds a new, equal table
    fresh = pipeline.cost_table(spec, cache=False)
    assert fresh is not base
    np.testing.assert_array_equal(fresh.server_cycles, base.server_cycles)


def test_cache_is_bounded() -> None:
    spec = load_bundled()
    first = pipeline.cost_table(spec)
    for i in range(pipeline.CACHE_SIZE):
        pipeline.cost_table(spec.with_overrides({"workload.rounds": 1000 + i}))
    assert len(pipeline._CACHE) == pipeline.CACHE_SIZE
    assert pipeline.cost_table(spec) is not first  # the oldest was dropped


def test_a_refitted_model_file_is_a_new_key(tmp_path: Path) -> None:
    from privtuner.costmodels import load_cost_model

    path = tmp_path / "model.json"
    load_cost_model("default").save(path)
    spec = load_bundled().with_overrides({"fhe.cost_model": str(path)})
    key = pipeline.cost_table_key(spec)
    assert pipeline.cost_table_key(spec) == key
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert pipeline.cost_table_key(spec) != key
