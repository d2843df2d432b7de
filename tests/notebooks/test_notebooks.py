"""Every notebook (jupytext percent .py) converts to .ipynb and executes on small settings
(``PRIVTUNER_NOTEBOOK_SMALL=1``) with nbclient, in a temp folder outside the checkout (the
executed .ipynb go there too)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


def test_notebooks_exist() -> None:
    names = {p.stem for p in NOTEBOOKS}
    assert {"quickstart", "tradeoff_study", "profiling_and_fits"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = jupytext.read(path)
    assert nb.cells, "empty notebook"
    monkeypatch.setenv("PRIVTUNER_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("PRIVTUNER_NOTEBOOK_PROFILE", "0")
    client = nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        # run outside the checkout: a notebook finds its data through the package
        # (importlib.resources), never through a path relative to the repository
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    out = tmp_path / f"{path.stem}.ipynb"
    jupytext.write(nb, out)
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    # the notebooks show figures: at least one image output in each
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert images or path.stem == "profiling_and_fits", "no figure displayed"
    assert os.path.getsize(out) > 0
