"""Every exact output of one norm call, by kind: the forward and, given the output gradient, the backward."""

from __future__ import annotations

import numpy as np

from oracles.exact import Exact
from oracles.layernorm import layer_norm, layer_norm_backward
from oracles.rmsnorm import rms_norm, rms_norm_backward


def norm_outputs(
    kind: str,
    x: np.ndarray,
    w: np.ndarray | None,
    b: np.ndarray | None,
    eps: float,
    offset: int,
    grad: np.ndarray | None = None,
) -> dict[str, Exact]:
    """``y`` of an RMSNorm (``kind`` "rmsnorm", ``b`` unused) or a LayerNorm; with ``grad`` (the output's
    gradient) also ``dx`` and the gradients of the parameters given (``dw``, ``db``)."""
    if kind == "rmsnorm":
        out = {"y": rms_norm(x, w, eps, offset)}
        if grad is not None:
            out["dx"], dw = rms_norm_backward(x, grad, w, eps, offset)
            if dw is not None:
                out["dw"] = dw
        return out
    out = {"y": layer_norm(x, w, b, eps, offset)}
    if grad is not None:
        out["dx"], dw, db = layer_norm_backward(x, grad, w, b, eps, offset)
        if dw is not None:
            out["dw"] = dw
        if db is not None:
            out["db"] = db
    return out
