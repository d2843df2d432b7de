"""``method: ao`` (spec 5.1): ``method.py`` (the alternation), ``bnb.py`` (stage A),
``fp.py`` (stage B), ``options.py`` (its options)."""
