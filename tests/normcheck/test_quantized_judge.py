"""The quantized judge on hand-built answers: what a correct kernel may do passes, each kind of wrong fails."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

import oracles
from normcheck.engine.quantized import judge_quantized
from normcheck.quantization import FLOOR, scheme, static_scale
from normcheck.strategies import NormInput
from normcheck.target.protocol import Run
from normcheck.verdict.bounds import PROVEN, SHARP, Bound, ulp
from normcheck.verdict.tiers import Tier
from oracles import FLOAT32
from oracles.quantize import FLOAT4_E2M1FN, FLOAT8_E4M3FN, BlockMax, encode, power_of_two_scales, quantize, scaled_max

TOKEN = scheme("float8_e4m3fn", "token")


def case_of(x: np.ndarray) -> NormInput:
    n = x.shape[-1]
    return NormInput(x, np.ones(n, np.float32), np.zeros(n, np.float32), np.zeros_like(x), "normal")


def bound_of(y: oracles.Exact, rigorous: float, sharp: float) -> Bound:
    """Tiers of ``rigorous`` and ``sharp`` float32 ulps of each element of ``y``."""
    unit = ulp(np.abs(y.approx), FLOAT32)
    tiers = (Tier("rigorous", rigorous * unit, "r", PROVEN), Tier("sharp", sharp * unit, "s", SHARP))
    return Bound(FLOAT32, np.abs(y.approx), unit, np.zeros(y.shape), tiers, unit)


def setup(seed: int = 0, rows: int = 4, n: int = 64):
    x = np.random.default_rng(seed).standard_normal((rows, n)).astype(np.float32)
    y = oracles.rms_norm(x, eps=1e-6)
    scales = scaled_max(BlockMax(y, n), 1 / Fraction(448))
    return x, y, scales


def judged(q: np.ndarray, scales, y, x, sch=TOKEN, rigorous: float = 4.0, sharp: float = 2.0):
    run = Run(y=encode(q, FLOAT8_E4M3FN), scales=None if sch.static else np.asarray(scales, np.float32))
    if sch.static:
        run.given_scale = float(scales)
    return judge_quantized(run, y, bound_of(y, rigorous, sharp), case_of(x), "float32", sch)


def test_the_correct_rounding_with_the_exact_scales_passes():
    x, y, scales = setup()
    verdict = judged(quantize(y, scales, FLOAT8_E4M3FN), scales, y, x)
    assert verdict.findings == []
    q_errors = next(e for e in verdict.errors if e.output == "q")
    assert np.abs(q_errors.signed).max() <= 0.5  # correctly rounded, in steps of the element format
    assert {e.output for e in verdict.errors} == {"q", "scales"}


def test_one_value_a_step_off_is_an_accuracy_finding_past_the_rigorous_range():
    x, y, scales = setup()
    q = quantize(y, scales, FLOAT8_E4M3FN)
    v = y.approx / scales
    far = np.abs(v - q) < 0.01 * ulp(q, FLOAT8_E4M3FN)  # nowhere near a rounding boundary
    i = tuple(np.argwhere(far & (np.abs(q) < 200))[0])
    q[i] += np.sign(q[i]) * ulp(np.array(abs(q[i])), FLOAT8_E4M3FN)  # the next e4m3 value, away from zero
    [finding] = judged(q, scales, y, x).findings
    assert (finding.check, finding.output, finding.worst["tier"]) == ("accuracy", "q", "rigorous")
    assert finding.worst["index"] == list(i)
    assert "1 of 256 values outside the rigorous range" in finding.message


def test_a_scale_off_by_one_percent_fails_and_the_values_it_made_are_judged_with_it():
    x, y, scales = setup()
    wrong = (scales * 1.01).astype(np.float32)
    verdict = judged(quantize(y, wrong, FLOAT8_E4M3FN), wrong, y, x)
    assert [(f.check, f.output) for f in verdict.findings] == [("accuracy", "scales")]


def test_values_made_with_another_scale_than_the_one_returned_fail():
    x, y, scales = setup()
    returned = (scales * (1 + 2.0**-9)).astype(np.float32)  # as if rounded to bfloat16 after use
    verdict = judged(quantize(y, scales, FLOAT8_E4M3FN), returned, y, x)
    # The returned scale is off, and the values, judged with it, round apart from it near boundaries.
    assert sorted((f.check, f.output) for f in verdict.findings) == [("accuracy", "q"), ("accuracy", "scales")]


def test_near_a_boundary_either_neighbour_is_accepted_within_the_reach_of_y():
    # y/s lands 8 float32 ulps above a tie of e4m3 (1.0625 lies halfway between 1 and 1.125): a correct
    # kernel whose y is that far low rounds down, one exact rounds up.
    w = np.array([1.0625 + 2.0**-20, 448.0], np.float32)
    x = np.array([[1.0, 1.0]], np.float32)
    y = oracles.rms_norm(x, w, eps=0.0)
    scales = np.array([[1.0]], np.float32)
    for q0 in (1.0, 1.125):
        assert judged(np.array([[q0, 448.0]]), scales, y, x, rigorous=16, sharp=16).findings == []
    # With no room (a y allowance far below the distance to the tie), only the correct rounding passes.
    [finding] = judged(np.array([[1.0, 448.0]]), scales, y, x, rigorous=0.01, sharp=0.01).findings
    assert finding.output == "q"


def test_a_zero_row_may_take_the_floor_or_zero_but_not_nan():
    x = np.zeros((2, 16), np.float32)
    y = oracles.rms_norm(x, eps=1e-6)
    floor = np.float32(FLOOR / 448)
    assert judged(np.zeros((2, 16)), np.full((2, 1), floor), y, x).findings == []
    assert judged(np.zeros((2, 16)), np.zeros((2, 1)), y, x).findings == []
    nan = np.full((2, 16), np.nan)
    findings = judged(nan, np.zeros((2, 1)), y, x).findings
    assert [(f.check, f.output) for f in findings] == [("nonfinite", "q")]
    above = judged(np.zeros((2, 16)), np.full((2, 1), floor * 2), y, x).findings
    assert [(f.check, f.output) for f in above] == [("accuracy", "scales")]


def test_a_static_scale_saturates_the_values_beyond_the_range():
    x, y, _ = setup(1)
    s = np.float32(0.001)  # y up to ~3: quotients up to ~3000, past 448
    q = quantize(y, np.array(s), FLOAT8_E4M3FN)
    static = scheme("float8_e4m3fn", "tensor")
    assert (np.abs(q) == 448).any()
    assert judged(q, s, y, x, static).findings == []
    unsaturated = np.where(np.abs(q) == 448, np.nan, q)
    assert [f.check for f in judged(unsaturated, s, y, x, static).findings] == ["nonfinite"]


def test_static_scales_are_a_pure_function_of_the_input():
    x, _, _ = setup(2)
    a, b = static_scale(x, None, 1e-6, 448.0), static_scale(x.copy(), None, 1e-6, 448.0)
    assert a == b and a.dtype == np.float32 and a > 0
    scales = {float(static_scale(setup(seed)[0], None, 1e-6, 448.0)) for seed in range(12)}
    assert len(scales) > 3  # the multiples vary with the input


def test_a_scale_may_be_off_by_what_the_block_maximum_of_a_correct_y_is_off_by():
    x, y, scales = setup()
    high = (scales * (1 + 2.0**-21)).astype(np.float32)  # twice the float32 arithmetic's own allowance
    q = quantize(y, high, FLOAT8_E4M3FN)
    assert judged(q, high, y, x, rigorous=8, sharp=8).findings == []  # a y 8 ulps high explains it
    findings = judged(q, high, y, x, rigorous=0.01, sharp=0.01).findings
    assert [(f.check, f.output) for f in findings] == [("accuracy", "scales")]


MXFP8 = scheme("mxfp8", None)


def mx_setup(seed: int = 0):
    x = np.random.default_rng(seed).standard_normal((4, 64)).astype(np.float32)
    y = oracles.rms_norm(x, eps=1e-6)
    return x, y, {rule: power_of_two_scales(BlockMax(y, 32), 448, rule) for rule in ("ocp", "ceil", "floor")}


def test_ue8m0_scales_by_either_rule_pass_and_the_values_are_judged_with_them():
    x, y, scales = mx_setup()
    assert not np.array_equal(scales["ocp"], scales["ceil"])  # the rules differ on these blocks
    for rule in ("ocp", "ceil"):
        assert judged(quantize(y, scales[rule], FLOAT8_E4M3FN), scales[rule], y, x, MXFP8).findings == [], rule
    ceil_as_ocp = judged(quantize(y, scales["ceil"], FLOAT8_E4M3FN), scales["ceil"], y, x, scheme("mxfp8", "block:ocp"))
    assert [(f.check, f.output) for f in ceil_as_ocp.findings] == [("accuracy", "scales")]


def test_a_ue8m0_scale_rounded_down_or_not_a_power_of_two_fails():
    x, y, scales = mx_setup()
    floor = judged(quantize(y, scales["floor"], FLOAT8_E4M3FN), scales["floor"], y, x, MXFP8)
    assert ("accuracy", "scales") in {(f.check, f.output) for f in floor.findings}
    # Between the two rules' powers of two, where they differ: in range, but no power of two. The values are
    # made with it, so only the scale is wrong.
    between = scales["ceil"] > scales["ocp"]
    assert between.any()
    off = np.where(between, scales["ocp"] * 1.5, scales["ocp"])
    findings = judged(quantize(y, off, FLOAT8_E4M3FN), off, y, x, MXFP8).findings
    assert [(f.check, f.output) for f in findings] == [("accuracy", "scales")]


def test_an_all_zero_block_may_take_any_ue8m0_scale():
    x, _, _ = mx_setup()
    x[:, :32] = 0
    y = oracles.rms_norm(x, eps=1e-6)
    scales = power_of_two_scales(BlockMax(y, 32), 448, "ocp")
    for zero_scale in (2.0**-127, 1.0, 2.0**20):
        s = scales.copy()
        s[:, 0] = zero_scale
        assert judged(quantize(y, s, FLOAT8_E4M3FN), s, y, x, MXFP8).findings == [], zero_scale


NVFP4 = scheme("nvfp4", None)


def nv_setup():
    """Rows of 64 (four NVFP4 blocks), their usual global scale ``448 * 6 / amax`` and exact E4M3 block scales."""
    x = np.random.default_rng(5).standard_normal((4, 64)).astype(np.float32)
    y = oracles.rms_norm(x, eps=1e-6)
    g = np.float32(448 * 6 / np.abs(y.approx).max())
    return x, y, float(g), scaled_max(BlockMax(y, 16), Fraction(float(g)) / 6, FLOAT8_E4M3FN)


def nv_judged(q: np.ndarray, scales: np.ndarray, y, x, g: float):
    run = Run(y=encode(q, FLOAT4_E2M1FN), scales=np.asarray(scales, np.float32), given_scale=g)
    return judge_quantized(run, y, bound_of(y, 4.0, 2.0), case_of(x), "float32", NVFP4)


def test_nvfp4_exact_block_scales_and_values_pass():
    x, y, g, scales = nv_setup()
    verdict = nv_judged(quantize(y, scales, FLOAT4_E2M1FN, multiplier=g), scales, y, x, g)
    assert verdict.findings == []
    assert {e.output for e in verdict.errors} == {"q", "scales"}


def test_nvfp4_values_made_without_the_global_scale_fail():
    x, y, g, scales = nv_setup()
    findings = nv_judged(quantize(y, scales, FLOAT4_E2M1FN), scales, y, x, g).findings
    assert [(f.check, f.output) for f in findings] == [("accuracy", "q")]


def test_an_nvfp4_block_scale_a_step_off_or_not_an_e4m3_value_fails():
    x, y, g, scales = nv_setup()
    for side in (1, -1):  # the next E4M3 value up, and down (the spacing just below it)
        off = scales.copy()
        off[0, 0] += side * ulp(np.array(off[0, 0] * (1 + side * 2.0**-10)), FLOAT8_E4M3FN)  # values made with it
        assert float(off[0, 0]) == float(encode(off[0, 0], FLOAT8_E4M3FN))
        findings = nv_judged(quantize(y, off, FLOAT4_E2M1FN, multiplier=g), off, y, x, g).findings
        assert [(f.check, f.output, f.worst["index"]) for f in findings] == [("accuracy", "scales", [0, 0])], side
    odd = scales.copy()
    odd[1, 2] *= 1 + 2.0**-8  # near the exact scale, but no E4M3 value
    findings = nv_judged(quantize(y, odd, FLOAT4_E2M1FN, multiplier=g), odd, y, x, g).findings
    assert [f.output for f in findings] == ["scales"]
    assert "not a float8_e4m3fn value" in findings[0].message


def test_the_bias_check_counts_fine_steps_and_finds_values_rounded_toward_zero():
    from normcheck.engine.bias import quantized_bias

    x, y, scales = setup(rows=64, n=128)
    v = y.approx / scales.astype(np.float32).astype(np.float64)
    nearest = v.astype(np.float32).astype(FLOAT8_E4M3FN.dtype)
    step = ulp(v, FLOAT8_E4M3FN)
    toward_zero = np.trunc(v / step) * step  # truncation of the exact quotient: -0.5 steps on average

    def found(q: np.ndarray, fmt: str = "float8_e4m3fn") -> list:
        run = Run(y=np.asarray(q), scales=scales.astype(np.float32))
        return quantized_bias(run, y, case_of(x), "float32", scheme(fmt, "token"))

    assert found(nearest) == []
    [bias] = found(toward_zero)
    assert bias.check == "bias" and bias.output == "q" and "toward zero" in bias.message and 0.4 < bias.severity < 0.6
    # e5m2's steps (a quarter to an eighth of a value) are too coarse for values to fill them evenly: not counted
    assert found(toward_zero, "float8_e5m2") == []


def test_the_bias_check_passes_over_scales_of_the_wrong_shape_which_are_a_finding_elsewhere():
    from normcheck.engine.bias import quantized_bias

    x, y, _ = setup(rows=64, n=64)
    groups = scheme("float8_e4m3fn", "group:16")  # 4 scales a row; this kernel returned 2
    run = Run(y=np.zeros(x.shape, FLOAT8_E4M3FN.dtype), scales=np.ones((64, 2), np.float32))
    assert quantized_bias(run, y, case_of(x), "float32", groups) == []
