"""The quantization oracle against Fraction arithmetic over every value of each element format."""

from __future__ import annotations

from fractions import Fraction
from functools import cache
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from oracles import FLOAT32, FloatFormat, round_rational
from oracles.quantize import (
    ELEMENT_FORMATS,
    FLOAT4_E2M1FN,
    FLOAT8_E4M3FN,
    INT8,
    BlockMax,
    encode,
    per_element,
    power_of_two,
    power_of_two_scales,
    quantize,
    round_rational_saturating,
    round_to_format,
    rounding_range,
    scaled_max,
)

FORMATS = list(ELEMENT_FORMATS.values())


@cache
def table(fmt: FloatFormat) -> tuple[tuple[Fraction, bool], ...]:
    """Every finite value of ``fmt`` with whether its code is even, from the bit patterns (ml_dtypes) or the
    integers -127..127 for int8."""
    if fmt is INT8:
        return tuple((Fraction(v), v % 2 == 0) for v in range(-127, 128))
    bits = 4 if fmt is FLOAT4_E2M1FN else 8
    codes = np.arange(2**bits, dtype=np.uint8)
    values = codes.view(fmt.dtype).astype(np.float64)
    seen = {}
    for code, v in zip(codes.tolist(), values.tolist()):
        if np.isfinite(v) and Fraction(v) not in seen:
            seen[Fraction(v)] = code % 2 == 0
    return tuple(sorted(seen.items()))


def reference(q: Fraction, fmt: FloatFormat) -> Fraction:
    """Nearest value of the table, a tie to the even code, saturating past the ends."""
    best = min(table(fmt), key=lambda entry: (abs(entry[0] - q), not entry[1]))
    return best[0]


def midpoints(fmt: FloatFormat) -> list[Fraction]:
    values = [v for v, _ in table(fmt)]
    return [(a + b) / 2 for a, b in pairwise(values)]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_the_formats_largest_values_and_spacing(fmt):
    values = [v for v, _ in table(fmt)]
    assert values[-1] == fmt.max_finite and values[0] == -fmt.max_finite
    assert {"float8_e4m3fn": 448, "float8_e5m2": 57344, "float4_e2m1fn": 6, "int8": 127}[fmt.name] == values[-1]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_every_tie_and_its_neighbours_round_as_the_table_says(fmt):
    mids = midpoints(fmt)
    nudge = Fraction(1, 2**70)
    points = [m + d for m in mids for d in (-nudge, 0, nudge)]
    points += [fmt.max_finite * 2, -fmt.max_finite - 1, Fraction(0)]  # saturation, and zero
    for q in points:
        assert round_rational_saturating(q, fmt) == reference(q, fmt), q
    floats = np.array([float(m) for m in mids])  # the ties themselves are float64 values
    expected = [float(reference(m, fmt)) for m in mids]
    np.testing.assert_array_equal(round_to_format(floats, fmt), expected)


@settings(max_examples=300)
@given(st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from(FORMATS))
def test_float64_values_round_as_the_table_says(v, fmt):
    assert round_to_format([v], fmt)[0] == float(reference(Fraction(v), fmt))


def constant_rows(weights: np.ndarray) -> oracles.Exact:
    """``y = sign * weight`` exactly: RMSNorm of rows of +-1 with eps 0."""
    signs = np.where(np.arange(weights.size) % 3 == 0, -1.0, 1.0).astype(np.float32)
    return oracles.rms_norm(signs.reshape(1, -1), weights.astype(np.float32), eps=0.0)


def exact_values(y: oracles.Exact) -> list[Fraction]:
    out = []
    for i in range(int(np.prod(y.shape))):
        lo, hi = y.element(i).enclose(400)
        assert lo == hi
        out.append(lo)
    return out


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_quantize_rounds_exact_quotients_ties_subnormals_and_saturation(fmt):
    # With a power-of-two scale the quotients are the table's ties, its neighbours and values past its end.
    scale = 2.0**-3
    mids = midpoints(fmt)
    targets = [*mids, *(v for v, _ in table(fmt)), fmt.max_finite * 3, fmt.max_finite + 1]
    w = np.array([float(t) * scale for t in targets])
    assert (w.astype(np.float32) == w).all()  # exactly the intended quotients
    y = constant_rows(w)
    got = quantize(y, np.array([scale]), fmt)
    expected = [float(reference(v / Fraction(scale), fmt)) for v in exact_values(y)]
    np.testing.assert_array_equal(got.reshape(-1), expected)
    assert (encode(got, fmt).astype(np.float64) == got).all()


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(FORMATS),
    st.sampled_from([1, 3, 8, 16, 33]),
    st.sampled_from([0.0, 1e-6, 1e-2]),
)
def test_quantize_irrational_outputs_against_enclosures(seed, fmt, n, eps):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, n)).astype(np.float32)
    w = (rng.standard_normal(n) * 4).astype(np.float32)
    y = oracles.rms_norm(x, w, eps=eps)
    amax = BlockMax(y, n)
    scale = scaled_max(amax, 1 / Fraction(float(fmt.max_finite)))
    got = quantize(y, scale, fmt)
    for i in range(y.approx.size):
        s = Fraction(float(scale.reshape(-1)[i // n]))
        lo, hi = y.element(i).enclose(300)
        assert reference(lo / s, fmt) == reference(hi / s, fmt)
        assert got.flat[i] == float(reference(lo / s, fmt)), i


def fraction_max(values: list[Fraction], start: int, stop: int) -> Fraction:
    return max(abs(v) for v in values[start:stop])


@pytest.mark.parametrize("block", [4, 5, 16, None])
def test_block_maxima_and_their_scales_are_exact(block):
    rng = np.random.default_rng(7)
    w = rng.standard_normal(16).astype(np.float32) * 100
    w[8:12] = 0.0  # a zero block for block 4
    w[2] = -w[1]  # equal magnitudes of both signs
    y = constant_rows(w)
    values = exact_values(y)
    amax = BlockMax(y, block)
    width = 16 if block is None else block
    starts = list(range(0, 16, width))
    maxima = [fraction_max(values, s, s + width) for s in starts]
    assert [amax.exact(g).enclose(64)[0] for g in range(len(starts))] == maxima
    f32 = scaled_max(amax, Fraction(1, 448)).reshape(-1)
    assert f32.tolist() == [round_rational(m / 448, FLOAT32) for m in maxima]
    ceil = power_of_two_scales(amax, 448, "ceil").reshape(-1)
    ocp = power_of_two_scales(amax, 6, "ocp").reshape(-1)
    for m, c, o in zip(maxima, ceil.tolist(), ocp.tolist()):
        if m == 0:
            assert c == o == 2.0**-127  # an all-zero block: the smallest UE8M0 scale
            continue
        k = -127
        while Fraction(2) ** k < m / 448:  # the smallest power of two at least amax / 448
            k += 1
        assert c == 2.0**k
        e = 0
        while Fraction(2) ** (e + 1) <= m:
            e += 1
        while Fraction(2) ** e > m:
            e -= 1
        assert o == 2.0 ** (e - 2)  # OCP: floor(log2 amax) - emax(E2M1) = e - 2


def test_power_of_two_scales_at_exact_powers_of_two():
    # amax = 448 * 2**k exactly: the ceil rule gives 2**k, not 2**(k + 1).
    w = np.array([448.0 * 2**-4, 1.0, 448.0 * 2**3, -3.0], np.float32)
    y = constant_rows(w)
    assert power_of_two_scales(BlockMax(y, 2), 448, "ceil").tolist() == [[2.0**-4, 2.0**3]]
    assert power_of_two_scales(BlockMax(y, 2), 448, "ocp").tolist() == [[2.0**-4, 2.0**3]]


def fraction_power_of_two(m: Fraction, largest: int, rule: str) -> float:
    """The UE8M0 scale of ``m`` by ``rule``, by search over powers of two in Fraction arithmetic."""
    if m == 0:
        return 2.0**-127
    emax = 0
    while Fraction(2) ** (emax + 1) <= largest:
        emax += 1
    e = -127
    if rule == "ceil":
        while Fraction(2) ** e * largest < m:
            e += 1
    elif rule == "floor":
        while e < 127 and Fraction(2) ** (e + 1) * largest <= m:
            e += 1
    else:
        while e < 127 and Fraction(2) ** (e + 1 + emax) <= m:
            e += 1
    return 2.0 ** min(e, 127)


@pytest.mark.parametrize("rule", ["ceil", "ocp", "floor"])
@pytest.mark.parametrize("largest", [448, 6, 57344])
def test_power_of_two_is_exact_at_and_around_every_boundary(rule, largest):
    # Every boundary the rules have near 1 and far away: largest * 2**k and 2**k, and their float64 neighbours.
    points = [largest * 2.0**k for k in (-60, -3, 0, 5)] + [2.0**k for k in (-100, -1, 0, 3, 9)]
    m = np.array(sorted({p2 for p in points for p2 in (np.nextafter(p, 0), p, np.nextafter(p, np.inf))} | {0.0}))
    got = power_of_two(m, largest, rule)
    assert got.tolist() == [fraction_power_of_two(Fraction(v), largest, rule) for v in m.tolist()]


def test_zero_and_undefined_blocks():
    y = oracles.rms_norm(np.zeros((1, 8), np.float32), eps=1e-6)
    amax = BlockMax(y, 4)
    assert scaled_max(amax, Fraction(1, 448)).tolist() == [[0.0, 0.0]]
    assert power_of_two_scales(amax, 448, "ceil").tolist() == [[2.0**-127, 2.0**-127]]
    assert np.isnan(quantize(y, np.array([[0.0, 0.0]]), FLOAT8_E4M3FN)).all()  # no scale divides by zero
    assert (quantize(y, np.array([[1.0, 2.0**-20]]), FLOAT8_E4M3FN) == 0).all()
    nan_row = oracles.rms_norm(np.array([[1.0, np.nan, 2.0, 3.0]], np.float32))
    assert np.isnan(BlockMax(nan_row, 2).lo).all()


def test_a_global_multiplier_scales_exactly():
    # NVFP4's two levels: q = round(y * global / block_scale).
    w = np.array([1.5, 2.25, -0.375, 5.0], np.float32)
    y = constant_rows(w)
    got = quantize(y, np.array([[0.75, 2.0]]), FLOAT4_E2M1FN, multiplier=1.5)
    expected = [reference(v * Fraction(3, 2) / s, FLOAT4_E2M1FN) for v, s in zip(exact_values(y), [0.75] * 2 + [2] * 2)]
    assert got.reshape(-1).tolist() == [float(e) for e in expected]


def test_rounding_range_spans_the_neighbours_within_reach():
    # On a boundary (2.5) both neighbours are in reach: the range is widened, never narrowed.
    centers = np.array([2.4, 2.4, 2.5, 10.0])
    lo, hi = rounding_range(centers, np.array([0.0, 0.2, 0.0, 100.0]), FLOAT4_E2M1FN)
    assert lo.tolist() == [2.0, 2.0, 2.0, -6.0] and hi.tolist() == [2.0, 3.0, 3.0, 6.0]


def test_block_maxima_decided_exactly_where_the_fast_path_gives_no_bound():
    # Squares past float64's range: no float64 bound, so every element is a candidate.
    x = np.array([[1e300, -3e300, 2.5e300, 5e301, 7e300, -7.5e300]])
    y = oracles.rms_norm(x, eps=0.0)
    assert not np.isfinite(y.error_bound).any()
    amax = BlockMax(y, 3)
    for g, (start, stop) in enumerate([(0, 3), (3, 6)]):
        best = max(range(start, stop), key=lambda i: abs(y.element(i).enclose(200)[0]))
        lo, hi = amax.exact(g).enclose(200)
        assert (lo, hi) == tuple(sorted(abs(v) for v in y.element(best).enclose(200)))
    scales = scaled_max(amax, Fraction(1, 448)).reshape(-1)
    exact = [abs(Fraction(float(v))) for v in y.round("float64")[0, [1, 3]]]  # the block maxima, to 53 bits
    assert scales.tolist() == [round_rational(m / 448, FLOAT32) for m in exact]


@pytest.mark.parametrize("global_scale", [1.0, 2.0**-12, 3000.0])
def test_nvfp4_block_scales_are_the_e4m3_roundings_of_global_times_amax_over_6(global_scale):
    # A sixteenth of the usual global scale and below: subnormal E4M3 scales (or 0); far above: saturated at 448.
    rng = np.random.default_rng(11)
    w = (rng.standard_normal(64) * np.exp2(rng.integers(-8, 8, 64))).astype(np.float32)
    y = constant_rows(w)
    values = exact_values(y)
    got = scaled_max(BlockMax(y, 16), Fraction(global_scale) / 6, FLOAT8_E4M3FN).reshape(-1)
    maxima = [fraction_max(values, s, s + 16) for s in range(0, 64, 16)]
    expected = [float(reference(m * Fraction(global_scale) / 6, FLOAT8_E4M3FN)) for m in maxima]
    assert got.tolist() == expected


def test_block_scales_spread_over_a_shorter_last_block_only_when_its_size_is_given():
    scales = np.array([[1.0, 2.0, 4.0]])
    spread = per_element(scales, (1, 40), 16)
    assert spread.tolist() == [[1.0] * 16 + [2.0] * 16 + [4.0] * 8]
    assert per_element(scales, (1, 48)).tolist() == [[1.0] * 16 + [2.0] * 16 + [4.0] * 16]
    with pytest.raises(ValueError, match="the block size is needed"):  # 40 channels in 3 blocks: 14 to 19 each
        per_element(scales, (1, 40))
