"""The exact side of an input is computed while the worker process computes the implementation's answer
(``meanwhile``), and the judge uses it only for the input, dtype, gradients and layout it was made for."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from normcheck.api import audit, open_audit
from normcheck.options import AuditOptions
from normcheck.strategies import Source, make_input
from normcheck.target.isolation import IsolatedCandidate
from oracles import resolve_format

OPTIONS = AuditOptions(kind="rmsnorm", dtype="float32")


def _case(seed: int = 0, n: int = 8):
    return make_input(Source(rng=np.random.default_rng(seed)), resolve_format("float32"), n=n, rows=2, regime="normal")


def test_meanwhile_runs_once_before_the_answer_is_read_and_the_answer_is_the_implementations():
    with open_audit("torch.nn.RMSNorm", OPTIONS) as auditor:
        candidate = auditor.caller.c
        assert isinstance(candidate, IsolatedCandidate)
        case = _case()
        w, b = auditor.caller.params(case, "float32")
        ran = []
        run = candidate.run(case.x, w, b, case.grad, meanwhile=lambda: ran.append(1))
        assert ran == [1]
        assert run.failure is None and run.y.shape == case.x.shape and run.dx is not None
        assert run.handled is not None and run.handled > 0
        again = candidate.run(case.x, w, b, case.grad)  # the connection is in step: the next answer is its own
        assert np.array_equal(again.y, run.y)


def test_a_request_to_the_worker_from_inside_meanwhile_is_refused_and_closes_the_candidate():
    with open_audit("torch.nn.RMSNorm", OPTIONS) as auditor:
        candidate = auditor.caller.c
        case = _case()
        w, b = auditor.caller.params(case, "float32")
        with pytest.raises(RuntimeError, match="while another one is in flight"):
            candidate.run(case.x, w, b, case.grad, meanwhile=lambda: candidate.describe(99, "float32"))
        with pytest.raises(RuntimeError, match="closed"):
            candidate.run(case.x, w, b, case.grad)


def test_prepared_outputs_serve_only_the_same_input_dtype_and_gradients_once():
    with open_audit("torch.nn.RMSNorm", OPTIONS.updated(in_process=True)) as auditor:
        measure, case = auditor.measure, _case()
        oracle_calls = []
        exact = measure.exact
        measure.exact = lambda *a, **k: oracle_calls.append(1) or exact(*a, **k)  # type: ignore[method-assign]

        def computed(prepare_on, then_on, grad: bool = True) -> int:
            """How often the oracle ran for a prepare on ``prepare_on`` and the outputs of ``then_on``."""
            oracle_calls.clear()
            measure.prepare(prepare_on, "float32", True)
            measure.outputs(then_on, "float32", grad)
            return len(oracle_calls)

        assert computed(case, case) == 1  # served from the prepared outputs
        assert computed(case, _case()) == 2  # the same values in another object are another input
        assert computed(case, case, grad=False) == 2
        measure.outputs(case, "float32", True)
        assert len(oracle_calls) == 3  # served once


def test_a_worker_audit_overlaps_the_oracle_with_the_calls_and_keeps_its_verdict():
    isolated = audit("torch.nn.RMSNorm", OPTIONS.updated(examples=10))
    in_process = audit("torch.nn.RMSNorm", OPTIONS.updated(examples=10, in_process=True))
    assert isolated.timing.get("overlapped", 0.0) > 0
    assert "overlapped" not in in_process.timing
    assert 0 < isolated.timing["kernels"] < isolated.timing["implementation"]
    assert isolated.passed and in_process.passed and isolated.cases == in_process.cases
    assert isolated.totals()[("float32", "y")].summary() == in_process.totals()[("float32", "y")].summary()
