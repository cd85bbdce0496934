"""Source files read and parsed once per scan: discovery reads the names a module defines, fingerprints
the definitions' code (``inspect.getsource`` would parse a whole file again for every class)."""

from __future__ import annotations

import ast
import functools
import textwrap

Definition = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


@functools.cache
def definitions(file: str) -> dict[str, str]:
    """The source of each class and function ``file`` defines (at its top level, in ``if`` and ``try`` blocks
    and nested in classes), dedented, by qualified name; only the text is kept, not the syntax tree.
    OSError, SyntaxError or ValueError when the file cannot be read or parsed."""
    with open(file, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    lines = text.splitlines(keepends=True)
    found: dict[str, str] = {}
    stack: list[tuple[str, list[ast.stmt]]] = [("", ast.parse(text, filename=file).body)]
    while stack:
        prefix, body = stack.pop()
        for node in _walk(body):
            if isinstance(node, Definition):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                found.setdefault(prefix + node.name, textwrap.dedent("".join(lines[first - 1 : node.end_lineno])))
                if isinstance(node, ast.ClassDef):
                    stack.append((f"{prefix}{node.name}.", node.body))
    return found


def _walk(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements of ``body``, with those inside its ``if`` and ``try`` blocks in their place."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If | ast.Try):
            for block in (node.body, node.orelse, getattr(node, "finalbody", [])):
                out += _walk(block)
            for handler in getattr(node, "handlers", []):
                out += _walk(handler.body)
    return out
