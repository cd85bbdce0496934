"""Error-bound arithmetic for the float64 fast path of every oracle.

The analysis follows Higham, *Accuracy and Stability of Numerical Algorithms*:
``fl(a op b) = (a op b)(1 + d)`` with ``|d| <= u = 2**-53`` while no intermediate
underflows or overflows (``NormInputs.fast_rows`` guarantees this), and products
of ``k`` such factors stay within ``gamma(k) = k*u / (1 - k*u)``. The compiled
kernels in ``oracles.kernels`` apply the bounds built here.
"""

from __future__ import annotations

U = 2.0**-53
#: Final widening of every bound, covering the rounding of the bound arithmetic itself.
SAFETY = 1 + 2.0**-10


def gamma(k: int) -> float:
    """Higham's ``gamma_k``: bound on ``|prod (1 + d_i)^(+-1) - 1|`` over ``k`` roundings."""
    return k * U / (1 - k * U)


def compose(*rel: float) -> float:
    """Relative bound of a product of factors with relative errors ``rel``."""
    out = 1.0
    for r in rel:
        out *= 1 + r
    return out - 1


def psum_depth(n: int) -> int:
    """Additions any term goes through in ``kernels._psum`` of ``n`` terms.

    Chunks of 16 are added in sequence (at most 16 additions, counting ``0 + t``),
    then the chunk sums pairwise (``ceil(log2(chunks))`` levels). The sum then errs
    by at most ``gamma(psum_depth(n)) * sum(|t|)``.
    """
    chunks = -(-n // 16)
    return min(n, 16) + (chunks - 1).bit_length() if n else 0
