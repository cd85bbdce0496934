"""Compiled double-word fast paths for float64 inputs (numba, IEEE semantics, proven bounds).

A float64 evaluation errs by ``n u`` relative at best, so it cannot decide the
rounding of a float64 output: every element would take the exact path. Here each
value is a double word ``hi + lo`` (``hi`` the float64 nearest to the sum, so
``|lo| <= u |hi|``, ``u = 2**-53``), built from error-free transformations
(Knuth's TwoSum, the fma TwoProd), with a proven bound of order ``n u**2``
relative: a float64 rounding is decided unless the exact value lies within about
``2**-85`` relative of a midpoint. The analysis is docs/theory.md, section 8; the
constants come from ``oracles.fastpath`` and each function says which it applies.

Rows are scaled by powers of two first (exact: RMSNorm's ``x * r`` does not change
when ``x`` is scaled and ``eps`` with it, and ``dx`` scales back exactly), so that
``max(|x'|, sqrt(eps')) in [1/2, 1)``: the statistic is near 1, every product of
the inputs lies far above the underflow threshold and far below overflow. A row is
*proven* where the scaling is exact: ``|x'| >= 2**-300`` for every nonzero x (likewise the
gradient), ``eps' = 0`` or ``>= 2**-960``, and the scale ``2**e`` representable;
the caller sends the other rows to the exact path.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba.core import types as nbtypes
from numba.extending import intrinsic

from oracles.kernels import _ABS, _CHUNK, _JIT, _POW2, Kernel, bitcast

_U = 2.0**-53
#: An upper bound on the error of one product or quotient that underflows (half the smallest subnormal, doubled).
ETA = 2.0**-1074
_SMALLEST_SCALED = 2.0**-300  # nonzero inputs below this (after scaling) are not proven
_SMALLEST_EPS = 2.0**-960
_SCALE_RANGE = (2.0**-1000, 2.0**1000)


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` with one rounding (LLVM's ``llvm.fma``, never split in two)."""
    sig = nbtypes.float64(nbtypes.float64, nbtypes.float64, nbtypes.float64)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


@njit(**_JIT)
def compose(a: float, b: float) -> float:
    """Relative bound of a product of two factors within ``a`` and ``b`` of 1: ``a + b + a b``.

    (``(1 + a) (1 + b) - 1`` would lose every bound below ``u``.)
    """
    return a + b + a * b


@njit(**_JIT)
def two_sum(a: float, b: float) -> tuple[float, float]:
    """``(s, t)`` with ``s = fl(a + b)`` and ``s + t = a + b`` exactly (Knuth; any finite a, b)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@njit(**_JIT)
def fast_two_sum(a: float, b: float) -> tuple[float, float]:
    """``(s, t)`` with ``s + t = a + b`` exactly, where ``|a| >= |b|`` or ``a = 0`` (Dekker)."""
    s = a + b
    return s, b - (s - a)


@njit(**_JIT)
def two_prod(a: float, b: float) -> tuple[float, float]:
    """``(p, e)`` with ``p = fl(a * b)`` and ``p + e = a * b`` exactly unless ``e`` underflows."""
    p = a * b
    return p, fma(a, b, -p)


@njit(**_JIT)
def dd_mul(ah: float, al: float, bh: float, bl: float) -> tuple[float, float]:
    """The double-word product ``(ah + al) (bh + bl)``, normalized; error ``fastpath.dd_mul_error``."""
    p, e = two_prod(ah, bh)
    return fast_two_sum(p, (e + ah * bl) + al * bh)


@njit(**_JIT)
def dd_add(ah: float, al: float, bh: float, bl: float) -> tuple[float, float]:
    """The double-word sum, normalized; error at most ``fastpath.DD_ADD * (|ah| + |bh|)``."""
    s, t = two_sum(ah, bh)
    return two_sum(s, (t + al) + bl)


#: Lanes of a double-word row sum (16 independent TwoSum chains, which the compiler vectorizes).
LANES = 16


@njit(**_JIT)
def products(ah: np.ndarray, al: np.ndarray, b: np.ndarray, p: np.ndarray, e: np.ndarray) -> None:
    """``p[j] + e[j]`` for ``(ah[j] + al[j]) b[j]``: exact TwoProd; ``al b`` (``al`` size 0: none) rounds into e."""
    if al.size:
        for j in range(b.size):
            pj = ah[j] * b[j]
            p[j] = pj
            e[j] = fma(ah[j], b[j], -pj) + al[j] * b[j]
    else:
        for j in range(b.size):
            pj = ah[j] * b[j]
            p[j] = pj
            e[j] = fma(ah[j], b[j], -pj)


@njit(**_JIT, inline="always")
def _dot_term(ah: np.ndarray, al: np.ndarray, b: np.ndarray, k: int) -> tuple[float, float]:
    """``(p, e)`` for ``(ah[k] + al[k]) b[k]``: exact TwoProd of ``ah b``; ``al b`` (``al`` size 0: none) rounds
    into e."""
    p = ah[k] * b[k]
    e = fma(ah[k], b[k], -p)
    if al.size:
        e = e + al[k] * b[k]
    return p, e


@njit(**_JIT)
def dd_dot(ah: np.ndarray, al: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """``sum((ah + al) * b)`` as a normalized double word and ``sum |fl(ah * b)|`` in float64.

    The terms ``p + e`` (:func:`_dot_term`) go into :data:`LANES` lanes (element j
    into lane ``j mod LANES``), each a TwoSum chain of the ``p`` whose errors and
    the ``e`` collect in a float64 companion, then the lanes in turn. Error:
    ``fastpath.dd_dot_error``.
    """
    n = b.size
    s, c, a = np.zeros(LANES), np.zeros(LANES), np.zeros(LANES)
    m = n - n % LANES
    for j in range(0, m, LANES):
        for lane in range(LANES):
            x, ex = _dot_term(ah, al, b, j + lane)
            s[lane], t = two_sum(s[lane], x)
            c[lane] += t + ex
            a[lane] += abs(x)
    for lane in range(n - m):
        x, ex = _dot_term(ah, al, b, m + lane)
        s[lane], t = two_sum(s[lane], x)
        c[lane] += t + ex
        a[lane] += abs(x)
    hi, lo, total = s[0], c[0], a[0]
    for lane in range(1, LANES):
        hi, t = two_sum(hi, s[lane])
        lo += t + c[lane]
        total += a[lane]
    hi, lo = two_sum(hi, lo)
    return hi, lo, total


@njit(**_JIT)
def dd_div_int(hi: float, lo: float, n: int) -> tuple[float, float]:
    """``(hi + lo) / n`` for a normalized double word and an integer ``n < 2**53``; error ``fastpath.DD_DIV``.

    ``hi - q n`` is exact for ``q = fl(hi / n)`` (the remainder of a correctly
    rounded quotient is a float), so only the low part's quotient rounds.
    """
    q = hi / n
    rem = fma(-q, float(n), hi)
    return fast_two_sum(q, (rem + lo) / n)


@njit(**_JIT)
def scale_by_pow2(hi: np.ndarray, lo: np.ndarray, bound: np.ndarray, k: int) -> None:
    """Multiply double words and their bounds by ``2**k`` in place.

    Exact unless a product underflows (each then errs by at most half the smallest
    subnormal: a nonzero bound grows by ``3 ETA``; a zero bound means an exact zero)
    or overflows (to inf: undecided).
    """
    if -1022 <= k <= 1023:
        f = _POW2[k + 1022]
        for j in range(hi.size):
            hi[j] *= f
            lo[j] *= f
            bound[j] = bound[j] * f + (3 * ETA if bound[j] != 0.0 else 0.0)
    else:
        for j in range(hi.size):
            hi[j] = math.ldexp(hi[j], k)
            lo[j] = math.ldexp(lo[j], k)
            bound[j] = math.ldexp(bound[j], k) + (3 * ETA if bound[j] != 0.0 else 0.0)


@njit(**_JIT)
def scaled_row(src: np.ndarray, i: int, sqrt_eps: float, dst: np.ndarray) -> tuple[int, bool]:
    """Row ``i`` of ``src`` times ``2**-e`` in ``dst``, with ``max(|x|, sqrt_eps) 2**-e`` in [1/2, 1).

    Returns ``(e, exact)``: ``exact`` where every nonzero value, scaled, is at least
    ``2**-300`` (so normal, and the scaling exact; not flushed to zero) and ``2**e`` in range. An all-zero
    row (with ``sqrt_eps = 0``) keeps ``e = 0``. The largest and the least nonzero
    magnitude come from one pass over the bits (ordered as the magnitudes are, NaN
    above inf): the scaling is monotonic, so the least decides for every element.
    """
    row = src[i]
    top, least = np.int64(0), _ABS
    for j in range(row.size):
        ab = bitcast(np.float64(row[j])) & _ABS
        top = max(top, ab)
        least = min(least, ab if ab != 0 else _ABS)
    m = bitcast(top)
    if m <= sqrt_eps:  # (NaN stays: the row is then unproven)
        m = sqrt_eps
    ok = m == 0.0 or _SCALE_RANGE[0] <= m <= _SCALE_RANGE[1]
    e = math.frexp(m)[1] if ok else 0
    f = _POW2[1022 - e]
    ok = ok and (least == _ABS or bitcast(least) * f >= _SMALLEST_SCALED)
    for j in range(row.size):
        dst[j] = row[j] * f
    return e, ok


@njit(**_JIT)
def _scaled_eps(eps: float, e: int) -> tuple[float, bool]:
    """``eps 2**-2e``, and whether it is exact (zero, or at least ``2**-960``)."""
    f = _POW2[1022 - e]
    s = (eps * f) * f
    return s, eps == 0.0 or s >= _SMALLEST_EPS


@njit(**_JIT)
def rms_stat(xs: np.ndarray, eps_s: float, c: np.ndarray) -> tuple[float, float, float]:
    """``r = 1/sqrt(mean(xs**2) + eps_s)`` of a scaled row as ``(rh, rl, theta_r)``: ``|rh + rl - r| <= theta_r r``.

    ``c``: theta_v (the relative bound of the double-word ``v``, see
    ``fastpath.dd_rms_theta_v``), d0 (of ``r0 = fl(1/fl(sqrt(vh)))``), safety.
    One Newton step from ``r0``: ``r1 = r0 + r0 rho / 2``
    with the residual ``rho = 1 - v r0**2`` computed to a few ``u**2``
    (docs/theory.md, section 8).
    """
    theta_v, d0, safety = c[0], c[1], c[2]
    sh, sl, _ = dd_dot(xs, xs[:0], xs)
    qh, ql = dd_div_int(sh, sl, xs.size)
    vh, t = two_sum(qh, eps_s)
    vh, vl = fast_two_sum(vh, t + ql)
    r0 = 1.0 / math.sqrt(vh)
    pr, er = two_prod(r0, r0)
    z1 = fma(-vh, pr, 1.0)
    w = vl * pr
    z2 = fma(vh, er, w)
    rho = z1 - z2
    e_rho = _U * (abs(rho) + abs(z1) + abs(z2) + abs(w)) + abs(vl * er)
    rh, rl = fast_two_sum(r0, (r0 * rho) * 0.5)
    theta_n = 1.5 * d0 * d0 + 0.5 * d0**3 + (1 + d0) * (e_rho + _U * abs(rho)) / 2
    theta_r = compose(theta_n, theta_v / (2 * (1 - theta_v))) * safety
    return rh, rl, theta_r


@njit(**_JIT)
def scaled_terms(v: np.ndarray, sh: np.ndarray, sl: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> None:
    """``v * scale`` as normalized double words ``hi + lo``.

    ``sh`` size 0: no scale (``v`` itself); ``sl`` size 0: a float64 scale (exact
    TwoProd); else the double word ``sh + sl`` (``1 + weight``), whose low part's
    product rounds (``fastpath.DD_SCALED_TERM``).
    """
    if not sh.size:
        for j in range(v.size):
            hi[j], lo[j] = v[j], 0.0
        return
    products(v, v[:0], sh, hi, lo)
    if sl.size:
        for j in range(v.size):
            hi[j], lo[j] = fast_two_sum(hi[j], lo[j] + v[j] * sl[j])


@Kernel
def rms_forward(start, stop, x, sh, sl, eps, c, y, y_lo, bound, proven):
    """Rows ``start:stop`` of ``y = x * scale * r`` as ``y + y_lo`` with ``|y + y_lo - exact| <= bound``; ``proven[i]``.

    ``c``: theta_v, d0, safety (see :func:`rms_stat`), theta_a (the scaled term
    ``x scale``), theta_mul (``dd_mul`` of it by r). ``y`` does not change under the
    scaling, so needs no scaling back.
    """
    n = x.shape[1]
    theta_a, theta_mul, safety = c[3], c[4], c[2]
    sqrt_eps = math.sqrt(eps)
    xs, ah, al = np.empty(n), np.empty(n), np.empty(n)
    for i in range(start, stop):
        e, ok = scaled_row(x, i, sqrt_eps, xs)
        eps_s, ok_eps = _scaled_eps(eps, e)
        proven[i] = ok and ok_eps
        rh, rl, theta_r = rms_stat(xs, eps_s, c)
        rel = compose(compose(theta_a, theta_r), theta_mul)
        rel = rel / (1 - rel) * (1 + _U) * safety
        scaled_terms(xs, sh, sl, ah, al)
        yr, lr, br = y[i], y_lo[i], bound[i]
        for j in range(n):
            yh, yl = dd_mul(ah[j], al[j], rh, rl)
            yr[j] = yh
            lr[j] = yl
            br[j] = abs(yh) * rel


@Kernel
def rms_backward(start, stop, x, g, sh, sl, eps, c, dx, dx_lo, bound_dx, proven, cols):
    """Chunks ``start:stop`` of grad_input as ``dx + dx_lo`` with its bound, and of grad_weight's column sums.

    ``c``: theta_v, d0, safety, theta_h (``h = g scale``), theta_mul (dd by dd),
    theta_mul1 (dd by float), dd_add, the dot's ``kappa`` and ``gamma`` (its abs
    sum), theta_div. ``cols`` (4, chunks, n; size 0: no weight) receives per chunk
    of 16 rows the double-word column sums of ``g x r`` (hi, lo), of their
    magnitudes and of their error bounds.
    """
    rows, n = x.shape
    safety, theta_h, theta_mul, theta_mul1 = c[2], c[3], c[4], c[5]
    dd_add_err, kappa, gamma_abs, theta_div = c[6], c[7], c[8], c[9]
    with_dw = cols.size > 0
    sqrt_eps = math.sqrt(eps)
    rho_t = theta_mul / (1 - theta_mul)
    xs, gs, hh, hl = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for i in range(start * _CHUNK, min(rows, stop * _CHUNK)):
        ex, okx = scaled_row(x, i, sqrt_eps, xs)
        eg, okg = scaled_row(g, i, 0.0, gs)
        eps_s, ok_eps = _scaled_eps(eps, ex)
        proven[i] = okx and okg and ok_eps
        rh, rl, theta_r = rms_stat(xs, eps_s, c)
        scaled_terms(gs, sh, sl, hh, hl)
        sum_h, sum_l, sum_abs = dd_dot(hh, hl, xs)
        # C = sum(h x) / n; the h's own errors reach it through sum |h x|.
        mh, ml = dd_div_int(sum_h, sum_l, n)
        e_c = (kappa + theta_h * (1 + 4 * _U)) * sum_abs / (1 - gamma_abs) / n + theta_div * abs(mh) * (1 + _U)
        ivh, ivl = dd_mul(rh, rl, rh, rl)
        theta_iv = compose(compose(theta_r, theta_r), theta_mul)
        kh, kl = dd_mul(mh, ml, ivh, ivl)
        c_abs = abs(mh) * (1 + _U)
        e_k = abs(ivh) * (1 + _U) * (theta_mul * c_abs + e_c + (c_abs + e_c) * theta_iv / (1 - theta_iv))
        r_up = abs(rh) * (1 + _U) / (1 - theta_r)
        per_row = theta_mul1 * abs(kh) * (1 + _U) + e_k
        eta_m = ETA if kh != 0.0 else 0.0  # the products k x' may underflow (an exact zero may not)
        dr, lr, br = dx[i], dx_lo[i], bound_dx[i]
        for j in range(n):
            mh_, ml_ = dd_mul(kh, kl, xs[j], 0.0)
            zh, zl = dd_add(hh[j], hl[j], -mh_, -ml_)
            dh, dl = dd_mul(rh, rl, zh, zl)
            err_z = theta_h * abs(hh[j]) * (1 + 2 * _U) + dd_add_err * (abs(hh[j]) + abs(mh_))
            err_z += abs(xs[j]) * per_row + (eta_m if xs[j] != 0.0 else 0.0)
            bnd = (rho_t * abs(dh) + r_up * (theta_r * abs(zh) + err_z)) * (1 + 2 * _U)
            dr[j] = dh
            lr[j] = dl
            br[j] = (bnd + (1.5 * ETA if zh != 0.0 else 0.0)) * safety
        scale_by_pow2(dr, lr, br, eg - ex)
        if with_dw:
            rel = compose(theta_r, theta_mul)
            rel = rel / (1 - rel) * (1 + _U) * safety
            f = _POW2[eg + 1022]
            ch = i // _CHUNK
            c0, c1, c2, c3 = cols[0, ch], cols[1, ch], cols[2, ch], cols[3, ch]
            for j in range(n):
                ph, pl = two_prod(gs[j], xs[j])
                th, tl = dd_mul(ph, pl, rh, rl)
                th, tl = th * f, tl * f
                c0[j], t = two_sum(c0[j], th)
                c1[j] += t + tl
                c2[j] += abs(th)
                c3[j] += abs(th) * rel + (3 * ETA if ph != 0.0 else 0.0)  # underflows scaling back


@njit(**_JIT)
def dd_column_finish(cols: np.ndarray, out: np.ndarray) -> None:
    """Pairwise sums of the chunk partials of :func:`rms_backward` into ``out`` (4, n).

    ``out[0] + out[1]``: the double-word sum (TwoSum of the high parts, their
    errors and the low parts in float64); ``out[2]``, ``out[3]``: the float64 sums
    of the magnitudes and the error bounds. Error: ``fastpath.dd_column_error``.
    """
    m = cols.shape[1]
    n = cols.shape[2]
    while m > 1:
        h = m // 2
        for i in range(h):
            for j in range(n):
                s, t = two_sum(cols[0, 2 * i, j], cols[0, 2 * i + 1, j])
                cols[0, i, j] = s
                cols[1, i, j] = (cols[1, 2 * i, j] + cols[1, 2 * i + 1, j]) + t
                cols[2, i, j] = cols[2, 2 * i, j] + cols[2, 2 * i + 1, j]
                cols[3, i, j] = cols[3, 2 * i, j] + cols[3, 2 * i + 1, j]
        if m % 2:
            for k in range(cols.shape[0]):
                for j in range(n):
                    cols[k, h, j] = cols[k, m - 1, j]
            m = h + 1
        else:
            m = h
    for j in range(n):
        if m:
            out[0, j], out[1, j] = two_sum(cols[0, 0, j], cols[1, 0, j])
            out[2, j], out[3, j] = cols[2, 0, j], cols[3, 0, j]
        else:
            for k in range(out.shape[0]):
                out[k, j] = 0.0


__all__ = ["ETA", "_CHUNK", "dd_column_finish", "rms_backward", "rms_forward"]
