"""Channels-first norms (``--layout nchw`` / ``ncl``): the rows reach the implementation as channels and come back
exactly; correct ones pass, a wrong one fails with its bug named and a reproducer that shows it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch

from normcheck.api import audit
from normcheck.cli import main
from normcheck.target.layouts import from_layout, to_layout

TARGETS = str(Path(__file__).parent / "targets" / "channels_first.py")
SHORT = {"dtype": ("float16",), "examples": 5}


@pytest.mark.parametrize(("layout", "shape"), [("nchw", (1, 5, 6, 1)), ("ncl", (1, 5, 6))])
def test_rows_become_channels_and_come_back_exactly(layout: str, shape: tuple[int, ...]) -> None:
    x = torch.arange(30.0).reshape(2, 3, 5).requires_grad_()
    inside = to_layout(x, layout)
    assert tuple(inside.shape) == shape
    assert torch.equal(inside[0, :, 4].flatten(), x[1, 1])  # channel c of position 4 is element c of row 4
    back = from_layout(inside * 2, tuple(x.shape), layout)
    assert torch.equal(back, x * 2)
    back.backward(torch.ones_like(back))
    assert torch.equal(x.grad, torch.full_like(x, 2.0))
    assert from_layout(inside[:, :3], tuple(x.shape), layout).shape == inside[:, :3].shape  # wrong shape: as is


@pytest.mark.parametrize(("name", "layout"), [("LayerNorm2d", "nchw"), ("LayerNorm1d", "ncl")])
def test_a_correct_channels_first_norm_passes(name: str, layout: str) -> None:
    result = audit(f"{TARGETS}:{name}", layout=layout, **SHORT)
    assert result.passed and result.kind == "layernorm", result.findings


def test_a_channels_first_norm_in_the_input_dtype_fails_and_its_reproducer_shows_it(tmp_path: Path) -> None:
    result = audit(f"{TARGETS}:HalfLayerNorm2d", layout="nchw", **SHORT)
    assert not result.passed
    bugs = {f.diagnosis.bug for f in result.findings if f.diagnosis is not None}
    assert "missing fp32 upcast" in bugs
    finding = next(f for f in result.findings if f.output == "y" and f.check == "accuracy")
    assert 'to_layout(x, "nchw")' in finding.reproducer
    done = subprocess.run(
        [sys.executable, "-c", finding.reproducer], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    printed = float(done.stdout.split("max ulp error of y: ")[1].split()[0])
    found = float(finding.minimal["message"].split("y is ")[1].split()[0])  # the smallest input's error, 3 digits
    assert printed == pytest.approx(found, rel=0.01), done.stdout


def test_the_wrong_layout_is_not_audited_and_a_layout_with_a_fused_add_is_refused(capsys) -> None:
    assert main(["audit", f"{TARGETS}:LayerNorm2d", "--dtype", "float16", "--examples", "0"]) == 2
    assert "cannot probe" in capsys.readouterr().err
    assert main(["audit", f"{TARGETS}:LayerNorm2d", "--layout", "nchw", "--residual"]) == 2
    assert "applies to a plain norm" in capsys.readouterr().err
