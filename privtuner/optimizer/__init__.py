"""Allocation optimiser (spec sections 4 and 5)."""
