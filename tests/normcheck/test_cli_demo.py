from __future__ import annotations

import importlib

import pytest

from normcheck.cli import main


def test_demo_judges_torch_rms_norm_in_ulps(capsys):
    pytest.importorskip("torch")
    assert main(["demo", "--rows", "2", "--hidden", "64"]) == 0
    out = capsys.readouterr().out
    for dtype in ("float16", "bfloat16", "float32"):
        assert dtype in out
    assert "correctly rounded" in out


def test_demo_without_torch_is_a_one_line_usage_error(monkeypatch, capsys):
    real = importlib.import_module

    def no_torch(name, *args):
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_torch)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs PyTorch" in err
