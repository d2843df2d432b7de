"""``benchmarks/bench_encrypted_projection.py``: what its server time covers.

The server writes its products' compact bytes when it serializes its reply
(``SealCiphertext.of_raw``, one buffer), no longer inside the projection: the benchmark's
``server_s`` must include that serialization, or the server's cost (most of it with
``rescale="device"``) is missed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_encrypted_projection", ROOT / "benchmarks" / "bench_encrypted_projection.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Clock:
    """A clock that only the fake operations below advance [s]."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_server_time_includes_writing_the_products(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _bench()
    clock = _Clock()
    cost = {"encrypt": 1.0, "project": 2.0, "rescale": 0.5, "write_products": 3.0}
    x = np.ones((4, 2))
    w = np.eye(2)

    def encrypt(keys: Any, x_: Any, packing: str) -> SimpleNamespace:
        clock.now += cost["encrypt"]
        return SimpleNamespace(kind="up", n_ciphertexts=2, nbytes=10)

    def serialize(enc: SimpleNamespace) -> bytes:
        if enc.kind == "products":  # the server's reply: its products' bytes written here
            clock.now += cost["write_products"]
        return enc.kind.encode()

    def project(pub: Any, enc: Any, w_: Any, *, timings: Any, rescale: str) -> SimpleNamespace:
        clock.now += cost["project"]
        timings.rescale_s += cost["rescale"]
        return SimpleNamespace(kind="products", n_ciphertexts=2, nbytes=20)

    fake_pk = SimpleNamespace(
        encrypt=encrypt,
        serialize=serialize,
        deserialize=lambda ctx, data: data,
        project=project,
        decrypt=lambda keys, data: x @ w,
    )
    monkeypatch.setattr(mod, "pk", fake_pk)
    monkeypatch.setattr(mod, "time", SimpleNamespace(perf_counter=clock))
    args = SimpleNamespace(warmup=0, repeats=1)
    got = mod._kernel(None, None, "column", x, w, args)
    assert got["server_s"] == cost["project"] + cost["write_products"]
    split = got["server_split_s"]
    assert split["rescale_serialize"] == cost["rescale"] + cost["write_products"]
    assert got["device_encrypt_s"] == cost["encrypt"]
