"""End to end: quantized norms of the zoo (tests/normcheck/targets/quant_zoo.py) audited with --quant.

Correct kernels (fused float32, the unfused composition, the reciprocal multiply; every format and scaling)
pass in three dtypes; each buggy one fails, and its bug class is named.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import oracles
from normcheck.api import audit, open_audit
from normcheck.cli import main
from normcheck.engine.plan import Plan
from normcheck.options import AuditOptions
from normcheck.quantization import scheme
from oracles.quantize import ELEMENT_FORMATS, round_to_format
from tests.normcheck.report_schema import valid_report
from tests.normcheck.test_reproducers import error_of, run_snippet

ZOO = "tests.normcheck.targets.quant_zoo"

CORRECT = [
    ("Fp8PerTokenRMSNorm", "float8_e4m3fn", "token"),
    ("Fp8PerTokenUnfusedRMSNorm", "float8_e4m3fn", "token"),
    ("Fp8PerTokenReciprocalRMSNorm", "float8_e4m3fn", "token"),
    ("Fp8PerGroup16RMSNorm", "float8_e4m3fn", "group:16"),
    ("fp8_e5m2_per_token_rms_norm", "float8_e5m2", "token"),
    ("int8_per_token_rms_norm", "int8", "token"),
    ("Fp8StaticRMSNorm", "float8_e4m3fn", "tensor"),
    ("int8_static_rms_norm", "int8", "tensor"),
    ("Fp8PerTokenLayerNorm", "float8_e4m3fn", "token"),
    ("MxFp8RMSNorm", "mxfp8", "block"),
    ("MxFp8CeilRMSNorm", "mxfp8", "block:ceil"),
    ("MxFp4RMSNorm", "mxfp4", "block:ocp"),
    ("MxFp4CeilUint8RMSNorm", "mxfp4", "block"),
    ("NvFp4RMSNorm", "nvfp4", "block"),
    ("NvFp4DivideUint8RMSNorm", "nvfp4", "block"),
]

#: (implementation, format, scaling, the dtype it is audited in, the finding's output, the bug class named)
BUGGY = [
    ("Fp8AmaxOfInputRMSNorm", "float8_e4m3fn", "token", "float32", "scales", "amax of the input"),
    ("Fp8AmaxUnweightedRMSNorm", "float8_e4m3fn", "token", "float32", "scales", "amax of the unweighted output"),
    ("Fp8TruncatingRMSNorm", "float8_e4m3fn", "token", "float32", "q", "rounds toward zero"),
    ("Fp8NoMinScaleRMSNorm", "float8_e4m3fn", "token", "float32", "q", "no minimum scale"),
    ("Fp8ReturnedScaleMismatchRMSNorm", "float8_e4m3fn", "token", "float32", "scales", "returned scale rounded"),
    ("Fp8MissingUpcastRMSNorm", "float8_e4m3fn", "token", "bfloat16", "scales", "missing fp32 upcast"),
    ("Fp8EpsOutsideRMSNorm", "float8_e4m3fn", "token", "float32", "scales", "eps outside sqrt"),
    ("Fp8MisalignedGroupsRMSNorm", "float8_e4m3fn", "group:16", "float32", "scales", "misaligned blocks"),
    ("Fp8StaticUnsaturatedRMSNorm", "float8_e4m3fn", "tensor", "float32", "q", "no saturation"),
    ("int8_static_wrapping_rms_norm", "int8", "tensor", "float32", "q", "integer wrap"),
    ("Fp8StaticScaleMultipliedRMSNorm", "float8_e4m3fn", "tensor", "float32", "q", "static scale multiplied"),
    ("Fp8StaticScaleIgnoredRMSNorm", "float8_e4m3fn", "tensor", "float32", "q", "static scale ignored"),
    ("MxFp8FloorRMSNorm", "mxfp8", "block", "float32", "scales", "UE8M0 scale rounded down"),
    ("MxFp8CeilRMSNorm", "mxfp8", "block:ocp", "float32", "scales", "UE8M0 scale rounded up"),
    ("NvFp4UnroundedScaleRMSNorm", "nvfp4", "block", "float32", "q", "block scale used unrounded"),
    ("NvFp4GlobalIgnoredRMSNorm", "nvfp4", "block", "float32", "scales", "global scale ignored"),
    ("NvFp4GlobalInvertedRMSNorm", "nvfp4", "block", "float32", "scales", "global scale inverted"),
]


def options(name: str) -> dict:
    """int8's static functions take eps without a default; a kernel that multiplies by its static scale (or
    ignores it, or NVFP4's global scale) matches no kind on the probe, so its kind is stated (as a user would,
    with --kind)."""
    if name.startswith("int8_static"):
        return {"eps": 1e-6}
    return {"kind": "rmsnorm", "weight_offset": 0} if "StaticScale" in name or "NvFp4Global" in name else {}


@pytest.mark.parametrize("name, quant, scaling", CORRECT, ids=[f"{c[0]}-{c[2]}" for c in CORRECT])
def test_correct_quantized_norms_pass(name, quant, scaling):
    import tests.normcheck.targets.quant_zoo as zoo

    result = audit(getattr(zoo, name), quant=quant, scaling=scaling, examples=10, **options(name))
    assert result.passed, [f.message for f in result.findings]
    outputs = {output for (_dtype, output, _regime) in result.stats}
    assert outputs == ({"q"} if scaling == "tensor" else {"q", "scales"})
    assert result.forward_only and result.quantization is not None


@pytest.mark.parametrize("name, quant, scaling, dtype, output, bug", BUGGY, ids=[f"{b[0]}-{b[2]}" for b in BUGGY])
def test_each_quantizer_bug_fails_and_is_named(name, quant, scaling, dtype, output, bug):
    import tests.normcheck.targets.quant_zoo as zoo

    result = audit(getattr(zoo, name), quant=quant, scaling=scaling, dtype=dtype, examples=0, **options(name))
    assert not result.passed
    found = {f.output: f for f in result.findings}
    assert output in found, [f.message for f in result.findings]
    assert found[output].diagnosis is not None and found[output].diagnosis.bug == bug, found[output].diagnosis


def test_the_cli_writes_a_schema_valid_report_of_a_quantized_audit(tmp_path, capsys):
    out = tmp_path / "audit.json"
    code = main(
        [
            "audit",
            f"{ZOO}:Fp8AmaxOfInputRMSNorm",
            "--quant",
            "float8_e4m3fn",
            "--dtype",
            "float32",
            "--examples",
            "0",
            "--json",
            str(out),
        ]
    )
    assert code == 1
    text = capsys.readouterr().out
    assert "quantized: float8_e4m3fn, dynamic per-token scales; forward only" in text
    doc = valid_report(out)
    assert doc["settings"]["quant"] == "float8_e4m3fn" and doc["settings"]["scaling"] == "token"
    assert {t["output"] for t in doc["totals"]} == {"q", "scales"}
    assert doc["findings"][0]["output"] == "scales"
    # The precision report names the scheme, gives the per-regime errors of q and plots them.
    folder = tmp_path / "report"
    assert main(["report", str(out), "--out", str(folder)]) == 0
    md = (folder / "report.md").read_text()
    assert f"`{ZOO}:Fp8AmaxOfInputRMSNorm (float8_e4m3fn per token)` | float32 | scales |" in md
    assert "## By input regime (max error of q)" in md and "q: steps (ulps) of the element format" in md
    assert (folder / "q_histogram.png").is_file() and not (folder / "y_histogram.png").exists()


def test_the_reproducer_of_an_nvfp4_finding_calls_with_the_global_scale_and_shows_the_values_off():
    import tests.normcheck.targets.quant_zoo as zoo

    result = audit(zoo.NvFp4UnroundedScaleRMSNorm, quant="nvfp4", dtype="float32", examples=0)
    [finding] = [f for f in result.findings if f.output == "q"]
    assert (
        "the global scale the audit chose" in finding.reproducer
        and "unpack_fp4(q.view(torch.uint8).numpy())" in finding.reproducer
    )
    printed = run_snippet(finding.reproducer, Path(__file__).parents[2])
    assert shown(printed)[0] >= 1 and shown(printed)[1] >= 1, printed


def shown(printed: str) -> tuple[int, float, int]:
    """What a quantized reproducer printed: how many values differ from the rounded y/scale, by at most how many
    steps (finite ones), and how many are not finite."""
    found = re.search(r"q: (\d+) of \d+ values differ .* \(at most (\S+) steps .*; (\d+) not finite\)", printed)
    assert found, printed
    return int(found[1]), float(found[2]), int(found[3])


#: Fused residual-add + norm + quantization: (implementation, scaling, the style found)
FUSED_CORRECT = [("Fp8FusedAddRMSNorm", "token", "return"), ("Fp8StaticFusedAddInPlaceRMSNorm", "tensor", "inplace")]


@pytest.mark.parametrize("name, scaling, style", FUSED_CORRECT)
def test_correct_fused_add_quantized_norms_pass_with_residual_out_judged(name, scaling, style):
    import tests.normcheck.targets.quant_zoo as zoo

    result = audit(getattr(zoo, name), quant="float8_e4m3fn", scaling=scaling, residual=True, examples=5)
    assert result.passed, [f.message for f in result.findings]
    assert result.fused_style == style
    outputs = {output for (_dtype, output, _regime) in result.stats}
    assert outputs == {"q", "residual_out"} | ({"scales"} if scaling == "token" else set())


@pytest.mark.parametrize(
    "name, scaling, dtype, check, output, bug",
    [
        ("Fp8FusedAddMissingUpcastRMSNorm", "token", "bfloat16", "accuracy", "q", "missing fp32 upcast"),
        ("Fp8StaticFusedAddUnsaturatedRMSNorm", "tensor", "float32", "nonfinite", "q", "no saturation"),
    ],
)
def test_fused_add_quantized_bugs_fail_named_and_their_reproducers_show_them(name, scaling, dtype, check, output, bug):
    import tests.normcheck.targets.quant_zoo as zoo

    result = audit(getattr(zoo, name), quant="float8_e4m3fn", scaling=scaling, residual=True, dtype=dtype, examples=0)
    found = {(f.check, f.output): f for f in result.findings}
    assert (check, output) in found, [f.message for f in result.findings]
    finding = found[(check, output)]
    assert finding.diagnosis is not None and finding.diagnosis.bug == bug, finding.diagnosis
    assert "bit for bit on 100%" in finding.diagnosis.evidence  # emulated on the sum, not on x alone
    assert not [f for f in result.findings if f.output == "residual_out"]  # the sums are right
    printed = run_snippet(finding.reproducer, Path(__file__).parents[2])
    differ, _steps, nonfinite = shown(printed)
    assert differ >= 1 and (nonfinite >= 1) == (check == "nonfinite"), printed
    assert error_of("residual_out", printed) <= (0.5, 0), printed  # correctly rounded, finite


@pytest.mark.parametrize(
    "args, message",
    [
        (["--quant", "float8_e4m3fn", "--scaling", "group:0"], "scaling must be tensor, token or group:N"),
        (["--quant", "float8_e4m3fn", "--scaling", "rows"], "scaling must be tensor, token or group:N"),
        (["--quant", "mxfp8", "--scaling", "token"], "mxfp8 has UE8M0 scales per block of 32: scaling must be block"),
        (["--quant", "nvfp4", "--scaling", "token"], "nvfp4 has E4M3 scales per block of 16: scaling must be block"),
        (["--quant", "float8_e4m3fn", "--layout", "nchw"], "--quant audits a norm over the last dimension"),
    ],
)
def test_bad_quantization_options_are_one_line_usage_errors(args, message, capsys):
    assert main(["audit", f"{ZOO}:Fp8PerTokenRMSNorm", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# -- hidden sizes that are not a multiple of the group ------------------------------------------


def test_a_hidden_size_off_the_group_is_judged_where_the_kernel_answers_and_noted_where_it_refuses(tmp_path):
    import tests.normcheck.targets.quant_zoo as zoo

    judged = audit(zoo.Fp8AnySizeGroup16RMSNorm, quant="float8_e4m3fn", scaling="group:16", examples=0)
    assert judged.passed, [f.message for f in judged.findings]
    assert set(judged.partial_blocks.values()) == {"judged (n=40, the last block of 8)"}
    report = tmp_path / "refused.json"
    target = "tests.normcheck.targets.quant_zoo:Fp8PerGroup16RMSNorm"
    options = ["--quant", "float8_e4m3fn", "--scaling", "group:16", "--examples", "0", "--json", str(report)]
    code = main(["audit", target, *options])
    assert code == 0  # a kernel may require multiples of its group: not a finding
    refused = valid_report(report)["partial_blocks"]
    assert set(refused) == {"float16", "bfloat16", "float32"}
    assert all(how.startswith("refused (n=40, the last block of 8): RuntimeError") for how in refused.values())


def test_a_last_group_that_reads_past_its_row_fails_on_its_scales_and_the_reproducer_shows_them():
    import tests.normcheck.targets.quant_zoo as zoo

    result = audit(zoo.Fp8OverreadGroup16RMSNorm, quant="float8_e4m3fn", scaling="group:16", dtype="float32")
    [finding] = result.findings  # only the shorter last group is wrong
    assert (finding.check, finding.output, finding.example.n) == ("accuracy", "scales", 40)
    shown = run_snippet(finding.reproducer, Path(__file__).parents[2])
    assert float(re.search(r"scales: at most (\S+) relative", shown).group(1)) > 0.05, shown


def test_values_rounded_toward_zero_are_also_a_bias_finding_in_every_dtype():
    import tests.normcheck.targets.quant_zoo as zoo

    result = audit(zoo.Fp8TruncatingRMSNorm, quant="float8_e4m3fn", examples=0)
    bias = {f.dtype: f for f in result.findings if f.check == "bias"}
    assert set(bias) == {"float16", "bfloat16", "float32"}
    assert all(f.output == "q" and "toward zero" in f.message and f.severity > 0.4 for f in bias.values())


# -- NVFP4 scales in the 128x4 swizzled tiles GEMMs read -------------------------------------------


def test_swizzled_scales_are_read_back_row_by_row():
    import torch

    from examples.quantized_norms import swizzle_128x4
    from normcheck.quantization import unswizzle

    rowwise = np.arange(130 * 5, dtype=np.int32).reshape(130, 5)  # 130 rows, 5 scales: padded to 256 x 8
    flat = swizzle_128x4(torch.from_numpy(rowwise)).numpy()
    assert flat.size == 256 * 8 and np.array_equal(unswizzle(flat, 130, 5), rowwise)
    # row 33 = 32 * 1 + 1, scale 1: tile (0, 0), at (c=1, b=1, e=1) within it: (1 * 4 + 1) * 4 + 1
    assert flat[21] == rowwise[33, 1]


def test_an_nvfp4_kernel_with_swizzled_scales_passes_and_one_that_skipped_the_swizzle_fails(tmp_path):
    import tests.normcheck.targets.quant_zoo as zoo

    good = audit("examples/quantized_norms.py:rms_norm_nvfp4_swizzled", quant="nvfp4", scaling="block:swizzled")
    assert good.passed and good.kind == "rmsnorm", [f.message for f in good.findings]
    assert "128x4 swizzled" in good.quantization
    bad = audit(zoo.nvfp4_scales_not_swizzled, quant="nvfp4", scaling="block:swizzled", kind="rmsnorm", examples=0)
    scales = next(f for f in bad.findings if f.output == "scales" and f.check == "accuracy")
    shown = run_snippet(scales.reproducer, Path(__file__).parents[2])
    assert re.search(r"scales: at most (\S+) relative", shown), shown
    unswizzled = audit(
        "examples/quantized_norms.py:rms_norm_nvfp4", quant="nvfp4", scaling="block:swizzled", kind="rmsnorm"
    )
    assert any("swizzled tiles" in f.message for f in unswizzled.findings)  # (rows, 4) scales: not the tiles' size


# -- values on the rounding boundaries of the element format ----------------------------------------


@pytest.mark.parametrize(
    "element, scaling, block",
    [("float8_e4m3fn", "token", 64), ("int8", "token", 64), ("float8_e4m3fn", "group:16", 16)],
)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_the_ties_input_puts_every_scaled_value_on_a_midpoint_of_the_element_format(element, scaling, block, dtype):
    fmt, target = oracles.resolve_format(dtype), ELEMENT_FORMATS[element]
    case = Plan(0, 0, (), False, 1 if scaling == "token" else block).ties_case(fmt, scheme(element, scaling))
    assert case is not None and case.n == 64
    y = oracles.rms_norm(case.x, case.weight, 1e-6).approx.reshape(4, -1, block)
    v = (y / (np.abs(y).max(-1, keepdims=True) / float(target.max_finite))).reshape(4, -1)
    assert np.allclose(v, np.round(v * 2) / 2, rtol=0, atol=1e-9 * np.abs(v))  # the rstd cancels exactly
    down, up = (round_to_format(np.nextafter(v, lim), target) for lim in (0.0 * v, 2 * v))
    ties = np.abs(v) < float(target.max_finite)
    assert (down != up)[ties].all() and ties.sum() == v.size - v.size // block  # each block's first: the largest


@pytest.mark.parametrize("name", ["Fp8PerTokenRMSNorm", "Fp8PerTokenUnfusedRMSNorm", "Fp8PerTokenReciprocalRMSNorm"])
def test_correct_kernels_pass_on_ties_where_their_float32_arithmetic_may_tip_either_way(name):
    import tests.normcheck.targets.quant_zoo as zoo

    options = AuditOptions(quant="float8_e4m3fn", in_process=True)
    with open_audit(getattr(zoo, name), options) as auditor:
        for dtype in ("float16", "bfloat16", "float32"):
            fmt = oracles.resolve_format(dtype)
            case = auditor.plan.ties_case(fmt, auditor.scheme)
            assert case is not None and auditor.check(case, dtype) == [], dtype
