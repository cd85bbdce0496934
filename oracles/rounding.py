"""Correct rounding into a :class:`FloatFormat`: exact for rationals, proven for bounded approximations.

Both functions round to nearest with ties to even, produce subnormals below
``2**emin`` and overflow to infinity past ``max_finite + ulp/2``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from oracles import kernels
from oracles.formats import FloatFormat


def floor_log2(q: Fraction) -> int:
    """``floor(log2(|q|))`` for a nonzero rational, computed exactly."""
    num, den = abs(q.numerator), q.denominator
    e = num.bit_length() - den.bit_length()
    if (num << max(0, -e)) < (den << max(0, e)):
        e -= 1
    return e


def ulp_exponent(value: Fraction, fmt: FloatFormat) -> int:
    """Exponent of ``ulp_fmt(value) = 2**(max(floor(log2|value|), emin) - p + 1)`` (0 is subnormal)."""
    return fmt.quantum_exponent(fmt.emin if value == 0 else floor_log2(value))


def round_rational(q: Fraction, fmt: FloatFormat) -> float:
    """The value of ``fmt`` nearest to ``q`` (ties to even), as a Python float.

    >>> from oracles.formats import FLOAT16
    >>> round_rational(Fraction(2049), FLOAT16)  # a tie: 2048 and 2050 are neighbours
    2048.0
    """
    if q == 0:
        return 0.0
    qexp = fmt.quantum_exponent(floor_log2(q))
    num, den = abs(q.numerator), q.denominator
    if qexp >= 0:
        den <<= qexp
    else:
        num <<= -qexp
    m, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and m & 1):
        m += 1
    sign = -1.0 if q < 0 else 1.0
    if m.bit_length() - 1 + qexp > fmt.emax:
        return sign * math.inf
    return sign * math.ldexp(m, qexp)


def round_floats(values: object, fmt: FloatFormat) -> np.ndarray:
    """Float64 values (or anything ``np.asarray`` takes) correctly rounded into ``fmt``, as its numpy dtype.

    numpy's conversions into float16 and float32 are IEEE's, correctly rounded. ml_dtypes' float64 ->
    bfloat16 conversion is not the same in every version (up to 0.6 it goes through float32 and rounds
    twice; 0.7 rounds once), so bfloat16 goes through float32 rounded to odd (truncated, with the last
    bit set where anything was cut off), which float32 -> bfloat16 then rounds correctly: float32 keeps
    16 more bits than bfloat16, and rounding to odd keeps the sticky information a tie needs.

    >>> from oracles.formats import BFLOAT16
    >>> float(round_floats([1 + 2**-8 + 2**-30], BFLOAT16)[0])  # just above a tie: rounds up
    1.0078125
    """
    v = np.asarray(values, dtype=np.float64)
    if fmt.precision != 8 or fmt.emax != 127:
        with np.errstate(over="ignore"):
            return v.astype(fmt.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        f = v.astype(np.float32)
        inexact = (f != v) & ~np.isnan(v)
        truncated = np.where(np.abs(f) > np.abs(v), np.nextafter(f, np.float32(0)), f)
    odd = np.where(inexact, (truncated.view(np.uint32) | np.uint32(1)).view(np.float32), f)
    return odd.astype(fmt.dtype)


def quantum_exponents(mag: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Exponent of ``ulp_fmt`` at each nonnegative float64 ``mag`` (zero counts as subnormal)."""
    _, exponent = np.frexp(mag)
    return np.maximum(np.where(mag > 0, exponent - 1, fmt.emin), fmt.emin) - (fmt.precision - 1)


def round_bounded(
    approx: np.ndarray,
    bound: np.ndarray,
    fmt: FloatFormat,
    low: np.ndarray | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Round float64 approximations with absolute error at most ``bound`` into ``fmt``.

    ``low``, if given, holds the low parts of double-word approximations
    ``approx + low`` (``approx`` the float64 nearest to the sum), and ``bound``
    bounds their error. Returns ``(values, decided)``: ``values`` (float32 or
    float64, exactly representable in ``fmt``) is the correct rounding of the
    exact value wherever ``decided`` is true, that is wherever no rounding
    boundary of ``fmt`` lies within ``bound`` of the approximation. Elements with
    a non-finite approximation or bound are undecided. Both results are flat.
    """
    bound = np.ascontiguousarray(np.broadcast_to(bound, np.shape(approx)), dtype=np.float64).reshape(-1)
    approx = np.ascontiguousarray(approx, dtype=np.float64).reshape(-1)
    low = None if low is None else np.ascontiguousarray(low, dtype=np.float64).reshape(-1)
    # float32 holds every value of the 16- and 32-bit formats exactly.
    values = np.empty(approx.shape, dtype=np.float64 if fmt.precision > 24 else np.float32)
    decided = np.empty(approx.shape, dtype=bool)
    with np.errstate(all="ignore"):
        kernels.round_bounded(
            -(-approx.size // kernels.ROUND_BLOCK),
            approx,
            low,
            bound,
            fmt.precision,
            fmt.emin,
            fmt.emax,
            float(fmt.max_finite),
            values,
            decided,
            work=approx.size,
            threads=threads,
        )
    return values, decided
