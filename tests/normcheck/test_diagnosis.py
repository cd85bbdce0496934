"""Unit tests of the diagnosis (normcheck.diagnosis): emulations and naming, without an audit.

The "implementation's output" is an emulation's own output, or a perturbation of it, on inputs built by
``normcheck.strategies.make_input``; nothing here builds an Auditor.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from normcheck.diagnosis.diagnose import (
    MIN_AGREEMENT,
    Diagnosis,
    Match,
    convention_match,
    diagnose,
    same_class,
)
from normcheck.diagnosis.emulations import EMULATIONS, Emulation, emulations_for, rounds_here, run_emulation
from normcheck.strategies import NormInput, Source, make_input
from oracles import FloatFormat, resolve_format, round_floats

KINDS = ("rmsnorm", "layernorm")


def _case(dtype: str, regime: str, *, n: int = 64, rows: int = 8, eps: float = 1e-6, offset: int = 0) -> NormInput:
    """A seeded input of ``rows`` rows of ``n`` in one regime."""
    src = Source(rng=np.random.default_rng(0))
    return make_input(src, resolve_format(dtype), n=n, rows=rows, regime=regime, eps=eps, weight_offset=offset)


def _emulation(kind: str, offset: int, name: str) -> Emulation:
    """The emulation of that name for a kind and offset."""
    (emu,) = [e for e in emulations_for(kind, offset) if e.name == name]
    return emu


def _bias(kind: str, case: NormInput) -> np.ndarray | None:
    return case.bias if kind == "layernorm" else None


def _diagnose(kind: str, output: str, got: np.ndarray, fmt: FloatFormat, case: NormInput, **kw: object) -> Diagnosis:
    """``diagnose`` on a case, with the bias only for LayerNorm and the gradient only for gradients."""
    grad = case.grad if output != "y" else None
    args: dict = {"eps": 1e-6, "offset": 0, **kw}
    return diagnose(kind, output, got, fmt, x=case.x, weight=case.weight, bias=_bias(kind, case), grad=grad, **args)


# -- emulations_for ----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("offset", [0, 1])
def test_emulations_for_keeps_one_kind_and_drops_what_the_offset_excludes(kind: str, offset: int) -> None:
    emus = emulations_for(kind, offset)
    assert emus and all(e.kind == kind for e in emus)
    assert not any(e.offset_only for e in emus) if offset == 0 else not any(e.plain_only for e in emus)
    expected = [e for e in EMULATIONS if e.kind == kind and not (e.offset_only if offset == 0 else e.plain_only)]
    assert emus == expected
    names = [e.name for e in emus]
    assert len(names) == len(set(names)), "two emulations share a name for one kind and offset"
    assert any(e.correct for e in emus) and any(not e.correct for e in emus)


def test_conventions_without_an_offset_and_offset_bugs_come_with_their_offset_only() -> None:
    plain, unit = ({e.name for e in emulations_for("rmsnorm", off)} for off in (0, 1))
    assert {"llama", "t5"} <= plain - unit  # they multiply by w: meaningless with 1 + w
    assert "weight offset in low precision" in unit - plain
    ln_plain, ln_unit = ({e.name for e in emulations_for("layernorm", off)} for off in (0, 1))
    assert "half affine" in ln_plain - ln_unit
    assert {"weight offset in low precision", "weight offset in low precision (half affine)"} <= ln_unit - ln_plain


def test_emulations_for_an_unknown_kind_is_empty() -> None:
    assert emulations_for("batchnorm", 0) == []


# -- rounds_here -------------------------------------------------------------


def test_an_input_dtype_rounding_rounds_nothing_on_float32_or_float64_input() -> None:
    emu = _emulation("rmsnorm", 0, "missing fp32 upcast")
    assert emu.rounds_to == "input"
    for dtype, rounds in [("float16", True), ("bfloat16", True), ("float32", False), ("float64", False)]:
        x = round_floats(np.ones((2, 4)), resolve_format(dtype))
        assert rounds_here(emu, x, None) is rounds, dtype


def test_a_parameter_dtype_rounding_follows_the_weight_dtype_not_the_input_dtype() -> None:
    emu = _emulation("rmsnorm", 0, "low-precision dW accumulator")
    assert emu.rounds_to == "parameter"
    bf16, fp32 = (round_floats(np.ones(4), resolve_format(d)) for d in ("bfloat16", "float32"))
    x16 = round_floats(np.ones((2, 4)), resolve_format("float16"))
    assert rounds_here(emu, x16, bf16)
    assert not rounds_here(emu, x16, fp32)  # half input, parameters kept in float32
    assert rounds_here(emu, fp32.reshape(1, 4), bf16)  # float32 input, half parameters
    assert rounds_here(emu, x16, None)  # no weight: nothing to say, so it is tried


def test_a_bug_that_rounds_to_a_named_dtype_is_tried_on_every_input() -> None:
    emu = _emulation("rmsnorm", 0, "low-precision statistic (bf16)")
    assert emu.rounds_to is None
    for dtype in ("float16", "float32", "float64"):
        assert rounds_here(emu, round_floats(np.ones((1, 4)), resolve_format(dtype)), None)


# -- run_emulation -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_run_emulation_gives_y_alone_without_a_gradient_and_every_gradient_with_one(kind: str) -> None:
    case = _case("bfloat16", "normal", n=16, rows=4)
    emu = _emulation(kind, 0, "all-fp32")
    x0, w0 = case.x.copy(), case.weight.copy()
    forward = run_emulation(emu, case.x, case.weight, _bias(kind, case), None, 1e-6, 0)
    assert set(forward) == {"y"}
    both = run_emulation(emu, case.x, case.weight, _bias(kind, case), case.grad, 1e-6, 0)
    assert set(both) == ({"y", "dx", "dw", "db"} if kind == "layernorm" else {"y", "dx", "dw"})
    assert both["y"].dtype == case.x.dtype and both["y"].shape == case.x.shape
    assert both["dx"].shape == case.x.shape and both["dw"].shape == case.weight.shape
    assert np.array_equal(forward["y"].astype(np.float64), both["y"].astype(np.float64))
    assert np.array_equal(case.x, x0) and np.array_equal(case.weight, w0), "an emulation wrote into its inputs"


def test_run_emulation_without_a_weight_gives_no_weight_gradient() -> None:
    case = _case("float32", "normal", n=8, rows=2)
    outs = run_emulation(_emulation("rmsnorm", 0, "all-fp32"), case.x, None, None, case.grad, 1e-6, 0)
    assert set(outs) == {"y", "dx"}


def test_the_all_fp32_conventions_compute_the_norm_formulas_in_float64() -> None:
    """In float64 (its own compute dtype) all-fp32 is the textbook formula, to rounding."""
    case = _case("float64", "offset", n=61, rows=3)
    x, w, b = case.x, case.weight, case.bias
    rms = run_emulation(_emulation("rmsnorm", 0, "all-fp32"), x, w, None, None, 1e-6, 0)["y"]
    np.testing.assert_allclose(rms, x / np.sqrt(np.mean(x * x, -1, keepdims=True) + 1e-6) * w, rtol=1e-12)
    ln = run_emulation(_emulation("layernorm", 0, "all-fp32"), x, w, b, None, 1e-6, 0)["y"]
    d = x - x.mean(-1, keepdims=True)
    np.testing.assert_allclose(ln, d / np.sqrt(np.mean(d * d, -1, keepdims=True) + 1e-6) * w + b, rtol=1e-9)
    unit = run_emulation(_emulation("rmsnorm", 1, "all-fp32"), x, w, None, None, 1e-6, 1)["y"]
    np.testing.assert_allclose(unit, rms / w * (1 + w), rtol=1e-12)  # Gemma: 1 + w


def test_a_missing_upcast_is_not_finite_where_fp16_squares_underflow() -> None:
    """Tiny float16 rows square to 0 in float16 and eps = 1e-10 rounds to 0 there: rsqrt(0) is inf."""
    case = _case("float16", "tiny", n=64, rows=4, eps=1e-10)
    right, wrong = (
        run_emulation(_emulation("rmsnorm", 0, name), case.x, case.weight, None, None, 1e-10, 0)["y"]
        for name in ("all-fp32", "missing fp32 upcast")
    )
    assert np.all(np.isfinite(right.astype(np.float64)))
    assert not np.any(np.isfinite(wrong.astype(np.float64)))


# -- diagnose ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, dtype, regime, eps, offset, output, bug",
    [
        ("rmsnorm", "bfloat16", "normal", 1e-6, 0, "y", "missing fp32 upcast"),
        ("rmsnorm", "float16", "tiny", 1e-6, 0, "y", "missing fp32 upcast"),
        ("layernorm", "float32", "offset", 1e-6, 0, "y", "one-pass variance"),
        ("layernorm", "float16", "offset", 1e-6, 0, "y", "one-pass variance"),
        ("layernorm", "float16", "normal", 1e-6, 0, "y", "unbiased variance"),
        ("rmsnorm", "float16", "eps_dominant", 1e-2, 0, "y", "eps outside sqrt"),
        ("rmsnorm", "bfloat16", "normal", 1e-6, 0, "y", "truncating cast"),
        ("rmsnorm", "bfloat16", "normal", 1e-6, 1, "y", "weight offset in low precision"),
        ("layernorm", "bfloat16", "normal", 1e-6, 1, "y", "weight offset in low precision"),
        ("rmsnorm", "float32", "normal", 1e-6, 0, "y", "low-precision statistic (bf16)"),
        ("rmsnorm", "float64", "normal", 1e-6, 0, "y", "float64 computed in float32"),
        ("layernorm", "float64", "normal", 1e-6, 0, "y", "float64 computed in float32"),
        ("rmsnorm", "float32", "normal", 1e-6, 0, "dx", "wrong gradient (detached statistic)"),
        ("layernorm", "float32", "normal", 1e-6, 0, "dx", "wrong gradient (detached mean)"),
    ],
)
def test_the_output_of_a_bug_emulation_names_that_bug(
    kind: str, dtype: str, regime: str, eps: float, offset: int, output: str, bug: str
) -> None:
    case = _case(dtype, regime, eps=eps, offset=offset)
    fmt = resolve_format(dtype)
    grad = case.grad if output != "y" else None
    got = run_emulation(_emulation(kind, offset, bug), case.x, case.weight, _bias(kind, case), grad, eps, offset)
    d = _diagnose(kind, output, got[output], fmt, case, eps=eps, offset=offset)
    assert d.bug == bug, d.evidence
    assert f"reproduces '{bug}'" in d.evidence and "100%" in d.evidence
    assert d.matches[0].name == bug and not d.matches[0].correct and d.matches[0].agreement == 1.0


def test_a_weight_gradient_summed_in_bfloat16_is_named_on_its_dw() -> None:
    case = _case("bfloat16", "normal", rows=64)
    emu = _emulation("rmsnorm", 0, "low-precision dW accumulator")
    dw = run_emulation(emu, case.x, case.weight, None, case.grad, 1e-6, 0)["dw"]
    assert _diagnose("rmsnorm", "dw", dw, resolve_format("bfloat16"), case).bug == "low-precision dW accumulator"


@pytest.mark.parametrize("kind", KINDS)
def test_the_low_precision_accumulator_adds_the_rows_one_by_one_in_the_parameter_dtype(kind: str) -> None:
    # xhat is exactly 1 (each row constant, eps 0): dw (and db) sum the gradient's rows. In bfloat16, 1 + 2**-9 rounds
    # back to 1 at every step; the float32 sum of the five rows rounded once would be 1 + 2**-7.
    rows = np.array([1.0, 2.0**-9, 2.0**-9, 2.0**-9, 2.0**-9])
    x = np.ones((5, 4)) if kind == "rmsnorm" else np.tile([1.0, -1.0], (5, 2))
    grad = np.repeat(rows[:, None], 4, axis=1) * (1.0 if kind == "rmsnorm" else np.sign(x))
    x, grad = (round_floats(a, resolve_format("bfloat16")) for a in (x, grad))
    weight = round_floats(np.ones(4), resolve_format("bfloat16"))
    bias = weight * 0 if kind == "layernorm" else None
    got = run_emulation(_emulation(kind, 0, "low-precision dW accumulator"), x, weight, bias, grad, 0.0, 0)
    assert got["dw"].tolist() == [1.0] * 4
    if kind == "layernorm":  # db sums the gradient itself: +-(1, 2**-9, ...) by column
        assert got["db"].tolist() == [1.0, -1.0, 1.0, -1.0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype, regime", [("bfloat16", "normal"), ("float16", "offset"), ("float32", "offset")])
def test_the_output_of_a_correct_convention_names_no_bug(kind: str, dtype: str, regime: str) -> None:
    case = _case(dtype, regime)
    fmt = resolve_format(dtype)
    for emu in (e for e in emulations_for(kind, 0) if e.correct):
        got = run_emulation(emu, case.x, case.weight, _bias(kind, case), None, 1e-6, 0)["y"]
        d = _diagnose(kind, "y", got, fmt, case)
        assert d.bug is None, (emu.name, d.evidence)
        assert d.evidence.startswith("no known bug class matches better than a correct convention")
        assert d.matches[0].correct and d.matches[0].agreement == 1.0, (emu.name, d.matches[0])


def test_bugs_that_round_to_the_input_dtype_are_not_tried_on_float32_input() -> None:
    case = _case("float32", "normal")
    y = run_emulation(_emulation("rmsnorm", 0, "all-fp32"), case.x, case.weight, None, None, 1e-6, 0)["y"]
    tried = {m.name for m in _diagnose("rmsnorm", "y", y, resolve_format("float32"), case).matches}
    skipped = {e.name for e in emulations_for("rmsnorm", 0) if e.rounds_to == "input"}
    assert skipped and not skipped & tried
    assert "low-precision statistic (bf16)" in tried and "all-fp32" in tried


def test_matches_are_sorted_best_first_and_score_agreement_before_distance() -> None:
    case = _case("bfloat16", "normal")
    y = run_emulation(_emulation("rmsnorm", 0, "missing fp32 upcast"), case.x, case.weight, None, None, 1e-6, 0)["y"]
    matches = _diagnose("rmsnorm", "y", y, resolve_format("bfloat16"), case).matches
    scores = [m.score for m in matches]
    assert scores == sorted(scores, reverse=True) and len(matches) > 10
    far = Match("a", False, "", agreement=0.9, close=0.9, mean_distance=100.0)
    near = Match("b", False, "", agreement=0.8, close=1.0, mean_distance=0.1)
    assert far.score > near.score
    assert Match("c", False, "", 0.8, 1.0, 0.5).score < near.score  # then the nearer one


def test_a_bug_reproduced_on_fewer_than_min_agreement_of_the_output_is_not_named() -> None:
    """Moving 60% of a bug's output by 4 ulps leaves 40% bit-identical, below MIN_AGREEMENT (0.5)."""
    case = _case("bfloat16", "normal")
    fmt = resolve_format("bfloat16")
    bug = _emulation("rmsnorm", 0, "missing fp32 upcast")
    y = run_emulation(bug, case.x, case.weight, None, None, 1e-6, 0)["y"].astype(np.float64)
    assert _diagnose("rmsnorm", "y", round_floats(y, fmt), fmt, case).bug == bug.name  # unperturbed: named
    moved = np.random.default_rng(1).random(y.shape) < 0.6
    ulps = np.ldexp(1.0, np.frexp(y)[1] - fmt.precision)
    got = round_floats(np.where(moved, y + 4 * ulps * np.sign(y), y), fmt)
    assert MIN_AGREEMENT == 0.5
    d = _diagnose("rmsnorm", "y", got, fmt, case)
    top = next(m for m in d.matches if m.name == bug.name)
    assert top.agreement < MIN_AGREEMENT and top.close < MIN_AGREEMENT
    assert d.bug is None, d.evidence


def test_two_bug_classes_giving_the_same_numbers_single_out_neither() -> None:
    """On huge bfloat16 rows a missing upcast and rstd stored in bfloat16 round alike: no one class is named."""
    case = _case("bfloat16", "huge", n=5, rows=2)
    fmt = resolve_format("bfloat16")
    y = run_emulation(_emulation("rmsnorm", 0, "missing fp32 upcast"), case.x, case.weight, None, None, 1e-6, 0)["y"]
    d = _diagnose("rmsnorm", "y", y, fmt, case)
    assert d.bug is None
    assert "reproduce y equally well" in d.evidence and "no one bug class is singled out" in d.evidence
    assert "'missing fp32 upcast'" in d.evidence and "'low-precision statistic'" in d.evidence


def test_all_nan_outputs_on_zero_rows_name_no_bug() -> None:
    """With eps = 0 a zero row is 0/0 for every convention and bug class alike: nothing is singled out."""
    case = _case("bfloat16", "zero", n=16, rows=2)
    fmt = resolve_format("bfloat16")
    y = run_emulation(_emulation("rmsnorm", 0, "missing fp32 upcast"), case.x, case.weight, None, None, 0.0, 0)["y"]
    assert np.all(np.isnan(y.astype(np.float64)))
    assert _diagnose("rmsnorm", "y", y, fmt, case, eps=0.0).bug is None


def test_an_output_of_the_wrong_shape_matches_nothing() -> None:
    case = _case("bfloat16", "normal")
    y = run_emulation(_emulation("rmsnorm", 0, "missing fp32 upcast"), case.x, case.weight, None, None, 1e-6, 0)["y"]
    d = _diagnose("rmsnorm", "y", y[:, :-1], resolve_format("bfloat16"), case)
    assert d.bug is None
    assert all(m.agreement == 0.0 and m.close == 0.0 and m.mean_distance == float("inf") for m in d.matches)


def test_an_output_no_emulation_has_is_skipped() -> None:
    """Asked for db of an RMSNorm (no bias): no emulation has one, so nothing is matched."""
    case = _case("float32", "normal", n=8, rows=2)
    d = _diagnose("rmsnorm", "db", np.zeros(8, np.float32), resolve_format("float32"), case)
    assert d.bug is None and d.matches == ()
    assert "closest: none" in d.evidence


# -- convention_match and same_class -----------------------------------------


def test_convention_match_scores_every_correct_convention_and_no_bug() -> None:
    case = _case("bfloat16", "normal")
    fmt = resolve_format("bfloat16")
    llama = run_emulation(_emulation("rmsnorm", 0, "llama"), case.x, case.weight, None, None, 1e-6, 0)["y"]
    got = convention_match("rmsnorm", 0, llama, fmt, x=case.x, weight=case.weight, bias=None, eps=1e-6)
    assert set(got) == {e.name for e in emulations_for("rmsnorm", 0) if e.correct}
    assert got["llama"] == 1.0 and got["all-fp32"] < 1.0  # llama multiplies by w after its cast
    assert all(0.0 <= v <= 1.0 for v in got.values())


def test_same_class_joins_a_bug_with_its_variants_only() -> None:
    assert same_class("low-precision statistic", "low-precision statistic (bf16)")
    assert same_class("low-precision statistic (bf16)", "low-precision statistic")
    assert same_class("one-pass variance", "one-pass variance")
    assert not same_class("low-precision statistic (bf16)", "low-precision statistic (fp16)")
    assert not same_class("missing fp32 upcast", "eps outside sqrt")
