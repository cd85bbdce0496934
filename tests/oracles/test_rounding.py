from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oracles import BFLOAT16, FLOAT16, FLOAT32, FLOAT64, FORMATS, FloatFormat, round_floats, round_rational
from oracles.rounding import floor_log2, round_bounded

finite_doubles = st.floats(allow_nan=False, allow_infinity=False)


@given(finite_doubles)
def test_rational_rounding_agrees_with_the_hardware_conversions(v):
    # numpy's float64 -> float16 / float32 conversions are correctly rounded (IEEE 754).
    q = Fraction(v)
    assert round_rational(q, FLOAT64) == v
    with np.errstate(over="ignore"):
        assert round_rational(q, FLOAT32) == float(np.float32(v))
        assert round_rational(q, FLOAT16) == float(np.float16(v))


@pytest.mark.parametrize(
    "fmt, value, expected",
    [
        (FLOAT16, Fraction(2049), 2048.0),  # tie, even neighbour below
        (FLOAT16, Fraction(2051), 2052.0),  # tie, even neighbour above
        (FLOAT16, Fraction(2049) + Fraction(1, 2**40), 2050.0),  # just above the tie
        (FLOAT16, Fraction(1, 2**25), 0.0),  # half the smallest subnormal: tie to zero
        (FLOAT16, Fraction(3, 2**26), 2.0**-24),  # rounds up to the smallest subnormal
        (FLOAT16, Fraction(65519), 65504.0),
        (FLOAT16, Fraction(65520), math.inf),  # overflow threshold is a tie that goes to inf
        (FLOAT16, Fraction(-65520), -math.inf),
        (BFLOAT16, Fraction(257), 256.0),
        (FLOAT32, Fraction(1, 2**150), 0.0),
        (FLOAT32, Fraction(3, 2**151), 2.0**-149),
    ],
)
def test_rational_rounding_handles_ties_subnormals_and_overflow(fmt, value, expected):
    assert round_rational(value, fmt) == expected


def test_bfloat16_rounding_rounds_once_just_above_a_tie():
    # 1 + 2**-8 + 2**-30 is a float64 just above the bfloat16 tie between 1 and 1 + 2**-7; through
    # float32 (ml_dtypes' cast up to 0.6) it would land on the tie and go to even, 1.
    value = 1 + Fraction(1, 2**8) + Fraction(1, 2**30)
    assert round_rational(value, BFLOAT16) == 1 + 2.0**-7
    assert float(round_floats([float(value)], BFLOAT16)[0]) == 1 + 2.0**-7


def _near_ties(fmt: FloatFormat) -> st.SearchStrategy[float]:
    """Float64 values at, just below and just above the midpoints between neighbours of ``fmt``."""
    p = fmt.precision

    def build(m: int, e: int, sign: int, nudge: int) -> float:
        tie = (2 * m + 1) * 2.0 ** (e - p)  # halfway between m * 2**(e - p + 1) and the next value
        return sign * float(np.nextafter(tie, math.inf * nudge)) if nudge else sign * tie

    lowest = fmt.emin - p + 1
    return st.builds(
        build,
        st.integers(0, 2**p - 1),
        st.integers(lowest, min(fmt.emax - p + 1, 1000)),
        st.sampled_from((-1, 1)),
        st.sampled_from((-1, 0, 1)),
    )


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@given(data=st.data())
def test_float_rounding_is_correct_in_every_format_whatever_ml_dtypes_does(fmt, data):
    # normcheck rounds float64 values into a narrower format (inputs, parameters) with round_floats, not
    # with ml_dtypes' float64 -> bfloat16 cast, whose rounding changed between versions.
    v = data.draw(st.one_of(finite_doubles, _near_ties(fmt)))
    with np.errstate(over="ignore"):
        assert float(round_floats([v], fmt)[0]) == round_rational(Fraction(v), fmt)


@given(st.floats(width=32, allow_nan=False, allow_infinity=False) | _near_ties(BFLOAT16).map(np.float32))
def test_ml_dtypes_rounds_float32_to_bfloat16_to_nearest_even(v):
    # What normcheck relies on from ml_dtypes (round_floats, emulated bfloat16 outputs): float32 -> bfloat16
    # rounds correctly, and bfloat16 -> float32 is exact.
    b = np.array([v], dtype=np.float32).astype(ml_dtypes.bfloat16)
    assert float(b[0]) == round_rational(Fraction(float(v)), BFLOAT16)
    assert float(b.astype(np.float32)[0]) == float(b[0])


@given(st.fractions(min_value=Fraction(-(10**6)), max_value=Fraction(10**6)).filter(lambda q: q != 0))
def test_floor_log2_is_exact(q):
    e = floor_log2(q)
    assert Fraction(2) ** e <= abs(q) < Fraction(2) ** (e + 1)


@given(
    st.integers(-(2**80), 2**80).filter(lambda m: m != 0),
    st.integers(-100, 40),
    st.integers(0, 2**20),
    st.sampled_from(FORMATS),
)
def test_bounded_rounding_decides_correctly_wherever_no_rounding_boundary_is_near(m, e, wiggle, fmt):
    exact = Fraction(m) * Fraction(2) ** e
    approx = float(exact)
    # A bound that covers the error of float(exact) (exactly, rounded up) and some more.
    error = float(abs(exact - Fraction(approx))) * (1 + 2.0**-50)
    bound = error + abs(approx) * wiggle * 2.0**-60
    values, decided = round_bounded(np.array([approx]), np.array([bound]), fmt)
    want = round_rational(exact, fmt)
    if decided[0]:
        assert values[0] == want
    # Three times the bound (plus a hair) on either side rounds one way: no boundary is near, so it must decide.
    reach = 3 * Fraction(bound) + abs(Fraction(approx)) * Fraction(1, 2**70) + Fraction(1, 2**1100)
    if round_rational(Fraction(approx) - reach, fmt) == round_rational(Fraction(approx) + reach, fmt):
        assert decided[0], (approx, bound, fmt.name)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_bounded_rounding_decides_a_tight_approximation_in_every_format(fmt):
    # 1 + 2**-60 is not a float64: its float64 approximation 1.0 is within 2**-60, far from any boundary.
    values, decided = round_bounded(np.array([1.0]), np.array([2.0**-60]), fmt)
    assert decided[0] and values[0] == 1.0


def test_bounded_rounding_refuses_to_decide_an_approximation_on_a_midpoint():
    _, decided = round_bounded(np.array([2049.0]), np.array([1e-9]), FLOAT16)
    assert not decided[0]
