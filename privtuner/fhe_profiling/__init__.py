"""Real CKKS profiling (TenSEAL) and the encrypted BERT-Tiny LoRA protocol.

Needs the ``fhe`` extra (``pip install 'privtuner[fhe]'``); nothing here is imported by the
optimiser or the CLI start-up.
"""
