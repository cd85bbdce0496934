"""Exact reals of the form ``sum_k a_k / sqrt(v_k) + b`` and their proven evaluation.

Every output of RMSNorm and LayerNorm, forward and backward, has this form with
rationals ``a_k``, ``b`` and positive rationals ``v_k`` (docs/theory.md, section 3): the
inputs are binary floats, hence rationals, and the only irrational step is the
square root. Enclosures come from integer square roots, so they are rigorous at
every precision; exact values are recognised, so exact ties round correctly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from math import isqrt
from typing import TypeVar

_T = TypeVar("_T")

#: Precision (bits) after which the Ziv loop also asks whether the value is rational.
_EXACT_CHECK_BITS = 256


@lru_cache(maxsize=65536)
def _inv_sqrt_enclosure(v: Fraction, bits: int) -> tuple[Fraction, Fraction]:
    """Rationals ``lo <= 1/sqrt(v) <= hi`` with relative width at most ``2**-bits``."""
    p, q = v.numerator, v.denominator
    # 1/sqrt(p/q) = sqrt(p*q) / p
    n = (p * q) << (2 * bits)
    s = isqrt(n)
    scale = p << bits
    lo = Fraction(s, scale)
    return lo, (lo if s * s == n else Fraction(s + 1, scale))


def _is_square(n: int) -> tuple[bool, int]:
    s = isqrt(n)
    return s * s == n, s


@dataclass(frozen=True)
class RootSum:
    """The exact real ``sum(a / sqrt(v) for a, v in terms) + offset``."""

    terms: tuple[tuple[Fraction, Fraction], ...]
    offset: Fraction = Fraction(0)

    def scaled(self, factor: Fraction) -> RootSum:
        """The exact ``factor * self``."""
        return RootSum(tuple((a * factor, v) for a, v in self.terms), self.offset * factor)

    def minus(self, other: RootSum) -> RootSum:
        """The exact ``self - other``."""
        return RootSum(self.terms + tuple((-a, v) for a, v in other.terms), self.offset - other.offset)

    def enclose(self, bits: int) -> tuple[Fraction, Fraction]:
        """A rigorous enclosure ``[lo, hi]``; each term contributes relative width ``2**-bits``."""
        lo = hi = self.offset
        for a, v in self.terms:
            if a == 0:
                continue
            r_lo, r_hi = _inv_sqrt_enclosure(v, bits)
            if a > 0:
                lo, hi = lo + a * r_lo, hi + a * r_hi
            else:
                lo, hi = lo + a * r_hi, hi + a * r_lo
        return lo, hi

    def exact_value(self) -> Fraction | None:
        """The value as a rational if it is rational, else ``None``.

        Square roots of rationals whose pairwise ratios are not squares are
        linearly independent over the rationals (Besicovitch), so the sum is
        rational exactly when the coefficient of every irrational class vanishes.
        """
        total = self.offset
        classes: list[list] = []  # [n_rep, coefficient of 1/sqrt(n_rep)]
        for a, v in self.terms:
            if a == 0:
                continue
            p, q = v.numerator, v.denominator
            n = p * q  # a / sqrt(v) = a * sqrt(n) / p
            square, root = _is_square(n)
            if square:
                total += a * Fraction(root, p)
                continue
            for cls in classes:
                square, root = _is_square(n * cls[0])
                if square:  # sqrt(n) = root / sqrt(n_rep)
                    cls[1] += a * Fraction(root, p)
                    break
            else:
                classes.append([n, a * Fraction(n, p)])  # sqrt(n) = n / sqrt(n)
        if any(c != 0 for _, c in classes):
            return None
        return total

    def refine(self, decide: Callable[[Fraction, Fraction], _T | None], start_bits: int) -> _T:
        """Ziv's loop: enclose at rising precision until ``decide(lo, hi)`` answers.

        Exact values (``lo == hi``) are always answered by ``decide``. Past
        ``_EXACT_CHECK_BITS`` bits a rational value is computed exactly; an
        irrational one is at positive distance from every rational, so the loop ends.
        """
        bits, checked = start_bits, False
        while True:
            lo, hi = self.enclose(bits)
            answer = decide(lo, hi)
            if answer is not None:
                return answer
            if bits >= _EXACT_CHECK_BITS and not checked:
                checked = True
                exact = self.exact_value()
                if exact is not None:
                    answer = decide(exact, exact)
                    assert answer is not None, "decide() must answer an exact value"
                    return answer
            bits *= 2
