"""The compiled fast paths: double words for float64 inputs, and the same bits on any number of threads."""

from __future__ import annotations

import math

import mpmath
import numba
import numpy as np
import pytest
from hypothesis import given

import oracles
from oracles import FLOAT32, FLOAT64, kernels
from oracles.rounding import round_bounded

from . import reference as ref
from .strategies import norm_inputs

#: float64 inputs, with rows longer than the 16 lanes of a double-word sum (and a partial last lane).
FLOAT64_INPUTS = norm_inputs(sizes=(1, 3, 16, 17, 41), dtypes=(np.dtype(np.float64),))


def _check_words(exact: oracles.Exact, expected: tuple[list, list]) -> None:
    """``|approx + low - exact| <= bound`` wherever the double-word bound is finite."""
    assert exact.words is not None, "float64 inputs take the double-word path"
    hi, lo, bound = (a.ravel() for a in exact.words)
    for i, (v, scale) in enumerate(zip(*expected)):
        if mpmath.isfinite(v) and math.isfinite(bound[i]) and not ref.unresolvable(v, scale):
            with mpmath.workprec(ref.PREC):
                err = abs(mpmath.mpf(float(hi[i])) + mpmath.mpf(float(lo[i])) - v)
            assert err <= bound[i], f"element {i}: error {mpmath.nstr(err, 5)} > bound {bound[i]:.3g}"


@given(FLOAT64_INPUTS)
def test_double_word_bounds_hold_for_rms_norm_and_its_gradients(args):
    x, w, g, eps, off = args["x"], args["weight"], args["grad_output"], args["eps"], args["weight_offset"]
    _check_words(oracles.rms_norm(x, w, eps, off), ref.forward("rmsnorm", x, w, None, eps, off))
    dx, dw = oracles.rms_norm_backward(x, g, w, eps, off)
    rdx, rdw, _ = ref.backward("rmsnorm", x, g, w, eps, off)
    _check_words(dx, rdx)
    if dw is not None:
        _check_words(dw, rdw)


@pytest.mark.parametrize("offset", [0, 1])
def test_float64_outputs_of_random_float64_rows_are_decided_without_the_exact_path(offset):
    rng = np.random.default_rng(offset)
    x, g = rng.standard_normal((2, 24, 700))
    w = rng.standard_normal(700)
    dx, dw = oracles.rms_norm_backward(x, g, w, 1e-6, offset)
    for exact in (oracles.rms_norm(x, w, 1e-6, offset), dx, dw):
        hi, lo, bound = exact.words
        _, decided = round_bounded(hi, bound, FLOAT64, lo)
        assert decided.all(), f"{int((~decided).sum())} undecided"


def test_an_element_that_the_row_scaling_flushes_to_zero_leaves_its_row_to_the_exact_path():
    # Scaled by 2**-41, 2**-1060 underflows to 0: a double word 0 with bound 0 would call y exactly 0.
    y = oracles.rms_norm(np.array([2.0**40, 2.0**-1060]), eps=0.0)
    assert y.exceeds(np.zeros(2), 0.0).tolist() == [True, True]


def test_float32_rows_beside_a_float64_weight_take_the_double_words_and_agree_with_float64_rows():
    rng = np.random.default_rng(5)
    x, g = rng.standard_normal((2, 3, 40)).astype(np.float32)
    w = rng.standard_normal(40)
    mixed, wide = oracles.rms_norm_backward(x, g, w), oracles.rms_norm_backward(x.astype(np.float64), g, w)
    for a, b in zip((oracles.rms_norm(x, w), *mixed), (oracles.rms_norm(x.astype(np.float64), w), *wide)):
        assert a.words is not None
        np.testing.assert_array_equal(a.round("float64"), b.round("float64"))


def test_a_double_word_on_a_midpoint_rounds_the_way_its_low_part_says():
    tie = 1 + 2.0**-24  # halfway between the float32 neighbours 1 and 1 + 2**-23
    for low, expected in ((2.0**-80, 1 + 2.0**-23), (-(2.0**-80), 1.0)):
        values, decided = round_bounded(np.array([tie]), np.array([2.0**-90]), FLOAT32, np.array([low]))
        assert decided[0] and values[0] == expected
    _, decided = round_bounded(np.array([tie]), np.array([0.0]), FLOAT32, np.array([0.0]))
    assert not decided[0], "an exact tie is left to the exact path"


def test_below_a_power_of_two_the_nearer_float64_midpoint_counts():
    # 1 - 2**-55: the float64 midpoint below 1 is 1 - 2**-54, at 2**-55 from the value.
    approx, low = np.array([1.0]), np.array([-(2.0**-55)])
    values, decided = round_bounded(approx, np.array([2.0**-56]), FLOAT64, low)
    assert decided[0] and values[0] == 1.0
    _, decided = round_bounded(approx, np.array([2.0**-55 * (1 + 2.0**-30)]), FLOAT64, low)
    assert not decided[0]


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_thread_count_gives_the_same_bits(dtype):
    rng = np.random.default_rng(7)
    rows, n = 37, kernels.PARALLEL_MIN_WORK // 36  # parallel kernels; 37 rows end in a partial chunk of 16
    x, g = rng.standard_normal((2, rows, n)).astype(dtype)
    x[3] = 0.0  # a zero row among the others
    w, b = rng.standard_normal((2, n)).astype(dtype)

    def outputs(threads: int) -> list[np.ndarray]:
        results = [
            oracles.rms_norm(x, w, threads=threads),
            *oracles.rms_norm_backward(x, g, w, threads=threads),
            oracles.layer_norm(x, w, b, threads=threads),
            *oracles.layer_norm_backward(x, g, w, b, threads=threads),
        ]
        out = []
        for exact in results:
            out += [exact.approx, exact.error_bound, exact.round("float32"), *(exact.words or ())]
        return out

    for one, two in zip(outputs(1), outputs(2), strict=True):
        assert one.tobytes() == two.tobytes()


def test_a_thread_count_below_one_is_refused():
    with pytest.raises(ValueError, match="threads must be at least 1"):
        oracles.rms_norm(np.ones((4, 4), np.float32), threads=0)
