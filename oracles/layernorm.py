"""Exact LayerNorm: ``y = (x - mean) / sqrt(var + eps) * (weight + weight_offset) + bias``, and gradients.

The variance is the biased one (divide by n). The fast path uses a corrected
two-pass mean, so rows with a large mean offset keep tight bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import numpy as np

from oracles.exact import Exact
from oracles.fastpath import SAFETY, ColumnSum, compose, gamma, pairwise_sum, row_blocks
from oracles.inputs import NormInputs, dyadic_sum
from oracles.rootsum import RootSum


@dataclass
class _Block:
    """Float64 statistics of a block of rows with proven bounds (all per row)."""

    d: np.ndarray  #: x - mu, within e_mu + gamma(1)|d| of x - mean
    e_mu: np.ndarray  #: bound on |mu - mean|
    v: np.ndarray  #: var + eps, within relative theta_v
    theta_v: np.ndarray
    r: np.ndarray  #: 1/sqrt(v), within relative theta_r
    theta_r: np.ndarray
    r_up: np.ndarray  #: an upper bound of the exact r


class _Ln:
    """Row statistics of LayerNorm: float64 with proven bounds per block, exact per row on demand."""

    def __init__(self, inp: NormInputs) -> None:
        self.inp = inp
        x = inp.x
        constant = (x == x[:, :1]).all(axis=-1) if inp.eps == 0 else np.zeros(inp.rows, dtype=bool)
        self.bad_rows = ~inp.finite_rows | constant
        #: Rows where the fast path's bounds are proven (filled in by :meth:`fast`).
        self.fast_rows = inp.fast_rows.copy()

    def fast(self, sl: slice) -> _Block:
        x, n, g1 = self.inp.x[sl], self.inp.n, gamma(1)
        s0, depth = pairwise_sum(x)
        m0 = s0 / n
        d0 = x - m0[:, None]
        c = pairwise_sum(d0)[0] / n
        a0 = pairwise_sum(np.abs(d0))[0]
        mu = m0 + c
        gl = gamma(depth)
        e_mu = (g1 * (np.abs(mu) + np.abs(c)) + (g1 + gl) * a0 / (n * (1 - gl))) * SAFETY
        d = x - mu[:, None]
        v = pairwise_sum(d * d)[0] / n + self.inp.eps
        # sum((d + c)^2) = sum(d^2) + n c^2 exactly, so the shift of mu only adds e_mu^2.
        gv = gamma(depth + 5)
        v_lo = v / (1 + gv) - e_mu**2
        theta_v = np.where(v_lo > 0, gv + (1 + gv) * e_mu**2 / v_lo, np.inf)
        theta_v = np.where(theta_v < 0.25, theta_v, np.inf)
        self.fast_rows[sl] &= np.isfinite(theta_v)
        r = 1.0 / np.sqrt(v)
        theta_r = compose(theta_v / (2 * (1 - theta_v)), g1, g1)
        return _Block(d, e_mu, v, theta_v, r, theta_r, r * (1 + theta_r / (1 - theta_r)))

    @cache  # noqa: B019 - the cache lives and dies with the inputs
    def mean_var_q(self, row: int) -> tuple[Fraction, Fraction]:
        """Exact mean and ``var + eps`` of a row."""
        xs, n = self.inp.x_q(row), self.inp.n
        s1 = dyadic_sum(xs)
        s2 = dyadic_sum([v * v for v in xs])
        return s1 / n, (s2 - s1 * s1 / n) / n + self.inp.eps_q

    def centered_q(self, row: int) -> list[Fraction]:
        mu, _ = self.mean_var_q(row)
        return [v - mu for v in self.inp.x_q(row)]


def layer_norm(
    x: object,
    weight: object = None,
    bias: object = None,
    eps: float = 1e-5,
    weight_offset: int = 0,
) -> Exact:
    """Exact LayerNorm over the last axis of ``x`` (biased variance, eps inside the root).

    >>> import numpy as np
    >>> layer_norm(np.array([1.0, 3.0]), eps=0.0).round("float64")
    array([-1.,  1.])
    """
    inp = NormInputs(x, weight=weight, bias=bias, eps=eps, weight_offset=weight_offset)
    st = _Ln(inp)
    g1 = gamma(1)
    s_abs = 1.0 if inp.scale is None else np.abs(inp.scale) / (1 - g1)
    y = np.empty_like(inp.x)
    bound = np.empty_like(inp.x)
    with np.errstate(all="ignore"):
        for sl in row_blocks(inp.rows, inp.n):
            b = st.fast(sl)
            a = b.d if inp.scale is None else b.d * inp.scale
            p = a * b.r[:, None]
            y[sl] = p if inp.bias is None else p + inp.bias
            rho = compose(b.theta_r, gamma(inp.offset + (inp.scale is not None) + 1))
            rho_p = (rho + g1) / (1 - rho)
            bnd = rho_p[:, None] * np.abs(p) + (b.e_mu * b.r_up)[:, None] * s_abs
            if inp.bias is not None:
                bnd += g1 * np.abs(y[sl])
            bound[sl] = bnd * SAFETY
    bound[~st.fast_rows] = np.inf
    undefined = st.bad_rows[:, None] | ~inp.finite_columns

    def element(i: int) -> RootSum:
        row, j = divmod(i, inp.n)
        _, v = st.mean_var_q(row)
        b = Fraction(0) if inp.bias_q is None else inp.bias_q[j]
        return RootSum(((inp.scaled_q(st.centered_q(row))[j], v),), b)

    return Exact(y.reshape(inp.shape), bound.reshape(inp.shape), element, undefined.reshape(inp.shape))


def layer_norm_backward(
    x: object,
    grad_output: object,
    weight: object = None,
    bias: object = None,
    eps: float = 1e-5,
    weight_offset: int = 0,
) -> tuple[Exact, Exact | None, Exact | None]:
    """Exact gradients of :func:`layer_norm`: ``(grad_input, grad_weight, grad_bias)``.

    With ``h = grad_output * scale`` and ``xhat = (x - mean) * r``:
    ``grad_input = r * (h - mean(h) - xhat * mean(h * xhat))``; ``grad_weight``
    sums ``grad_output * xhat`` and ``grad_bias`` sums ``grad_output`` over every
    leading dimension (``None`` without weight / bias).
    """
    inp = NormInputs(x, weight=weight, bias=bias, grad_output=grad_output, eps=eps, weight_offset=weight_offset)
    assert inp.grad is not None
    st = _Ln(inp)
    n, g1 = inp.n, gamma(1)
    theta_h = gamma(inp.scale_roundings)
    th = theta_h / (1 - theta_h)
    gl = gamma(pairwise_sum(np.zeros(n))[1])
    dx = np.empty_like(inp.x)
    bound_dx = np.empty_like(inp.x)
    dw_sum, db_sum = ColumnSum(), ColumnSum()
    dw_shift = np.zeros(n)
    theta_r_max = 0.0
    with np.errstate(all="ignore"):
        for sl in row_blocks(inp.rows, n):
            b, g = st.fast(sl), inp.grad[sl]
            d = b.d
            h = g if inp.scale is None else g * inp.scale
            mh = pairwise_sum(h)[0] / n
            habs = pairwise_sum(np.abs(h))[0]
            e_mh = (th + gl) * habs / (n * (1 - gl)) + g1 * np.abs(mh)
            p = h * d
            c = pairwise_sum(p)[0] / n
            pabs = pairwise_sum(np.abs(p))[0]
            e_c = ((th + 3 * g1 + gl) * pabs + b.e_mu * (1 + th) * habs) / (n * (1 - gl)) + g1 * np.abs(c)
            iv = 1.0 / b.v
            theta_iv = compose(b.theta_v / (1 - b.theta_v), g1)
            k = c * iv
            rho_k = compose(theta_iv, g1)
            e_k = e_c * iv / (1 - theta_iv) + np.abs(k) * rho_k / (1 - rho_k)
            t1 = h - mh[:, None]
            t2 = d * k[:, None]
            z = t1 - t2
            np.multiply(b.r[:, None], z, out=dx[sl])
            rho1 = compose(b.theta_r, g1)
            per_row = e_mh + (np.abs(k) + e_k) * b.e_mu
            err_z = (
                per_row[:, None]
                + np.abs(d) * (e_k + g1 * (np.abs(k) + e_k))[:, None]
                + g1 * (np.abs(t1) + np.abs(t2) + np.abs(z))
            )
            if th:
                err_z += th * np.abs(h)
            bound_dx[sl] = ((rho1 / (1 - rho1))[:, None] * np.abs(dx[sl]) + b.r_up[:, None] * err_z) * SAFETY
            if inp.weight is not None:
                dw_sum.add((g * d) * b.r[:, None])
                dw_shift += np.abs(g).T @ (b.r_up * b.e_mu)
                theta_r_max = max(theta_r_max, float(np.max(b.theta_r, initial=0.0)))
            if inp.bias is not None:
                db_sum.add(g)
    bound_dx[~st.fast_rows] = np.inf
    undefined_dx = (st.bad_rows | ~inp.finite_grad.all(axis=-1))[:, None] | ~inp.finite_columns.all()
    undefined_dx = np.broadcast_to(undefined_dx, inp.x.shape)

    @cache
    def row_terms(row: int) -> tuple[list[Fraction], list[Fraction], Fraction, Fraction, Fraction]:
        ds, hs = st.centered_q(row), inp.scaled_q(inp.g_q(row))
        _, v = st.mean_var_q(row)
        mean_h = sum(hs, Fraction(0)) / n
        k_q = sum((a * b for a, b in zip(hs, ds)), Fraction(0)) / n / v
        return ds, hs, v, mean_h, k_q

    def dx_element(i: int) -> RootSum:
        row, j = divmod(i, n)
        ds, hs, v, mean_h, k_q = row_terms(row)
        return RootSum(((hs[j] - mean_h - ds[j] * k_q, v),))

    grad_input = Exact(dx.reshape(inp.shape), bound_dx.reshape(inp.shape), dx_element, undefined_dx.reshape(inp.shape))
    x_all, g_all = inp.x, inp.grad
    grad_weight = grad_bias = None
    if inp.weight is not None:
        dw, tabs, depth_r = dw_sum.result()
        gr = gamma(depth_r)
        rho_t = compose(theta_r_max, gamma(3), gr)
        bound_dw = (rho_t / (1 - rho_t) * tabs / (1 - gr) + dw_shift) * SAFETY
        if not st.fast_rows.all():
            bound_dw[:] = np.inf

        def dw_element(j: int) -> RootSum:
            terms = []
            for row in range(inp.rows):
                mu, v = st.mean_var_q(row)
                terms.append((Fraction(g_all[row, j]) * (Fraction(x_all[row, j]) - mu), v))
            return RootSum(tuple(terms))

        grad_weight = Exact(dw, bound_dw, dw_element, st.bad_rows.any() | ~inp.finite_grad.all(axis=0))
    if inp.bias is not None:
        db, gabs, depth_r = db_sum.result()
        gr = gamma(depth_r)
        bound_db = gr * gabs / (1 - gr) * SAFETY
        if not inp.fast_rows.all():
            bound_db[:] = np.inf

        def db_element(j: int) -> RootSum:
            return RootSum((), dyadic_sum([Fraction(v) for v in g_all[:, j].tolist()]))

        grad_bias = Exact(db, bound_db, db_element, ~inp.finite_grad.all(axis=0))
    return grad_input, grad_weight, grad_bias
