"""Compiled float64 fast paths with proven error bounds (numba, IEEE semantics).

No ``fastmath``: every operation rounds once, in program order, so the running
error analysis of ``oracles.fastpath`` holds line by line. Sums use one fixed
order, ``psum``: chunks of 16 added in sequence, then pairwise; every term goes
through at most ``fastpath.psum_depth(n)`` additions. Column sums over rows use
the same order. The constants (relative bounds) are computed in Python and
passed in; each kernel states which bound it applies.

Every core: a :class:`Kernel` is a compiled loop over tasks (rows, chunks of 16
rows whose column partial sums it keeps apart, or blocks of elements) that
releases the GIL, so the tasks can be split among threads. Every task is
computed by the same code in the same order whichever thread takes it, so the
results are bit-identical for any number of threads. Inputs under
:data:`PARALLEL_MIN_WORK` elements run on the calling thread (no thread is started).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypedDict

import numba
import numpy as np
from numba import njit
from numba.core import types as nbtypes
from numba.extending import intrinsic


class _JitOptions(TypedDict):
    """The keywords of every ``njit`` here (typed, so that ``njit(**_JIT)`` matches numba's overloads)."""

    cache: bool
    nogil: bool
    error_model: Literal["python", "numpy"]


_JIT: _JitOptions = {"cache": True, "nogil": True, "error_model": "numpy"}  # IEEE: x / 0 is inf, not an exception
# Copies into arrays are written as loops, not slice assignments: numba compiles a shape-mismatch
# error message for each slice assignment, which was nearly half of the kernels' first compile.
_CHUNK = 16
#: Inputs with fewer elements than this run on the calling thread alone.
PARALLEL_MIN_WORK = 1 << 17
_POOL: list[ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The threads that share large inputs with the calling one (started on first use)."""
    with _POOL_LOCK:
        if not _POOL:
            workers = max(1, numba.config.NUMBA_NUM_THREADS - 1)  # type: ignore[attr-defined]  # set at import from the environment
            _POOL.append(ThreadPoolExecutor(workers, thread_name_prefix="oracles"))
        return _POOL[0]


def thread_count(threads: int | None) -> int:
    """``threads``, or numba's thread count (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``), at most
    ``NUMBA_NUM_THREADS``."""
    count = numba.get_num_threads() if threads is None else int(threads)
    if count < 1:
        raise ValueError(f"threads must be at least 1, got threads={threads}")
    return min(count, numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]  # set at import from the environment


class Kernel:
    """A compiled loop ``fn(start, stop, *args)`` over tasks ``start <= t < stop``; a call splits the
    tasks into one contiguous range per thread."""

    def __init__(self, fn: Callable) -> None:
        self.compiled = njit(**_JIT)(fn)
        self.__doc__ = fn.__doc__

    def __call__(self, tasks: int, *args: object, work: int, threads: int | None = None) -> None:
        """Run tasks ``0 <= t < tasks`` on ``threads`` threads (see :func:`thread_count`); on the calling
        thread alone below :data:`PARALLEL_MIN_WORK` elements of ``work``."""
        parts = min(thread_count(threads), tasks)
        if work < PARALLEL_MIN_WORK:
            parts = 1
        if parts <= 1:
            self.compiled(0, tasks, *args)
            return
        edges = [tasks * k // parts for k in range(parts + 1)]
        others = [_pool().submit(self.compiled, edges[k], edges[k + 1], *args) for k in range(1, parts)]
        self.compiled(edges[0], edges[1], *args)
        for f in others:
            f.result()


@intrinsic
def bitcast(typingctx, v):
    """The bits of a float64 as an int64, or the float64 whose bits an int64 holds."""
    if v == nbtypes.float64:
        sig = nbtypes.int64(v)
    elif isinstance(v, nbtypes.Integer) and v.bitwidth == 64:
        sig = nbtypes.float64(v)
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


#: Powers of two 2**k for k in [-1022, 1023], indexed by k + 1022.
_POW2 = np.ldexp(1.0, np.arange(-1022, 1024))
_ABS = np.int64(0x7FFFFFFFFFFFFFFF)
_SIGN = ~_ABS
_TWO52_BITS = np.int64(0x4330000000000000)  # the bits of 2.0**52
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
def column_finish(partials: np.ndarray, out: np.ndarray) -> None:
    """Pairwise sum of the chunk partials (rows of ``partials``, overwritten) into ``out``."""
    m = partials.shape[0]
    while m > 1:
        h = m // 2
        for i in range(h):
            for j in range(out.size):
                partials[i, j] = partials[2 * i, j] + partials[2 * i + 1, j]
        if m % 2:
            for j in range(out.size):
                partials[h, j] = partials[m - 1, j]
            m = h + 1
        else:
            m = h
    for j in range(out.size):
        out[j] = partials[0, j] if partials.shape[0] else 0.0


@njit(**_JIT)
def chunks(rows: int) -> int:
    """Chunks of 16 rows: the tasks of the gradient kernels and the unit of their column sums."""
    return (rows + _CHUNK - 1) // _CHUNK


@njit(**_JIT)
def _rms_row(xr: np.ndarray, eps: float, t: np.ndarray, scratch: np.ndarray) -> tuple[float, float]:
    """``v = mean(x**2) + eps`` and ``r = 1/sqrt(v)`` of a float64 row."""
    n = xr.size
    for j in range(n):
        t[j] = xr[j] * xr[j]
    v = _psum(t, n, scratch) / n + eps
    return v, 1.0 / math.sqrt(v)


@Kernel
def rms_forward(start, stop, x, scale, eps, rel, y, bound):
    """Rows ``start:stop`` of ``y = x * scale * r`` with ``|y - exact| <= rel * |y|`` (``scale`` empty: no weight)."""
    n = x.shape[1]
    t, xr = np.empty(n), np.empty(n)
    scratch = np.empty(n // _CHUNK + 2)
    for i in range(start, stop):
        _load(x, i, xr)
        _, r = _rms_row(xr, eps, t, scratch)
        for j in range(n):
            a = xr[j] * scale[j] if scale.size else xr[j]
            yy = a * r
            y[i, j] = yy
            bound[i, j] = abs(yy) * rel


@Kernel
def rms_backward(start, stop, x, g, scale, eps, c, dx, bound_dx, part):
    """Chunks ``start:stop`` of grad_input with its bound, and of grad_weight's column sums.

    ``c`` holds the constants (see ``rmsnorm._backward_float64``):
    th, g1, k_ec, gl, theta_iv, rho_k, rho1, r_up_factor, safety. ``part[0, ch]``
    and ``part[1, ch]`` (size 0: no weight) receive chunk ch's sums of ``g x r``
    and of their magnitudes, for :func:`column_finish`.
    """
    th, g1, k_ec, gl, theta_iv, rho_k, rho1, r_up_factor, safety = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
    rows, n = x.shape
    t, xr, gr = np.empty(n), np.empty(n), np.empty(n)
    scratch = np.empty(n // _CHUNK + 2)
    with_dw = part.size > 0
    for i in range(start * _CHUNK, min(rows, stop * _CHUNK)):
        acc, acc_abs = part[0, i // _CHUNK], part[1, i // _CHUNK]
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


@Kernel
def ln_forward(start, stop, x, scale, bias, eps, c, y, bound, fast):
    """Rows ``start:stop`` of ``y = (x - mu) * scale * r + bias`` with its bound; ``fast[i]`` false where unproven.

    ``c``: g1, gl, gv, g_a (roundings of (x - mu) * scale * r), safety.
    """
    g1, gl, gv, g_a, safety = c[0], c[1], c[2], c[3], c[4]
    n = x.shape[1]
    t, xr = np.empty(n), np.empty(n)
    scratch = np.empty(n // _CHUNK + 2)
    for i in range(start, stop):
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


@Kernel
def ln_backward(start, stop, x, g, scale, eps, c, dx, bound_dx, fast, theta_rows, part):
    """Chunks ``start:stop`` of grad_input with its bound, and of the column sums for grad_weight and grad_bias.

    ``c``: g1, gl, gv, th, safety. Per chunk ch, ``part[0, ch]``/``part[1, ch]``
    receive the sums of ``g * (x - mu) * r`` and of their magnitudes,
    ``part[2, ch]``/``part[3, ch]`` those of ``g``, ``part[4, ch]`` the sum of
    ``|g| * r_up * e_mu`` (the effect of mu's error on grad_weight), for
    :func:`column_finish`. ``theta_rows[i]``: row i's bound on r.
    """
    g1, gl, gv, th, safety = c[0], c[1], c[2], c[3], c[4]
    rows, n = x.shape
    t, xr, gr = np.empty(n), np.empty(n), np.empty(n)
    scratch = np.empty(n // _CHUNK + 2)
    for i in range(start * _CHUNK, min(rows, stop * _CHUNK)):
        acc = part[:, i // _CHUNK]
        _load(x, i, xr)
        _load(g, i, gr)
        mu, e_mu, v, theta_v, r, theta_r, r_up = _ln_row(xr, eps, g1, gl, gv, safety, t, scratch)
        fast[i], theta_rows[i] = theta_v < math.inf, theta_r
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
            acc[4, j] += abs(gr[j]) * (r_up * e_mu)


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


#: Elements per task of the rounding kernel.
ROUND_BLOCK = 4096


@njit(**_JIT, inline="always")  # (inlined into loops: no call, so they are vectorized)
def round_element(approx, lo, bound, p, emin, emax, maxf):
    """The common case of :func:`round_bounded` for one element: ``(value, decided, slow)``.

    Where ``slow`` (zero, near the target's subnormal range or float64's extremes,
    where ``2**(54 - e)`` is not a float64), the other two are meaningless and
    :func:`round_slow_elements` does the element. ``lo = 0`` for a plain float64.
    """
    drop = 53 - p
    mask = (np.int64(1) << drop) - 1
    half2 = np.int64(1) << drop
    half4 = half2 << 1
    half4f = float(half4)
    b = bitcast(approx)
    ab = b & _ABS
    e = (ab >> 52) - 1023
    slow = not ((emin <= e) & (e <= emax) & (e >= -969))  # (no short circuit: no branch)
    scale4 = bitcast((1077 - e) << 52)  # 2**(54 - e): quarter float64 ulps of approx per unit
    low4 = (ab & mask) << 2
    low4f = bitcast(low4 | _TWO52_BITS) - 2.0**52  # float(low4), exactly (low4 < 2**47)
    below = 0.5 * half4f if (ab >> drop) & ((np.int64(1) << (p - 1)) - 1) == 0 else half4f
    l4 = bitcast(bitcast(lo) ^ (b & _SIGN)) * scale4  # positive: away from zero
    d4 = min(abs((low4f - half4f) + l4), abs((low4f + below) + l4))
    if low4 == half4:
        ab += (l4 > 0) - (l4 < 0)
    decided = d4 > bound * scale4 * _WIDEN
    if p == 53 or p == 24:  # the store into float64 / float32 rounds to nearest even (normal range)
        return bitcast(ab | (b & _SIGN)), decided, slow
    ab = (ab + (half2 >> 1) - 1 + ((ab >> drop) & 1)) & ~mask
    v = bitcast(ab | (b & _SIGN))
    return (v if abs(v) <= maxf else (-math.inf if b < 0 else math.inf)), decided, slow


@njit(**_JIT)
def round_slow_elements(approx, lo, bound, p, emin, emax, maxf, out, decided):
    """:func:`round_bounded` of the elements that :func:`round_element` calls slow, by ``_round_slow`` (with the
    bound widened by ``|lo|``)."""
    for i in range(approx.size):
        e = ((bitcast(approx[i]) & _ABS) >> 52) - 1023
        if not (emin <= e <= emax and e >= -969):
            low = 0.0 if lo is None else lo[i]
            out[i], decided[i] = _round_slow(approx[i], bound[i] + abs(low), p, emin, emax, maxf)


@njit(**_JIT)
def _round_range(approx, lo, bound, p, emin, emax, maxf, out, decided):
    """:func:`round_bounded` of whole arrays."""
    slow = 0
    for i in range(approx.size):
        out[i], decided[i], s = round_element(approx[i], 0.0 if lo is None else lo[i], bound[i], p, emin, emax, maxf)
        slow += s
    if slow:
        round_slow_elements(approx, lo, bound, p, emin, emax, maxf, out, decided)


@Kernel
def round_bounded(start, stop, approx, lo, bound, p, emin, emax, maxf, out, decided):
    """Round blocks ``start:stop`` of ``approx + lo`` (error at most ``bound``) to ``p`` bits; ``decided`` where proven.

    ``lo`` is ``None`` (a plain float64 approximation) or the low parts of
    double-word approximations: ``approx`` is the float64 nearest to
    ``approx + lo``, so ``|lo|`` is at most half the spacing on its side.
    ``out`` is float64 for ``p = 53`` and float32 otherwise: for those two formats
    the store itself rounds (nearest even) in the normal range.

    The common case works on the bits: the distance from ``approx + lo`` to the
    nearest midpoint of the format, in quarter float64 ulps of ``approx``,
    against the bound in the same unit. The midpoints around ``approx`` are the
    one above its truncation to ``p`` bits and the one below (a quarter quantum
    below a power of two); ``lo`` moves the value by less than half a float64 ulp,
    so no other is nearer. Where ``approx`` lies on a midpoint and ``lo`` is not
    zero, it is moved one float64 step towards ``approx + lo`` before rounding,
    which then goes the way the double word does (:func:`round_element`; every
    quantity there is an exact float, integers below ``2**53`` or powers of two,
    built from bits). Zeros, values near the target's subnormal range or float64's
    extremes are done again after it (:func:`round_slow_elements`).
    """
    first, end = start * ROUND_BLOCK, min(approx.size, stop * ROUND_BLOCK)
    part = slice(first, end)  # (views: indices from 0 are known nonnegative, so no wraparound check)
    _round_range(
        approx[part], lo if lo is None else lo[part], bound[part], p, emin, emax, maxf, out[part], decided[part]
    )


@Kernel
def distance_over(start, stop, cand, approx, lo, bound, limit, undefined, slack, out):
    """Whether ``|cand - (approx + lo)| > limit``, elements ``start:stop``, from an approximation within ``bound``
    (``lo`` None: plain float64): 1 for certain; 0 for certain not, or not judged (``cand`` not finite, the exact
    value undefined, ``limit`` NaN); 2 where only the exact value can tell. ``Exact.exceeds``' float64 tests,
    widened by the relative ``slack``, one element at a time (the same operations in the same order)."""
    for i in range(start, stop):
        c, allowed = cand[i], limit[i]
        if not np.isfinite(c) or undefined[i] or np.isnan(allowed):
            out[i] = 0
            continue
        dist = abs(c - approx[i] if lo is None else (c - approx[i]) - lo[i])
        widen = bound[i] * (1 + slack)
        if dist * (1 - slack) - widen > allowed * (1 + slack):
            out[i] = 1
        elif dist * (1 + slack) + widen <= allowed * (1 - slack):
            out[i] = 0
        else:
            out[i] = 2


@njit(**_JIT)
def ulps(values, p, emin, out):
    """``out = 2**(max(floor(log2 |v|), emin) - (p - 1))``: the ulp of each float64 ``v`` in a format of ``p`` bits
    whose normal range starts at ``2**emin >= 2**-1022`` (zero and NaN take ``emin``), from the bits. The same values as
    ``ldexp(1, rounding.quantum_exponents(|v|))``, infinities included (numpy's frexp gives them the exponent 0)."""
    for i in range(values.size):
        m = abs(values[i])
        if not m > 0:
            e = emin
        elif m == np.inf:
            e = -1
        else:  # (a float64 subnormal, below 2**-1022, takes emin: no format's normal range starts lower)
            e = (bitcast(m) >> 52) - 1023
        q = max(e, emin) - (p - 1)
        if q >= -1022:
            out[i] = bitcast(np.int64(q + 1023) << 52)
        elif q >= -1074:
            out[i] = bitcast(np.int64(1) << (q + 1074))
        else:
            out[i] = 0.0
