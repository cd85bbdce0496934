"""The audit passes every correct convention and catches and names every bug class, on CPU."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from normcheck.engine.auditor import Auditor
from normcheck.options import AuditOptions
from normcheck.target.loading import load_target
from normcheck.target.torch_target import Candidate

from .zoo import BUGGY, CORRECT

EXAMPLES = 25


def _audit(spec: str, kind: str, offset: int, examples: int = EXAMPLES):
    return Auditor(
        Candidate(load_target(spec), spec),
        spec=spec,
        kind=kind,
        weight_offset=offset,
        options=AuditOptions(examples=examples),
    ).run()


@pytest.mark.parametrize("spec, kind, offset", CORRECT, ids=[c[0].split(":")[-1] for c in CORRECT])
def test_correct_conventions_pass_in_every_dtype(spec, kind, offset):
    result = _audit(spec, kind, offset)
    assert result.passed, [f.message for f in result.findings]
    assert set(result.conventions) == {"float16", "bfloat16", "float32"}


# The structured cases alone catch and name every bug class; the search on top of them is the long sweep.
@pytest.mark.parametrize(
    "examples", [0, pytest.param(EXAMPLES, marks=pytest.mark.slow)], ids=["structured", "searched"]
)
@pytest.mark.parametrize("spec, kind, offset, bug", BUGGY, ids=[b[0].split(":")[-1] for b in BUGGY])
def test_every_bug_class_is_caught_and_named_and_no_finding_names_another(spec, kind, offset, bug, examples):
    result = _audit(spec, kind, offset, examples)
    assert not result.passed
    checks = {f.check for f in result.findings}
    named = {f.diagnosis.bug for f in result.findings if f.diagnosis is not None and f.diagnosis.bug is not None}
    if bug in ("mutation", "nondeterminism"):
        assert bug in checks and not named, (checks, named)
    else:
        assert named and all(name.startswith(bug) for name in named), (bug, named)
    for f in result.findings:
        assert f.reproducer and "load_target" in f.reproducer


def test_minimind_regression_is_caught_in_float16_and_bfloat16():
    result = _audit("tests.normcheck.zoo:MiniMindRMSNorm", "rmsnorm", 0)
    caught = {f.dtype for f in result.findings if f.diagnosis and f.diagnosis.bug == "missing fp32 upcast"}
    assert {"float16", "bfloat16"} <= caught


def test_same_seed_gives_the_same_verdict_twice():
    a = _audit("tests.normcheck.zoo:TruncatingRMSNorm", "rmsnorm", 0)
    b = _audit("tests.normcheck.zoo:TruncatingRMSNorm", "rmsnorm", 0)
    assert [(f.check, f.dtype, f.output, f.message) for f in a.findings] == [
        (f.check, f.dtype, f.output, f.message) for f in b.findings
    ]
