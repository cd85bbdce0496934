"""Slow, obviously correct references in mpmath at high precision (for tests only).

Each function follows the formulas of docs/theory.md line by line on exact inputs and also
returns, per element, the magnitude of the largest intermediate term: a value
far below ``2**-PREC`` times that scale is a cancellation the reference cannot
resolve (the exact value may be zero), so tests skip it.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np

from oracles.formats import FloatFormat

PREC = 400


def _mp(a: np.ndarray) -> list:
    """Exact mpf values; a row holding inf or NaN becomes all NaN (the oracle's convention)."""
    vals = np.asarray(a, dtype=np.float64).ravel()
    if not np.isfinite(vals).all():
        return [mpmath.nan] * vals.size
    return [mpmath.mpf(float(v)) for v in vals]


def _vector(v, n: int, default: float, offset: int = 0) -> list:
    if v is None:
        return [mpmath.mpf(default)] * n
    return [mpmath.mpf(float(a)) + offset if math.isfinite(a) else mpmath.nan for a in np.asarray(v, np.float64)]


def _rows(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])


def inv_sqrt(v):
    """``1/sqrt(v)``, infinite at 0 so that ``0 * r`` is NaN like the undefined 0/0."""
    return mpmath.inf if v == 0 else 1 / mpmath.sqrt(v)


def _stats(xs: list, n: int, eps: float, centered: bool):
    mu = mpmath.fsum(xs) / n if centered else 0
    cs = [v - mu for v in xs]
    return cs, inv_sqrt(mpmath.fsum(c * c for c in cs) / n + mpmath.mpf(eps))


def _big(*vals) -> mpmath.mpf:
    finite = [abs(v) for v in vals if mpmath.isfinite(v)]
    return max(finite, default=mpmath.mpf(0))


def forward(kind: str, x, weight=None, bias=None, eps=1e-6, offset=0) -> tuple[list, list]:
    """Forward RMSNorm / LayerNorm: flat lists of values and of term scales."""
    x2 = _rows(x)
    n = x2.shape[1]
    out, scales = [], []
    with mpmath.workprec(PREC):
        s, b = _vector(weight, n, 1.0, offset), _vector(bias, n, 0.0)
        for row in x2:
            xs = _mp(row)
            cs, r = _stats(xs, n, eps, centered=kind == "layernorm")
            big = _big(*xs) * r if mpmath.isfinite(r) else mpmath.mpf(0)
            out += [c * r * w + bj for c, w, bj in zip(cs, s, b)]
            scales += [big * _big(w) + _big(bj) for w, bj in zip(s, b)]
    return out, scales


def backward(kind: str, x, g, weight=None, eps=1e-6, offset=0) -> tuple[tuple[list, list], ...]:
    """Analytic gradients (docs/theory.md, section 2): ``(dx, dw, db)``, each (values, scales)."""
    x2, g2 = _rows(x), _rows(g)
    n = x2.shape[1]
    with mpmath.workprec(PREC):
        s = _vector(weight, n, 1.0, offset)
        dx, dx_scale = [], []
        dw, dw_scale = [mpmath.mpf(0)] * n, [mpmath.mpf(0)] * n
        db, db_scale = [mpmath.mpf(0)] * n, [mpmath.mpf(0)] * n
        for xrow, grow in zip(x2, g2):
            xs, gs = _mp(xrow), _mp(grow)
            cs, r = _stats(xs, n, eps, centered=kind == "layernorm")
            xhat = [c * r for c in cs]
            h = [a * b for a, b in zip(gs, s)]
            mh = mpmath.fsum(h) / n if kind == "layernorm" else 0
            mhx = mpmath.fsum(a * b for a, b in zip(h, xhat)) / n
            dx += [r * (hi - mh - xi * mhx) for hi, xi in zip(h, xhat)]
            big = _big(*h) * r * (1 + n) if mpmath.isfinite(r) else mpmath.mpf(0)
            dx_scale += [big] * n
            dw = [acc + gi * xi for acc, gi, xi in zip(dw, gs, xhat)]
            dw_scale = [acc + _big(gi) * _big(*xhat) for acc, gi in zip(dw_scale, gs)]
            db = [acc + gi for acc, gi in zip(db, gs)]
            db_scale = [acc + _big(gi) for acc, gi in zip(db_scale, gs)]
        return (dx, dx_scale), (dw, dw_scale), (db, db_scale)


def round_mpf(v, fmt: FloatFormat) -> float:
    """Round an mpf to nearest-even in ``fmt`` with subnormals and overflow (NaN stays NaN)."""
    if not mpmath.isfinite(v):
        return math.nan
    if v == 0:
        return 0.0
    with mpmath.workprec(PREC):
        _, ex = mpmath.frexp(v)
        qexp = max(int(ex) - 1, fmt.emin) - fmt.precision + 1
        t = abs(v) * mpmath.mpf(2) ** (-qexp)
        m = int(mpmath.floor(t))
        frac = t - m
        if frac > 0.5 or (frac == 0.5 and m % 2):
            m += 1
        if m.bit_length() - 1 + qexp > fmt.emax:
            return math.copysign(math.inf, v)
        return math.copysign(math.ldexp(m, qexp), v)


def unresolvable(v, scale, fmt: FloatFormat | None = None) -> bool:
    """Whether a 400-bit value cannot be trusted to decide rounding or binade.

    True for a cancellation far below the term scale, and (with ``fmt``) for a
    value within ``2**-300`` (relative) of a rounding midpoint or a power of two.
    """
    if not mpmath.isfinite(v):
        return False
    with mpmath.workprec(PREC):
        if abs(v) <= mpmath.mpf(2) ** -300 * scale:
            return True
        if v == 0 or fmt is None:
            return False
        m, ex = mpmath.frexp(abs(v))
        if min(abs(m - 0.5), abs(1 - m)) < mpmath.mpf(2) ** -300:
            return True
        qexp = max(int(ex) - 1, fmt.emin) - fmt.precision + 1
        t = abs(v) * mpmath.mpf(2) ** (-qexp)
        return abs(t - mpmath.floor(t) - 0.5) < mpmath.mpf(2) ** -300 * t
