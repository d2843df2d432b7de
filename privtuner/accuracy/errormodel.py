"""CKKS error model of one encrypted projection, calibrated on real encrypted projections.

The split protocol (:mod:`privtuner.fhe_profiling.protocol`) encrypts ``X [T, d_in]``, the
server computes ``X W + b`` (forward) or ``G W^T`` (backward, ``G`` scaled by a power of two so
that ``max |G|`` is in ``[1, 2)``), the device decrypts. The decrypted result differs from the
float64 product by an error that this module models, entry by entry, as independent Gaussians

    e_tj ~ N(0, sigma_tj^2),
    sigma_tj^2 = 2^(-2 s) (gamma m + alpha ||W_:j||_2^2 + beta ||x_t||_2^2),

with ``s`` the set's scale bits and ``m`` the ciphertexts summed into one output (``k``
partials for the interleaved packing, 1 for column packing). The three terms follow the CKKS
noise analysis (Cheon-Kim-Kim-Song, ASIACRYPT 2017, Lemmas 1-3): the rescaling and decoding
rounding noise of each decrypted ciphertext (``gamma``, added once per partial), the fresh
encryption and encoding noise of ``X`` multiplied by the plaintext weights (``alpha``, summed
over the column ``W_:j``), and the encoding rounding of ``W`` multiplied by ``X`` (``beta``).
``gamma, alpha, beta >= 0`` are fitted (non-negative least squares on the squared errors) per
catalogue set and packing by :func:`calibrate`, over forward and backward projections of
several shapes, and shipped in ``data/ckks_error_model.json`` with provenance and validation
(measured / predicted error std and the Kolmogorov-Smirnov distance of the standardised
errors from ``N(0, 1)``, per direction). Re-run ``privtuner accuracy-calibrate`` after any
change of the CKKS kernel.

:class:`NoisyProjector` adds such errors to clear projections (``simulate`` mode).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from privtuner.costmodels.types import CkksParams
from privtuner.costmodels.workload import interleaved_layout
from privtuner.errors import CostModelError

#: The shipped error model.
DEFAULT_FILE = "ckks_error_model.json"
#: Format version of the error model file.
FORMAT_VERSION = 1
#: Calibration shapes ``(tokens, d_in, d_out)``, each measured forward and backward.
CALIBRATION_SHAPES: tuple[tuple[int, int, int], ...] = ((64, 64, 64), (128, 128, 32), (32, 256, 32))
#: Stated tolerances of the model (the CI test and :func:`calibrate`'s validation): measured
#: error std within this factor of the predicted one, and KS distance of the standardised
#: errors from N(0, 1) at most :func:`ks_tolerance`.
STD_FACTOR_TOLERANCE = 1.5
KS_TOLERANCE = 0.1
#: The column packing's errors are less Gaussian, and their scale depends on the key draw
#: (16 fresh keys at N4096 s20, 1,920 errors each, 2026-12-05: std ratio 0.76-1.06, KS from
#: N(0, 1) up to 0.112 and between simulated and measured errors up to 0.124): its KS bound.
KS_TOLERANCE_COLUMN = 0.16


def ks_tolerance(packing: str) -> float:
    """The stated KS bound of ``packing``'s errors (:data:`KS_TOLERANCE`, or
    :data:`KS_TOLERANCE_COLUMN` for the column packing)."""
    return KS_TOLERANCE_COLUMN if packing == "column" else KS_TOLERANCE


Array = NDArray[np.float64]


def gradient_factor(g: Array) -> float:
    """The power of two the protocol scales a backward input by before encrypting it
    (``2^-floor(log2 max|g|)``, :meth:`protocol.DeviceClient.project_backward`), 1 for a zero
    or non-finite ``g``."""
    m = float(np.max(np.abs(g))) if g.size else 0.0
    if m > 0 and math.isfinite(m):
        return float(2.0 ** (-np.floor(np.log2(m))))
    return 1.0


@dataclass(frozen=True)
class SetErrorModel:
    """The fitted variance terms of one catalogue set and packing (module docstring)."""

    set_name: str
    packing: str
    poly_modulus_degree: int
    scale_bits: int
    gamma: float
    alpha: float
    beta: float

    def partials(self, tokens: int, d_in: int) -> int:
        """Ciphertexts summed into one decrypted output: ``k`` of the interleaved layout
        (:func:`costmodels.workload.interleaved_layout`), 1 for column packing."""
        if self.packing == "interleaved":
            return interleaved_layout(tokens, d_in, self.poly_modulus_degree // 2)[0]
        return 1

    def std(self, x: Array, w: Array) -> Array:
        """Predicted error std ``sigma [T, d_out]`` of ``x [T, d_in] @ w [d_in, d_out]``."""
        m = self.partials(x.shape[0], x.shape[1])
        return self.std_from_norms(m, np.sum(x * x, axis=1), np.sum(w * w, axis=0))

    def std_from_norms(self, m: int, x_sq: Any, w_sq: Any) -> Any:
        """``sigma [T, d_out]`` from ``||x_t||^2 [T]`` and ``||W_:j||^2 [d_out]`` (numpy
        arrays or torch tensors alike)."""
        var = (self.gamma * m + self.alpha * w_sq)[None, :] + self.beta * x_sq[:, None]
        return var**0.5 * 2.0 ** (-self.scale_bits)


@dataclass(frozen=True)
class ErrorModel:
    """Error models per ``(packing, set name)``, with the calibration's provenance."""

    entries: Mapping[tuple[str, str], SetErrorModel]
    provenance: Mapping[str, Any]
    validation: Mapping[str, Any]

    def get(self, set_name: str, packing: str) -> SetErrorModel:
        try:
            return self.entries[(packing, set_name)]
        except KeyError:
            raise CostModelError(
                f"error model: no calibration of set {set_name} with packing {packing}; "
                "run 'privtuner accuracy-calibrate' for it"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model": "sigma_tj^2 = 2^(-2 s) (gamma m + alpha ||W_:j||^2 + beta ||x_t||^2)",
            "provenance": dict(self.provenance),
            "entries": [asdict(e) for e in self.entries.values()],
            "validation": dict(self.validation),
        }


def load_error_model(path: str | Path | None = None) -> ErrorModel:
    """The error model in ``path`` (default: the shipped ``data/ckks_error_model.json``)."""
    try:
        if path is None:
            text = (resources.files("privtuner.accuracy") / "data" / DEFAULT_FILE).read_text()
        else:
            text = Path(path).read_text()
        data = json.loads(text)
        entries = {}
        for e in data["entries"]:
            sem = SetErrorModel(**e)
            entries[(sem.packing, sem.set_name)] = sem
        return ErrorModel(entries, data.get("provenance", {}), data.get("validation", {}))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        where = DEFAULT_FILE if path is None else str(path)
        raise CostModelError(f"error model {where}: cannot read it ({exc})") from exc


# --------------------------------------------------------------------------- measurement


def calibration_inputs(
    rng: np.random.Generator, tokens: int, d_in: int, d_out: int, direction: str
) -> tuple[Array, Array, Array | None]:
    """Random ``(x, w, b)`` of one calibration projection: rows of ``x`` and columns of ``w``
    with norms spread over a decade or more (so the fit sees the ``||x||`` and ``||W||``
    terms), activations ``O(1)`` forward, ``max|x|`` in ``[1, 2)`` backward (scaled as the
    protocol scales gradients), a bias forward only."""
    x = rng.normal(size=(tokens, d_in)) * np.exp(rng.uniform(-2.0, 1.0, size=(tokens, 1)))
    w = rng.normal(size=(d_in, d_out)) * np.exp(rng.uniform(-2.5, 0.5, size=(1, d_out)))
    w /= math.sqrt(d_in)
    if direction == "backward":
        return x * gradient_factor(x), w, None
    return x, w, rng.normal(0.0, 0.02, size=d_out)


def measure_errors(keys: Any, packing: str, x: Array, w: Array, b: Array | None) -> Array:
    """Decrypted ``x w + b`` minus its float64 value, from a real encrypt -> project ->
    decrypt with ``keys`` (:func:`privtuner.fhe_profiling.ckks_ops.make_context`)."""
    from privtuner.fhe_profiling import packing as packings

    enc = packings.encrypt(keys, x, packing)
    out = packings.decrypt(keys, packings.project(keys, enc, w, b))
    ref = x @ w + (0.0 if b is None else b)
    return np.asarray(out, dtype=np.float64) - ref


def _fit(rows: Sequence[tuple[int, Array, Array, Array]], scale_bits: int) -> tuple[float, ...]:
    """Non-negative least squares of ``e^2 2^(2s)`` on ``(m, ||W_:j||^2, ||x_t||^2)``."""
    from scipy.optimize import nnls

    feats, target = [], []
    for m, x_sq, w_sq, err in rows:
        t, d = err.shape
        feats.append(
            np.column_stack([np.full(t * d, float(m)), np.tile(w_sq, t), np.repeat(x_sq, d)])
        )
        target.append((err * 2.0**scale_bits).ravel() ** 2)
    a, y = np.vstack(feats), np.concatenate(target)
    norm = np.sqrt(np.mean(a * a, axis=0)) + 1e-300  # condition the columns
    coef, _ = nnls(a / norm, y)
    gamma, alpha, beta = (coef / norm).tolist()
    return gamma, alpha, beta


def standardized_stats(errors: Array, sigma: Array) -> dict[str, float]:
    """``std_ratio`` (measured RMS error / predicted RMS sigma) and ``ks`` (Kolmogorov-Smirnov
    distance of ``errors / sigma`` from ``N(0, 1)``)."""
    from scipy.stats import kstest

    z = (errors / sigma).ravel()
    return {
        "std_ratio": float(np.sqrt(np.mean(errors**2) / np.mean(sigma**2))),
        "ks": float(kstest(z, "norm").statistic),
        "n": int(z.size),
    }


def calibrate_set(
    params: CkksParams,
    packing: str,
    *,
    seed: int = 0,
    shapes: Sequence[tuple[int, int, int]] = CALIBRATION_SHAPES,
) -> tuple[SetErrorModel, dict[str, Any]]:
    """Fit the error model of one set and packing on real encrypted projections (every shape
    forward and backward); returns it and its validation (:func:`standardized_stats` per
    direction and per shape, sample counts)."""
    from privtuner.fhe_profiling.ckks_ops import make_context

    keys = make_context(params)
    rng = np.random.default_rng(seed)
    measured = []
    for t, d_in, d_out in shapes:
        for direction in ("forward", "backward"):
            x, w, b = calibration_inputs(rng, t, d_in, d_out, direction)
            err = measure_errors(keys, packing, x, w, b)
            measured.append((direction, (t, d_in, d_out), x, w, err))
    k = SetErrorModel(params.name, packing, params.poly_modulus_degree, params.scale_bits, 0, 0, 0)
    rows = [
        (k.partials(x.shape[0], x.shape[1]), np.sum(x * x, 1), np.sum(w * w, 0), e)
        for _, _, x, w, e in measured
    ]
    gamma, alpha, beta = _fit(rows, params.scale_bits)
    model = SetErrorModel(
        params.name, packing, params.poly_modulus_degree, params.scale_bits, gamma, alpha, beta
    )
    validation: dict[str, Any] = {"samples": int(sum(e.size for *_, e in measured))}
    for direction in ("forward", "backward"):
        part = [(x, w, e) for d, _, x, w, e in measured if d == direction]
        errs = np.concatenate([e.ravel() for _, _, e in part])
        sig = np.concatenate([model.std(x, w).ravel() for x, w, _ in part])
        validation[direction] = standardized_stats(errs, sig)
    validation["per_shape"] = [
        {"direction": d, "shape": list(s), **standardized_stats(e, model.std(x, w))}
        for d, s, x, w, e in measured
    ]
    return model, validation


def calibrate(
    sets: Sequence[CkksParams],
    packings: Sequence[str],
    *,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> ErrorModel:
    """:func:`calibrate_set` for every set and packing, with provenance (machine, date,
    library versions, sets, packings, shapes, sample counts, seed)."""
    from privtuner.fhe_profiling.lora_profile import environment

    entries: dict[tuple[str, str], SetErrorModel] = {}
    validation: dict[str, Any] = {}
    for packing in packings:
        for p in sets:
            model, val = calibrate_set(p, packing, seed=seed)
            if progress is not None:
                progress(f"{p.name} {packing}")
            entries[(packing, p.name)] = model
            validation[f"{packing}/{p.name}"] = val
    provenance = {
        **environment(),
        "seed": seed,
        "packings": list(packings),
        "sets": [p.name for p in sets],
        "shapes_tokens_din_dout": [list(s) for s in CALIBRATION_SHAPES],
        "directions": ["forward", "backward"],
        "samples_per_set": int(sum(2 * t * d_out for t, _, d_out in CALIBRATION_SHAPES)),
        "command": "privtuner accuracy-calibrate",
    }
    return ErrorModel(entries, provenance, validation)


def save_error_model(model: ErrorModel, path: str | Path) -> Path:
    """Write ``model`` as JSON, atomically."""
    from privtuner.io import atomic_write_text

    return atomic_write_text(path, json.dumps(model.to_dict(), indent=1) + "\n")


# --------------------------------------------------------------------------- simulation


class NoisyProjector:
    """Clear projector ``X W + b`` plus the modelled CKKS error of each encrypted product.

    Forward: ``X W + b + E`` with ``E ~ N(0, sigma^2)`` of :class:`SetErrorModel` for
    ``(X, W)``. Backward (only where ``X`` needs a gradient, as the protocol): the gradient is
    scaled by :func:`gradient_factor` ``f``, ``(f G) W^T + E'`` computed and divided by ``f``.
    Errors are drawn in call order from a ``torch.Generator`` (``rng``, or one seeded from a
    numpy ``rng``): deterministic for a seed. torch's vectorised normal sampler draws about 2.5x
    faster than numpy's, and the draws are the bulk of ``simulate``'s extra time.
    """

    def __init__(
        self,
        weights: Mapping[str, tuple[Array, Array]],
        error: SetErrorModel,
        rng: np.random.Generator | Any,
        dtype: Any = None,
    ) -> None:
        import torch

        self.dtype = dtype or torch.float32
        self.error = error
        if isinstance(rng, np.random.Generator):
            rng = torch.Generator().manual_seed(int(rng.integers(2**62)))
        self.rng = rng
        self._w = {
            k: (torch.tensor(w, dtype=self.dtype), torch.tensor(b, dtype=self.dtype))
            for k, (w, b) in weights.items()
        }
        self._sq = {k: (w.square().sum(0), w.square().sum(1)) for k, (w, _) in self._w.items()}

    def noise(self, x: Any, w_sq: Any) -> Any:
        """One error draw ``[T, d_out]`` (a tensor of the projector's dtype) for the encrypted
        product of ``x [T, d_in]`` with weights of squared column norms ``w_sq [d_out]``."""
        import torch

        m = self.error.partials(x.shape[0], x.shape[1])
        sigma = self.error.std_from_norms(m, x.square().sum(1), w_sq)
        z = torch.empty(tuple(sigma.shape), dtype=self.dtype).normal_(generator=self.rng)
        return z.mul_(sigma)

    def __call__(self, name: str, x: Any) -> Any:
        out: Any = _NoisyProjection.apply(x, self, name)
        return out


def _noisy_projection_class() -> Any:
    import torch

    class NoisyProjection(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, proj: NoisyProjector, name: str) -> Any:
            ctx.proj, ctx.name = proj, name
            w, b = proj._w[name]
            x = x.detach().to(proj.dtype)
            return x @ w + b + proj.noise(x, proj._sq[name][0])

        @staticmethod
        def backward(ctx: Any, grad_y: Any) -> tuple[Any, None, None]:
            if not ctx.needs_input_grad[0]:
                return None, None, None
            proj, name = ctx.proj, ctx.name
            w, _ = proj._w[name]
            g = grad_y.detach().to(proj.dtype)
            f = gradient_factor(g.numpy())
            gx = g @ w.T + proj.noise(g * f, proj._sq[name][1]) / f
            return gx.to(grad_y.dtype), None, None

    return NoisyProjection


_NoisyProjection: Any = _noisy_projection_class()
