"""The optimiser's methods. Importing this package registers every built-in one.

* ``exact/``: dual decomposition + branch-and-bound (spec 5.2), with its continuous stage
  (``continuous.py``) and the infeasibility proofs (``feasibility.py``, also the pre-solve
  check of :func:`~privtuner.optimizer.solve`);
* ``ao/``: the alternating optimisation of spec 5.1: stage A (``bnb.py``), stage B
  (``fp.py``), options (``options.py``);
* ``enumerate/``: every set combination x the independent ``reference.py`` solver;
* ``baselines.py`` (spec 5.3) and ``starts.py`` (starting points shared by ao and baselines).

Methods import the core and ``methods`` only; the model's formulas come from
``core/model.py``.
"""

from privtuner.optimizer.core.registry import set_presolve
from privtuner.optimizer.methods import baselines, starts
from privtuner.optimizer.methods.ao import method as ao_method
from privtuner.optimizer.methods.enumerate import method as enumerate_method
from privtuner.optimizer.methods.exact import method as exact_method
from privtuner.optimizer.methods.exact.feasibility import explain_infeasibility

set_presolve(explain_infeasibility)

__all__ = ["ao_method", "baselines", "enumerate_method", "exact_method", "starts"]
