"""The RMSNorm emulations: its correct conventions and bug classes (docs/theory.md, sections 4 and 5),
each registered where it is defined, in the order the diagnosis prefers them."""

from __future__ import annotations

from collections.abc import Callable

from normcheck.diagnosis.emulation import (
    Registry,
    affine,
    low_precision_accumulator,
    next_pow2,
    truncating,
    upcast,
)
from normcheck.target.torch_bridge import require_torch

RMSNORM = Registry("rmsnorm")


def _rms_stat(xf, eps, divisor=None):
    torch = require_torch()
    n = xf.shape[-1]
    ms = xf.pow(2).sum(-1, keepdim=True) / (divisor or n)
    return torch.rsqrt(ms + eps)


def _normalize(xf, eps):
    return xf * _rms_stat(xf, eps)


@RMSNORM.emulation("all-fp32", "upcast, compute in fp32, cast once (F.rms_norm, Gemma)", correct=True)
def rms_all_fp32(x, w, b, eps, off):
    xf = upcast(x)
    return affine(xf * _rms_stat(xf, eps), w, None, off).to(x.dtype)


@RMSNORM.emulation("llama", "normalize in fp32, cast, multiply by w in the input dtype", correct=True, plain_only=True)
def rms_llama(x, w, b, eps, off):
    xf = upcast(x)
    y = (xf * _rms_stat(xf, eps)).to(x.dtype)
    return y if w is None else y * w.to(x.dtype)


@RMSNORM.emulation(
    "t5",
    "statistic in fp32, x * rstd promoted to fp32, cast, multiply by w (T5LayerNorm)",
    correct=True,
    plain_only=True,
)
def rms_t5(x, w, b, eps, off):
    """T5: only the statistic is upcast; x times it promotes, so autograd casts dx's two paths separately."""
    y = (x * _rms_stat(upcast(x), eps)).to(x.dtype)
    return y if w is None else w.to(x.dtype) * y


@RMSNORM.emulation("missing fp32 upcast", "everything in the input dtype (MiniMind before bf81fd5)", rounds_to="input")
def rms_missing_upcast(x, w, b, eps, off):
    torch = require_torch()
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if w is None else y * (w.to(x.dtype) + off)


@RMSNORM.emulation("eps outside sqrt", "x / (sqrt(mean(x^2)) + eps)")
def rms_eps_outside_sqrt(x, w, b, eps, off):
    torch = require_torch()
    xf = upcast(x)
    return affine(xf / (torch.sqrt(xf.pow(2).mean(-1, keepdim=True)) + eps), w, None, off).to(x.dtype)


@RMSNORM.emulation("eps rounded to input dtype", "eps held in the input dtype", rounds_to="input")
def rms_eps_in_input_dtype(x, w, b, eps, off):
    torch = require_torch()
    xf = upcast(x)
    e = float(torch.tensor(eps, dtype=x.dtype))
    return affine(xf * _rms_stat(xf, e), w, None, off).to(x.dtype)


@RMSNORM.emulation("low-precision statistic", "rstd stored in the input dtype", rounds_to="input")
def rms_low_precision_statistic(x, w, b, eps, off, dtype=None):
    xf = upcast(x)
    return affine(xf * upcast(_rms_stat(xf, eps).to(dtype or x.dtype)), w, None, off).to(x.dtype)


@RMSNORM.emulation("low-precision statistic (bf16)", "rstd stored in bfloat16")
def rms_bf16_statistic(x, w, b, eps, off):
    return rms_low_precision_statistic(x, w, b, eps, off, require_torch().bfloat16)


@RMSNORM.emulation("low-precision statistic (fp16)", "rstd stored in float16")
def rms_fp16_statistic(x, w, b, eps, off):
    return rms_low_precision_statistic(x, w, b, eps, off, require_torch().float16)


def _split_sum(v, block: int, dtype):
    """A split reduction over the last axis: blocks of ``block`` summed, each partial sum stored in ``dtype``.
    A row no longer than a block is one partial sum, of its own values (padded to the block, the many-rows
    input's 32768 rows of 16 took 134 M zeros and 0.19 s a call)."""
    torch = require_torch()
    n = v.shape[-1]
    if n <= block:
        partial = v.sum(-1, keepdim=True)
    else:
        partial = torch.nn.functional.pad(v, (0, -n % block)).reshape(*v.shape[:-1], -1, block).sum(-1)
    return partial.to(dtype).float().sum(-1, keepdim=True)


def rms_bf16_partial_sums(block: int) -> Callable:
    """The mean square from a split reduction whose partial sums are stored in bfloat16."""

    def emulate(x, w, b, eps, off):
        torch = require_torch()
        xf = upcast(x)
        ms = _split_sum(xf.pow(2), block, torch.bfloat16) / xf.shape[-1]
        return affine(xf * torch.rsqrt(ms + eps), w, None, off).to(x.dtype)

    return emulate


for _block in (256, 1024, 4096):
    RMSNORM.register(
        f"low-precision statistic (bf16 partial sums of {_block})",
        f"the mean square from a split reduction over blocks of {_block}, partial sums in bfloat16",
        rms_bf16_partial_sums(_block),
    )


@RMSNORM.emulation(
    "weight offset in low precision", "1 + w computed in the weight dtype", offset_only=True, rounds_to="parameter"
)
def rms_offset_in_low_precision(x, w, b, eps, off):
    xf = upcast(x)
    y = xf * _rms_stat(xf, eps)
    return (y if w is None else y * upcast(w + off)).to(x.dtype)


@RMSNORM.emulation("padding / block-size divisor", "mean over the padded block, not n")
def rms_block_divisor(x, w, b, eps, off):
    xf = upcast(x)
    return affine(xf * _rms_stat(xf, eps, next_pow2(x.shape[-1])), w, None, off).to(x.dtype)


@RMSNORM.emulation("finfo eps of the wrong dtype", "eps = finfo(input dtype).eps")
def rms_finfo_of_input_dtype(x, w, b, eps, off):
    torch = require_torch()
    xf = upcast(x)
    return affine(xf * _rms_stat(xf, float(torch.finfo(x.dtype).eps)), w, None, off).to(x.dtype)


RMSNORM.register("truncating cast", "final cast truncates toward zero", truncating(rms_all_fp32), rounds_to="input")


@RMSNORM.emulation("wrong gradient (detached statistic)", "rstd detached from the graph")
def rms_detached_statistic(x, w, b, eps, off):
    xf = upcast(x)
    return affine(xf * _rms_stat(xf, eps).detach(), w, None, off).to(x.dtype)


@RMSNORM.emulation("float64 computed in float32", "x.float() downcasts float64 inputs")
def rms_downcast(x, w, b, eps, off):
    xf = x.float()
    return affine(xf * _rms_stat(xf, eps), None if w is None else w.float(), None, off).to(x.dtype)


RMSNORM.register(
    "low-precision dW accumulator",
    "weight gradient summed over rows in the weight dtype",
    low_precision_accumulator(_normalize, with_bias=False),
    rounds_to="parameter",
)
