"""Plain numpy functions audited with ``--framework numpy``: correct ones, with and without gradients, faulty ones."""

from __future__ import annotations

import numpy as np


def _rstd(xf: np.ndarray, eps: float) -> np.ndarray:
    return 1.0 / np.sqrt(np.mean(xf * xf, axis=-1, keepdims=True) + np.float32(eps))


def rms_norm(x: np.ndarray, weight: np.ndarray | None = None, eps: float = 1e-6) -> np.ndarray:
    """Correct: fp32 inside, one rounding into the input dtype. Forward only."""
    xf = x.astype(np.float32)
    y = xf * _rstd(xf, eps)
    if weight is not None:
        y = y * weight.astype(np.float32)
    return y.astype(x.dtype)


def rms_norm_no_upcast(x: np.ndarray, weight: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Bug: everything in the input dtype (x * x overflows float16 past 256)."""
    return (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + x.dtype.type(eps)) * weight).astype(x.dtype)


def _with_gradients(x, weight, eps, grad_output, project):
    xf, w, g = x.astype(np.float32), weight.astype(np.float32), grad_output.astype(np.float32)
    r = _rstd(xf, eps)
    xhat = xf * r
    h = g * w
    dx = r * (h - xhat * np.mean(h * xhat, axis=-1, keepdims=True)) if project else r * h
    dw = np.sum((g * xhat).reshape(-1, x.shape[-1]), axis=0)
    return {"y": (xhat * w).astype(x.dtype), "dx": dx.astype(x.dtype), "dw": dw.astype(weight.dtype)}


def rms_norm_with_gradients(x, weight, eps=1e-6, grad_output=None):
    """Correct, with gradients by normcheck's protocol (a mapping y, dx, dw when called with grad_output)."""
    if grad_output is None:
        return rms_norm(x, weight, eps)
    return _with_gradients(x, weight, eps, grad_output, project=True)


def rms_norm_wrong_dx(x, weight, eps=1e-6, grad_output=None):
    """Bug: dx drops the term through the statistic (dx = r * g * w), as a detached rstd would."""
    if grad_output is None:
        return rms_norm(x, weight, eps)
    return _with_gradients(x, weight, eps, grad_output, project=False)


def returns_a_list(x, weight=None, eps=1e-6):
    """Fault: a list, not an array."""
    return rms_norm(x, weight, eps).tolist()


def writes_into_x(x, weight=None, eps=1e-6):
    """Fault: normalizes in place, then returns the input array."""
    x[...] = rms_norm(x, weight, eps)
    return x
