"""On a CUDA GPU: the audit of torch's kernels, eager and compiled.

Skipped where torch sees no CUDA device (the CPU-only CI); run on a GPU machine with
``python -m pytest tests/normcheck/test_cuda.py``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import torch

from normcheck.api import audit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: these tests need a GPU")


@pytest.mark.parametrize("target", ["torch.nn.RMSNorm", "torch.nn.functional.rms_norm", "torch.nn.LayerNorm"])
def test_torch_norms_on_cuda_pass(target):
    result = audit(target, device="cuda", examples=20)
    assert result.passed, [f.message for f in result.findings]
    assert result.device == "cuda" and result.timing["kernels"] > 0


def test_torch_compile_on_cuda_is_audited_and_passes():
    result = audit("torch.nn.RMSNorm", device="cuda", dtype=("bfloat16", "float32"), examples=10, compile="inductor")
    assert result.passed, [f.message for f in result.findings]
