"""What a correct implementation can achieve: the error bound every verdict uses, with its reason.

A correct implementation (any convention of docs/theory.md, section 4) computes in
fp32 for 16- and 32-bit inputs (fp64 for float64) and rounds into the output
format at most twice. Its error on each element is therefore at most

    ROUNDINGS ulp_F(y)  +  MARGIN * (c_F * u_F + c_c * u_c) * S

where ``u_F`` and ``u_c`` are the unit roundoffs of the output and compute
formats, ``S`` is the scale of the terms the element is computed from (which is
where cancellation and conditioning enter; docs/bounds.md derives each term) and
``c_c`` counts compute roundings for *any* summation order (``n + 8`` for the
forward's row statistics, ``n + 32`` on a gradient's longer path, plus the
number of rows for channel sums). ``c_F`` counts the
intermediate roundings to the output format that some correct conventions make
inside the gradient (Llama's autograd rounds ``grad * weight`` and ``xhat``).
The bound is worst-case, not statistical, so correct code never fails it; the
regimes of ``normcheck.strategies`` make the buggy classes exceed it by far.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import oracles
from oracles import FloatFormat
from oracles.rounding import quantum_exponents

#: Final roundings a correct convention may make (Llama and T5 round twice; 1.5 ulp covers it).
ROUNDINGS = 1.5
#: Safety factor on the worst-case compute term.
MARGIN = 2.0
#: Roundings on a gradient's path besides the row sums (autograd's pow(v, -3/2), products of r, casts).
GRAD_ROUNDINGS = 32


@dataclass(frozen=True)
class Bound:
    """Allowed absolute error per element, and the reason, for one output."""

    allowed: np.ndarray
    reason: str


def unit_roundoff(fmt: FloatFormat) -> float:
    return 2.0**-fmt.precision


def ulp(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """``ulp_F`` of each value (the subnormal spacing at and below ``2**emin``)."""
    return np.ldexp(1.0, quantum_exponents(np.abs(np.asarray(values, dtype=np.float64)), fmt))


def exact_ulp(exact: oracles.Exact, fmt: FloatFormat) -> np.ndarray:
    """``ulp_F`` of each exact value: from the float64 approximation where it is tight, else from the
    correct rounding (the approximation may be loose where the oracle's exact path decided)."""
    approx, bound = exact.approx, exact.error_bound
    with np.errstate(invalid="ignore"):
        tight = np.isfinite(approx) & (bound <= 2.0**-20 * np.abs(approx))
    rounded = exact.round(fmt).astype(np.float64)
    return ulp(np.where(tight, approx, np.where(np.isfinite(rounded), rounded, 0.0)), fmt)


@dataclass
class _Scales:
    """Float64 magnitudes of the quantities each output is computed from (rows flattened)."""

    n: int
    rows: int
    r: np.ndarray  # (rows, 1)
    xhat: np.ndarray  # (rows, n)
    scale: np.ndarray  # (n,) |weight + offset|, ones without weight
    mean_abs_x: np.ndarray  # (rows, 1), LayerNorm's conditioning
    h: np.ndarray  # (rows, n) |grad * scale|
    mean_h: np.ndarray  # (rows, 1)
    mean_hx: np.ndarray  # (rows, 1) mean |h * xhat|
    g: np.ndarray  # (rows, n) |grad|


def _scales(
    kind: str, x: np.ndarray, weight: np.ndarray | None, grad: np.ndarray | None, eps: float, offset: int
) -> _Scales:
    n = x.shape[-1]
    x2 = np.asarray(x, dtype=np.float64).reshape(-1, n)
    with np.errstate(all="ignore"):
        centered = x2 - x2.mean(axis=-1, keepdims=True) if kind == "layernorm" else x2
        r = 1.0 / np.sqrt(np.mean(centered * centered, axis=-1, keepdims=True) + eps)
        xhat = np.abs(centered * r)
        scale = np.ones(n) if weight is None else np.abs(np.asarray(weight, np.float64) + offset)
        g = np.zeros_like(x2) if grad is None else np.abs(np.asarray(grad, np.float64).reshape(x2.shape))
        h = g * scale
        return _Scales(
            n,
            x2.shape[0],
            r,
            xhat,
            scale,
            np.mean(np.abs(x2), axis=-1, keepdims=True),
            h,
            np.mean(h, axis=-1, keepdims=True),
            np.mean(h * xhat, axis=-1, keepdims=True),
            g,
        )


def bounds(
    kind: str,
    fmt: FloatFormat,
    x: np.ndarray,
    exact: dict[str, oracles.Exact],
    *,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    grad: np.ndarray | None,
    eps: float,
    offset: int,
) -> dict[str, Bound]:
    """The bound for every output in ``exact`` (keys ``y``, ``dx``, ``dw``, ``db``)."""
    comp = oracles.resolve_format("float64" if fmt.precision > 24 else "float32")
    uf, uc = unit_roundoff(fmt), unit_roundoff(comp)
    s = _scales(kind, x, weight, grad, eps, offset)
    ln = kind == "layernorm"
    # Intermediate roundings to the output format inside correct gradients (none when F is the compute format).
    c_f = 2.0 if fmt.precision < comp.precision else 0.0
    n, rows = s.n, s.rows
    out: dict[str, Bound] = {}
    with np.errstate(all="ignore"):
        for name, ex in exact.items():
            ulp_y = exact_ulp(ex, fmt)
            ulp_y = ulp_y.reshape(-1, ex.shape[-1]) if ulp_y.ndim else ulp_y
            base = ROUNDINGS * ulp_y
            if name == "y":
                core = s.xhat * s.scale
                # Llama / T5 / half affine round xhat, then w * xhat (then + b): each at most half an ulp.
                base = 0.5 * ulp_y + 0.5 * ulp(s.xhat, fmt) * s.scale
                term = (n + 8) * core
                why = f"0.5 ulp(y) + 0.5 ulp(xhat)*|w| + {MARGIN}*(n+8)*u_{comp.name}*|y|"
                if ln:
                    b_abs = 0 if bias is None else np.abs(np.asarray(bias, np.float64))
                    if bias is not None:
                        base = base + 0.5 * ulp(core, fmt)
                    term = term + b_abs + (n + 4) * s.r * s.scale * s.mean_abs_x
                    why += f" + {MARGIN}*(n+4)*u_{comp.name}*r*|w|*mean|x| (the mean's error; conditioning)"
                allowed = base + MARGIN * uc * term
            elif name == "dx":
                terms = s.r * (s.h + (s.mean_h if ln else 0) + s.xhat * s.mean_hx)
                allowed = base + MARGIN * (c_f * uf + (n + GRAD_ROUNDINGS) * uc) * terms
                why = (
                    f"{ROUNDINGS} ulp + {MARGIN}*({c_f:g}*u_{fmt.name} + (n+{GRAD_ROUNDINGS})*u_{comp.name})"
                    "*r*(|h| + |xhat|*mean|h*xhat|)"
                )
                if ln:  # an error d in the mean moves xhat by d*r and mean(h*xhat) by d*r*mean(h)
                    cond = (n + 4) * uc * s.r * s.r * s.mean_abs_x * (s.mean_hx + s.xhat * s.mean_h)
                    allowed = allowed + MARGIN * cond
                    why += f" + {MARGIN}*(n+4)*u_{comp.name}*r^2*mean|x|*(mean|h*xhat| + |xhat|*mean|h|)"
            elif name == "dw":
                terms = np.sum(s.g * s.xhat, axis=0)
                allowed = base + MARGIN * (c_f * uf + (rows + n + GRAD_ROUNDINGS) * uc) * terms
                why = (
                    f"{ROUNDINGS} ulp + {MARGIN}*({c_f:g}*u_{fmt.name} + (rows+n+{GRAD_ROUNDINGS})*u_{comp.name})"
                    "*sum|g*xhat|"
                )
                if ln:
                    allowed = allowed + MARGIN * (n + 4) * uc * np.sum(s.g * s.r * s.mean_abs_x, axis=0)
            else:  # db
                allowed = base + MARGIN * (rows + 2) * uc * np.sum(s.g, axis=0)
                why = f"{ROUNDINGS} ulp + {MARGIN}*(rows+2)*u_{comp.name}*sum|g|"
            out[name] = Bound(np.asarray(allowed, dtype=np.float64).reshape(ex.shape), why)
    return out
