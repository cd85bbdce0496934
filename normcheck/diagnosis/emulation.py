"""What an emulation is, the registry every kind's emulations join where they are defined, and the
pieces they are built from.

Each emulation is a forward function ``f(x, w, b, eps, offset) -> y`` written the
way real code writes it, run on CPU in the dtype under audit; its gradients come
from autograd, as they would in the real code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from normcheck.target.torch_bridge import require_torch


@dataclass(frozen=True)
class Emulation:
    """A way of computing the norm: a correct convention, or a bug class with its name in docs/theory.md."""

    name: str
    kind: str  # "rmsnorm" or "layernorm"
    correct: bool
    description: str
    forward: Callable
    offset_only: bool = False  # meaningful only with weight_offset=1
    plain_only: bool = False  # meaningful only with weight_offset=0
    #: "input" or "parameter": the bug is a rounding to that tensor's dtype (a no-op where it is float32 or
    #: float64, the compute dtype: see :func:`rounds_here`); None for bugs that round to a named dtype or none.
    rounds_to: str | None = None


class Registry:
    """The emulations of one kind, in the order registered: the diagnosis names the earlier of two that
    reproduce an implementation alike."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.emulations: list[Emulation] = []

    def register(
        self,
        name: str,
        description: str,
        forward: Callable,
        *,
        correct: bool = False,
        offset_only: bool = False,
        plain_only: bool = False,
        rounds_to: str | None = None,
    ) -> Callable:
        """Add ``forward`` as the emulation ``name``; return it."""
        emu = Emulation(name, self.kind, correct, description, forward, offset_only, plain_only, rounds_to)
        self.emulations.append(emu)
        return forward

    def emulation(self, name: str, description: str, **flags: bool | str) -> Callable[[Callable], Callable]:
        """Register the decorated forward function (with :meth:`register`'s flags)."""

        def decorate(forward: Callable) -> Callable:
            return self.register(name, description, forward, **flags)  # type: ignore[arg-type]  # register's flags

        return decorate


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def upcast(t):
    """The compute precision of a correct implementation: fp32 for 16-bit tensors, else their own."""
    torch = require_torch()
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def affine(y, w, b, off, dtype=None):
    """``y * (w + off) + b`` with the scale and shift in ``dtype`` (y's by default)."""
    dtype = dtype or y.dtype
    if w is not None:
        y = y * (w.to(dtype) + off) if off else y * w.to(dtype)
    if b is not None:
        y = y + b.to(dtype)
    return y


def truncating(forward: Callable) -> Callable:
    """The same computation, but the final cast truncates toward zero instead of rounding."""

    def emulate(x, w, b, eps, off):
        torch = require_torch()
        y32 = upcast(forward(upcast(x), w, b, eps, off))
        y = y32.to(x.dtype)
        too_big = y.to(y32.dtype).abs() > y32.abs()
        toward_zero = torch.nextafter(y, torch.zeros_like(y))
        return torch.where(too_big, toward_zero, y)

    return emulate


def low_precision_accumulator(normalize: Callable, *, with_bias: bool) -> Callable:
    """Forward in fp32 (``normalize(xf, eps)``, then the affine); weight and bias (``with_bias``) gradients summed over
    rows in the parameter dtype (Liger PR #950)."""

    def emulate(x, w, b, eps, off):
        torch = require_torch()

        class Affine(torch.autograd.Function):
            @staticmethod
            def forward(ctx, xhat, weight, bias):
                ctx.save_for_backward(xhat, weight)
                ctx.has_bias = bias is not None
                y = xhat * (upcast(weight) + off)
                return y + upcast(bias) if bias is not None else y

            @staticmethod
            def backward(ctx, g):
                xhat, weight = ctx.saved_tensors
                n = xhat.shape[-1]
                dw = torch.zeros(n, dtype=weight.dtype)
                db = torch.zeros(n, dtype=weight.dtype)
                # Each row's terms rounded at once (elementwise), then summed row by row in the parameter dtype.
                for term in (g * xhat).reshape(-1, n).to(weight.dtype).unbind():
                    dw = dw + term
                if ctx.has_bias:
                    for term in g.reshape(-1, n).to(weight.dtype).unbind():
                        db = db + term
                return g * (upcast(weight) + off), dw, (db if ctx.has_bias else None)

        xf = upcast(x)
        xhat = normalize(xf, eps)
        if w is None:
            return xhat.to(x.dtype)
        return Affine.apply(xhat, w, b if with_bias else None).to(x.dtype)

    return emulate
