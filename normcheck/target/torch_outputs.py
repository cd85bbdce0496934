"""What a torch implementation answered, read into a :class:`~normcheck.target.protocol.Run`: a norm's ``y``; a
fused residual-add's ``(y, residual_out)`` or its in-place writes; a quantized norm's ``q`` and scales; the
gradients of its backward. What is missing, or of the wrong type, shape or dtype, goes into ``Run.problems``."""

from __future__ import annotations

import time
import warnings
from functools import partial

import numpy as np

from normcheck.options import Style
from normcheck.quantization import Scheme
from normcheck.target.protocol import Run, failed, output_problems
from normcheck.target.quantized_outputs import PACKED_FP4, read_quantized
from normcheck.target.torch_bridge import Tensor, from_numpy, require_torch, synchronize, to_numpy
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
        read_quantized(out, y, scheme, x, tensor_host, "tensor")
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


def tensor_host(value: object) -> tuple[np.ndarray, str] | None:
    """A numpy copy of a tensor and its dtype's name (packed FP4 as its bytes), or None for anything else
    (:data:`~normcheck.target.quantized_outputs.Host`)."""
    torch = require_torch()
    if not isinstance(value, torch.Tensor):
        return None
    name = str(value.dtype).removeprefix("torch.")
    if name in PACKED_FP4:
        return value.detach().cpu().contiguous().view(torch.uint8).numpy().copy(), name
    return to_numpy(value), name


def same_bits(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` and ``b`` hold the same bits (NaN payloads and signed zeros included)."""
    torch = require_torch()
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return bool(torch.equal(a.view(ints), b.view(ints)))
