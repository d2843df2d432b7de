"""Small numpy helpers shared by the data types of every layer: read-only arrays, JSON-safe
values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def readonly(a: ArrayLike, dtype: Any = float) -> NDArray[Any]:
    """A read-only copy of ``a`` as an array of ``dtype`` (frozen dataclasses hold these, so
    nobody changes a problem, an instance or a cost table in place)."""
    arr = np.array(a, dtype=dtype)
    arr.setflags(write=False)
    return arr


def json_safe(x: Any) -> Any:
    """``x`` with numpy scalars and arrays as Python numbers and lists (recursively through
    dicts, lists and tuples) and non-finite floats as None, ready for strict JSON."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return [json_safe(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        return json_safe(x.item())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x
