"""What the packing does to the optimum: the default scenario solved by ``exact`` per packing.

For each catalogue restriction (all ring degrees, N = 16384 only, N = 32768 only) and each
packing (``interleaved``, the default, and ``column``, the PrivTuner-style baseline): the
optimal objective, total energy (and its transmit share), the chosen sets' mean security and
the status, same scenario seed. With full ciphertexts (interleaved) the bytes per value no
longer grow with N, so security costs less energy: the ratios say how much. With
``--rescale server device`` each packing is also solved with the protocol option
``fhe.rescale: device`` (the server returns unrescaled products).

    .venv/bin/python benchmarks/bench_packing_energy.py [--scenario scenarios/default.yaml]
        [--rescale server device]

Prints JSON. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

PACKINGS = ("interleaved", "column")
CATALOGUES: dict[str, list[int] | None] = {"all": None, "N16384": [16384], "N32768": [32768]}


def solve_one(
    path: str, packing: str, degrees: list[int] | None, seed: int, rescale: str = "server"
) -> dict[str, Any]:
    import numpy as np

    from privtuner import AllocationProblem, load_scenario, solve

    overrides: dict[str, Any] = {"fhe.packing": packing, "fhe.rescale": rescale}
    if degrees is not None:
        overrides["fhe.ring_degrees"] = degrees
    spec = load_scenario(path).with_overrides(overrides)
    problem = AllocationProblem.from_spec(spec, seed=seed)
    res = solve(problem, "exact")
    row: dict[str, Any] = {"status": res.status, "gap": res.gap, "objective": res.objective}
    if res.has_allocation:
        row.update(
            total_energy_j=float(res.total_energy_j),
            transmit_energy_j=float(np.sum(res.energy_tx_j)),
            device_compute_energy_j=float(np.sum(res.energy_compute_j)),
            server_energy_j=float(np.sum(res.energy_server_j)),
            server_cycles_per_round=float(np.sum(problem.costs.server_cycles[res.sets])),
            mean_security_bits=float(np.mean(res.security_bits)),
            chosen_sets=dict(Counter(res.set_names)),
        )
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="scenarios/default.yaml")
    ap.add_argument("--seed", type=int, default=None, help="default: the scenario's seed")
    ap.add_argument(
        "--rescale",
        nargs="+",
        default=["server"],
        choices=("server", "device", "choose"),
        help="who rescales the products (fhe.rescale; choose: the optimiser picks per "
        "device); each is solved",
    )
    args = ap.parse_args(argv)
    from privtuner import load_scenario

    seed = load_scenario(args.scenario).seed if args.seed is None else args.seed
    out: dict[str, Any] = {"scenario": args.scenario, "seed": seed, "results": {}}
    for cat, degrees in CATALOGUES.items():
        rows = {p: solve_one(args.scenario, p, degrees, seed) for p in PACKINGS}
        il, col = rows["interleaved"], rows["column"]
        if "total_energy_j" in il and "total_energy_j" in col:
            rows["column_over_interleaved_energy"] = col["total_energy_j"] / il["total_energy_j"]
        for r in args.rescale:
            if r == "server":
                continue
            for p in PACKINGS:
                dev = rows[f"{p}+rescale={r}"] = solve_one(args.scenario, p, degrees, seed, r)
                if "total_energy_j" in dev and "total_energy_j" in rows[p]:
                    dev["energy_over_server_rescale"] = (
                        dev["total_energy_j"] / rows[p]["total_energy_j"]
                    )
        out["results"][cat] = rows
    print(json.dumps(out, indent=2, default=str))
    return out


if __name__ == "__main__":
    main()
