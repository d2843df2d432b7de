"""The split CKKS fine-tuning protocol (spec section 1) as two parties exchanging only bytes.

Parties
-------
* :class:`DeviceClient` (data owner) holds the CKKS secret key, the data and labels, the LoRA
  adapters, the classifier head, the embeddings and LayerNorms (:class:`bert.BertDevice`), and
  runs everything but the frozen dense projections in clear, with torch autograd. Each frozen
  projection is an autograd function (:class:`bert.RemoteProjector`) whose forward encrypts
  ``X [T, d_in]`` in the client's packing (:mod:`packing`: ``interleaved`` by default, N real
  values per ciphertext; ``column``, the baseline: feature j of up to N/2 tokens per
  ciphertext), uploads it and decrypts ``X W + b``; whose backward encrypts ``dL/dY [T, d_out]``,
  uploads it and decrypts ``dL/dX = dL/dY W^T``. The backward is skipped where ``X`` needs no
  gradient (first layer's Q, K, V). LoRA and head gradients are computed on the device in
  clear; a torch ``AdamW`` updates them.
* :class:`ProjectionServer` (model owner) holds the frozen weights ``W0, b0`` of every
  projection and receives only bytes: the serialized *public* CKKS context (no secret key)
  and serialized ciphertexts. It computes ciphertext x plaintext products (depth one; no
  ciphertext x ciphertext product) and returns serialized ciphertexts.
* A transport (:class:`InProcessTransport`, or :class:`ProcessTransport` with the server in
  its own OS process) carries the messages and counts the bytes up and down per message kind.

Threat model
------------
Semi-honest (honest-but-curious) server: it follows the protocol but may inspect everything
it receives. It sees only the public context and IND-CPA secure CKKS ciphertexts (RLWE, at
>= 128-bit classical security for every catalogue set, per the HomomorphicEncryption.org
standard table): no tokens, activations, gradients, labels or adapters in clear. It learns the
shapes (tokens per step, projection names), the message sizes and timings. Backward gradients
are scaled by a power of two before encryption (``2^-floor(log2 max|dL/dY|)``) to use the CKKS
precision; the factor stays on the device (forward activations are not scaled because the
server adds the bias ``b0``). Limits: (1) the frozen weights ``W0`` are *not* hidden from the
device, which could query the projections with chosen inputs and decrypt the answers: this
protocol protects the data owner, not the model owner; (2) CKKS decryptions are approximate,
so releasing decrypted results to third parties would need noise flooding (Li-Micciancio,
Eurocrypt 2021) — here decrypted values never leave the device; (3) no protection against a
malicious (deviating) server, which could return wrong products.

Overflow: a result entry must stay below the headroom ``2^(q0 - scale - 1)`` of its set, or it
wraps modulo q0 and decrypts to wrong values. Each projection reply carries two numbers of the
server's weights (``max_j ||W_:j||_2`` and ``max |b|`` over the columns computed, nothing the
limit (1) above does not already concede); the device bounds ``|X W + b|`` by
``max_t ||x_t||_2 max_j ||W_:j||_2 + max |b|`` from its clear input and refuses the result
(:class:`ckks_ops.CkksOverflowError`) when the bound or a decrypted value reaches the headroom.

Rescale (protocol option ``rescale``): by default the server rescales every product once and
returns one-prime ciphertexts. With ``rescale="device"`` it returns the products unrescaled
(every prime of the input level, scale ``scale_x scale_w``) and the device decrypts them as they
are: same plaintext, no SEAL rescale on the server (with interleaved packing the rescales are
most of its time), downloads larger by the rescaling prime's share of the bits. Rescaling
needs nothing secret, so the server learns nothing more or less either way.

Messages: ``kind (4 bytes) | header length (u32, big-endian) | JSON header | payload``.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from privtuner.costmodels.types import CkksParams
from privtuner.errors import PrivtunerError
from privtuner.fhe_profiling.env import tune_allocator

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from privtuner.fhe_profiling.bert import BertDevice, FrozenWeights

#: Message kinds.
MSG_SETUP = b"SETP"  # public context upload (once per session)
MSG_PROJECT = b"PROJ"  # one encrypted projection (forward or backward)
MSG_STATS = b"STAT"  # server's own timers and peak memory (management, not protocol data)
MSG_RESET = b"RSET"  # reset the server's timers and peak memory (management)
MSG_ERROR = b"ERR!"
MSG_OK = b"OKAY"

#: Tolerance of the encrypted step vs the plaintext step (normwise relative error of logits,
#: loss and every LoRA/head gradient) at the default N=8192 set.
RELATIVE_TOLERANCE = 1e-3

_HEADER = struct.Struct(">I")
#: A message on the wire: ``bytes``, or a ``bytearray`` made in one buffer (a large reply).
Message = bytes | bytearray


class ProtocolError(PrivtunerError):
    """A malformed or unexpected protocol message, or an error reported by the other party."""


def pack_message(
    kind: bytes, header: Mapping[str, Any], payload: bytes | bytearray | memoryview = b""
) -> bytes:
    """``kind | u32 len | JSON header | payload`` (kind: 4 bytes)."""
    if len(kind) != 4:
        raise ProtocolError(f"message kind must be 4 bytes (got {kind!r})")
    h = json.dumps(dict(header), separators=(",", ":")).encode()
    return kind + _HEADER.pack(len(h)) + h + payload


def unpack_message(
    data: Message, *, copy: bool = True
) -> tuple[bytes, dict[str, Any], bytes | memoryview]:
    """Inverse of :func:`pack_message`: ``(kind, header, payload)``; with ``copy=False`` the
    payload is a read-only view on ``data`` (no copy of a large reply)."""
    if not isinstance(data, bytes | bytearray) or len(data) < 8:
        raise ProtocolError(f"a message must be bytes of length >= 8 (got {type(data).__name__})")
    (n,) = _HEADER.unpack_from(data, 4)
    if 8 + n > len(data):
        raise ProtocolError(f"message header length {n} exceeds the message ({len(data)} bytes)")
    header = json.loads(bytes(data[8 : 8 + n]).decode())
    payload = bytes(data[8 + n :]) if copy else memoryview(data).toreadonly()[8 + n :]
    return bytes(data[:4]), header, payload


# --------------------------------------------------------------------------- memory


def peak_rss_bytes() -> int:
    """Peak resident set size of this process [bytes] (``VmHWM``; ``ru_maxrss`` fallback)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    import resource  # pragma: no cover

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # pragma: no cover


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS (Linux ``clear_refs`` 5); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:  # pragma: no cover - non-Linux or restricted
        return False


# --------------------------------------------------------------------------- server


class ProjectionServer:
    """The model owner: frozen projections, public context, ciphertext x plaintext products.

    ``weights``: ``{name: (W [d_in, d_out], b [d_out])}``. Holds nothing else but the public
    context, the parameter set and its own counters; keeps no received ciphertext after a reply.
    """

    def __init__(
        self,
        weights: Mapping[str, tuple[NDArray[np.float64], NDArray[np.float64] | None]],
        *,
        workers: int = 1,
    ) -> None:
        if int(workers) < 1:
            raise ProtocolError(f"server workers must be >= 1 (got {workers})")
        self._weights: dict[
            str, tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None]
        ] = {}
        for name, (w, b) in weights.items():
            w64 = np.array(w, dtype=np.float64)
            wt = np.ascontiguousarray(w64.T)
            b64 = None if b is None else np.array(b, dtype=np.float64)
            for a in (w64, wt, b64):
                if a is not None:
                    a.setflags(write=False)
            self._weights[name] = (w64, wt, b64)
        tune_allocator()  # the kernel's working set stays mapped (see env.tune_allocator)
        self._context: Any = None
        self._params: CkksParams | None = None
        self._timers: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)
        # Further worker processes (each a one-worker server holding the same weights): a
        # projection's output columns are split between this process and them.
        self._pool: list[ProcessTransport] = [
            ProcessTransport(weights) for _ in range(int(workers) - 1)
        ]

    @property
    def workers(self) -> int:
        return 1 + len(self._pool)

    def close(self) -> None:
        """Stop the worker processes (if any)."""
        for t in self._pool:
            t.close()
        self._pool = []

    @property
    def weight_arrays(self) -> list[NDArray[np.float64]]:
        """Every array the server owns (its frozen weights), for audits."""
        return [a for t in self._weights.values() for a in t if a is not None]

    @property
    def context(self) -> Any:
        """The public CKKS context received from the device (None before setup)."""
        return self._context

    def handle(self, message: Message) -> Message:
        """Answer one message; errors come back as an ``ERR!`` message, never raised."""
        t0 = time.perf_counter()
        reply: Message
        try:
            kind, header, payload = unpack_message(message, copy=False)
            if kind == MSG_SETUP:
                reply = self._setup(header, payload)
            elif kind == MSG_PROJECT:
                reply = self._project(header, payload)
            elif kind == MSG_STATS:
                return pack_message(MSG_OK, self.stats())
            elif kind == MSG_RESET:
                self._timers.clear()
                self._counts.clear()
                reset_peak_rss()
                return pack_message(MSG_OK, {})
            else:
                raise ProtocolError(f"unknown message kind {kind!r}")
        except Exception as exc:  # report to the device; the server keeps running
            return pack_message(MSG_ERROR, {"error": f"{type(exc).__name__}: {exc}"})
        self._timers["handle_s"] += time.perf_counter() - t0
        return reply

    def stats(self) -> dict[str, Any]:
        """Server timers [s], counters and peak RSS [bytes] since the last reset."""
        import os

        return {
            **self._timers,
            **self._counts,
            "peak_rss_bytes": peak_rss_bytes(),
            "pid": os.getpid(),
        }

    def _setup(self, header: dict[str, Any], payload: bytes | memoryview) -> bytes:
        from privtuner.fhe_profiling import ckks_ops

        payload = bytes(payload)
        params = CkksParams.from_dict(header["params"])
        ctx = ckks_ops.load_public_context(payload, params)
        if _context_is_private(ctx):
            raise ProtocolError("the context sent to the server holds a secret key; refusing it")
        self._context, self._params = ctx, params
        message = pack_message(MSG_SETUP, header, payload)
        for t in self._pool:
            _expect_ok(t.request(message))
        return pack_message(MSG_OK, {})

    def _project(self, header: dict[str, Any], payload: bytes | memoryview) -> Message:
        from privtuner.fhe_profiling import ckks_ops, packing

        if self._context is None:
            raise ProtocolError("projection requested before the public context was set up")
        name, direction = header.get("name"), header.get("direction")
        if name not in self._weights:
            raise ProtocolError(f"unknown projection {name!r}; known: {sorted(self._weights)}")
        w, wt, b0 = self._weights[name]
        if direction == "forward":
            weight, bias = w, b0
        elif direction == "backward":
            weight, bias = wt, None
        else:
            raise ProtocolError(f"direction must be 'forward' or 'backward' (got {direction!r})")
        t0 = time.perf_counter()
        enc = packing.deserialize(self._context, payload)
        t1 = time.perf_counter()
        if enc.n_features != weight.shape[0]:
            raise ProtocolError(
                f"{name} {direction}: {enc.n_features} input features, expected {weight.shape[0]}"
            )
        rescale = header.get("rescale", "server")
        if rescale not in ckks_ops.RESCALE_AT:
            raise ProtocolError(
                f"rescale must be one of {', '.join(ckks_ops.RESCALE_AT)} (got {rescale!r})"
            )
        lo, hi = header.get("columns") or (0, weight.shape[1])
        if not 0 <= lo < hi <= weight.shape[1]:
            raise ProtocolError(f"columns [{lo}, {hi}) outside the {weight.shape[1]} outputs")
        ranges = _split_columns(lo, hi, self.workers, packing.output_group(enc))
        pending: list[ProcessTransport] = []
        try:  # a failure from here on drains the workers sent a part: no reply stays queued
            for t, (c0, c1) in zip(self._pool, ranges[1:], strict=False):
                sub = {
                    "name": name,
                    "direction": direction,
                    "columns": [c0, c1],
                    "rescale": rescale,
                    "reply": "shm",
                }
                t._post(pack_message(MSG_PROJECT, sub, payload))
                pending.append(t)
            c0, c1 = ranges[0]
            out = packing.project(
                self._context,
                enc,
                weight[:, c0:c1],
                None if bias is None else bias[c0:c1],
                rescale=rescale,
            )
            t2 = time.perf_counter()
            norms = np.linalg.norm(weight[:, lo:hi], axis=0)
            bias_abs = 0.0 if bias is None else float(np.max(np.abs(bias[lo:hi])))
            head = {
                "name": name,
                "direction": direction,
                # the device's overflow check (ckks_ops.projection_bound): two numbers of W, b
                "w_col_l2_max": float(np.max(norms)),
                "b_abs_max": bias_abs,
            }
            # The reply is made in one buffer: its header, then each ciphertext's bytes
            # written once (no copy of the whole for the message); a worker's part has no
            # header.
            to_shm = header.get("reply") == "shm"  # a worker's part, for the merging process
            prefix = pack_message(MSG_OK, head)
            data = packing.serialize(out, prefix=b"" if (pending or to_shm) else prefix)
        except BaseException:
            _drain_workers(pending)
            raise
        t3 = time.perf_counter()
        if pending:
            data = self._join_worker_parts(data, pending, t3, prefix)
        self._timers["deserialize_s"] += t1 - t0
        self._timers["project_s"] += t2 - t1
        self._timers["serialize_s"] += t3 - t2
        self._counts[f"n_{direction}"] += 1
        self._counts[f"n_{packing.packing_of(enc)}"] += 1
        if to_shm:
            shm = _to_shared_memory(data)
            if shm is not None:
                return pack_message(MSG_OK, {**head, "shm": shm, "shm_size": len(data)})
            return pack_message(MSG_OK, head, data)
        return data

    def _join_worker_parts(
        self, own: bytearray, pending: list[ProcessTransport], t0: float, prefix: bytes
    ) -> bytearray:
        """This process's serialized part joined with each worker's (in column order) after
        ``prefix`` (the reply's header), the workers' parts read from shared memory where they
        came that way. Every worker's reply is read even when one fails (the first failure is
        raised after), so that none stays queued for the next request, and every segment is
        unlinked."""
        from multiprocessing import shared_memory

        from privtuner.fhe_profiling import packing

        parts: list[bytes | bytearray | memoryview] = [own]
        segments: list[shared_memory.SharedMemory] = []
        error: BaseException | None = None
        try:
            for t in pending:
                try:
                    part, seg = _receive_part(t)
                except Exception as exc:  # read the others' replies first, then raise
                    error = error or exc
                    continue
                if seg is not None:
                    segments.append(seg)
                parts.append(part)
            if error is not None:
                raise error
            t1 = time.perf_counter()
            self._timers["wait_workers_s"] += t1 - t0
            data = packing.join_serialized(parts, prefix)
            self._timers["merge_s"] += time.perf_counter() - t1
            return data
        finally:
            for p in parts:
                if isinstance(p, memoryview):
                    p.release()
            for seg in segments:
                with contextlib.suppress(BufferError):
                    # a view still exported (only on an error path) keeps the mapping open
                    # until it is collected; the error being raised is not masked by this
                    seg.close()
                seg.unlink()


def _receive_part(t: ProcessTransport) -> tuple[bytes | memoryview, Any]:
    """One worker's reply: its part, read from the shared-memory segment the reply names
    (returned too, for the caller to close and unlink) or carried in the reply (segment
    ``None``)."""
    from multiprocessing import shared_memory

    head, part = _expect_ok(t._receive())
    if "shm" not in head:
        return part, None
    seg = shared_memory.SharedMemory(name=str(head["shm"]))
    assert seg.buf is not None  # an open segment
    return seg.buf[: int(head["shm_size"])], seg


def _drain_workers(pending: Sequence[ProcessTransport]) -> None:
    """Read and drop the reply of every worker in ``pending`` (after a failure of the
    merging process's own part), unlinking any shared-memory segment a reply names; the
    workers' own errors are dropped (the merging process's error is the one raised)."""
    for t in pending:
        with contextlib.suppress(Exception):  # best effort: the caller raises its own error
            part, seg = _receive_part(t)
            if seg is not None:
                if isinstance(part, memoryview):
                    part.release()
                seg.close()
                seg.unlink()


def _to_shared_memory(data: bytes | bytearray) -> str | None:
    """``data`` copied into a new POSIX shared-memory segment; its name, or None where
    ``/dev/shm`` lacks room (a tmpfs too small would kill the writer with SIGBUS), the caller
    then sends the bytes through the pipe. The reader unlinks the segment."""
    import shutil
    from multiprocessing import shared_memory

    try:
        if shutil.disk_usage("/dev/shm").free < 2 * len(data) + (64 << 20):
            return None
        seg = shared_memory.SharedMemory(create=True, size=len(data))
    except OSError:
        return None
    try:
        assert seg.buf is not None  # an open segment
        seg.buf[: len(data)] = data
        return seg.name
    finally:
        seg.close()


def _result_bound(x: NDArray[np.float64], head: Mapping[str, Any]) -> float:
    """A bound on every entry of the projection's result from the device's clear input and
    the server's ``w_col_l2_max`` and ``b_abs_max`` (:func:`ckks_ops.projection_bound`)."""
    from privtuner.fhe_profiling import ckks_ops

    try:
        w_l2, b_abs = float(head["w_col_l2_max"]), float(head["b_abs_max"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"projection reply without a valid weight bound ({exc})") from exc
    return ckks_ops.projection_bound(x, w_l2, b_abs)


#: Work of this process relative to one worker's when a projection is split: a worker's part
#: also pays its request and the trip of its products back (measured with a pipe: ~0.12 s per
#: 67 MB of products against ~0.6 s of kernel), so this process takes a larger part.
_OWN_PART_WEIGHT = 1.2


def _split_columns(
    lo: int, hi: int, parts: int, group: int, own_weight: float = _OWN_PART_WEIGHT
) -> list[tuple[int, int]]:
    """``[lo, hi)`` cut into at most ``parts`` ranges on multiples of ``group`` (an
    interleaved projection's partials come in groups of ``k`` outputs); the first range (this
    process's) weighs ``own_weight`` against 1 for each of the others."""
    groups = math.ceil((hi - lo) / group)
    parts = max(1, min(parts, groups))
    weights = [own_weight] + [1.0] * (parts - 1)
    total, acc, cuts = sum(weights), 0.0, []
    for wt in weights:
        cuts.append(lo + group * round(acc * groups / total))
        acc += wt
    cuts.append(hi)
    return [(cuts[i], min(cuts[i + 1], hi)) for i in range(parts) if cuts[i] < cuts[i + 1]]


def _context_is_private(ctx: Any) -> bool:
    """Whether a (wrapped) TenSEAL context holds a secret key."""
    for obj in (ctx, getattr(ctx, "context", None), getattr(ctx, "ctx", None)):
        fn = getattr(obj, "is_private", None)
        if callable(fn):
            return bool(fn())
    return False


# --------------------------------------------------------------------------- transports


@dataclass
class TransportStats:
    """Bytes up (device -> server) and down per message kind, messages, round-trip time [s]."""

    bytes_up: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes_down: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    messages: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    round_trip_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {
            "bytes_up": dict(self.bytes_up),
            "bytes_down": dict(self.bytes_down),
            "messages": dict(self.messages),
            "round_trip_s": dict(self.round_trip_s),
        }


class _TransportBase:
    """Counts every message; subclasses implement ``_send(bytes) -> bytes``."""

    def __init__(self) -> None:
        self.stats = TransportStats()

    def _send(self, message: Message) -> Message:  # pragma: no cover - abstract
        raise NotImplementedError

    def request(self, message: Message) -> Message:
        if not isinstance(message, bytes | bytearray):
            raise ProtocolError(
                f"only bytes may cross the transport (got {type(message).__name__})"
            )
        kind = message[:4].decode("ascii", "replace")
        t0 = time.perf_counter()
        reply = self._send(message)
        self.stats.round_trip_s[kind] += time.perf_counter() - t0
        if not isinstance(reply, bytes | bytearray):
            raise ProtocolError(f"only bytes may cross the transport (got {type(reply).__name__})")
        self.stats.bytes_up[kind] += len(message)
        self.stats.bytes_down[kind] += len(reply)
        self.stats.messages[kind] += 1
        return reply

    def close(self) -> None:
        pass

    def __enter__(self) -> _TransportBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessTransport(_TransportBase):
    """Server in the same process: ``request`` calls ``server.handle`` with the bytes.

    Both parties share one process, so their peak memory cannot be told apart here; use
    :class:`ProcessTransport` to measure each party.
    """

    separate_processes = False

    def __init__(self, server: ProjectionServer) -> None:
        super().__init__()
        self.server = server

    def _send(self, message: Message) -> Message:
        return self.server.handle(message)

    def close(self) -> None:
        self.server.close()


def _serve(
    conn: Any, weights: dict[str, tuple[Any, Any]], workers: int = 1
) -> None:  # pragma: no cover
    """Child-process loop of :class:`ProcessTransport` (runs in the server's process)."""
    server = ProjectionServer(weights, workers=workers)
    conn.send_bytes(_READY)
    try:
        while True:
            try:
                msg = conn.recv_bytes()
            except EOFError:
                return
            if not msg:
                return
            conn.send_bytes(server.handle(msg))
    finally:
        server.close()
        conn.close()


class ProcessTransport(_TransportBase):
    """Server in its own OS process (``spawn``); bytes go through a pipe.

    The server process imports only numpy, TenSEAL and this module (no torch), so its peak
    memory is its own. ``weights`` are the server's model, handed to it at start-up (not via
    the counted channel).

    Timeouts: the server must be up (its start-up handshake received) within
    ``start_timeout_s`` of the start, and each reply must arrive within
    ``receive_timeout_s`` (``None``: wait forever). A server past either is stopped and a
    :class:`ProtocolError` names the timeout; the transport is closed from then on.
    """

    separate_processes = True

    def __init__(
        self,
        weights: Mapping[str, tuple[NDArray[np.float64], NDArray[np.float64] | None]],
        start_timeout_s: float = 120.0,
        *,
        receive_timeout_s: float | None = 600.0,
        server_workers: int = 1,
    ) -> None:
        super().__init__()
        import atexit
        import multiprocessing as mp

        if int(server_workers) < 1:
            raise ProtocolError(f"server workers must be >= 1 (got {server_workers})")
        self._start_timeout_s = _check_timeout("start_timeout_s", start_timeout_s)
        self._receive_timeout_s = (
            None
            if receive_timeout_s is None
            else _check_timeout("receive_timeout_s", receive_timeout_s)
        )
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        # A server with workers starts processes itself, which a daemonic process may not; it
        # and they exit when their pipe closes (this process ending or close()).
        self._proc = ctx.Process(
            target=_serve,
            args=(child, dict(weights), int(server_workers)),
            daemon=int(server_workers) == 1,
        )
        self._started_at = time.monotonic()
        self._ready = False
        self._proc.start()
        child.close()
        atexit.register(self.close)

    @property
    def pid(self) -> int | None:
        """The server process's id."""
        return self._proc.pid

    def _send(self, message: Message) -> Message:
        self._post(message)
        return self._receive()

    def _post(self, message: Message) -> None:
        """Send ``message`` once the server is up (waits for its start-up handshake)."""
        if self._conn.closed:
            raise ProtocolError("the transport is closed (its server was stopped)")
        if not self._ready:
            deadline = self._started_at + self._start_timeout_s
            if self._wait(deadline, "start_timeout_s", self._start_timeout_s) != _READY:
                self._stop()
                raise ProtocolError("the server process sent no start-up handshake")
            self._ready = True
        self._conn.send_bytes(message)

    def _receive(self) -> bytes:
        t = self._receive_timeout_s
        deadline = math.inf if t is None else time.monotonic() + t
        return self._wait(deadline, "receive_timeout_s", t)

    def _wait(self, deadline: float, name: str, timeout_s: float | None) -> bytes:
        """The next message from the server, before ``deadline`` (``time.monotonic``)."""
        while not self._conn.poll(max(0.0, min(1.0, deadline - time.monotonic()))):
            if not self._proc.is_alive():  # a server that died never answers: say so
                code = self._proc.exitcode
                self._stop()
                raise ProtocolError(f"the server process exited (code {code}) without replying")
            if time.monotonic() >= deadline:
                self._stop()
                what = "start" if name == "start_timeout_s" else "reply"
                raise ProtocolError(
                    f"the server process did not {what} within {name} = {timeout_s:g} s; "
                    f"it was stopped (raise {name} for slower servers or larger projections)"
                )
        reply: bytes = self._conn.recv_bytes()
        return reply

    def _stop(self) -> None:
        """Kill the server (it hung or died) and close the pipe."""
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(timeout=10)
        self._conn.close()

    def close(self) -> None:
        if self._conn.closed:
            return
        if self._proc.is_alive():
            try:
                self._conn.send_bytes(b"")
            except OSError:  # pragma: no cover
                pass
            self._proc.join(timeout=10)
            if self._proc.is_alive():  # pragma: no cover
                self._proc.terminate()
                self._proc.join()
        self._conn.close()


#: The server process's first message on its pipe: it is up (before any request).
_READY = b"READY"


def _check_timeout(name: str, value: float) -> float:
    """``value`` as a positive finite number of seconds, else a :class:`ProtocolError`."""
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ProtocolError(f"{name} must be a positive number of seconds (got {value!r})")
    return v


def _expect_ok(reply: Message, *, copy: bool = True) -> tuple[dict[str, Any], bytes | memoryview]:
    """The header and payload of an ``OK`` reply (``copy``: :func:`unpack_message`), else a
    :class:`ProtocolError` with the server's error."""
    kind, header, payload = unpack_message(reply, copy=copy)
    if kind == MSG_ERROR:
        raise ProtocolError(f"server error: {header.get('error')}")
    if kind != MSG_OK:
        raise ProtocolError(f"unexpected reply kind {kind!r}")
    return header, payload


# --------------------------------------------------------------------------- device


@dataclass
class StepResult:
    """One training step: outputs, gradients (before the optimiser update), costs.

    ``timings_s`` (device side): ``encrypt`` (encode + encrypt), ``serialize`` (ciphertexts
    to bytes), ``deserialize``, ``decrypt`` (decrypt + decode); ``server`` (the server's own
    handling time of the projection messages; ``server_project`` of it in computing the
    products, ``server_serialization`` in reading the request and writing the reply, the
    products' compact bytes included), ``transport`` (round trip minus server time),
    ``device_clear`` (everything else on the device: autograd, LoRA, non-linearities, loss,
    optimiser), ``total`` (wall time).
    ``bytes_up``/``bytes_down``: projection messages of this step (headers included);
    ``peak_rss_bytes``: per party.
    """

    loss: float
    logits: NDArray[np.float64]
    grads: dict[str, NDArray[np.float64]]
    timings_s: dict[str, float] = field(default_factory=dict)
    bytes_up: int = 0
    bytes_down: int = 0
    projections_forward: int = 0
    projections_backward: int = 0
    ciphertexts_up: int = 0
    ciphertexts_down: int = 0
    peak_rss_bytes: dict[str, int] = field(default_factory=dict)


class DeviceClient:
    """The data owner: secret key, data, LoRA, head and the clear-text part of the model.

    ``DeviceClient(params, transport, model)`` generates the CKKS keys, uploads the public
    context (``setup_bytes_up``) and trains ``model`` with ``AdamW(lr, weight_decay)`` over
    the encrypted projections. Implements ``project_forward``/``project_backward`` for
    :class:`bert.RemoteProjector`. ``packing`` picks the ciphertext layout
    (:data:`packing.PACKINGS`); ``rescale`` who rescales the server's products
    (:data:`ckks_ops.RESCALE_AT`: ``server``, the default, or ``device``, which downloads the
    unrescaled products and spares the server one SEAL rescale per output ciphertext).
    """

    def __init__(
        self,
        params: CkksParams,
        transport: _TransportBase,
        model: BertDevice,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        scale_gradients: bool = True,
        packing: str = "interleaved",
        rescale: str = "server",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        import torch

        from privtuner.fhe_profiling import ckks_ops
        from privtuner.fhe_profiling import packing as packings
        from privtuner.fhe_profiling.bert import RemoteProjector

        self.params = params
        self.packing = packings.check_packing(packing)
        ckks_ops.check_rescale(rescale)
        self.rescale = rescale
        self.transport = transport
        self.model = model
        self.scale_gradients = scale_gradients
        self.clock = clock
        t0 = time.perf_counter()
        self._keys = ckks_ops.make_context(params)
        self.keygen_s = time.perf_counter() - t0
        public = self._keys.public_bytes()
        _expect_ok(transport.request(pack_message(MSG_SETUP, {"params": params.to_dict()}, public)))
        self.setup_bytes_up = transport.stats.bytes_up[MSG_SETUP.decode()]
        self.optimizer = torch.optim.AdamW(
            list(model.trainable_named_parameters().values()), lr=lr, weight_decay=weight_decay
        )
        self.projector = RemoteProjector(self)
        self._timers: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    # ---- the two remote products (called by the autograd function)

    def _remote(self, name: str, direction: str, x: NDArray[np.float64]) -> NDArray[np.float64]:
        from privtuner.fhe_profiling import packing

        clk = self.clock
        t0 = clk()
        enc = packing.encrypt(self._keys, np.asarray(x, dtype=np.float64), self.packing)
        t1 = clk()
        head_up = {"name": name, "direction": direction, "rescale": self.rescale}
        msg = packing.serialize(enc, prefix=pack_message(MSG_PROJECT, head_up))
        t2 = clk()
        reply = self.transport.request(msg)
        t3 = clk()
        head, payload = _expect_ok(reply, copy=False)
        enc_res = packing.deserialize(self._keys, payload)
        t4 = clk()
        res = packing.decrypt(self._keys, enc_res, bound=_result_bound(x, head))
        t5 = clk()
        self._timers["encrypt"] += t1 - t0
        self._timers["serialize"] += t2 - t1
        self._timers["round_trip"] += t3 - t2
        self._timers["deserialize"] += t4 - t3
        self._timers["decrypt"] += t5 - t4
        self._counts[f"projections_{direction}"] += 1
        self._counts["ciphertexts_up"] += enc.n_ciphertexts
        self._counts["ciphertexts_down"] += enc_res.n_ciphertexts
        return np.asarray(res, dtype=np.float64)

    def project_forward(self, name: str, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """``X W + b`` of the frozen projection ``name`` via the server (X: [T, d_in])."""
        return self._remote(name, "forward", x)

    def project_backward(self, name: str, grad_y: NDArray[np.float64]) -> NDArray[np.float64]:
        """``dL/dX = dL/dY W^T`` via the server; ``dL/dY`` scaled by a power of two first."""
        factor = 1.0
        if self.scale_gradients:
            m = float(np.max(np.abs(grad_y))) if grad_y.size else 0.0
            if m > 0 and np.isfinite(m):
                factor = 2.0 ** (-np.floor(np.log2(m)))
        return self._remote(name, "backward", grad_y * factor) / factor

    # ---- one training step

    def train_step(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        *,
        update: bool = True,
    ) -> StepResult:
        """Forward, backward (encrypted projections), then the AdamW update if ``update``."""
        import torch

        self._server_stats(reset=True)  # server timers and peak memory from here
        up0 = dict(self.transport.stats.bytes_up)
        down0 = dict(self.transport.stats.bytes_down)
        self._timers.clear()
        self._counts.clear()
        reset_peak_rss()
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(input_ids, attention_mask, token_type_ids, self.projector)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        loss.backward()
        grads = {
            n: p.grad.detach().to(torch.float64).numpy().copy()
            for n, p in self.model.trainable_named_parameters().items()
            if p.grad is not None
        }
        if update:
            self.optimizer.step()
        total = time.perf_counter() - t0
        device_peak = peak_rss_bytes()
        srv = self._server_stats(reset=False)
        kind = MSG_PROJECT.decode()
        server_s = float(srv.get("handle_s", 0.0))
        rt = self._timers["round_trip"]
        crypto = sum(self._timers[k] for k in ("encrypt", "serialize", "deserialize", "decrypt"))
        timings = {
            "encrypt": self._timers["encrypt"],
            "serialize": self._timers["serialize"],
            "deserialize": self._timers["deserialize"],
            "decrypt": self._timers["decrypt"],
            "server": server_s,
            "transport": max(rt - server_s, 0.0),
            "device_clear": total - crypto - rt,
            "total": total,
            "server_project": float(srv.get("project_s", 0.0)),
            "server_serialization": float(srv.get("serialize_s", 0.0))
            + float(srv.get("deserialize_s", 0.0)),
        }
        peaks = {"device": device_peak, "server": int(srv["peak_rss_bytes"])}
        return StepResult(
            loss=loss.item(),
            logits=logits.detach().to(torch.float64).numpy().copy(),
            grads=grads,
            timings_s=timings,
            bytes_up=self.transport.stats.bytes_up.get(kind, 0) - up0.get(kind, 0),
            bytes_down=self.transport.stats.bytes_down.get(kind, 0) - down0.get(kind, 0),
            projections_forward=self._counts["projections_forward"],
            projections_backward=self._counts["projections_backward"],
            ciphertexts_up=self._counts["ciphertexts_up"],
            ciphertexts_down=self._counts["ciphertexts_down"],
            peak_rss_bytes=peaks,
        )

    def _server_stats(self, reset: bool) -> dict[str, Any]:
        kind = MSG_RESET if reset else MSG_STATS
        header, _ = _expect_ok(self.transport.request(pack_message(kind, {})))
        return header

    def decrypt_for_audit(self, data: bytes) -> NDArray[np.float64]:
        """Decrypt serialized ciphertexts (either packing) with the device's secret key (tests
        and audits)."""
        from privtuner.fhe_profiling import packing

        enc = packing.deserialize(self._keys, data)
        return np.asarray(packing.decrypt(self._keys, enc), dtype=np.float64)


# --------------------------------------------------------------------------- reference


def plain_step(
    model: BertDevice,
    weights: FrozenWeights,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    token_type_ids: torch.Tensor | None = None,
) -> StepResult:
    """The same step in clear (the reference): logits, loss and trainable gradients.

    Does not update ``model``; gradients are left in ``.grad``.
    """
    import torch

    from privtuner.fhe_profiling.bert import PlainProjector

    dtype = next(iter(model.trainable_named_parameters().values())).dtype
    for p in model.parameters():
        p.grad = None
    t0 = time.perf_counter()
    logits = model(input_ids, attention_mask, token_type_ids, PlainProjector(weights, dtype))
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    total = time.perf_counter() - t0
    grads = {
        n: p.grad.detach().to(torch.float64).numpy().copy()
        for n, p in model.trainable_named_parameters().items()
        if p.grad is not None
    }
    return StepResult(
        loss=loss.item(),
        logits=logits.detach().to(torch.float64).numpy().copy(),
        grads=grads,
        timings_s={"total": total},
    )


def relative_error(a: NDArray[np.float64], ref: NDArray[np.float64]) -> float:
    """Normwise relative error ``max|a - ref| / max|ref|`` (entry-wise ratios are meaningless
    for entries near zero); ``max|a - ref|`` if ``ref`` is all zero."""
    a, ref = np.asarray(a, dtype=float), np.asarray(ref, dtype=float)
    err = float(np.max(np.abs(a - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return err / scale if scale > 0 else err


def compare_steps(enc: StepResult, ref: StepResult) -> dict[str, float]:
    """Errors of the encrypted step vs the plaintext one.

    ``logits_max_abs_err``, ``logits_rel_err``, ``loss_rel_err`` (|dL| / |L|),
    ``grad_max_rel_err`` (max over trainable tensors of :func:`relative_error`),
    ``max_rel_err`` (max of the three relative errors), and ``grad_rel_err:<name>`` per tensor.
    """
    if set(enc.grads) != set(ref.grads):
        raise ProtocolError(f"gradient sets differ: {sorted(set(enc.grads) ^ set(ref.grads))}")
    out: dict[str, float] = {
        "logits_max_abs_err": float(np.max(np.abs(enc.logits - ref.logits))),
        "logits_rel_err": relative_error(enc.logits, ref.logits),
        "loss_rel_err": abs(enc.loss - ref.loss) / max(abs(ref.loss), 1e-300),
    }
    per = {f"grad_rel_err:{n}": relative_error(enc.grads[n], ref.grads[n]) for n in ref.grads}
    out["grad_max_rel_err"] = max(per.values()) if per else 0.0
    out["max_rel_err"] = max(out["logits_rel_err"], out["loss_rel_err"], out["grad_max_rel_err"])
    out.update(per)
    return out
