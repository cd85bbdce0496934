"""``--eps``: the implementation is built with the stated eps, and the oracle judges with it.

Without transformers: torch's own RMSNorm, and a module of tests/normcheck/targets/report_values.py
that takes an eps but computes with a literal one.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from normcheck.cli import main

from .report_schema import valid_report

HARDCODED = "tests.normcheck.targets.report_values:HardcodedEpsRMSNorm"


def audit_json(tmp_path, *argv: str) -> tuple[int, dict]:
    report = tmp_path / "r.json"
    status = main(["audit", *argv, "--no-grad", "--json", str(report)])
    return status, valid_report(report)


def test_torch_rmsnorm_is_built_and_judged_with_the_stated_eps(tmp_path):
    """torch.nn.RMSNorm's own eps is None (about 1.2e-7 here): it passes at eps 0.01 only if built with 0.01,
    since the rows of the eps_dominant regime are made for, and judged at, the stated eps."""
    argv = ["torch.nn.RMSNorm", "--eps", "0.01", "--dtype", "float16", "--dtype", "float32", "--examples", "3"]
    status, data = audit_json(tmp_path, *argv)
    assert status == 0, [f["message"] for f in data["findings"]]
    assert data["eps"] == {"float16": 0.01, "float32": 0.01}
    assert {s["regime"] for s in data["stats"] if s["dtype"] == "float32"} >= {"eps_dominant", "tiny"}


def test_an_implementation_ignoring_its_eps_fails_at_the_stated_eps_and_passes_at_its_own(tmp_path):
    quick = ["--in-process", "--dtype", "float32", "--examples", "0"]
    status, data = audit_json(tmp_path, HARDCODED, *quick)
    assert status == 0 and data["eps"] == {"float32": 1e-6}  # the eps it hard-codes is its default
    status, data = audit_json(tmp_path, HARDCODED, *quick, "--eps", "0.01")
    assert status == 1 and data["eps"] == {"float32": 0.01}
    accuracy = [f for f in data["findings"] if f["check"] == "accuracy"]
    assert [f["output"] for f in accuracy] == ["y"]
    [y] = accuracy
    assert y["worst"]["tier"] == "rigorous" and y["regime"] in ("eps_dominant", "tiny")
    assert y["worst"]["ulp_error"] > 1000  # 1e-6 for 0.01 where mean(x^2) is near eps: rstd far off
