"""The optimiser's core: what every method shares and none re-derives.

* ``model``: the system model of spec section 4 as one vectorised kernel (pair terms
  ``[n_devices, n_sets]``, per-device terms, the closed-form CPU frequencies of spec 5.1);
* ``problem``: :class:`AllocationProblem` and its :meth:`~AllocationProblem.evaluate`, the
  single source of truth for every returned allocation;
* ``allocation`` / ``result``: :class:`Allocation` and :class:`SolveResult`;
* ``options`` / ``registry``: the frozen :class:`SolveOptions` and the method registry.

The core imports no method (``optimizer.methods`` imports the core).
"""
