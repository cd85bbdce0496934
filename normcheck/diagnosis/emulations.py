"""Torch emulations of the correct conventions and of the bug classes of docs/theory.md, sections 4 and 5.

Each emulation is a forward function ``f(x, w, b, eps, offset) -> y`` written the
way real code writes it, run on CPU in the dtype under audit; its gradients come
from autograd, as they would in the real code. The diagnosis compares a failing
implementation's numbers with every emulation and names the closest one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from normcheck.target.torch_bridge import from_numpy, require_torch, to_numpy


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


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _up(t):
    """The compute precision of a correct implementation: fp32 for 16-bit tensors, else their own."""
    torch = require_torch()
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _affine(y, w, b, off, dtype=None):
    """``y * (w + off) + b`` with the scale and shift in ``dtype`` (y's by default)."""
    dtype = dtype or y.dtype
    if w is not None:
        y = y * (w.to(dtype) + off) if off else y * w.to(dtype)
    if b is not None:
        y = y + b.to(dtype)
    return y


# -- RMSNorm ---------------------------------------------------------------


def _rms_stat(xf, eps, divisor=None):
    torch = require_torch()
    n = xf.shape[-1]
    ms = xf.pow(2).sum(-1, keepdim=True) / (divisor or n)
    return torch.rsqrt(ms + eps)


def rms_all_fp32(x, w, b, eps, off):
    xf = _up(x)
    return _affine(xf * _rms_stat(xf, eps), w, None, off).to(x.dtype)


def rms_llama(x, w, b, eps, off):
    xf = _up(x)
    y = (xf * _rms_stat(xf, eps)).to(x.dtype)
    return y if w is None else y * w.to(x.dtype)


def rms_t5(x, w, b, eps, off):
    """T5: only the statistic is upcast; x times it promotes, so autograd casts dx's two paths separately."""
    y = (x * _rms_stat(_up(x), eps)).to(x.dtype)
    return y if w is None else w.to(x.dtype) * y


def rms_missing_upcast(x, w, b, eps, off):
    torch = require_torch()
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if w is None else y * (w.to(x.dtype) + off)


def rms_eps_outside_sqrt(x, w, b, eps, off):
    torch = require_torch()
    xf = _up(x)
    return _affine(xf / (torch.sqrt(xf.pow(2).mean(-1, keepdim=True)) + eps), w, None, off).to(x.dtype)


def rms_eps_in_input_dtype(x, w, b, eps, off):
    torch = require_torch()
    xf = _up(x)
    e = float(torch.tensor(eps, dtype=x.dtype))
    return _affine(xf * _rms_stat(xf, e), w, None, off).to(x.dtype)


def rms_low_precision_statistic(x, w, b, eps, off, dtype=None):
    xf = _up(x)
    return _affine(xf * _up(_rms_stat(xf, eps).to(dtype or x.dtype)), w, None, off).to(x.dtype)


def rms_bf16_statistic(x, w, b, eps, off):
    return rms_low_precision_statistic(x, w, b, eps, off, require_torch().bfloat16)


def rms_fp16_statistic(x, w, b, eps, off):
    return rms_low_precision_statistic(x, w, b, eps, off, require_torch().float16)


def _split_sum(v, block: int, dtype):
    """A split reduction over the last axis: blocks of ``block`` summed, each partial sum stored in ``dtype``."""
    torch = require_torch()
    padded = torch.nn.functional.pad(v, (0, -v.shape[-1] % block))
    return padded.reshape(*v.shape[:-1], -1, block).sum(-1).to(dtype).float().sum(-1, keepdim=True)


def rms_bf16_partial_sums(block: int) -> Callable:
    """The mean square from a split reduction whose partial sums are stored in bfloat16."""

    def emulate(x, w, b, eps, off):
        torch = require_torch()
        xf = _up(x)
        ms = _split_sum(xf.pow(2), block, torch.bfloat16) / xf.shape[-1]
        return _affine(xf * torch.rsqrt(ms + eps), w, None, off).to(x.dtype)

    return emulate


def rms_offset_in_low_precision(x, w, b, eps, off):
    xf = _up(x)
    y = xf * _rms_stat(xf, eps)
    return (y if w is None else y * _up(w + off)).to(x.dtype)


def rms_block_divisor(x, w, b, eps, off):
    xf = _up(x)
    return _affine(xf * _rms_stat(xf, eps, _next_pow2(x.shape[-1])), w, None, off).to(x.dtype)


def rms_finfo_of_input_dtype(x, w, b, eps, off):
    torch = require_torch()
    xf = _up(x)
    return _affine(xf * _rms_stat(xf, float(torch.finfo(x.dtype).eps)), w, None, off).to(x.dtype)


def rms_detached_statistic(x, w, b, eps, off):
    xf = _up(x)
    return _affine(xf * _rms_stat(xf, eps).detach(), w, None, off).to(x.dtype)


# -- LayerNorm -------------------------------------------------------------


def _ln(xf, eps, *, divisor=None, unbiased=False, one_pass=False, detach_mean=False, detach_rstd=False):
    torch = require_torch()
    n = xf.shape[-1]
    div = divisor or n
    mu = xf.sum(-1, keepdim=True) / div
    if one_pass:
        var = xf.pow(2).sum(-1, keepdim=True) / div - mu * mu
    else:
        d = xf - mu
        var = d.pow(2).sum(-1, keepdim=True) / (n - 1 if unbiased else div)
    r = torch.rsqrt(var + eps)
    mu = mu.detach() if detach_mean else mu
    r = r.detach() if detach_rstd else r
    return (xf - mu) * r


def ln_all_fp32(x, w, b, eps, off):
    return _affine(_ln(_up(x), eps), w, b, off).to(x.dtype)


def ln_half_affine(x, w, b, eps, off):
    y = _ln(_up(x), eps).to(x.dtype)
    return _affine(y, w, b, off, x.dtype)


def ln_statistics_cast_apart(x, w, b, eps, off):
    """Flax: the statistics from one fp32 cast of x and ``x - mean`` from another, times ``rstd * w``; autograd
    casts the gradients of the two casts to the input dtype separately and adds them there."""
    torch = require_torch()
    xs = _up(x)
    n = xs.shape[-1]
    mu = xs.sum(-1, keepdim=True) / n
    r = torch.rsqrt((xs - mu).pow(2).sum(-1, keepdim=True) / n + eps)
    scale = r if w is None else r * (_up(w) + off)
    y = (_up(x) - mu) * scale
    return (y if b is None else y + _up(b)).to(x.dtype)


def ln_missing_upcast(x, w, b, eps, off):
    return _affine(_ln(x, eps), w, b, off, x.dtype)


def ln_eps_outside_sqrt(x, w, b, eps, off):
    torch = require_torch()
    xf = _up(x)
    d = xf - xf.mean(-1, keepdim=True)
    return _affine(d / (torch.sqrt(d.pow(2).mean(-1, keepdim=True)) + eps), w, b, off).to(x.dtype)


def ln_eps_in_input_dtype(x, w, b, eps, off):
    torch = require_torch()
    return _affine(_ln(_up(x), float(torch.tensor(eps, dtype=x.dtype))), w, b, off).to(x.dtype)


def ln_unbiased_variance(x, w, b, eps, off):
    return _affine(_ln(_up(x), eps, unbiased=True), w, b, off).to(x.dtype)


def ln_one_pass_variance(x, w, b, eps, off):
    return _affine(_ln(_up(x), eps, one_pass=True), w, b, off).to(x.dtype)


def ln_low_precision_statistic(x, w, b, eps, off, dtype=None):
    torch = require_torch()
    xf = _up(x)
    d = xf - xf.mean(-1, keepdim=True)
    r = _up(torch.rsqrt(d.pow(2).mean(-1, keepdim=True) + eps).to(dtype or x.dtype))
    return _affine(d * r, w, b, off).to(x.dtype)


def ln_bf16_statistic(x, w, b, eps, off):
    return ln_low_precision_statistic(x, w, b, eps, off, require_torch().bfloat16)


def ln_fp16_statistic(x, w, b, eps, off):
    return ln_low_precision_statistic(x, w, b, eps, off, require_torch().float16)


def ln_saved_statistics(x, w, b, eps, off):
    """Forward in fp32; the mean and rstd saved for the backward in the input dtype, the backward in fp32 from
    them (torch's CPU LayerNorm when its weight and bias are half precision: its saved statistics take their dtype)."""
    torch = require_torch()

    class Norm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, xf, wf, bf):
            mu = xf.mean(-1, keepdim=True)
            r = torch.rsqrt((xf - mu).pow(2).mean(-1, keepdim=True) + eps)
            ctx.save_for_backward(xf, _up(mu.to(x.dtype)), _up(r.to(x.dtype)), wf)
            return _affine((xf - mu) * r, wf, bf, off)

        @staticmethod
        def backward(ctx, g):
            xf, mu, r, wf = ctx.saved_tensors
            xhat = (xf - mu) * r
            h = g if wf is None else g * (wf + off)
            dx = r * (h - h.mean(-1, keepdim=True) - xhat * (h * xhat).mean(-1, keepdim=True))
            n = xf.shape[-1]
            return dx, (g * xhat).reshape(-1, n).sum(0), g.reshape(-1, n).sum(0)

    up = (None if t is None else _up(t) for t in (w, b))
    return Norm.apply(_up(x), *up).to(x.dtype)


def ln_fp16_mean(x, w, b, eps, off):
    torch = require_torch()
    xf = _up(x)
    d = xf - xf.mean(-1, keepdim=True).to(torch.float16).float()
    return _affine(d * torch.rsqrt(d.pow(2).mean(-1, keepdim=True) + eps), w, b, off).to(x.dtype)


def ln_offset_in_low_precision(x, w, b, eps, off):
    y = _ln(_up(x), eps)
    y = y if w is None else y * _up(w + off)
    return (y if b is None else y + _up(b)).to(x.dtype)


def ln_block_divisor(x, w, b, eps, off):
    return _affine(_ln(_up(x), eps, divisor=_next_pow2(x.shape[-1])), w, b, off).to(x.dtype)


def ln_detached_mean(x, w, b, eps, off):
    return _affine(_ln(_up(x), eps, detach_mean=True), w, b, off).to(x.dtype)


def ln_detached_rstd(x, w, b, eps, off):
    return _affine(_ln(_up(x), eps, detach_rstd=True), w, b, off).to(x.dtype)


def _low_precision_accumulator(kind: str) -> Callable:
    """Forward in fp32; weight and bias gradients summed over rows in the parameter dtype (Liger PR #950)."""

    def emulate(x, w, b, eps, off):
        torch = require_torch()

        class Affine(torch.autograd.Function):
            @staticmethod
            def forward(ctx, xhat, weight, bias):
                ctx.save_for_backward(xhat, weight)
                ctx.has_bias = bias is not None
                y = xhat * (_up(weight) + off)
                return y + _up(bias) if bias is not None else y

            @staticmethod
            def backward(ctx, g):
                xhat, weight = ctx.saved_tensors
                n = xhat.shape[-1]
                dw = torch.zeros(n, dtype=weight.dtype)
                db = torch.zeros(n, dtype=weight.dtype)
                for gr, xr in zip(g.reshape(-1, n), xhat.reshape(-1, n)):
                    dw = dw + (gr * xr).to(weight.dtype)
                    db = db + gr.to(weight.dtype)
                return g * (_up(weight) + off), dw, (db if ctx.has_bias else None)

        xf = _up(x)
        xhat = _ln(xf, eps) if kind == "layernorm" else xf * _rms_stat(xf, eps)
        if w is None:
            return xhat.to(x.dtype)
        return Affine.apply(xhat, w, b if kind == "layernorm" else None).to(x.dtype)

    return emulate


def rms_downcast(x, w, b, eps, off):
    xf = x.float()
    return _affine(xf * _rms_stat(xf, eps), None if w is None else w.float(), None, off).to(x.dtype)


def ln_downcast(x, w, b, eps, off):
    def f(t):
        return None if t is None else t.float()

    return _affine(_ln(x.float(), eps), f(w), f(b), off).to(x.dtype)


def truncating(forward: Callable) -> Callable:
    """The same computation, but the final cast truncates toward zero instead of rounding."""

    def emulate(x, w, b, eps, off):
        torch = require_torch()
        y32 = _up(forward(_up(x), w, b, eps, off))
        y = y32.to(x.dtype)
        too_big = y.to(y32.dtype).abs() > y32.abs()
        toward_zero = torch.nextafter(y, torch.zeros_like(y))
        return torch.where(too_big, toward_zero, y)

    return emulate


EMULATIONS: tuple[Emulation, ...] = (
    Emulation("all-fp32", "rmsnorm", True, "upcast, compute in fp32, cast once (F.rms_norm, Gemma)", rms_all_fp32),
    Emulation(
        "llama",
        "rmsnorm",
        True,
        "normalize in fp32, cast, multiply by w in the input dtype",
        rms_llama,
        plain_only=True,
    ),
    Emulation(
        "t5",
        "rmsnorm",
        True,
        "statistic in fp32, x * rstd promoted to fp32, cast, multiply by w (T5LayerNorm)",
        rms_t5,
        plain_only=True,
    ),
    Emulation(
        "missing fp32 upcast",
        "rmsnorm",
        False,
        "everything in the input dtype (MiniMind before bf81fd5)",
        rms_missing_upcast,
        rounds_to="input",
    ),
    Emulation("eps outside sqrt", "rmsnorm", False, "x / (sqrt(mean(x^2)) + eps)", rms_eps_outside_sqrt),
    Emulation(
        "eps rounded to input dtype",
        "rmsnorm",
        False,
        "eps held in the input dtype",
        rms_eps_in_input_dtype,
        rounds_to="input",
    ),
    Emulation(
        "low-precision statistic",
        "rmsnorm",
        False,
        "rstd stored in the input dtype",
        rms_low_precision_statistic,
        rounds_to="input",
    ),
    Emulation("low-precision statistic (bf16)", "rmsnorm", False, "rstd stored in bfloat16", rms_bf16_statistic),
    Emulation("low-precision statistic (fp16)", "rmsnorm", False, "rstd stored in float16", rms_fp16_statistic),
    *(
        Emulation(
            f"low-precision statistic (bf16 partial sums of {block})",
            "rmsnorm",
            False,
            f"the mean square from a split reduction over blocks of {block}, partial sums in bfloat16",
            rms_bf16_partial_sums(block),
        )
        for block in (256, 1024, 4096)
    ),
    Emulation(
        "weight offset in low precision",
        "rmsnorm",
        False,
        "1 + w computed in the weight dtype",
        rms_offset_in_low_precision,
        offset_only=True,
        rounds_to="parameter",
    ),
    Emulation("padding / block-size divisor", "rmsnorm", False, "mean over the padded block, not n", rms_block_divisor),
    Emulation(
        "finfo eps of the wrong dtype", "rmsnorm", False, "eps = finfo(input dtype).eps", rms_finfo_of_input_dtype
    ),
    Emulation(
        "truncating cast",
        "rmsnorm",
        False,
        "final cast truncates toward zero",
        truncating(rms_all_fp32),
        rounds_to="input",
    ),
    Emulation(
        "wrong gradient (detached statistic)", "rmsnorm", False, "rstd detached from the graph", rms_detached_statistic
    ),
    Emulation("float64 computed in float32", "rmsnorm", False, "x.float() downcasts float64 inputs", rms_downcast),
    Emulation(
        "low-precision dW accumulator",
        "rmsnorm",
        False,
        "weight gradient summed over rows in the weight dtype",
        _low_precision_accumulator("rmsnorm"),
        rounds_to="parameter",
    ),
    Emulation("all-fp32", "layernorm", True, "upcast, compute in fp32, cast once (F.layer_norm)", ln_all_fp32),
    Emulation(
        "half affine",
        "layernorm",
        True,
        "normalize in fp32, cast, scale and shift in the input dtype",
        ln_half_affine,
        plain_only=True,  # with an offset, 1 + w rounded to the input dtype: the bug below
    ),
    Emulation(
        "statistics cast apart",
        "layernorm",
        True,
        "statistics and x - mean from separate fp32 casts of x, times rstd * w (Flax)",
        ln_statistics_cast_apart,
    ),
    Emulation(
        "missing fp32 upcast",
        "layernorm",
        False,
        "everything in the input dtype",
        ln_missing_upcast,
        rounds_to="input",
    ),
    Emulation("eps outside sqrt", "layernorm", False, "(x - mu) / (std + eps)", ln_eps_outside_sqrt),
    Emulation(
        "eps rounded to input dtype",
        "layernorm",
        False,
        "eps held in the input dtype",
        ln_eps_in_input_dtype,
        rounds_to="input",
    ),
    Emulation("unbiased variance", "layernorm", False, "variance divided by n - 1 (x.std())", ln_unbiased_variance),
    Emulation("one-pass variance", "layernorm", False, "E[x^2] - E[x]^2", ln_one_pass_variance),
    Emulation(
        "low-precision statistic",
        "layernorm",
        False,
        "rstd stored in the input dtype",
        ln_low_precision_statistic,
        rounds_to="input",
    ),
    Emulation("low-precision statistic (bf16)", "layernorm", False, "rstd stored in bfloat16", ln_bf16_statistic),
    Emulation("low-precision statistic (fp16)", "layernorm", False, "rstd stored in float16", ln_fp16_statistic),
    Emulation("low-precision statistic (fp16 mean)", "layernorm", False, "the mean stored in float16", ln_fp16_mean),
    Emulation(
        "low-precision statistic (saved for the backward in the input dtype)",
        "layernorm",
        False,
        "mean and rstd saved for the backward in the input dtype (torch's CPU LayerNorm with half parameters)",
        ln_saved_statistics,
        rounds_to="input",
    ),
    Emulation(
        "weight offset in low precision",
        "layernorm",
        False,
        "1 + w computed in the weight dtype",
        ln_offset_in_low_precision,
        offset_only=True,
        rounds_to="parameter",
    ),
    Emulation(
        "weight offset in low precision (half affine)",
        "layernorm",
        False,
        "normalize in fp32, cast, scale by 1 + w and shift in the input dtype",
        ln_half_affine,
        offset_only=True,
        rounds_to="input",
    ),
    Emulation(
        "padding / block-size divisor", "layernorm", False, "mean and variance over the padded block", ln_block_divisor
    ),
    Emulation(
        "truncating cast",
        "layernorm",
        False,
        "final cast truncates toward zero",
        truncating(ln_all_fp32),
        rounds_to="input",
    ),
    Emulation("float64 computed in float32", "layernorm", False, "x.float() downcasts float64 inputs", ln_downcast),
    Emulation(
        "low-precision dW accumulator",
        "layernorm",
        False,
        "weight and bias gradients summed over rows in the parameter dtype",
        _low_precision_accumulator("layernorm"),
        rounds_to="parameter",
    ),
    Emulation(
        "wrong gradient (detached mean)",
        "layernorm",
        False,
        "mean detached: the mean(h) term is lost",
        ln_detached_mean,
    ),
    Emulation(
        "wrong gradient (detached statistic)", "layernorm", False, "rstd detached from the graph", ln_detached_rstd
    ),
)


def emulations_for(kind: str, offset: int) -> list[Emulation]:
    """The emulations that apply to a kind and weight offset."""
    return [
        e
        for e in EMULATIONS
        if e.kind == kind and not (e.offset_only and offset == 0) and not (e.plain_only and offset == 1)
    ]


def rounds_here(emu: Emulation, x: np.ndarray, weight: np.ndarray | None) -> bool:
    """Whether an emulation's bug rounds anything on this input: a cast to the input (or parameter) dtype
    is a no-op where that is the compute dtype (a float32 input), so such a bug class says nothing there."""
    held = {"input": x, "parameter": weight}.get(emu.rounds_to or "")
    return held is None or str(held.dtype) in ("float16", "bfloat16")


def run_emulation(
    emu: Emulation,
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    grad: np.ndarray | None,
    eps: float,
    offset: int,
) -> dict[str, np.ndarray]:
    """Outputs ``y`` (and ``dx``, ``dw``, ``db`` given ``grad``) of an emulation, on CPU."""
    need = grad is not None
    xt = from_numpy(x).requires_grad_(need)
    wt = None if weight is None else from_numpy(weight).requires_grad_(need)
    bt = None if bias is None else from_numpy(bias).requires_grad_(need)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = emu.forward(xt, wt, bt, eps, offset)
        if grad is not None:
            y.backward(from_numpy(grad).to(y.dtype))
    out = {"y": to_numpy(y)}
    if need:
        out["dx"] = to_numpy(xt.grad)
        if wt is not None:
            out["dw"] = to_numpy(wt.grad)
        if bt is not None:
            out["db"] = to_numpy(bt.grad)
    return out
