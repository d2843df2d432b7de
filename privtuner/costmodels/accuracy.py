"""Measured accuracy loss per CKKS set and packing, for the catalogue filter
``fhe.max_accuracy_loss_points`` (issue 13: the precision floor justified by accuracy).

The source is the ``accuracy.json`` that ``privtuner accuracy --mode simulate`` (or
``--mode encrypted``) writes (:mod:`privtuner.accuracy.report`): its ``runs`` list holds, per
run, ``mode``, ``set_name``, ``packing`` and ``accuracy_loss_points`` = 100 x (dev accuracy of
plaintext LoRA fine-tuning - dev accuracy of the run), the same data, batches and seed. Where a
study holds several runs of one set and packing (simulated and encrypted), the largest loss
counts (the conservative reading).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from privtuner.errors import CostModelError

__all__ = ["load_accuracy_losses"]

#: Largest accuracy study read [bytes] (a study of every set has ~50 runs of a few kB).
MAX_STUDY_BYTES = 50_000_000


def load_accuracy_losses(path: str | Path) -> dict[tuple[str, str], float]:
    """``{(set_name, packing): accuracy loss [points]}`` from an accuracy study's JSON.

    Raises :class:`CostModelError` naming the file and what is wrong (unreadable, not JSON,
    no encrypted or simulated run, a run without a finite ``accuracy_loss_points``).
    """
    p = Path(path)
    try:
        if p.stat().st_size > MAX_STUDY_BYTES:
            raise CostModelError(f"accuracy study {p}: larger than {MAX_STUDY_BYTES} bytes")
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CostModelError(f"accuracy study {p}: cannot read it ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CostModelError(f"accuracy study {p}: not JSON ({exc})") from None
    runs = doc.get("runs") if isinstance(doc, Mapping) else None
    if not isinstance(runs, list):
        raise CostModelError(
            f"accuracy study {p}: no 'runs' list (expected the accuracy.json of "
            "`privtuner accuracy`)"
        )
    losses: dict[tuple[str, str], float] = {}
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping) or run.get("mode") not in ("simulate", "encrypted"):
            continue  # the plaintext reference
        key, loss = _run_loss(run, i, p)
        losses[key] = max(loss, losses.get(key, -math.inf))
    if not losses:
        raise CostModelError(
            f"accuracy study {p}: no simulate or encrypted run (run `privtuner accuracy "
            "--mode simulate` over the catalogue sets)"
        )
    return losses


def _run_loss(run: Mapping[str, Any], i: int, path: Path) -> tuple[tuple[str, str], float]:
    name, packing, loss = run.get("set_name"), run.get("packing"), run.get("accuracy_loss_points")
    if not isinstance(name, str) or not isinstance(packing, str):
        raise CostModelError(f"accuracy study {path}: run {i} lacks set_name or packing")
    if isinstance(loss, bool) or not isinstance(loss, int | float) or not math.isfinite(loss):
        raise CostModelError(
            f"accuracy study {path}: run {i} ({name}, {packing}) has no finite accuracy_loss_points"
        )
    return (name, packing), float(loss)
