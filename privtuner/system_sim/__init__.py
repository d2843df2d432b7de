"""Wireless edge system simulation: channels, devices, server, FDMA rate (spec section 4)."""

from privtuner.system_sim.channel import (
    drop_in_disc,
    fdma_rate_bps,
    path_loss_db,
    rayleigh_power,
    shadowing_db,
)
from privtuner.system_sim.instance import SystemInstance, build_instance

__all__ = [
    "SystemInstance",
    "build_instance",
    "drop_in_disc",
    "fdma_rate_bps",
    "path_loss_db",
    "rayleigh_power",
    "shadowing_db",
]
