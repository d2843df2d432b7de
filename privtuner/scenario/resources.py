"""Scenarios shipped inside the package (``privtuner/scenario/bundled/``), read through
:mod:`importlib.resources`, so they work from an installed wheel as from a checkout.

* ``default``: the specification's default scenario (``scenarios/default.yaml`` in the
  repository is a link to it);
* ``reproduce/*``: the sweep set of ``privtuner reproduce``.

A bundled scenario is named by its path below ``bundled/`` without the suffix
(``"default"``, ``"reproduce/bandwidth"``). Bundled files state no relative paths (no devices
CSV, the shipped cost model), so they need no folder on disk.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

from privtuner.errors import ScenarioError
from privtuner.scenario.loader import parse_yaml_text, validate_data
from privtuner.scenario.schema import ScenarioSpec

#: Suffix of a bundled scenario file.
SUFFIX = ".yaml"


def _root() -> Traversable:
    return resources.files("privtuner.scenario").joinpath("bundled")


def bundled_source(name: str) -> str:
    """The label of a bundled scenario in messages and in a batch row's ``source`` column."""
    return f"privtuner.scenario:bundled/{name}{SUFFIX}"


def bundled_names(folder: str = "") -> list[str]:
    """Names of the bundled scenarios directly in ``folder`` (``""``: the top), sorted."""
    node = _root()
    for part in [p for p in folder.split("/") if p]:
        node = node.joinpath(part)
    if not node.is_dir():
        raise ScenarioError([f"no bundled scenario folder {folder!r}"])
    prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
    return sorted(
        prefix + e.name[: -len(SUFFIX)]
        for e in node.iterdir()
        if e.is_file() and e.name.endswith(SUFFIX)
    )


def bundled_text(name: str = "default") -> str:
    """The YAML text of bundled scenario ``name``."""
    node = _root()
    parts = [p for p in name.split("/") if p]
    for part in parts[:-1]:
        node = node.joinpath(part)
    node = node.joinpath((parts[-1] if parts else "") + SUFFIX)
    if not node.is_file():
        raise ScenarioError([f"no bundled scenario {name!r}"])
    return node.read_text(encoding="utf-8")


def load_bundled(name: str = "default") -> ScenarioSpec:
    """Load and validate bundled scenario ``name`` (default: the default scenario)."""
    source = bundled_source(name)
    return validate_data(parse_yaml_text(bundled_text(name), source), source, None)
