"""privtuner: energy-privacy optimisation of CKKS-encrypted LoRA fine-tuning at the wireless edge.

Data flows one way: scenario -> system_sim -> costmodels -> optimizer -> result -> plots/files.

The public API is imported lazily so that ``import privtuner`` (and ``privtuner --version``)
stays instant and never pulls in cvxpy, TenSEAL or torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_scenario": ("privtuner.scenario", "load_scenario"),
    "ScenarioSpec": ("privtuner.scenario", "ScenarioSpec"),
    "expand_sweep": ("privtuner.scenario", "expand_sweep"),
    "build_instance": ("privtuner.system_sim", "build_instance"),
    "SystemInstance": ("privtuner.system_sim", "SystemInstance"),
    "solve": ("privtuner.optimizer", "solve"),
    "AllocationProblem": ("privtuner.optimizer", "AllocationProblem"),
    "SolveResult": ("privtuner.optimizer", "SolveResult"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'privtuner' has no attribute {name!r}")
