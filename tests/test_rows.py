"""Results rows (:mod:`privtuner.rows`): the scenario inputs are typed results columns."""

from __future__ import annotations

import math
from pathlib import Path

from privtuner.rows import COLUMNS, normalize_row, spec_input_columns
from privtuner.scenario.schema import ScenarioSpec


def test_every_scenario_input_is_a_results_column() -> None:
    """Each input a row takes from its scenario (fhe.rescale included) is a column of
    :data:`COLUMNS`, typed and in its place among the inputs, not an extra appended after the
    versions; a row whose scenario failed to load still has it (empty)."""
    spec = ScenarioSpec().with_overrides({"fhe.rescale": "device"})
    inputs = spec_input_columns(spec)
    assert [c for c in inputs if c not in COLUMNS] == []
    assert inputs["rescale"] == "device"
    names = list(normalize_row(inputs))
    assert names.index("rescale") == names.index("packing") + 1
    assert normalize_row({"key": "k"})["rescale"] is None


def test_round_within_sum_rounds_down_the_largest_upward_roundings_first() -> None:
    from privtuner.rows import round_within_sum, significant_floor

    # to nearest: 1.3 + 1.3 + 1.3 = 3.9 > 3.79; 1.26 (rounded up by 0.04) twice goes down
    # first, then the sum 3.7 fits and 1.27 (up by 0.03) keeps its nearest value
    assert round_within_sum([1.26, 1.26, 1.27], 2) == [1.2, 1.2, 1.3]
    assert round_within_sum([1.24, None, 1.22], 2) == [1.2, None, 1.2]  # below: as rounded
    assert significant_floor(999999999.7, 9) == 999999999.0  # not up to 1.00000000e9
    assert significant_floor(516280.1519, 9) == 516280.151
    assert significant_floor(71991611.1, 9) == 71991611.1  # its repr, not 71991611.0999...
    # values already rounded are kept (the allocation figure's table of a planner CSV)
    kept = [71991611.1, 70852585.3, 3446270.55]
    assert round_within_sum(kept, 9) == kept


def test_planner_csv_shared_resources_sum_within_the_capacity(tmp_path: Path) -> None:
    """Before: each bandwidth rounded to nearest at 9 significant digits, and the CSV of
    ``solve scenarios/default.yaml --seed 3 --csv`` summed to 10000000.008 Hz against
    B = 1e7 Hz (seeds 4, 6, 7, 8 too; the full-precision allocation sums to
    9999999.99999974 Hz). Now the sums of bandwidth and server CPU stay within the capacity
    (and the full-precision sum) and each value within one unit of its 9th digit."""
    import csv
    from decimal import Decimal

    from privtuner.optimizer import solve
    from privtuner.pipeline import build_problem
    from privtuner.scenario import load_scenario
    from privtuner.studies import write_allocation

    spec = load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / "default.yaml")
    for seed in (3, 4, 6, 7, 8):
        problem = build_problem(spec, seed)
        result = solve(problem, "exact")
        path = tmp_path / f"s{seed}.csv"
        write_allocation(result, path)
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        for col, cap in (
            ("bandwidth_hz", problem.bandwidth_hz),
            ("server_cpu_hz", problem.server_cpu_hz),
        ):
            exact = [float(v) for v in getattr(result, col)]
            text = [r[col] for r in rows]
            assert sum(map(Decimal, text)) <= sum(Decimal(repr(x)) for x in exact)
            assert sum(float(t) for t in text) <= cap, (seed, col)
            for t, x in zip(text, exact, strict=True):
                unit = Decimal(1).scaleb(Decimal(x).adjusted() - 8)
                assert abs(Decimal(t) - Decimal(repr(x))) < unit, (seed, col, t, x)
                assert len(t.replace(".", "").lstrip("0").rstrip("0")) <= 9
        for r, k in zip(rows, range(problem.n_devices), strict=True):  # per-device limits
            assert float(r["tx_power_w"]) <= problem.p_max_w[k], (seed, k)
            assert float(r["cpu_hz"]) <= problem.f_max_hz[k], (seed, k)
            assert float(r["latency_s_per_round"]) <= problem.deadline_s, (seed, k)


def test_planner_csv_per_device_limits_are_rounded_down() -> None:
    """Before: ``tx_power_w``, ``cpu_hz`` and the latency were rounded to nearest, so a value
    the solver kept at p_max, f_max or the deadline could be written half a unit of its last
    digit above the limit. Now those columns are rounded down; the others to nearest."""
    from privtuner.rows import planner_records

    at_limit = {
        "set_name": "N8192_q60-40-60_s40",
        "tx_power_w": 0.12345675,  # 6 digits: nearest 0.123457
        "cpu_hz": 1234567896.0,  # 9 digits: nearest 1234567900
        "latency_s": 79.6999996,  # 6 digits: nearest 79.7000
        "energy_j": 2.5000006,  # no limit: nearest
    }
    (row,) = planner_records([at_limit])
    assert row["tx_power_w"] == 0.123456
    assert row["cpu_hz"] == 1234567890.0
    assert row["latency_s_per_round"] == 79.6999
    assert row["tx_power_dbm"] <= 10 * math.log10(0.12345675 * 1e3)
    assert row["energy_j_per_run"] == 2.50000
