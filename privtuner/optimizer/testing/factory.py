"""A seeded random instance factory (the optimiser tests and ``bench_optimizer.py``).

``random_problem(rng, n_devices, n_sets, ...)`` returns an :class:`AllocationProblem` built from
a synthetic but realistic :class:`CostTable` (device cycles 1e8..1e10, server cycles
1e9..1e11, uplink bits 1e6..1e9 per round, costs growing with the ring degree N and log2 Q)
and a channel drawn as in spec section 4 (3GPP path loss, 8 dB shadowing, Rayleigh fading).
The deadline is ``deadline_factor`` x the worst latency of the equal-share allocation with
each device's fastest set, so the instance is feasible whenever ``deadline_factor >= 1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from privtuner.costmodels.types import CkksParams, CostTable
from privtuner.optimizer.core.model import (
    compute_time_s,
    downlink_time_s,
    uplink_rate_bps,
    uplink_time_s,
)
from privtuner.optimizer.core.problem import AllocationProblem

RING_DEGREES = (4096, 8192, 16384, 32768)
#: HomomorphicEncryption.org standard: max log2 Q at 128-bit security per N (classical).
MAX_LOG2Q_128 = {4096: 109, 8192: 218, 16384: 438, 32768: 881}


def random_costs(
    rng: np.random.Generator,
    n_sets: int,
    rounds: int | None = None,
    privacy_metric: str = "security_bits",
) -> CostTable:
    """A synthetic cost table of ``n_sets`` distinct CKKS sets (seeded by ``rng``)."""
    params: list[CkksParams] = []
    seen: set[str] = set()
    while len(params) < n_sets:
        n = int(rng.choice(RING_DEGREES))
        scale = int(rng.integers(20, 41))
        first = scale + int(rng.integers(5, 21))
        middle = (scale,) * int(rng.integers(1, 1 + n // 4096))
        chain = (first, *middle, first)
        if sum(chain) > MAX_LOG2Q_128[n]:
            continue
        p = CkksParams(n, chain, scale)
        if p.name in seen:
            continue
        seen.add(p.name)
        params.append(p)
    n_arr = np.array([p.poly_modulus_degree for p in params], dtype=float)
    logq = np.array([p.log2_q for p in params], dtype=float)
    size = n_arr / 4096.0 * logq / 100.0  # ~ N log2 Q, relative
    noise = lambda: rng.lognormal(0.0, 0.25, n_sets)  # noqa: E731
    device_cycles = np.clip(2e8 * size * noise(), 1e8, 1e10)
    server_cycles = np.clip(3e9 * size * noise(), 1e9, 1e11)
    uplink_bits = np.clip(1.5e6 * size * noise(), 1e6, 1e9)
    downlink_bits = np.clip(1.5e6 * size * noise(), 1e6, 1e9)
    security = np.array([128.0 * MAX_LOG2Q_128[p.poly_modulus_degree] / p.log2_q for p in params])
    security = np.minimum(security, 512.0)
    privacy = security if privacy_metric == "security_bits" else np.log2(n_arr)
    precision = np.array([p.scale_bits - 8.0 for p in params]) + rng.uniform(-2, 2, n_sets)
    return CostTable(
        params=tuple(params),
        device_cycles=device_cycles,
        server_cycles=server_cycles,
        uplink_bits=uplink_bits,
        downlink_bits=downlink_bits,
        privacy=privacy,
        security_bits=security,
        precision_bits=precision,
        privacy_metric=privacy_metric,
        rounds=int(rng.integers(1, 20)) if rounds is None else rounds,
        provenance={"synthetic": True},
    )


def random_problem(
    rng: np.random.Generator,
    n_devices: int,
    n_sets: int,
    *,
    objective_kind: str = "weighted",
    deadline_factor: float | None = None,
    privacy_weight: float | None = None,
    allowed_density: float = 1.0,
    rounds: int | None = None,
    **overrides: Any,
) -> AllocationProblem:
    """A random feasible-ish problem (see the module docstring). Every draw uses ``rng``."""
    costs = random_costs(rng, n_sets, rounds=rounds)
    d_km = np.sqrt(rng.uniform(0.01**2, 0.5**2, n_devices))
    pl_db = 128.1 + 37.6 * np.log10(d_km)
    shadow = rng.normal(0.0, 8.0, n_devices)
    fading = rng.exponential(1.0, n_devices)
    gain = 10 ** (-(pl_db + shadow) / 10) * fading
    p_max = 10 ** ((rng.uniform(17.0, 23.0, n_devices) - 30) / 10)
    f_max = rng.uniform(0.8e9, 2.0e9, n_devices)
    kappa = rng.uniform(0.5e-28, 2e-28, n_devices)
    bw = float(rng.uniform(5e6, 20e6)) * max(1.0, n_devices / 10.0)
    f_srv = float(rng.uniform(20e9, 80e9)) * max(1.0, n_devices / 10.0)
    noise = 10 ** ((-174.0 - 30) / 10)
    allowed = np.ones((n_devices, n_sets), dtype=bool)
    privacy_min = 0.0
    if objective_kind == "constrained":
        privacy_min = float(np.quantile(costs.privacy, rng.uniform(0.0, 0.6)))
        allowed &= costs.privacy[None, :] >= privacy_min
    if allowed_density < 1.0:
        mask = rng.random((n_devices, n_sets)) < allowed_density
        mask[np.arange(n_devices), rng.integers(0, n_sets, n_devices)] = True
        allowed &= mask
        allowed[~allowed.any(axis=1), int(np.argmax(costs.privacy))] = True
    # equal-share latency with the fastest allowed set of each device (spec sec. 4 terms)
    b_eq = bw / n_devices
    rate = uplink_rate_bps(b_eq, p_max, gain, noise)
    lat = (
        compute_time_s(costs.device_cycles[None, :], f_max[:, None])
        + uplink_time_s(costs.uplink_bits[None, :], rate[:, None])
        + downlink_time_s(costs.downlink_bits[None, :], 1e8)
        + compute_time_s(costs.server_cycles[None, :], f_srv / n_devices)
    )
    lat = np.where(allowed, lat, np.inf)
    worst = float(np.max(np.min(lat, axis=1)))
    factor = float(rng.uniform(1.05, 3.0)) if deadline_factor is None else deadline_factor
    e_ref = float(np.median(kappa[:, None] * costs.device_cycles[None, :] * f_max[:, None] ** 2))
    spread = float(np.ptp(costs.privacy)) or 1.0
    w_p = (
        float(rng.uniform(0.05, 2.0)) * e_ref * costs.rounds / spread
        if privacy_weight is None
        else privacy_weight
    )
    kw: dict[str, Any] = {
        "gain_lin": gain,
        "p_max_w": p_max,
        "f_max_hz": f_max,
        "kappa_dev": kappa,
        "bandwidth_hz": bw,
        "noise_w_per_hz": noise,
        "server_cpu_hz": f_srv,
        "kappa_srv": float(rng.uniform(0.5e-28, 2e-28)),
        "downlink_rate_bps": 1e8,
        "costs": costs,
        "allowed": allowed,
        "objective_kind": objective_kind,
        "energy_weight": 1.0,
        "privacy_weight": w_p if objective_kind == "weighted" else 0.0,
        "privacy_min": privacy_min,
        "deadline_s": worst * factor,
        "seed": int(rng.integers(0, 2**31)),
        "name": f"random_{n_devices}x{n_sets}",
    }
    kw.update(overrides)
    return AllocationProblem(**kw)
