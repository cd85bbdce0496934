"""What makes two norms the same implementation: their code, with names, docstrings, comments and type
annotations set aside.

A class's fingerprint covers every class it inherits from in the scanned package, the helpers of that
package its code names (functions and classes, followed one name at a time) and the values of the module
constants it names; what it inherits from elsewhere (``torch.nn.Module``, ``torch.nn.LayerNorm``) counts by
name and that package's version.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import sys

from normcheck.scan.source import definitions


def fingerprint(obj: object) -> str:
    """A short hash that two objects share when their code is the same up to names, docstrings and comments."""
    package = _package(obj)
    parts: list[str] = []
    seen: set[int] = set()
    pending = [obj]
    while pending:
        item = pending.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        chain = [k for k in item.__mro__ if k is not object] if inspect.isclass(item) else [item]
        for part in chain:
            if _package(part) != package:
                parts.append(_external(part))
                continue
            seen.add(id(part))
            text, named = _normalized(part)
            parts.append(text)
            scope = getattr(sys.modules.get(getattr(part, "__module__", "")), "__dict__", {})
            values = [(n, scope[n]) for n in named if n in scope]
            pending += [value for _n, value in values if _is_helper(value, package)]
            parts += [f"{n} = {value!r}" for n, value in values if _is_constant(value)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _package(obj: object) -> str:
    return (getattr(obj, "__module__", None) or "").partition(".")[0]


def _is_helper(value: object, package: str) -> bool:
    return (inspect.isfunction(value) or inspect.isclass(value)) and _package(value) == package


def _is_constant(value: object) -> bool:
    """A module-level number, string or flag (``EPS = 1e-6``): its value is part of the code that names it."""
    if isinstance(value, tuple):
        return all(map(_is_constant, value))
    return value is None or isinstance(value, bool | int | float | complex | str | bytes)


def _external(obj: object) -> str:
    """An object from another package: its name and the version of that package."""
    package = _package(obj)
    version = getattr(sys.modules.get(package), "__version__", "")
    return f"{obj.__module__}.{getattr(obj, '__qualname__', obj)} {package} {version}"


@functools.cache
def _normalized(obj: object) -> tuple[str, list[str]]:
    """``obj``'s code as an AST dump without its name, docstrings and annotations, and the global names it uses."""
    tree = _definition(obj)
    if tree is None:  # no source (built in, generated): only itself is the same as itself
        return f"opaque {getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', id(obj))}", []
    _Anonymize(getattr(obj, "__name__", "")).visit(tree)
    named = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)})
    return ast.dump(tree, include_attributes=False), named


def _definition(obj: object) -> ast.AST | None:
    """The syntax tree of the statement that defines ``obj`` in its source file (None: not found)."""
    try:
        code = definitions(inspect.getsourcefile(obj) or "").get(obj.__qualname__)  # type: ignore[arg-type, attr-defined]
        return ast.parse(code) if code is not None else None
    except (TypeError, AttributeError, OSError, SyntaxError, ValueError):
        return None


class _Anonymize(ast.NodeTransformer):
    """Drop docstrings and annotations; call the object itself ``_`` wherever its code names it."""

    def __init__(self, own: str) -> None:
        self.own = own

    def generic_visit(self, node: ast.AST) -> ast.AST:
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]  # a node with a body
        return super().generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        if node.name == self.own:
            node.name = "_"
        return self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        if node.name == self.own:
            node.name = "_"
        node.returns = None
        return self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.annotation = None
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        node.annotation = ast.Constant(None)  # (kept as a statement: a dataclass's field is one)
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == self.own:
            node.id = "_"
        return node


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
