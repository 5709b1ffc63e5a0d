"""The layering of `swallow_train/layers.py`: every import (module level or lazy, inside a
function) goes to the same unit or down; no cycle between units, nor between modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from swallow_train.layers import LAYERS, import_rule, unit_of

PACKAGE = Path(__file__).resolve().parent.parent / "swallow_train"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(module: str, tree: ast.AST) -> Iterator[tuple[str, int]]:
    """(imported swallow_train module, line) of every import statement in `tree`."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:  # `from pkg import module` imports that module
                full = f"{base}.{alias.name}"
                yield (full if full in MODULES else base), node.lineno


@cache
def _edges() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) within swallow_train."""
    out: dict[tuple[str, str, int], None] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        for target, line in _targets(module, tree):
            if target.split(".")[0] == "swallow_train":
                out[module, target, line] = None
    return list(out)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_every_module_is_placed_in_a_layer() -> None:
    unplaced = [str(MODULES[m].relative_to(PACKAGE.parent)) for m in MODULES if unit_of(m) is None]
    assert unplaced == [], (f"{unplaced}: add the package (or module) to LAYERS in "
                            "swallow_train/layers.py, in the layer whose units it imports")


def test_no_import_goes_upward_or_sideways() -> None:
    violations = []
    for module, target, line in _edges():
        source_unit, target_unit = unit_of(module), unit_of(target)
        if source_unit is None or target_unit is None:
            continue  # reported by the test above
        why = import_rule(source_unit, target_unit)
        if why:
            violations.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports "
                              f"{target}: {why}")
    assert violations == [], "\n".join(violations)


def test_units_form_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for module, target, _ in _edges():
        a, b = unit_of(module), unit_of(target)
        if a and b and a != b:
            graph.setdefault(a, set()).add(b)
    assert _cycles(graph) == [], "units that import each other (directly or around a cycle)"


def test_modules_form_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for module, target, _ in _edges():
        # `import swallow_train.x` runs swallow_train/__init__ too; that edge is not a dependency
        if target != module and target != "swallow_train":
            graph.setdefault(module, set()).add(target)
    assert _cycles(graph) == [], "modules that import each other (directly or around a cycle)"


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_rules_reject_what_they_should() -> None:
    """The checker itself: an upward, a sideways and a shared-layer import."""
    assert import_rule("mcore", "stages") and "upward" in import_rule("mcore", "stages")
    assert import_rule("data", "convert") and "sideways" in import_rule("data", "convert")
    assert import_rule("stages", "mcore") is None
    assert import_rule("run", "config") is None  # core units may import each other
    assert unit_of("swallow_train.convert.cli") == "convert.cli"
    assert unit_of("swallow_train.convert.names") == "convert"
    assert unit_of("swallow_train.nowhere") is None
    names = [name for name, _ in LAYERS]
    assert names.index("core") < names.index("data") < names.index("engines") \
        < names.index("stages") < names.index("commands") < names.index("entry")
