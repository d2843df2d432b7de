"""Paired-seed summary of accuracy studies: does a CKKS set lose accuracy beyond the spread of
fine-tuning itself?

Reads two or more ``accuracy.json`` files (or the folders holding them) of ``privtuner
accuracy`` studies that differ only in ``--seed`` and prints JSON
(:func:`privtuner.accuracy.report.paired_seed_summary`): per run and epoch the differences
``run - plain`` [points] per seed, their mean, standard deviation, standard error and 95 %
Student-t interval, and the plaintext accuracy's spread over the seeds; the plaintext accuracy
under the LoRA paper's protocol (each seed's best epoch on the dev set, median over seeds:
optimistic) and, where the studies held training sentences out (``--holdout``), of the epoch
chosen on those.

    .venv/bin/python benchmarks/accuracy_seeds.py out/seed0 out/seed1 out/seed2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("studies", nargs="+", help="accuracy.json files or their folders")
    args = ap.parse_args(argv)

    from privtuner.accuracy.report import paired_seed_summary

    studies = []
    for s in args.studies:
        path = Path(s) / "accuracy.json" if Path(s).is_dir() else Path(s)
        try:
            studies.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            print(f"error: cannot read {path}: {exc}", file=sys.stderr)
            return 2
    try:
        out = paired_seed_summary(studies)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out["studies"] = [str(s) for s in args.studies]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
