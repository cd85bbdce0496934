"""A Triton RMSNorm whose long-row specialization has a wrong store mask: it writes far out of bounds.

The kernel is correct in every lane below ``n`` (rows up to ``SHORT`` long go several to a
program). For blocks longer than ``SHORT`` its
store mask is the bug: it lets the padded lanes (``n <= lane < BLOCK``) through, and
they point at ``y + lane * SPREAD``, far past the end of y. Rows up to ``SHORT`` and
rows whose length is a power of two have nothing wrong. On CUDA the stray store is an
illegal memory access, which poisons the process's CUDA context; under the CPU
interpreter (TRITON_INTERPRET=1) it is a segmentation fault.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import nn

#: How far apart (in elements) the stray lanes write: past any allocation the audit makes.
SPREAD = 1 << 28
#: Blocks up to this long take the correct mask.
SHORT = 1024


@triton.jit
def _wrong_mask_kernel(
    x_ptr,
    w_ptr,
    y_ptr,
    stride,
    rows,
    n,
    eps,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    SPREAD: tl.constexpr,
    SHORT: tl.constexpr,
):
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]  # several short rows per program
    cols = tl.arange(0, BLOCK)[None, :]
    inside = (cols < n) & (r < rows)
    x = tl.load(x_ptr + r * stride + cols, mask=inside, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=cols < n, other=0.0).to(tl.float32)
    y = x / tl.sqrt(tl.sum(x * x, axis=1)[:, None] / n + eps) * w
    offsets = tl.where(inside, r * stride + cols, cols.to(tl.int64) * SPREAD)
    if BLOCK <= SHORT:
        tl.store(y_ptr + offsets, y, mask=inside)
    else:
        tl.store(y_ptr + offsets, y, mask=(cols < BLOCK) & (r < rows))  # BUG: the mask should be `inside`


class WrongMaskTritonRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        x2 = x.reshape(-1, n).contiguous()
        y = torch.empty(x2.shape, dtype=torch.float32, device=x.device)
        block = triton.next_power_of_2(n)
        rows = max(1, SHORT // block)
        _wrong_mask_kernel[(triton.cdiv(x2.shape[0], rows),)](
            x2,
            self.weight,
            y,
            x2.stride(0),
            x2.shape[0],
            n,
            self.eps,
            ROWS=rows,
            BLOCK=block,
            SPREAD=SPREAD,
            SHORT=SHORT,
        )
        return y.to(x.dtype).reshape(x.shape)
