"""Shared helpers of the optimiser tests: the seeded random instance factory of
``privtuner.optimizer.testing.factory`` (``random_problem``, ``random_costs``) and its fixture.
"""

from __future__ import annotations

from typing import Any

import pytest

from privtuner.optimizer.testing.factory import (  # noqa: F401  (re-exported for fixtures)
    MAX_LOG2Q_128,
    RING_DEGREES,
    random_costs,
    random_problem,
)


@pytest.fixture
def make_problem() -> Any:
    """Fixture form of :func:`random_problem`."""
    return random_problem
