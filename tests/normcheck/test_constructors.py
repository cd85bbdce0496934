"""Modules built as transformers' norm classes build themselves (tests/normcheck/targets/constructors.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from normcheck.cli import main

TARGETS = str(Path(__file__).parent / "targets" / "constructors.py")
FAST = ["--examples", "5", "--dtype", "float16"]


def _audit(tmp_path: Path, name: str, *options: str) -> tuple[int, dict]:
    report = tmp_path / "r.json"
    status = main(["audit", f"{TARGETS}:{name}", *options, "--json", str(report)])
    return status, json.loads(report.read_text()) if report.exists() else {}  # none after a usage error


@pytest.mark.parametrize("stated, eps", [([], 1e-5), (["--eps", "1e-3"], 1e-3)], ids=["own eps", "stated eps"])
def test_a_constructor_taking_only_eps_gets_no_hidden_size(tmp_path, stated, eps):
    status, data = _audit(tmp_path, "EpsOnlyRMSNorm", *FAST, *stated)
    assert status == 0 and data["eps"] == {"float16": eps}


def test_a_constructor_that_indexes_its_size_gets_a_shape(tmp_path):
    status, data = _audit(tmp_path, "ShapeLayerNorm", *FAST)
    assert status == 0 and data["kind"] == "layernorm", [f["message"] for f in data["findings"]]


def test_the_eps_of_a_wrapped_norm_is_read(tmp_path):
    status, data = _audit(tmp_path, "WrappedUnitOffsetLayerNorm", *FAST, "--dtype", "bfloat16")
    assert status == 1 and data["eps"] == {"float16": 1e-3, "bfloat16": 1e-3} and data["weight_offset"] == 1
