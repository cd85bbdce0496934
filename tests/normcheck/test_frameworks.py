"""Targets in other frameworks: plain numpy functions (``--framework numpy``) and JAX / Flax (``--framework jax``).

The auditor itself still needs torch (its emulations); the JAX tests skip where jax is not installed.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from normcheck.api import audit
from normcheck.cli import main
from normcheck.engine.auditor import Auditor
from normcheck.errors import UsageError
from normcheck.options import AuditOptions
from normcheck.target.isolation import open_candidate
from normcheck.target.registry import detect_framework, make_candidate
from oracles import resolve_format

HERE = Path(__file__).parent
NUMPY = str(HERE / "targets" / "numpy_norms.py")
needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None or importlib.util.find_spec("flax") is None,
    reason="jax and flax are not installed (pip install normcheck[jax])",
)


def numpy_audit(name: str, **options):
    options = {"dtype": "bfloat16", "examples": 5, "in_process": True, **options}
    return audit(f"{NUMPY}:{name}", framework="numpy", kind="rmsnorm", **options)


def outputs(result) -> set[str]:
    return {output for (_dtype, output, _regime) in result.stats}


# -- numpy functions -------------------------------------------------------------------------


def test_a_correct_numpy_function_passes_forward_only_in_the_worker_process():
    result = audit(f"{NUMPY}:rms_norm", framework="numpy", dtype="bfloat16", examples=5)
    assert result.passed and result.kind == "rmsnorm" and result.forward_only
    assert result.isolation == "worker process" and outputs(result) == {"y"}


def test_numpy_gradients_by_the_protocol_are_judged_and_a_wrong_dx_fails():
    good = numpy_audit("rms_norm_with_gradients")
    assert good.passed and not good.forward_only and outputs(good) == {"y", "dx", "dw"}
    bad = numpy_audit("rms_norm_wrong_dx")
    assert {(f.check, f.output) for f in bad.findings} == {("accuracy", "dx")}


def test_a_buggy_numpy_function_fails_named_with_a_reproducer_that_runs(capsys):
    result = numpy_audit("rms_norm_no_upcast", dtype="float16")
    finding = next(f for f in result.findings if f.check == "accuracy" and f.output == "y")
    assert finding.diagnosis.bug == "missing fp32 upcast"
    exec(compile(finding.reproducer, "<reproducer>", "exec"), {})
    assert "max ulp error of y" in capsys.readouterr().out


def test_a_numpy_function_that_returns_a_list_or_writes_into_x_is_a_finding():
    listed = numpy_audit("returns_a_list")
    assert {f.check for f in listed.findings} == {"shape"}
    assert "returned list, not a numpy array" in listed.findings[0].message
    mutated = numpy_audit("writes_into_x")
    assert {f.check for f in mutated.findings} == {"mutation"}  # judged against the original input: accurate


@pytest.mark.parametrize(
    "argv, message",
    [
        ([f"{NUMPY}:returns_a_list", "--framework", "numpy"], "(returned list, not a numpy array); pass --kind"),
        (["torch.nn.RMSNorm", "--framework", "numpy"], "--framework numpy audits plain functions of numpy arrays"),
        ([f"{NUMPY}:rms_norm", "--framework", "numpy", "--compile"], "--compile applies to torch and JAX"),
    ],
)
def test_numpy_usage_errors_are_one_line_with_exit_2(argv, message, capsys):
    assert main(["audit", *argv, "--examples", "1", "--dtype", "float32"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_framework_jax_without_jax_installed_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax raises ImportError
    assert main(["audit", f"{NUMPY}:rms_norm", "--framework", "jax", "--in-process", "--examples", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "normcheck: error: --framework jax needs JAX: install it with `pip install normcheck[jax]`"


# -- JAX and Flax ------------------------------------------------------------------------------


def small_findings(candidate, kind: str, dtype: str, *, offset: int = 0, regimes: tuple[str, ...] = ()) -> list:
    """Judge the implementation on the audit's structured cases of n = 3 (the whole audit spends minutes
    compiling XLA code for every shape on this CPU): every output, against the oracle and both bounds."""
    auditor = Auditor(
        candidate, spec=candidate.name, kind=kind, weight_offset=offset, options=AuditOptions(dtype=dtype)
    )
    eps = candidate.describe(3, dtype).eps
    cases = [c for c in auditor.plan.structured_cases(resolve_format(dtype), eps) if c.n == 3]
    cases = [c for c in cases if c.regime in regimes] if regimes else cases
    assert cases
    found = [f for case in cases for f in auditor.check(case, dtype)]
    assert auditor.result.cases == len(cases)
    return found


@needs_jax
def test_frameworks_are_detected_from_flax_classes_and_jax_functions():
    import flax.linen
    import jax
    from flax import nnx

    assert detect_framework(nnx.RMSNorm) == detect_framework(flax.linen.LayerNorm) == "jax"
    assert detect_framework(jax.nn.standardize) == detect_framework(jax.jit(jax.nn.standardize)) == "jax"
    assert detect_framework(lambda x, eps=1e-6: x) == "torch"  # plain functions: torch unless told


@needs_jax
def test_a_correct_jax_function_passes_with_gradients_through_vjp_in_float64():
    from .targets import jax_norms

    candidate = make_candidate(jax_norms.rms_norm, "rms_norm", AuditOptions(framework="jax"))
    assert small_findings(candidate, "rmsnorm", "float64") == []
    x = np.ones((2, 3), dtype=np.float64)
    run = candidate.run(x, np.ones(3, x.dtype), None, np.ones_like(x))
    assert run.y.dtype == run.dx.dtype == run.dw.dtype == x.dtype  # float64 computed in float64 (x64 mode)


@needs_jax
def test_a_jax_function_without_upcast_fails_on_accuracy():
    from .targets import jax_norms

    candidate = make_candidate(jax_norms.rms_norm_no_upcast, "no_upcast", AuditOptions(framework="jax"))
    found = small_findings(candidate, "rmsnorm", "float16")
    assert {f.check for f in found} >= {"accuracy"} and "y" in {f.output for f in found}


@needs_jax
@pytest.mark.parametrize("name, kind", [("RMSNorm", "rmsnorm"), ("LayerNorm", "layernorm")])
def test_flax_nnx_modules_in_their_audited_dtype(name, kind):
    from flax import nnx

    candidate = make_candidate(getattr(nnx, name), name)
    layout = candidate.describe(3, "bfloat16")
    assert candidate.framework == "jax" and layout.parameter_dtype == "bfloat16" and layout.eps == 1e-6
    assert layout.has_bias == (kind == "layernorm")
    assert small_findings(candidate, kind, "bfloat16", regimes=("normal", "tiny", "huge")) == []


@needs_jax
def test_flax_nnx_layernorm_fails_on_rows_with_a_large_mean():
    """flax's use_fast_variance=True default computes E[x^2] - E[x]^2: cancellation on an offset row."""
    from flax import nnx

    found = small_findings(make_candidate(nnx.LayerNorm, "LayerNorm"), "layernorm", "float32", regimes=("offset",))
    assert ("accuracy", "y") in {(f.check, f.output) for f in found}


@needs_jax
def test_flax_layernorm_with_the_two_pass_variance_passes_where_the_default_fails():
    """examples/flax_norms.py: a subclass passing its arguments on through **kwargs gets rngs and param_dtype."""
    sys.path.insert(0, str(HERE.parents[1] / "examples"))
    try:
        from flax_norms import TwoPassLayerNorm
    finally:
        sys.path.pop(0)
    candidate = make_candidate(TwoPassLayerNorm, "TwoPassLayerNorm")
    assert candidate.describe(8, "float32").parameter_dtype == "float32"
    assert small_findings(candidate, "layernorm", "float32", regimes=("offset",)) == []


@needs_jax
def test_flax_default_float32_parameters_promote_a_half_input_to_a_float32_output():
    from flax import nnx

    candidate = make_candidate(nnx.RMSNorm, "RMSNorm", AuditOptions(param_dtype="float32"))
    assert candidate.describe(8, "bfloat16").parameter_dtype == "float32"
    x = np.ones((2, 8), dtype=resolve_format("bfloat16").dtype)
    run = candidate.run(x, np.ones(8, np.float32), None, np.ones_like(x))
    assert run.problems == ["output dtype float32 differs from the input dtype bfloat16"]
    assert run.dw.dtype == np.float32 and run.dx.dtype == x.dtype


@needs_jax
def test_a_flax_linen_module_is_initialized_and_differentiated():
    import flax.linen

    candidate = make_candidate(flax.linen.LayerNorm, "linen.LayerNorm")
    assert candidate.style == "linen" and candidate.describe(8, "float32").has_bias
    x = np.arange(16, dtype=np.float32).reshape(2, 8)
    w, b = np.full(8, 2.0, np.float32), np.full(8, 0.5, np.float32)
    run = candidate.run(x, w, b, np.ones_like(x))
    assert not run.problems and run.failure is None
    assert run.y[0, 0] < 0 and np.allclose(run.db, 2.0) and run.dx.shape == x.shape and run.dw.shape == (8,)


@needs_jax
def test_a_flax_class_named_by_its_path_is_detected_and_run_in_the_worker_process():
    with closing(open_candidate("flax.nnx.RMSNorm", "flax.nnx.RMSNorm")) as candidate:
        assert candidate.framework == "jax" and candidate.style == "module"
        x = np.arange(1, 9, dtype=np.float32).reshape(1, 8)
        run = candidate.run(x, np.full(8, 2.0, np.float32), None, np.ones_like(x))
    assert run.failure is None and not run.problems and run.dw.shape == (8,)
    assert np.allclose(run.y, 2 * x / np.sqrt(np.mean(x * x) + 1e-6))


# -- quantized outputs (numpy and JAX functions) ------------------------------------------------

QUANTIZED = str(HERE / "targets" / "array_quantized.py")


@pytest.mark.parametrize(
    "name, quant, scaling, outputs_judged",
    [
        ("rms_norm_per_token_fp8", "float8_e4m3fn", "token", {"q", "scales"}),
        ("rms_norm_static_int8", "int8", "tensor", {"q"}),  # called with the scale by name
    ],
)
def test_numpy_quantized_norms_pass_with_their_kind_inferred_from_the_values(name, quant, scaling, outputs_judged):
    result = audit(f"{QUANTIZED}:{name}", framework="numpy", quant=quant, scaling=scaling, examples=5, in_process=True)
    assert result.passed, [f.message for f in result.findings]
    assert result.kind == "rmsnorm" and result.forward_only and outputs(result) == outputs_judged
    assert result.dtypes == ["float16", "bfloat16", "float32"]


def test_a_numpy_quantizer_bug_fails_named_and_its_reproducer_shows_the_scales_off():
    result = audit(
        f"{QUANTIZED}:rms_norm_per_token_fp8_amax_of_x", framework="numpy", quant="float8_e4m3fn", examples=0
    )
    scales = next(f for f in result.findings if f.output == "scales")
    assert scales.diagnosis is not None and scales.diagnosis.bug == "amax of the input"
    shown = subprocess.run([sys.executable, "-c", scales.reproducer], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    relative = float(re.search(r"scales: at most (\S+) relative", shown.stdout).group(1))
    assert relative > 0.5, shown.stdout  # amax(x) / 448 is far from amax(y) / 448


def test_a_dynamic_numpy_quantizer_that_returns_no_scales_is_a_finding():
    result = audit(
        f"{QUANTIZED}:rms_norm_per_token_fp8_plain",
        framework="numpy",
        quant="float8_e4m3fn",
        kind="rmsnorm",
        dtype="float32",
        examples=0,
        in_process=True,
    )
    assert not result.passed
    assert any("a dynamic quantized norm returns (q, scales)" in f.message for f in result.findings)


@needs_jax
def test_a_jax_quantized_function_passes_and_a_flax_module_with_quant_is_a_usage_error():
    result = audit(
        f"{QUANTIZED}:jax_rms_norm_per_token_fp8",
        framework="jax",
        quant="float8_e4m3fn",
        dtype="float32",
        examples=3,
        in_process=True,
    )
    assert result.passed and outputs(result) == {"q", "scales"}, [f.message for f in result.findings]
    with pytest.raises(UsageError, match="--quant audits JAX functions"):
        audit("flax.nnx.RMSNorm", framework="jax", quant="float8_e4m3fn", in_process=True)
