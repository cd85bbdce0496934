"""Unit tests of normcheck.strategies: each regime is what its name promises, values are the format's own,
shapes and flags are as asked, and the hypothesis strategies draw what they say.

No torch and no audit: numpy only. The residual regimes are tested in test_fused_residual.py.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normcheck.strategies import (
    HIDDEN_SIZES,
    REGIMES,
    RESIDUAL_REGIMES,
    WEIGHT_REGIMES,
    NormInput,
    Source,
    compute_format,
    exponent_range,
    floats,
    make_input,
    make_residual,
    make_rows,
    make_weights,
    norm_inputs,
    rows,
    weights,
)
from oracles import FloatFormat, resolve_format, round_floats

DTYPES = ("float16", "bfloat16", "float32", "float64")
SIZES = (1, 3, 61, 64, 257)
FEW = settings(max_examples=15, deadline=None)


def _src(seed: int = 0) -> Source:
    return Source(rng=np.random.default_rng(seed))


def _rows(dtype: str, regime: str, n: int = 64, *, eps: float = 1e-6, count: int = 3, seed: int = 0) -> np.ndarray:
    """Rows of one regime as float64 (exact: every format here widens to float64 exactly)."""
    x = make_rows(_src(seed), resolve_format(dtype), n, regime, eps, count)
    assert x.dtype == resolve_format(dtype).dtype and x.shape == (count, n)
    return x.astype(np.float64)


def _representable(values: np.ndarray, fmt: FloatFormat) -> bool:
    """Whether every value survives a round trip through ``fmt`` unchanged."""
    v = np.asarray(values, np.float64)
    return bool(np.array_equal(round_floats(v, fmt).astype(np.float64), v, equal_nan=True))


# -- exponent ranges and the compute format ----------------------------------


def test_the_compute_format_is_float32_below_float64() -> None:
    assert [compute_format(resolve_format(d)).name for d in DTYPES] == ["float32"] * 3 + ["float64"]


def test_float16_keeps_its_whole_range_for_tiny_and_huge_rows() -> None:
    fp16 = resolve_format("float16")
    assert exponent_range(fp16, 64, "tiny")[0] == fp16.emin - fp16.precision + 1  # the smallest subnormal
    assert exponent_range(fp16, 64, "huge")[1] == fp16.emax
    assert exponent_range(fp16, 64, "normal") == (-3, 2)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
def test_wide_formats_keep_tiny_and_huge_rows_where_powers_of_the_mean_square_fit(dtype: str) -> None:
    fmt = resolve_format(dtype)
    comp = compute_format(fmt)
    lo, _ = exponent_range(fmt, 64, "tiny")
    assert 4 * lo >= comp.emin  # (x**2)**2 stays normal in the compute format
    for n in (1, 64, 65537):
        _, hi = exponent_range(fmt, n, "huge")
        assert 4 * (hi + 1) + 2 * math.log2(n) < comp.emax  # and the square of n * x**2 stays finite
    assert exponent_range(fmt, 65537, "huge")[1] < exponent_range(fmt, 3, "huge")[1]  # longer rows, smaller


# -- regimes -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("regime", REGIMES)
def test_every_regime_gives_values_of_the_format_with_squares_in_the_compute_range(dtype: str, regime: str) -> None:
    fmt = resolve_format(dtype)
    comp = compute_format(fmt)
    for n in SIZES:
        for seed in range(3):
            x = _rows(dtype, regime, n, seed=seed)
            assert _representable(x, fmt), (regime, n)
            assert np.all(np.isfinite(x))
            ms = np.mean(x * x, -1)
            if regime == "zero" or (regime == "zero_mean" and n == 1):
                assert np.all(x == 0)
                continue
            assert np.all(ms**2 >= 2.0**comp.emin) and np.all(ms**2 < float(comp.max_finite)), (regime, n, ms)


def test_tiny_float16_rows_square_to_zero_in_float16() -> None:
    x = make_rows(_src(), resolve_format("float16"), 64, "tiny", count=4)
    assert np.all(x != 0) and np.all(x * x == 0)  # the missing upcast's trap
    assert np.all((x.astype(np.float32) ** 2) > 0)  # fp32 holds them


def test_huge_float16_rows_square_past_the_largest_float16() -> None:
    x = make_rows(_src(), resolve_format("float16"), 64, "huge", count=4)
    with np.errstate(over="ignore"):
        assert np.all(np.isinf(x * x))
    assert np.all(np.isfinite(np.sum(x.astype(np.float32) ** 2, -1)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_and_huge_rows_sit_in_their_exponent_ranges(dtype: str) -> None:
    fmt = resolve_format(dtype)
    for regime in ("tiny", "huge", "normal"):
        lo, hi = exponent_range(fmt, 64, regime)
        a = np.abs(_rows(dtype, regime))
        assert np.all(a >= 2.0**lo) and np.all(a <= 2.0 ** (hi + 1)), regime


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [2, 3, 61, 64])
def test_zero_mean_rows_sum_to_exactly_zero(dtype: str, n: int) -> None:
    x = _rows(dtype, "zero_mean", n)
    assert all(math.fsum(row) == 0.0 for row in x)
    assert np.all(np.abs(x).max(-1) > 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_offset_rows_have_a_mean_far_larger_than_their_spread(dtype: str) -> None:
    for seed in range(5):
        x = _rows(dtype, "offset", 61, seed=seed)
        mean, std = np.abs(x.mean(-1)), x.std(-1)
        assert np.all(mean >= 4) and np.all(mean > 10 * std), (seed, mean, std)  # 2**k +- 8 ulps, k >= 3
        assert np.all(np.sign(x) == np.sign(x[:, :1]))  # one sign: the offset dominates every element


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [1e-2, 1e-6])
def test_eps_dominant_rows_have_a_mean_square_below_eps(dtype: str, eps: float) -> None:
    for seed in range(5):
        ms = np.mean(_rows(dtype, "eps_dominant", 64, eps=eps, seed=seed) ** 2, -1)
        assert np.all(ms < eps) and np.all(ms > 0), ms / eps


def test_eps_dominant_float16_rows_stop_where_their_squares_would_leave_fp32() -> None:
    """With eps far below what float16 squares can reach, the rows stay at a floor instead of underflowing."""
    fp16 = resolve_format("float16")
    floor = 2.0 ** (2 * exponent_range(fp16, 64, "tiny")[0] + 12)
    x = _rows("float16", "eps_dominant", 64, eps=1e-30)
    assert np.all(np.abs(x).max(-1) >= math.sqrt(floor) * 2.0**-6)
    assert np.all(np.abs(x) <= 2 * math.sqrt(floor))


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_rows_repeat_one_value_and_near_constant_ones_stay_within_an_ulp_or_two(dtype: str) -> None:
    fmt = resolve_format(dtype)
    const = _rows(dtype, "constant", 61)
    assert np.all(const == const[:, :1]) and np.all(const != 0)
    near = _rows(dtype, "near_constant", 61)
    ulp = np.ldexp(1.0, np.frexp(near[:, 0])[1] - fmt.precision)  # one ulp of the row's value
    assert np.all(near.max(-1) - near.min(-1) <= 2 * ulp)
    assert np.any(near.max(-1) > near.min(-1)), "near-constant rows with no noise at all"


def test_zero_one_hot_and_outlier_rows() -> None:
    fp16 = resolve_format("float16")
    assert np.all(_rows("float16", "zero") == 0)
    one_hot = _rows("float16", "one_hot")
    assert np.all(one_hot[:, 0] != 0) and np.all(one_hot[:, 1:] == 0)
    for seed in range(5):
        a = np.abs(_rows("float16", "outlier", seed=seed))
        assert np.all(a.max(-1) >= 100 * np.median(a, -1)), seed
        assert np.all(a.max(-1) <= 2.0 ** exponent_range(fp16, 64, "huge")[1])  # clipped inside the format


def test_an_unknown_regime_is_a_value_error_naming_the_regimes() -> None:
    with pytest.raises(ValueError, match=r"unknown regime 'spiky'.*normal, tiny"):
        make_rows(_src(), resolve_format("float16"), 8, "spiky")
    x = make_rows(_src(), resolve_format("float16"), 8, "normal")
    with pytest.raises(ValueError, match="unknown residual regime 'huge'"):
        make_residual(_src(), resolve_format("float16"), x, "huge")


def test_the_same_seed_gives_the_same_rows_and_another_seed_others() -> None:
    a, b, c = (_rows("bfloat16", "normal", seed=s) for s in (3, 3, 4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# -- floats and Source -------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_floats_draw_values_of_the_format_in_their_binades_subnormals_included(dtype: str) -> None:
    fmt = resolve_format(dtype)
    lowest = fmt.emin - fmt.precision + 1
    for lo, hi in [(-3, 2), (lowest, lowest + 4), (fmt.emax - 3, fmt.emax - 1)]:
        v = floats(_src(), fmt, 500, lo, hi)
        assert _representable(v, fmt) and np.all(np.isfinite(v)), (lo, hi)
        # a subnormal's last bit may round up to 2**(hi + 1)
        assert np.all(np.abs(v) >= 2.0**lo) and np.all(np.abs(v) <= 2.0 ** (hi + 1)), (lo, hi)
        assert np.any(v < 0) and np.any(v > 0)


def test_a_numpy_source_draws_inclusive_bounds_and_is_its_own_derived_source() -> None:
    src = _src()
    drawn = {src.integer(0, 2) for _ in range(200)}
    assert drawn == {0, 1, 2}
    many = src.integers(-1, 1, 1000)
    assert set(many.tolist()) == {-1, 0, 1}
    assert src.derived(np.ones(3)) is src
    assert src.choice(("a",)) == "a"


@given(st.data())
@FEW
def test_a_hypothesis_source_derives_a_source_that_depends_on_the_data(data: st.DataObject) -> None:
    src = Source(data.draw)
    x = np.arange(4.0)
    one, two, other = (src.derived(d).integers(0, 2**30, 4) for d in (x, x, x + 1))
    assert np.array_equal(one, two) and not np.array_equal(one, other)
    exps, mants, signs = src.float_parts(-3, 2, 11, 8)
    assert np.all((exps >= -3) & (exps <= 2)) and np.all((mants >= 0) & (mants < 2**10))
    assert set(signs.tolist()) <= {-1.0, 1.0}


# -- weights -----------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 1])
def test_each_weight_regime_scales_as_its_name_says(offset: int) -> None:
    fmt = resolve_format("bfloat16")
    for regime in WEIGHT_REGIMES:
        w, got = make_weights(_src(), fmt, 256, offset, regime)
        w = w.astype(np.float64)
        scale = w + offset  # what the norm multiplies by
        assert got == regime and w.shape == (256,) and _representable(w, fmt)
        if regime == "normal":
            assert np.all(np.abs(scale - 1) < (0.5 if offset else 1))  # around 1 either way
        elif regime == "near_zero":
            assert np.all(np.abs(w) < 2.0**-7)
        elif regime == "negative":
            assert np.all(w < 0) and (offset == 1 or np.all(scale < -1))
        elif regime == "near_minus_one":
            assert np.all(np.abs(w + 1) <= 2.0**-5)


def test_with_offset_one_normal_weights_are_small_and_one_plus_w_is_near_one() -> None:
    w, _ = make_weights(_src(), resolve_format("float32"), 512, offset=1, regime="normal")
    assert np.all(np.abs(w) < 0.5) and np.any(w < 0) and np.any(w > 0)
    w0, _ = make_weights(_src(), resolve_format("float32"), 512, offset=0, regime="normal")
    assert np.all(w0 > 0) and abs(float(np.mean(w0)) - 1) < 0.25


def test_a_weight_regime_is_drawn_when_none_is_given() -> None:
    src = _src()
    assert {make_weights(src, resolve_format("float16"), 4)[1] for _ in range(100)} == set(WEIGHT_REGIMES)


# -- make_input: shapes and flags ---------------------------------------------


def _input(rows_: int = 4, n: int = 16, **kw: Any) -> NormInput:
    return make_input(_src(), resolve_format("float16"), n=n, rows=rows_, regime="normal", **kw)


def test_make_input_gives_x_parameters_and_gradient_of_matching_shapes_and_dtypes() -> None:
    case = _input()
    assert case.x.shape == case.grad.shape == (4, 16) and case.n == 16
    assert case.weight.shape == case.bias.shape == (16,)
    assert {a.dtype for a in (case.x, case.weight, case.bias, case.grad)} == {np.dtype(np.float16)}
    assert case.regime == "normal" and case.weight_regime in WEIGHT_REGIMES and not case.strided
    assert case.residual is None and case.residual_regime is None
    assert not np.array_equal(case.grad, case.x)
    assert np.all(np.abs(case.bias.astype(np.float64)) < 1)  # 1 + w/2 - 1: small, of both signs


def test_batched_inputs_get_a_leading_batch_dimension_when_the_rows_split_in_two() -> None:
    assert _input(4, batched=True).x.shape == (2, 2, 16)
    assert _input(3, batched=True).x.shape == (3, 16)  # odd: not batched
    batched = _input(4, batched=True)
    assert batched.grad.shape == batched.x.shape


def test_leading_dimensions_replace_the_row_count() -> None:
    case = _input(99, leading=(2, 3, 5))
    assert case.x.shape == case.grad.shape == (2, 3, 5, 16)


def test_strided_is_kept_only_for_two_dimensional_inputs_of_several_rows() -> None:
    assert _input(4, strided=True).strided
    assert not _input(1, strided=True).strided
    assert not _input(4, strided=True, batched=True).strided  # three dimensions


def test_parameters_take_their_own_dtype_and_the_offset() -> None:
    case = _input(weight_dtype="float32", weight_offset=1, weight_regime="normal")
    assert case.x.dtype == np.float16 and case.weight.dtype == case.bias.dtype == np.float32
    assert case.weight_regime == "normal" and np.all(np.abs(case.weight) < 0.5)


def test_a_residual_regime_adds_a_residual_of_the_shape_and_dtype_of_x() -> None:
    case = _input(residual_regime="small")
    assert case.residual is not None and case.residual.shape == case.x.shape
    assert case.residual.dtype == case.x.dtype and case.residual_regime == "small"


# -- hypothesis strategies ---------------------------------------------------


@given(st.data())
@FEW
def test_rows_draws_rows_of_the_regime_in_the_dtype(data: st.DataObject) -> None:
    dtype = data.draw(st.sampled_from(DTYPES))
    regime = data.draw(st.sampled_from(REGIMES))
    n, count = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 3))
    x = data.draw(rows(dtype=dtype, n=n, regime=regime, count=count))
    fmt = resolve_format(dtype)
    assert x.shape == (count, n) and x.dtype == fmt.dtype and _representable(x, fmt)
    if regime == "constant":
        assert np.all(x == x[:, :1])
    if regime == "zero":
        assert not np.any(x)


@given(weights(dtype="bfloat16", n=32, offset=1))
@FEW
def test_weights_draws_a_vector_and_its_regime(drawn: tuple[np.ndarray, str]) -> None:
    w, regime = drawn
    assert regime in WEIGHT_REGIMES and w.shape == (32,) and w.dtype == resolve_format("bfloat16").dtype
    if regime == "normal":
        assert np.all(np.abs(w.astype(np.float64)) < 0.5)  # offset 1: w small, 1 + w near one


@given(norm_inputs(dtype="float16", hidden_sizes=[3, 8, 61], max_rows=3, regimes=("tiny", "offset", "zero")))
@FEW
def test_norm_inputs_draw_within_the_sizes_rows_and_regimes_asked(case: NormInput) -> None:
    assert case.n in (3, 8, 61) and case.regime in ("tiny", "offset", "zero")
    leading = case.x.shape[:-1]
    assert int(np.prod(leading)) <= 3 and len(leading) in (1, 2)
    assert case.x.dtype == np.float16 and _representable(case.x, resolve_format("float16"))
    assert case.grad.shape == case.x.shape and case.weight.shape == (case.n,)
    assert case.residual is None
    if case.strided:
        assert case.x.ndim == 2 and case.x.shape[0] > 1


@given(norm_inputs(dtype="bfloat16", hidden_sizes=[16], weight_dtype="float32", weight_offset=1, residual=True))
@FEW
def test_norm_inputs_with_a_residual_and_float32_parameters(case: NormInput) -> None:
    assert case.residual is not None and case.residual.shape == case.x.shape
    assert case.residual_regime in RESIDUAL_REGIMES
    assert case.weight.dtype == np.float32 and case.x.dtype == resolve_format("bfloat16").dtype


def test_the_default_hidden_sizes_include_one_and_powers_of_two_with_their_neighbours() -> None:
    assert 1 in HIDDEN_SIZES and list(HIDDEN_SIZES) == sorted(set(HIDDEN_SIZES))
    for p in (256, 1024, 4096):
        assert {p - 1, p, p + 1} <= set(HIDDEN_SIZES)


def test_the_search_draws_the_same_inputs_whatever_local_code_is_loaded(tmp_path, monkeypatch):
    """Hypothesis draws constants from the source of loaded local modules; normcheck's search must not: the same
    seed gives the same inputs after a module full of constants is imported."""
    import importlib

    from normcheck.engine.search import case_key, search
    from normcheck.strategies import norm_inputs

    def drawn() -> list[tuple]:
        keys: list[tuple] = []

        def attempt(case, keep):
            keys.append(case_key(case))
            return None, []

        strategy = norm_inputs(dtype="bfloat16")
        search(strategy, examples=40, seed_value=0, attempt=attempt, replay=lambda *a: [], progress=lambda i: None)
        return keys

    before = drawn()
    constants = ", ".join(str(v) for v in [*range(300), *(2**k - 1 for k in range(8, 33))])
    floats = ", ".join(f"{v!r}" for v in (1e-3, 0.37, 1.5, 3.25, 6.5e4, 1e-7))
    (tmp_path / "many_constants_xyz.py").write_text(f"INTS = ({constants})\nFLOATS = ({floats})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("many_constants_xyz")
    assert drawn() == before
