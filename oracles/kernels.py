"""Compiled float64 fast paths with proven error bounds (numba, IEEE semantics).

No ``fastmath``: every operation rounds once, in program order, so the running
error analysis of ``oracles.fastpath`` holds line by line. Sums use one fixed
order, ``psum``: chunks of 16 added in sequence, then pairwise; every term goes
through at most ``fastpath.psum_depth(n)`` additions. Column sums over rows use
the same order. The constants (relative bounds) are computed in Python and
passed in; each kernel states which bound it applies.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}  # IEEE: x / 0 is inf, not an exception
_CHUNK = 16
#: Powers of two 2**k for k in [-1022, 1023], indexed by k + 1022.
_POW2 = np.ldexp(1.0, np.arange(-1022, 1024))
_ABS = np.int64(0x7FFFFFFFFFFFFFFF)
_WIDEN = 1 + 2.0**-40  # covers the rounding of the slack computations


@njit(**_JIT)
def _psum(t: np.ndarray, n: int, scratch: np.ndarray) -> float:
    """Sum of ``t[:n]`` in the fixed order (16-chunks in sequence, then pairwise)."""
    if n == 0:
        return 0.0
    m = 0
    for c in range(0, n, _CHUNK):
        s = 0.0
        for k in range(c, min(n, c + _CHUNK)):
            s += t[k]
        scratch[m] = s
        m += 1
    while m > 1:
        h = m // 2
        for i in range(h):
            scratch[i] = scratch[2 * i] + scratch[2 * i + 1]
        if m % 2:
            scratch[h] = scratch[m - 1]
            m = h + 1
        else:
            m = h
    return scratch[0]


@njit(**_JIT)
def _load(src: np.ndarray, i: int, dst: np.ndarray) -> np.ndarray:
    """Row ``i`` of ``src`` (float32 or float64) as float64 in ``dst``: all arithmetic is float64."""
    for j in range(dst.size):
        dst[j] = src[i, j]
    return dst


@njit(**_JIT)
def _column_push(acc: np.ndarray, partials: np.ndarray, row: int, rows: int) -> None:
    """After adding row ``row`` into ``acc``: close a chunk of 16 rows into ``partials``."""
    if row % _CHUNK == _CHUNK - 1 or row == rows - 1:
        k = row // _CHUNK
        for j in range(acc.size):
            partials[k, j] = acc[j]
            acc[j] = 0.0


@njit(**_JIT)
def _column_finish(partials: np.ndarray, out: np.ndarray) -> None:
    """Pairwise sum of the chunk partials (rows of ``partials``) into ``out``."""
    m = partials.shape[0]
    while m > 1:
        h = m // 2
        for i in range(h):
            for j in range(out.size):
                partials[i, j] = partials[2 * i, j] + partials[2 * i + 1, j]
        if m % 2:
            partials[h, :] = partials[m - 1, :]
            m = h + 1
        else:
            m = h
    if partials.shape[0]:
        out[:] = partials[0, :]
    else:
        out[:] = 0.0


@njit(**_JIT)
def _column_partials(rows: int, n: int) -> np.ndarray:
    """Scratch for :func:`_column_push`: one row per chunk of 16 rows."""
    return np.zeros(((rows + _CHUNK - 1) // _CHUNK, n))


@njit(**_JIT)
def _rms_row(xr: np.ndarray, eps: float, t: np.ndarray, scratch: np.ndarray) -> tuple[float, float]:
    """``v = mean(x**2) + eps`` and ``r = 1/sqrt(v)`` of a float64 row."""
    n = xr.size
    for j in range(n):
        t[j] = xr[j] * xr[j]
    v = _psum(t, n, scratch) / n + eps
    return v, 1.0 / math.sqrt(v)


@njit(**_JIT)
def rms_forward(x, scale, eps, rel, y, bound):
    """``y = x * scale * r`` with ``|y - exact| <= rel * |y|`` (``scale`` empty: no weight)."""
    rows, n = x.shape
    t, xr = np.empty(n), np.empty(n)
    scratch = np.empty(n // _CHUNK + 2)
    for i in range(rows):
        _load(x, i, xr)
        _, r = _rms_row(xr, eps, t, scratch)
        for j in range(n):
            a = xr[j] * scale[j] if scale.size else xr[j]
            yy = a * r
            y[i, j] = yy
            bound[i, j] = abs(yy) * rel


@njit(**_JIT)
def rms_backward(x, g, scale, eps, c, dx, bound_dx, dw, dw_abs):
    """grad_input with its bound, and grad_weight column sums (``dw`` size 0: none).

    ``c`` holds the constants (see ``rmsnorm._backward_constants``):
    th, g1, k_ec, gl, theta_iv, rho_k, rho1, r_up_factor, safety.
    """
    th, g1, k_ec, gl, theta_iv, rho_k, rho1, r_up_factor, safety = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
    rows, n = x.shape
    t, xr, gr = np.empty(n), np.empty(n), np.empty(n)
    scratch = np.empty(n // _CHUNK + 2)
    with_dw = dw.size > 0
    acc, acc_abs = np.zeros(n), np.zeros(n)
    part, part_abs = _column_partials(rows, n), _column_partials(rows, n)
    for i in range(rows):
        _load(x, i, xr)
        _load(g, i, gr)
        v, r = _rms_row(xr, eps, t, scratch)
        for j in range(n):
            h = gr[j] * scale[j] if scale.size else gr[j]
            t[j] = h * xr[j]
        cc = _psum(t, n, scratch) / n
        for j in range(n):
            t[j] = abs(t[j])
        pabs = _psum(t, n, scratch)
        e_c = k_ec * pabs / (n * (1 - gl)) + g1 * abs(cc)
        iv = 1.0 / v
        k = cc * iv
        e_k = e_c * iv / (1 - theta_iv) + abs(k) * rho_k / (1 - rho_k)
        r_up = r * r_up_factor
        for j in range(n):
            h = gr[j] * scale[j] if scale.size else gr[j]
            m = xr[j] * k
            z = h - m
            d = r * z
            dx[i, j] = d
            err_z = abs(xr[j]) * e_k + g1 * (abs(m) + abs(z)) + th * abs(h)
            bound_dx[i, j] = (rho1 / (1 - rho1) * abs(d) + r_up * err_z) * safety
            if with_dw:
                term = (gr[j] * xr[j]) * r
                acc[j] += term
                acc_abs[j] += abs(term)
        if with_dw:
            _column_push(acc, part, i, rows)
            _column_push(acc_abs, part_abs, i, rows)
    if with_dw:
        _column_finish(part, dw)
        _column_finish(part_abs, dw_abs)


@njit(**_JIT)
def _ln_row(xr, eps, g1, gl, gv, safety, t, scratch):
    """LayerNorm statistics of row ``i`` with their proven bounds.

    Returns ``(mu, e_mu, v, theta_v, r, theta_r, r_up)``: ``|mu - mean| <= e_mu``
    (corrected two-pass mean), ``v = var + eps`` within relative ``theta_v``
    (``inf`` where unproven), ``r = 1/sqrt(v)`` within ``theta_r``, ``r_up`` above
    the exact r. The shift of mu only adds ``e_mu**2`` to the variance, since
    ``sum((d + c)**2) = sum(d**2) + n c**2`` exactly.
    """
    n = xr.size
    m0 = _psum(xr, n, scratch) / n
    for j in range(n):
        t[j] = xr[j] - m0
    c = _psum(t, n, scratch) / n
    for j in range(n):
        t[j] = abs(t[j])
    a0 = _psum(t, n, scratch)
    mu = m0 + c
    e_mu = (g1 * (abs(mu) + abs(c)) + (g1 + gl) * a0 / (n * (1 - gl))) * safety
    for j in range(n):
        d = xr[j] - mu
        t[j] = d * d
    v = _psum(t, n, scratch) / n + eps
    v_lo = v / (1 + gv) - e_mu * e_mu
    theta_v = gv + (1 + gv) * e_mu * e_mu / v_lo if v_lo > 0 else math.inf
    if not theta_v < 0.25:
        theta_v = math.inf
    r = 1.0 / math.sqrt(v)
    theta_r = (1 + theta_v / (2 * (1 - theta_v))) * (1 + g1) * (1 + g1) - 1
    return mu, e_mu, v, theta_v, r, theta_r, r * (1 + theta_r / (1 - theta_r))


@njit(**_JIT)
def ln_forward(x, scale, bias, eps, c, y, bound, fast):
    """``y = (x - mu) * scale * r + bias`` with its bound; ``fast[i]`` false where unproven.

    ``c``: g1, gl, gv, g_a (roundings of (x - mu) * scale * r), safety.
    """
    g1, gl, gv, g_a, safety = c[0], c[1], c[2], c[3], c[4]
    rows, n = x.shape
    t, xr = np.empty(n), np.empty(n)
    scratch = np.empty(n // _CHUNK + 2)
    for i in range(rows):
        _load(x, i, xr)
        mu, e_mu, _, theta_v, r, theta_r, r_up = _ln_row(xr, eps, g1, gl, gv, safety, t, scratch)
        fast[i] = theta_v < math.inf
        rho = (1 + theta_r) * (1 + g_a) - 1
        rho_p = (rho + g1) / (1 - rho)
        for j in range(n):
            d = xr[j] - mu
            a = d * scale[j] if scale.size else d
            p = a * r
            s_abs = abs(scale[j]) / (1 - g1) if scale.size else 1.0
            bnd = rho_p * abs(p) + e_mu * r_up * s_abs
            if bias.size:
                p = p + bias[j]
                bnd += g1 * abs(p)
            y[i, j] = p
            bound[i, j] = bnd * safety


@njit(**_JIT)
def ln_backward(x, g, scale, eps, c, dx, bound_dx, fast, cols, cols_abs, shift):
    """grad_input with its bound, and column sums for grad_weight and grad_bias.

    ``c``: g1, gl, gv, th, safety. ``cols[0]``/``cols_abs[0]`` receive the sums of
    ``g * (x - mu) * r`` and of their magnitudes, ``cols[1]``/``cols_abs[1]`` those
    of ``g``; ``shift`` the sum of ``|g| * r_up * e_mu`` (the effect of mu's error
    on grad_weight). Returns the largest theta_r of the proven rows.
    """
    g1, gl, gv, th, safety = c[0], c[1], c[2], c[3], c[4]
    rows, n = x.shape
    t, xr, gr = np.empty(n), np.empty(n), np.empty(n)
    scratch = np.empty(n // _CHUNK + 2)
    acc = np.zeros((4, n))
    part = np.zeros((4, (rows + _CHUNK - 1) // _CHUNK, n))
    theta_r_max = 0.0
    for i in range(rows):
        _load(x, i, xr)
        _load(g, i, gr)
        mu, e_mu, v, theta_v, r, theta_r, r_up = _ln_row(xr, eps, g1, gl, gv, safety, t, scratch)
        fast[i] = theta_v < math.inf
        if fast[i]:
            theta_r_max = max(theta_r_max, theta_r)
        for j in range(n):
            t[j] = gr[j] * scale[j] if scale.size else gr[j]
        mh = _psum(t, n, scratch) / n
        for j in range(n):
            t[j] = abs(t[j])
        habs = _psum(t, n, scratch)
        e_mh = (th + gl) * habs / (n * (1 - gl)) + g1 * abs(mh)
        for j in range(n):
            h = gr[j] * scale[j] if scale.size else gr[j]
            t[j] = h * (xr[j] - mu)
        cc = _psum(t, n, scratch) / n
        for j in range(n):
            t[j] = abs(t[j])
        pabs = _psum(t, n, scratch)
        e_c = ((th + 3 * g1 + gl) * pabs + e_mu * (1 + th) * habs) / (n * (1 - gl)) + g1 * abs(cc)
        iv = 1.0 / v
        theta_iv = (1 + theta_v / (1 - theta_v)) * (1 + g1) - 1
        k = cc * iv
        rho_k = (1 + theta_iv) * (1 + g1) - 1
        e_k = e_c * iv / (1 - theta_iv) + abs(k) * rho_k / (1 - rho_k)
        rho1 = (1 + theta_r) * (1 + g1) - 1
        per_row = e_mh + (abs(k) + e_k) * e_mu
        for j in range(n):
            d = xr[j] - mu
            h = gr[j] * scale[j] if scale.size else gr[j]
            t1 = h - mh
            t2 = d * k
            z = t1 - t2
            dd = r * z
            dx[i, j] = dd
            err_z = per_row + abs(d) * (e_k + g1 * (abs(k) + e_k)) + g1 * (abs(t1) + abs(t2) + abs(z)) + th * abs(h)
            bound_dx[i, j] = (rho1 / (1 - rho1) * abs(dd) + r_up * err_z) * safety
            term = (gr[j] * d) * r
            acc[0, j] += term
            acc[1, j] += abs(term)
            acc[2, j] += gr[j]
            acc[3, j] += abs(gr[j])
            shift[j] += abs(gr[j]) * (r_up * e_mu)
        for q in range(4):
            _column_push(acc[q], part[q], i, rows)
    _column_finish(part[0], cols[0])
    _column_finish(part[1], cols_abs[0])
    _column_finish(part[2], cols[1])
    _column_finish(part[3], cols_abs[1])
    return theta_r_max


@njit(**_JIT)
def _round_slow(y, bound, p, emin, emax, maxf):
    a = abs(y)
    e = emin
    if a > 0:
        _, ex = math.frexp(a)
        e = max(ex - 1, emin)
    if e > emax:  # past the format's range the one boundary is the overflow threshold, maxf + ulp/2
        threshold = math.ldexp(2.0 - math.ldexp(1.0, -p), emax)
        return (-math.inf if y < 0 else math.inf), a - bound * _WIDEN > threshold
    q = e - p + 1
    t = math.ldexp(a, -q)
    fl = math.floor(t)
    frac = t - fl
    dist = min(abs(frac - 0.5), frac + 0.25)
    decided = dist > math.ldexp(bound, -q) * _WIDEN
    rr = fl + 1 if frac > 0.5 or (frac == 0.5 and fl % 2 == 1) else fl
    v = math.ldexp(rr, q)
    if v > maxf:
        v = math.inf
    return (-v if y < 0 else v), decided


@njit(**_JIT)
def round_bounded(approx, bound, p, emin, emax, maxf, out, decided):
    """Round ``approx`` (error at most ``bound``) to ``p`` bits; ``decided`` where proven.

    ``out`` is float64 for ``p = 53`` and float32 otherwise: for those two formats
    the store itself rounds (nearest even) in the normal range.

    The common case works on the bits: the distance to the nearest midpoint, in
    quarter float64 ulps, against the bound in the same unit. Just above a power
    of two the midpoint below is a quarter quantum away (a quarter float64 ulp
    for ``p = 53``). Zeros, values near the target's subnormal range or float64's
    extremes take ``_round_slow``.
    """
    bits = approx.view(np.int64)
    rbits = np.empty(1, dtype=np.int64)
    rval = rbits.view(np.float64)
    drop = 53 - p
    mask = (np.int64(1) << drop) - 1
    half2 = np.int64(1) << drop
    half4 = half2 << 1
    tmask = (np.int64(1) << (p - 1)) - 1
    direct = p == 53 or p == 24
    for i in range(approx.size):
        b = bits[i]
        ab = b & _ABS
        e = (ab >> 52) - 1023
        if emin <= e <= emax and e >= -970:
            low4 = (ab & mask) << 2
            d4 = abs(low4 - half4)
            if (ab >> drop) & tmask == 0:
                d4 = min(d4, low4 + (half4 >> 1))
            decided[i] = d4 > 4.0 * bound[i] * _POW2[52 - e + 1022] * _WIDEN
            if direct:  # the store into float32 / float64 rounds to nearest even (normal range)
                out[i] = approx[i]
                continue
            if drop > 0:
                ab = (ab + (half2 >> 1) - 1 + ((ab >> drop) & 1)) & ~mask
            rbits[0] = ab | (b & ~_ABS)
            v = rval[0]
            if abs(v) > maxf:
                v = -math.inf if b < 0 else math.inf
            out[i] = v
        else:
            out[i], decided[i] = _round_slow(approx[i], bound[i], p, emin, emax, maxf)
