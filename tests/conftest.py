"""Shared test configuration: hypothesis profiles and the mpmath global-state guard."""

from __future__ import annotations

import os

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

settings.register_profile("default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=2000, suppress_health_check=list(HealthCheck))
settings.load_profile("default")


@pytest.fixture(autouse=True)
def mpmath_globals_untouched():
    """Library code must use local precision contexts, never mutate mpmath's globals."""
    before = (mpmath.mp.prec, mpmath.mp.dps)
    yield
    assert (mpmath.mp.prec, mpmath.mp.dps) == before, "mpmath global precision was changed"
