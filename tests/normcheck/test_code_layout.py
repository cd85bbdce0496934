"""The shape of normcheck's own code, as docs/architecture.md promises it: modules of at most 400 lines and
classes of about 250, no import cycle among normcheck's modules, no private name imported from another one."""

from __future__ import annotations

import ast
from pathlib import Path

import normcheck

PACKAGE = Path(normcheck.__file__).parent
MODULE_LINES = 400
CLASS_LINES = 260  #: "about 250"


def modules() -> dict[str, tuple[int, ast.Module]]:
    """Every module of normcheck by its dotted name: its number of lines, and its syntax tree."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        source = path.read_text()
        found[name] = (len(source.splitlines()), ast.parse(source, str(path)))
    return found


def imported(tree: ast.Module, *, top_level: bool) -> list[tuple[str, list[str]]]:
    """(module, names) of each ``import``/``from ... import`` of a normcheck module in ``tree``: at its top
    level only (what runs when it is imported; not under ``if TYPE_CHECKING``), or anywhere."""
    nodes = tree.body if top_level else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("normcheck"):
            found.append((node.module or "", [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.startswith("normcheck")]
    return found


def test_no_module_or_class_is_too_long() -> None:
    too_long = []
    for name, (lines, tree) in modules().items():
        if lines > MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > CLASS_LINES:
                too_long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long


def test_no_private_name_is_imported_from_another_module() -> None:
    crossing = [
        f"{name} imports {module}.{n}"
        for name, (_, tree) in modules().items()
        for module, names in imported(tree, top_level=False)
        for n in names
        if n.startswith("_") and module != name
    ]
    assert not crossing, crossing


def test_normcheck_modules_import_each_other_without_a_cycle() -> None:
    trees = modules()
    graph = {
        name: {
            target
            for module, names in imported(tree, top_level=True)
            for target in (module, *(f"{module}.{n}" for n in names))  # (from a package import a module)
            if target in trees and target != name
        }
        for name, (_, tree) in trees.items()
    }
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for module in sorted(graph[name]):
            visit(module, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
