"""CKKS ops: exact modular kernel, column packing, projection vs numpy, public context, bytes.

Tolerances come from the CKKS noise model in one place (:func:`ckks_tol`); the kernel itself is
checked bit for bit against SEAL's own ``multiply_plain`` + ``add_inplace``.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from privtuner.costmodels.types import CkksParams
from privtuner.errors import ParameterError
from privtuner.fhe_profiling import ckks_ops as K

SMALL = CkksParams(4096, (40, 20, 40), 20)
MID = CkksParams(8192, (60, 40, 60), 40)

#: Primes of 20, 40, 50 and 60 bits (each = 1 mod 8192, as SEAL picks them).
PRIMES = (1032193, 1099511480321, 1125899906826241, 1152921504606830593)


def ckks_tol(n: int, scale_bits: int, out_scale: float, w: np.ndarray, x: np.ndarray) -> float:
    """Max abs error bound of ``X W + b`` through fresh encryption, the kernel and a rescale.

    * fresh symmetric encryption: slot noise ~ N(0, (3.2 sqrt(N/2))^2) per input, 8 sigma,
      propagated by the column 2-norm of W;
    * rescale rounding r0 + r1 s: r1(zeta) s(zeta) is a product of two Gaussians of standard
      deviations sqrt(N/12) and sqrt(2N/3); 25 of their product (tail e^-25) bounds it;
    * weight rounding to 2^-scale_bits: half an ulp times the row 1-norm of X.
    """
    fresh = 8 * 3.2 * math.sqrt(n / 2) / 2.0**scale_bits
    rescale = 25 * math.sqrt(n / 12) * math.sqrt(2 * n / 3) / out_scale
    w_l2 = float(np.max(np.linalg.norm(w, axis=0)))
    x_l1 = float(np.max(np.sum(np.abs(x), axis=1)))
    return w_l2 * fresh + rescale + 0.5 * x_l1 / 2.0**scale_bits


# ----------------------------------------------------------------- pure numpy (no TenSEAL)
@pytest.mark.parametrize("q", PRIMES)
@pytest.mark.parametrize("d_in", [1, 7, 128, 512])
def test_modmatmul_is_exact(q: int, d_in: int) -> None:
    rng = np.random.default_rng(d_in + q % 97)
    d_out, m = 5, 300
    w = rng.integers(0, q, size=(d_out, d_in), dtype=np.uint64)
    x = rng.integers(0, q, size=(d_in, m), dtype=np.uint64)
    x[:, 0] = q - 1  # extremes
    w[0, :] = q - 1
    got = K._modmatmul(w, x, q)
    wo = w.astype(object)
    xo = x.astype(object)
    ref = np.array((wo @ xo) % q, dtype=np.uint64)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("q", PRIMES)
def test_mulpow2_mod_is_exact(q: int) -> None:
    rng = np.random.default_rng(3)
    r = rng.integers(0, q, size=2000, dtype=np.uint64)
    r[:2] = (0, q - 1)
    for e in (1, 15, 30, 48, 61):
        got = K._mulpow2_mod(r, e, q)
        ref = np.array([(int(v) << e) % q for v in r], dtype=np.uint64)
        np.testing.assert_array_equal(got, ref)


def test_limb_plan_keeps_float64_exact() -> None:
    for bits in range(20, 61):
        for d_in in (1, 128, 512, 4096):
            p = K._limb_plan(bits, d_in)
            assert p.nx * p.bx >= bits - 1 and p.nw * p.bw >= bits - 1
            assert p.nx * d_in * 2.0 ** (p.bx + p.bw) <= 2.0**53


def test_round_half_away_matches_std_round() -> None:
    v = np.array([0.5, -0.5, 1.5, -2.5, 2.4999, 1e20 + 0.0, -3.0])
    np.testing.assert_array_equal(K._round_half_away(v), [1, -1, 2, -3, 2, 1e20, -3])


# ----------------------------------------------------------------- real SEAL
@pytest.fixture(scope="module")
def seal_mod():
    return pytest.importorskip("tenseal.sealapi")


@pytest.fixture(scope="module")
def keys_small(seal_mod) -> K.CkksKeys:
    return K.make_context(SMALL)


@pytest.mark.fhe
def test_round_trip_seeded_and_public_key(keys_small: K.CkksKeys) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-4, 4, size=(37, 6))
    n = SMALL.poly_modulus_degree
    for seeded in (True, False):
        enc = K.encrypt_columns(keys_small, x, seeded=seeded)
        assert (enc.n_blocks, enc.n_features, enc.n_ciphertexts) == (1, 6, 6)
        got = K.decrypt_columns(keys_small, enc)
        # symmetric: 8 sigma of N(0, 3.2^2 N/2); public key: e0 + e1 s + u e, product tails
        sigma = 3.2 * math.sqrt(n / 2)
        tol = (8 * sigma if seeded else 25 * sigma * math.sqrt(2 * n / 3)) / 2.0**20
        assert np.max(np.abs(got - x)) < tol
    seeded_bytes = K.encrypt_columns(keys_small, x[:, :1]).nbytes
    full_bytes = K.encrypt_columns(keys_small, x[:, :1], seeded=False).nbytes
    assert seeded_bytes < 0.6 * full_bytes  # c1 travels as a seed


@pytest.mark.fhe
def test_kernel_is_bit_exact_with_seal(keys_small: K.CkksKeys, seal_mod) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    w = rng.normal(size=(4, 3)) * 3
    w[0, 0] = -(2.0**-21)  # a rounding tie: std::round goes away from zero
    b = rng.normal(size=3)
    enc = K.encrypt_columns(keys_small, x)
    raws = [ct.raw(keys_small) for ct in enc.blocks[0]]
    ours = K._mac_raw(keys_small, raws, w, b)
    ev, cod = keys_small.evaluator, keys_small.encoder
    for j in range(3):
        acc = None
        for i in range(4):
            ct = keys_small.load_ciphertext(enc.blocks[0][i])
            pt = seal_mod.Plaintext()
            cod.encode(float(w[i, j]), ct.parms_id(), keys_small.scale, pt)
            ev.multiply_plain_inplace(ct, pt)
            if acc is None:
                acc = ct
            else:
                ev.add_inplace(acc, ct)
        pt = seal_mod.Plaintext()
        cod.encode(float(b[j]), acc.parms_id(), acc.scale, pt)
        ev.add_plain_inplace(acc, pt)
        ref = K.RawCiphertext.parse(K._save_bytes(acc))
        assert ref is not None
        assert ref.scale == ours[j].scale
        np.testing.assert_array_equal(ref.data, ours[j].data)


@pytest.mark.fhe
def test_project_matches_numpy_with_block_spill(keys_small: K.CkksKeys) -> None:
    slots = SMALL.slots
    rng = np.random.default_rng(2)
    t, d_in, d_out = slots + 300, 9, 5  # two blocks, the second partly filled
    x = rng.normal(size=(t, d_in))
    w = rng.normal(size=(d_in, d_out)) * 0.5
    b = rng.normal(size=d_out)
    enc = K.encrypt_columns(keys_small, x)
    assert enc.n_blocks == 2
    y = K.project(keys_small, enc, w, b)
    assert (y.n_tokens, y.n_features, y.n_blocks) == (t, d_out, 2)
    got = K.decrypt_columns(keys_small, y)
    out_scale = y.blocks[0][0].raw(keys_small).scale
    tol = ckks_tol(SMALL.poly_modulus_degree, SMALL.scale_bits, out_scale, w, x)
    err = np.max(np.abs(got - (x @ w + b)), axis=1)
    assert np.max(err) < tol
    assert np.max(err[slots:]) < tol  # the spilled tokens too
    # and the kernel is not vacuous: a wrong weight is detected at this tolerance
    assert np.max(np.abs(got - (x @ (w * 1.05) + b))) > tol


@pytest.fixture(scope="module")
def keys_mid(seal_mod) -> K.CkksKeys:
    return K.make_context(MID)


@pytest.mark.fhe
def test_project_n8192(keys_mid: K.CkksKeys) -> None:
    keys = keys_mid
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 16))
    w = rng.normal(size=(16, 6)) * 0.2
    enc = K.encrypt_columns(keys, x)
    pub = K.load_public_context(keys.public_bytes(), MID)
    y = K.project(pub, enc, w)
    got = K.decrypt_columns(keys, y)
    out_scale = y.blocks[0][0].raw(pub).scale
    assert abs(math.log2(out_scale) - 40) < 0.01
    assert np.max(np.abs(got - x @ w)) < ckks_tol(8192, 40, out_scale, w, x)


@pytest.mark.fhe
def test_public_context_has_no_secret_and_serves(keys_small: K.CkksKeys) -> None:
    data = keys_small.public_bytes()
    pub = K.load_public_context(data, SMALL)
    assert keys_small.is_private() and not pub.is_private()
    assert not any("secret" in name or "decrypt" in name for name in vars(pub))
    sk_blob = K._save_bytes(keys_small._secret_key)
    assert sk_blob[16:80] not in data  # the secret key's bytes are not in the public context
    rng = np.random.default_rng(5)
    x = rng.normal(size=(10, 3))
    w = rng.normal(size=(3, 2))
    wire = K.serialize_columns(K.encrypt_columns(keys_small, x))
    y = K.project(pub, K.deserialize_columns(pub, wire), w)
    got = K.decrypt_columns(keys_small, K.deserialize_columns(keys_small, K.serialize_columns(y)))
    out_scale = y.blocks[0][0].raw(pub).scale
    assert np.max(np.abs(got - x @ w)) < ckks_tol(4096, 20, out_scale, w, x)
    with pytest.raises(K.CkksInputError):
        K.decrypt_columns(pub, y)  # type: ignore[arg-type]
    with pytest.raises(K.CkksInputError):
        K.encrypt_columns(pub, x)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="expected"):
        K.load_public_context(data, CkksParams(4096, (40, 20, 40), 21))


@pytest.mark.fhe
def test_serialize_round_trip(keys_small: K.CkksKeys) -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(SMALL.slots + 1, 2))
    enc = K.encrypt_columns(keys_small, x)
    wire = K.serialize_columns(enc)
    back = K.deserialize_columns(keys_small, wire)
    assert (back.n_tokens, back.n_features, back.n_blocks) == (enc.n_tokens, 2, 2)
    assert K.serialize_columns(back) == wire
    assert len(wire) > enc.nbytes and len(wire) < enc.nbytes + 1000
    np.testing.assert_array_equal(
        K.decrypt_columns(keys_small, back), K.decrypt_columns(keys_small, enc)
    )
    with pytest.raises(K.CkksInputError, match="truncated"):
        K.deserialize_columns(keys_small, wire[:-10])
    with pytest.raises(K.CkksInputError, match="magic"):
        K.deserialize_columns(keys_small, b"x" + wire)


@pytest.mark.fhe
def test_bad_inputs_raise_one_clear_error(keys_small: K.CkksKeys) -> None:
    enc = K.encrypt_columns(keys_small, np.ones((3, 2)))
    with pytest.raises(K.CkksInputError, match="input rows"):
        K.project(keys_small, enc, np.ones((3, 2)))
    with pytest.raises(K.CkksInputError, match="non-finite"):
        K.project(keys_small, enc, np.array([[np.nan], [1.0]]))
    with pytest.raises(K.CkksInputError, match="bias"):
        K.project(keys_small, enc, np.ones((2, 2)), np.ones(3))
    with pytest.raises(K.CkksInputError, match="weight too large"):
        K.project(keys_small, enc, np.full((2, 1), 2.0**70))
    with pytest.raises(K.CkksInputError, match="2-D"):
        K.encrypt_columns(keys_small, np.ones(4))
    y = K.project(keys_small, enc, np.ones((2, 1)))
    with pytest.raises(K.CkksInputError, match="last level"):
        K.project(keys_small, y, np.ones((1, 1)))


@pytest.mark.fhe
def test_naive_baseline_matches(keys_mid: K.CkksKeys) -> None:
    pytest.importorskip("tenseal")
    rng = np.random.default_rng(7)
    x = rng.normal(size=8)
    w = rng.normal(size=(8, 4))
    tm: dict[str, float] = {}
    got = K.naive_project(keys_mid, x, w, timings=tm)
    assert got.shape == (4,)
    assert np.max(np.abs(got - x @ w)) < 1e-5  # scale 2^40, rotations add key-switch noise
    assert tm["matmul_s"] > 0


#: A fresh interpreter (not pytest's, whose other ``atexit`` handlers a forked child must not
#: run) encrypts and decrypts before forking, then (1) a multiprocessing 'fork' child does the
#: same while the parent does too, (2) an ``os.fork`` child does it and exits normally, so its
#: inherited ``atexit`` handlers run. Prints what the test checks as JSON.
_FORK_SCRIPT = """
import json, multiprocessing as mp, os, sys
import numpy as np
from privtuner.costmodels.types import CkksParams
from privtuner.fhe_profiling import ckks_ops as K

keys = K.make_context(CkksParams(4096, (40, 20, 40), 20))
xs = [np.random.default_rng(i).uniform(-4, 4, size=(16, 2)) for i in range(40)]

def round_trips():
    return max(
        float(np.max(np.abs(K.decrypt_columns(keys, K.encrypt_columns(keys, x)) - x)))
        for x in xs
    )

out = {"parent_err_before": round_trips()}
parent_dir = K._SCRATCH._dir

def child(conn):
    conn.send({"err": round_trips(), "dir": K._SCRATCH._dir, "file": K._SCRATCH.path()})
    conn.close()

ctx = mp.get_context("fork")
a, b = ctx.Pipe()
proc = ctx.Process(target=child, args=(b,))
proc.start()
out["parent_err_during"] = round_trips()
out["child"] = a.recv()
proc.join()
out["child_exitcode"] = proc.exitcode
pid = os.fork()
if pid == 0:
    round_trips()
    sys.exit(0)  # a normal exit: the atexit handlers inherited from the parent run
out["fork_status"] = os.waitpid(pid, 0)[1]
out["parent_err_after"] = round_trips()
out.update(parent_dir=parent_dir, parent_dir_exists=os.path.isdir(parent_dir))
print(json.dumps(out))
"""


@pytest.mark.fhe
def test_forked_children_get_their_own_scratch_files(seal_mod) -> None:
    import json
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    tol = 1e-3  # scale 2^20: fresh-encryption noise ~ 1e-4
    errs = [out[k] for k in ("parent_err_before", "parent_err_during", "parent_err_after")]
    assert max(errs) < tol
    assert out["child_exitcode"] == 0 and out["child"]["err"] < tol
    assert out["child"]["dir"] != out["parent_dir"]
    assert not out["child"]["file"].startswith(out["parent_dir"] + "/")
    assert out["fork_status"] == 0
    assert out["parent_dir_exists"], "a forked child's atexit removed the parent's folder"


@pytest.mark.fhe
@pytest.mark.parametrize(
    ("params", "match"),
    [
        # a rescaling prime of 40 bits with a 20-bit scale: decrypts to garbage if admitted
        (CkksParams(8192, (60, 40, 60), 20), "rescaling prime q1 = 40 bits differs"),
        # a scale above the rescaling prime: failed only at the device's decode
        (CkksParams(8192, (60, 40, 60), 50), "larger than the smallest prime"),
        (CkksParams(4096, (37, 32, 34), 32), "special prime = 34 bits"),
    ],
)
def test_make_context_validates_params(seal_mod, params: CkksParams, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        K.make_context(params)


@pytest.mark.fhe
def test_server_validates_the_public_context_params(keys_mid: K.CkksKeys) -> None:
    """Public bytes whose header claims an inconsistent set for the same primes (scale 20
    on the 60-40-60 chain) are refused by the server even when it expects that set."""
    import json
    import struct

    data = keys_mid.public_bytes()
    off = len(K._PUBLIC_MAGIC)
    (hlen,) = struct.unpack_from("<I", data, off)
    head = json.loads(data[off + 4 : off + 4 + hlen])
    bad = CkksParams(8192, (60, 40, 60), 20)
    head["params"] = bad.to_dict()
    new_head = json.dumps(head, sort_keys=True).encode()
    forged = K._PUBLIC_MAGIC + struct.pack("<I", len(new_head)) + new_head
    forged += data[off + 4 + hlen :]
    with pytest.raises(ParameterError, match="rescaling prime q1 = 40 bits differs"):
        K.load_public_context(forged, bad)


@pytest.mark.fhe
@pytest.mark.parametrize("packing_name", ["interleaved", "column"])
def test_result_overflow_is_detected_on_decrypt(keys_small: K.CkksKeys, packing_name: str) -> None:
    """(40, 20, 40) s20 leaves the headroom 2^(q0 - scale - 1) = 2^19: a result bound at 4x
    it is refused, and so are decrypted values at 4x it; at a quarter, all is well."""
    from privtuner.fhe_profiling import packing

    rng = np.random.default_rng(12)
    x = rng.uniform(0.5, 1.0, size=(6, 4))
    enc = packing.encrypt(keys_small, x, packing_name)
    headroom = 2.0 ** (40 - 20 - 1)
    for factor in (0.25, 4.0):
        # every entry of X W is about factor * headroom; the bound is at most 2x that
        w = np.full((4, 2), factor * headroom / float(np.max(x.sum(axis=1))))
        bound = K.projection_bound(x, float(np.max(np.linalg.norm(w, axis=0))))
        y = packing.project(keys_small, enc, w)
        if factor < 1:
            got = packing.decrypt(keys_small, y, bound=bound)
            out_scale = y.blocks[0][0].raw(keys_small).scale
            assert np.max(np.abs(got - x @ w)) < ckks_tol(4096, 20, out_scale, w, x)
        else:
            with pytest.raises(K.CkksOverflowError, match=r"may reach .* headroom 2\^19"):
                packing.decrypt(keys_small, y, bound=bound)
            with pytest.raises(K.CkksOverflowError, match=r"decrypted value .* headroom 2\^19"):
                packing.decrypt(keys_small, y)


@pytest.mark.fhe
def test_a_wrap_back_into_range_needs_the_bound(keys_small: K.CkksKeys) -> None:
    """A result constant over every slot at 1.3x the headroom: its constant coefficient
    1.3 q0 / 2 wraps to -0.7 q0 / 2, every slot decrypts to about -0.7x the headroom (wrong,
    yet in range). Only the bound from the clear input and ||W|| says so."""
    x = np.ones((keys_small.slots, 1))
    headroom = 2.0 ** (40 - 20 - 1)
    w = np.array([[1.3 * headroom]])
    y = K.project(keys_small, K.encrypt_columns(keys_small, x), w)
    wrapped = K.decrypt_columns(keys_small, y)  # no bound: the decoded values look fine
    assert np.max(np.abs(wrapped - x @ w)) > headroom
    with pytest.raises(K.CkksOverflowError, match=r"\|X W \+ b\| may reach 6.82e\+05"):
        K.decrypt_columns(keys_small, y, bound=K.projection_bound(x, 1.3 * headroom))


_KILLED_SCRIPT = """
import os, signal
from privtuner.fhe_profiling import ckks_ops as K
from privtuner.costmodels.types import CkksParams
K.make_context(CkksParams(4096, (40, 20, 40), 20)).public_bytes()  # scratch files in use
print(K._SCRATCH._dir, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no atexit: the folder stays behind
"""

_FRESH_SCRIPT = """
import os, sys
from privtuner.fhe_profiling import ckks_ops as K
from privtuner.costmodels.types import CkksParams
K.make_context(CkksParams(4096, (40, 20, 40), 20)).public_bytes()
print(K._SCRATCH._dir, os.path.isdir(sys.argv[1]), os.path.isdir(sys.argv[2]))
"""


@pytest.mark.fhe
def test_scratch_folders_of_killed_processes_are_removed(seal_mod, tmp_path) -> None:
    """A process killed by a signal leaves its scratch folder; the next process to make one
    removes it, and keeps the folders of live processes (this one's, a sleeping child's)."""
    import subprocess
    import sys

    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -9
    stale = killed.stdout.strip()
    assert os.path.isdir(stale) and os.listdir(stale)
    # a live process's folder, named as the older scheme did (by its files only)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        live = os.path.join(os.path.dirname(stale), "privtuner-seal-test" + str(sleeper.pid))
        os.mkdir(live)
        open(os.path.join(live, f"{sleeper.pid}-0.bin"), "wb").close()
        fresh = subprocess.run(
            [sys.executable, "-c", _FRESH_SCRIPT, stale, live],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert fresh.returncode == 0, fresh.stderr[-2000:]
        new_dir, stale_left, live_left = fresh.stdout.split()
        assert (stale_left, live_left) == ("False", "True")
        assert not os.path.isdir(new_dir)  # removed at its own (normal) exit
    finally:
        sleeper.kill()
        sleeper.wait()
        import shutil

        shutil.rmtree(live, ignore_errors=True)
