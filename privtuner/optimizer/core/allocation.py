"""An allocation of every decision variable (spec section 4): :class:`Allocation`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Allocation:
    """A full allocation (arrays ``[n_devices]``): set index, b [Hz], p [W], f [Hz], f_s [Hz].

    ``bandwidth_hz`` and ``server_cpu_hz`` are each device's *share* (the problem's fields of
    the same names are the totals B and F_s).
    """

    sets: NDArray[np.int64]
    bandwidth_hz: NDArray[np.float64]
    tx_power_w: NDArray[np.float64]
    cpu_hz: NDArray[np.float64]
    server_cpu_hz: NDArray[np.float64]

    def as_kwargs(self) -> dict[str, Any]:
        """The five arrays by name (``AllocationProblem.evaluate`` /
        ``SolveResult.from_allocation`` keywords)."""
        return {
            "sets": self.sets,
            "bandwidth_hz": self.bandwidth_hz,
            "tx_power_w": self.tx_power_w,
            "cpu_hz": self.cpu_hz,
            "server_cpu_hz": self.server_cpu_hz,
        }
