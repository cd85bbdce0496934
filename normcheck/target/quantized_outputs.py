"""A quantized norm's answer read into a :class:`~normcheck.target.protocol.Run`, whatever the framework: ``q``
(as :attr:`Run.y`; FP4 packed two elements a byte) and, from a dynamic scheme, its scales (as float32); what is
missing, or of the wrong type, shape or dtype, goes into :attr:`Run.problems`."""

from __future__ import annotations

from collections.abc import Callable

import ml_dtypes
import numpy as np

from normcheck.quantization import Scheme, swizzled_size, unswizzle
from normcheck.target.protocol import Run, output_problems

#: A numpy copy of one of the framework's arrays and its dtype's name, or None where the object is not one.
Host = Callable[[object], tuple[np.ndarray, str] | None]

#: The dtypes packed FP4 comes in: torch's two-element type, or its bytes.
PACKED_FP4 = ("float4_e2m1fn_x2", "uint8")


def unpack_fp4(packed: np.ndarray) -> np.ndarray:
    """Two FP4 (E2M1) elements a byte (``packed``'s bytes), the first in the low nibble (torch's
    ``float4_e2m1fn_x2``, the OCP order), unpacked along the last dimension as ``ml_dtypes.float4_e2m1fn``."""
    b = np.ascontiguousarray(packed).view(np.uint8)
    codes = np.stack([b & 0xF, b >> 4], axis=-1).reshape(*b.shape[:-1], 2 * b.shape[-1])
    return codes.astype(np.uint8).view(ml_dtypes.float4_e2m1fn)


def read_quantized(out: Run, result: object, scheme: Scheme, x: np.ndarray, host: Host, array_name: str) -> Run:
    """``out`` with the answer ``result`` of a quantized norm on ``x`` read into it: ``q``, or ``(q, scales)``
    from a dynamic ``scheme``, each an array that ``host`` reads (``array_name``: what it is, for a problem)."""
    dynamic = not scheme.static
    if dynamic and not (isinstance(result, tuple | list) and len(result) == 2):
        out.problems.append(f"returned {type(result).__name__}: a dynamic quantized norm returns (q, scales)")
        return out
    given = {"q": result[0], "scales": result[1]} if dynamic else {"q": result}  # type: ignore[index]  # a pair where dynamic
    read = {}
    for name, value in given.items():
        got = host(value)
        if got is None:
            out.problems.append(f"returned {type(value).__name__} as {name}, not a {array_name}")
            return out
        read[name] = got
    q, dtype = read["q"]
    if scheme.packed:
        packed = (*x.shape[:-1], x.shape[-1] // 2)
        want = dtype if dtype in PACKED_FP4 else PACKED_FP4[0]
        wrong = output_problems(tuple(q.shape), dtype, x, "q", (packed, want, "the scheme's packed"))
        out.problems += wrong
        out.y = None if wrong else unpack_fp4(q)
    else:
        expected = (tuple(x.shape), scheme.element.name, "the scheme's")
        out.problems += output_problems(tuple(q.shape), dtype, x, "q", expected)
        out.y = q
    if "scales" in read:
        rowwise, dtype = rowwise_scales(*read["scales"], tuple(x.shape), scheme, out.problems)
        if rowwise is None:
            return out
        scales = rowwise
        # UE8M0 scales may come as float8_e8m0fnu, NVFP4's as float8_e4m3fn or its bytes (exact in float32)
        narrow = "float8_e8m0fnu" if scheme.rule is not None else getattr(scheme.scale_format, "name", None)
        want = dtype if dtype == narrow else "float32"
        expected = (scheme.scales_shape(tuple(x.shape)), want, "the scheme's")
        out.problems += output_problems(tuple(scales.shape), dtype, x, "scales", expected)
        out.scales = scales.astype(np.float32)
    return out


def rowwise_scales(
    scales: np.ndarray, dtype: str, shape: tuple[int, ...], scheme: Scheme, problems: list[str] | None = None
) -> tuple[np.ndarray | None, str]:
    """Scales as a kernel returned them (``dtype``: their dtype's name) for an input of ``shape``, row by row: NVFP4's
    E4M3 scales given as their bytes (uint8) read as E4M3, and swizzled ones (any shape of the padded 128x4 tiles'
    size) put back in order. (None, dtype), with a problem noted, where swizzled scales are not that many."""
    if scheme.scale_format is not None and dtype == "uint8":
        scales, dtype = scales.view(scheme.scale_format.dtype), scheme.scale_format.name
    if not scheme.swizzled:
        return scales, dtype
    want = scheme.scales_shape(shape)
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    size = swizzled_size(rows, want[-1])
    if scales.size != size:
        if problems is not None:
            problems.append(
                f"scales hold {scales.size} values; 128x4 swizzled tiles of {rows} rows and {want[-1]} scales "
                f"hold {size}"
            )
        return None, dtype
    return unswizzle(scales.reshape(-1), rows, want[-1]).reshape(want), dtype
