"""Name the bug of a quantized norm: its values and scales against emulations of the correct kernels, of the
quantizer's bug classes, and of the norm's own bug classes seen through a correct quantizer.

A quantizer emulation is a :class:`Quantizer`: how it takes the block maximum, rounds, overflows, floors the
scale (or its UE8M0 rule), returns it, and uses a static scale. Each bug class changes one of these; they are
registered here, in the order the diagnosis prefers them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normcheck.diagnosis.diagnose import Diagnosis, Match, compare, name_bug
from normcheck.diagnosis.emulation import Emulation
from normcheck.diagnosis.emulations import emulations_for, rounds_here, run_emulation
from normcheck.quantization import FLOOR, Scheme
from normcheck.target.protocol import Run
from oracles import BFLOAT16, FLOAT32, round_floats
from oracles.quantize import per_element, power_of_two, round_to_format
from oracles.rounding import quantum_exponents


@dataclass(frozen=True)
class Quantizer:
    """One way of quantizing ``y``; the defaults are a correct kernel's."""

    amax_of: str = "y"  #: "y", "x" (the input) or "xhat" (the unweighted output)
    reciprocal: bool = False  #: multiply by largest / amax instead of dividing by the scale
    toward_zero: bool = False  #: round toward zero instead of to nearest even
    overflow: str = "saturate"  #: "saturate", "special" (NaN, or infinity where the format has one) or "wrap"
    floor: bool = True  #: raise the scale to FLOOR / largest (else an all-zero block divides by zero)
    returned: str = "used"  #: "used"; "bfloat16": the used one rounded; NVFP4 "unrounded": values by the float32 one
    static: str = "divide"  #: a static scale divided by, "multiply"-ed by, or "ignore"-d
    shift: int = 0  #: blocks' maxima taken over channels shifted by this many (misaligned blocks)
    pow2: str | None = None  #: a UE8M0 scale's rule ("ocp", "ceil", "floor"); None: the scheme's (OCP if either)
    global_scale: str = "multiply"  #: NVFP4's global scale multiplied by, "divide"-d by, or "ignore"-d


#: (name, description, whether correct, the y it quantizes: "fused" float32 or "unfused" in the input dtype,
#: quantizer), in the order the diagnosis prefers them.
QUANTIZERS: tuple[tuple[str, str, bool, str, Quantizer], ...] = (
    ("fused", "y in float32, divided by the float32 scale", True, "fused", Quantizer()),
    ("unfused", "y rounded to the input dtype, then quantized", True, "unfused", Quantizer()),
    ("reciprocal", "y in float32, times largest / amax", True, "fused", Quantizer(reciprocal=True)),
    ("amax of the input", "the scale from max |x| instead of max |y|", False, "fused", Quantizer(amax_of="x")),
    (
        "amax of the unweighted output",
        "the scale from max |xhat|, before the weight",
        False,
        "fused",
        Quantizer(amax_of="xhat"),
    ),
    (
        "rounds toward zero",
        "quotients truncated instead of rounded to nearest even",
        False,
        "fused",
        Quantizer(toward_zero=True),
    ),
    (
        "no saturation",
        "quotients past the largest value become NaN, infinity or wrap",
        False,
        "fused",
        Quantizer(overflow="special"),
    ),
    ("integer wrap", "int8 quotients past 127 wrap around", False, "fused", Quantizer(overflow="wrap")),
    ("no minimum scale", "an all-zero block gets scale 0 and NaN values", False, "fused", Quantizer(floor=False)),
    (
        "returned scale rounded",
        "values made with the float32 scale, the scale returned in bfloat16",
        False,
        "fused",
        Quantizer(returned="bfloat16"),
    ),
    (
        "block scale used unrounded",
        "values made with the float32 block scale, the scale returned in E4M3",
        False,
        "fused",
        Quantizer(returned="unrounded"),
    ),
    (
        "global scale ignored",
        "the block scales and values made without the global scale",
        False,
        "fused",
        Quantizer(global_scale="ignore"),
    ),
    (
        "global scale inverted",
        "the global scale divided by instead of multiplied",
        False,
        "fused",
        Quantizer(global_scale="divide"),
    ),
    ("static scale multiplied", "q = y * scale instead of y / scale", False, "fused", Quantizer(static="multiply")),
    ("static scale ignored", "q = y, as if the scale were 1", False, "fused", Quantizer(static="ignore")),
    ("misaligned blocks", "each block's maximum taken one channel off", False, "fused", Quantizer(shift=1)),
    # UE8M0 scales only (MX formats): the two rules (correct where the scheme allows them), and rounding down.
    ("UE8M0 scale by the OCP rule", "2^(floor(log2 amax) - emax)", True, "fused", Quantizer(pow2="ocp")),
    ("UE8M0 scale rounded up", "2^ceil(log2(amax / largest))", True, "fused", Quantizer(pow2="ceil")),
    (
        "UE8M0 scale rounded down",
        "2^floor(log2(amax / largest)): the block's largest values overflow",
        False,
        "fused",
        Quantizer(pow2="floor"),
    ),
)


def _round(v: np.ndarray, scheme: Scheme, how: Quantizer) -> np.ndarray:
    fmt, largest = scheme.element, scheme.largest
    with np.errstate(all="ignore"):
        if how.toward_zero:
            q = quantum_exponents(np.abs(np.clip(v, -largest, largest)), fmt)
            out = np.ldexp(np.trunc(np.ldexp(np.clip(v, -largest, largest), -q)), q)
        else:
            out = round_to_format(v, fmt)
        beyond = np.abs(v) > largest
        if how.overflow == "special":
            special = np.inf if fmt.name == "float8_e5m2" else np.nan
            out = np.where(beyond, np.copysign(special, v), out)
        elif how.overflow == "wrap" and fmt.name == "int8":
            out = np.where(beyond, (np.rint(v) + 128) % 256 - 128, out)
    return out


def _block_max(v: np.ndarray, block: int, shift: int) -> np.ndarray:
    a = np.abs(np.roll(v, shift, axis=-1)).astype(np.float32)
    return np.maximum.reduceat(a, np.arange(0, v.shape[-1], block), axis=-1)


def quantize_emulated(
    y: np.ndarray, x: np.ndarray, xhat: np.ndarray, scheme: Scheme, how: Quantizer, static: float | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``how``'s values (float64) and returned scales (float32, None for a static scheme) of float32 ``y``."""
    y = y.astype(np.float32)
    largest = np.float32(scheme.largest)
    with np.errstate(all="ignore"):
        if scheme.static:
            given = np.float32(static)
            v: np.ndarray = {"divide": y / given, "multiply": y * given, "ignore": y}[how.static]  # type: ignore[assignment]  # float32 arrays all
            return _round(v.astype(np.float64), scheme, how), None
        block = scheme.block_size(y.shape[-1]) or y.shape[-1]
        source = {"y": y, "x": x.astype(np.float32), "xhat": xhat.astype(np.float32)}[how.amax_of]
        amax = _block_max(source, block, how.shift)
        if scheme.scale_format is not None:
            return _nvfp4(y, amax, scheme, how, np.float32(static), block)
        s: np.ndarray = amax / largest
        if scheme.rules:
            s = power_of_two(amax, scheme.largest, how.pow2 or scheme.rules[0]).astype(np.float32)
            s = s if how.floor else np.where(amax == 0, np.float32(0), s)
        elif how.floor:
            s = np.maximum(s, np.float32(FLOOR) / largest)
        if how.reciprocal:  # a power of two's reciprocal is exact; else largest / amax, as vLLM's reference
            inverse = np.float32(1) / s if scheme.rules else largest / np.maximum(amax, s * largest)
            v = y * per_element(inverse, y.shape, block).astype(np.float32)
        else:
            v = y / per_element(s, y.shape, block).astype(np.float32)
        returned = np.asarray(round_floats(s, BFLOAT16), np.float32) if how.returned == "bfloat16" else s
    return _round(v.astype(np.float64), scheme, how), returned


def _nvfp4(
    y: np.ndarray, amax: np.ndarray, scheme: Scheme, how: Quantizer, given: np.float32, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """NVFP4 as vLLM's reference computes it: ``s = e4m3(g * (amax * (1 / 6)))`` saturating, the values
    ``y * (1 / (s * (1 / g)))`` (0 where ``s`` is 0); ``how`` changes the global scale or the scale used."""
    assert scheme.scale_format is not None
    g = {"multiply": given, "divide": np.float32(1) / given, "ignore": np.float32(1)}[how.global_scale]
    exact32 = g * (amax * (np.float32(1) / np.float32(scheme.largest)))
    s = round_to_format(exact32, scheme.scale_format).astype(np.float32)
    used = exact32 if how.returned == "unrounded" else s
    inverse = np.where(used != 0, np.float32(1) / (used * (np.float32(1) / g)), np.float32(0)).astype(np.float32)
    if how.reciprocal:
        v = y * per_element(inverse, y.shape, block).astype(np.float32)
    else:  # dividing by s / g
        spread = per_element(used, y.shape, block)
        v = np.where(spread != 0, y / per_element(used / g, y.shape, block).astype(np.float32), 0)
    return _round(v.astype(np.float64), scheme, how), s


def diagnose_quantized(
    kind: str,
    output: str,
    run: Run,
    scheme: Scheme,
    *,
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    eps: float,
    offset: int,
) -> Diagnosis:
    """The bug class a quantized norm's answer on ``x`` matches best: a quantizer's (on a float32 ``y``), or
    one of the norm's own through a correct quantizer. An emulation's match is the worse of its values' and
    its scales' (a returned scale that differs is as telling as the values)."""
    assert run.y is not None
    emulations = [e for e in emulations_for(kind, offset) if rounds_here(e, x, weight)]
    reference = next(e for e in emulations if e.correct)  # all in float32, cast once: a fused kernel's arithmetic
    wide = x.astype(np.float32), None if weight is None else weight.astype(np.float32)
    wide_bias = None if bias is None else bias.astype(np.float32)

    def y_of(emu: Emulation, inputs: tuple[np.ndarray, np.ndarray | None], b: np.ndarray | None) -> np.ndarray:
        return run_emulation(emu, inputs[0], inputs[1], b, None, eps, offset)["y"].astype(np.float32)

    ys = {"fused": y_of(reference, wide, wide_bias), "unfused": y_of(reference, (x, weight), bias)}
    xhat = run_emulation(reference, wide[0], None, None, None, eps, 0)["y"].astype(np.float32)
    tried = [
        (name, desc, correct if how.pow2 is None else how.pow2 in scheme.rules, ys[which], how)
        for name, desc, correct, which, how in QUANTIZERS
        if how.pow2 is None or scheme.rules
    ]
    for emu in emulations:
        if emu.correct:
            continue
        try:
            y = y_of(emu, (x, weight), bias)
        except Exception:
            continue
        tried.append((emu.name, f"{emu.description}, then quantized", False, y, Quantizer()))
    matches: list[Match] = []
    answers: list[tuple[np.ndarray, np.ndarray | None]] = []
    for name, desc, correct, y, how in tried:
        q, scales = quantize_emulated(y, x, xhat, scheme, how, run.given_scale)
        if not correct and any(_same(q, scales, *a) for a in answers):
            continue  # a bug that changes nothing on this input (a gradient's, say) says nothing here
        if correct:
            answers.append((q, scales))
        figures = compare(run.y.astype(np.float64), q, scheme.element)
        if scales is not None and run.scales is not None:
            s_figures = compare(run.scales, scales, FLOAT32)
            figures = (min(figures[0], s_figures[0]), min(figures[1], s_figures[1]), figures[2] + s_figures[2])
        matches.append(Match(name, correct, desc, *figures))
    return name_bug(matches, output)


def _same(q: np.ndarray, scales: np.ndarray | None, q2: np.ndarray, scales2: np.ndarray | None) -> bool:
    """Whether two emulations answer alike, bit for bit (NaN alike)."""
    same_q = np.array_equal(q, q2, equal_nan=True)
    return same_q and (scales is None or scales2 is None or np.array_equal(scales, scales2, equal_nan=True))


__all__ = ["QUANTIZERS", "Quantizer", "diagnose_quantized", "quantize_emulated"]
