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
# # CKKS profiling records and the fitted cost model
#
# The optimiser never runs the crypto library: it uses per-operation cost curves fitted to
# profiling records of real TenSEAL operations (spec section 3). This notebook loads the
# shipped model and records, shows each fit (R^2, held-out error, valid domain) and the
# per-round costs of every catalogue set for the default workload.
#
# Re-profiling needs the `fhe` extra (TenSEAL) and is off by default: set
# `PRIVTUNER_NOTEBOOK_PROFILE=1` to run a quick profile and fit it here.

# %%
# %matplotlib inline

# %%
import importlib.util
import os
import tempfile
from pathlib import Path

from privtuner.costmodels import build_cost_table, fit_records, load_cost_model, read_records
from privtuner.costmodels.fitting import DEFAULT_MODEL_PATH
from privtuner.plotting import plot_cost_fits
from privtuner.scenario import load_bundled

SMALL = os.environ.get("PRIVTUNER_NOTEBOOK_SMALL", "0") == "1"
PROFILE = os.environ.get("PRIVTUNER_NOTEBOOK_PROFILE", "0") == "1"


model = load_cost_model("default")
shipped_records = sorted(DEFAULT_MODEL_PATH.parent.glob("*records*.csv"))
records = read_records(shipped_records[0]) if shipped_records else []
print(
    f"model: {DEFAULT_MODEL_PATH.name}, reference CPU frequency "
    f"{model.reference_frequency_hz / 1e9:.3g} GHz; {len(records)} shipped records"
)
for key in ("cpu_model", "tenseal_version", "date_first", "n_records"):
    if key in model.provenance:
        print(f"  {key}: {model.provenance[key]}")

# %% [markdown]
# ## The fitted curves

# %%
print(f"{'op':<18} {'form':<12} {'R^2':>8} {'held-out':>9} {'max':>8}  formula")
for op, c in sorted(model.curves.items()):
    print(
        f"{op:<18} {c.form:<12} {c.r2:>8.4f} {100 * c.heldout_rel_err:>8.2f}% "
        f"{100 * c.heldout_max_rel_err:>7.2f}%  {c.formula}"
    )

# %%
figs = plot_cost_fits(model, records) if records else {}
for _name, fig in list(figs.items())[: 2 if SMALL else None]:
    display(fig)  # noqa: F821 - IPython's display

# %% [markdown]
# ## Per-round costs of each catalogue set for the default workload

# %%
# the bundled default scenario (scenarios/default.yaml in a checkout); load_scenario(path)
# loads a file of your own
spec = load_bundled("default")
table = build_cost_table(spec)
print(
    f"{'set':<26} {'security':>9} {'dev Gcyc':>9} {'srv Gcyc':>9} {'up Mbit':>9} {'down Mbit':>10}"
)
for i, p in enumerate(table.params):
    print(
        f"{p.name:<26} {table.security_bits[i]:>9.1f} {table.device_cycles[i] / 1e9:>9.3f} "
        f"{table.server_cycles[i] / 1e9:>9.3f} {table.uplink_bits[i] / 1e6:>9.2f} "
        f"{table.downlink_bits[i] / 1e6:>10.2f}"
    )

# %% [markdown]
# ## Optional: profile again on this machine (TenSEAL) and fit

# %%
if PROFILE and importlib.util.find_spec("tenseal") is not None:
    from privtuner.fhe_profiling.profiler import run_profile

    out = Path(tempfile.mkdtemp(prefix="privtuner-profile-"))
    new_records = run_profile(out, quick=True, progress=False)
    new_model = fit_records(new_records)
    for _name, fig in plot_cost_fits(new_model, new_records).items():
        display(fig)  # noqa: F821
else:
    print("re-profiling skipped (set PRIVTUNER_NOTEBOOK_PROFILE=1 with TenSEAL installed)")
