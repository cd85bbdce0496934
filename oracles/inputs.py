"""Validation of oracle arguments and their two views: float64 arrays and exact rationals."""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cached_property, lru_cache

import numpy as np

from oracles.formats import FloatFormat, resolve_format

#: Nonzero magnitudes in this range keep every intermediate of the float64 fast
#: path normal (no underflow, no overflow), so its relative error bounds hold.
_FAST_RANGE = (2.0**-150, 2.0**150)
_FAST_EPS_RANGE = (2.0**-300, 2.0**300)
#: Nonzero scales in this range keep the double-word kernels' products far from underflow and overflow.
_WORDS_SCALE_RANGE = (2.0**-300, 2.0**300)


def as_float_array(name: str, value: object, compact: bool = False) -> tuple[np.ndarray, FloatFormat]:
    """``value`` as float64 (or float32 if ``compact`` and exact) and the format it came in."""
    arr = np.asarray(value)
    try:
        fmt = resolve_format(arr.dtype)
    except ValueError:
        raise TypeError(
            f"{name} must be an array of float16, bfloat16, float32 or float64, "
            f"got dtype {arr.dtype}; convert it with .astype(...) first"
        ) from None
    return arr.astype(np.float32 if compact and fmt.precision <= 24 else np.float64), fmt


def _in_fast_range(a: np.ndarray, axis: int | None) -> np.ndarray:
    m = np.abs(a)
    return ((m == 0) | ((m >= _FAST_RANGE[0]) & (m <= _FAST_RANGE[1]))).all(axis=axis)


def exact_row(a: np.ndarray) -> list[Fraction]:
    """The exact rational value of every element of a 1-d float64 array."""
    return [Fraction(v) for v in a.tolist()]


def exact_channels(a: np.ndarray) -> list[Fraction]:
    """:func:`exact_row` of a parameter vector, with 0 in its non-finite channels: every result that
    reads such a channel is undefined (NaN) and never evaluated, while the other channels' are."""
    return [Fraction(v) if math.isfinite(v) else Fraction(0) for v in a.tolist()]


def dyadic_sum(values: list[Fraction]) -> Fraction:
    """Exact sum of rationals whose denominators are powers of two (fast path of ``sum``)."""
    if not values:
        return Fraction(0)
    shift = max(v.denominator.bit_length() for v in values) - 1
    total = sum(v.numerator << (shift - v.denominator.bit_length() + 1) for v in values)
    return Fraction(total, 1 << shift)


class NormInputs:
    """Checked arguments of a normalization oracle, flattened to ``(rows, n)``.

    ``x`` and ``grad`` are float32 when they came in 16 or 32 bits, else float64
    (both exact); weight and bias are float64.

    Float64 views feed the fast path; exact rational views (computed lazily, a
    row at a time) feed the exact path.
    """

    def __init__(
        self,
        x: object,
        *,
        weight: object = None,
        bias: object = None,
        grad_output: object = None,
        eps: float,
        weight_offset: int,
    ) -> None:
        xf, xfmt = as_float_array("x", x, compact=True)
        if xf.ndim == 0 or xf.shape[-1] == 0:
            raise ValueError(f"x must have shape (..., n) with n >= 1, got shape {xf.shape}")
        self.shape: tuple[int, ...] = xf.shape
        self.n: int = xf.shape[-1]
        self.x = xf.reshape(-1, self.n)
        self.rows: int = self.x.shape[0]
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isfinite(eps) or eps < 0:
            raise ValueError(f"eps must be a finite float >= 0, got eps={eps!r}")
        if weight_offset not in (0, 1):
            raise ValueError(f"weight_offset must be 0 or 1, got weight_offset={weight_offset!r}")
        self.eps = float(eps)
        self.offset = int(weight_offset)
        formats = [xfmt]
        self.weight = self._vector("weight", weight, formats)
        self.bias = self._vector("bias", bias, formats)
        self.grad: np.ndarray | None = None
        if grad_output is not None:
            g, gfmt = as_float_array("grad_output", grad_output, compact=True)
            if g.shape != self.shape:
                raise ValueError(f"grad_output has shape {g.shape}, expected the shape of x {self.shape}")
            self.grad = g.reshape(-1, self.n)
            formats.append(gfmt)
        #: Some input has more than 26 significant bits: products of two inputs round.
        self.wide = max(f.precision for f in formats) > 26
        if self.weight is None:
            self.scale: np.ndarray | None = None
        elif self.offset:
            self.scale = self.weight + 1.0
        else:
            self.scale = self.weight
        #: Roundings in ``fl(v * scale)`` for an input array v (the scale itself may round).
        self.scale_roundings = 0 if self.scale is None else (2 if self.offset else int(self.wide))

    def _vector(self, name: str, value: object, formats: list[FloatFormat]) -> np.ndarray | None:
        if value is None:
            return None
        v, fmt = as_float_array(name, value)
        if v.shape != (self.n,):
            raise ValueError(f"{name} has shape {v.shape}, expected ({self.n},) to match x")
        formats.append(fmt)
        return v

    @cached_property
    def finite_rows(self) -> np.ndarray:
        """Rows whose x are all finite."""
        return np.isfinite(self.x).all(axis=-1)

    @cached_property
    def finite_grad(self) -> np.ndarray:
        """Elementwise finiteness of grad_output."""
        assert self.grad is not None
        return np.isfinite(self.grad)

    @cached_property
    def finite_columns(self) -> np.ndarray:
        """Channels whose weight and bias are finite."""
        ok = np.ones(self.n, dtype=bool)
        for v in (self.weight, self.bias):
            if v is not None:
                ok &= np.isfinite(v)
        return ok

    def undefined(self, bad_rows: np.ndarray, *, gradient: bool = False) -> np.ndarray:
        """Elements (shape of x) whose result is undefined: those of the rows ``bad_rows`` and of the channels with a
        non-finite weight or bias. For grad_input (``gradient``): the rows ``bad_rows``, those with a non-finite
        grad_output, and every row if a channel is non-finite (each element mixes the whole row).

        (Set in place: numpy's broadcast ``bad_rows[:, None] | bad_columns`` is far slower.)
        """
        bad_columns = ~self.finite_columns
        if gradient:
            bad_rows = bad_rows | ~self.finite_grad.all(axis=-1) | bad_columns.any()
        mask = np.zeros((self.rows, self.n), dtype=bool)
        mask[bad_rows] = True
        if not gradient:
            mask[:, bad_columns] = True
        return mask.reshape(self.shape)

    @cached_property
    def fast_rows(self) -> np.ndarray:
        """Rows on which the float64 fast path's error bounds are proven to hold."""
        if not self.wide:
            ok = np.ones(self.rows, dtype=bool)  # every 16/32-bit float is in range
        else:
            ok = _in_fast_range(self.x, axis=-1)
            if self.grad is not None:
                ok &= _in_fast_range(self.grad, axis=-1)
            for v in (self.weight, self.bias):
                if v is not None and not _in_fast_range(v, axis=None):
                    ok[:] = False
        if self.eps != 0 and not (_FAST_EPS_RANGE[0] <= self.eps <= _FAST_EPS_RANGE[1]):
            ok[:] = False
        return ok

    @cached_property
    def scale_words(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """The scale as an exact double word ``(hi, lo)`` for ``oracles.ddkernels``, and whether its finite
        values are in their proven range. ``lo`` is empty where ``hi`` is exact; both are empty without weight."""
        if self.weight is None:
            return np.empty(0), np.empty(0), True
        w, lo = self.weight, np.empty(0)
        hi = w
        if self.offset:  # TwoSum(w, 1): hi + lo = w + 1 exactly
            with np.errstate(invalid="ignore"):
                hi = w + 1.0
                bb = hi - w
                lo = (w - (hi - bb)) + (1.0 - bb)
        m = np.abs(hi[np.isfinite(hi)])
        ok = bool(((m == 0) | ((m >= _WORDS_SCALE_RANGE[0]) & (m <= _WORDS_SCALE_RANGE[1]))).all())
        return hi, lo, ok

    # Exact views -----------------------------------------------------------

    @cached_property
    def eps_q(self) -> Fraction:
        return Fraction(self.eps)

    @cached_property
    def scale_q(self) -> list[Fraction] | None:
        """Exact scale per channel: ``weight + weight_offset`` (``None`` for no weight)."""
        if self.weight is None:
            return None
        return [w + self.offset for w in exact_channels(self.weight)]

    @cached_property
    def bias_q(self) -> list[Fraction] | None:
        return None if self.bias is None else exact_channels(self.bias)

    @lru_cache(maxsize=256)  # noqa: B019 - the cache lives and dies with the inputs
    def x_q(self, row: int) -> list[Fraction]:
        return exact_row(self.x[row])

    @lru_cache(maxsize=256)  # noqa: B019
    def g_q(self, row: int) -> list[Fraction]:
        assert self.grad is not None
        return exact_row(self.grad[row])

    def scaled_q(self, values: list[Fraction]) -> list[Fraction]:
        """``values * scale`` channel by channel, exactly."""
        s = self.scale_q
        return values if s is None else [v * w for v, w in zip(values, s)]
