"""Portable test vectors: hard cases with exact answers, as JSON any language can read.

In the spirit of Wycheproof's test-vector files: one file per kind and format,
schema ``normcheck.report.vectors/1`` (``normcheck/schemas/vectors.schema.json``).
Inputs are exact hex floats (``float.fromhex`` in Python, ``strtod`` in C);
expected outputs are correctly rounded into the file's format, with the exact
value to 25 significant digits and the ULP bound a correct implementation meets.
"""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np

import oracles
from normcheck.errors import UsageError
from normcheck.strategies import REGIMES, WEIGHT_REGIMES, NormInput, Source, make_input
from normcheck.verdict.bounds import bounds, ulp
from oracles import FloatFormat, resolve_format
from oracles.rounding import ulp_exponent

SCHEMA = "normcheck.report.vectors/1"
KINDS = ("rmsnorm", "layernorm")
SIZES = (1, 2, 3, 8, 17)
#: One long row (low-precision accumulation) and one tall batch (weight-gradient accumulation).
LONG_ROW, MANY_ROWS = 512, 64
#: Regimes where eps matters, generated with a second eps too.
EPS_SENSITIVE = ("eps_dominant", "zero", "tiny", "constant", "near_constant")
#: What each regime exercises (docs/theory.md, sections 5 and 6), for the case comments.
WHY = {
    "normal": "random rows",
    "tiny": "tiny values: float16 squares underflow (missing fp32 upcast)",
    "huge": "huge values: float16 squares overflow past 256 (missing fp32 upcast)",
    "zero_mean": "zero-mean rows",
    "offset": "large mean offset: variance cancellation (one-pass variance)",
    "eps_dominant": "mean square at or below eps (eps outside sqrt, eps rounded to the input dtype)",
    "constant": "constant row: zero variance (LayerNorm output is the bias)",
    "near_constant": "constant row plus one ulp of noise: the mean's rounding error outweighs the spread",
    "zero": "all-zero row (eps placement, division by zero)",
    "one_hot": "one nonzero channel",
    "outlier": "one outlier channel 1e4 times the rest",
}


def _round_up(v: float) -> float:
    """``v`` rounded up to 3 significant digits (never tighter than the bound)."""
    if v <= 0:
        return 0.0
    q = 10.0 ** (math.floor(math.log10(v)) - 2)
    return max(v, float(f"{math.ceil(v / q) * q:.3g}"))


def _hex(values: np.ndarray) -> list[str]:
    """Exact hex floats, shortest form (``-0x1.f84p+2``): readable by float.fromhex and C's strtod."""
    return [re.sub(r"\.?0+p", "p", float(v).hex()) for v in np.asarray(values, dtype=np.float64).ravel()]


def _exact_strings(exact: oracles.Exact) -> list[str | None]:
    out: list[str | None] = []
    for i in range(int(np.prod(exact.shape))):
        if exact.undefined.flat[i]:
            out.append(None)
        else:
            with mpmath.workprec(120):
                out.append(mpmath.nstr(exact.mpf(i, prec=120), 25, strip_zeros=False))
    return out


def _comment(case: NormInput, kind: str, eps: float, offset: int) -> str:
    parts = [WHY[case.regime], f"n={case.n}", f"eps={eps:g}"]
    if case.n in (1, 2, 3):
        parts.append("small n (unbiased variance, n = 1)")
    if case.n & (case.n - 1):
        parts.append("n not a power of two (padding / block-size divisor)")
    if case.n >= LONG_ROW:
        parts.append("long row: accumulation error in low precision (missing upcast in bf16)")
    if case.x.shape[0] >= MANY_ROWS:
        parts.append("many rows: weight and bias gradients accumulate (low-precision dW accumulator)")
    if case.weight_regime != "normal":
        parts.append(f"weights {case.weight_regime.replace('_', ' ')}")
    if offset:
        parts.append("Gemma weight offset (1 + w)")
    return "; ".join(parts)


def generate(kind: str, dtype: str, *, seed: int = 0) -> dict:
    """The corpus for one kind and format."""
    if kind not in KINDS:
        raise UsageError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    fmt = resolve_format(dtype)
    src = Source(rng=np.random.default_rng(seed))
    tests: list[dict] = []
    specs = [(regime, n, 1e-6, 0, "normal") for regime in REGIMES for n in SIZES]
    specs += [(regime, n, 1e-5, 0, "normal") for regime in EPS_SENSITIVE for n in SIZES]
    specs += [(regime, 8, 0.0, 0, "normal") for regime in ("normal", "eps_dominant", "tiny")]
    specs += [(regime, 61, 1e-6, 0, "normal") for regime in ("normal", "offset", "huge")]
    specs += [("normal", 17, 1e-6, offset, wreg) for wreg in WEIGHT_REGIMES for offset in (0, 1)]
    specs += [("normal", LONG_ROW, 1e-6, 0, "normal"), ("normal", 8, 1e-6, 0, "normal")]
    for k, (regime, n, eps, offset, wreg) in enumerate(specs):
        if eps == 0.0 and regime in ("zero", "constant"):
            continue  # 0/0: undefined, nothing to expect
        rows = MANY_ROWS if k == len(specs) - 1 else (1 if n == LONG_ROW else (2 if n > 1 else 3))
        case = make_input(src, fmt, n=n, rows=rows, regime=regime, eps=eps, weight_offset=offset, weight_regime=wreg)
        tests.append(_vector(len(tests) + 1, kind, fmt, case, eps, offset))
    return {
        "schema": SCHEMA,
        "algorithm": kind,
        "dtype": fmt.name,
        "format": {"precision": fmt.precision, "emin": fmt.emin, "emax": fmt.emax},
        "generator": {"tool": "normcheck", "seed": seed},
        "notes": {
            "inputs": "hex floats, exactly representable in the file's dtype; shape is (rows, n)",
            "expected": "correctly rounded (nearest, ties to even) from the exact value",
            "exact": "the exact value to 25 significant digits; null where undefined",
            "allowed_ulp": "the largest error, in ulps of the exact value, of a correct implementation computing "
            "in fp32 (fp64 for float64); see normcheck/verdict/bounds.py",
        },
        "numberOfTests": len(tests),
        "tests": tests,
    }


def _vector(tc_id: int, kind: str, fmt: FloatFormat, case: NormInput, eps: float, offset: int) -> dict:
    bias = case.bias if kind == "layernorm" else None
    exact = oracles.norm_outputs(kind, case.x, case.weight, bias, eps, offset, case.grad)
    limits = bounds(kind, fmt, case.x, exact, weight=case.weight, bias=bias, grad=case.grad, eps=eps, offset=offset)
    expected, allowed, exact_values = {}, {}, {}
    for name, ex in exact.items():
        expected[name] = _hex(ex.round(fmt))
        exact_values[name] = _exact_strings(ex)
        with np.errstate(all="ignore"):
            ulps = limits[name].allowed("rigorous") / ulp(np.nan_to_num(ex.approx), fmt)
        allowed[name] = [_round_up(float(v)) if math.isfinite(v) else None for v in np.ravel(ulps)]
    return {
        "tcId": tc_id,
        "comment": _comment(case, kind, eps, offset),
        "regime": case.regime,
        "shape": list(case.x.shape),
        "x": _hex(case.x),
        "weight": _hex(case.weight),
        "bias": None if bias is None else _hex(bias),
        "grad_output": _hex(case.grad),
        "eps": float(eps).hex(),
        "weight_offset": offset,
        "expected": expected,
        "exact": exact_values,
        "allowed_ulp": allowed,
    }


def dumps(corpus: dict) -> str:
    """JSON with the header indented and one test per line (small, and diffs stay readable)."""
    head = {k: v for k, v in corpus.items() if k != "tests"}
    lines = [json.dumps(t, separators=(",", ":")) for t in corpus["tests"]]
    text = json.dumps(head, indent=1)
    return text[:-2] + ',\n "tests": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"


def load(path: str) -> dict:
    """Read a corpus or a results file; one-line :class:`UsageError` when it is not usable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise UsageError(f"no such file {path!r}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path!r} as JSON: {exc}") from None


def check(corpus: dict, results: dict) -> list[dict]:
    """Score outputs computed elsewhere against a corpus; return one record per failing output.

    ``results`` is ``{"tests": [{"tcId": 1, "y": [...], "dx": [...], ...}]}`` with
    numbers or hex strings; outputs a result leaves out are not judged.
    """
    if corpus.get("schema") != SCHEMA:
        raise UsageError(f"not a normcheck vectors file (schema {corpus.get('schema')!r}, expected {SCHEMA!r})")
    fmt = resolve_format(corpus["dtype"])
    by_id = {t["tcId"]: t for t in corpus["tests"]}
    failures = []
    for res in results.get("tests", []):
        test = by_id.get(res.get("tcId"))
        if test is None:
            raise UsageError(f"results name tcId {res.get('tcId')!r}, which the corpus does not have")
        for name in ("y", "dx", "dw", "db"):
            if name not in res or name not in test["exact"]:
                continue
            got = [_number(v) for v in res[name]]
            if len(got) != len(test["exact"][name]):
                failures.append(
                    {
                        "tcId": test["tcId"],
                        "output": name,
                        "comment": test["comment"],
                        "reason": f"{len(got)} values, expected {len(test['exact'][name])}",
                    }
                )
                continue
            worst = _worst(got, test["exact"][name], test["allowed_ulp"][name], fmt)
            if worst is not None:
                failures.append({"tcId": test["tcId"], "output": name, "comment": test["comment"], **worst})
    return failures


def _number(v: object) -> float:
    if isinstance(v, str):
        return float.fromhex(v) if "0x" in v.lower() else float(v)
    return float(v)  # type: ignore[arg-type]  # a JSON number: an int or a float


def _worst(got: list[float], exact: list[str | None], allowed: list[float | None], fmt: FloatFormat) -> dict | None:
    worst: dict[str, Any] | None = None
    for i, (c, e, a) in enumerate(zip(got, exact, allowed)):
        if e is None:
            continue
        y = Fraction(e)
        if not math.isfinite(c):
            rounded = oracles.round_rational(y, fmt)
            if c != rounded:
                return {"index": i, "got": c, "exact": e, "reason": f"{c} where the exact value is {e}"}
            continue
        uexp = ulp_exponent(y, fmt)
        err = float(abs(Fraction(c) - y) / Fraction(2) ** uexp)
        if a is not None and err > a and (worst is None or err - a > worst["ulp_error"] - worst["allowed_ulp"]):
            worst = {
                "index": i,
                "got": c,
                "exact": e,
                "ulp_error": err,
                "allowed_ulp": a,
                "reason": f"{err:.3g} ulp from the exact value (allowed {a:.3g})",
            }
    return worst
