"""The rigorous tier on its own (normcheck.verdict.bounds): its reasons name what the code adds."""

from __future__ import annotations

import numpy as np

from normcheck.strategies import Source, make_input
from normcheck.verdict.bounds import GRAD_ROUNDINGS, MARGIN, ROUNDINGS, bounds, exact_ulp, ulp, unit_roundoff
from oracles import layer_norm, layer_norm_backward, resolve_format
from oracles.rounding import quantum_exponents


def test_the_layernorm_dw_reason_names_the_conditioning_term_the_bound_adds():
    """On rows whose mean hides the signal the term of the mean's error dominates dw's bound: the reason
    must say so, not only ``(rows+n+32) u sum|g xhat|``."""
    fmt = resolve_format("float32")
    case = make_input(Source(rng=np.random.default_rng(0)), fmt, n=64, rows=8, regime="offset", eps=1e-5)
    dx, dw, db = layer_norm_backward(case.x, case.grad, case.weight, case.bias, 1e-5)
    exact = {"y": layer_norm(case.x, case.weight, case.bias, 1e-5), "dx": dx, "dw": dw, "db": db}
    limit = bounds(
        "layernorm", fmt, case.x, exact, weight=case.weight, bias=case.bias, grad=case.grad, eps=1e-5, offset=0
    )["dw"]
    x, g = case.x.astype(np.float64), case.grad.astype(np.float64)
    r = 1 / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    xhat = (x - x.mean(-1, keepdims=True)) * r
    u, rows, n = unit_roundoff(fmt), 8, 64
    named = ROUNDINGS * exact_ulp(dw, fmt) + MARGIN * (rows + n + GRAD_ROUNDINGS) * u * np.sum(np.abs(g * xhat), axis=0)
    conditioning = MARGIN * (n + 4) * u * np.sum(np.abs(g) * r * np.abs(x).mean(-1, keepdims=True), axis=0)
    assert (conditioning > 10 * named).all()  # the mean's error is most of the bound on these rows
    assert (limit.allowed("rigorous") >= (named + conditioning) * (1 - 1e-6)).all()  # the bound holds the terms named
    assert "(rows+n+32)" in limit.tiers[0].reason and "(n+4)*u_float32*sum|g|*r*mean|x|" in limit.tiers[0].reason


def test_ulp_is_the_spacing_of_the_format_at_each_value_subnormals_zero_and_nan_included():
    half = resolve_format("float16")
    values = np.array([1.0, -3.0, 65504.0, 2.0**-14, 2.0**-20, 0.0, -0.0, 5e-324, np.nan, np.nextafter(2.0, 0)])
    expected = [2.0**-10, 2.0**-9, 32.0, 2.0**-24, 2.0**-24, 2.0**-24, 2.0**-24, 2.0**-24, 2.0**-24, 2.0**-10]
    assert ulp(values, half).tolist() == expected
    assert ulp(values.reshape(2, 5), half).shape == (2, 5)
    rng = np.random.default_rng(0)
    wide = np.concatenate([np.ldexp(rng.random(10_000) - 0.5, rng.integers(-1100, 1024, 10_000)), [np.inf, -np.inf]])
    for fmt in map(resolve_format, ("bfloat16", "float32", "float64")):
        assert np.array_equal(ulp(wide, fmt), np.ldexp(1.0, quantum_exponents(np.abs(wide), fmt)))
