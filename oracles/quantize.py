"""Exact quantization of a norm's output: element formats, block maxima, scales and correctly rounded values.

A quantized output is ``q = round(y / s)`` per element, saturating at the element format's largest finite
value, with one scale ``s`` per block of channels (a block of ``n`` is one scale per row; ``None`` one
for the whole tensor). Everything here is exact: ``y`` is an :class:`~oracles.exact.Exact` result, the
block maxima are its exact elements, the scales are correctly rounded from them, and the quantized
values from the exact ``y / s``; ties go to even, as everywhere in ``oracles``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import TypeVar

import ml_dtypes
import numpy as np

from oracles.exact import Exact
from oracles.formats import FLOAT32, FloatFormat
from oracles.rootsum import RootSum
from oracles.rounding import floor_log2, quantum_exponents, round_rational

_T = TypeVar("_T")

FLOAT8_E4M3FN = FloatFormat("float8_e4m3fn", 4, -6, 8, np.dtype(ml_dtypes.float8_e4m3fn), largest=448)
FLOAT8_E5M2 = FloatFormat("float8_e5m2", 3, -14, 15, np.dtype(ml_dtypes.float8_e5m2))
FLOAT4_E2M1FN = FloatFormat("float4_e2m1fn", 2, 0, 2, np.dtype(ml_dtypes.float4_e2m1fn))
#: Symmetric int8: the integers -127..127 (every exponent subnormal, so the spacing is 1 throughout).
INT8 = FloatFormat("int8", 8, 7, 7, np.dtype(np.int8), largest=127)
ELEMENT_FORMATS: dict[str, FloatFormat] = {f.name: f for f in (FLOAT8_E4M3FN, FLOAT8_E5M2, FLOAT4_E2M1FN, INT8)}
#: UE8M0 scales (OCP Microscaling): the powers of two 2**-127 .. 2**127, a format of one bit of precision.
UE8M0_EXPONENTS = (-127, 127)
UE8M0 = FloatFormat("float8_e8m0fnu", 1, -127, 127, np.dtype(ml_dtypes.float8_e8m0fnu))

#: Relative widening of float64 enclosures: covers the few roundings of the float64 arithmetic around them.
_WIDEN = 2.0**-50


def round_to_format(values: object, fmt: FloatFormat) -> np.ndarray:
    """Float64 values correctly rounded into ``fmt`` (ties to even), saturating at its largest finite value;
    float64 results (NaN stays NaN). Exact: each value is scaled by its quantum, a power of two, and rounded
    to an integer.

    >>> round_to_format([0.25, 0.75, 2.5, 5.0, 7.0], FLOAT4_E2M1FN).tolist()
    [0.0, 1.0, 2.0, 4.0, 6.0]
    """
    largest = float(fmt.max_finite)
    v = np.clip(np.asarray(values, dtype=np.float64), -largest, largest)
    q = quantum_exponents(np.abs(v), fmt)
    return np.ldexp(np.rint(np.ldexp(v, -q)), q)


def round_rational_saturating(value: Fraction, fmt: FloatFormat) -> float:
    """:func:`~oracles.rounding.round_rational`, saturating at ``fmt``'s largest finite value."""
    largest = fmt.max_finite
    return round_rational(max(-largest, min(largest, value)), fmt)


def _decide(element: RootSum, answer: Callable[[Fraction], _T]) -> _T:
    """``answer`` of the exact value of ``element``, for an ``answer`` constant on intervals (a rounding, an
    exponent): enclosures at rising precision until both ends give the same answer."""

    def decide(lo: Fraction, hi: Fraction) -> _T | None:
        a = answer(lo)
        return a if a == answer(hi) else None

    return element.refine(decide, 64)


def _sign(value: RootSum) -> int:
    return value.refine(lambda lo, hi: 1 if lo > 0 else -1 if hi < 0 else 0 if lo == hi == 0 else None, 64)


class BlockMax:
    """The exact maxima of ``|y|`` over blocks of ``block`` consecutive channels of each row (the last block
    may be shorter), or over the whole tensor (``block=None``); :attr:`lo` and :attr:`hi` enclose them."""

    def __init__(self, y: Exact, block: int | None) -> None:
        n = y.shape[-1] if y.shape else 1
        self.y, self.block = y, block
        with np.errstate(all="ignore"):
            mag = np.abs(y.approx).reshape(-1, n)
            bound = y.error_bound.reshape(-1, n)
            lo, hi = np.maximum(mag - bound, 0.0) * (1 - _WIDEN), (mag + bound) * (1 + _WIDEN)
        unknown = ~(np.isfinite(mag) & np.isfinite(bound))  # no bound here: only the exact value decides
        lo[unknown], hi[unknown] = 0.0, np.inf
        if block is None:
            self.shape: tuple[int, ...] = ()
            self._starts = np.array([0])
            lo, hi, mag = lo.reshape(1, -1), hi.reshape(1, -1), mag.reshape(1, -1)
        else:
            self.shape = (*y.shape[:-1], -(-n // block))
            self._starts = np.arange(0, n, block)
        self._lo_each, self._hi_each = lo, hi
        self.lo = np.maximum.reduceat(lo, self._starts, axis=1).reshape(self.shape)
        self.hi = np.maximum.reduceat(hi, self._starts, axis=1).reshape(self.shape)
        undefined = np.logical_or.reduceat(y.undefined.reshape(lo.shape), self._starts, axis=1).reshape(self.shape)
        self.lo[undefined] = self.hi[undefined] = np.nan

    def reduce(self, values: np.ndarray) -> np.ndarray:
        """The largest of per-element ``values`` (shaped as ``y``) over each block, shaped as :attr:`shape`."""
        v = np.asarray(values, dtype=np.float64).reshape(self._lo_each.shape)
        return np.maximum.reduceat(v, self._starts, axis=1).reshape(self.shape)

    def element_indices(self, group: int) -> np.ndarray:
        """The flat indices into ``y`` of block ``group`` (a flat index into :attr:`shape`)."""
        per_row = len(self._starts)
        row, k = divmod(group, per_row)
        width = self._lo_each.shape[1]
        start = int(self._starts[k])
        stop = int(self._starts[k + 1]) if k + 1 < per_row else width
        return row * width + np.arange(start, stop)

    def exact(self, group: int) -> RootSum:
        """The exact maximum of block ``group``: of the elements that the enclosures cannot rule out, the
        largest in magnitude, compared exactly."""
        idx = self.element_indices(group)
        lo, hi = self._lo_each.reshape(-1)[idx], self._hi_each.reshape(-1)[idx]
        candidates = {self.y.element(int(i)) for i in idx[hi >= lo.max()]}
        magnitudes = [e if _sign(e) >= 0 else e.scaled(Fraction(-1)) for e in candidates]
        best = magnitudes[0]
        for e in magnitudes[1:]:
            if _sign(e.minus(best)) > 0:
                best = e
        return best

    def decided(self, fast: Callable[[np.ndarray], np.ndarray], exact: Callable[[Fraction], float]) -> np.ndarray:
        """A function of each block's maximum: ``fast`` of both ends of the enclosures (vectorized) where
        they agree, else ``exact`` of the exact maximum (``fast`` and ``exact`` must agree on floats)."""
        low, high = fast(self.lo), fast(self.hi)
        out = np.where(low == high, low, np.nan).reshape(-1)
        for g in np.flatnonzero((low != high).reshape(-1) & ~np.isnan(self.lo.reshape(-1))):
            out[g] = _decide(self.exact(int(g)), exact)
        return out.reshape(self.shape)


def scaled_max(amax: BlockMax, factor: Fraction, fmt: FloatFormat = FLOAT32) -> np.ndarray:
    """``amax * factor`` correctly rounded into ``fmt`` per block (float32 ``amax / 448``: ``factor = 1/448``;
    an NVFP4 E4M3 block scale: ``global / 6``), as float64.

    The fast path rounds the float64 products of both ends of the enclosure: the enclosure is wider than
    the product's own rounding, so the true product lies strictly between them, and rounding is monotone.
    """
    f = float(factor)

    def fast(m: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return round_to_format(m * f, fmt)

    return amax.decided(fast, lambda m: round_rational_saturating(m * factor, fmt))


#: The rules a UE8M0 scale follows (:func:`power_of_two`).
POWER_OF_TWO_RULES = ("ceil", "ocp", "floor")


def power_of_two(amax: np.ndarray, largest: float, rule: str) -> np.ndarray:
    """The UE8M0 scales of float64 block maxima ``amax``, as float64 powers of two, exact for the given values
    (NaN where ``amax`` is NaN):

    - ``"ceil"``: ``2**ceil(log2(amax / largest))``, the smallest power of two with which no element saturates
      (DeepSeek's block FP8, engines' UE8M0 rounding up);
    - ``"ocp"``: ``2**(floor(log2(amax)) - emax)``, ``emax`` the exponent of ``largest`` (OCP Microscaling v1.0:
      the block's largest element may saturate);
    - ``"floor"``: ``2**floor(log2(amax / largest))``, rounded down: not a convention (the block's largest
      element overflows by up to 2x), the bug it is.

    Clamped to :data:`UE8M0_EXPONENTS` (an all-zero block gets the smallest, ``2**-127``).

    >>> power_of_two(np.array([448.0, 449.0, 512.0, 0.0]), 448, "ceil").tolist()
    [1.0, 2.0, 2.0, 5.877471754111438e-39]
    >>> power_of_two(np.array([448.0, 511.0, 512.0]), 448, "ocp").tolist()
    [1.0, 1.0, 2.0]
    """
    if rule not in POWER_OF_TWO_RULES:
        raise ValueError(f"rule must be one of {', '.join(POWER_OF_TWO_RULES)}, got {rule!r}")
    m = np.asarray(amax, dtype=np.float64)
    emax = floor_log2(Fraction(largest))
    largest = float(largest)  # (a Python int would take ldexp's float16 loop)
    with np.errstate(all="ignore"):
        if rule == "ocp":
            e = np.frexp(m)[1] - 1 - emax  # m = mant * 2**e, mant in [0.5, 1): exact
        else:
            # ceil: the smallest e with largest * 2**e >= m; floor: the largest with largest * 2**e <= m. The
            # quotient's exponent is a guess within one; products of largest and a power of two are exact.
            e = np.frexp(m / largest)[1] - (rule == "floor")
            for _ in range(2):
                if rule == "ceil":
                    e = np.where(np.ldexp(largest, e - 1) >= m, e - 1, np.where(np.ldexp(largest, e) < m, e + 1, e))
                else:
                    e = np.where(np.ldexp(largest, e) > m, e - 1, np.where(np.ldexp(largest, e + 1) <= m, e + 1, e))
        e = np.where(m > 0, np.clip(e, *UE8M0_EXPONENTS), UE8M0_EXPONENTS[0]).astype(np.float64)
    return np.where(np.isnan(m), np.nan, np.ldexp(1.0, np.where(np.isnan(m), 0, e).astype(int)))


def power_of_two_scales(amax: BlockMax, largest: float, rule: str) -> np.ndarray:
    """The exact UE8M0 scales (:func:`power_of_two`) of the exact block maxima, NaN for a block of undefined
    values; decided as :func:`scaled_max` is (each rule's exponent is monotone in the maximum)."""
    top = Fraction(largest)

    def exact(m: Fraction) -> float:
        if m == 0:
            return float(power_of_two(np.array([0.0]), largest, rule)[0])
        ratio = m if rule == "ocp" else m / top
        e = floor_log2(ratio) - (floor_log2(top) if rule == "ocp" else 0)
        if rule == "ceil" and ratio != Fraction(2) ** floor_log2(ratio):
            e += 1
        return math.ldexp(1.0, max(UE8M0_EXPONENTS[0], min(UE8M0_EXPONENTS[1], e)))

    return amax.decided(lambda m: power_of_two(m, largest, rule), exact)


def per_element(scales: np.ndarray, shape: tuple[int, ...], block: int | None = None) -> np.ndarray:
    """Block scales (``shape[:-1] + (blocks,)``, or one scalar) repeated over their blocks of ``block`` channels,
    the last block shorter where ``block`` does not divide the hidden size (None: the blocks divide it)."""
    s = np.asarray(scales, dtype=np.float64)
    if s.ndim == 0:
        return np.broadcast_to(s, shape)
    n, blocks = shape[-1], s.shape[-1]
    if block is None:
        if n % blocks:
            raise ValueError(f"{blocks} scales over {n} channels: the block size is needed (the last block is shorter)")
        block = n // blocks
    return np.repeat(s, block, axis=-1)[..., :n]


def quantize(
    y: Exact, scales: np.ndarray, fmt: FloatFormat, multiplier: float | None = None, block: int | None = None
) -> np.ndarray:
    """The correctly rounded ``y * multiplier / s`` in the element format ``fmt`` per element (``s`` the scale of
    its block of ``block`` channels, as :func:`per_element`; ``multiplier`` 1 unless given: an NVFP4 global
    scale), saturating; float64 values of ``fmt``,
    NaN where ``y`` is undefined or the scale is zero or not finite.

    The float64 quotient and its proven bound decide almost every element; the rest, those within the bound
    of a rounding boundary (ties among them), are decided on the exact value.
    """
    s = per_element(scales, y.shape, block)
    m = 1.0 if multiplier is None else float(multiplier)
    with np.errstate(all="ignore"):
        v = y.approx * m / s
        radius = (y.error_bound * abs(m) / s + np.abs(v) * _WIDEN) * (1 + _WIDEN)
        lo, hi = round_to_format(v - radius, fmt), round_to_format(v + radius, fmt)
    bad = y.undefined | ~np.isfinite(s) | (s == 0)
    out = np.where(lo == hi, lo, np.nan)
    for i in np.flatnonzero(((lo != hi) & ~bad).reshape(-1)):
        factor = Fraction(m) / Fraction(float(s.flat[i]))
        out.flat[i] = _decide(y.element(int(i)).scaled(factor), lambda q: round_rational_saturating(q, fmt))
    out[bad] = np.nan
    return out


def rounding_range(center: np.ndarray, radius: np.ndarray, fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray]:
    """The smallest and largest values of ``fmt`` (saturating) that a value within ``radius`` of ``center``
    rounds to; every value of ``fmt`` between them is the rounding of some point of the interval. The interval
    is widened by a relative ``2**-50`` (the float64 arithmetic that built it), so a center on a rounding
    boundary reaches both neighbours."""
    with np.errstate(all="ignore"):
        r = (np.asarray(radius, dtype=np.float64) + np.abs(center) * _WIDEN) * (1 + _WIDEN)
        return round_to_format(center - r, fmt), round_to_format(center + r, fmt)


def encode(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Values of ``fmt`` (float64) in its numpy dtype (``ml_dtypes`` for the narrow floats), exactly."""
    return np.asarray(values, dtype=np.float64).astype(fmt.dtype)
