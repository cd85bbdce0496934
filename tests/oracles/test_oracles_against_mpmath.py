"""Property tests: every rounding, bound and ULP error agrees with a 400-bit mpmath reference."""

from __future__ import annotations

import math

import mpmath
import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

import oracles
from oracles import FORMATS

from . import reference as ref
from .strategies import norm_inputs


def _check(exact: oracles.Exact, expected: tuple[list, list]) -> None:
    """Compare rounding in every format and the error bound with reference (values, scales)."""
    values, scales = expected
    assert len(values) == int(np.prod(exact.shape))
    approx, bound = exact.approx.ravel(), exact.error_bound.ravel()
    for fmt in FORMATS:
        got = exact.round(fmt).astype(np.float64).ravel()
        for i, (v, scale) in enumerate(zip(values, scales)):
            if not mpmath.isfinite(v):
                assert math.isnan(got[i]), f"{fmt.name}[{i}]: expected NaN, got {got[i]}"
            elif not ref.unresolvable(v, scale, fmt):
                assert got[i] == ref.round_mpf(v, fmt), f"{fmt.name}[{i}]: got {got[i]!r}, exact {v}"
    for i, (v, scale) in enumerate(zip(values, scales)):
        if mpmath.isfinite(v) and math.isfinite(bound[i]) and not ref.unresolvable(v, scale):
            with mpmath.workprec(ref.PREC):
                assert abs(mpmath.mpf(float(approx[i])) - v) <= bound[i], f"bound fails at {i}"


def _forward_args(args: dict) -> tuple:
    return args["x"], args["weight"], args["bias"], args["eps"], args["weight_offset"]


@given(norm_inputs())
def test_rms_norm_rounds_correctly_in_every_format(args):
    x, w, _, eps, off = _forward_args(args)
    _check(oracles.rms_norm(x, w, eps, off), ref.forward("rmsnorm", x, w, None, eps, off))


@given(norm_inputs())
def test_layer_norm_rounds_correctly_in_every_format(args):
    x, w, b, eps, off = _forward_args(args)
    _check(oracles.layer_norm(x, w, b, eps, off), ref.forward("layernorm", x, w, b, eps, off))


@given(norm_inputs())
def test_rms_norm_gradients_round_correctly(args):
    x, w, _, eps, off = _forward_args(args)
    dx, dw = oracles.rms_norm_backward(x, args["grad_output"], w, eps, off)
    rdx, rdw, _ = ref.backward("rmsnorm", x, args["grad_output"], w, eps, off)
    _check(dx, rdx)
    assert (dw is None) == (w is None)
    if dw is not None:
        _check(dw, rdw)


@given(norm_inputs())
def test_layer_norm_gradients_round_correctly(args):
    x, w, b, eps, off = _forward_args(args)
    dx, dw, db = oracles.layer_norm_backward(x, args["grad_output"], w, b, eps, off)
    rdx, rdw, rdb = ref.backward("layernorm", x, args["grad_output"], w, eps, off)
    _check(dx, rdx)
    assert (dw is None) == (w is None) and (db is None) == (b is None)
    if dw is not None:
        _check(dw, rdw)
    if db is not None:
        _check(db, rdb)


@given(norm_inputs())
def test_ulp_errors_match_the_reference(args):
    x, w, _, eps, off = _forward_args(args)
    exact = oracles.rms_norm(x, w, eps, off)
    values, scales = ref.forward("rmsnorm", x, w, None, eps, off)
    for fmt in FORMATS:
        candidate = exact.round(fmt)
        # One float64 step up: in the candidate's format, about one ulp off or unchanged.
        bumped = np.nextafter(candidate.astype(np.float64), np.inf).astype(fmt.dtype)
        for cand in (candidate, bumped):
            got = exact.signed_ulp_error(cand).ravel()
            flat = np.asarray(cand, dtype=np.float64).ravel()
            for i, (v, scale) in enumerate(zip(values, scales)):
                c = float(flat[i])
                if not mpmath.isfinite(v) or not math.isfinite(c):
                    assert math.isnan(got[i])
                    continue
                if ref.unresolvable(v, scale, fmt):
                    continue
                with mpmath.workprec(ref.PREC):
                    e = fmt.emin if v == 0 else max(int(mpmath.floor(mpmath.log(abs(v), 2))), fmt.emin)
                    want = (mpmath.mpf(c) - v) / mpmath.mpf(2) ** (e - fmt.precision + 1)
                tol = oracles.ULP_ERROR_ACCURACY + 2.0**-45 * abs(float(want))
                assert abs(got[i] - float(want)) <= tol, (fmt.name, i, got[i], want)


@given(norm_inputs(), st.integers(-3, 3), st.floats(0, 4))
@example(  # y = (1, -1) exactly (n = 2, eps = 0), the candidate exact and nothing allowed: |c - y| = allowed
    {
        "x": np.array([[-1.0, -1.019]], dtype=np.float16),
        "weight": None,
        "bias": None,
        "grad_output": np.array([[-1.0, -1.0]], dtype=np.float16),
        "eps": 0.0,
        "weight_offset": 0,
    },
    0,
    0.0,
)
def test_exceeds_agrees_with_the_reference(args, steps, allowed_ulps):
    x, w, b, eps, off = _forward_args(args)
    exact = oracles.layer_norm(x, w, b, eps, off)
    values, scales = ref.forward("layernorm", x, w, b, eps, off)
    fmt = oracles.FLOAT32
    rounded = exact.round(fmt).astype(np.float64).ravel()
    candidate = rounded.copy()
    for _ in range(abs(steps)):  # a few float32 steps away from the correct rounding
        candidate = np.nextafter(candidate.astype(np.float32), np.float32(np.sign(steps) * np.inf)).astype(np.float64)
    allowed = allowed_ulps * np.ldexp(1.0, oracles.rounding.quantum_exponents(np.abs(rounded), fmt))
    got = exact.exceeds(candidate.reshape(exact.shape), allowed.reshape(exact.shape)).ravel()
    for i, (v, scale) in enumerate(zip(values, scales)):
        if not mpmath.isfinite(v) or not math.isfinite(candidate[i]):
            assert not got[i]
            continue
        if ref.unresolvable(v, scale):
            continue
        with mpmath.workprec(ref.PREC):
            margin = abs(mpmath.mpf(float(candidate[i])) - v) - mpmath.mpf(float(allowed[i]))
            if abs(margin) <= mpmath.mpf(2) ** -300 * max(scale, abs(v)):
                continue  # on the boundary within the reference's own error: the exact oracle decides, not it
        assert got[i] == (margin > 0), (i, candidate[i], v, allowed[i])
