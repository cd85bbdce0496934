"""One table of bad calls: each is refused with a message naming the argument and the fix."""

from __future__ import annotations

import numpy as np
import pytest

import oracles

X = np.ones((2, 4), dtype=np.float32)
W = np.ones(4, dtype=np.float32)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: oracles.rms_norm(X, eps=-1e-6), ValueError, r"eps must be a finite float >= 0, got eps=-1e-06"),
        (lambda: oracles.rms_norm(X, eps=float("nan")), ValueError, r"eps=nan"),
        (lambda: oracles.layer_norm(X, eps="1e-5"), ValueError, r"eps='1e-5'"),
        (lambda: oracles.rms_norm(X, weight_offset=2), ValueError, r"weight_offset must be 0 or 1"),
        (lambda: oracles.rms_norm(X, np.ones(3, np.float32)), ValueError, r"weight has shape \(3,\), expected \(4,\)"),
        (lambda: oracles.layer_norm(X, W, np.ones(5)), ValueError, r"bias has shape \(5,\)"),
        (lambda: oracles.rms_norm(np.ones((2, 4), np.int32)), TypeError, r"x must be an array of float16.*int32"),
        (lambda: oracles.rms_norm(np.float32(1.0)), ValueError, r"x must have shape \(\.\.\., n\) with n >= 1"),
        (lambda: oracles.rms_norm(np.ones((2, 0))), ValueError, r"n >= 1"),
        (lambda: oracles.rms_norm_backward(X, np.ones((4, 2), np.float32)), ValueError, r"grad_output has shape"),
        (lambda: oracles.rms_norm(X).round("float8"), ValueError, r"unsupported floating-point format 'float8'"),
        (lambda: oracles.rms_norm(X).ulp_error(np.ones(8, np.float32)), ValueError, r"candidate has shape \(8,\)"),
        (lambda: oracles.rms_norm(X).ulp_error(np.ones((2, 4), np.int64)), ValueError, r"unsupported"),
    ],
)
def test_bad_calls_are_refused_clearly(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_inputs_may_be_lists_of_python_floats():
    assert oracles.rms_norm([[1.0, 2.0]]).round("float64").shape == (1, 2)
