"""Reproducers: large inputs in a file beside the report, and gradient findings shown by a backward pass."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

pytest.importorskip("torch")

from normcheck.api import audit
from normcheck.cli import main
from normcheck.report.render import render
from normcheck.report.reproducer import MAX_INLINE, _inputs, load_inputs, store

HERE = Path(__file__).parent
TARGETS = str(HERE / "targets" / "reproducers.py")
NUMPY = str(HERE / "targets" / "numpy_norms.py")
#: The audit's 32768x16 input as hex floats made a 15 MB report and a 14 MB terminal line.
SMALL = 100_000


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


# (A report without gradients has an empty dx panel, whose legend matplotlib warns about.)
@pytest.mark.filterwarnings("ignore:No artists with labels found:UserWarning")
def test_a_large_input_goes_to_a_file_beside_the_report_that_its_reproducer_loads(tmp_path, capsys):
    report = tmp_path / "r.json"
    argv = ["audit", f"{TARGETS}:WrongOnManyRows", "--dtype", "bfloat16", "--examples", "0", "--no-grad"]
    assert main([*argv, "--json", str(report)]) == 1
    out = capsys.readouterr().out
    [finding] = json.loads(report.read_text())["findings"]
    assert finding["check"] == "accuracy" and "input 32768x16" in finding["message"]
    file = finding["reproducer_file"]
    path = Path(file["path"])
    assert path.parent == tmp_path and path.suffix == ".npz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == file["sha256"]
    assert file["path"] in out and file["sha256"] in out  # the terminal names the file
    assert report.stat().st_size < SMALL and len(out) < SMALL  # not the whole array
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"
    render([str(report)], str(tmp_path / "rendered"))
    for page in ("report.md", "report.html"):
        text = (tmp_path / "rendered" / page).read_text()
        assert f"input in {path} (sha256 {file['sha256']})" in text and len(text) < SMALL
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    error, _ = error_of("y", run_snippet(finding["reproducer"], elsewhere))
    assert error > 2  # y is 1% too large: about 2.5 ulp of bfloat16


def test_without_a_report_large_inputs_go_to_a_folder_of_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["audit", f"{TARGETS}:WrongOnManyRows", "--dtype", "float32", "--examples", "0", "--no-grad"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    [stored] = (tmp_path / "normcheck-reproducers").iterdir()
    assert f"reproducer, input in {stored} (sha256 " in out
    assert len(out) < SMALL


def test_the_file_holds_the_exact_bits_under_a_name_of_its_checksum(tmp_path):
    x = np.array([[1.5, -0.0, np.inf], [np.nan, 2.0**-133, -3.0]], dtype=ml_dtypes.bfloat16)
    w = np.array([0.1, 0.2, 0.3], dtype=np.float16)
    first, again = store({"x": x, "w": w}, str(tmp_path)), store({"x": x, "w": w}, str(tmp_path))
    assert first == again and Path(first["path"]).name == f"reproducer-{first['sha256'][:16]}.npz"
    loaded = load_inputs(first["path"], first["sha256"])
    assert list(loaded) == ["x", "w"]
    for name, a in (("x", x), ("w", w)):
        assert loaded[name].dtype == a.dtype and loaded[name].shape == a.shape
        assert loaded[name].tobytes() == a.tobytes()
    with pytest.raises(ValueError, match="sha256 differs"):
        load_inputs(first["path"], "0" * 64)


def test_a_large_input_stays_inline_where_its_file_cannot_be_written(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("the user's\n")
    lines, file = _inputs({"x": np.zeros(MAX_INLINE + 1, np.float32)}, str(blocked))
    assert file is None and lines[0].startswith("# the inputs are inline") and 'h("0x0.0p+0")' in lines[-2]
    assert blocked.read_text() == "the user's\n"


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
