"""Exact RMSNorm: ``y = x / sqrt(mean(x**2) + eps) * (weight + weight_offset)`` and its gradients."""

from __future__ import annotations

from fractions import Fraction
from functools import cache

import numpy as np

from oracles.exact import Exact
from oracles.fastpath import SAFETY, ColumnSum, compose, gamma, pairwise_sum, row_blocks
from oracles.inputs import NormInputs, dyadic_sum
from oracles.rootsum import RootSum


class _Rms:
    """Row statistics of RMSNorm: float64 with proven bounds per block, exact per row on demand."""

    def __init__(self, inp: NormInputs) -> None:
        self.inp = inp
        zero_rows = (inp.x == 0).all(axis=-1) if inp.eps == 0 else np.zeros(inp.rows, dtype=bool)
        #: Rows whose result is undefined: non-finite input or 0/0.
        self.bad_rows = ~inp.finite_rows | zero_rows
        depth = pairwise_sum(np.zeros(inp.n))[1]
        self.theta_v = gamma(depth + int(inp.wide) + 2)
        # (1 + t)^(-1/2) for |t| <= theta_v, then the roundings of sqrt and 1/.
        self.theta_r = compose(self.theta_v / (2 * (1 - self.theta_v)), gamma(1), gamma(1))
        self.r_up_factor = 1 + self.theta_r / (1 - self.theta_r)

    def fast(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mean(x**2) + eps, 1/sqrt(...))`` of a block of rows, within theta_v and theta_r.

        Call under ``np.errstate(all="ignore")``: undefined rows divide by zero.
        """
        v = pairwise_sum(x * x)[0] / self.inp.n + self.inp.eps
        return v, 1.0 / np.sqrt(v)

    @cache  # noqa: B019 - the cache lives and dies with the inputs
    def v_q(self, row: int) -> Fraction:
        """Exact ``mean(x**2) + eps`` of a row."""
        xs = self.inp.x_q(row)
        return dyadic_sum([v * v for v in xs]) / self.inp.n + self.inp.eps_q


def rms_norm(x: object, weight: object = None, eps: float = 1e-6, weight_offset: int = 0) -> Exact:
    """Exact RMSNorm over the last axis of ``x``.

    ``y = x / sqrt(mean(x**2, -1) + eps) * (weight + weight_offset)``; no weight
    means a scale of 1. ``eps`` is taken at its exact binary64 value.

    >>> import numpy as np
    >>> y = rms_norm(np.array([3.0, 4.0], np.float32), eps=0.0)  # rms = sqrt(12.5)
    >>> y.round("float32").tolist()
    [0.8485281467437744, 1.1313709020614624]
    >>> y.ulp_error(np.array([0.8485282, 1.1313708], np.float32)).round(3).tolist()
    [1.156, 0.562]
    """
    inp = NormInputs(x, weight=weight, eps=eps, weight_offset=weight_offset)
    st = _Rms(inp)
    rho = compose(st.theta_r, gamma(inp.scale_roundings + 1))
    rel = rho / (1 - rho) * SAFETY
    y = np.empty_like(inp.x)
    bound = np.empty_like(inp.x)
    with np.errstate(all="ignore"):
        for sl in row_blocks(inp.rows, inp.n):
            _, r = st.fast(inp.x[sl])
            a = inp.x[sl] if inp.scale is None else inp.x[sl] * inp.scale
            np.multiply(a, r[:, None], out=y[sl])
            np.multiply(np.abs(y[sl]), rel, out=bound[sl])
    bound[~inp.fast_rows] = np.inf
    undefined = st.bad_rows[:, None] | ~inp.finite_columns

    def element(i: int) -> RootSum:
        row, j = divmod(i, inp.n)
        return RootSum(((inp.scaled_q(inp.x_q(row))[j], st.v_q(row)),))

    return Exact(y.reshape(inp.shape), bound.reshape(inp.shape), element, undefined.reshape(inp.shape))


def rms_norm_backward(
    x: object,
    grad_output: object,
    weight: object = None,
    eps: float = 1e-6,
    weight_offset: int = 0,
) -> tuple[Exact, Exact | None]:
    """Exact gradients of :func:`rms_norm`: ``(grad_input, grad_weight)``.

    With ``h = grad_output * scale`` and ``xhat = x * r``:
    ``grad_input = r * (h - xhat * mean(h * xhat))`` and ``grad_weight`` sums
    ``grad_output * xhat`` over every leading dimension (``None`` without weight).
    """
    inp = NormInputs(x, weight=weight, grad_output=grad_output, eps=eps, weight_offset=weight_offset)
    assert inp.grad is not None
    st = _Rms(inp)
    n, g1 = inp.n, gamma(1)
    theta_h = gamma(inp.scale_roundings)
    th = theta_h / (1 - theta_h)
    depth = pairwise_sum(np.zeros(n))[1]
    gl = gamma(depth)
    # k = C / v with C = mean(h * x): relative bounds of 1/v and of the product.
    theta_iv = compose(st.theta_v / (1 - st.theta_v), g1)
    rho_k = compose(theta_iv, g1)
    rho1 = compose(st.theta_r, g1)
    dx = np.empty_like(inp.x)
    bound_dx = np.empty_like(inp.x)
    dw_sum = ColumnSum()
    with np.errstate(all="ignore"):
        for sl in row_blocks(inp.rows, n):
            x, g = inp.x[sl], inp.grad[sl]
            v, r = st.fast(x)
            h = g if inp.scale is None else g * inp.scale
            p = h * x
            c = pairwise_sum(p)[0] / n
            pabs = pairwise_sum(np.abs(p))[0]
            e_c = compose(th, g1, gl) * pabs / (n * (1 - gl)) + g1 * np.abs(c)
            iv = 1.0 / v
            k = c * iv
            e_k = e_c * iv / (1 - theta_iv) + np.abs(k) * rho_k / (1 - rho_k)
            m = x * k[:, None]
            z = h - m
            np.multiply(r[:, None], z, out=dx[sl])
            err_z = np.abs(x) * e_k[:, None] + g1 * (np.abs(m) + np.abs(z))
            if th:
                err_z += th * np.abs(h)
            bound_dx[sl] = (rho1 / (1 - rho1) * np.abs(dx[sl]) + (r * st.r_up_factor)[:, None] * err_z) * SAFETY
            if inp.weight is not None:
                dw_sum.add((g * x) * r[:, None])
    bound_dx[~inp.fast_rows] = np.inf
    undefined_dx = (st.bad_rows | ~inp.finite_grad.all(axis=-1))[:, None] | ~inp.finite_columns.all()
    undefined_dx = np.broadcast_to(undefined_dx, inp.x.shape)

    @cache
    def row_terms(row: int) -> tuple[list[Fraction], Fraction, Fraction]:
        xs, hs = inp.x_q(row), inp.scaled_q(inp.g_q(row))
        v = st.v_q(row)
        return hs, v, dyadic_sum([a * b for a, b in zip(hs, xs)]) / n / v

    def dx_element(i: int) -> RootSum:
        row, j = divmod(i, n)
        hs, v, k_q = row_terms(row)
        return RootSum(((hs[j] - inp.x_q(row)[j] * k_q, v),))

    grad_input = Exact(dx.reshape(inp.shape), bound_dx.reshape(inp.shape), dx_element, undefined_dx.reshape(inp.shape))
    if inp.weight is None:
        return grad_input, None

    dw, tabs, depth_r = dw_sum.result()
    gr = gamma(depth_r)
    rho_t = compose(st.theta_r, gamma(int(inp.wide) + 1), gr)
    bound_dw = rho_t / (1 - rho_t) * tabs / (1 - gr) * SAFETY
    if not inp.fast_rows.all():
        bound_dw[:] = np.inf
    undefined_dw = st.bad_rows.any() | ~inp.finite_grad.all(axis=0)
    x_all, g_all = inp.x, inp.grad

    def dw_element(j: int) -> RootSum:
        return RootSum(
            tuple((Fraction(g_all[row, j]) * Fraction(x_all[row, j]), st.v_q(row)) for row in range(inp.rows))
        )

    return grad_input, Exact(dw, bound_dw, dw_element, undefined_dw)
