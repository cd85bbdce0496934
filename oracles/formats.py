"""One table of binary floating-point formats; rounding and ULPs are driven by it."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class FloatFormat:
    """A binary interchange format: ``precision`` bits including the hidden bit.

    Normal numbers have exponents ``emin <= e <= emax``; below ``2**emin`` the
    format is subnormal with spacing ``2**(emin - precision + 1)``. ``largest``
    overrides the largest finite value where the top codes mean something else
    (float8_e4m3fn's NaN, int8's symmetric range).
    """

    name: str
    precision: int
    emin: int
    emax: int
    dtype: np.dtype
    largest: int | None = None

    @cached_property  # (float64's takes milliseconds: 2**1023 as a Fraction)
    def max_finite(self) -> Fraction:
        """The largest finite value, ``(2 - 2**(1-p)) * 2**emax`` unless ``largest`` says otherwise."""
        if self.largest is not None:
            return Fraction(self.largest)
        return (2 - Fraction(1, 2 ** (self.precision - 1))) * Fraction(2) ** self.emax

    def quantum_exponent(self, exponent: int) -> int:
        """Exponent of the spacing of values whose binade is ``2**exponent``."""
        return max(exponent, self.emin) - self.precision + 1


FLOAT16 = FloatFormat("float16", 11, -14, 15, np.dtype(np.float16))
BFLOAT16 = FloatFormat("bfloat16", 8, -126, 127, np.dtype(ml_dtypes.bfloat16))
FLOAT32 = FloatFormat("float32", 24, -126, 127, np.dtype(np.float32))
FLOAT64 = FloatFormat("float64", 53, -1022, 1023, np.dtype(np.float64))

FORMATS: tuple[FloatFormat, ...] = (FLOAT16, BFLOAT16, FLOAT32, FLOAT64)

_ALIASES = {
    "fp16": FLOAT16,
    "half": FLOAT16,
    "bf16": BFLOAT16,
    "fp32": FLOAT32,
    "single": FLOAT32,
    "fp64": FLOAT64,
    "double": FLOAT64,
}


def resolve_format(fmt: object) -> FloatFormat:
    """Return the :class:`FloatFormat` for a name, alias, numpy dtype or scalar type.

    >>> resolve_format("bf16").name
    'bfloat16'
    """
    if isinstance(fmt, FloatFormat):
        return fmt
    if isinstance(fmt, str):
        for f in FORMATS:
            if f.name == fmt:
                return f
        if fmt in _ALIASES:
            return _ALIASES[fmt]
    elif isinstance(fmt, (np.dtype, type)):
        dtype = np.dtype(fmt)
        for f in FORMATS:
            if f.dtype == dtype:
                return f
    names = ", ".join(f.name for f in FORMATS)
    raise ValueError(f"unsupported floating-point format {fmt!r}; use one of {names}")
