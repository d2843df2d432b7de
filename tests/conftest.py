"""Shared test helpers: the CLI runner and the location of the read-only shared data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = REPO_ROOT / "scenarios"


def shared_data_dir() -> Path | None:
    """``../shared/data`` next to the repository (or $PRIVTUNER_SHARED_DATA), if present."""
    env = os.environ.get("PRIVTUNER_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("shared data folder (../shared/data) not available")
    return d


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m privtuner ARGS`` in a subprocess and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "privtuner", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO_ROOT,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli():
    """The CLI runner: ``cli("validate", path)`` -> CompletedProcess."""
    return run_cli
