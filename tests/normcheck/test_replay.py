"""The replay check (normcheck.engine.replay): an instance right for its first calls and wrong later
fails; a correct one passes, every instance called at least MIN_CALLS times."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from normcheck.api import audit, open_audit
from normcheck.engine.replay import MIN_CALLS
from normcheck.options import AuditOptions
from tests.normcheck.targets.warmup import WARM_CALLS, CountingFusedAddRMSNorm, CountingRMSNorm

TARGETS = "tests/normcheck/targets/warmup.py"


def test_an_instance_right_for_its_first_calls_and_zero_after_fails_the_replay():
    """No instance reaches call 31 in the audit's judged calls; the top-up calls take each past it, and
    its earliest inputs asked again come back as zeros."""
    result = audit(f"{TARGETS}:WarmThenZeroRMSNorm", kind="rmsnorm", dtype="float32", examples=10, grad=False)
    replay = [f for f in result.findings if f.check == "replay"]
    assert replay and not result.passed, [f.message for f in result.findings]
    assert {f.check for f in result.findings} == {"replay"}  # every judged call came before the zeros
    assert replay[0].output == "y" and "the same instance gave different y" in replay[0].message
    assert MIN_CALLS > WARM_CALLS


@pytest.mark.parametrize("cls, residual", [(CountingRMSNorm, False), (CountingFusedAddRMSNorm, True)])
def test_a_correct_implementation_passes_and_each_instance_is_called_often(cls, residual):
    options = AuditOptions(kind="rmsnorm", dtype="bfloat16", examples=10, in_process=True, residual=residual)
    with open_audit(cls, options) as auditor:
        cls.INSTANCES.clear()  # (the instance the kind was probed on is not audited)
        result = auditor.run()
    assert result.passed, [f.message for f in result.findings]
    calls = [m.calls for m in cls.INSTANCES]
    assert calls and min(calls) >= MIN_CALLS, calls
