"""How a quantized norm's scales are judged, one class per scale format: float32 scales ``amax / largest``,
UE8M0 powers of two (MX formats, by the OCP rule or rounding up), and scales in a narrow float format relative
to a given global scale (NVFP4's E4M3). Each says which scales a correct kernel may return for a range of block
maxima, the exact scale, which returned values are not scales of its format at all, and the reason a report
quotes. Pure, as :mod:`normcheck.engine.quantized`, which judges with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

import oracles
from normcheck.quantization import FLOOR, Scheme
from normcheck.verdict.bounds import ulp
from oracles import FLOAT32
from oracles.quantize import UE8M0, BlockMax, power_of_two, power_of_two_scales, round_to_format, scaled_max

#: Relative error a correct kernel's scale and quotient may carry besides its y's: three float32 roundings
#: (the scale, a reciprocal, the product), with room to spare.
ARITHMETIC = 2.0**-22


@dataclass(frozen=True)
class Float32Scales:
    """``amax / largest`` in float32, raised to ``FLOOR / largest`` (vLLM's minimum scale) where it is below."""

    largest: float
    fmt: oracles.FloatFormat = FLOAT32

    def range(self, lo_max: np.ndarray, hi_max: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The scales correct kernels return for block maxima between ``lo_max`` and ``hi_max``."""
        return lo_max / self.largest * (1 - ARITHMETIC), np.maximum(hi_max, FLOOR) / self.largest * (1 + ARITHMETIC)

    def exact(self, amax: BlockMax, scales: np.ndarray) -> np.ndarray:
        """The exact scale; below the floor, whichever of it and the floor is nearer the kernel's ``scales``."""
        floor = FLOOR / self.largest
        with np.errstate(all="ignore"):
            exact = (amax.lo + amax.hi) / 2 / self.largest
            return np.where((exact < floor) & (np.abs(scales - floor) < np.abs(scales - exact)), floor, exact)

    def odd(self, scales: np.ndarray) -> np.ndarray:
        """Scales that are no value of the format at all (see :meth:`values`)."""
        return np.zeros(scales.shape, dtype=bool)

    def values(self) -> str:
        """What the format's values are, for a finding on a scale that is none."""
        return "a float32 value"

    def judged(self, amax: BlockMax) -> np.ndarray:
        """The blocks whose scale counts in the statistics."""
        return np.ones(amax.lo.shape, dtype=bool)

    def unit(self, exact: np.ndarray) -> np.ndarray:
        """The ulp errors are counted in."""
        return ulp(exact, self.fmt)

    def reason(self) -> str:
        """What a correct scale is, with ``{}`` for the tier's name."""
        floor = FLOOR / self.largest
        bound = f"(amax +- the block's largest {{}} bound of y) / {self.largest:g}"
        return f"{bound}, +-2^-22 relative, or up to {floor:.3g}"


@dataclass(frozen=True)
class PowerOfTwoScales(Float32Scales):
    """UE8M0 scales: the powers of two each of ``rules`` gives (each rule is monotone in the block's maximum)."""

    rules: tuple[str, ...] = ()
    fmt: oracles.FloatFormat = UE8M0

    def range(self, lo_max: np.ndarray, hi_max: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = np.min([power_of_two(lo_max * (1 - ARITHMETIC), self.largest, r) for r in self.rules], axis=0)
        hi = np.max([power_of_two(hi_max * (1 + ARITHMETIC), self.largest, r) for r in self.rules], axis=0)
        return lo, hi

    def exact(self, amax: BlockMax, scales: np.ndarray) -> np.ndarray:
        """The exact scale of the rule nearer the kernel's ``scales``."""
        by_rule = [power_of_two_scales(amax, self.largest, r) for r in self.rules]
        exact = by_rule[0]
        with np.errstate(all="ignore"):
            for other in by_rule[1:]:
                exact = np.where(np.abs(np.log2(scales / other)) < np.abs(np.log2(scales / exact)), other, exact)
        return exact

    def odd(self, scales: np.ndarray) -> np.ndarray:
        return np.frexp(scales)[0] != 0.5

    def values(self) -> str:
        return "a power of two (UE8M0)"

    def judged(self, amax: BlockMax) -> np.ndarray:
        return amax.hi != 0  # (an all-zero block's scale is any power of two: not a statistic)

    def unit(self, exact: np.ndarray) -> np.ndarray:
        return exact  # a power of two's ulp in UE8M0 is itself: an error of 1 is twice the scale

    def reason(self) -> str:
        rules = " or ".join(self.rules)
        return f"the UE8M0 scales ({rules} rule) of amax +- the block's largest {{}} bound of y, +-2^-22 relative"


@dataclass(frozen=True)
class FormatScales(Float32Scales):
    """Scales in a narrow float format ``fmt``: the roundings into it of ``g * amax / largest`` (monotone), ``g``
    the given global scale (NVFP4's E4M3 block scales)."""

    g: float = 1.0

    def range(self, lo_max: np.ndarray, hi_max: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = self.g / self.largest
        return round_to_format(lo_max * g * (1 - ARITHMETIC), self.fmt), round_to_format(
            hi_max * g * (1 + ARITHMETIC), self.fmt
        )

    def exact(self, amax: BlockMax, scales: np.ndarray) -> np.ndarray:
        return scaled_max(amax, Fraction(self.g) / Fraction(self.largest), self.fmt)

    def odd(self, scales: np.ndarray) -> np.ndarray:
        return round_to_format(scales, self.fmt) != scales

    def values(self) -> str:
        return f"a {self.fmt.name} value"

    def reason(self) -> str:
        return (
            f"the roundings into {self.fmt.name} of g * (amax +- the block's largest {{}} bound of y) / "
            f"{self.largest:g}, +-2^-22 relative"
        )


def scale_rule(scheme: Scheme, multiplier: float) -> Float32Scales:
    """How ``scheme``'s scales are judged (``multiplier``: the given global scale, where it has one)."""
    if scheme.rules:
        return PowerOfTwoScales(scheme.largest, rules=scheme.rules)
    if scheme.scale_format is not None:
        return FormatScales(scheme.largest, fmt=scheme.scale_format, g=multiplier)
    return Float32Scales(scheme.largest)
