"""How a quantized norm lays out its output (:class:`Scheme`, from ``--quant`` and ``--scaling``), and the static
scale an audit hands a per-tensor one.

A quantized norm returns ``q = saturate(round(y / s))`` in an element format, with one float32 scale ``s`` per
block of channels (``token``: a row, ``group:N``: N consecutive channels) that it computes and returns, or one
scale for the whole tensor that it is given (``tensor``: static). The OCP Microscaling formats (``mxfp8``,
``mxfp4``) have a power-of-two (UE8M0) scale per block of 32. NVFP4 (``nvfp4``) has E2M1 elements in blocks of
16, each with a float8_e4m3fn scale ``s``, and a float32 global scale ``g`` that the kernel is given:
``s = e4m3(g * amax / 6)``, ``q = e2m1(y * g / s)``, dequantized as ``q * s / g``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from normcheck.errors import UsageError
from oracles import FloatFormat
from oracles.quantize import ELEMENT_FORMATS, per_element

#: The element formats ``--quant`` takes with float32 scales (``--scaling token|group:N|tensor``).
QUANT_FORMATS = tuple(ELEMENT_FORMATS[name] for name in ("float8_e4m3fn", "float8_e5m2", "int8"))
#: OCP Microscaling formats: their element format, in blocks of :data:`MX_BLOCK` with UE8M0 scales.
MX_FORMATS = {"mxfp8": ELEMENT_FORMATS["float8_e4m3fn"], "mxfp4": ELEMENT_FORMATS["float4_e2m1fn"]}
MX_BLOCK = 32
#: NVFP4: E2M1 elements in blocks of :data:`NV_BLOCK`, E4M3 block scales, a given float32 global scale.
NVFP4 = "nvfp4"
NV_BLOCK = 16
#: Every ``--quant`` name.
QUANT_NAMES = (*(f.name for f in QUANT_FORMATS), *MX_FORMATS, NVFP4)
#: ``--scaling``: static per tensor, dynamic per token, dynamic per group of N channels; for the MX formats,
#: UE8M0 block scales by either rule (``block``) or the one stated; NVFP4 takes ``block`` only.
SCALINGS = ("tensor", "token", "group:N", "block", "block:ocp", "block:ceil")
#: Static scales are this multiple of the scale that fits the input's largest value, chosen per input: the
#: full range, a quarter of it (the largest values saturate), and 16 times it (small values go subnormal).
STATIC_MULTIPLES = (1.0, 0.25, 16.0)
#: A dynamic scale may be raised to this floor times 1 / largest element (vLLM's minimum scale, 1 / (448 * 512)),
#: so that an all-zero row has a scale.
FLOOR = 1 / 512


@dataclass(frozen=True)
class Scheme:
    """An element format and the blocks its scales cover (``block`` None: per tensor, static; 0: per token, one
    scale per row; N: per group of N channels). Scales are float32, or with ``rule`` UE8M0 powers of two by
    that rule (``"ocp"``, ``"ceil"``; ``"either"``: each block by one of them; :func:`oracles.quantize.power_of_two`),
    or with ``scale_format`` values of that format (NVFP4's E4M3) relative to a given float32 global scale.
    ``name`` is the ``--quant`` name (``mxfp8`` for E4M3 elements in UE8M0 blocks)."""

    element: FloatFormat
    block: int | None
    rule: str | None = None
    name: str = ""
    scale_format: FloatFormat | None = None
    #: NVFP4 scales in the 128x4 tiles GEMMs read (``block:swizzled``), not row by row.
    swizzled: bool = False

    @property
    def static(self) -> bool:
        return self.block is None

    @property
    def global_scale(self) -> bool:
        """Whether the kernel is given a global scale that multiplies ``y`` (NVFP4)."""
        return self.scale_format is not None

    @property
    def given(self) -> bool:
        """Whether the kernel is called with a scale: a static one, or NVFP4's global scale."""
        return self.static or self.global_scale

    def divisors(self, scales: np.ndarray | None, given: float | None) -> np.ndarray | None:
        """What ``y`` is divided by per block (float64): the returned scales, the static scale, or NVFP4's block
        scales over the global scale (None where the scales needed did not come back)."""
        if self.static:
            return None if given is None else np.array(given, dtype=np.float64)
        if scales is None or (self.global_scale and given is None):
            return None
        return scales.astype(np.float64) / (float(given) if given is not None else 1.0)

    def element_divisors(
        self, scales: np.ndarray | None, given: float | None, shape: tuple[int, ...]
    ) -> np.ndarray | None:
        """:meth:`divisors` spread over the channels of an output of ``shape`` (float64), or None where the scales
        needed did not come back or are not of the scheme's shape (a kernel's fault, found elsewhere)."""
        divisors = self.divisors(scales, given)
        if divisors is None or np.shape(divisors) != self.scales_shape(shape):
            return None
        return per_element(divisors, shape, self.block_size(shape[-1]))

    @property
    def largest(self) -> float:
        return float(self.element.max_finite)

    @property
    def rules(self) -> tuple[str, ...]:
        """The UE8M0 rules a correct kernel's scales may follow (none: float32 scales)."""
        return () if self.rule is None else ("ocp", "ceil") if self.rule == "either" else (self.rule,)

    @property
    def scaling(self) -> str:
        """The ``--scaling`` value that gives this scheme."""
        if self.scale_format is not None:
            return "block:swizzled" if self.swizzled else "block"
        if self.rule is not None:
            return "block" if self.rule == "either" else f"block:{self.rule}"
        return {None: "tensor", 0: "token"}.get(self.block, f"group:{self.block}")

    @property
    def packed(self) -> bool:
        """Whether ``q`` comes two elements to a byte (FP4)."""
        return self.element.name == "float4_e2m1fn"

    def block_size(self, n: int) -> int | None:
        """The channels each scale covers at hidden size ``n`` (None: the whole tensor)."""
        return None if self.block is None else (self.block or n)

    def scales_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the scales a dynamic scheme returns for an input of ``shape``."""
        block = self.block_size(shape[-1])
        return () if block is None else (*shape[:-1], -(-shape[-1] // block))

    def describe(self) -> str:
        if self.scale_format is not None:
            layout = " in 128x4 swizzled tiles" if self.swizzled else ""
            return (
                f"{self.name} ({self.element.name} in blocks of {self.block}, {self.scale_format.name} scales"
                f"{layout}, a given float32 global scale)"
            )
        if self.rule is not None:
            how = {"either": "either rule", "ocp": "the OCP rule", "ceil": "rounded up"}[self.rule]
            return f"{self.name} ({self.element.name} in blocks of {self.block}, UE8M0 scales, {how})"
        how = {None: "static per-tensor scale", 0: "dynamic per-token scales"}.get(
            self.block, f"dynamic scales per group of {self.block}"
        )
        return f"{self.element.name}, {how}"


def scheme(quant: str, scaling: str | None) -> Scheme:
    """The :class:`Scheme` of ``--quant`` and ``--scaling`` (None: ``token``, or ``block`` for the MX formats);
    a one-line :class:`UsageError` for others."""
    formats = {f.name: f for f in QUANT_FORMATS}
    if quant == NVFP4:
        if (scaling or "block") not in ("block", "block:swizzled"):
            raise UsageError(
                f"nvfp4 has E4M3 scales per block of {NV_BLOCK}: scaling must be block or block:swizzled, "
                f"got {scaling!r}"
            )
        e2m1, e4m3 = ELEMENT_FORMATS["float4_e2m1fn"], ELEMENT_FORMATS["float8_e4m3fn"]
        return Scheme(e2m1, NV_BLOCK, name=NVFP4, scale_format=e4m3, swizzled=scaling == "block:swizzled")
    if quant in MX_FORMATS:
        rules = {"block": "either", "block:ocp": "ocp", "block:ceil": "ceil"}
        if (scaling or "block") not in rules:
            raise UsageError(
                f"{quant} has UE8M0 scales per block of {MX_BLOCK}: scaling must be block, "
                f"block:ocp or block:ceil, got {scaling!r}"
            )
        return Scheme(MX_FORMATS[quant], MX_BLOCK, rules[scaling or "block"], quant)
    if quant not in formats:
        raise UsageError(f"quant must be one of {', '.join(QUANT_NAMES)}, got {quant!r}")
    scaling = scaling or "token"
    if scaling in ("tensor", "token"):
        return Scheme(formats[quant], None if scaling == "tensor" else 0, name=quant)
    size = scaling.removeprefix("group:")
    if scaling.startswith("group:") and size.isdigit() and int(size) >= 1:
        return Scheme(formats[quant], int(size), name=quant)
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


def given_scale(x: np.ndarray, weight: np.ndarray | None, eps: float, scheme: Scheme) -> np.float32 | None:
    """The scale ``scheme``'s kernel is called with on ``x``: a static scheme's :func:`static_scale`; NVFP4's
    global scale, the reciprocal of the static scale to the product of both formats' largest values (``1``:
    ``448 * 6 / amax``, the usual choice; 4 times it: block scales saturate; a sixteenth: they go subnormal);
    None for the others."""
    if scheme.static:
        return static_scale(x, weight, eps, scheme.largest)
    if scheme.scale_format is None:
        return None
    return np.float32(1 / float(static_scale(x, weight, eps, scheme.largest * float(scheme.scale_format.max_finite))))


#: The tiles of swizzled NVFP4 scales: 128 rows (4 groups of 32) by 4 scales.
TILE_ROWS, TILE_SCALES = 128, 4


def swizzled_size(rows: int, scales: int) -> int:
    """How many scales the 128x4 swizzled layout holds for ``rows`` rows of ``scales`` scales (both padded)."""
    return -(-rows // TILE_ROWS) * TILE_ROWS * (-(-scales // TILE_SCALES) * TILE_SCALES)


def unswizzle(swizzled: np.ndarray, rows: int, scales: int) -> np.ndarray:
    """Row-major ``(rows, scales)`` scales from the 128x4 swizzled layout that NVFP4 GEMMs read (cuBLAS, CUTLASS;
    as FlashInfer and vLLM write it): rows and scales padded to multiples of 128 and 4, row ``128 a + 32 b + c``'s
    scale ``4 d + e`` at flat position ``(((a * D + d) * 32 + c) * 4 + b) * 4 + e`` (D tiles of 4 scales a row)."""
    padded_rows, padded_scales = -(-rows // TILE_ROWS) * TILE_ROWS, -(-scales // TILE_SCALES) * TILE_SCALES
    tiles = np.asarray(swizzled).reshape(padded_rows // TILE_ROWS, padded_scales // TILE_SCALES, 32, 4, 4)
    return tiles.transpose(0, 3, 2, 1, 4).reshape(padded_rows, padded_scales)[:rows, :scales]
