"""Contracts between the cost model and the optimiser.

:class:`CkksParams` is one CKKS parameter set theta; :class:`CostTable` is what the optimiser
consumes: per catalogue set, the per-round device cycles, server cycles, uplink and downlink
bits (spec section 3), and the privacy metric value Phi(theta) (spec section 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from privtuner.arrays import readonly


@dataclass(frozen=True, order=True)
class CkksParams:
    """A CKKS parameter set theta = (N, coefficient-modulus bit sizes q_0..q_L, scale bits)."""

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int

    @property
    def log2_q(self) -> int:
        """Total coefficient modulus size log2 Q = sum of the prime bit sizes (incl. special)."""
        return int(sum(self.coeff_mod_bit_sizes))

    @property
    def slots(self) -> int:
        """CKKS slots per ciphertext, N/2."""
        return self.poly_modulus_degree // 2

    @property
    def name(self) -> str:
        bits = "-".join(str(b) for b in self.coeff_mod_bit_sizes)
        return f"N{self.poly_modulus_degree}_q{bits}_s{self.scale_bits}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "scale_bits": self.scale_bits,
            "log2_q": self.log2_q,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CkksParams:
        return cls(
            int(d["poly_modulus_degree"]),
            tuple(int(b) for b in d["coeff_mod_bit_sizes"]),
            int(d["scale_bits"]),
        )


@dataclass(frozen=True)
class CostTable:
    """Per-round costs of each candidate CKKS set for one workload (arrays ``[n_sets]``).

    * ``device_cycles``: C_dev(theta), device CPU cycles per round (encrypt + decrypt + clear work)
    * ``server_cycles``: C_srv(theta), server CPU cycles per round (ciphertext x plaintext)
    * ``uplink_bits``: S_up(theta); ``downlink_bits``: S_down(theta), bits per round
    * ``privacy``: Phi(theta) under ``privacy_metric``; ``security_bits`` always present
    * ``precision_bits``: measured precision of one encrypted projection
    * ``rounds``: fine-tuning rounds; energies in the objective are ``rounds`` x per-round.
    * ``variants``: per entry, the protocol variant it was priced with ("" for the scenario's
      own; ``rescale=device`` where ``fhe.rescale: choose`` prices a set both ways), or empty
      (all ""): an entry's name is its set's name plus ``+variant`` (:attr:`set_names`).
    """

    params: tuple[CkksParams, ...]
    device_cycles: NDArray[np.float64]
    server_cycles: NDArray[np.float64]
    uplink_bits: NDArray[np.float64]
    downlink_bits: NDArray[np.float64]
    privacy: NDArray[np.float64]
    security_bits: NDArray[np.float64]
    precision_bits: NDArray[np.float64]
    privacy_metric: str = "security_bits"
    rounds: int = 1
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)
    variants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        k = len(self.params)
        if self.variants and len(self.variants) != k:
            raise ValueError(f"CostTable.variants must have {k} entries, got {len(self.variants)}")
        for name in (
            "device_cycles",
            "server_cycles",
            "uplink_bits",
            "downlink_bits",
            "privacy",
            "security_bits",
            "precision_bits",
        ):
            arr = readonly(getattr(self, name))
            if arr.shape != (k,):
                raise ValueError(f"CostTable.{name} must have shape ({k},), got {arr.shape}")
            object.__setattr__(self, name, arr)

    @property
    def n_sets(self) -> int:
        return len(self.params)

    @property
    def set_names(self) -> list[str]:
        """Each entry's name: its set's, with ``+variant`` where it has one."""
        variants = self.variants or ("",) * self.n_sets
        return [p.name + (f"+{v}" if v else "") for p, v in zip(self.params, variants, strict=True)]

    def select(self, idx: Any) -> CostTable:
        """The table restricted to sets ``idx`` (an index array or boolean mask)."""
        sel = np.arange(self.n_sets)[idx]
        return CostTable(
            params=tuple(self.params[i] for i in sel),
            device_cycles=self.device_cycles[sel],
            server_cycles=self.server_cycles[sel],
            uplink_bits=self.uplink_bits[sel],
            downlink_bits=self.downlink_bits[sel],
            privacy=self.privacy[sel],
            security_bits=self.security_bits[sel],
            precision_bits=self.precision_bits[sel],
            privacy_metric=self.privacy_metric,
            rounds=self.rounds,
            provenance=self.provenance,
            variants=tuple(self.variants[i] for i in sel) if self.variants else (),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": [p.to_dict() for p in self.params],
            "device_cycles": self.device_cycles.tolist(),
            "server_cycles": self.server_cycles.tolist(),
            "uplink_bits": self.uplink_bits.tolist(),
            "downlink_bits": self.downlink_bits.tolist(),
            "privacy": self.privacy.tolist(),
            "security_bits": self.security_bits.tolist(),
            "precision_bits": self.precision_bits.tolist(),
            "privacy_metric": self.privacy_metric,
            "rounds": self.rounds,
            "variants": list(self.variants),
        }
