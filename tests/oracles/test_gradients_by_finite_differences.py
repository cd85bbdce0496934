"""The analytic gradients of the oracle agree with finite differences of its forward in mpmath."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import oracles

PREC, STEP = 500, mpmath.mpf(2) ** -120


def _loss(kind: str, x: list, g: list, w: list, b: list, eps: float, n: int) -> mpmath.mpf:
    """sum(g * y) over every row, y the forward normalization, all in mpmath."""
    total = mpmath.mpf(0)
    for r0 in range(0, len(x), n):
        xs, gs = x[r0 : r0 + n], g[r0 : r0 + n]
        mu = mpmath.fsum(xs) / n if kind == "layernorm" else 0
        r = 1 / mpmath.sqrt(mpmath.fsum((v - mu) ** 2 for v in xs) / n + mpmath.mpf(eps))
        total += mpmath.fsum(gi * ((v - mu) * r * wi + bi) for gi, v, wi, bi in zip(gs, xs, w, b))
    return total


def _derivative(f, values: list, i: int) -> mpmath.mpf:
    up, down = list(values), list(values)
    up[i] += STEP
    down[i] -= STEP
    return (f(up) - f(down)) / (2 * STEP)


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm"])
@pytest.mark.parametrize("offset", [0, 1])
def test_every_gradient_matches_central_differences(kind, offset):
    rng = np.random.default_rng(7)
    rows, n, eps = 3, 5, 1e-3
    x = rng.standard_normal((rows, n)).astype(np.float32)
    g = rng.standard_normal((rows, n)).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    if kind == "rmsnorm":
        dx, dw = oracles.rms_norm_backward(x, g, w, eps, offset)
        grads = {"x": dx, "w": dw}
    else:
        dx, dw, db = oracles.layer_norm_backward(x, g, w, b, eps, offset)
        grads = {"x": dx, "w": dw, "b": db}
    with mpmath.workprec(PREC):
        args = {
            "x": [mpmath.mpf(float(v)) for v in x.ravel()],
            "g": [mpmath.mpf(float(v)) for v in g.ravel()],
            "w": [mpmath.mpf(float(v)) + offset for v in w],
            "b": [mpmath.mpf(float(v)) if kind == "layernorm" else mpmath.mpf(0) for v in b],
        }

        def loss_of(name: str):
            return lambda vals: _loss(kind, **{**args, name: vals}, eps=eps, n=n)

        for name, exact in grads.items():
            for i in range(int(np.prod(exact.shape))):
                want = _derivative(loss_of(name), args[name], i)
                got = exact.mpf(i, prec=200)
                assert abs(got - want) <= mpmath.mpf(2) ** -190 * (1 + abs(want)), (name, i)
