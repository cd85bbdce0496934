"""Exact LayerNorm: ``y = (x - mean) / sqrt(var + eps) * (weight + weight_offset) + bias``, and gradients.

The variance is the biased one (divide by n). The fast path uses a corrected
two-pass mean, so rows with a large mean offset keep tight bounds.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache

import numpy as np

from oracles import kernels
from oracles.exact import Exact
from oracles.fastpath import SAFETY, compose, gamma, psum_depth
from oracles.inputs import NormInputs, dyadic_sum
from oracles.rootsum import RootSum


class _Ln:
    """Row facts of LayerNorm: undefined rows, bound constants, exact statistics on demand."""

    def __init__(self, inp: NormInputs) -> None:
        self.inp = inp
        x = inp.x
        constant = (x == x[:, :1]).all(axis=-1) if inp.eps == 0 else np.zeros(inp.rows, dtype=bool)
        self.bad_rows = ~inp.finite_rows | constant
        depth = psum_depth(inp.n)
        #: g1, gl (a row psum), gv (the variance: d**2 rounds thrice, psum, /n, +eps).
        self.g1, self.gl, self.gv = gamma(1), gamma(depth), gamma(depth + 5)
        #: Rows where the kernels proved their bounds (set by the kernels).
        self.fast = np.empty(inp.rows, dtype=bool)

    def proven_rows(self) -> np.ndarray:
        return self.inp.fast_rows & self.fast

    @cache  # noqa: B019 - the cache lives and dies with the inputs
    def mean_var_q(self, row: int) -> tuple[Fraction, Fraction]:
        """Exact mean and ``var + eps`` of a row."""
        xs, n = self.inp.x_q(row), self.inp.n
        s1 = dyadic_sum(xs)
        s2 = dyadic_sum([v * v for v in xs])
        return s1 / n, (s2 - s1 * s1 / n) / n + self.inp.eps_q

    @cache  # noqa: B019
    def centered_q(self, row: int) -> list[Fraction]:
        mu, _ = self.mean_var_q(row)
        return [v - mu for v in self.inp.x_q(row)]


def _vector(v: np.ndarray | None) -> np.ndarray:
    return np.empty(0) if v is None else v


def layer_norm(
    x: object,
    weight: object = None,
    bias: object = None,
    eps: float = 1e-5,
    weight_offset: int = 0,
    *,
    threads: int | None = None,
) -> Exact:
    """Exact LayerNorm over the last axis of ``x`` (biased variance, eps inside the root).

    >>> import numpy as np
    >>> layer_norm(np.array([1.0, 3.0]), eps=0.0).round("float64")
    array([-1.,  1.])
    """
    inp = NormInputs(x, weight=weight, bias=bias, eps=eps, weight_offset=weight_offset)
    st = _Ln(inp)
    # fl(fl(fl(x - mu) * fl(w + offset)) * r): the scale's rounding, the product, the final product.
    g_a = gamma(inp.offset + (inp.scale is not None) + 1)
    consts = np.array([st.g1, st.gl, st.gv, g_a, SAFETY])
    y, bound = np.empty(inp.x.shape), np.empty(inp.x.shape)
    with np.errstate(all="ignore"):
        kernels.ln_forward(
            inp.rows,
            inp.x,
            _vector(inp.scale),
            _vector(inp.bias),
            inp.eps,
            consts,
            y,
            bound,
            st.fast,
            work=inp.x.size,
            threads=threads,
        )
    bound[~st.proven_rows()] = np.inf
    undefined = inp.undefined(st.bad_rows)

    @cache
    def scaled_row(row: int) -> list[Fraction]:
        return inp.scaled_q(st.centered_q(row))

    def element(i: int) -> RootSum:
        row, j = divmod(i, inp.n)
        _, v = st.mean_var_q(row)
        b = Fraction(0) if inp.bias_q is None else inp.bias_q[j]
        return RootSum(((scaled_row(row)[j], v),), b)

    return Exact(y.reshape(inp.shape), bound.reshape(inp.shape), element, undefined, threads=threads)


def layer_norm_backward(
    x: object,
    grad_output: object,
    weight: object = None,
    bias: object = None,
    eps: float = 1e-5,
    weight_offset: int = 0,
    *,
    threads: int | None = None,
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
    n = inp.n
    theta_h = gamma(inp.scale_roundings)  # h = fl(g * scale)
    consts = np.array([st.g1, st.gl, st.gv, theta_h / (1 - theta_h), SAFETY])
    dx, bound_dx = np.empty(inp.x.shape), np.empty(inp.x.shape)
    chunks = kernels.chunks(inp.rows)
    part, theta_r = np.zeros((5, chunks, n)), np.empty(inp.rows)
    with np.errstate(all="ignore"):
        kernels.ln_backward(
            chunks,
            inp.x,
            inp.grad,
            _vector(inp.scale),
            inp.eps,
            consts,
            dx,
            bound_dx,
            st.fast,
            theta_r,
            part,
            work=inp.x.size,
            threads=threads,
        )
    # cols[0], cols_abs[0]: sum g (x - mu) r and of magnitudes; cols[1], cols_abs[1]: of g; shift: |g| r_up e_mu.
    cols, cols_abs, shift = np.empty((2, n)), np.empty((2, n)), np.empty(n)
    for q, out in enumerate((cols[0], cols_abs[0], cols[1], cols_abs[1], shift)):
        kernels.column_finish(part[q], out)
    proven = st.proven_rows()
    theta_r_max = float(theta_r[proven].max(initial=0.0))
    bound_dx[~proven] = np.inf
    undefined_dx = inp.undefined(st.bad_rows, gradient=True)

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

    grad_input = Exact(dx.reshape(inp.shape), bound_dx.reshape(inp.shape), dx_element, undefined_dx, threads=threads)
    x_all, g_all = inp.x, inp.grad
    gr = gamma(psum_depth(inp.rows))
    grad_weight = grad_bias = None
    if inp.weight is not None:
        # Terms fl(fl(g * d) * r): d's relative rounding and two products, r's error,
        # the row psum; mu's error reaches every term through d (the shift).
        rho_t = compose(theta_r_max, gamma(3), gr)
        bound_dw = (rho_t / (1 - rho_t) * cols_abs[0] / (1 - gr) + shift) * SAFETY
        if not proven.all():
            bound_dw[:] = np.inf

        def dw_element(j: int) -> RootSum:
            terms = []
            for row in range(inp.rows):
                mu, v = st.mean_var_q(row)
                terms.append((Fraction(float(g_all[row, j])) * (Fraction(float(x_all[row, j])) - mu), v))
            return RootSum(tuple(terms))

        grad_weight = Exact(
            cols[0], bound_dw, dw_element, st.bad_rows.any() | ~inp.finite_grad.all(axis=0), threads=threads
        )
    if inp.bias is not None:
        bound_db = gr * cols_abs[1] / (1 - gr) * SAFETY
        if not inp.fast_rows.all():
            bound_db[:] = np.inf

        def db_element(j: int) -> RootSum:
            return RootSum((), dyadic_sum([Fraction(v) for v in g_all[:, j].tolist()]))

        undefined_db = np.asarray(~inp.finite_grad.all(axis=0))  # (an array: finite_grad is 2-D)
        grad_bias = Exact(cols[1], bound_db, db_element, undefined_db, threads=threads)
    return grad_input, grad_weight, grad_bias
