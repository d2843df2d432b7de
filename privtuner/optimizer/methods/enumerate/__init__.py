"""``method: enumerate`` (spec 5.2): ``method.py`` (every set combination) on the
independent fixed-set solver ``reference.py``."""
