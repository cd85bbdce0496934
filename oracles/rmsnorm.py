"""Exact RMSNorm: ``y = x / sqrt(mean(x**2) + eps) * (weight + weight_offset)`` and its gradients."""

from __future__ import annotations

from fractions import Fraction
from functools import cache

import numpy as np

from oracles import ddkernels, kernels
from oracles.exact import Exact
from oracles.fastpath import (
    DD_ADD,
    DD_DIV,
    DD_R0,
    DD_SCALED_TERM,
    SAFETY,
    U,
    compose,
    dd_column_depths,
    dd_dot_depths,
    dd_dot_error,
    dd_mul_error,
    dd_rms_theta_v,
    dd_sum_error,
    gamma,
    psum_depth,
)
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


def _dd_constants(inp: NormInputs) -> list[float]:
    """The constants every double-word RMSNorm kernel reads first (see ``ddkernels.rms_stat``)."""
    return [dd_rms_theta_v(inp.n), DD_R0, SAFETY]


def _words_block(inp: NormInputs) -> np.ndarray:
    """Empty high parts, low parts and bounds of double-word results, as one block.

    They live and die together; as one allocation, glibc's malloc keeps the block for the next call instead of
    handing three arrays' pages back to the system (on 64x4096, page faults then took over 70% of the time).
    """
    return np.empty((3, *inp.x.shape))


def _words_proven(inp: NormInputs, proven: np.ndarray) -> np.ndarray:
    """Rows the double-word kernels proved, given the scale's range."""
    return proven & inp.scale_words[2] & (inp.n < 2**24)


def rms_norm(
    x: object, weight: object = None, eps: float = 1e-6, weight_offset: int = 0, *, threads: int | None = None
) -> Exact:
    """Exact RMSNorm over the last axis of ``x``.

    ``y = x / sqrt(mean(x**2, -1) + eps) * (weight + weight_offset)``; no weight
    means a scale of 1. ``eps`` is taken at its exact binary64 value. ``threads``:
    how many threads the compiled fast path may use (default: numba's, which
    follows ``NUMBA_NUM_THREADS``); every count gives the same bits.

    >>> import numpy as np
    >>> y = rms_norm(np.array([3.0, 4.0], np.float32), eps=0.0)  # rms = sqrt(12.5)
    >>> y.round("float32").tolist()
    [0.8485281467437744, 1.1313709020614624]
    >>> y.ulp_error(np.array([0.8485282, 1.1313708], np.float32)).round(3).tolist()
    [1.156, 0.562]
    """
    inp = NormInputs(x, weight=weight, eps=eps, weight_offset=weight_offset)
    st = _Rms(inp)
    low = None
    if inp.wide:  # double words: float64 outputs are decided too
        y, low, bound = _words_block(inp)
        proven = np.empty(inp.rows, dtype=bool)
        sh, sl, _ = inp.scale_words
        consts = np.array([*_dd_constants(inp), DD_SCALED_TERM if sl.size else 0.0, dd_mul_error(U, U)])
        with np.errstate(all="ignore"):
            ddkernels.rms_forward(
                inp.rows, inp.x, sh, sl, inp.eps, consts, y, low, bound, proven, work=inp.x.size, threads=threads
            )
        bound[~_words_proven(inp, proven)] = np.inf
    else:
        y, bound = np.empty(inp.x.shape), np.empty(inp.x.shape)
        # y = fl(fl(x * scale) * r): the scale's roundings, one more, and r's error.
        rho = compose(st.theta_r, gamma(inp.scale_roundings + 1))
        with np.errstate(all="ignore"):
            rel = rho / (1 - rho) * SAFETY
            kernels.rms_forward(inp.rows, inp.x, _scale(inp), inp.eps, rel, y, bound, work=inp.x.size, threads=threads)
        bound[~inp.fast_rows] = np.inf
    undefined = inp.undefined(st.bad_rows)

    @cache
    def scaled_row(row: int) -> list[Fraction]:
        return inp.scaled_q(inp.x_q(row))

    def element(i: int) -> RootSum:
        row, j = divmod(i, inp.n)
        return RootSum(((scaled_row(row)[j], st.v_q(row)),))

    return Exact(
        y.reshape(inp.shape),
        bound.reshape(inp.shape),
        element,
        undefined,
        None if low is None else low.reshape(inp.shape),
        threads,
    )


def rms_norm_backward(
    x: object,
    grad_output: object,
    weight: object = None,
    eps: float = 1e-6,
    weight_offset: int = 0,
    *,
    threads: int | None = None,
) -> tuple[Exact, Exact | None]:
    """Exact gradients of :func:`rms_norm`: ``(grad_input, grad_weight)``.

    With ``h = grad_output * scale`` and ``xhat = x * r``:
    ``grad_input = r * (h - xhat * mean(h * xhat))`` and ``grad_weight`` sums
    ``grad_output * xhat`` over every leading dimension (``None`` without weight).
    """
    inp = NormInputs(x, weight=weight, grad_output=grad_output, eps=eps, weight_offset=weight_offset)
    assert inp.grad is not None
    st = _Rms(inp)
    n = inp.n
    backward = _backward_words if inp.wide else _backward_float64
    with np.errstate(all="ignore"):
        (dx, dx_low, bound_dx), (dw, dw_low, bound_dw) = backward(inp, st, threads)
    undefined_dx = inp.undefined(st.bad_rows, gradient=True)

    @cache
    def row_terms(row: int) -> tuple[list[Fraction], Fraction, Fraction]:
        xs, hs = inp.x_q(row), inp.scaled_q(inp.g_q(row))
        v = st.v_q(row)
        return hs, v, dyadic_sum([a * b for a, b in zip(hs, xs)]) / n / v

    def dx_element(i: int) -> RootSum:
        row, j = divmod(i, n)
        hs, v, k_q = row_terms(row)
        return RootSum(((hs[j] - inp.x_q(row)[j] * k_q, v),))

    grad_input = Exact(
        dx.reshape(inp.shape),
        bound_dx.reshape(inp.shape),
        dx_element,
        undefined_dx,
        None if dx_low is None else dx_low.reshape(inp.shape),
        threads,
    )
    if inp.weight is None:
        return grad_input, None
    undefined_dw = st.bad_rows.any() | ~inp.finite_grad.all(axis=0)
    x_all, g_all = inp.x, inp.grad

    def dw_element(j: int) -> RootSum:
        return RootSum(
            tuple(
                (Fraction(float(g_all[row, j])) * Fraction(float(x_all[row, j])), st.v_q(row))
                for row in range(inp.rows)
            )
        )

    return grad_input, Exact(dw, bound_dw, dw_element, undefined_dw, dw_low, threads)


_Approx = tuple[np.ndarray, np.ndarray | None, np.ndarray]  # float64 approximation, low parts, bound


def _backward_float64(inp: NormInputs, st: _Rms, threads: int | None) -> tuple[_Approx, _Approx]:
    """Float64 kernel: ``dx`` and ``dw`` with bounds of a few ``n u`` (16- and 32-bit inputs)."""
    assert inp.grad is not None
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
    chunks = kernels.chunks(inp.rows)
    part = np.zeros((2, chunks, n) if with_dw else (0, 0, 0))
    kernels.rms_backward(
        chunks, inp.x, inp.grad, _scale(inp), inp.eps, consts, dx, bound_dx, part, work=inp.x.size, threads=threads
    )
    bound_dx[~inp.fast_rows] = np.inf
    dw, dw_abs = np.empty(n if with_dw else 0), np.empty(n if with_dw else 0)
    if with_dw:
        kernels.column_finish(part[0], dw)
        kernels.column_finish(part[1], dw_abs)
    # Terms fl(fl(g * x) * r), summed over rows in psum order.
    gr = gamma(psum_depth(inp.rows))
    rho_t = compose(st.theta_r, gamma(int(inp.wide) + 1), gr)
    bound_dw = rho_t / (1 - rho_t) * dw_abs / (1 - gr) * SAFETY
    if not inp.fast_rows.all():
        bound_dw[:] = np.inf
    return (dx, None, bound_dx), (dw, None, bound_dw)


def _backward_words(inp: NormInputs, st: _Rms, threads: int | None) -> tuple[_Approx, _Approx]:
    """Double-word kernel: ``dx`` and ``dw`` with bounds of order ``n u**2`` (float64 inputs)."""
    assert inp.grad is not None
    n, rows = inp.n, inp.rows
    sh, sl, _ = inp.scale_words
    depth_a, _ = dd_dot_depths(n)
    consts = np.array(
        [
            *_dd_constants(inp),
            DD_SCALED_TERM if sl.size else 0.0,
            dd_mul_error(U, U),
            dd_mul_error(U, 0.0),
            DD_ADD,
            dd_dot_error(n, U),
            gamma(depth_a),
            DD_DIV,
        ]
    )
    dx, dx_low, bound_dx = _words_block(inp)
    proven = np.empty(rows, dtype=bool)
    with_dw = inp.weight is not None
    chunks = kernels.chunks(rows)
    cols = np.zeros((4, chunks, n) if with_dw else (0, 0, 0))
    ddkernels.rms_backward(
        chunks,
        inp.x,
        inp.grad,
        sh,
        sl,
        inp.eps,
        consts,
        dx,
        dx_low,
        bound_dx,
        proven,
        cols,
        work=inp.x.size,
        threads=threads,
    )
    proven = _words_proven(inp, proven)
    bound_dx[~proven] = np.inf
    if not with_dw:
        return (dx, dx_low, bound_dx), (np.empty(0), None, np.empty(0))
    out = np.empty((4, n))
    ddkernels.dd_column_finish(cols, out)
    depth_a, depth_c = dd_column_depths(rows)
    # The terms' own bounds (out[3], with their underflows scaling back) and the TwoSum tree over rows.
    summation = dd_sum_error(depth_a, depth_c, U * (1 + U)) * out[2] / (1 - gamma(depth_a))
    bound_dw = (out[3] + summation) * SAFETY
    if not proven.all():
        bound_dw[:] = np.inf
    return (dx, dx_low, bound_dx), (out[0], out[1], bound_dw)
