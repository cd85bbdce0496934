"""Norms over the channels of channels-first tensors (ConvNext's ``data_format="channels_first"``,
``LayerNorm2d``): the audit's rows of ``n`` values become the ``n`` channels of ``m`` positions, and the
output comes back as rows. Reshapes and a transpose only: exact, and autograd carries the gradients back."""

from __future__ import annotations

from typing import Any

from normcheck.options import InputLayout


def to_layout(x: Any, layout: str) -> Any:
    """``x`` (rows of its last dimension, any leading shape) as the implementation takes it: unchanged for
    ``last``; ``(1, n, m, 1)`` for ``nchw`` and ``(1, n, m)`` for ``ncl``, where ``m`` is the number of rows."""
    if layout == InputLayout.LAST:
        return x
    n = x.shape[-1]
    channels = x.reshape(-1, n).t().unsqueeze(0)  # (1, n, m): one image (or sequence) of m positions
    return channels.unsqueeze(-1) if layout == InputLayout.NCHW else channels


def from_layout(y: Any, shape: tuple[int, ...], layout: str) -> Any:
    """The implementation's output as rows of ``shape`` again (anything not of the expected shape unchanged:
    the audit reports it)."""
    if layout == InputLayout.LAST or not hasattr(y, "shape"):
        return y
    n = shape[-1]
    m = 1
    for size in shape[:-1]:
        m *= size
    expected = (1, n, m, 1) if layout == InputLayout.NCHW else (1, n, m)
    if tuple(y.shape) != expected:
        return y
    return y.reshape(n, m).t().reshape(shape)
