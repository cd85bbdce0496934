"""Modules built as transformers' norm classes build themselves (tests/normcheck/targets/constructors.py),
and diagnoses that name no rounding where the input dtype is the compute dtype."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch
import torch.nn.functional as F

from normcheck.cli import main
from normcheck.diagnosis.diagnose import diagnose
from oracles import resolve_format

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


def test_the_eps_of_a_wrapped_norm_is_read_and_its_offset_rounded_in_half_precision_named(tmp_path):
    status, data = _audit(tmp_path, "WrappedUnitOffsetLayerNorm", *FAST, "--dtype", "bfloat16")
    assert status == 1 and data["eps"] == {"float16": 1e-3, "bfloat16": 1e-3} and data["weight_offset"] == 1
    named = {f["diagnosis"]["bug"] for f in data["findings"] if f["diagnosis"] and f["diagnosis"]["bug"]}
    assert named and all(bug.startswith("weight offset in low precision") for bug in named), named
    assert {f["dtype"] for f in data["findings"] if f["check"] == "bias"} == {"float16", "bfloat16"}


def _float32_outputs(
    norm: Callable[..., torch.Tensor], n: int, layernorm: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The inputs and the outputs and gradients of ``norm(x, w, b)`` on float32 rows of ``n``."""
    rng = np.random.default_rng(0)
    arrays = {
        "x": (rng.standard_normal((8, n)) * 3 + 1).astype(np.float32),
        "weight": rng.standard_normal(n).astype(np.float32),
        "bias": rng.standard_normal(n).astype(np.float32) if layernorm else None,
        "grad": rng.standard_normal((8, n)).astype(np.float32),
    }
    x, w, b = (
        None if arrays[k] is None else torch.from_numpy(arrays[k]).requires_grad_() for k in ("x", "weight", "bias")
    )
    y = norm(x, w, b)
    y.backward(torch.from_numpy(arrays["grad"]))
    outs = {"y": y, "dx": x.grad, "dw": w.grad, "db": None if b is None else b.grad}
    return arrays, {k: t.detach().numpy() for k, t in outs.items() if t is not None}


def _two_pass(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = x - x.mean(-1, keepdim=True)
    return d * torch.rsqrt(d.pow(2).mean(-1, keepdim=True) + 1e-6) * w + b


@pytest.mark.parametrize(
    "norm", [lambda x, w, b: F.layer_norm(x, (61,), w, b, 1e-6), _two_pass], ids=["F.layer_norm", "two-pass"]
)
def test_no_rounding_to_the_input_or_parameter_dtype_is_named_on_float32_inputs(norm):
    """A correct float32 LayerNorm has no 'low-precision statistic' (rstd stored in the input dtype) and no
    'low-precision dW accumulator': on float32 inputs those roundings are no-ops, a match only another order."""
    arrays, outs = _float32_outputs(norm, 61, layernorm=True)
    named = {
        out: diagnose("layernorm", out, got, resolve_format("float32"), eps=1e-6, offset=0, **arrays).bug
        for out, got in outs.items()
    }
    assert not {"low-precision statistic", "low-precision dW accumulator"} & set(named.values()), named


def test_rstd_stored_in_bfloat16_is_still_named_on_float32_inputs():
    def bf16_rstd(x: torch.Tensor, w: torch.Tensor, b: None) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6).to(torch.bfloat16).float() * w

    arrays, outs = _float32_outputs(bf16_rstd, 61, layernorm=False)
    d = diagnose("rmsnorm", "y", outs["y"], resolve_format("float32"), eps=1e-6, offset=0, **arrays)
    assert d.bug == "low-precision statistic (bf16)", d.evidence


def test_parameters_refused_in_half_precision_are_kept_in_float32_and_the_report_says_so(tmp_path, capsys):
    status, data = _audit(tmp_path, "Float32LayerNorm", *FAST)
    assert status == 0, [f["message"] for f in data["findings"]]
    assert "mixed dtype" in data["kept_parameters"]["float16"]
    assert "float16: parameters kept in float32: the implementation refuses float16 ones" in capsys.readouterr().out
    assert any(s["output"] == "dw" for s in data["stats"])


def test_the_reproducer_keeps_the_parameters_in_float32_too(tmp_path, capsys):
    """Audited as a Gemma-style (1 + w) norm, which it is not, it fails; its reproducer builds it as the audit did."""
    options = ["--kind", "layernorm", "--weight-offset", "1", "--dtype", "float16", "--examples", "0", "--no-grad"]
    status, data = _audit(tmp_path, "Float32LayerNorm", *options)
    assert status == 1 and data["kept_parameters"]
    capsys.readouterr()
    exec(compile(data["findings"][0]["reproducer"], "<reproducer>", "exec"), {})
    assert "max ulp error" in capsys.readouterr().out


def test_a_stated_parameter_dtype_is_kept_even_where_the_module_refuses_it(tmp_path):
    status, data = _audit(tmp_path, "Float32LayerNorm", *FAST, "--param-dtype", "float16", "--kind", "layernorm")
    assert status == 1 and not data["kept_parameters"]
    assert {f["check"] for f in data["findings"]} == {"exception"}
