"""Shared test configuration: hypothesis profiles and the mpmath global-state guard."""

from __future__ import annotations

import ast
import importlib.util
import os
from functools import cache
from pathlib import Path

import mpmath
import pytest
from hypothesis import HealthCheck, settings


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


# Without a GPU, Triton kernels run in its CPU interpreter. Triton reads this when a kernel is
# defined (`@triton.jit`), so it is set before any test module imports one.
if not _has_cuda():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest_plugins = ["pytester"]
#: A module of the scan's test package that fails to import on purpose (the scan lists it; doctests skip it).
collect_ignore = ["normcheck/targets/scanpkg/broken.py"]

#: Packages the tests use where they are installed (the README installs torch, .ci/run the rest).
OPTIONAL_PACKAGES = ("torch", "triton", "jax", "flax", "transformers")
TESTS = Path(__file__).parent


@cache
def not_collected() -> dict[Path, tuple[str, ...]]:
    """The modules under tests/ that are not test modules (audit targets, the zoo) and import an optional
    package that is missing, with those packages. ``--doctest-modules`` imports every module, so they are
    not collected; test modules skip themselves (``pytest.importorskip``)."""
    out = {}
    for path in sorted(TESTS.rglob("*.py")):
        if path.name.startswith(("test_", "conftest")):
            continue
        tops = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                tops |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.partition(".")[0])
        missing = tuple(p for p in OPTIONAL_PACKAGES if p in tops and importlib.util.find_spec(p) is None)
        if missing:
            out[path] = missing
    return out


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    return True if collection_path in not_collected() else None


def pytest_report_header() -> list[str]:
    return [
        f"not collected: {path.relative_to(TESTS.parent)} (needs {', '.join(missing)}, not installed)"
        for path, missing in not_collected().items()
    ]


settings.register_profile("default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=2000, suppress_health_check=list(HealthCheck))
settings.load_profile("default")


@pytest.fixture(autouse=True)
def mpmath_globals_untouched():
    """Library code must use local precision contexts, never mutate mpmath's globals."""
    before = (mpmath.mp.prec, mpmath.mp.dps)
    yield
    assert (mpmath.mp.prec, mpmath.mp.dps) == before, "mpmath global precision was changed"
