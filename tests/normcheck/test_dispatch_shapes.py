"""Shapes that pick a kernel's code path: the default audit reaches them (tests/normcheck/targets/dispatch.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from normcheck.api import audit
from normcheck.engine.plan import MANY_ROWS

from .targets.dispatch import MANY_ROWS as BLOCK_ROWS
from .targets.dispatch import SHORT_ROWS

DISPATCH = str(Path(__file__).parent / "targets" / "dispatch.py")


def test_a_block_kernel_summing_dw_in_bfloat16_on_many_short_rows_fails_the_default_audit():
    """Liger-Kernel's RMSNorm bug: dW summed in the parameter dtype, in the block kernel only."""
    assert MANY_ROWS[0] >= BLOCK_ROWS and MANY_ROWS[1] <= SHORT_ROWS  # the default audit reaches it
    result = audit(f"{DISPATCH}:BlockKernelRMSNorm", kind="rmsnorm", dtype=("bfloat16",), examples=10)
    assert {(f.check, f.output) for f in result.findings} == {("accuracy", "dw")}
    (finding,) = result.findings
    assert finding.example.x.shape == MANY_ROWS
    assert finding.worst is not None and finding.worst["tier"] == "sharp"
    # Its summation order is its own, so no emulation reproduces its bits; the closest is named.
    assert finding.diagnosis is not None and finding.diagnosis.matches[0].name == "low-precision dW accumulator"


def test_the_default_audit_judges_many_short_rows():
    """The block kernel's shape is judged (every output of a correct norm there, within bounds)."""
    result = audit("torch.nn.RMSNorm", dtype=("bfloat16",), examples=0)
    assert result.passed
    rows, n = MANY_ROWS
    assert result.stats[("bfloat16", "y", "normal")].summary()["count"] >= rows * n
