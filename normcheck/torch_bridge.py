"""Exact conversions between torch tensors and numpy arrays, bfloat16 included."""

from __future__ import annotations

import importlib
from types import ModuleType

import ml_dtypes
import numpy as np

from normcheck.errors import UsageError


def require_torch() -> ModuleType:
    """Import torch, or fail with a one-line usage error that says how to install it."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        raise UsageError("this command needs PyTorch: install it first, e.g. `pip install torch`") from None


def to_numpy(tensor: object) -> np.ndarray:
    """A detached CPU copy as numpy, same values; bfloat16 becomes ``ml_dtypes.bfloat16``."""
    torch = require_torch()
    t = tensor.detach().cpu()  # type: ignore[attr-defined]
    if t.dtype == torch.bfloat16:
        return t.to(torch.float32).numpy().astype(ml_dtypes.bfloat16)  # exact: fp32 holds every bf16
    return t.numpy().copy()


def from_numpy(array: np.ndarray, device: str = "cpu") -> object:
    """A torch tensor with the same values and dtype as ``array``, in memory of its own.

    Never a view of ``array``: what an implementation writes into the tensor cannot
    reach the array the oracle, the checks and the reproducer read.
    """
    torch = require_torch()
    if array.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(array.astype(np.float32)).to(device=device, dtype=torch.bfloat16)
    return torch.from_numpy(np.array(array, order="C", copy=True)).to(device)
