"""Accuracy under encryption (issue 13): LoRA fine-tuning of a BERT-type encoder on SST-2 in
three modes with the same seeds, batches and optimiser.

* ``plain``: torch in clear (:class:`privtuner.fhe_profiling.bert.PlainProjector`);
* ``simulate``: in clear, with the CKKS error of every encrypted projection (forward and
  backward, where the split protocol encrypts) drawn from a calibrated error model
  (:mod:`privtuner.accuracy.errormodel`, shipped as data with provenance);
* ``encrypted``: the real split protocol (:class:`privtuner.fhe_profiling.protocol.DeviceClient`
  over an in-process :class:`~privtuner.fhe_profiling.protocol.ProjectionServer`).

Modules: :mod:`.sst2` (data), :mod:`.errormodel` (CKKS error model and its calibration),
:mod:`.training` (models, training loop, study and outputs). Nothing below the CLI imports
this package (the optimiser and the cost models do not depend on it).
"""
