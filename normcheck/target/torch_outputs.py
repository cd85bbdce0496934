"""What a torch implementation answered, read into a :class:`~normcheck.target.protocol.Run`: a norm's ``y``; a
fused residual-add's ``(y, residual_out)`` or its in-place writes; a quantized norm's ``q`` and scales; the
gradients of its backward. What is missing, or of the wrong type, shape or dtype, goes into ``Run.problems``."""

from __future__ import annotations

import time
import warnings
from functools import partial
from typing import Any

import numpy as np

from normcheck.options import Style
from normcheck.quantization import Scheme
from normcheck.target.protocol import Run, failed, output_problems
from normcheck.target.torch_bridge import (
    PACKED_FP4,
    Tensor,
    from_numpy,
    require_torch,
    synchronize,
    to_numpy,
    unpack_fp4,
)
from normcheck.timing import interrupt_after


def read_forward(
    out: Run,
    result: object,
    x: np.ndarray,
    xt: Tensor,
    rest: list[Tensor],
    written: tuple[str, ...],
    style: str | None,
    scheme: Scheme | None,
    fused: bool,
) -> tuple[Tensor | None, str | None]:
    """``out`` with the forward's answer ``result`` read into it (on input ``x``, handed over as ``xt`` and
    ``rest``; ``written``: the inputs it wrote into); returns ``y`` where a backward can follow (else None) and
    the fused residual-add's style (as given, or found from this answer)."""
    torch = require_torch()
    y, residual_out = result, None
    if fused:
        split = fused_results if scheme is None else partial(fused_quantized_results, scheme=scheme)
        y, residual_out, style = split(result, xt, rest[0], style, out.problems)
    out.fused_style = style
    if style != Style.INPLACE:
        out.mutated = written
    if fused and y is None:
        return None, style
    if scheme is not None:
        quantized_run(out, y, scheme, x)
    for name, t in (("output", None if scheme else y), ("residual_out", residual_out)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            out.problems.append(f"returned {type(t).__name__} as {name}, not a tensor")
            return None, style
        out.problems += output_problems(tuple(t.shape), str(t.dtype).replace("torch.", ""), x, name)
    out.residual_out = None if residual_out is None else to_numpy(residual_out)
    if scheme is not None:
        return None, style
    out.y = to_numpy(y)
    return y, style


def read_backward(
    out: Run,
    y: Tensor,
    grad: np.ndarray,
    leaves: list[Tensor],
    params: tuple[Tensor | None, Tensor | None],
    strided: bool,
    timeout: float,
    device: str,
) -> Run:
    """``out`` with the gradients of ``y`` (the forward's output) against ``grad`` (in the input's dtype) read
    into it: of the input ``leaves`` (x and a residual; transposed back where ``strided``) and of the ``params``
    (weight, bias)."""
    try:
        g = from_numpy(grad, device).to(y.dtype).reshape(y.shape)
        g_before = g.clone()
        start = time.perf_counter()
        with interrupt_after(timeout), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y.backward(g)
            synchronize(device)
        out.seconds += time.perf_counter() - start
    except (Exception, SystemExit) as exc:
        return failed(exc, "backward", out.mutated)
    if not same_bits(g_before, g):
        out.mutated += ("grad_output",)
    grads = [None if t.grad is None else to_numpy(t.grad.t() if strided else t.grad) for t in leaves]
    out.dx, out.dresidual = grads[0], (grads[1:] or [None])[0]
    w_t, b_t = params
    out.dw = None if w_t is None or w_t.grad is None else to_numpy(w_t.grad)
    out.db = None if b_t is None or b_t.grad is None else to_numpy(b_t.grad)
    if out.dx is None:
        out.problems.append("backward produced no gradient for the input")
    return out


def fused_results(
    result: object, xt: Tensor, rt: Tensor, style: str | None, problems: list[str]
) -> tuple[Tensor | None, Tensor | None, str | None]:
    """(y, residual_out, style) of a fused residual-add called on ``xt`` and ``rt``, by its ``style`` (None: found
    here from how it answered); (None, None, style) with a problem noted where it answered neither way."""
    pair = isinstance(result, tuple | list) and len(result) == 2
    if style is None:
        style = Style.RETURN if pair else Style.INPLACE if result is None or result is xt else None
    if style == Style.INPLACE:
        return xt, rt, style
    if pair:
        return result[0], result[1], style  # type: ignore[index]  # pair: a tuple or list of two
    what = "None" if result is None else type(result).__name__
    problems.append(
        f"returned {what} as a fused residual-add: expected (y, residual_out), or y written into x and "
        "x + residual into residual (in place)"
    )
    return None, None, style


def fused_quantized_results(
    result: object, xt: Tensor, rt: Tensor, style: str | None, problems: list[str], *, scheme: Scheme
) -> tuple[object, Tensor | None, str | None]:
    """(the quantized answer, residual_out, style) of a fused residual-add with quantized output: it returns
    ``(q[, scales], residual_out)``, or ``q[, scales]`` with ``x + residual`` written into ``residual`` (in
    place); ``style`` None: found here from how it answered. (None, None, style) with a problem noted where it
    answered neither way."""
    parts = list(result) if isinstance(result, tuple | list) else [result]
    quantized = 1 if scheme.static else 2  # q, or (q, scales)
    if style is None:
        style = {quantized + 1: Style.RETURN, quantized: Style.INPLACE}.get(len(parts))
    if style == Style.RETURN and len(parts) == quantized + 1:
        return (parts[0] if scheme.static else tuple(parts[:2])), parts[-1], style
    if style == Style.INPLACE and len(parts) == quantized:
        return result, rt, style
    what = "q" if scheme.static else "(q, scales)"
    problems.append(
        f"returned {len(parts)} value(s) as a fused residual-add with quantized output: expected {what} and "
        f"residual_out, or {what} alone with x + residual written into residual (in place)"
    )
    return None, None, style


def quantized_run(out: Run, result: object, scheme: Scheme, x: np.ndarray) -> Run:
    """``out`` with a quantized norm's answer read into it: ``q`` (as :attr:`Run.y`) and, from a dynamic scheme,
    its float32 scales; what is missing or of the wrong shape or dtype goes into :attr:`Run.problems`."""
    torch = require_torch()
    dynamic = not scheme.static
    pair = isinstance(result, tuple | list) and len(result) == 2
    if dynamic and not pair:
        out.problems.append(f"returned {type(result).__name__}: a dynamic quantized norm returns (q, scales)")
        return out
    q: Any = result[0] if dynamic else result  # type: ignore[index]  # a pair where dynamic
    scales: Any = result[1] if dynamic else None  # type: ignore[index]
    for name, t in (("q", q), ("scales", scales)):
        if t is not None and not isinstance(t, torch.Tensor):
            out.problems.append(f"returned {type(t).__name__} as {name}, not a tensor")
            return out
    dtype = str(q.dtype).removeprefix("torch.")
    if scheme.packed:  # two FP4 elements a byte: float4_e2m1fn_x2, or its bits as uint8
        packed = (*x.shape[:-1], x.shape[-1] // 2)
        want = dtype if dtype in PACKED_FP4 else PACKED_FP4[0]
        wrong = output_problems(tuple(q.shape), dtype, x, "q", (packed, want, "the scheme's packed"))
        out.problems += wrong
        out.y = None if wrong else unpack_fp4(q)
    else:
        expected = (tuple(x.shape), scheme.element.name, "the scheme's")
        out.problems += output_problems(tuple(q.shape), dtype, x, "q", expected)
        out.y = to_numpy(q)
    if scales is not None:
        dtype = str(scales.dtype).removeprefix("torch.")
        # UE8M0 scales may come as torch's float8_e8m0fnu, NVFP4's as float8_e4m3fn (exact in float32)
        narrow = "float8_e8m0fnu" if scheme.rule is not None else getattr(scheme.scale_format, "name", None)
        want = dtype if dtype == narrow else "float32"
        expected = (scheme.scales_shape(tuple(x.shape)), want, "the scheme's")
        out.problems += output_problems(tuple(scales.shape), dtype, x, "scales", expected)
        out.scales = to_numpy(scales.float())
    return out


def same_bits(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` and ``b`` hold the same bits (NaN payloads and signed zeros included)."""
    torch = require_torch()
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return bool(torch.equal(a.view(ints), b.view(ints)))
