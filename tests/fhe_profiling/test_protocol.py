"""The split CKKS protocol: encrypted step == plaintext step; the server sees only bytes."""

from __future__ import annotations

import copy
import itertools
import struct
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tenseal")
pytest.importorskip("transformers")

from privtuner.costmodels.types import CkksParams  # noqa: E402
from privtuner.costmodels.workload import op_counts_per_step  # noqa: E402
from privtuner.fhe_profiling import bert, ckks_ops, packing  # noqa: E402
from privtuner.fhe_profiling import protocol as proto  # noqa: E402
from privtuner.scenario.schema import WorkloadSpec  # noqa: E402

pytestmark = pytest.mark.fhe

#: A small 128-bit set (N = 4096, log2 Q = 106 <= 109) with 32-bit scale and 5 bits of
#: integer room: enough for the tiny test model's values, fast enough for CI.
SMALL = CkksParams(4096, (37, 32, 37), 32)
#: Tiny BERT (2 layers, as BERT-Tiny, but H = 8) so a full encrypted step takes seconds.
TINY = bert.BertConfig(
    vocab_size=30,
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=16,
)
LORA = bert.LoraConfig(rank=2, alpha=4.0, b_init_std=0.1)


class SpyTransport(proto.InProcessTransport):
    """Records every message that crosses, both ways."""

    def __init__(self, server: proto.ProjectionServer) -> None:
        super().__init__(server)
        self.log: list[tuple[Any, Any]] = []

    def _send(self, message: bytes) -> bytes:
        reply = super()._send(message)
        self.log.append((message, reply))
        return reply


def _batch(sequences: int = 2, seq_len: int = 6) -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(7)
    ids = torch.from_numpy(rng.integers(5, TINY.vocab_size, size=(sequences, seq_len)))
    mask = torch.ones_like(ids)
    mask[1, seq_len - 2 :] = 0
    return ids, mask, torch.from_numpy(rng.integers(0, 2, size=sequences))


#: (packing, sequences, tokens per sequence, who rescales): 12 tokens do not divide N/2 =
#: 2048 (and the pooler sees 2); 128 x 16 = 2048 tokens fill every slot of the interleaved
#: ciphertexts; the protocol option rescale="device" with both packings.
RUNS = [
    ("interleaved", 2, 6, "server"),
    ("column", 2, 6, "server"),
    ("interleaved", 128, 16, "server"),
    ("interleaved", 2, 6, "device"),
    ("column", 2, 6, "device"),
]


@pytest.fixture(scope="module", params=RUNS, ids=[f"{p}-{b}x{t}-{r}" for p, b, t, r in RUNS])
def run(request: Any) -> dict[str, Any]:
    """One encrypted step (spied) and the plaintext step with the same init and batch."""
    packing, sequences, seq_len, rescale = request.param
    model, weights = bert.init_model(TINY, LORA, seed=3, dtype=torch.float64)
    ref_model = copy.deepcopy(model)
    ids, mask, labels = _batch(sequences, seq_len)
    ref = proto.plain_step(ref_model, weights, ids, mask, labels)
    ref_opt = torch.optim.AdamW(
        list(ref_model.trainable_named_parameters().values()), lr=1e-3, weight_decay=0.01
    )
    ref_opt.step()
    server = proto.ProjectionServer(weights)
    spy = SpyTransport(server)
    client = proto.DeviceClient(
        SMALL, spy, model, lr=1e-3, weight_decay=0.01, packing=packing, rescale=rescale
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = client.train_step(ids, mask, labels)
    return {
        "model": model,
        "ref_model": ref_model,
        "weights": weights,
        "ref": ref,
        "res": res,
        "server": server,
        "spy": spy,
        "client": client,
        "before": before,
        "batch": (ids, mask, labels),
        "packing": packing,
        "rescale": rescale,
    }


def test_encrypted_step_matches_plaintext(run: dict[str, Any]) -> None:
    cmp = proto.compare_steps(run["res"], run["ref"])
    assert len(run["ref"].grads) == 2 * 2 * 2 + 2  # A, B of Q, V in 2 layers + head W, b
    assert all(np.max(np.abs(g)) > 0 for g in run["ref"].grads.values())
    assert cmp["max_rel_err"] <= proto.RELATIVE_TOLERANCE, cmp
    assert cmp["logits_max_abs_err"] > 0  # it really went through CKKS (approximate)


def test_optimizer_updates_lora_and_head_like_plaintext(run: dict[str, Any]) -> None:
    model, ref_model, before = run["model"], run["ref_model"], run["before"]
    trainable = model.trainable_named_parameters()
    for n, p in model.named_parameters():
        if n in trainable:
            assert not torch.equal(p, before[n]), n
            ref_p = dict(ref_model.named_parameters())[n]
            # AdamW's first step moves each entry by ~lr * sign(g): compare the updates
            torch.testing.assert_close(p - before[n], ref_p - before[n], rtol=0, atol=2e-5)
        else:
            assert torch.equal(p, before[n]), n


def test_message_and_ciphertext_counts_match_workload_model(run: dict[str, Any]) -> None:
    res = run["res"]
    assert (res.projections_forward, res.projections_backward) == (13, 10)
    wl = WorkloadSpec(
        num_layers=2,
        hidden_size=8,
        intermediate_size=16,
        num_heads=2,
        vocab_size=30,
        lora_rank=2,
        lora_alpha=4.0,
        lora_targets=("query", "value"),
        batch_size=int(run["batch"][0].shape[0]),
        sequence_length_tokens=int(run["batch"][0].shape[1]),
    )
    c = op_counts_per_step(wl, SMALL, run["packing"])
    assert res.ciphertexts_up == c.ciphertexts_up == c.encryptions
    assert res.ciphertexts_down == c.ciphertexts_down == c.decryptions
    # the ciphertexts in the messages themselves, counted by the server's parser
    up = down = 0
    for m, r in run["spy"].log:
        if m[:4] == proto.MSG_PROJECT:
            up += packing.deserialize(
                run["server"].context, proto.unpack_message(m)[2]
            ).n_ciphertexts
            down += packing.deserialize(
                run["server"].context, proto.unpack_message(r)[2]
            ).n_ciphertexts
    assert (up, down) == (c.ciphertexts_up, c.ciphertexts_down)
    # every reply holds the primes the option says: one after the server's rescale, the
    # input level's two when the device rescales
    want_primes = 1 if run["rescale"] == "server" else 2
    for m, r in run["spy"].log:
        if m[:4] == proto.MSG_PROJECT:
            assert proto.unpack_message(m)[1]["rescale"] == run["rescale"]
            enc = packing.deserialize(run["server"].context, proto.unpack_message(r)[2])
            assert {ct.raw(run["server"].context).n_primes for b in enc.blocks for ct in b} == {
                want_primes
            }
    kinds = [m[:4] for m, _ in run["spy"].log]
    assert kinds.count(proto.MSG_SETUP) == 1
    assert kinds.count(proto.MSG_PROJECT) == 23
    proj_up = sum(len(m) for m, _ in run["spy"].log if m[:4] == proto.MSG_PROJECT)
    proj_down = sum(len(r) for m, r in run["spy"].log if m[:4] == proto.MSG_PROJECT)
    assert (res.bytes_up, res.bytes_down) == (proj_up, proj_down)
    assert res.timings_s["encrypt"] > 0 and res.timings_s["server"] > 0
    assert res.timings_s["total"] >= res.timings_s["encrypt"] + res.timings_s["server"]


def _walk(obj: Any, seen: set[int], depth: int = 0) -> list[Any]:
    """Every object reachable from ``obj`` through attributes, dicts and sequences."""
    if id(obj) in seen or depth > 12:
        return []
    seen.add(id(obj))
    out = [obj]
    if isinstance(obj, dict):
        children: list[Any] = [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple | set | frozenset):
        children = list(obj)
    elif isinstance(obj, str | bytes | int | float | bool | type(None) | np.ndarray):
        children = []
    else:
        children = list(getattr(obj, "__dict__", {}).values())
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                children.append(getattr(obj, slot))
    for c in children:
        out.extend(_walk(c, seen, depth + 1))
    return out


def test_server_holds_no_secret_key_and_no_plaintext(run: dict[str, Any]) -> None:
    server, spy, client = run["server"], run["spy"], run["client"]
    # 1. only plain byte buffers crossed, both ways (a large message is made in a bytearray)
    plain = (bytes, bytearray)
    assert spy.log and all(type(m) in plain and type(r) in plain for m, r in spy.log)
    # 2. the context is public: no secret key object, cannot decrypt
    ctx = server.context
    assert isinstance(ctx, ckks_ops.PublicCkks) and not isinstance(ctx, ckks_ops.CkksKeys)
    assert not ctx.is_private()
    held = _walk(server, set())
    assert not any(isinstance(o, ckks_ops.CkksKeys) for o in held)
    assert not any("secret" in type(o).__name__.lower() for o in held)
    # 3. no torch tensor; the only arrays are the server's own weights
    assert not any(isinstance(o, torch.Tensor) for o in held)
    own = {id(a) for a in server.weight_arrays}
    arrays = [o for o in held if isinstance(o, np.ndarray)]
    assert arrays and all(id(a) in own for a in arrays)
    # 4. the setup payload is exactly parameters + public key (nothing else appended)
    setup = next(m for m, _ in spy.log if m[:4] == proto.MSG_SETUP)
    _, _, payload = proto.unpack_message(setup)
    magic = b"PTCKKSPUB1\n"
    assert payload.startswith(magic)
    (hlen,) = struct.unpack_from("<I", payload, len(magic))
    import json

    head = json.loads(payload[len(magic) + 4 : len(magic) + 4 + hlen])
    assert set(head) == {"params", "parms_bytes", "pk_bytes"}
    assert len(payload) == len(magic) + 4 + hlen + head["parms_bytes"] + head["pk_bytes"]
    # 5. a received ciphertext cannot be decrypted with what the server holds
    proj = next(m for m, _ in spy.log if m[:4] == proto.MSG_PROJECT)
    _, _, data = proto.unpack_message(proj)
    enc = packing.deserialize(ctx, data)
    assert packing.packing_of(enc) == run["packing"]
    with pytest.raises(ckks_ops.CkksInputError):
        packing.decrypt(ctx, enc)  # type: ignore[arg-type]
    # ... but the device can, and it is the first activation matrix
    x0 = client.decrypt_for_audit(data)
    ids, _, _ = run["batch"]
    model = run["ref_model"]
    with torch.no_grad():
        pos = torch.arange(ids.shape[1])
        emb = model.emb_ln(
            model.word_embeddings(ids)
            + model.position_embeddings(pos)[None]
            + model.token_type_embeddings(torch.zeros_like(ids))
        )
    x_clear = emb.reshape(-1, TINY.hidden_size).numpy()
    np.testing.assert_allclose(x0, x_clear, atol=1e-5)
    # 6. no clear activation value appears in any upload: single float64 values (8 bytes,
    # a chance match in ciphertext bytes has probability ~len/2**64) and runs of four
    # float32 values in row- or column-major order (16 bytes). A single float32 (4 bytes)
    # is not checked: it matches random ciphertext bytes by chance (~len/2**32 per value).
    runs = [x_clear[r, :4] for r in range(4)] + [x_clear[:4, c] for c in range(4)]
    for m, _ in spy.log:
        for v in x_clear.ravel()[:16]:
            assert np.float64(v).tobytes() not in m
        for run4 in runs:
            assert np.ascontiguousarray(run4, dtype=np.float32).tobytes() not in m
            assert np.ascontiguousarray(run4, dtype=np.float64).tobytes() not in m


@pytest.mark.parametrize(
    ("packing_name", "tokens"),
    [("column", SMALL.slots + 100), ("interleaved", SMALL.poly_modulus_degree + 100)],
)
def test_tokens_beyond_one_ciphertext_spill_into_blocks(packing_name: str, tokens: int) -> None:
    """Column blocks hold N/2 tokens, interleaved ones N (two per slot)."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (8, 5))
    b = rng.normal(0, 0.3, 5)
    server = proto.ProjectionServer({"p": (w, b)})
    spy = SpyTransport(server)
    model, _ = bert.init_model(TINY, LORA, seed=0)
    client = proto.DeviceClient(SMALL, spy, model, packing=packing_name)
    x = rng.normal(0, 1, (tokens, 8))
    y = client.project_forward("p", x)
    np.testing.assert_allclose(y, x @ w + b, atol=1e-4)
    gy = rng.normal(0, 1e-3, (tokens, 5))
    gx = client.project_backward("p", gy)
    np.testing.assert_allclose(gx, gy @ w.T, atol=1e-7)
    _, _, data = proto.unpack_message(spy.log[-1][0])
    enc = packing.deserialize(server.context, data)
    assert packing.packing_of(enc) == packing_name
    assert len(enc.blocks) == 2


def test_protocol_errors_are_reported() -> None:
    server = proto.ProjectionServer({"p": (np.eye(2), np.zeros(2))})
    t = proto.InProcessTransport(server)
    reply = t.request(proto.pack_message(proto.MSG_PROJECT, {"name": "p", "direction": "forward"}))
    with pytest.raises(proto.ProtocolError, match="before the public context"):
        proto._expect_ok(reply)
    with pytest.raises(proto.ProtocolError, match="only bytes"):
        t.request("text")  # type: ignore[arg-type]
    with pytest.raises(proto.ProtocolError, match="length >= 8"):
        proto.unpack_message(b"abc")
    model, _ = bert.init_model(TINY, LORA, seed=0)
    client = proto.DeviceClient(SMALL, t, model)
    with pytest.raises(proto.ProtocolError, match="unknown projection 'q'"):
        client.project_forward("q", np.zeros((3, 2)))
    with pytest.raises(proto.ProtocolError, match="3 input features, expected 2"):
        client.project_forward("p", np.zeros((3, 3)))
    enc = packing.serialize(packing.encrypt(client._keys, np.zeros((3, 2))))
    head = {"name": "p", "direction": "forward", "rescale": "nobody"}
    with pytest.raises(proto.ProtocolError, match="rescale must be one of server, device"):
        proto._expect_ok(t.request(proto.pack_message(proto.MSG_PROJECT, head, enc)))
    with pytest.raises(ckks_ops.CkksInputError, match="rescale: unknown value 'nobody'"):
        proto.DeviceClient(SMALL, t, model, rescale="nobody")


def test_relative_error_is_normwise() -> None:
    ref = np.array([1.0, 1e-9])
    assert proto.relative_error(np.array([1.0, 2e-9]), ref) == pytest.approx(1e-9)
    assert proto.relative_error(np.array([0.5, 0.0]), np.zeros(2)) == 0.5


def test_process_transport_runs_server_in_its_own_process() -> None:
    import os

    model, weights = bert.init_model(TINY, LORA, seed=3, dtype=torch.float64)
    ref = proto.plain_step(copy.deepcopy(model), weights, *_batch())
    with proto.ProcessTransport(weights) as t:
        client = proto.DeviceClient(SMALL, t, model)
        res = client.train_step(*_batch(), update=False)
        pid = client._server_stats(reset=False).get("pid")
    assert pid is not None and pid != os.getpid()
    assert proto.compare_steps(res, ref)["max_rel_err"] <= proto.RELATIVE_TOLERANCE
    assert res.peak_rss_bytes["server"] > 0 and res.peak_rss_bytes["device"] > 0


@pytest.mark.slow
def test_bert_tiny_default_set_within_target(shared_data: Any) -> None:
    """Issue 4 target: real BERT-Tiny, 8 x 64 SST-2 tokens, N = 8192 default set."""
    from privtuner.fhe_profiling import lora_profile as lp

    (rec,) = lp.profile_lora(
        [lp.default_params()], tokens=512, seq_len=64, separate_process=False, progress=False
    )
    assert rec["poly_modulus_degree"] == 8192
    assert rec["max_rel_err"] <= proto.RELATIVE_TOLERANCE, rec


def test_split_columns_on_group_boundaries() -> None:
    assert proto._split_columns(0, 128, 2, 16) == [(0, 64), (64, 128)]
    assert proto._split_columns(0, 40, 2, 16) == [(0, 32), (32, 40)]  # 3 groups: 2 + 1
    assert proto._split_columns(0, 5, 4, 8) == [(0, 5)]  # one group: one part
    assert proto._split_columns(0, 7, 3, 1, own_weight=1.0) == [(0, 2), (2, 5), (5, 7)]


def test_split_columns_gives_this_process_its_weight() -> None:
    """The first range (the process that also merges) takes ``own_weight`` parts; the ranges
    still tile ``[lo, hi)`` on group boundaries."""
    for lo, hi, parts, group, weight in [(0, 512, 2, 16, 1.2), (3, 1003, 3, 1, 2.0)]:
        ranges = proto._split_columns(lo, hi, parts, group, own_weight=weight)
        assert ranges[0][0] == lo and ranges[-1][1] == hi
        for (_, a_hi), (b_lo, _) in itertools.pairwise(ranges):
            assert a_hi == b_lo and (b_lo - lo) % group == 0
        sizes = [b - a for a, b in ranges]
        assert sizes[0] / sizes[1] == pytest.approx(weight, rel=0.1), sizes


@pytest.mark.parametrize("rescale", ["server", "device"])
@pytest.mark.parametrize("packing_name", ["interleaved", "column"])
def test_server_workers_split_outputs_and_agree(packing_name: str, rescale: str) -> None:
    """A server with two processes returns the same products as one (same inputs, same
    partials order), each worker computing a range of output columns, with either party
    rescaling."""
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.3, (8, 24))
    b = rng.normal(0, 0.3, 24)
    x = rng.normal(0, 1, (40, 8))
    model, _ = bert.init_model(TINY, LORA, seed=0)
    outs = []
    for workers in (1, 2):
        server = proto.ProjectionServer({"p": (w, b)}, workers=workers)
        with proto.InProcessTransport(server) as t:
            client = proto.DeviceClient(SMALL, t, model, packing=packing_name, rescale=rescale)
            assert server.workers == workers
            outs.append(client.project_forward("p", x))
    np.testing.assert_allclose(outs[0], x @ w + b, atol=1e-4)
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-4)
    with pytest.raises(proto.ProtocolError, match="workers must be >= 1"):
        proto.ProjectionServer({"p": (w, b)}, workers=0)


@pytest.mark.parametrize("packing_name", ["interleaved", "column"])
def test_join_serialized_is_serialize_of_concat(packing_name: str) -> None:
    """The server's byte-level join of its workers' parts gives exactly the bytes of
    serializing the joined outputs (for bytes and memoryview parts); parts that do not belong
    together are refused."""
    rng = np.random.default_rng(8)
    keys = ckks_ops.make_context(SMALL)
    x = rng.normal(0, 1, (40, 8))
    w = rng.normal(0, 0.3, (8, 24))
    enc = packing.encrypt(keys, x, packing_name)
    cut = 2 * packing.output_group(enc)
    parts = [packing.project(keys, enc, w[:, :cut]), packing.project(keys, enc, w[:, cut:])]
    whole = packing.serialize(packing.concat_outputs(*parts))
    ser = [packing.serialize(p) for p in parts]
    assert packing.join_serialized(ser) == whole
    assert packing.join_serialized([ser[0], memoryview(ser[1])]) == whole
    other = packing.serialize(packing.project(keys, packing.encrypt(keys, x[:9], packing_name), w))
    with pytest.raises(ckks_ops.CkksInputError):
        packing.join_serialized([ser[0], other])
    with pytest.raises(ckks_ops.CkksInputError, match="lengths"):
        packing.join_serialized([ser[0], ser[1][:-1]])


class _Replies:
    """A stand-in worker transport that returns one prepared reply."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply

    def _receive(self) -> bytes:
        return self.reply


def test_worker_parts_through_shared_memory_or_the_pipe() -> None:
    """A worker's part comes back through a shared-memory segment (the reply names it) or in
    the reply itself; the merging process joins both kinds and unlinks every segment."""
    from multiprocessing import shared_memory

    rng = np.random.default_rng(9)
    keys = ckks_ops.make_context(SMALL)
    enc = packing.encrypt(keys, rng.normal(0, 1, (40, 8)), "interleaved")
    w = rng.normal(0, 0.3, (8, 48))
    cut = [0, 16, 32, 48]
    ser = [
        packing.serialize(packing.project(keys, enc, w[:, a:b])) for a, b in itertools.pairwise(cut)
    ]
    name = proto._to_shared_memory(ser[1])
    assert name is not None
    pending = [
        _Replies(proto.pack_message(proto.MSG_OK, {"shm": name, "shm_size": len(ser[1])})),
        _Replies(proto.pack_message(proto.MSG_OK, {}, ser[2])),
    ]
    server = proto.ProjectionServer({})
    prefix = proto.pack_message(proto.MSG_OK, {"name": "p"})
    joined = server._join_worker_parts(ser[0], pending, 0.0, prefix)  # type: ignore[arg-type]
    assert joined == prefix + packing.join_serialized(ser)
    # ... the reply a device reads: that header and every part, in column order
    _, head, payload = proto.unpack_message(joined)
    assert head == {"name": "p"}
    whole = packing.project(keys, enc, w)
    got = packing.decrypt(keys, packing.deserialize(keys, payload))
    np.testing.assert_allclose(got, packing.decrypt(keys, whole), atol=1e-9)
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=name)


class _Counted(_Replies):
    """A stand-in worker transport that counts the replies read from it."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(reply)
        self.reads = 0

    def _receive(self) -> bytes:
        self.reads += 1
        return self.reply


def test_a_failed_worker_part_still_reads_every_reply_and_unlinks_segments() -> None:
    """A worker's error is raised, but only after every other worker's reply was read (none
    stays queued for the next request) and every segment named was unlinked."""
    from multiprocessing import shared_memory

    data = bytes(range(256)) * 4
    name = proto._to_shared_memory(data)
    assert name is not None
    pending = [
        _Counted(proto.pack_message(proto.MSG_ERROR, {"error": "ValueError: boom"})),
        _Counted(proto.pack_message(proto.MSG_OK, {"shm": name, "shm_size": len(data)})),
        _Counted(proto.pack_message(proto.MSG_OK, {}, data)),
    ]
    server = proto.ProjectionServer({})
    with pytest.raises(proto.ProtocolError, match="boom"):
        server._join_worker_parts(bytearray(data), pending, 0.0, b"")  # type: ignore[arg-type]
    assert [t.reads for t in pending] == [1, 1, 1]
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=name)


def test_a_failure_of_the_own_part_leaves_no_worker_reply_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With two server processes, a projection whose own part fails (here: forced, in the
    merging process only) answers an error; the worker's reply of that request is drained, so
    the next request gets its own, correct, products."""
    rng = np.random.default_rng(6)
    w = rng.normal(0, 0.3, (8, 24))
    b = rng.normal(0, 0.3, 24)
    x = rng.normal(0, 1, (40, 8))
    model, _ = bert.init_model(TINY, LORA, seed=0)
    server = proto.ProjectionServer({"p": (w, b)}, workers=2)
    real = packing.project
    with proto.InProcessTransport(server) as t:
        client = proto.DeviceClient(SMALL, t, model, packing="interleaved")
        monkeypatch.setattr(packing, "project", lambda *a, **k: 1 / 0)
        with pytest.raises(proto.ProtocolError, match="ZeroDivisionError"):
            client.project_forward("p", x)
        monkeypatch.setattr(packing, "project", real)
        x2 = rng.normal(0, 1, (40, 8))
        np.testing.assert_allclose(client.project_forward("p", x2), x2 @ w + b, atol=1e-4)


class _Posted(_Counted):
    """A stand-in worker transport that counts the requests posted to it; ``closed``: its
    ``_post`` raises as a stopped worker's transport does."""

    def __init__(self, reply: bytes, closed: bool = False) -> None:
        super().__init__(reply)
        self.posts = 0
        self.closed = closed

    def _post(self, message: bytes) -> None:
        if self.closed:
            raise proto.ProtocolError("the transport is closed (its server was stopped)")
        self.posts += 1

    def close(self) -> None:
        pass


def test_a_failed_post_to_a_worker_drains_the_workers_already_posted() -> None:
    """A worker that cannot take its part (its transport closed) fails the projection, but
    the reply of every worker already sent its part is read: none stays queued to be taken
    for the next request's part."""
    rng = np.random.default_rng(7)
    w = rng.normal(0, 0.3, (8, 24))
    model, _ = bert.init_model(TINY, LORA, seed=0)
    server = proto.ProjectionServer({"p": (w, None)})
    live = _Posted(proto.pack_message(proto.MSG_ERROR, {"error": "ValueError: stale"}))
    with proto.InProcessTransport(server) as t:
        client = proto.DeviceClient(SMALL, t, model, packing="column")
        server._pool = [live, _Posted(b"", closed=True)]  # type: ignore[list-item]
        with pytest.raises(proto.ProtocolError, match="transport is closed"):
            client.project_forward("p", rng.normal(0, 1, (40, 8)))
    assert (live.posts, live.reads) == (1, 1)


def _request_in_thread(t: proto.ProcessTransport, seconds: float) -> tuple[bool, dict[str, Any]]:
    """``t.request(STAT)`` in a thread; (still blocked after ``seconds``, its outcome)."""
    import threading

    out: dict[str, Any] = {}

    def go() -> None:
        try:
            out["reply"] = t.request(proto.pack_message(proto.MSG_STATS, {}))
        except Exception as exc:
            out["error"] = exc

    th = threading.Thread(target=go, daemon=True)
    th.start()
    th.join(seconds)
    return th.is_alive(), out


@pytest.mark.parametrize("phase", ["start", "receive"])
def test_process_transport_times_out_on_a_hung_server(phase: str) -> None:
    """A server process that is alive but never answers (stopped with SIGSTOP) ends the
    request after the start or receive timeout, with an error naming it; not a hang."""
    import os
    import signal

    t = proto.ProcessTransport(
        {"p": (np.ones((2, 2)), None)}, start_timeout_s=2.0, receive_timeout_s=1.0
    )
    try:
        if phase == "receive":  # up and answering first
            header, _ = proto._expect_ok(t.request(proto.pack_message(proto.MSG_STATS, {})))
            assert header["pid"] == t.pid
        assert t.pid is not None
        os.kill(t.pid, signal.SIGSTOP)
        blocked, out = _request_in_thread(t, 30.0)
        assert not blocked, "the request still waits for a hung server after 30 s"
        name = "start_timeout_s = 2 s" if phase == "start" else "receive_timeout_s = 1 s"
        assert isinstance(out.get("error"), proto.ProtocolError), out
        assert name in str(out["error"])
        assert not t._proc.is_alive()  # the hung server was stopped
        with pytest.raises(proto.ProtocolError, match="transport is closed"):
            t.request(proto.pack_message(proto.MSG_STATS, {}))
    finally:
        if t._proc.is_alive() and t.pid is not None:
            os.kill(t.pid, signal.SIGKILL)
        t.close()


def test_process_transport_rejects_bad_timeouts() -> None:
    for kw in ({"start_timeout_s": 0.0}, {"receive_timeout_s": float("nan")}):
        with pytest.raises(proto.ProtocolError, match=next(iter(kw))):
            proto.ProcessTransport({"p": (np.ones((2, 2)), None)}, **kw)  # type: ignore[arg-type]


def test_device_client_refuses_an_inconsistent_set_before_sending() -> None:
    """A hand-built set whose rescaling prime differs from the scale never reaches the
    server: one clear ParameterError at construction, no message sent."""
    from privtuner.errors import ParameterError

    model, weights = bert.init_model(TINY, LORA, seed=0)
    t = SpyTransport(proto.ProjectionServer(weights))
    with pytest.raises(ParameterError, match="rescaling prime q1 = 40 bits differs"):
        proto.DeviceClient(CkksParams(8192, (60, 40, 60), 20), t, model)
    assert t.log == []


@pytest.mark.parametrize("packing_name", ["interleaved", "column"])
def test_device_detects_result_overflow(packing_name: str) -> None:
    """SMALL leaves 2^(37 - 32 - 1) = 16 of headroom: a projection whose |X W + b| is about
    100 wraps modulo q0; the device raises instead of returning the wrapped values."""
    rng = np.random.default_rng(9)
    w = np.full((8, 4), 2.0)
    x = rng.uniform(5.0, 7.0, (10, 8))  # |X W| ~ 100
    model, _ = bert.init_model(TINY, LORA, seed=0)
    with proto.InProcessTransport(proto.ProjectionServer({"p": (w, None)})) as t:
        client = proto.DeviceClient(SMALL, t, model, packing=packing_name)
        np.testing.assert_allclose(client.project_forward("p", x / 16), x @ w / 16, atol=1e-3)
        with pytest.raises(ckks_ops.CkksOverflowError, match=r"may reach .* headroom 2\^4"):
            client.project_forward("p", x)
