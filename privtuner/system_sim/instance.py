"""One drawn realisation of the wireless edge system: :class:`SystemInstance`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from privtuner.arrays import readonly
from privtuner.errors import ScenarioError
from privtuner.scenario.schema import PerDevice, ScenarioSpec, Uniform
from privtuner.system_sim.channel import (
    drop_in_disc,
    fdma_rate_bps,
    path_loss_db,
    rayleigh_power,
    shadowing_db,
)
from privtuner.units import db_to_lin, dbm_to_w, lin_to_db


@dataclass(frozen=True)
class SystemInstance:
    """A realisation of devices and channels (all arrays ``[n_devices]``, read-only, SI units).

    Attributes are what the optimiser needs; ``seed`` records the draw.
    """

    distance_m: NDArray[np.float64]  # NaN where a device was given by gain only
    gain_lin: NDArray[np.float64]  # channel power gain g_n (linear)
    p_max_w: NDArray[np.float64]
    f_max_hz: NDArray[np.float64]
    kappa_dev: NDArray[np.float64]
    bandwidth_hz: float
    noise_w_per_hz: float
    server_cpu_hz: float
    kappa_srv: float
    downlink_rate_bps: float
    seed: int
    name: str = "scenario"

    @property
    def n_devices(self) -> int:
        return int(self.gain_lin.shape[0])

    @property
    def gain_db(self) -> NDArray[np.float64]:
        return lin_to_db(self.gain_lin)

    def snr_equal_share_db(self) -> NDArray[np.float64]:
        """SNR at an equal bandwidth share B/K and maximum power: p_max g / (N0 B/K) [dB]."""
        b = self.bandwidth_hz / self.n_devices
        return lin_to_db(self.p_max_w * self.gain_lin / (self.noise_w_per_hz * b))

    def rate_equal_share_bps(self) -> NDArray[np.float64]:
        """Uplink rate at an equal bandwidth share and maximum power [bit/s]."""
        b = np.full(self.n_devices, self.bandwidth_hz / self.n_devices)
        return fdma_rate_bps(b, self.p_max_w, self.gain_lin, self.noise_w_per_hz)

    def subset(self, idx: Any) -> SystemInstance:
        """The instance restricted to devices ``idx`` (same system constants)."""
        return SystemInstance(
            distance_m=readonly(self.distance_m[idx]),
            gain_lin=readonly(self.gain_lin[idx]),
            p_max_w=readonly(self.p_max_w[idx]),
            f_max_hz=readonly(self.f_max_hz[idx]),
            kappa_dev=readonly(self.kappa_dev[idx]),
            bandwidth_hz=self.bandwidth_hz,
            noise_w_per_hz=self.noise_w_per_hz,
            server_cpu_hz=self.server_cpu_hz,
            kappa_srv=self.kappa_srv,
            downlink_rate_bps=self.downlink_rate_bps,
            seed=self.seed,
            name=self.name,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "bandwidth_hz": self.bandwidth_hz,
            "noise_w_per_hz": self.noise_w_per_hz,
            "server_cpu_hz": self.server_cpu_hz,
            "kappa_srv": self.kappa_srv,
            "downlink_rate_bps": self.downlink_rate_bps,
            "devices": {
                "distance_m": [None if np.isnan(x) else float(x) for x in self.distance_m],
                "gain_db": self.gain_db.tolist(),
                "p_max_w": self.p_max_w.tolist(),
                "f_max_hz": self.f_max_hz.tolist(),
                "kappa_dev": self.kappa_dev.tolist(),
            },
        }


def _draw(rng: np.random.Generator, value: PerDevice, n: int) -> NDArray[np.float64]:
    if isinstance(value, Uniform):
        return rng.uniform(value.low, value.high, n)
    return np.full(n, float(value))


def build_instance(spec: ScenarioSpec, seed: int | None = None) -> SystemInstance:
    """Draw one :class:`SystemInstance` from a scenario (spec section 4).

    ``seed`` defaults to ``spec.seed``. Draw order (stable across versions, so the same seed
    gives the same bytes): distances, per-device parameters (p_max, f_max, kappa),
    shadowing, fading. Explicit devices take ``gain_db`` as given (no draw) or draw shadowing
    and fading around the path loss of their ``distance_m``.
    """
    seed = spec.seed if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    sysm, dev = spec.system, spec.devices
    if dev.explicit is not None:
        n = len(dev.explicit)
        distance = np.array(
            [np.nan if d.distance_m is None else d.distance_m for d in dev.explicit], dtype=float
        )
    else:
        if dev.count is None:  # a devices CSV is read by the loader, not here
            raise ScenarioError(
                [
                    "devices.csv: not read; load the scenario with privtuner.scenario."
                    "load_scenario (which reads the CSV into devices.explicit), or give "
                    "devices.count"
                ]
            )
        n = dev.count
        distance = drop_in_disc(rng, n, sysm.cell_radius_m, sysm.min_distance_m)
    p_max_dbm = _draw(rng, dev.p_max_dbm, n)
    f_max = _draw(rng, dev.f_max_hz, n)
    kappa = _draw(rng, dev.kappa, n)
    shadow = shadowing_db(rng, n, sysm.shadowing_db)
    fading = rayleigh_power(rng, n) if sysm.fading == "rayleigh" else np.ones(n)
    with np.errstate(invalid="ignore"):
        pl = path_loss_db(distance, sysm.path_loss_intercept_db, sysm.path_loss_slope_db)
    gain = db_to_lin(-(pl + shadow)) * fading
    if dev.explicit is not None:
        for i, d in enumerate(dev.explicit):
            if d.gain_db is not None:
                gain[i] = float(db_to_lin(d.gain_db))
            if d.p_max_dbm is not None:
                p_max_dbm[i] = d.p_max_dbm
            if d.f_max_hz is not None:
                f_max[i] = d.f_max_hz
            if d.kappa is not None:
                kappa[i] = d.kappa
    return SystemInstance(
        distance_m=readonly(distance),
        gain_lin=readonly(gain),
        p_max_w=readonly(dbm_to_w(p_max_dbm)),
        f_max_hz=readonly(f_max),
        kappa_dev=readonly(kappa),
        bandwidth_hz=float(sysm.bandwidth_hz),
        noise_w_per_hz=float(dbm_to_w(sysm.noise_dbm_per_hz)),
        server_cpu_hz=float(spec.server.cpu_hz),
        kappa_srv=float(spec.server.kappa),
        downlink_rate_bps=float(spec.server.downlink_rate_bps),
        seed=seed,
        name=spec.name,
    )
