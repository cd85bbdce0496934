"""Find the norms a package defines: names read from its source, then imported.

Reading the source first (``ast``) finds every class and function whose name looks like a norm
without importing modules that define none; patterns (``fnmatch``, on ``module.Name``) keep or drop
names before anything is imported, so a shard of a large package imports only its own modules.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from normcheck.errors import UsageError
from normcheck.scan.source import definitions

#: What a norm is called: a name that ends in ``RMSNorm``, ``RmsNorm``, ``LayerNorm``, ``rms_norm``, ``layer_norm``,
#: then perhaps ``2d``, ``Gated``, ``1P`` or ``_fn`` (not ``RobertaPreLayerNormModel`` nor ``...LayerNormConvLayer``).
NAME_PATTERN = r"(?i)(rms|layer)_?norm(\d?d|_?gated|1p|_fn)?$"


#: Every ``class Name`` and ``def name`` in a source text, at any depth (what the syntax tree then confirms).
_DEFINED = re.compile(r"^[ \t]*(?:class|def)[ \t]+(\w+)", re.MULTILINE)


@dataclass(frozen=True)
class Found:
    """A class or function named like a norm: its spec (``module:Name``) and the object (None: see ``problem``)."""

    spec: str
    obj: object = None
    problem: str | None = None

    @property
    def dotted(self) -> str:
        """``module.Name``, which ``--include`` and ``--exclude`` patterns match."""
        return self.spec.replace(":", ".")


@dataclass(frozen=True)
class Unimportable:
    """A module whose norms could not be looked at, and why (one line)."""

    module: str
    reason: str


@dataclass
class Discovery:
    """What a scan found in ``package`` (its version, if it states one)."""

    package: str
    version: str | None
    found: list[Found] = field(default_factory=list)
    unimportable: list[Unimportable] = field(default_factory=list)


def discover(
    target: str, include: Sequence[str] = (), exclude: Sequence[str] = (), names: str = NAME_PATTERN
) -> Discovery:
    """Every class and function defined in ``target`` (a package or module name, with its submodules) whose
    name matches ``names``, kept by ``include`` (any of them; none: all) and not dropped by ``exclude``."""
    try:
        pattern = re.compile(names)
    except re.error as exc:
        raise UsageError(f"--names {names!r} is not a regular expression: {exc}") from None
    root = _import(target)
    if isinstance(root, Exception):
        raise UsageError(f"cannot import {target!r} to scan it: {_one_line(root)}")
    version = getattr(root, "__version__", None)
    result = Discovery(package=target, version=str(version) if version is not None else None)
    for module, path in _modules(root, target):
        try:
            defined = _names_in(path, pattern)
        except (OSError, SyntaxError, ValueError) as exc:
            result.unimportable.append(Unimportable(module, f"cannot read {path.name}: {_one_line(exc)}"))
            continue
        wanted = [n for n in defined if _kept(f"{module}.{n}", include, exclude)]
        if not wanted:
            continue
        imported = _import(module)
        if isinstance(imported, Exception):
            result.unimportable.append(Unimportable(module, _one_line(imported)))
            continue
        for name in wanted:
            obj = vars(imported).get(name)
            if obj is None:
                result.found.append(Found(f"{module}:{name}", problem="not defined on import (a branch not taken)"))
            elif getattr(obj, "__module__", module) == module:  # (else a later import replaced it: not ours)
                result.found.append(Found(f"{module}:{name}", obj))
    return result


def _kept(dotted: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not any(fnmatchcase(dotted, p) for p in include):
        return False
    return not any(fnmatchcase(dotted, p) for p in exclude)


def _modules(root: object, name: str) -> Iterator[tuple[str, Path]]:
    """``(module name, source file)`` for ``root`` and, for a package, every module under it, sorted."""
    file = getattr(root, "__file__", None)
    paths = list(getattr(root, "__path__", ()))
    if not paths:
        if file and file.endswith(".py"):
            yield name, Path(file)
        return
    seen: set[str] = set()
    for folder in map(Path, paths):
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if not all(part.isidentifier() for part in parts):
                continue  # not importable by name (a folder of data or scripts)
            module = ".".join([name, *parts])
            if module not in seen:
                seen.add(module)
                yield module, path


def _names_in(path: Path, pattern: re.Pattern[str]) -> list[str]:
    """The classes and functions a module defines at its top level (in ``if`` and ``try`` too), named like norms."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        if not any(pattern.search(name) for name in _DEFINED.findall(fh.read())):
            return []  # (without parsing it: most modules of a large package define no norm)
    return [name for name in definitions(str(path)) if "." not in name and pattern.search(name)]


def _import(module: str) -> object:
    """The module, or the exception importing it raised; what it prints and logs while importing is dropped."""
    sink = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except Exception as exc:  # the package's own import failing is a fact about it, stated
        return exc
    finally:
        logging.disable(previous)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
