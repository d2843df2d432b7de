"""CKKS parameter catalogue, privacy metrics, fitted cost curves and workload op counts."""

from privtuner.costmodels.types import CkksParams, CostTable

__all__ = ["CkksParams", "CostTable"]
