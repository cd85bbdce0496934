"""Slow is not hung: an input the calls before it predict to take longer than the timeout is not run,
and the reports say so; a call that really hangs is still a ``timeout`` finding
(tests/normcheck/targets/slow.py; the Triton kernels are in test_triton_examples.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from normcheck.api import audit
from normcheck.cli import main
from normcheck.engine.plan import MANY_ROWS

from .report_schema import valid_report
from .targets.slow import HANG

SLOW = str(Path(__file__).parent / "targets" / "slow.py")


def test_a_slow_implementation_passes_and_every_report_says_what_was_too_slow(tmp_path, capsys):
    argv = ["audit", f"{SLOW}:SlowRowsRMSNorm", "--kind", "rmsnorm", "--dtype", "float32", "--examples", "5"]
    assert main([*argv, "--report-dir", str(tmp_path)]) == 0
    line = "float32: 32768x16 not run: too slow at this size (predicted "
    out = capsys.readouterr().out
    assert "PASS" in out and line in out
    data = valid_report(tmp_path / "audit.json")
    [skipped] = data["too_slow"]
    assert skipped["shape"] == list(MANY_ROWS) and skipped["predicted_s"] > 20  # 32768 rows of 1 ms
    assert data["verdict"] == "pass" and not data["skipped"]
    markdown = (tmp_path / "report.md").read_text()
    assert "## Not run" in markdown and line in markdown
    assert "Not run" in (tmp_path / "report.html").read_text()


def test_a_hang_at_one_size_is_still_a_timeout_finding_where_smaller_calls_predict_milliseconds():
    result = audit(f"{SLOW}:HangsOnOneSize", kind="rmsnorm", dtype="float32", examples=5, timeout=3)
    assert {f.check for f in result.findings} == {"timeout"}
    [hang] = result.findings
    assert hang.example.n == HANG and "no result within 3 s" in hang.message
    assert "s predicted from the calls before it" in hang.message
    assert [e["shape"] for e in result.too_slow] == [list(MANY_ROWS)]  # slow, not hung: not a finding


def test_a_fast_implementation_runs_every_input_even_under_a_short_timeout():
    """The many-rows input is predicted from the 512-row call before it, not from calls of a few rows
    (whose fixed overhead, counted per row, would predict seconds)."""
    result = audit("torch.nn.RMSNorm", kind="rmsnorm", dtype="float32", examples=0, timeout=3)
    assert result.passed and not result.too_slow
