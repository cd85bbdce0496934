"""Shared test configuration: hypothesis profiles and the mpmath global-state guard."""

from __future__ import annotations

import os

# Triton reads this when it is first imported (torch may import it early): set it before anything.
os.environ.setdefault("TRITON_INTERPRET", "1")

import mpmath
import pytest
from hypothesis import HealthCheck, settings

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
