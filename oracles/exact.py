"""``Exact``: the exact real results of an oracle, with proven rounding and ULP errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from functools import partial

import mpmath
import numpy as np

from oracles import kernels
from oracles.formats import FloatFormat, resolve_format
from oracles.rootsum import RootSum
from oracles.rounding import quantum_exponents, round_bounded, round_rational, ulp_exponent

#: ULP errors are returned within this many ulps of the exact ULP error.
ULP_ERROR_ACCURACY = 2.0**-20


class Exact:
    """Exact real results, one per element of an array of shape :attr:`shape`.

    Returned by the oracle functions (``oracles.rms_norm`` and friends). Each
    element is known as an exact expression; :meth:`round` gives the correctly
    rounded value in any format, :meth:`ulp_error` the error of a candidate.
    Elements whose value is undefined (a non-finite input, or ``0/0`` from a
    zero-variance row with ``eps=0``) are NaN everywhere.

    :attr:`approx` is a float64 approximation and :attr:`error_bound` a proven
    bound on its absolute error (``inf`` where the fast path does not apply).
    Inside, the approximation may be a double word ``approx + low`` (from float64
    inputs, so that float64 outputs are decided too), whose own proven bound
    ``bound`` decides roundings, distances and ULP errors.
    """

    def __init__(
        self,
        approx: np.ndarray,
        bound: np.ndarray,
        element: Callable[[int], RootSum],
        undefined: np.ndarray,
        low: np.ndarray | None = None,
        threads: int | None = None,
    ) -> None:
        if undefined.any():
            approx, bound = approx.copy(), bound.copy()
            approx[undefined] = np.nan
            bound[undefined] = np.nan
        self._approx = approx
        self._low = low
        self._bound = bound
        self._threads = threads
        self._public_bound: np.ndarray | None = bound if low is None else None
        self._element = element
        self._undefined = undefined
        self._rounded: dict[str, np.ndarray] = {}
        for a in (self._approx, self._bound, self._undefined, *([] if low is None else [low])):
            a.flags.writeable = False

    def __repr__(self) -> str:
        return f"Exact(shape={self.shape})"

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the result array."""
        return self._approx.shape

    @property
    def approx(self) -> np.ndarray:
        """Float64 approximation of every element (NaN where undefined)."""
        return self._approx

    @property
    def error_bound(self) -> np.ndarray:
        """Proven bound on ``|approx - exact|`` per element (``inf`` where unknown)."""
        if self._public_bound is None:
            low = self._low
            assert low is not None  # (the public bound is computed lazily only where there is a low part)
            with np.errstate(invalid="ignore"):  # (the sum rounds: widened by far more than its rounding)
                self._public_bound = (self._bound + np.abs(low)) * (1 + _SLACK)
            self._public_bound.flags.writeable = False
        return self._public_bound

    @property
    def words(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(approx, low, bound)`` where the fast path works in double words (float64 inputs):
        ``|approx + low - exact| <= bound`` per element, ``approx`` the float64 nearest to the sum.
        ``None`` where it works in float64."""
        return None if self._low is None else (self._approx, self._low, self._bound)

    @property
    def undefined(self) -> np.ndarray:
        """Boolean mask of the elements whose exact value is undefined (NaN)."""
        return self._undefined

    def element(self, index: int | tuple[int, ...]) -> RootSum:
        """The exact expression of one element (``sum a_k / sqrt(v_k) + b``)."""
        flat = int(np.ravel_multi_index(index, self.shape)) if isinstance(index, tuple) else index
        if self._undefined.flat[flat]:
            raise ValueError(f"element {index} is undefined (NaN)")
        return self._element(flat)

    def mpf(self, index: int | tuple[int, ...], prec: int = 113) -> mpmath.mpf:
        """One element as an mpmath number with relative error below ``2**(1-prec)``."""
        if self._undefined.flat[np.ravel_multi_index(index, self.shape) if isinstance(index, tuple) else index]:
            return mpmath.mpf("nan")
        lo, hi = self.element(index).enclose(prec + 8)
        mid = (lo + hi) / 2
        with mpmath.workprec(prec):
            return mpmath.mpf(mid.numerator) / mid.denominator

    def to_mpmath(self, prec: int = 113) -> np.ndarray:
        """Every element as an mpmath number (an object array; slow, for small results)."""
        out = np.empty(self.shape, dtype=object)
        for i in range(out.size):
            out.flat[i] = self.mpf(i, prec)
        return out

    def round(self, fmt: object) -> np.ndarray:
        """The correctly rounded results in ``fmt`` (nearest, ties to even), read-only.

        ``fmt`` is ``"float16"``, ``"bfloat16"``, ``"float32"``, ``"float64"`` or
        the matching numpy dtype; bfloat16 arrays are ``ml_dtypes.bfloat16``.
        """
        f = resolve_format(fmt)
        if f.name not in self._rounded:
            values, decided = round_bounded(self._approx, self._bound, f, self._low, self._threads)
            if not decided.all():  # (a cheap test spares the common case two passes)
                undecided = np.flatnonzero(~decided)
                for i in undecided[~self._undefined.flat[undecided]]:
                    values[i] = self._element(int(i)).refine(partial(_same_rounding, fmt=f), f.precision + 32)
            with np.errstate(all="ignore"):  # exact conversions; NaN where undefined
                rounded = values.astype(f.dtype, copy=False).reshape(self.shape)
            if self._undefined.any():
                rounded[self._undefined] = np.nan
            rounded.flags.writeable = False
            self._rounded[f.name] = rounded
        return self._rounded[f.name]

    def ulp_error(self, candidate: object, fmt: object | None = None) -> np.ndarray:
        """``|candidate - exact| / ulp_fmt(exact)`` per element, as float64.

        ``fmt`` defaults to the candidate's dtype. NaN where the candidate is NaN
        or infinite, or the exact value is undefined. Accurate to
        ``ULP_ERROR_ACCURACY`` ulps; a candidate equal to the correct rounding
        scores at most 0.5.
        """
        return np.abs(self.signed_ulp_error(candidate, fmt))

    def exceeds(self, candidate: object, allowed: object) -> np.ndarray:
        """Whether ``|candidate - exact| > allowed`` per element, decided exactly.

        The float64 approximation and its proven bound decide almost every element;
        the others are enclosed at rising precision until they are decided. False
        where the candidate is not finite or the exact value is undefined.

        >>> import numpy as np, oracles
        >>> y = oracles.rms_norm(np.array([3.0, 4.0]))  # exactly [0.8485..., 1.1313...]
        >>> y.exceeds(np.array([0.85, 1.13]), 0.002).tolist()
        [False, False]
        >>> y.exceeds(np.array([0.85, 1.13]), 0.001).tolist()
        [True, True]
        """
        cand = np.asarray(candidate, dtype=np.float64)
        if cand.shape != self.shape:
            raise ValueError(f"candidate has shape {cand.shape}, expected {self.shape}")
        size = cand.size
        limit = kernel_view(np.broadcast_to(np.asarray(allowed, dtype=np.float64), self.shape))
        flat = kernel_view(cand)
        low = None if self._low is None else kernel_view(self._low)
        state = np.empty(size, np.int8)
        kernels.distance_over(
            size,
            flat,
            kernel_view(self._approx),
            low,
            kernel_view(self._bound),
            limit,
            kernel_view(self._undefined),
            _SLACK,
            state,
            work=size,
            threads=self._threads,
        )
        out = state == 1
        for i in np.flatnonzero(state == 2):
            decide = partial(_farther_than, Fraction(float(flat[i])), Fraction(float(limit[i])))
            out[i] = self._element(int(i)).refine(decide, 64)
        return out.reshape(self.shape)

    def signed_ulp_error(self, candidate: object, fmt: object | None = None) -> np.ndarray:
        """``(candidate - exact) / ulp_fmt(exact)``: positive where the candidate is too large."""
        cand = np.asarray(candidate)
        if cand.shape != self.shape:
            raise ValueError(f"candidate has shape {cand.shape}, expected {self.shape}")
        f = resolve_format(cand.dtype if fmt is None else fmt)
        c = cand.astype(np.float64)
        with np.errstate(all="ignore"):
            err, accurate = _bounded_ulp_error(c, self._approx, self._low, self._bound, f)
        bad = ~np.isfinite(c) | self._undefined
        for i in np.flatnonzero(~accurate & ~bad):
            decide = partial(_exact_ulp_error, Fraction(float(c.flat[i])), fmt=f)
            err.flat[i] = self._element(int(i)).refine(decide, f.precision + 64)
        # The correct rounding is within half an ulp: make the reported figure say so.
        correct = c == self.round(f)
        err[correct] = np.clip(err[correct], -0.5, 0.5)
        err[bad] = np.nan
        return err


def kernel_view(a: np.ndarray) -> np.ndarray:
    """``a`` flat, contiguous and read-only (a view where it can be): the one layout the kernels that only read an
    array are compiled for (numba compiles once per combination of types, and a read-only array is another)."""
    flat = np.ascontiguousarray(a).reshape(-1)
    view = flat.view()
    view.flags.writeable = False
    return view


def _farther_than(c: Fraction, allowed: Fraction, lo: Fraction, hi: Fraction) -> bool | None:
    """Whether ``|c - y| > allowed`` for every ``y`` in ``[lo, hi]`` (True), for none (False), or unknown."""
    nearest = Fraction(0) if lo <= c <= hi else min(abs(c - lo), abs(c - hi))
    if nearest > allowed:
        return True
    if max(abs(c - lo), abs(c - hi)) <= allowed:
        return False
    return None


def _same_rounding(lo: Fraction, hi: Fraction, fmt: FloatFormat) -> float | None:
    a = round_rational(lo, fmt)
    return a if a == round_rational(hi, fmt) else None


#: Relative slack on float64 comparisons against the approximation (a few roundings of 2**-53 each).
_SLACK = 2.0**-48


def _exact_ulp_error(c: Fraction, lo: Fraction, hi: Fraction, fmt: FloatFormat) -> float | None:
    if lo != hi and lo <= 0 <= hi:
        return None
    uexp = ulp_exponent(lo, fmt)
    if uexp != ulp_exponent(hi, fmt):
        return None
    ulp = Fraction(2) ** uexp
    if hi - lo > ulp * Fraction(1, 2**60):
        return None
    err = (c - (lo + hi) / 2) / ulp
    try:
        return float(err)
    except OverflowError:  # more ulps than a float64 holds (a wild candidate against a tiny exact value)
        return math.inf if err > 0 else -math.inf


def _minus(c: np.ndarray, approx: np.ndarray, low: np.ndarray | None) -> np.ndarray:
    """``c - (approx + low)``: the first difference is exact near ``approx`` (Sterbenz), so
    this errs by a few roundings relative to the result."""
    return c - approx if low is None else (c - approx) - low


def _bounded_ulp_error(
    c: np.ndarray, approx: np.ndarray, low: np.ndarray | None, bound: np.ndarray, fmt: FloatFormat
) -> tuple[np.ndarray, np.ndarray]:
    """Signed ULP errors from a bounded approximation ``approx + low``, and where they are accurate enough.

    The binade is certain where the approximation is farther than the bound from
    both powers of two around ``|approx|``: ``|approx| - 2**e`` and ``2**(e+1) - |approx|``
    are exact (Sterbenz), and the rounding of the rest is covered by a relative
    widening far above it.
    """
    mag = np.abs(approx)
    e = np.frexp(mag)[1] - 1
    uexp = quantum_exponents(mag, fmt)
    towards = 0.0 if low is None else np.where(approx < 0, -low, low)  # low, positive away from zero
    b = bound * (1 + _SLACK)
    inside_below = ((mag - np.ldexp(1.0, e)) + towards) * (1 - _SLACK) > b
    inside_above = ((np.ldexp(1.0, e + 1) - mag) - towards) * (1 - _SLACK) > b
    below_normal = (mag + np.abs(towards) + b) * (1 + _SLACK) < np.ldexp(1.0, fmt.emin)
    err = np.ldexp(_minus(c, approx, low), -uexp)
    accurate = ((inside_below & inside_above) | below_normal) & (np.ldexp(b, -uexp) <= ULP_ERROR_ACCURACY)
    return err, accurate
