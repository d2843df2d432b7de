"""``method: exact`` (spec 5.2): ``method.py`` (dual decomposition + branch-and-bound),
``continuous.py`` (the fixed-set Lagrangian subproblems and market clearing),
``feasibility.py`` (infeasibility proofs)."""
