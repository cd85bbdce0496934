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
    """Relative bound of a product of factors with relative errors ``rel``.

    Accumulated as ``out + r + out r``, so that bounds far below ``u`` survive.
    """
    out = 0.0
    for r in rel:
        out = out + r + out * r
    return out


def psum_depth(n: int) -> int:
    """Additions any term goes through in ``kernels._psum`` of ``n`` terms.

    Chunks of 16 are added in sequence (at most 16 additions, counting ``0 + t``),
    then the chunk sums pairwise (``ceil(log2(chunks))`` levels). The sum then errs
    by at most ``gamma(psum_depth(n)) * sum(|t|)``.
    """
    chunks = -(-n // 16)
    return min(n, 16) + (chunks - 1).bit_length() if n else 0


# Double words (``oracles.ddkernels``; docs/theory.md, section 8) ----------------------------------------

#: Error of ``ddkernels.dd_add`` of normalized double words, per unit of ``|ah| + |bh|``.
DD_ADD = 4 * U**2 * (1 + 8 * U)
#: Relative error of ``ddkernels.dd_div_int`` (the quotient's magnitude).
DD_DIV = 4 * U**2 * (1 + 8 * U)
#: Relative error of adding a nonnegative float64 into a nonnegative normalized double word.
DD_ADD_POSITIVE = 3.1 * U**2
#: Relative error of ``ddkernels._scaled_term`` with a double-word scale (``1 + weight``); 0 with a float64 scale.
DD_SCALED_TERM = 3 * U**2 * (1 + 4 * U)


def dd_mul_error(lam_a: float, lam_b: float) -> float:
    """Relative error of ``ddkernels.dd_mul`` (against the product of its double-word operands).

    ``|al| <= lam_a |ah|`` and ``|bl| <= lam_b |bh|``: three rounded products and
    two rounded sums, and the neglected ``al bl``, sum to at most
    ``2u**2 + 3u lam_b + 2u lam_a + lam_a lam_b`` times ``|ah bh|``.
    """
    lead = 2 * U**2 + 3 * U * lam_b + 2 * U * lam_a + lam_a * lam_b
    return lead * (1 + 8 * U) / ((1 - lam_a) * (1 - lam_b))


def dd_sum_error(depth_two_sum: int, depth_low: int, low_share: float) -> float:
    """Error of a TwoSum tree per unit of ``A = sum |high leaves|``.

    Every step ``s' = fl(s + a)`` leaves an exact error ``|t| <= u |s'|``, and
    ``|s'|`` is at most ``1 + gamma(depth_two_sum)`` times the magnitudes below it,
    so ``sum |t| <= u (1 + gamma) depth_two_sum A``. The errors and the low leaves
    (``sum <= low_share A``) are summed in float64 with at most ``depth_low``
    roundings each: ``gamma(depth_low)`` of their magnitudes.
    """
    return gamma(depth_low) * (U * (1 + gamma(depth_two_sum)) * depth_two_sum + low_share)


def dd_dot_depths(n: int) -> tuple[int, int]:
    """TwoSum steps and float64 roundings any term goes through in ``ddkernels.dd_dot`` of ``n`` terms.

    16 lanes of at most ``ceil(n / 16)`` terms, then 15 lane additions in turn; a
    low part goes through ``t + e``, its lane's later additions and at most 16 in
    the lane additions. (The float64 sum of magnitudes has the TwoSum depth.)
    """
    per_lane = -(-n // 16)
    return per_lane + 15, per_lane + 17


def dd_dot_error(n: int, lam: float) -> float:
    """Error of ``ddkernels.dd_dot`` per unit of ``sum |fl(ah b)|``, with ``|al| <= lam |ah|``.

    The low leaves are ``fl(e + fl(al b))`` (``|e| <= u |p|``), each within
    ``u |al b| + u |leaf|`` of ``e + al b``.
    """
    depth_a, depth_c = dd_dot_depths(n)
    low = (1 + U) * (U + lam * (1 + U) ** 2)
    return dd_sum_error(depth_a, depth_c, low) + U * (lam * (1 + U) + low)


def dd_column_depths(rows: int) -> tuple[int, int]:
    """TwoSum steps and float64 roundings of a term in a double-word column sum over ``rows`` rows.

    Chunks of 16 rows in sequence, then ``ceil(log2(chunks))`` pairwise levels,
    each adding two low parts.
    """
    levels = (-(-rows // 16) - 1).bit_length() if rows else 0
    return 16 + levels, 17 + 2 * levels


def dd_rms_theta_v(n: int) -> float:
    """Relative bound of RMSNorm's double-word ``v = mean(x**2) + eps`` (nonnegative terms throughout)."""
    sum_squares = dd_dot_error(n, 0.0) * (1 + U)  # sum |fl(x**2)| <= (1 + u) sum x**2
    return compose(sum_squares, DD_DIV, DD_ADD_POSITIVE)


#: Relative error of ``r0 = fl(1 / fl(sqrt(vh)))`` against ``(vh + vl)**-1/2`` (``|vl| <= u vh``).
DD_R0 = compose(gamma(2), U)
