"""Exact residual sums of a fused residual-add + norm: ``x + residual``, correctly rounded in any format.

A fused kernel (vLLM's ``fused_add_rms_norm``, FlashInfer's ``fused_add_rmsnorm``)
returns, or writes in place, ``residual_out = x + residual`` rounded to the input
dtype, and normalizes either that rounded sum or the sum kept in its compute
precision. Both are :meth:`Exact.round` of the same exact sum in one format.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from oracles.exact import Exact
from oracles.inputs import as_float_array
from oracles.rootsum import RootSum


def residual_sum(x: object, residual: object) -> Exact:
    """The exact ``x + residual``, elementwise (same shapes).

    The float64 sum and its error come from Knuth's TwoSum, which is exact wherever
    the float64 sum does not overflow; elsewhere the exact rational decides.

    >>> import numpy as np
    >>> s = residual_sum(np.array([1.0, 2049.0], np.float32), np.array([2.0**-30, -1.0], np.float32))
    >>> s.round("float32").tolist(), s.round("float16").tolist()
    ([1.0, 2048.0], [1.0, 2048.0])
    >>> s.approx.tolist(), s.error_bound.tolist()
    ([1.0000000009313226, 2048.0], [0.0, 0.0])
    """
    a, _ = as_float_array("x", x)
    b, _ = as_float_array("residual", residual)
    if a.shape != b.shape:
        raise ValueError(f"residual has shape {b.shape}, expected x's shape {a.shape}")
    with np.errstate(all="ignore"):
        s = a + b
        bb = s - a
        err = (a - (s - bb)) + (b - bb)
        bound = np.where(np.isfinite(s), np.abs(err), np.inf)
    undefined = ~(np.isfinite(a) & np.isfinite(b))
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)

    def element(i: int) -> RootSum:
        return RootSum((), Fraction(float(flat_a[i])) + Fraction(float(flat_b[i])))

    return Exact(s, bound, element, undefined)
