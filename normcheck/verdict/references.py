"""Correct computations of a norm and its gradients in several summation orders, for the sharp bound.

How far from the exact value can correct code be *on this input*? The worst-case
bound answers for every input at once and grows with ``n``; here correct
computations actually run: the analytic formulas of docs/theory.md, sections 1
and 2, in the compute precision (float32, or float64 for float64 inputs), with
the row sums done sequentially (a plain loop), pairwise (numpy), in blocks of
256 with their partial sums added in turn (a split reduction), and in 32 lanes
added at the end (a warp or a vector unit); for LayerNorm also pairwise with the mean one ulp
up and down (a correct mean, from another order or a running update, is only known within its
rounding, and a tiny eps lets rstd amplify that into xhat on near-constant rows). The torch emulations of the correct
conventions run too, in the dtype under audit (autograd's gradients): in float16 and
bfloat16 they show the intermediate roundings correct conventions make on this input.
``normcheck.verdict.bounds`` takes the largest of their errors as the sharp bound's unit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from normcheck.diagnosis.emulations import emulations_for, run_emulation

#: Rows of a split reduction, and lanes of a vector reduction.
BLOCK, LANES = 256, 32

Summation = Callable[[np.ndarray], np.ndarray]


def _pad_to(a: np.ndarray, multiple: int) -> np.ndarray:
    """Zeros appended to the last axis up to a multiple (adding zeros rounds nothing)."""
    pad = -a.shape[-1] % multiple
    return np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)]) if pad else a


def sequential(a: np.ndarray) -> np.ndarray:
    """Left to right along the last axis, one rounding per addition."""
    return np.cumsum(a, axis=-1, dtype=a.dtype)[..., -1:]


def pairwise(a: np.ndarray) -> np.ndarray:
    """numpy's summation: pairwise over blocks, unrolled eight ways."""
    return np.add.reduce(a, axis=-1, dtype=a.dtype, keepdims=True)


def blocked(a: np.ndarray) -> np.ndarray:
    """Sequential within blocks of :data:`BLOCK`, then the partial sums in turn."""
    if a.shape[-1] <= BLOCK:  # one block: the same additions as a sequential sum
        return sequential(a)
    padded = _pad_to(a, BLOCK)
    parts = np.cumsum(padded.reshape(*a.shape[:-1], -1, BLOCK), axis=-1, dtype=a.dtype)[..., -1]
    return sequential(parts)


def lanes(a: np.ndarray) -> np.ndarray:
    """:data:`LANES` running sums (element i into lane i mod 32), added pairwise at the end."""
    if a.shape[-1] <= LANES:  # one element per lane: the same additions as adding the lanes
        return pairwise(a)
    padded = _pad_to(a, LANES)
    per_lane = np.cumsum(padded.reshape(*a.shape[:-1], -1, LANES), axis=-2, dtype=a.dtype)[..., -1, :]
    return pairwise(per_lane)


SUMMATIONS: dict[str, Summation] = {
    "sequential": sequential,
    "pairwise": pairwise,
    "blocked": blocked,
    "lanes": lanes,
}


def _over_rows(total: Summation, a: np.ndarray) -> np.ndarray:
    """A channel's sum over every row (``dw``, ``db``), in the same order."""
    return total(np.ascontiguousarray(a.T))[:, 0]


def formula(
    kind: str,
    total: Summation,
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    grad: np.ndarray | None,
    eps: float,
    offset: int,
    dtype: type,
    mean_step: int = 0,
) -> dict[str, np.ndarray]:
    """``y`` (and ``dx``, ``dw``, ``db`` given ``grad``) by the analytic formulas in ``dtype``, rows summed by
    ``total``; arrays shaped like the inputs. ``mean_step`` (LayerNorm) moves the mean to the next value of
    ``dtype`` up (1) or down (-1)."""
    shape, n = x.shape, x.shape[-1]
    xf: np.ndarray = x.reshape(-1, n).astype(dtype)
    inv_n = dtype(1) / dtype(n)
    scale = np.ones(n, dtype) if weight is None else weight.astype(dtype) + dtype(offset)
    if kind == "layernorm":
        mean = total(xf) * inv_n
        if mean_step:
            mean = np.nextafter(mean, dtype(mean_step * np.inf))
        centered = xf - mean
    else:
        centered = xf
    r = dtype(1) / np.sqrt(total(centered * centered) * inv_n + dtype(eps))
    xhat = centered * r
    y = xhat * scale
    if bias is not None:
        y = y + bias.astype(dtype)
    out = {"y": y.reshape(shape)}
    if grad is None:
        return out
    g: np.ndarray = grad.reshape(-1, n).astype(dtype)
    h = g * scale
    inner = h - xhat * (total(h * xhat) * inv_n)
    if kind == "layernorm":
        inner = inner - total(h) * inv_n
    out["dx"] = (r * inner).reshape(shape)
    if weight is not None:
        out["dw"] = _over_rows(total, g * xhat)
    if bias is not None:
        out["db"] = _over_rows(total, g)
    return out


def correct_outputs(
    kind: str,
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    grad: np.ndarray | None,
    eps: float,
    offset: int,
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """The outputs of correct computations on this input: the formulas in the compute precision, and
    torch's correct conventions in the input's dtype (with their own roundings), each in the dtype it
    computed in (float64 copies would only add memory: the errors against the exact value are float64)."""
    dtype = np.float64 if np.dtype(x.dtype) == np.float64 else np.float32
    with np.errstate(all="ignore"):  # a row with an infinity (a residual sum past the format) is NaN
        computed = [formula(kind, total, x, weight, bias, grad, eps, offset, dtype) for total in SUMMATIONS.values()]
        if kind == "layernorm":  # a correct mean is only known within its rounding: rstd amplifies that
            computed += [formula(kind, pairwise, x, weight, bias, grad, eps, offset, dtype, s) for s in (-1, 1)]
    conventions = [
        run_emulation(emu, x, weight, bias, grad, eps, offset) for emu in emulations_for(kind, offset) if emu.correct
    ]
    return computed, conventions
