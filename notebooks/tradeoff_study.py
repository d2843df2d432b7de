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
# # Energy-privacy trade-off
#
# The weighted objective trades energy against the privacy metric of the chosen CKKS sets:
# `min sum_n [w_E E_n - w_P Phi(theta_n)]`. Sweeping the privacy weight `w_P` traces the
# trade-off curve; the constrained objective (`min sum_n E_n` s.t. `Phi(theta_n) >= Phi_min`)
# traces it over the requirement `Phi_min` instead.
#
# Set `PRIVTUNER_NOTEBOOK_SMALL=1` for a small, fast version (used by the test suite).

# %%
# %matplotlib inline

# %%
import os

from privtuner.optimizer import available_methods
from privtuner.pipeline import build_problem
from privtuner.plotting import plot_tradeoff
from privtuner.scenario import load_bundled
from privtuner.studies import default_tradeoff_values, privacy_problem_factory, tradeoff_curve

SMALL = os.environ.get("PRIVTUNER_NOTEBOOK_SMALL", "0") == "1"


# the bundled default scenario (scenarios/default.yaml in a checkout); load_scenario(path)
# loads a file of your own
spec = load_bundled("default")
if SMALL:
    spec = spec.with_overrides({"devices.count": 4})
problem = build_problem(spec)
methods = [m for m in ("exact", "ao") if m in available_methods()]

# %% [markdown]
# ## Weighted objective: sweep the privacy weight
# The grid spans the range where the privacy term is comparable to the energy term
# (`default_tradeoff_values`: 0, the scenario's own weight, and log-spaced weights around
# `w* = w_E E0 / (n (Phi_max - Phi_min))`).

# %%
weights = default_tradeoff_values(problem, n_points=4 if SMALL else 9)
factory, x = privacy_problem_factory(problem)
rows = []
for m in methods:
    rows += tradeoff_curve(factory, weights, m, x=x)
for r in rows:
    print(
        f"{r['method']:<6} w_P={r['privacy_weight']:<10.4g} {r['status']:<9} "
        f"E={r['energy_j'] or float('nan'):10.4g} J  mean security "
        f"{r['security_bits_mean'] or float('nan'):7.1f} bits  {r['sets_summary']}"
    )

# %%
plot_tradeoff(rows, x=x)

# %% [markdown]
# ## Constrained objective: sweep the privacy requirement

# %%
cspec = spec.with_overrides({"objective.kind": "constrained", "objective.privacy_min": 0})
cproblem = build_problem(cspec)
cfactory, cx = privacy_problem_factory(cproblem)
requirements = default_tradeoff_values(cproblem, n_points=3 if SMALL else 8)
crows = tradeoff_curve(cfactory, requirements, methods[0], x=cx)
plot_tradeoff(crows, x=cx)
