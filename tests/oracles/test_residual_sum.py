"""The exact residual sum of a fused residual-add: correct rounding into every format, from every format."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from oracles import FORMATS, round_rational

from .strategies import DTYPES


@st.composite
def pairs(draw: st.DrawFn, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays of ``dtype`` whose exponents are far apart, close (cancelling) or at the top of the range."""
    fmt = next(f for f in FORMATS if f.dtype == dtype)
    lo, hi = fmt.emin - fmt.precision + 1, fmt.emax

    def one() -> float:
        e = draw(st.integers(lo, hi))
        m = draw(st.integers(0, 2 ** (fmt.precision - 1) - 1))
        return draw(st.sampled_from([-1.0, 1.0])) * (1 + m / 2.0 ** (fmt.precision - 1)) * 2.0**e

    a = [one() for _ in range(4)]
    b = [draw(st.sampled_from([one(), -a[i], -a[i] * (1 + 2.0**-3)])) for i in range(4)]
    with np.errstate(over="ignore"):
        return np.array(a).astype(dtype), np.array(b).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_rounds_the_exact_sum_correctly_into_every_format(dtype, data):
    a, b = data.draw(pairs(np.dtype(dtype)))
    finite = np.isfinite(a.astype(np.float64)) & np.isfinite(b.astype(np.float64))
    total = oracles.residual_sum(a, b)
    for fmt in FORMATS:
        got = total.round(fmt).astype(np.float64)
        for i in np.flatnonzero(finite):
            exact = Fraction(float(a[i])) + Fraction(float(b[i]))
            assert got[i] == round_rational(exact, fmt), (a[i], b[i], fmt.name)
        assert np.all(total.undefined == ~finite)


def test_a_float64_sum_past_the_largest_double_rounds_to_infinity():
    big = np.finfo(np.float64).max
    total = oracles.residual_sum(np.array([big, -big]), np.array([big / 2, -big / 2]))
    assert total.round("float64").tolist() == [np.inf, -np.inf]
    assert total.round("float32").tolist() == [np.inf, -np.inf]


def test_a_sum_float64_cannot_hold_is_rounded_from_its_exact_value():
    """1 + 2**-24 is a float32 tie; the 2**-80 beside it, lost in float64, decides the rounding."""
    total = oracles.residual_sum(np.array([1 + 2.0**-24, 1 + 2.0**-24]), np.array([2.0**-80, -(2.0**-80)]))
    assert total.round("float32").tolist() == [1 + 2.0**-23, 1.0]
