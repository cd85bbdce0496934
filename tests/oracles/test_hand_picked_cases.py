"""Hand-picked cases whose exact answers are known in closed form."""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import mpmath
import numpy as np
import pytest

import oracles
from oracles import RootSum


def f16(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float16)


def test_exact_ties_round_to_even_through_a_nontrivial_eps():
    # n = 1: mean(x^2) + eps = 0.5625 + 0.4375 = 1, so y = 0.75 * w exactly.
    x, w = f16(0.75), f16(1 + 2**-10)
    exact = oracles.rms_norm(x, w, eps=0.4375)
    y = 0.75 + 1.5 * 2**-11  # a float16 midpoint (spacing 2**-11 in [0.5, 1))
    assert exact.element(0).exact_value() == Fraction(y)
    assert exact.round("float16")[0] == np.float16(0.75 + 2**-10)  # the even neighbour
    assert exact.round("float32")[0] == np.float32(y)


@pytest.mark.parametrize("w, expected", [(1 + 2**-11, 1.0), (1 + 3 * 2**-11, 1 + 2**-9)])
def test_ties_on_a_perfect_square_mean_square(w, expected):
    x = f16(1, -1, 1, -1)  # mean(x^2) = 1
    weight = np.full(4, w, dtype=np.float32)
    assert oracles.rms_norm(x, weight, eps=0.0).round("float16")[0] == expected


def test_layer_norm_ties_with_a_bias():
    x = f16(0, 2)  # mean 1, variance 1: xhat = (-1, 1)
    w = np.array([1, 1], dtype=np.float32)
    b = np.array([2**-11, 2**-11], dtype=np.float32)
    y = oracles.layer_norm(x, w, b, eps=0.0).round("float16")
    # -1 + 2**-11 is a float16 (spacing 2**-11 below 1); 1 + 2**-11 is a tie, going to 1.
    assert y.tolist() == [-1 + 2**-11, 1.0]


@pytest.mark.parametrize(
    "w, expected",
    [
        (2.0**-20, 2.0**-20),  # a float16 subnormal, exact
        (3 * 2.0**-26, 2.0**-24),  # 0.75 of the smallest subnormal rounds up
        (2.0**-25, 0.0),  # half the smallest subnormal ties to zero
        (65519.0, 65504.0),
        (65520.0, math.inf),  # the overflow threshold ties to infinity
    ],
)
def test_subnormal_and_overflowing_outputs(w, expected):
    x = f16(1, 1, 1, 1)
    weight = np.full(4, w, dtype=np.float32)
    assert oracles.rms_norm(x, weight, eps=0.0).round("float16")[0] == expected


def test_single_element_rows_normalise_to_plus_or_minus_one():
    x = np.array([[3.0], [-2.5], [1e-30]], dtype=np.float32)
    assert oracles.rms_norm(x, eps=0.0).round("float32").ravel().tolist() == [1.0, -1.0, 1.0]
    assert oracles.layer_norm(x, eps=1e-5).round("float32").ravel().tolist() == [0.0, 0.0, 0.0]


def test_constant_rows_give_zero_in_layer_norm_and_a_known_value_in_rms_norm():
    x = np.full((1, 8), 3.0, dtype=np.float32)
    assert (oracles.layer_norm(x, eps=1e-5).round("float32") == 0).all()
    y = oracles.rms_norm(x, eps=0.0).round("float64")
    assert (y == 1.0).all()


def test_zero_rows_with_eps_zero_are_undefined_and_nan():
    x = np.zeros((2, 4), dtype=np.float32)
    x[1] = [1, 2, 3, 4]
    for exact in (oracles.rms_norm(x, eps=0.0), oracles.layer_norm(x, eps=0.0)):
        y = exact.round("float32")
        assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
        assert exact.undefined[0].all() and not exact.undefined[1].any()
    # With eps > 0 a zero row is a well-defined zero.
    assert (oracles.rms_norm(x, eps=1e-6).round("float32")[0] == 0).all()


def test_non_finite_inputs_give_nan_where_they_reach_and_never_raise():
    x = np.array([[1.0, np.inf, 2.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    w = np.array([1.0, 1.0, np.nan], dtype=np.float32)
    y = oracles.rms_norm(x, w).round("float32")
    assert np.isnan(y[0]).all()
    assert np.isfinite(y[1, :2]).all() and np.isnan(y[1, 2])
    dx, dw = oracles.rms_norm_backward(x, np.ones_like(x), w)
    assert np.isnan(dx.round("float32")).all()  # every dx depends on every weight
    assert np.isnan(dw.round("float32")).all()  # every dw depends on every row of x


@pytest.mark.parametrize("kind", ["rms_norm", "layer_norm"])
def test_a_non_finite_parameter_leaves_the_exact_path_of_the_other_channels_intact(kind):
    # 2**-1060 scaled by the row's 2**-2 flushes to zero, so that row takes the exact path.
    x = np.array([[1.0, 2.0**-1060, 3.0]])
    finite, infinite = np.array([1.0, 2.0, 5.0]), np.array([1.0, 2.0, np.inf])
    fn = getattr(oracles, kind)
    for args in ((infinite,), (finite, infinite)) if kind == "layer_norm" else ((infinite,),):
        y = fn(x, *args, eps=0.0).round("float64")
        expected = fn(x, *(finite,) * len(args), eps=0.0).round("float64")
        np.testing.assert_array_equal(y[0, :2], expected[0, :2])
        assert np.isnan(y[0, 2])


def test_rational_sums_of_square_roots_are_recognised_exactly():
    # sqrt(2) - sqrt(8)/2 = 0: irrational terms that cancel exactly.
    s = RootSum(((Fraction(1), Fraction(1, 2)), (Fraction(-1, 2), Fraction(1, 8))), Fraction(3, 2**12))
    assert s.exact_value() == Fraction(3, 2**12)
    assert s.refine(lambda lo, hi: lo if lo == hi else None, 8) == Fraction(3, 2**12)
    assert RootSum(((Fraction(1), Fraction(2)),)).exact_value() is None


def test_grad_weight_terms_that_cancel_across_rows_leave_the_exact_remainder():
    # Rows 0 and 1 contribute +1 and -1 exactly.
    x = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 0.0]], dtype=np.float16)
    g = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]], dtype=np.float16)
    _, dw = oracles.rms_norm_backward(x, g, np.ones(2, np.float16), eps=0.0)
    # rows 0 and 1 cancel; row 2: x/rms = 2/sqrt(2) = sqrt(2), irrational.
    assert dw.round("float64")[0] == np.float64(math.sqrt(2))


def test_mpmath_values_are_available_at_any_precision():
    exact = oracles.rms_norm(np.array([1.0, 2.0], dtype=np.float32), eps=0.0)
    with mpmath.workprec(300):
        want = 2 / mpmath.sqrt(mpmath.mpf(5) / 2)
        got = exact.mpf(1, prec=250)
        assert abs(got - want) <= abs(want) * mpmath.mpf(2) ** -248
    assert exact.to_mpmath(60).shape == (2,)


def test_bfloat16_inputs_and_outputs_use_ml_dtypes():
    x = np.array([1, 2, 3], dtype=ml_dtypes.bfloat16)
    y = oracles.rms_norm(x).round("bfloat16")
    assert y.dtype == ml_dtypes.bfloat16


def test_results_keep_leading_dimensions_and_reduce_gradients_over_all_of_them():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    g = rng.standard_normal((2, 3, 5)).astype(np.float32)
    w = rng.standard_normal(5).astype(np.float32)
    assert oracles.layer_norm(x, w, w).shape == (2, 3, 5)
    dx, dw, db = oracles.layer_norm_backward(x, g, w, w)
    assert dx.shape == (2, 3, 5) and dw.shape == (5,) and db.shape == (5,)
    assert np.array_equal(db.round("float64"), g.astype(np.float64).sum(axis=(0, 1)))


def test_ulp_error_of_nan_and_infinite_candidates_is_nan():
    exact = oracles.rms_norm(np.array([1.0, 2.0], np.float32))
    err = exact.ulp_error(np.array([np.nan, np.inf], np.float32))
    assert np.isnan(err).all()


def test_the_correct_rounding_scores_at_most_half_an_ulp_and_its_neighbours_at_least_half():
    # The score of the correct rounding itself is clipped to 0.5 (it is proven correct); its neighbours'
    # scores are not, so a wrong rounding shows up as a neighbour closer than half an ulp.
    rng = np.random.default_rng(1)
    exact = oracles.layer_norm(rng.standard_normal((4, 33)).astype(np.float16))
    for fmt in oracles.FORMATS:
        rounded = exact.round(fmt)
        assert np.nanmax(exact.ulp_error(rounded)) <= 0.5
        wide = rounded.astype(np.float64)
        for direction in (np.inf, -np.inf):
            neighbour = np.array(
                [np.nextafter(fmt.dtype.type(v), fmt.dtype.type(direction)) for v in rounded.ravel()], fmt.dtype
            ).reshape(rounded.shape)
            assert not np.array_equal(neighbour.astype(np.float64), wide)
            assert np.nanmin(exact.ulp_error(neighbour)) >= 0.5, fmt.name


def test_ulp_errors_beyond_the_float64_range_are_infinite_not_an_exception():
    # exact y = 2**-1074-ish in float64 units; the candidate 1.0 is about 2**1100 ulps away.
    x = np.array([2.0**-1000, 0.0])
    exact = oracles.rms_norm(x, np.array([2.0**-60, 1.0]), eps=1.0)
    err = exact.ulp_error(np.array([1.0, 0.0]), "float64")
    assert err[0] == np.inf and err[1] == 0.0


def test_exceeds_decides_a_distance_equal_to_the_allowed_error_exactly():
    exact = oracles.rms_norm(np.array([1.0, 1.0]), eps=0.0)  # y = [1, 1] exactly
    candidate = np.array([1.5, 0.5])
    assert exact.exceeds(candidate, 0.5).tolist() == [False, False]  # |c - y| = 0.5 is not more than 0.5
    assert exact.exceeds(candidate, np.nextafter(0.5, 0.0)).tolist() == [True, True]
    # An irrational y, an allowed error within 2**-70 of |c - y|: decided by enclosing y more tightly.
    y = oracles.rms_norm(np.array([1.0, 2.0]), eps=0.0)  # [sqrt(2/5), 2 sqrt(2/5)]
    c = np.array([1.0, 1.0])
    gap = float(abs(mpmath.mpf(1) - y.mpf(0, prec=200)))
    assert y.exceeds(c, np.array([gap * (1 - 2.0**-52), 0.0]))[0]
    assert not y.exceeds(c, np.array([gap * (1 + 2.0**-52), 0.0]))[0]
