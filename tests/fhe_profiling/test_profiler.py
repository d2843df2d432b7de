"""Profiler: environment metadata, quick-set selection, and a real smoke run at N=4096."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from privtuner.costmodels.types import CkksParams
from privtuner.errors import ParameterError
from privtuner.fhe_profiling import env

SMOKE = CkksParams(4096, (40, 20, 40), 20)


def test_environment_has_every_record_column() -> None:
    from privtuner.costmodels.fitting import RECORD_COLUMNS

    e = env.environment()
    env_cols = [c for c in RECORD_COLUMNS if c in e]
    assert set(env_cols) == {
        "cpu_model",
        "cpu_freq_hz",
        "threads",
        "tenseal_version",
        "numpy_version",
        "python_version",
        "date",
        "load_avg_1m",
    }
    assert e["threads"] >= 1
    assert e["cpu_freq_hz"] is None or e["cpu_freq_hz"] > 1e8
    assert e["date"].endswith("+00:00")


def test_limit_blas_threads_restores() -> None:
    before = env.blas_threads()
    with env.limit_blas_threads(1) as n:
        assert n in (1, None)
        if n is not None:
            assert env.thread_count() == 1
    assert env.blas_threads() == before


def test_tune_allocator_keeps_heap_and_is_recorded() -> None:
    """On glibc the three mallopt parameters are set (idempotently) and the environment
    columns say so; elsewhere it is a no-op that says nothing was set."""
    import platform

    got = env.tune_allocator()
    if platform.libc_ver()[0] != "glibc":
        assert got == {}
        return
    assert got == {
        "mmap_threshold_bytes": 1 << 30,
        "trim_threshold_bytes": (1 << 31) - 1,
        "top_pad_bytes": 256 << 20,
    }
    assert env.tune_allocator() == got
    assert env.environment()["allocator"] == "heap kept"


def test_quick_sets_cover_every_n_and_the_scale_range() -> None:
    from privtuner.costmodels.catalogue import generate_catalogue
    from privtuner.fhe_profiling.profiler import quick_sets

    cat = generate_catalogue()
    quick = quick_sets(cat)
    assert {p.poly_modulus_degree for p in quick} == {p.poly_modulus_degree for p in cat}
    assert min(p.log2_q for p in quick) == min(p.log2_q for p in cat)
    assert max(p.log2_q for p in quick) == max(p.log2_q for p in cat)
    assert len(quick) < len(cat)


def test_profile_config_rejects_bad_kernel_shapes() -> None:
    from privtuner.fhe_profiling.profiler import FULL, QUICK, ProfileConfig

    assert (128, 512) in FULL.kernel_shapes and (512, 128) in FULL.kernel_shapes
    assert FULL.shape_repeats >= 1 and QUICK.shape_repeats >= 1
    with pytest.raises(ParameterError, match="kernel_shapes"):
        ProfileConfig(kernel_shapes=((128, 0),))
    with pytest.raises(ParameterError, match="shape_repeats"):
        ProfileConfig(shape_repeats=-1)


def test_unknown_set_name_is_rejected() -> None:
    from privtuner.fhe_profiling.profiler import select_sets

    with pytest.raises(ParameterError, match="unknown catalogue set"):
        select_sets(["N5_nope"])


@pytest.mark.fhe
def test_profiler_smoke_n4096(tmp_path) -> None:
    pytest.importorskip("tenseal")
    from privtuner.costmodels.fitting import RECORD_COLUMNS, RECORD_OPS, read_records
    from privtuner.fhe_profiling.profiler import ProfileConfig, run_profile

    cfg = ProfileConfig(
        repeats=2,
        warmup=1,
        keygen_repeats=1,
        d_in=16,
        d_out=8,
        kernel_shapes=((16, 8), (8, 32), (32, 8)),
        shape_repeats=1,
        interleaved_shapes=((32, 8),),
    )
    records = run_profile(tmp_path, sets=[SMOKE], config=cfg, progress=False)
    assert {r["op"] for r in records} == set(RECORD_OPS)
    back = read_records(tmp_path / "records.csv")
    # one record per op on the base block, plus each kernel on each further block
    assert len(back) == len(records) == len(RECORD_OPS) + 2 + 1
    il = {(r["d_in"], r["d_out"]) for r in back if r["op"] == "project_il"}
    assert il == {(16, 8), (32, 8)}
    kernel = {(r["d_in"], r["d_out"]): r for r in back if r["op"] == "project_mac"}
    assert set(kernel) == {(16, 8), (8, 32), (32, 8)}
    assert kernel[(8, 32)]["repeats"] == kernel[(32, 8)]["repeats"] == 1
    assert all(r["value"] > 0 for r in kernel.values())
    assert all(
        (r["d_in"], r["d_out"]) == (16, 8)
        for r in back
        if r["op"] not in ("project_mac", "project_il")
    )
    by_op = {r["op"]: r for r in back if (r["d_in"], r["d_out"]) == (16, 8)}
    for op, unit in RECORD_OPS.items():
        r = by_op[op]
        assert r["unit"] == unit and r["set_name"] == SMOKE.name
        assert r["p10"] <= r["value"] <= r["p90"]
        assert r["value"] > 0
    # sizes: an uploaded (seeded, 2 primes) ct is smaller than a downloaded full one (1 prime)
    # would be doubled; both are within the raw residue bound N * L * 8 bytes per polynomial
    n = SMOKE.poly_modulus_degree
    assert by_op["ct_bytes_fresh"]["value"] < 2 * n * 2 * 8
    assert by_op["ct_bytes_product"]["value"] < 2 * n * 1 * 8 + 200
    # the compact format (ceil(bits / 8) bytes per residue, a fixed header and one width byte
    # per prime) of the rescaled product (q0) and of the unrescaled one (q0, q1)
    widths = [math.ceil(b / 8) for b in SMOKE.coeff_mod_bit_sizes[:-1]]
    head = by_op["ct_bytes_product"]["value"] - 2 * n * widths[0] - 1
    assert 0 < head < 100
    assert by_op["ct_bytes_unrescaled"]["value"] == head + 2 + 2 * n * sum(widths)
    # precision: the rescale-noise bound of test_ckks_ops.ckks_tol (25 sigma_r0 sigma_s / D)
    # plus fresh noise bounds the error from above; the scale 2^20 bounds the bits from above
    bound = 25 * math.sqrt(n / 12) * math.sqrt(2 * n / 3) / 2.0**20 + 1e-3
    assert -math.log2(bound) < by_op["precision_bits"]["value"] < 20
    # samples behind each median: per ciphertext for encrypt/rescale, per run otherwise
    # (decrypt: a block's batched decryption divided by its ciphertexts)
    assert by_op["encrypt"]["repeats"] == 16 * 2
    assert by_op["rescale"]["repeats"] == 8 * 2
    assert by_op["decrypt"]["repeats"] == by_op["project_mac"]["repeats"] == 2
    assert by_op["precision_bits"]["repeats"] == 2
    assert by_op["keygen"]["threads"] == 1 or env.blas_threads() is None
    meta = json.loads((tmp_path / "profile_meta.json").read_text())
    assert meta["sets"] == [SMOKE.name] and meta["elapsed_s"] > 0
    if meta["records_parquet"]:
        import pyarrow.parquet as pq

        table = pq.read_table(tmp_path / "records.parquet")
        assert table.column_names == list(RECORD_COLUMNS)
        assert table.num_rows == len(records)


@pytest.mark.fhe
def test_run_profile_cli_prints_summary(tmp_path, capsys) -> None:
    pytest.importorskip("tenseal")
    from privtuner.costmodels.fitting import RECORD_OPS
    from privtuner.fhe_profiling import profiler

    cfg = profiler.ProfileConfig(
        repeats=1,
        warmup=0,
        keygen_repeats=1,
        d_in=4,
        d_out=4,
        kernel_shapes=(),
        interleaved_shapes=(),
    )
    orig = profiler.QUICK
    profiler.QUICK = cfg  # keep the smoke test fast
    try:
        args = argparse.Namespace(quick=True, out=str(tmp_path), sets=[SMOKE.name], repeats=1)
        assert profiler.run_profile_cli(args) == 0
    finally:
        profiler.QUICK = orig
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["sets"] == [SMOKE.name] and summary["n_records"] == len(RECORD_OPS)
