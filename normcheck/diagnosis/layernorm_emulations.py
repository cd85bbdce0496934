"""The LayerNorm emulations: its correct conventions and bug classes (docs/theory.md, sections 4 and 5),
each registered where it is defined, in the order the diagnosis prefers them."""

from __future__ import annotations

from normcheck.diagnosis.emulation import (
    Registry,
    affine,
    low_precision_accumulator,
    next_pow2,
    truncating,
    upcast,
)
from normcheck.target.torch_bridge import require_torch

LAYERNORM = Registry("layernorm")


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


@LAYERNORM.emulation("all-fp32", "upcast, compute in fp32, cast once (F.layer_norm)", correct=True)
def ln_all_fp32(x, w, b, eps, off):
    return affine(_ln(upcast(x), eps), w, b, off).to(x.dtype)


@LAYERNORM.emulation(
    "half affine", "normalize in fp32, cast, scale and shift in the input dtype", correct=True, plain_only=True
)
def ln_half_affine(x, w, b, eps, off):
    y = _ln(upcast(x), eps).to(x.dtype)
    return affine(y, w, b, off, x.dtype)


@LAYERNORM.emulation(
    "statistics cast apart",
    "statistics and x - mean from separate fp32 casts of x, times rstd * w (Flax)",
    correct=True,
)
def ln_statistics_cast_apart(x, w, b, eps, off):
    """Flax: the statistics from one fp32 cast of x and ``x - mean`` from another, times ``rstd * w``; autograd
    casts the gradients of the two casts to the input dtype separately and adds them there."""
    torch = require_torch()
    xs = upcast(x)
    n = xs.shape[-1]
    mu = xs.sum(-1, keepdim=True) / n
    r = torch.rsqrt((xs - mu).pow(2).sum(-1, keepdim=True) / n + eps)
    scale = r if w is None else r * (upcast(w) + off)
    y = (upcast(x) - mu) * scale
    return (y if b is None else y + upcast(b)).to(x.dtype)


@LAYERNORM.emulation("missing fp32 upcast", "everything in the input dtype", rounds_to="input")
def ln_missing_upcast(x, w, b, eps, off):
    return affine(_ln(x, eps), w, b, off, x.dtype)


@LAYERNORM.emulation("eps outside sqrt", "(x - mu) / (std + eps)")
def ln_eps_outside_sqrt(x, w, b, eps, off):
    torch = require_torch()
    xf = upcast(x)
    d = xf - xf.mean(-1, keepdim=True)
    return affine(d / (torch.sqrt(d.pow(2).mean(-1, keepdim=True)) + eps), w, b, off).to(x.dtype)


@LAYERNORM.emulation("eps rounded to input dtype", "eps held in the input dtype", rounds_to="input")
def ln_eps_in_input_dtype(x, w, b, eps, off):
    torch = require_torch()
    return affine(_ln(upcast(x), float(torch.tensor(eps, dtype=x.dtype))), w, b, off).to(x.dtype)


@LAYERNORM.emulation("unbiased variance", "variance divided by n - 1 (x.std())")
def ln_unbiased_variance(x, w, b, eps, off):
    return affine(_ln(upcast(x), eps, unbiased=True), w, b, off).to(x.dtype)


@LAYERNORM.emulation("one-pass variance", "E[x^2] - E[x]^2")
def ln_one_pass_variance(x, w, b, eps, off):
    return affine(_ln(upcast(x), eps, one_pass=True), w, b, off).to(x.dtype)


@LAYERNORM.emulation("low-precision statistic", "rstd stored in the input dtype", rounds_to="input")
def ln_low_precision_statistic(x, w, b, eps, off, dtype=None):
    torch = require_torch()
    xf = upcast(x)
    d = xf - xf.mean(-1, keepdim=True)
    r = upcast(torch.rsqrt(d.pow(2).mean(-1, keepdim=True) + eps).to(dtype or x.dtype))
    return affine(d * r, w, b, off).to(x.dtype)


@LAYERNORM.emulation("low-precision statistic (bf16)", "rstd stored in bfloat16")
def ln_bf16_statistic(x, w, b, eps, off):
    return ln_low_precision_statistic(x, w, b, eps, off, require_torch().bfloat16)


@LAYERNORM.emulation("low-precision statistic (fp16)", "rstd stored in float16")
def ln_fp16_statistic(x, w, b, eps, off):
    return ln_low_precision_statistic(x, w, b, eps, off, require_torch().float16)


@LAYERNORM.emulation("low-precision statistic (fp16 mean)", "the mean stored in float16")
def ln_fp16_mean(x, w, b, eps, off):
    torch = require_torch()
    xf = upcast(x)
    d = xf - xf.mean(-1, keepdim=True).to(torch.float16).float()
    return affine(d * torch.rsqrt(d.pow(2).mean(-1, keepdim=True) + eps), w, b, off).to(x.dtype)


@LAYERNORM.emulation(
    "low-precision statistic (saved for the backward in the input dtype)",
    "mean and rstd saved for the backward in the input dtype (torch's CPU LayerNorm with half parameters)",
    rounds_to="input",
)
def ln_saved_statistics(x, w, b, eps, off):
    """Forward in fp32; the mean and rstd saved for the backward in the input dtype, the backward in fp32 from
    them (torch's CPU LayerNorm when its weight and bias are half precision: its saved statistics take their dtype)."""
    torch = require_torch()

    class Norm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, xf, wf, bf):
            mu = xf.mean(-1, keepdim=True)
            r = torch.rsqrt((xf - mu).pow(2).mean(-1, keepdim=True) + eps)
            ctx.save_for_backward(xf, upcast(mu.to(x.dtype)), upcast(r.to(x.dtype)), wf)
            return affine((xf - mu) * r, wf, bf, off)

        @staticmethod
        def backward(ctx, g):
            xf, mu, r, wf = ctx.saved_tensors
            xhat = (xf - mu) * r
            h = g if wf is None else g * (wf + off)
            dx = r * (h - h.mean(-1, keepdim=True) - xhat * (h * xhat).mean(-1, keepdim=True))
            n = xf.shape[-1]
            return dx, (g * xhat).reshape(-1, n).sum(0), g.reshape(-1, n).sum(0)

    up = (None if t is None else upcast(t) for t in (w, b))
    return Norm.apply(upcast(x), *up).to(x.dtype)


@LAYERNORM.emulation(
    "weight offset in low precision", "1 + w computed in the weight dtype", offset_only=True, rounds_to="parameter"
)
def ln_offset_in_low_precision(x, w, b, eps, off):
    y = _ln(upcast(x), eps)
    y = y if w is None else y * upcast(w + off)
    return (y if b is None else y + upcast(b)).to(x.dtype)


LAYERNORM.register(
    "weight offset in low precision (half affine)",
    "normalize in fp32, cast, scale by 1 + w and shift in the input dtype",
    ln_half_affine,
    offset_only=True,
    rounds_to="input",
)


@LAYERNORM.emulation("padding / block-size divisor", "mean and variance over the padded block")
def ln_block_divisor(x, w, b, eps, off):
    return affine(_ln(upcast(x), eps, divisor=next_pow2(x.shape[-1])), w, b, off).to(x.dtype)


LAYERNORM.register("truncating cast", "final cast truncates toward zero", truncating(ln_all_fp32), rounds_to="input")


@LAYERNORM.emulation("float64 computed in float32", "x.float() downcasts float64 inputs")
def ln_downcast(x, w, b, eps, off):
    def f(t):
        return None if t is None else t.float()

    return affine(_ln(x.float(), eps), f(w), f(b), off).to(x.dtype)


LAYERNORM.register(
    "low-precision dW accumulator",
    "weight and bias gradients summed over rows in the parameter dtype",
    low_precision_accumulator(_ln, with_bias=True),
    rounds_to="parameter",
)


@LAYERNORM.emulation("wrong gradient (detached mean)", "mean detached: the mean(h) term is lost")
def ln_detached_mean(x, w, b, eps, off):
    return affine(_ln(upcast(x), eps, detach_mean=True), w, b, off).to(x.dtype)


@LAYERNORM.emulation("wrong gradient (detached statistic)", "rstd detached from the graph")
def ln_detached_rstd(x, w, b, eps, off):
    return affine(_ln(upcast(x), eps, detach_rstd=True), w, b, off).to(x.dtype)
