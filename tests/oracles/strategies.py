"""Test-only hypothesis strategies for oracle inputs, built from exponents and mantissa bits."""

from __future__ import annotations

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

from oracles import FORMATS, FloatFormat

DTYPES = [f.dtype for f in FORMATS]
EPS_VALUES = [0.0, 1e-12, 1e-6, 1e-5, 2.0**-23, 1e-2]


def _fmt(dtype: np.dtype) -> FloatFormat:
    return next(f for f in FORMATS if f.dtype == dtype)


@st.composite
def values(draw: st.DrawFn, dtype: np.dtype, n: int, regime: str) -> np.ndarray:
    """``n`` finite values of ``dtype`` in one regime of docs/theory.md, section 6."""
    fmt = _fmt(dtype)
    lo = fmt.emin - fmt.precision + 1
    hi = fmt.emax - (n.bit_length() + 1)
    center = {"normal": 0, "tiny": fmt.emin, "huge": hi - 2}.get(regime, 0)
    exps = draw(st.lists(st.integers(max(lo, center - 6), min(hi, center + 6)), min_size=n, max_size=n))
    mants = draw(st.lists(st.integers(0, 2 ** (fmt.precision - 1) - 1), min_size=n, max_size=n))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=n, max_size=n))
    out = np.array([s * (1 + m / 2.0 ** (fmt.precision - 1)) * 2.0**e for s, m, e in zip(signs, mants, exps)])
    if regime == "offset":
        base = 2.0 ** draw(st.integers(3, 12))
        out = base + out * 2.0 ** -draw(st.integers(4, 10))
    elif regime == "constant":
        out[:] = out[0]
    elif regime == "zero":
        out[:] = 0.0
    elif regime == "one_hot":
        out[1:] = 0.0
    elif regime == "outlier":
        out[0] *= 1e4
    with np.errstate(over="ignore"):
        return out.astype(dtype)


REGIMES = ["normal", "tiny", "huge", "offset", "constant", "zero", "one_hot", "outlier"]


@st.composite
def norm_inputs(draw: st.DrawFn, max_rows: int = 3, sizes=(1, 2, 3, 5, 8, 17), dtypes=tuple(DTYPES)) -> dict:
    """x (rows, n), weight, bias, grad_output, eps, weight_offset for any oracle."""
    dtype = draw(st.sampled_from(dtypes))
    n = draw(st.sampled_from(sizes))
    rows = draw(st.integers(1, max_rows))
    x = np.stack([draw(values(dtype, n, draw(st.sampled_from(REGIMES)))) for _ in range(rows)])
    pdtype = draw(st.sampled_from([dtype, np.dtype(np.float32)]))
    weight = draw(st.none() | values(pdtype, n, "normal"))
    bias = draw(st.none() | values(pdtype, n, "normal"))
    grad = np.stack([draw(values(dtype, n, "normal")) for _ in range(rows)])
    eps = draw(st.sampled_from([*EPS_VALUES, float(np.finfo(np.float16).eps)]))
    return dict(x=x, weight=weight, bias=bias, grad_output=grad, eps=eps, weight_offset=draw(st.sampled_from([0, 1])))


__all__ = ["ml_dtypes", "norm_inputs", "values"]
