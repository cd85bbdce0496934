"""Exact RMSNorm: ``y = x / sqrt(mean(x**2) + eps) * (weight + weight_offset)`` and its gradients."""

from __future__ import annotations

from fractions import Fraction
from functools import cache

import numpy as np

from oracles import kernels
from oracles.exact import Exact
from oracles.fastpath import SAFETY, compose, gamma, psum_depth
from oracles.inputs import NormInputs, dyadic_sum
from oracles.rootsum import RootSum


class _Rms:
    """Row facts of RMSNorm: undefined rows, proven relative bounds, exact statistics on demand."""

    def __init__(self, inp: NormInputs) -> None:
        self.inp = inp
        zero_rows = (inp.x == 0).all(axis=-1) if inp.eps == 0 else np.zeros(inp.rows, dtype=bool)
        #: Rows whose result is undefined: non-finite input or 0/0.
        self.bad_rows = ~inp.finite_rows | zero_rows
        #: Relative bound of the computed mean(x**2) + eps (psum, /n, +eps).
        self.theta_v = gamma(psum_depth(inp.n) + int(inp.wide) + 2)
        # (1 + t)^(-1/2) for |t| <= theta_v, then the roundings of sqrt and 1/.
        self.theta_r = compose(self.theta_v / (2 * (1 - self.theta_v)), gamma(1), gamma(1))

    @cache  # noqa: B019 - the cache lives and dies with the inputs
    def v_q(self, row: int) -> Fraction:
        """Exact ``mean(x**2) + eps`` of a row."""
        xs = self.inp.x_q(row)
        return dyadic_sum([v * v for v in xs]) / self.inp.n + self.inp.eps_q


def _scale(inp: NormInputs) -> np.ndarray:
    return np.empty(0) if inp.scale is None else inp.scale


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
    # y = fl(fl(x * scale) * r): the scale's roundings, one more, and r's error.
    rho = compose(st.theta_r, gamma(inp.scale_roundings + 1))
    y, bound = np.empty(inp.x.shape), np.empty(inp.x.shape)
    with np.errstate(all="ignore"):
        kernels.rms_forward(inp.x, _scale(inp), inp.eps, rho / (1 - rho) * SAFETY, y, bound)
    bound[~inp.fast_rows] = np.inf
    undefined = st.bad_rows[:, None] | ~inp.finite_columns

    @cache
    def scaled_row(row: int) -> list[Fraction]:
        return inp.scaled_q(inp.x_q(row))

    def element(i: int) -> RootSum:
        row, j = divmod(i, inp.n)
        return RootSum(((scaled_row(row)[j], st.v_q(row)),))

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
    n, g1, gl = inp.n, gamma(1), gamma(psum_depth(inp.n))
    theta_h = gamma(inp.scale_roundings)  # h = fl(g * scale)
    th = theta_h / (1 - theta_h)
    theta_iv = compose(st.theta_v / (1 - st.theta_v), g1)  # fl(1 / v)
    consts = np.array(
        [
            th,
            g1,
            compose(th, g1, gl),  # the terms h * x and their psum
            gl,
            theta_iv,
            compose(theta_iv, g1),  # k = C * (1/v)
            compose(st.theta_r, g1),  # dx = fl(r * z)
            1 + st.theta_r / (1 - st.theta_r),
            SAFETY,
        ]
    )
    dx, bound_dx = np.empty(inp.x.shape), np.empty(inp.x.shape)
    with_dw = inp.weight is not None
    dw, dw_abs = np.empty(n if with_dw else 0), np.empty(n if with_dw else 0)
    with np.errstate(all="ignore"):
        kernels.rms_backward(inp.x, inp.grad, _scale(inp), inp.eps, consts, dx, bound_dx, dw, dw_abs)
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
    if not with_dw:
        return grad_input, None

    # Terms fl(fl(g * x) * r), summed over rows in psum order.
    gr = gamma(psum_depth(inp.rows))
    rho_t = compose(st.theta_r, gamma(int(inp.wide) + 1), gr)
    bound_dw = rho_t / (1 - rho_t) * dw_abs / (1 - gr) * SAFETY
    if not inp.fast_rows.all():
        bound_dw[:] = np.inf
    undefined_dw = st.bad_rows.any() | ~inp.finite_grad.all(axis=0)
    x_all, g_all = inp.x, inp.grad

    def dw_element(j: int) -> RootSum:
        return RootSum(
            tuple(
                (Fraction(float(g_all[row, j])) * Fraction(float(x_all[row, j])), st.v_q(row))
                for row in range(inp.rows)
            )
        )

    return grad_input, Exact(dw, bound_dw, dw_element, undefined_dw)
