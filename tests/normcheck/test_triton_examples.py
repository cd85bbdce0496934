"""The Triton examples through the CPU interpreter: correct kernels pass, Triton-typical bugs are caught.

Runs when triton is installed (``pip install triton``); tests/conftest.py sets TRITON_INTERPRET=1
before triton is first imported.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("triton")

from normcheck.audit import Auditor
from normcheck.candidate import Candidate
from normcheck.loading import load_target

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "triton_norms.py")
EXAMPLES = 10


def _variant(kind: str, bug: str) -> type:
    base = load_target(f"{EXAMPLE}:{'TritonRMSNorm' if kind == 'rmsnorm' else 'TritonLayerNorm'}")

    default_eps = 1e-6 if kind == "rmsnorm" else 1e-5

    class Variant(base):  # type: ignore[misc, valid-type]
        def __init__(self, hidden_size: int, eps: float = default_eps) -> None:
            super().__init__(hidden_size, eps, bug)

    Variant.__name__ = f"{base.__name__}[{bug}]"
    return Variant


def _audit(kind: str, bug: str):
    cls = _variant(kind, bug)
    return Auditor(Candidate(cls, cls.__name__), spec=cls.__name__, kind=kind, examples=EXAMPLES, grad=False).run()


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm"])
def test_the_triton_examples_pass(kind):
    result = _audit(kind, "none")
    assert result.passed, [f.message for f in result.findings]


@pytest.mark.parametrize(
    "kind, bug, named",
    [
        ("rmsnorm", "block_divisor", "padding / block-size divisor"),
        ("layernorm", "block_divisor", "padding / block-size divisor"),
        ("rmsnorm", "padded_lanes", None),
        ("layernorm", "padded_lanes", None),
        ("rmsnorm", "no_upcast", "missing fp32 upcast"),
        ("layernorm", "one_pass", "one-pass variance"),
    ],
)
def test_triton_typical_bugs_are_caught(kind, bug, named):
    result = _audit(kind, bug)
    assert not result.passed
    if named is not None:
        assert named in {f.diagnosis.bug for f in result.findings if f.diagnosis}
