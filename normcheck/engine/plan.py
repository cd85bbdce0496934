"""The inputs every audit runs before the search: every regime at small, odd and long hidden sizes,
every weight regime, batched, strided and many-row inputs, the user's shapes, and the statistics' input."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from normcheck.quantization import Scheme
from normcheck.strategies import (
    REGIMES,
    RESIDUAL_REGIMES,
    WEIGHT_REGIMES,
    NormInput,
    Source,
    make_input,
    make_residual,
)
from oracles import FloatFormat, round_floats


def _element_values(element: FloatFormat) -> np.ndarray:
    """Every finite value of a quantized element format (int8: its integers), float64."""
    if np.dtype(element.dtype).kind == "i":
        return np.arange(-int(element.max_finite), int(element.max_finite) + 1, dtype=np.float64)
    codes = np.arange(256, dtype=np.uint8).view(element.dtype).astype(np.float64)
    return codes[np.isfinite(codes)]


#: (hidden size, rows) of the structured cases of every regime: small, odd, and long rows past the block sizes
#: at which kernels switch to multi-block paths (8192, 16384); random rows also at LONGEST.
STRUCTURED_SIZES = ((3, 2), (61, 3), (4097, 1), (16385, 1))
LONGEST = 65537
#: Many short rows: kernels switch to a block kernel (several rows per program) at shapes like this
#: (Liger-Kernel's RMSNorm: rows >= 32768 at hidden sizes <= 256), so the default audit sends one.
MANY_ROWS = (32768, 16)
#: The regimes an exact ``--shape`` is audited in: random rows, and rows whose mean hides the signal.
SHAPE_REGIMES = ("normal", "offset")
#: Rows of a many-row input's hidden size run just before it: the calls before an input predict its time per
#: row (:mod:`normcheck.timing`), and from calls of a few rows that is the fixed cost of a call (a millisecond
#: or more through the worker). On an H200 that predicted Liger-Kernel's 32768x256 block-kernel input at 80 s
#: and 32768x16 at 23 s: neither was run, in an audit whose kernels took about a second per call in all.
PACE_ROWS = 512


@dataclass(frozen=True)
class Plan:
    """What the deterministic inputs of an audit depend on."""

    seed: int
    offset: int  #: the weight offset (Gemma's 1 + w)
    shapes: tuple[tuple[int, ...], ...] = ()  #: the user's own shapes: they pick the kernel's code path
    fused: bool = False  #: a fused residual-add: every input gets a residual
    multiple: int = 1  #: hidden sizes are multiples of this (a quantized norm's group of channels)

    def fit(self, n: int) -> int:
        """The hidden size ``n`` rounded up to a multiple of :attr:`multiple`."""
        return -(-n // self.multiple) * self.multiple

    def partial_block_case(self, fmt: FloatFormat, eps: float) -> NormInput | None:
        """Rows two and a half blocks long (a quantized norm's last block shorter: not a multiple of
        :attr:`multiple`), from their own stream; None without blocks."""
        if self.multiple == 1:
            return None
        src = Source(rng=np.random.default_rng(self.seed + 3))
        n = 2 * self.multiple + max(1, self.multiple // 2)
        return make_input(src, fmt, n=n, rows=4, regime="normal", eps=eps, weight_offset=self.offset)

    def ties_case(self, fmt: FloatFormat, scheme: Scheme) -> NormInput | None:
        """Rows whose values, over ``scheme``'s dynamic float32 scale of each block, land exactly on the
        midpoints between neighbouring values of its element format (ties, decided by rounding half to even):
        x is +-1 (so every y shares one rstd, which the scale cancels) and the weights are the midpoints over
        ``2^k`` (``2^k`` the largest power of two up to the largest value, which each block's first weight
        takes, so that it is the block's maximum); a fused residual-add's residual is zero. None for static,
        power-of-two and E4M3 scales (they move the quotients off the midpoints) and where the weights do not
        fit ``fmt`` exactly."""
        if scheme.static or scheme.rule is not None or scheme.scale_format is not None:
            return None
        top = scheme.largest
        values = np.unique(np.abs(_element_values(scheme.element)))
        values = values[(values >= top / 32) & (values <= top)]
        midpoints = (values[:-1] + values[1:]) / 2
        n = self.fit(64)
        block = scheme.block_size(n) or n
        unit = 2.0 ** math.floor(math.log2(top))
        scale = np.resize(midpoints / unit, n)
        scale[::block] = top / unit
        signs = np.resize([1.0, -1.0, -1.0, 1.0], n)  # (even n: the rows have mean zero, for LayerNorm too)
        weight = scale * signs - self.offset
        if not np.array_equal(round_floats(weight, fmt), weight):
            return None
        x = np.resize([1.0, -1.0], (4, n)) * np.array([[1.0], [-1.0], [1.0], [-1.0]])
        zeros, dtype = np.zeros(n), fmt.dtype
        case = NormInput(x.astype(dtype), weight.astype(dtype), zeros.astype(dtype), x.astype(dtype), "zero_mean")
        if self.fused:  # a zero residual: the sum is x, exactly
            return replace(case, residual=np.zeros_like(case.x), residual_regime="small")
        return case

    def structured_cases(self, fmt: FloatFormat, eps: float) -> list[NormInput]:
        """Deterministic cases first: every regime at small, odd and long hidden sizes, every weight regime."""
        src = Source(rng=np.random.default_rng(self.seed))
        offset = self.offset
        cases = []
        # Short rows first: an implementation that dies on long rows has worked many times before it does.
        for n, count in (*STRUCTURED_SIZES, (LONGEST, 1)):
            for regime in REGIMES if n != LONGEST else ("normal",):
                size = self.fit(n)
                cases.append(
                    make_input(
                        src, fmt, n=size, rows=count, regime=regime, eps=eps, weight_dtype=fmt, weight_offset=offset
                    )
                )
        for wreg in WEIGHT_REGIMES:
            cases.append(
                make_input(
                    src,
                    fmt,
                    n=self.fit(64),
                    rows=4,
                    regime="normal",
                    eps=eps,
                    weight_dtype=fmt,
                    weight_offset=offset,
                    weight_regime=wreg,
                )
            )
        fit = self.fit
        cases.append(make_input(src, fmt, n=fit(1), rows=4, regime="normal", eps=eps, weight_offset=offset))
        cases.append(
            make_input(src, fmt, n=fit(128), rows=4, regime="normal", eps=eps, weight_offset=offset, batched=True)
        )
        cases.append(
            make_input(src, fmt, n=fit(256), rows=4, regime="normal", eps=eps, weight_offset=offset, strided=True)
        )
        # Drawn from their own stream: the other inputs are the same with or without them.
        pacing = Source(rng=np.random.default_rng(self.seed + 2))

        def pace(rows: int, n: int) -> list[NormInput]:
            """PACE_ROWS rows of ``n`` when an input of ``rows`` rows follows, to predict its time from."""
            if rows <= PACE_ROWS:
                return []
            return [make_input(pacing, fmt, n=n, rows=PACE_ROWS, regime="normal", eps=eps, weight_offset=offset)]

        rows, n = MANY_ROWS
        cases += pace(rows, fit(n))
        cases.append(make_input(src, fmt, n=fit(n), rows=rows, regime="normal", eps=eps, weight_offset=offset))
        for shape in self.shapes:
            cases += pace(math.prod(shape[:-1]), shape[-1])
            for regime in SHAPE_REGIMES:
                cases.append(
                    make_input(
                        src, fmt, n=shape[-1], rows=1, regime=regime, eps=eps, weight_offset=offset, leading=shape[:-1]
                    )
                )
        if self.fused:  # every case gets a residual, each regime of x with several; each also at n = 61 and 4097
            k = len(RESIDUAL_REGIMES)
            cases = [add_residual(src, fmt, c, RESIDUAL_REGIMES[(i + i // k) % k]) for i, c in enumerate(cases)]
            for reg in RESIDUAL_REGIMES:
                for n, count in (STRUCTURED_SIZES[1], STRUCTURED_SIZES[2]):
                    plain = make_input(src, fmt, n=n, rows=count, regime="normal", eps=eps, weight_offset=offset)
                    cases.append(add_residual(src, fmt, plain, reg))
        return cases

    def aggregate_case(self, fmt: FloatFormat, eps: float) -> NormInput:
        """Many rows for the statistical checks (biased rounding, per-channel drift)."""
        src = Source(rng=np.random.default_rng(self.seed + 1))
        wreg = "near_zero" if self.offset else "normal"
        case = make_input(
            src, fmt, n=self.fit(64), rows=512, regime="normal", eps=eps, weight_offset=self.offset, weight_regime=wreg
        )
        return add_residual(src, fmt, case, "small") if self.fused else case


def add_residual(src: Source, fmt: FloatFormat, case: NormInput, regime: str) -> NormInput:
    """``case`` with a residual of ``regime`` beside its x (a fused residual-add's two inputs)."""
    x, residual = make_residual(src, fmt, case.x, regime)
    return replace(case, x=x, residual=residual, residual_regime=regime)


def row_count(case: NormInput) -> int:
    """How many rows of its hidden size the input holds (every leading dimension together)."""
    return case.x.size // case.n
