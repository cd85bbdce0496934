"""Reproducers: gradient findings shown by a backward pass."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from normcheck.api import audit

HERE = Path(__file__).parent
TARGETS = str(HERE / "targets" / "reproducers.py")
NUMPY = str(HERE / "targets" / "numpy_norms.py")


def run_snippet(code: str, cwd: Path) -> str:
    """What the reproducer prints, run in a fresh process."""
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def error_of(output: str, printed: str) -> tuple[float, int]:
    """The largest ULP error and the count of wrongly non-finite elements the reproducer printed for ``output``."""
    found = re.search(rf"max ulp error of {output}: (\S+) \((\d+) of \d+ elements non-finite", printed)
    assert found, printed
    return float(found[1]), int(found[2])


def test_the_reproducer_of_a_nan_dx_runs_backward_and_shows_dx(tmp_path):
    result = audit(f"{TARGETS}:NanDxRMSNorm", kind="rmsnorm", dtype="float32", examples=0)
    [finding] = result.findings
    assert (finding.check, finding.output) == ("nonfinite", "dx")
    printed = run_snippet(finding.reproducer, tmp_path)
    assert error_of("y", printed)[1] == 0
    assert error_of("dx", printed)[1] == 1  # the NaN the audit found


def test_the_reproducer_of_a_wrong_numpy_dx_shows_dx(tmp_path):
    result = audit(f"{NUMPY}:rms_norm_wrong_dx", framework="numpy", kind="rmsnorm", dtype="float32", examples=0)
    finding = next(f for f in result.findings if f.output == "dx")
    error, nonfinite = error_of("dx", run_snippet(finding.reproducer, tmp_path))
    assert error > 10 and nonfinite == 0
