"""How a quantized norm lays out its output (:class:`Scheme`, from ``--quant`` and ``--scaling``), and the static
scale an audit hands a per-tensor one.

A quantized norm returns ``q = saturate(round(y / s))`` in an element format, with one float32 scale ``s`` per
block of channels (``token``: a row, ``group:N``: N consecutive channels) that it computes and returns, or one
scale for the whole tensor that it is given (``tensor``: static).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from normcheck.errors import UsageError
from oracles import FloatFormat
from oracles.quantize import ELEMENT_FORMATS

#: The element formats ``--quant`` takes.
QUANT_FORMATS = tuple(ELEMENT_FORMATS[name] for name in ("float8_e4m3fn", "float8_e5m2", "int8"))
#: ``--scaling``: static per tensor, dynamic per token, dynamic per group of N channels.
SCALINGS = ("tensor", "token", "group:N")
#: Static scales are this multiple of the scale that fits the input's largest value, chosen per input: the
#: full range, a quarter of it (the largest values saturate), and 16 times it (small values go subnormal).
STATIC_MULTIPLES = (1.0, 0.25, 16.0)
#: A dynamic scale may be raised to this floor times 1 / largest element (vLLM's minimum scale, 1 / (448 * 512)),
#: so that an all-zero row has a scale.
FLOOR = 1 / 512


@dataclass(frozen=True)
class Scheme:
    """An element format and the blocks its float32 scales cover (``block`` None: per tensor, static; 0: per
    token, one scale per row; N: per group of N channels)."""

    element: FloatFormat
    block: int | None

    @property
    def static(self) -> bool:
        return self.block is None

    @property
    def largest(self) -> float:
        return float(self.element.max_finite)

    def block_size(self, n: int) -> int | None:
        """The channels each scale covers at hidden size ``n`` (None: the whole tensor)."""
        return None if self.block is None else (self.block or n)

    def scales_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the scales a dynamic scheme returns for an input of ``shape``."""
        block = self.block_size(shape[-1])
        return () if block is None else (*shape[:-1], -(-shape[-1] // block))

    def describe(self) -> str:
        how = {None: "static per-tensor scale", 0: "dynamic per-token scales"}.get(
            self.block, f"dynamic scales per group of {self.block}"
        )
        return f"{self.element.name}, {how}"


def scheme(quant: str, scaling: str) -> Scheme:
    """The :class:`Scheme` of ``--quant`` and ``--scaling``; a one-line :class:`UsageError` for others."""
    formats = {f.name: f for f in QUANT_FORMATS}
    if quant not in formats:
        raise UsageError(f"quant must be one of {', '.join(formats)}, got {quant!r}")
    if scaling in ("tensor", "token"):
        return Scheme(formats[quant], None if scaling == "tensor" else 0)
    size = scaling.removeprefix("group:")
    if scaling.startswith("group:") and size.isdigit() and int(size) >= 1:
        return Scheme(formats[quant], int(size))
    raise UsageError(f"scaling must be tensor, token or group:N (N >= 1), got {scaling!r}")


def static_scale(x: np.ndarray, weight: np.ndarray | None, eps: float, largest: float) -> np.float32:
    """The float32 scale a static per-tensor scheme is called with on ``x``: a multiple (:data:`STATIC_MULTIPLES`,
    chosen by the input's bits) of the scale that maps an estimate of the output's largest magnitude (the larger
    of RMSNorm's and LayerNorm's) to ``largest``. The same input always gets the same scale, in the audit and in
    its reproducers."""
    xd = np.asarray(x, dtype=np.float64)
    top = 0.0
    with np.errstate(all="ignore"):
        for centered in (xd, xd - np.mean(xd, axis=-1, keepdims=True)):
            y = centered / np.sqrt(np.mean(centered * centered, axis=-1, keepdims=True) + eps)
            if weight is not None:
                y = y * np.asarray(weight, dtype=np.float64)
            top = max(top, float(np.max(np.abs(y), initial=0.0, where=np.isfinite(y))))
    multiple = STATIC_MULTIPLES[zlib.crc32(np.ascontiguousarray(x).tobytes()) % len(STATIC_MULTIPLES)]
    return np.float32(top / largest * multiple if top > 0 else 1.0)
