"""CKKS parameter catalogue, privacy metrics, fitted cost curves and workload op counts."""

from privtuner.costmodels.catalogue import generate_catalogue, validate_params
from privtuner.costmodels.fitting import (
    RECORD_COLUMNS,
    CostModel,
    FittedCurve,
    fit_records,
    load_cost_model,
    read_records,
)
from privtuner.costmodels.model import build_cost_table
from privtuner.costmodels.privacy import get_privacy_metric, register_privacy_metric
from privtuner.costmodels.security import max_log2_q, security_bits
from privtuner.costmodels.types import CkksParams, CostTable
from privtuner.costmodels.workload import OpCounts, op_counts_per_round, op_counts_per_step

__all__ = [
    "RECORD_COLUMNS",
    "CkksParams",
    "CostModel",
    "CostTable",
    "FittedCurve",
    "OpCounts",
    "build_cost_table",
    "fit_records",
    "generate_catalogue",
    "get_privacy_metric",
    "load_cost_model",
    "max_log2_q",
    "op_counts_per_round",
    "op_counts_per_step",
    "read_records",
    "register_privacy_metric",
    "security_bits",
    "validate_params",
]
