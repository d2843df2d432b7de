"""Small numpy helpers shared by the data types of every layer."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def readonly(a: ArrayLike, dtype: Any = float) -> NDArray[Any]:
    """A read-only copy of ``a`` as an array of ``dtype`` (frozen dataclasses hold these, so
    nobody changes a problem, an instance or a cost table in place)."""
    arr = np.array(a, dtype=dtype)
    arr.setflags(write=False)
    return arr
