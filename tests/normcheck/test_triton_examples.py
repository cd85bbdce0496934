"""The Triton examples, compiled on a GPU or through the CPU interpreter: correct kernels pass,
Triton-typical bugs are caught.

Runs when triton is installed (``pip install triton``); without CUDA, tests/conftest.py sets
TRITON_INTERPRET=1 before triton is first imported.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("triton")

import torch

from normcheck.api import audit
from normcheck.engine.auditor import Auditor
from normcheck.engine.plan import MANY_ROWS
from normcheck.options import AuditOptions
from normcheck.target.loading import load_target
from normcheck.target.torch_target import Candidate

from .targets.triton_faults import SHORT

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "triton_norms.py")
ROW_KERNELS = str(Path(__file__).parent / "targets" / "triton_row_kernels.py")
EXAMPLES = 10
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Under the CPU interpreter each audit takes half a minute: a long sweep, run with `-m slow`.
pytestmark = [] if DEVICE == "cuda" else [pytest.mark.slow]


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
    return Auditor(
        Candidate(cls, cls.__name__, AuditOptions(device=DEVICE)),
        spec=cls.__name__,
        kind=kind,
        options=AuditOptions(device=DEVICE, examples=EXAMPLES, grad=False),
    ).run()


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


def test_a_kernel_that_writes_out_of_bounds_is_a_finding_and_the_audit_goes_on():
    """Its long-row path stores through a wrong mask: an illegal address on CUDA (the worker that saw
    the sticky error is replaced), a segmentation fault under the interpreter. Short rows are judged."""
    faulty = f"{Path(__file__).parent / 'targets' / 'triton_faults.py'}:WrongMaskTritonRMSNorm"
    result = audit(faulty, kind="rmsnorm", device=DEVICE, dtype=("float32",), examples=10, grad=False)
    faults = [f for f in result.findings if f.check in ("crash", "exception")]
    assert faults and {f.check for f in result.findings} == {f.check for f in faults}
    assert all(f.example is not None and f.example.n > SHORT for f in faults)
    assert result.restarts >= 1
    assert result.stats[("float32", "y", "normal")].summary()["count"] > 0  # short rows, judged and correct
    assert result.cases > 30  # every input but those at the crashing sizes


@pytest.mark.parametrize("name", ["RowTritonRMSNorm", "RowTritonLayerNorm"])
def test_kernels_of_one_program_per_row_pass_the_default_audit_and_it_says_what_was_too_slow(name):
    """Written the common way (grid = (rows,)). Under the interpreter the 32768-row input would take
    about a minute: the calls before it predict so, and it is reported as not run, not as a timeout."""
    result = audit(f"{ROW_KERNELS}:{name}", device=DEVICE)
    assert result.passed, [f.message for f in result.findings]
    too_slow = {(e["dtype"], tuple(e["shape"])) for e in result.too_slow}
    assert too_slow == (set() if DEVICE == "cuda" else {(dtype, MANY_ROWS) for dtype in result.dtypes})
