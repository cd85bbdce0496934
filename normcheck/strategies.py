"""Hypothesis strategies for normalization inputs, reaching every regime of docs/theory.md, section 6.

Values are built from exponents and mantissa bits in the format under test, so
tiny, huge, subnormal, zero-mean, offset and eps-dominant rows are common rather
than rare. Regimes stay inside what the compute precision can represent (fp32
for 16- and 32-bit formats, fp64 for float64): the square of the mean square
(autograd forms powers of it up to about the second) neither overflows nor
underflows there, so a correct implementation, autograd included, is never
asked the impossible.
float16 keeps its whole range: its squares overflow past 256 and underflow below
2**-12, which is what a missing upcast trips on.

>>> from hypothesis import given
>>> @given(norm_inputs(dtype="float16", hidden_sizes=[8], eps=1e-6))
... def test(case):
...     assert case.x.shape[-1] == 8
>>> test()
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from hypothesis import strategies as st

from oracles import FloatFormat, resolve_format, round_floats

REGIMES = (
    "normal",
    "tiny",
    "huge",
    "zero_mean",
    "offset",
    "eps_dominant",
    "constant",
    "near_constant",
    "zero",
    "one_hot",
    "outlier",
)
WEIGHT_REGIMES = ("normal", "near_zero", "negative", "near_minus_one")
#: How a fused residual-add's residual relates to x: comparable, much smaller or much larger, cancelling
#: x (x + residual is far smaller than either), and sums past the format's largest value.
RESIDUAL_REGIMES = ("normal", "small", "dominant", "cancelling", "overflow")
#: Hidden sizes the search draws from: 1, powers of two and their neighbours (kernels pick block sizes
#: and code paths by them: padded lanes exist only off a power of two), primes.
HIDDEN_SIZES = (1, 2, 3, 5, 7, 8, 13, 16, 31, 61, 64, 127, 128, 255, 256, 257, 1023, 1024, 1025, 4095, 4096, 4097)


@dataclass(frozen=True)
class NormInput:
    """One audit input: x of shape (..., n), parameters, an upstream gradient, and labels."""

    x: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    grad: np.ndarray
    regime: str
    weight_regime: str = "normal"
    strided: bool = False  #: hand the implementation a non-contiguous view
    labels: dict = field(default_factory=dict)
    residual: np.ndarray | None = None  #: a fused residual-add's second input (same shape and dtype as x)
    residual_regime: str | None = None

    @property
    def n(self) -> int:
        return self.x.shape[-1]


def compute_format(fmt: FloatFormat) -> FloatFormat:
    """The precision a correct implementation computes in: fp32, or fp64 for float64."""
    return resolve_format("float64" if fmt.precision > 24 else "float32")


def exponent_range(fmt: FloatFormat, n: int, regime: str) -> tuple[int, int]:
    """Exponents (of the leading bit) for values of a regime, in ``fmt``, for rows of length ``n``."""
    comp = compute_format(fmt)
    lowest = fmt.emin - fmt.precision + 1  # smallest subnormal
    if regime == "tiny":
        lo = max(lowest, math.ceil(comp.emin / 4) + 2)
        return lo, lo + 6
    if regime == "huge":
        hi = min(fmt.emax, comp.emax // 4 - n.bit_length() // 2 - 2)
        return hi - 6, hi
    return -3, 2


_T = TypeVar("_T")

#: Up to this many values are drawn one by one (so they shrink); more come from a drawn seed.
ELEMENTWISE = 256


class Source:
    """Where random choices come from: hypothesis draws (shrinkable) or a seeded numpy generator."""

    def __init__(self, draw: st.DrawFn | None = None, rng: np.random.Generator | None = None) -> None:
        self._draw, self._rng = draw, rng

    def _generator(self) -> np.random.Generator:
        """The numpy generator of a source without hypothesis draws."""
        assert self._rng is not None, "a Source needs a draw function or a numpy generator"
        return self._rng

    def integer(self, lo: int, hi: int) -> int:
        if self._draw is not None:
            return self._draw(st.integers(lo, hi))
        return int(self._generator().integers(lo, hi, endpoint=True))

    def integers(self, lo: int, hi: int, size: int) -> np.ndarray:
        if self._draw is None:
            return self._generator().integers(lo, hi, size=size, endpoint=True)
        if size > ELEMENTWISE:
            return np.random.default_rng(self.integer(0, 2**32 - 1)).integers(lo, hi, size=size, endpoint=True)
        return np.array(self._draw(st.lists(st.integers(lo, hi), min_size=size, max_size=size)), dtype=np.int64)

    def derived(self, data: np.ndarray) -> Source:
        """A source for values that need not shrink (a gradient, a bias): under hypothesis, a numpy
        generator seeded by ``data``'s bytes, so they cost the search and the shrinker no choices and
        change whenever ``data`` shrinks; a numpy source is itself."""
        if self._draw is None:
            return self
        seed = int.from_bytes(hashlib.blake2b(np.ascontiguousarray(data).tobytes(), digest_size=8).digest(), "little")
        return Source(rng=np.random.default_rng(seed))

    def choice(self, options: Sequence[_T]) -> _T:
        return options[self.integer(0, len(options) - 1)]

    def float_parts(self, lo: int, hi: int, p: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exponents in [lo, hi], ``p - 1`` mantissa bits and signs (+-1) of ``size`` values.

        Hypothesis draws one integer per value (a third of the draws of one per part, which
        dominated the audit's time); it shrinks toward ``+2**lo``.
        """
        if self._draw is None or size > ELEMENTWISE:
            exps = self.integers(lo, hi, size)
            mants = self.integers(0, 2 ** (p - 1) - 1, size)
            return exps, mants, 2.0 * self.integers(0, 1, size) - 1
        codes = self.integers(0, (hi - lo + 1) * 2**p - 1, size)  # sign bit, mantissa bits, exponent
        signs = 1.0 - 2.0 * (codes & 1)
        codes = codes >> 1
        return lo + (codes >> (p - 1)), codes & (2 ** (p - 1) - 1), signs


def floats(src: Source, fmt: FloatFormat, size: int, lo: int, hi: int) -> np.ndarray:
    """``size`` values ``+-(1 + m/2**(p-1)) * 2**e`` with e in [lo, hi], representable in ``fmt``."""
    p = fmt.precision
    exps, mants, signs = src.float_parts(lo, hi, p, size)
    values = signs * (1 + mants / 2.0 ** (p - 1)) * np.ldexp(1.0, exps)
    # Below 2**emin keep only the bits a subnormal holds (exact rounding to the grid).
    quantum = np.ldexp(1.0, np.maximum(exps, fmt.emin) - p + 1)
    return np.round(values / quantum) * quantum


def make_rows(src: Source, fmt: FloatFormat, n: int, regime: str, eps: float = 1e-6, count: int = 1) -> np.ndarray:
    """``count`` rows of ``n`` values of ``fmt`` in one regime (see :data:`REGIMES`)."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; use one of {', '.join(REGIMES)}")
    lo, hi = exponent_range(fmt, n, regime)
    x = floats(src, fmt, count * n, lo, hi).reshape(count, n)
    if regime == "zero_mean":
        half = n // 2
        x[:, half : 2 * half] = -x[:, :half]
        if n % 2:
            x[:, -1] = 0.0
    elif regime == "offset":
        k = src.integer(3, max(3, min(fmt.precision - 4, 20)))
        base = src.choice((-1.0, 1.0)) * 2.0**k
        ulp = 2.0 ** (k - fmt.precision + 1)
        x = base + src.integers(-8, 8, count * n).reshape(count, n) * ulp
    elif regime == "eps_dominant":
        floor = 2.0 ** (2 * exponent_range(fmt, n, "tiny")[0] + 12)  # keeps squares in the compute range
        scale = math.sqrt(max(eps, floor)) * 2.0 ** -src.integer(0, 6)
        x = np.clip(x / 2.0**hi, -2, 2) * scale
    elif regime in ("constant", "near_constant"):
        x[:] = x[:, :1]
        if regime == "near_constant":  # one ulp of noise: a spread far below the mean's rounding error
            ulp = np.ldexp(1.0, np.frexp(x)[1] - fmt.precision)
            x = x + src.integers(-1, 1, count * n).reshape(count, n) * ulp
    elif regime == "zero":
        x[:] = 0.0
    elif regime == "one_hot":
        x[:, 1:] = 0.0
    elif regime == "outlier":
        big = 2.0 ** exponent_range(fmt, n, "huge")[1]
        x[:, src.integer(0, n - 1)] = np.clip(x[:, 0] * 1e4, -big, big)
    return round_floats(x, fmt)


def make_residual(src: Source, fmt: FloatFormat, x: np.ndarray, regime: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, residual)`` for a fused residual-add in one of :data:`RESIDUAL_REGIMES` (x changes only for
    ``overflow``, where some elements of both sit near the format's largest value, with one sign)."""
    if regime not in RESIDUAL_REGIMES:
        raise ValueError(f"unknown residual regime {regime!r}; use one of {', '.join(RESIDUAL_REGIMES)}")
    xd = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    rows, n = xd.shape
    r = make_rows(src, fmt, n, "normal", count=rows)
    if regime == "small":
        r = r * 2.0**-8
    elif regime == "dominant":
        r = r * 2.0**8
    elif regime == "cancelling":  # x + r keeps a few bits of x: the sum cancels, exactly
        r = -xd * (1 + np.clip(r, -1, 1) * 2.0**-5)
    elif regime == "overflow":
        top = float(fmt.max_finite) * 0.75
        where = np.zeros_like(xd, dtype=bool)
        where[:, src.integer(0, n - 1)] = True  # one element per row at least
        sign = np.where(xd < 0, -1.0, 1.0)
        xd = np.where(where, sign * top, xd)
        r = np.where(where, sign * top, r)
    return round_floats(xd, fmt).reshape(x.shape), round_floats(r, fmt).reshape(x.shape)


def make_weights(src: Source, fmt: FloatFormat, n: int, offset: int = 0, regime: str | None = None) -> tuple:
    """A weight vector (regime drawn from :data:`WEIGHT_REGIMES` unless given) and its regime."""
    regime = regime or str(src.choice(WEIGHT_REGIMES))
    w = floats(src, fmt, n, -3, 0)
    if regime == "normal":
        w = (1 - offset) + 0.5 * w if offset == 0 else 0.25 * w
    elif regime == "near_zero":
        w = w * 2.0**-8
    elif regime == "negative":
        w = -np.abs(w) - (1 - offset)
    elif regime == "near_minus_one":
        w = -1 + w * 2.0**-6
    return round_floats(w, fmt), regime


def make_input(
    src: Source,
    fmt: FloatFormat,
    *,
    n: int,
    rows: int,
    regime: str,
    eps: float = 1e-6,
    weight_dtype: object | None = None,
    weight_offset: int = 0,
    weight_regime: str | None = None,
    batched: bool = False,
    strided: bool = False,
    leading: tuple[int, ...] = (),
    residual_regime: str | None = None,
) -> NormInput:
    """A full audit input: x in a regime, weight, bias and gradient, maybe batched or strided.

    ``leading`` gives x the shape ``(*leading, n)`` (its product replaces ``rows``);
    ``residual_regime`` adds a fused residual-add's residual (:func:`make_residual`).
    """
    if leading:
        rows = int(np.prod(leading))
    x = make_rows(src, fmt, n, regime, eps, rows)
    if leading:
        x = x.reshape(*leading, n)
    elif batched and rows % 2 == 0:
        x = x.reshape(2, rows // 2, n)
    wfmt = resolve_format(weight_dtype or fmt)
    w, wreg = make_weights(src, wfmt, n, weight_offset, weight_regime)
    derived = src.derived(np.asarray(x, np.float64))
    b, _ = make_weights(derived, wfmt, n, regime="normal")
    g = make_rows(derived, fmt, n, "normal", count=int(np.prod(x.shape[:-1]))).reshape(x.shape)
    bias = round_floats(np.asarray(b, np.float64) - 1, wfmt)
    residual = None
    if residual_regime is not None:
        x, residual = make_residual(src, fmt, x, residual_regime)
    strided = strided and x.ndim == 2 and rows > 1
    return NormInput(x, w, bias, g, regime, wreg, strided, residual=residual, residual_regime=residual_regime)


@st.composite
def rows(draw: st.DrawFn, *, dtype: object, n: int, regime: str, eps: float = 1e-6, count: int = 1) -> np.ndarray:
    """``count`` rows of ``n`` values of ``dtype`` in one regime (see :data:`REGIMES`)."""
    return make_rows(Source(draw), resolve_format(dtype), n, regime, eps, count)


@st.composite
def weights(draw: st.DrawFn, *, dtype: object, n: int, offset: int = 0, regime: str | None = None) -> tuple:
    """A weight vector for a norm with ``weight_offset=offset``, and its regime."""
    return make_weights(Source(draw), resolve_format(dtype), n, offset, regime)


@st.composite
def norm_inputs(
    draw: st.DrawFn,
    *,
    dtype: object,
    eps: float = 1e-6,
    hidden_sizes: tuple[int, ...] | list[int] = HIDDEN_SIZES,
    weight_dtype: object | None = None,
    weight_offset: int = 0,
    max_rows: int = 4,
    regimes: tuple[str, ...] = REGIMES,
    residual: bool = False,
) -> NormInput:
    """A full audit input in a drawn regime, hidden size and batch shape (see :func:`make_input`);
    with ``residual``, a fused residual-add's residual in a drawn :data:`RESIDUAL_REGIMES`."""
    src = Source(draw)
    n = int(src.choice(tuple(hidden_sizes)))
    count = src.integer(1, max_rows)
    regime = str(src.choice(tuple(regimes)))
    return make_input(
        src,
        resolve_format(dtype),
        n=n,
        rows=count,
        regime=regime,
        eps=eps,
        weight_dtype=weight_dtype,
        weight_offset=weight_offset,
        batched=draw(st.booleans()),
        strided=draw(st.booleans()),
        residual_regime=str(src.choice(RESIDUAL_REGIMES)) if residual else None,
    )
