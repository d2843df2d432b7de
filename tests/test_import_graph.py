"""The import graph of the ``privtuner`` package, read from the source: no cycles, and the
optimiser's layers (core <- methods <- testing) point one way.

Every ``import`` / ``from ... import`` statement counts, wherever it stands (module level,
inside a function: a lazy import is still a dependency), except under ``if TYPE_CHECKING:``
(never executed). ``from a.b import c`` depends on the module ``a.b.c`` when that is a module
of the package, else on ``a.b``. A package's own submodules reached through its
``__init__`` are ordinary edges (``privtuner.optimizer`` -> ``privtuner.optimizer.methods``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import privtuner

ROOT = Path(privtuner.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, list[str]]]:
    """(imported module, names) of every executable import statement in ``tree``."""
    out: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                keep = len(base) - node.level + (1 if is_package else 0)
                prefix = ".".join(base[:keep])
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            out.append((target, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``privtuner`` modules it imports."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target, names in _imports(tree, name, path.name == "__init__.py"):
            if not (target == "privtuner" or target.startswith("privtuner.")):
                continue
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in mods]
            deps = subs if subs and len(subs) == len(names) else [target, *subs]
            graph[name].update(d for d in deps if d in mods and d != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a closed path, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        path = [root]
        stack = [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_graph_is_read() -> None:
    g = import_graph()
    # a module-level, a lazy (in-function) and a from-package-import edge are all seen
    assert "privtuner.optimizer.core.problem" in g["privtuner.optimizer.core.registry"]
    assert "privtuner.costmodels" in g["privtuner.optimizer.core.problem"]  # lazy, in from_spec
    assert "privtuner.optimizer.methods" in g["privtuner.optimizer"]
    # a TYPE_CHECKING-only import is not an edge
    assert "privtuner.optimizer.core.problem" not in g["privtuner.optimizer.core.model"]


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        (
            "privtuner.optimizer.core",
            ("privtuner.optimizer.methods", "privtuner.optimizer.testing"),
        ),
        ("privtuner.optimizer.methods", ("privtuner.optimizer.testing",)),
    ],
)
def test_optimizer_layers(layer: str, forbidden: tuple[str, ...]) -> None:
    """The core imports no method; methods import the core and ``methods`` only (never the
    package facade, the harness, or anything above the optimiser)."""
    above = ("privtuner.batch", "privtuner.cli", "privtuner.studies", "privtuner.plotting")
    bad = []
    for mod, deps in import_graph().items():
        if mod != layer and not mod.startswith(layer + "."):
            continue
        for d in deps:
            if d == "privtuner.optimizer" or d.startswith(forbidden) or d.startswith(above):
                bad.append(f"{mod} -> {d}")
    assert not bad, bad


#: Modules below the batch, the CLI and the studies: shared schema and helpers, the pipeline,
#: the figures. None of them may import those (plotting is fed rows, it never runs a batch).
SHARED = (
    "privtuner.arrays",
    "privtuner.io",
    "privtuner.rows",
    "privtuner.pipeline",
    "privtuner.plotting",
    "privtuner.scenario",
    "privtuner.system_sim",
    "privtuner.costmodels",
    "privtuner.optimizer",
)


@pytest.mark.parametrize("layer", SHARED)
def test_no_sideways_arrows(layer: str) -> None:
    above = ("privtuner.batch", "privtuner.cli", "privtuner.studies")
    bad = [
        f"{mod} -> {d}"
        for mod, deps in import_graph().items()
        if mod == layer or mod.startswith(layer + ".")
        for d in deps
        if d.startswith(above)
    ]
    assert not bad, bad


def test_helpers_import_nothing_of_the_package() -> None:
    """The leaf helpers (read-only arrays, atomic files and CSV) depend on no privtuner module."""
    g = import_graph()
    assert g["privtuner.arrays"] == set()
    assert g["privtuner.io"] == set()
