"""The system model of spec section 4 (``docs/system-model.md``): one vectorised kernel.

Every method of the optimiser computes uplink rates, times, energies and the closed-form CPU
frequencies with these functions and writes none of these formulas again. Arrays broadcast:
per device ``[n_devices]`` (each device with its own set, :func:`device_terms`) or per
(device, set) pair ``[n_devices, n_sets]`` (:func:`pair_terms`). Per round, device n with
CKKS set k (spec section 4)::

    r_n     = b_n log2(1 + p_n g_n / (N0 b_n))          uplink FDMA rate          [bit/s]
    tau_n   = S_up,k / r_n                              uplink time               [s]
    T_dl    = S_down,k / r_dl                           downlink time             [s]
    T_dev   = C_dev,k / f_n,    T_srv = C_srv,k / f_s,n compute times             [s]
    E_dev   = kappa_d C_dev,k f_n^2                     device compute energy     [J]
    E_tx    = p_n tau_n                                 transmit energy           [J]
    E_srv   = kappa_s C_srv,k f_s,n^2                   server compute energy     [J]
    T_n     = T_dev + tau_n + T_dl + T_srv <= T_max     latency (sequential)      [s]

The closed forms of spec 5.1 (the smallest frequency meeting the deadline, and the
energy-optimal device/server split of the time left) are here too. ``methods/enumerate``'s
``reference.py`` is the one deliberate exception: an independent re-derivation (log
variables) that the conformance harness checks this kernel against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from privtuner.system_sim.channel import fdma_rate_bps

if TYPE_CHECKING:
    from privtuner.optimizer.core.problem import AllocationProblem

F64 = NDArray[np.float64]
LN2 = math.log(2.0)


# ---------------------------------------------------------------------- elementwise terms
def uplink_rate_bps(
    bandwidth_hz: ArrayLike, tx_power_w: ArrayLike, gain_lin: ArrayLike, noise_w_per_hz: float
) -> F64:
    """Uplink FDMA rate ``r = b log2(1 + p g / (N0 b))`` [bit/s] (spec sec. 4, "Uplink
    FDMA"): :func:`privtuner.system_sim.channel.fdma_rate_bps`, the one implementation."""
    return fdma_rate_bps(bandwidth_hz, tx_power_w, gain_lin, noise_w_per_hz)


def uplink_time_s(uplink_bits: ArrayLike, rate_bps: ArrayLike) -> F64:
    """Uplink time ``tau = S_up / r`` [s] (spec sec. 4, "Uplink"); 0 without uplink bits."""
    s = np.asarray(uplink_bits, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(s > 0, s / rate_bps, 0.0), dtype=float)


def downlink_time_s(downlink_bits: ArrayLike, downlink_rate_bps: float) -> F64:
    """Downlink time ``T_dl = S_down / r_dl`` [s] (spec sec. 4, "Downlink")."""
    return np.asarray(downlink_bits, dtype=float) / downlink_rate_bps


def compute_time_s(cycles: ArrayLike, freq_hz: ArrayLike) -> F64:
    """Compute time ``T = C / f`` [s] (spec sec. 4, "Device compute" / "Server compute");
    0 without cycles."""
    c = np.asarray(cycles, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(c > 0, c / freq_hz, 0.0), dtype=float)


def compute_energy_j(kappa: ArrayLike, cycles: ArrayLike, freq_hz: ArrayLike) -> F64:
    """Compute energy ``E = kappa C f^2`` [J] (spec sec. 4, "Device compute" / "Server
    compute")."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(np.asarray(kappa) * np.asarray(cycles) * np.asarray(freq_hz) ** 2)


def tx_energy_j(tx_power_w: ArrayLike, uplink_s: ArrayLike, uplink_bits: ArrayLike) -> F64:
    """Transmit energy ``E_tx = p tau`` [J] (spec sec. 4, "Uplink"); 0 without uplink bits."""
    with np.errstate(invalid="ignore", over="ignore"):
        prod = np.asarray(tx_power_w) * np.asarray(uplink_s)
    return np.asarray(np.where(np.asarray(uplink_bits) > 0, prod, 0.0), dtype=float)


def time_left_s(deadline_s: ArrayLike, *used_s: ArrayLike) -> F64:
    """``T_max`` minus the given latency terms [s], subtracted in the order given (spec sec. 4,
    "Latency per round": the deadline slack left for the remaining term)."""
    left = np.asarray(deadline_s, dtype=float)
    with np.errstate(invalid="ignore"):
        for t in used_s:
            left = left - np.asarray(t)
    return np.asarray(left, dtype=float)


def smallest_frequency_hz(cycles: ArrayLike, left_s: ArrayLike, no_work_hz: ArrayLike) -> F64:
    """Closed form of spec 5.1: the smallest frequency ``f = C / (time left)`` [Hz] that runs
    ``C`` cycles within ``left_s``; ``inf`` where no time is left; ``no_work_hz`` without
    cycles (any frequency meets the deadline)."""
    c = np.asarray(cycles, dtype=float)
    left = np.asarray(left_s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(c > 0, np.where(left > 0, c / left, np.inf), no_work_hz)
    return np.asarray(np.where(np.isnan(f), np.inf, f), dtype=float)


def tx_power_for_z_w(noise_over_gain: ArrayLike, bandwidth_hz: ArrayLike, z: ArrayLike) -> F64:
    """Transmit power ``p = (N0 / g) b (e^z - 1)`` [W] at ``z = r ln2 / b`` nats per hertz:
    the FDMA rate equation of spec sec. 4, ``r = b log2(1 + p g / (N0 b))``, solved for p."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(np.asarray(noise_over_gain) * bandwidth_hz * np.expm1(z), dtype=float)


def power_for_uplink_w(
    uplink_bits: ArrayLike, uplink_s: ArrayLike, bandwidth_hz: ArrayLike, noise_over_gain: ArrayLike
) -> F64:
    """Transmit power [W] that uploads ``S`` bits in ``tau`` seconds over ``b`` Hz:
    :func:`tx_power_for_z_w` at ``z = S ln2 / (tau b)``; 0 without uplink bits."""
    s = np.asarray(uplink_bits, dtype=float)
    b = np.asarray(bandwidth_hz, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = s * LN2 / (np.asarray(uplink_s) * b)
        p = np.where(s > 0, tx_power_for_z_w(noise_over_gain, b, z), 0.0)
    return np.asarray(p, dtype=float)


# ---------------------------------------------------------------------- per device / pair
@dataclass(frozen=True)
class Terms:
    """Per-round model terms (spec sec. 4) of devices with sets: ``[n]`` or ``[n, K]``.

    Times that are NaN or negative (no rate, no frequency) are ``inf``: such a device cannot
    meet any deadline. Energies are per round [J], unweighted.
    """

    rate_bps: F64
    uplink_s: F64
    downlink_s: F64
    device_s: F64
    server_s: F64
    device_j: F64
    tx_j: F64
    server_j: F64

    @property
    def latency_s(self) -> F64:
        """``T_dev + tau + T_dl + T_srv`` [s] (spec sec. 4, "Latency per round")."""
        return self.device_s + self.uplink_s + self.downlink_s + self.server_s

    @property
    def energy_j(self) -> F64:
        """``E_dev + E_tx + E_srv`` per round [J] (spec sec. 4)."""
        return self.device_j + self.tx_j + self.server_j


def _terms(
    problem: AllocationProblem,
    sets: NDArray[np.int64] | None,
    bandwidth_hz: ArrayLike,
    tx_power_w: ArrayLike,
    cpu_hz: ArrayLike,
    server_cpu_hz: ArrayLike,
) -> Terms:
    c = problem.costs
    if sets is None:  # every (device, set) pair: devices along rows, sets along columns
        dev = lambda a: np.asarray(a, dtype=float)[:, None]  # noqa: E731
        at = lambda a: np.asarray(a)[None, :]  # noqa: E731
    else:
        dev = lambda a: np.asarray(a, dtype=float)  # noqa: E731
        at = lambda a: np.asarray(a)[sets]  # noqa: E731
    b, p, f = dev(bandwidth_hz), dev(tx_power_w), dev(cpu_hz)
    fs = np.asarray(server_cpu_hz, dtype=float)
    fs = fs[:, None] if (sets is None and fs.ndim == 1) else fs
    c_dev, c_srv, s_up = at(c.device_cycles), at(c.server_cycles), at(c.uplink_bits)
    rate = uplink_rate_bps(b, p, dev(problem.gain_lin), problem.noise_w_per_hz)
    tau = uplink_time_s(s_up, rate)
    t_dev = compute_time_s(c_dev, f)
    t_srv = compute_time_s(c_srv, fs)
    t_dl = np.broadcast_to(
        downlink_time_s(at(c.downlink_bits), problem.downlink_rate_bps), np.shape(tau)
    )
    e_dev = compute_energy_j(dev(problem.kappa_dev), c_dev, f)
    e_tx = tx_energy_j(p, tau, s_up)
    e_srv = compute_energy_j(problem.kappa_srv, c_srv, fs)
    for arr in (tau, t_dev, t_srv):
        arr[np.isnan(arr) | (arr < 0)] = np.inf
    return Terms(rate, tau, np.array(t_dl), t_dev, t_srv, e_dev, e_tx, e_srv)


def device_terms(
    problem: AllocationProblem,
    sets: ArrayLike,
    bandwidth_hz: ArrayLike,
    tx_power_w: ArrayLike,
    cpu_hz: ArrayLike,
    server_cpu_hz: ArrayLike,
) -> Terms:
    """Spec sec. 4 terms ``[n]`` of each device with its own set ``sets[n]``."""
    return _terms(
        problem, np.asarray(sets, dtype=np.int64), bandwidth_hz, tx_power_w, cpu_hz, server_cpu_hz
    )


def pair_terms(
    problem: AllocationProblem,
    bandwidth_hz: ArrayLike,
    tx_power_w: ArrayLike,
    cpu_hz: ArrayLike,
    server_cpu_hz: ArrayLike,
) -> Terms:
    """Spec sec. 4 terms ``[n_devices, n_sets]`` of every (device, set) pair at the per-device
    ``(b, p, f)``; ``server_cpu_hz`` is per device ``[n]`` or per pair ``[n, K]``."""
    return _terms(problem, None, bandwidth_hz, tx_power_w, cpu_hz, server_cpu_hz)


def run_energy_j(problem: AllocationProblem, terms: Terms) -> tuple[F64, F64, F64]:
    """Energies for the whole run, ``rounds`` x per round [J]: (device, transmit, server)
    (spec sec. 4: "Energy totals are for the whole fine-tuning run")."""
    scale = float(problem.rounds)
    return scale * terms.device_j, scale * terms.tx_j, scale * terms.server_j


def energy_objective(problem: AllocationProblem, terms: Terms) -> float:
    """The energy part ``w_E sum_n rounds E_n`` of the objective (spec sec. 4, "Objective")."""
    e_dev, e_tx, e_srv = run_energy_j(problem, terms)
    return problem.energy_weight * float(np.sum(e_dev + e_tx + e_srv))


# ---------------------------------------------------------------------- closed forms (5.1)
def smallest_device_cpu_hz(
    problem: AllocationProblem,
    sets: ArrayLike,
    bandwidth_hz: ArrayLike,
    tx_power_w: ArrayLike,
    server_cpu_hz: ArrayLike,
) -> F64:
    """Closed form of spec 5.1: the smallest device frequency meeting the deadline [Hz],
    ``f_n = C_dev,k / (T_max - S_down,k/r_dl - S_up,k/r_n - C_srv,k/f_s,n)``; ``inf`` where no
    time is left; ``f_max`` for a set without device work."""
    c = problem.costs
    k = np.asarray(sets, dtype=np.int64)
    t = device_terms(problem, k, bandwidth_hz, tx_power_w, problem.f_max_hz, server_cpu_hz)
    left = time_left_s(problem.deadline_s, t.downlink_s, t.uplink_s, t.server_s)
    return smallest_frequency_hz(c.device_cycles[k], left, problem.f_max_hz)


def closed_form_cpus_hz(
    problem: AllocationProblem, sets: ArrayLike, bandwidth_hz: ArrayLike, tx_power_w: ArrayLike
) -> tuple[F64, F64]:
    """Energy-optimal split of the time left between device and server CPU (spec 5.1, 5.3).

    With ``T_c = T_max - S_up/r - S_down/r_dl`` left for computing, minimising
    ``kappa_d C_dev f^2 + kappa_s C_srv f_s^2`` subject to ``C_dev/f + C_srv/f_s = T_c``
    (Lagrange: ``kappa_d f^3 = kappa_s f_s^3``) gives ``f_s = rho f`` with
    ``rho = (kappa_d / kappa_s)^(1/3)`` and ``f = (C_dev + C_srv/rho) / T_c``; if that exceeds
    f_max, ``f = f_max`` and ``f_s = C_srv / (T_c - C_dev/f_max)``. The server-CPU capacity is
    ignored here. Returns ``(f, f_s)`` [Hz], ``inf`` where no time is left.
    """
    c = problem.costs
    k = np.asarray(sets, dtype=np.int64)
    c_dev, c_srv = c.device_cycles[k], c.server_cycles[k]
    t = device_terms(problem, k, bandwidth_hz, tx_power_w, problem.f_max_hz, problem.server_cpu_hz)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_c = time_left_s(problem.deadline_s, t.uplink_s, t.downlink_s)
        rho = (
            np.cbrt(problem.kappa_dev / problem.kappa_srv)
            if problem.kappa_srv > 0
            else (np.full(problem.n_devices, np.inf))
        )
        f = np.where(c_dev > 0, (c_dev + np.where(c_srv > 0, c_srv / rho, 0.0)) / t_c, 0.0)
        fs = np.where(c_srv > 0, rho * f, 0.0)
        fs = np.where((c_srv > 0) & (c_dev == 0), c_srv / t_c, fs)
        over = f > problem.f_max_hz
        left = time_left_s(t_c, compute_time_s(c_dev, problem.f_max_hz))
        f = np.where(over, problem.f_max_hz, f)
        # no server work: 0 if the device at f_max still meets the deadline, else inf
        fs = np.where(over, smallest_frequency_hz(c_srv, left, np.where(left > 0, 0.0, np.inf)), fs)
        f = np.where(c_dev > 0, f, problem.f_max_hz)
        bad = ~(t_c > 0) | ~np.isfinite(fs) | (fs < 0)
    return np.where(bad, np.inf, f), np.where(bad, np.inf, fs)


def smallest_server_cpu_hz(problem: AllocationProblem, terms: Terms) -> F64:
    """Closed form (spec 5.1, stage A): the smallest server CPU share meeting the deadline,
    ``f_s = C_srv / (T_max - T_dev - tau - T_dl)`` [Hz], for ``terms`` of shape ``[n, K]``
    (``inf`` where no time is left; 0 for a set without server work)."""
    left = time_left_s(problem.deadline_s, terms.device_s, terms.uplink_s, terms.downlink_s)
    return smallest_frequency_hz(problem.costs.server_cycles[None, :], left, 0.0)
