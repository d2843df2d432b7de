"""A wheel built from the repository and installed elsewhere runs on its own package data.

The wheel is built (offline: ``--no-build-isolation``, this environment's setuptools) from a
copy of what it is made of (``pyproject.toml``, ``README.md``, ``privtuner/``), installed with
``--no-deps`` into a fresh venv whose core dependencies come from this interpreter's
site-packages (a ``.pth`` line: a plain path, so this environment's own, possibly editable,
privtuner is not imported). From a folder outside the checkout, with no ``PYTHONPATH``, the
installed ``privtuner`` solves the bundled default scenario and runs ``reproduce --quick`` on
the bundled sweeps (one method: the sweeps are what is checked, not the methods).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _clean_env() -> dict[str, str]:
    """This environment without anything that points Python at the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the fresh venv's python, the folder to run in): the wheel installed, nothing else."""
    import setuptools  # the build backend, offline (the dev extra pins >= 77.0.3)

    major, minor = (int(v) for v in setuptools.__version__.split(".")[:2])
    assert (major, minor) >= (77, 0), f"setuptools {setuptools.__version__} < 77.0.3"
    root = tmp_path_factory.mktemp("packaging")
    env = _clean_env()
    src = root / "src"
    shutil.copytree(
        REPO / "privtuner", src / "privtuner", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(dist)], root, env)
    (wheel,) = dist.glob("privtuner-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, env)
    py = venv / "bin" / "python"
    site = _run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, env
    )
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site.stdout.strip(), "_privtuner_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run([*pip, "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)], root, env)
    work = root / "elsewhere"
    work.mkdir()
    return py, work


def test_installed_wheel_is_the_package_in_use(installed: tuple[Path, Path]) -> None:
    py, work = installed
    code = (
        "import privtuner, importlib.resources as r; print(privtuner.__file__); "
        "print(r.files('privtuner.scenario') / 'bundled' / 'default.yaml'); "
        "print(r.files('privtuner.costmodels') / 'data' / 'ckks_default.json')"
    )
    out = _run([str(py), "-c", code], work, _clean_env()).stdout.split()
    venv = py.parent.parent
    assert all(Path(p).is_relative_to(venv) and Path(p).is_file() for p in out), out


def test_installed_wheel_solves_the_bundled_default(installed: tuple[Path, Path]) -> None:
    py, work = installed
    default = _run(
        [
            str(py),
            "-c",
            "import importlib.resources as r; "
            "print(r.files('privtuner.scenario') / 'bundled' / 'default.yaml')",
        ],
        work,
        _clean_env(),
    ).stdout.strip()
    script = py.parent / "privtuner"
    _run(
        [str(script), "solve", default, "--out", "result.json", "--csv", "allocation.csv"],
        work,
        _clean_env(),
    )
    result = json.loads((work / "result.json").read_text())
    assert result["status"] in ("optimal", "feasible")
    with (work / "allocation.csv").open(newline="") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    assert len(rows) == result["n_devices"] > 0


def test_installed_wheel_reproduces_from_the_bundled_sweeps(installed: tuple[Path, Path]) -> None:
    py, work = installed
    out = work / "repro"
    cmd = [str(py), "-m", "privtuner", "reproduce", "--quick", "--out", str(out)]
    _run([*cmd, "--methods", "ao", "--jobs", "1", "--no-progress"], work, _clean_env())
    with (out / "results.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    sources = {r["source"] for r in rows}
    bundled = [Path(p).stem for p in (REPO / "privtuner/scenario/bundled/reproduce").glob("*.yaml")]
    assert bundled and all(any(f"bundled/reproduce/{b}" in s for s in sources) for b in bundled)
    assert {r["status"] for r in rows} <= {"optimal", "feasible", "infeasible"}
    assert list((out / "figures").glob("*.png"))
