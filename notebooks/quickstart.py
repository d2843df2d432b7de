# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # privtuner quickstart: solve, inspect, plot
#
# Load the default scenario (10 devices in a 500 m cell, BERT-Tiny LoRA fine-tuning with
# CKKS-encrypted projections), solve the energy-privacy allocation with the certified
# `exact` method, inspect the per-device allocation, and compare with `ao` (the paper's
# alternating B&B + fractional programming) and a baseline.
#
# Set `PRIVTUNER_NOTEBOOK_SMALL=1` for a small, fast version (used by the test suite).

# %%
# %matplotlib inline

# %%
import os

from privtuner.optimizer import available_methods, solve
from privtuner.pipeline import build_problem
from privtuner.plotting import plot_allocation, plot_bounds, plot_convergence
from privtuner.rows import allocation_records
from privtuner.scenario import load_bundled

SMALL = os.environ.get("PRIVTUNER_NOTEBOOK_SMALL", "0") == "1"


# the bundled default scenario (scenarios/default.yaml in a checkout); load_scenario(path)
# loads a file of your own
spec = load_bundled("default")
if SMALL:
    spec = spec.with_overrides({"devices.count": 4})
problem = build_problem(spec)
print(
    f"{problem.n_devices} devices, {problem.n_sets} CKKS parameter sets, B = "
    f"{problem.bandwidth_hz / 1e6:g} MHz, deadline {problem.deadline_s:g} s"
)

# %% [markdown]
# ## Solve with the exact method (dual decomposition + branch-and-bound, with a certificate)

# %%
result = solve(problem, "exact")
print(result.table())

# %% [markdown]
# The allocation per device: bandwidth, transmit power, device CPU, server CPU, the chosen
# CKKS set and the energy split.

# %%
plot_allocation(allocation_records(result), title=f"{problem.name}: exact")

# %% [markdown]
# Lower and upper bounds of the exact method over its iterations (the gap closes).

# %%
if result.history:
    display(plot_bounds(result.history))  # noqa: F821 - IPython's display

# %% [markdown]
# ## Compare methods
# `ao` is the paper-faithful alternating optimisation; the baselines fix parts of the
# decision (e.g. equal bandwidth with maximum power).

# %%
methods = [
    m for m in ("exact", "ao", "equal_bandwidth", "fixed_largest_n") if m in available_methods()
]
results = {m: (result if m == "exact" else solve(problem, m)) for m in methods}
print(f"{'method':<18} {'status':<10} {'energy [J]':>12} {'objective':>12} {'mean sec [bits]':>16}")
for m, r in results.items():
    if r.has_allocation:
        print(
            f"{m:<18} {r.status:<10} {r.total_energy_j:>12.4g} {r.objective:>12.4g} "
            f"{r.security_bits.mean():>16.1f}"
        )
    else:
        print(f"{m:<18} {r.status:<10} {r.message}")

# %%
if "ao" in results and results["ao"].history:
    display(plot_convergence({"ao": results["ao"].history}))  # noqa: F821
