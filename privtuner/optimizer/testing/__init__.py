"""Conformance testing of the solvers: the instance bank and reference optimum (``bank``),
the seeded random instance factory (``factory``), the SCIP reference model (``scip``) and
the tolerance table (``tolerances``). Used by the tests and ``benchmarks/bench_optimizer.py``.
"""

from privtuner.optimizer.testing.bank import (
    BANK_CYCLE,
    REGIMES,
    BankInstance,
    Reference,
    bank_instance,
    check_result,
    hard_bank,
    reference_optimum,
    relaxation_feasible,
    relaxation_minimum,
)
from privtuner.optimizer.testing.tolerances import TOLERANCES

__all__ = [
    "BANK_CYCLE",
    "REGIMES",
    "TOLERANCES",
    "BankInstance",
    "Reference",
    "bank_instance",
    "check_result",
    "hard_bank",
    "reference_optimum",
    "relaxation_feasible",
    "relaxation_minimum",
]
