"""The sharp tier: correct summation orders pass on long rows, long-row-only bugs fail and are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from normcheck.api import audit
from normcheck.engine.auditor import Auditor
from normcheck.engine.bias import BIAS_ULPS
from normcheck.options import AuditOptions
from normcheck.target.loading import load_target
from normcheck.target.torch_target import Candidate
from normcheck.verdict.bounds import FACTOR
from oracles import resolve_format

from .targets.long_rows import LONG

LONG_ROWS = str(Path(__file__).parent / "targets" / "long_rows.py")


@pytest.mark.parametrize(
    "name, kind",
    [
        ("SequentialRMSNorm", "rmsnorm"),
        ("PairwiseRMSNorm", "rmsnorm"),
        ("BlockedRMSNorm", "rmsnorm"),
        ("BlockedLayerNorm", "layernorm"),
    ],
)
def test_correct_float32_summation_orders_pass_on_rows_of_16384_and_65536(name, kind):
    result = audit(f"{LONG_ROWS}:{name}", kind=kind, dtype="float32", hidden_sizes=(16384, 65536), examples=3)
    assert result.passed, [f.message for f in result.findings]
    assert {n for s in result.stats.values() for n in s.distribution()["by_hidden_size"]} >= {"16384", "65536"}


@pytest.mark.parametrize(
    "name, kind, bug",
    [
        ("Fp16RstdOnLongRowsRMSNorm", "rmsnorm", "low-precision statistic (fp16)"),
        ("Bf16PartialsOnLongRowsRMSNorm", "rmsnorm", "low-precision statistic (bf16 partial sums of 1024)"),
        ("Fp16MeanOnLongRowsLayerNorm", "layernorm", "low-precision statistic (fp16 mean)"),
    ],
)
def test_bugs_on_the_long_row_path_alone_fail_the_default_audit_and_are_named(name, kind, bug):
    result = audit(f"{LONG_ROWS}:{name}", kind=kind, dtype="float32", examples=5)
    assert not result.passed
    named = {f.diagnosis.bug for f in result.findings if f.diagnosis is not None and f.diagnosis.bug is not None}
    assert named == {bug}, named
    accuracy = [f for f in result.findings if f.check == "accuracy"]
    assert accuracy and all(f.worst["shape"][-1] > LONG for f in accuracy)
    assert all(f.example.n > LONG for f in result.findings if f.example is not None)


def test_an_error_of_8x_the_worst_correct_computation_fails_and_7x_passes():
    spec = f"{LONG_ROWS}:BlockedRMSNorm"
    auditor = Auditor(Candidate(load_target(spec), spec), spec=spec, kind="rmsnorm", options=AuditOptions(examples=0))
    fmt = resolve_format("float32")
    case = next(c for c in auditor.plan.structured_cases(fmt, 1e-6) if c.n == 16385 and c.regime == "normal")
    exact, limits = auditor.measure.outputs(case, "float32", grad=False)
    y, limit = exact["y"], limits["y"]
    worst = limit.unit * limit.scale  # the largest error of a correct computation, element by element
    assert limit.unit > 2 * 2.0**-24  # the measured error, above the floor of two roundings
    sign = np.where(np.arange(y.shape[-1]) % 2, 1.0, -1.0)
    for times, fails in ((FACTOR + 0.5, True), (FACTOR - 0.5, False)):
        candidate = y.approx + sign * times * worst
        assert y.exceeds(candidate, np.minimum(limit.allowed("sharp"), limit.allowed("rigorous"))).all() == fails
    assert (
        limit.allowed("sharp") < limit.allowed("rigorous") / 50
    ).all()  # far sharper than the worst case at this length


def test_half_precision_llama_stays_unbiased_where_a_truncating_cast_is_caught_by_its_bias():
    llama = audit("tests.normcheck.zoo:LlamaRMSNorm", kind="rmsnorm", dtype=("float16", "bfloat16"), examples=10)
    assert llama.passed
    for total in (llama.totals()[(d, "y")].summary() for d in ("float16", "bfloat16")):
        assert total["max"] > 1.3 and total["sharp_use"] <= 1  # two roundings: up to the bound, never past it
    truncating = audit("tests.normcheck.zoo:TruncatingRMSNorm", kind="rmsnorm", dtype="float16", examples=10)
    [bias] = [f for f in truncating.findings if f.check == "bias"]
    mean = float(bias.message.split("by ")[1].split(" ulp")[0])
    assert mean < -4 * BIAS_ULPS and bias.diagnosis.bug == "truncating cast"


TRANSFORMERS_NORMS = [
    "transformers.models.llama.modeling_llama.LlamaRMSNorm",
    "transformers.models.qwen3.modeling_qwen3.Qwen3RMSNorm",
    "transformers.models.deepseek_v3.modeling_deepseek_v3.DeepseekV3RMSNorm",
    "transformers.models.gemma.modeling_gemma.GemmaRMSNorm",
    "transformers.models.t5.modeling_t5.T5LayerNorm",
]


@pytest.mark.parametrize("spec", TRANSFORMERS_NORMS, ids=lambda s: s.rsplit(".", 1)[-1])
def test_transformers_norms_pass_both_tiers(spec):
    pytest.importorskip("transformers")
    result = audit(spec, examples=10)
    assert result.passed, [f.message for f in result.findings]


def test_a_gradient_in_a_parameter_dtype_narrower_than_the_input_is_judged_in_its_own_ulps():
    """float64 x with float32 parameters: dw is rounded into float32 at the end, so half a float32 ulp is
    right (measured in float64 ulps it would be half a billion), and the bound says so in float32 ulps."""
    result = audit("torch.nn.RMSNorm", dtype="float64", param_dtype="float32", examples=0, in_process=True)
    assert result.passed, [f.message for f in result.findings]
    dw = [s for (dtype, output, _), s in result.stats.items() if output == "dw"]
    assert dw and max(s.max_bound["sharp"] for s in dw) <= 2.0  # 1.5 ulp of final roundings + the float64 terms
