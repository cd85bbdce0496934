"""The emulations of the correct conventions and of the bug classes, and how they are run.

The diagnosis compares a failing implementation's numbers with every emulation and names the closest
one; the sharp tier runs the correct ones. A new one goes into the module of its kind
(:mod:`~normcheck.diagnosis.rmsnorm_emulations`, :mod:`~normcheck.diagnosis.layernorm_emulations`),
registered next to its function.
"""

from __future__ import annotations

import warnings

import numpy as np

from normcheck.diagnosis.emulation import Emulation
from normcheck.diagnosis.layernorm_emulations import LAYERNORM
from normcheck.diagnosis.rmsnorm_emulations import RMSNORM
from normcheck.target.torch_bridge import from_numpy, to_numpy

#: Every emulation, RMSNorm's then LayerNorm's.
EMULATIONS: tuple[Emulation, ...] = (*RMSNORM.emulations, *LAYERNORM.emulations)


def emulations_for(kind: str, offset: int) -> list[Emulation]:
    """The emulations that apply to a kind and weight offset."""
    return [
        e
        for e in EMULATIONS
        if e.kind == kind and not (e.offset_only and offset == 0) and not (e.plain_only and offset == 1)
    ]


def rounds_here(emu: Emulation, x: np.ndarray, weight: np.ndarray | None) -> bool:
    """Whether an emulation's bug rounds anything on this input: a cast to the input (or parameter) dtype
    is a no-op where that is the compute dtype (a float32 input), so such a bug class says nothing there."""
    held = {"input": x, "parameter": weight}.get(emu.rounds_to or "")
    return held is None or str(held.dtype) in ("float16", "bfloat16")


def run_emulation(
    emu: Emulation,
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    grad: np.ndarray | None,
    eps: float,
    offset: int,
) -> dict[str, np.ndarray]:
    """Outputs ``y`` (and ``dx``, ``dw``, ``db`` given ``grad``) of an emulation, on CPU."""
    need = grad is not None
    xt = from_numpy(x).requires_grad_(need)
    wt = None if weight is None else from_numpy(weight).requires_grad_(need)
    bt = None if bias is None else from_numpy(bias).requires_grad_(need)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = emu.forward(xt, wt, bt, eps, offset)
        if grad is not None:  # sum(y * grad)'s gradient at y is grad, bit for bit (grad * 1); y.backward(grad)
            (y * from_numpy(grad).to(y.dtype)).sum().backward()  # would import sympy, 0.5 s on the first call
    out = {"y": to_numpy(y)}
    if need:
        out["dx"] = to_numpy(xt.grad)
        if wt is not None:
            out["dw"] = to_numpy(wt.grad)
        if bt is not None:
            out["db"] = to_numpy(bt.grad)
    return out
