"""Exact conversions between torch tensors and numpy arrays, bfloat16 included."""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType
from typing import Any

import ml_dtypes
import numpy as np

from normcheck.errors import UsageError

#: A ``torch.Tensor``: torch is optional and imported at run time (:func:`require_torch`), so its type is Any.
Tensor = Any
#: A ``torch.nn.Module`` (Any, as :data:`Tensor`).
Module = Any


def require_torch() -> ModuleType:
    """Import torch, or fail with a one-line usage error that says how to install it."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        raise UsageError("this command needs PyTorch: install it first, e.g. `pip install torch`") from None


def warm_up_autograd(device: str = "cpu") -> None:
    """One backward with a gradient tensor, as the audit's are: torch imports parts of itself on the first
    (``backward(grad)`` imports sympy, 0.5 s), paid here rather than in a timed call."""
    torch = require_torch()
    (torch.ones(2, device=device, requires_grad=True) * 2).backward(torch.ones(2, device=device))


def require_device(device: str) -> None:
    """A one-line :class:`UsageError` unless torch has ``device`` here (cpu, cuda, cuda:1, xpu, mps, ...)."""
    if device == "cpu":
        return  # without importing torch: a worker process may be importing it meanwhile
    torch = require_torch()
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"--device {device!r} is not a torch device: {exc}") from None
    if dev.type == "cpu":
        return
    backend = getattr(torch, dev.type, None)
    if backend is None or not hasattr(backend, "is_available") or not backend.is_available():
        raise UsageError(
            f"--device {device}: torch has no {dev.type} device here (torch.{dev.type}.is_available() is False)"
        )
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if dev.index is not None and dev.index >= count:
        raise UsageError(f"--device {device}: torch sees {count} {dev.type} device(s) here (indices from 0)")


@cache
def require_dtype(device: str, dtype: str) -> None:
    """A one-line :class:`UsageError` unless ``device`` computes in ``dtype`` (bfloat16 on an old GPU...)."""
    torch = require_torch()
    try:
        (torch.ones(2, dtype=getattr(torch, dtype), device=device) * 2).sum().item()
    except Exception as exc:
        raise UsageError(f"device {device!r} cannot compute in {dtype}: {exc}") from None


def synchronize(device: str) -> None:
    """Wait for the device's queued work (a no-op on the CPU), through ``torch.accelerator`` where it applies."""
    torch = require_torch()
    dev = torch.device(device)
    if dev.type == "cpu":
        return
    accelerator = getattr(torch, "accelerator", None)
    current = accelerator.current_accelerator() if accelerator is not None and accelerator.is_available() else None
    if accelerator is not None and current is not None and current.type == dev.type:
        accelerator.synchronize(dev)
    else:
        getattr(torch, dev.type).synchronize()


#: torch's 8-bit floats and the ml_dtypes types with the same bits.
FLOAT8 = {
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "float8_e5m2": ml_dtypes.float8_e5m2,
    "float8_e8m0fnu": ml_dtypes.float8_e8m0fnu,  # UE8M0 scales
}


def to_numpy(tensor: Tensor) -> np.ndarray:
    """A detached CPU copy as numpy, same values; bfloat16 and the float8 types become ``ml_dtypes``'."""
    torch = require_torch()
    t = tensor.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.to(torch.float32).numpy().astype(ml_dtypes.bfloat16)  # exact: fp32 holds every bf16
    name = str(t.dtype).removeprefix("torch.")
    if name in FLOAT8:
        return t.contiguous().view(torch.uint8).numpy().view(FLOAT8[name]).copy()  # the same bits
    return t.numpy().copy()


def from_numpy(array: np.ndarray, device: str = "cpu") -> Tensor:
    """A torch tensor with the same values and dtype as ``array``, in memory of its own.

    Never a view of ``array``: what an implementation writes into the tensor cannot
    reach the array the oracle, the checks and the reproducer read.
    """
    torch = require_torch()
    if array.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(array.astype(np.float32)).to(device=device, dtype=torch.bfloat16)
    return torch.from_numpy(np.array(array, order="C", copy=True)).to(device)
