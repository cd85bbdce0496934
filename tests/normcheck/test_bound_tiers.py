"""The rigorous bound is crossed by a modest bug and nearly reached by correct code: loosened tenfold,
a finding past it becomes a sharp-only one and correct code's use of it falls tenfold."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from normcheck.cli import main

from .report_schema import valid_report

QUICK = ["--in-process", "--examples", "0", "--no-grad"]


def audit_json(tmp_path, target: str, *argv: str) -> tuple[int, dict]:
    report = tmp_path / "r.json"
    status = main(["audit", target, *QUICK, *argv, "--json", str(report)])
    return status, valid_report(report)


def test_a_bfloat16_statistic_in_a_float16_norm_is_past_the_rigorous_bound_by_a_few_times(tmp_path):
    """rstd rounded to bfloat16 (2^-8 relative) is up to 4 ulp of a float16 y, 8 at worst after its rounding:
    a few times the rigorous bound (about 1.2 ulp there), not orders of magnitude."""
    status, data = audit_json(tmp_path, "tests.normcheck.zoo:LowPrecisionRstdRMSNorm", "--dtype", "float16")
    assert status == 1
    [y] = [f for f in data["findings"] if (f["check"], f["output"]) == ("accuracy", "y")]
    worst = y["worst"]
    assert worst["tier"] == "rigorous" and "beyond the rigorous bound" in y["message"]
    assert 1.5 <= worst["ulp_error"] / worst["rigorous_ulp"] <= 8, worst
    assert worst["sharp_ulp"] <= worst["rigorous_ulp"] < worst["ulp_error"]
    assert y["diagnosis"]["bug"] == "low-precision statistic (bf16)"


def test_correct_code_reaches_the_rigorous_bound_it_is_held_to(tmp_path):
    """Llama's RMSNorm: in float16 the bound is mostly the final roundings, which correct code makes (its
    largest error reaches over half of it); in float32 mostly the compute term, reached to over a twentieth."""
    status, data = audit_json(tmp_path, "tests.normcheck.zoo:LlamaRMSNorm", "--dtype", "float16", "--dtype", "float32")
    assert status == 0, [f["message"] for f in data["findings"]]
    use = {
        dtype: max(s["rigorous_use"] for s in data["stats"] if s["dtype"] == dtype and s["output"] == "y")
        for dtype in ("float16", "float32")
    }
    assert 0.5 <= use["float16"] <= 1, use
    assert 0.05 <= use["float32"] <= 1, use
