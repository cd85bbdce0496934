"""What a correct implementation can achieve: the error bound every verdict uses, with its reason.

A correct implementation (any convention of docs/theory.md, section 4) computes in
fp32 for 16- and 32-bit inputs (fp64 for float64) and rounds into the output
format at most twice. Its error on each element is therefore at most

    ROUNDINGS ulp_F(y)  +  MARGIN * (c_F * u_F + c_c * u_c) * S

where ``u_F`` and ``u_c`` are the unit roundoffs of the output and compute
formats, ``S`` is the scale of the terms the element is computed from (which is
where cancellation and conditioning enter; docs/bounds.md derives each term) and
``c_c`` counts compute roundings for *any* summation order (``n + 8`` for the
forward's row statistics, ``n + 32`` on a gradient's longer path, plus the
number of rows for channel sums). ``c_F`` counts the
intermediate roundings to the output format that some correct conventions make
inside the gradient (Llama's autograd rounds ``grad * weight`` and ``xhat``).
The bound is worst-case, not statistical, so correct code never fails it; the
regimes of ``normcheck.strategies`` make the buggy classes exceed it by far.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numba import njit

import oracles
from normcheck.strategies import compute_format
from normcheck.verdict.tiers import Tier
from oracles import FloatFormat, kernels
from oracles.exact import kernel_view

#: Final roundings a correct convention may make (Llama and T5 round twice; 1.5 ulp covers it).
ROUNDINGS = 1.5
#: Safety factor on the worst-case compute term.
MARGIN = 2.0
#: Roundings on a gradient's path besides the row sums (autograd's pow(v, -3/2), products of r, casts).
GRAD_ROUNDINGS = 32


#: The sharp tier allows this many times the worst correct computation's error on the same input.
FACTOR = 8.0
#: ... and at least this many compute roundings of the element's scale (every correct code makes a few).
K_MIN = 2.0


#: What an error beyond each tier means.
PROVEN = "no correct implementation can be this far off"
SHARP = f"{FACTOR:g}x the worst correct computation on this input"


@dataclass(frozen=True)
class Bound:
    """What a correct implementation can do on one output, per element (absolute errors, float64)."""

    fmt: FloatFormat  #: F: the output's format (the parameters' for dw and db), its final rounding's
    scale: np.ndarray  #: S: the magnitude of the terms the element is computed from; errors are read in ulp_F(S)
    base: np.ndarray  #: the roundings correct conventions make in the output format (final casts, Llama's)
    intermediate: np.ndarray  #: the worst case of those inside a gradient (part of base; the sharp tier measures it)
    #: The tiers, loosest first: rigorous (the worst case over every correct implementation: beyond it, a
    #: proven failure), then sharp once :func:`sharpen` added it.
    tiers: tuple[Tier, ...]
    #: At least ulp_F of each exact value (:func:`exact_ulp`): the unit of the final rounding into F.
    ulp: np.ndarray
    unit: float | None = None  #: K: the worst correct computation's error relative to S (the sharp tier's)

    def allowed(self, tier: str) -> np.ndarray:
        """The allowance of the tier named ``tier``."""
        return next(t.allowed for t in self.tiers if t.name == tier)


def unit_roundoff(fmt: FloatFormat) -> float:
    return 2.0**-fmt.precision


def ulp(values: np.ndarray | float, fmt: FloatFormat) -> np.ndarray:
    """``ulp_F`` of each value (the subnormal spacing at and below ``2**emin``)."""
    v = np.asarray(values, dtype=np.float64)
    out = np.empty(v.shape)
    kernels.ulps(kernel_view(v), fmt.precision, fmt.emin, out.reshape(-1))
    return out


def exact_ulp(exact: oracles.Exact, fmt: FloatFormat) -> np.ndarray:
    """At least ``ulp_F`` of each exact value: that of ``|approx| + error bound`` (an upper bound, so an
    allowance built on it is never too small), and of the correct rounding where the bound is not finite
    (outside the oracle's fast path)."""
    approx, bound = exact.approx, exact.error_bound
    with np.errstate(invalid="ignore"):
        upper = np.abs(approx) + bound
        unknown = ~np.isfinite(upper)
    if unknown.any():
        rounded = exact.round(fmt).astype(np.float64)
        upper = np.where(unknown, np.where(np.isfinite(rounded), np.abs(rounded), 0.0), upper)
    return ulp(upper, fmt)


@dataclass
class _Scales:
    """Float64 magnitudes of the quantities each output is computed from (rows flattened)."""

    n: int
    rows: int
    r: np.ndarray  # (rows, 1)
    xhat: np.ndarray  # (rows, n)
    scale: np.ndarray  # (n,) |weight + offset|, ones without weight
    mean_abs_x: np.ndarray  # (rows, 1), LayerNorm's conditioning
    h: np.ndarray  # (rows, n) |grad * scale|
    mean_h: np.ndarray  # (rows, 1)
    mean_hx: np.ndarray  # (rows, 1) mean |h * xhat|
    g: np.ndarray  # (rows, n) |grad|


def _scales(
    kind: str, x: np.ndarray, weight: np.ndarray | None, grad: np.ndarray | None, eps: float, offset: int
) -> _Scales:
    n = x.shape[-1]
    x2 = np.asarray(x, dtype=np.float64).reshape(-1, n)
    with np.errstate(all="ignore"):
        centered = x2 - x2.mean(axis=-1, keepdims=True) if kind == "layernorm" else x2
        r = 1.0 / np.sqrt(np.mean(centered * centered, axis=-1, keepdims=True) + eps)
        xhat = np.abs(centered * r)
        scale = np.ones(n) if weight is None else np.abs(np.asarray(weight, np.float64) + offset)
        g = np.zeros_like(x2) if grad is None else np.abs(np.asarray(grad, np.float64).reshape(x2.shape))
        h = g * scale
        return _Scales(
            n,
            x2.shape[0],
            r,
            xhat,
            scale,
            np.mean(np.abs(x2), axis=-1, keepdims=True),
            h,
            np.mean(h, axis=-1, keepdims=True),
            np.mean(h * xhat, axis=-1, keepdims=True),
            g,
        )


def _shaped(a: np.ndarray | float, like: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-element array of an output's shape from one broadcast against its (rows, n) layout."""
    return np.broadcast_to(np.asarray(a, dtype=np.float64), np.shape(like)).reshape(shape)


def bounds(
    kind: str,
    fmt: FloatFormat,
    x: np.ndarray,
    exact: dict[str, oracles.Exact],
    *,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    grad: np.ndarray | None,
    eps: float,
    offset: int,
    param_fmt: FloatFormat | None = None,
) -> dict[str, Bound]:
    """The scale and the rigorous bound of every output in ``exact`` (keys ``y``, ``dx``, ``dw``, ``db``).

    ``fmt`` is the input's format, ``param_fmt`` the parameters' (default ``fmt``): ``dw`` and ``db``
    round into it at the end; intermediate roundings happen in the input's format.
    """
    comp = compute_format(fmt)
    uf, uc = unit_roundoff(fmt), unit_roundoff(comp)
    s = _scales(kind, x, weight, grad, eps, offset)
    ln = kind == "layernorm"
    # Intermediate roundings to the output format inside correct gradients (none when F is the compute format).
    c_f = 2.0 if fmt.precision < comp.precision else 0.0
    n, rows = s.n, s.rows
    out: dict[str, Bound] = {}
    with np.errstate(all="ignore"):
        if ln:  # the mean's error e, amplified by r: |e| r <= delta; r's own change, 1 - r_c/r, is at most eta
            delta = (n + 4) * uc * s.r * s.mean_abs_x
            shift = delta / np.sqrt(1 + delta * delta)  # |e| r_c: how far xhat moves, at most 1
            eta = shift * delta / (1 + np.sqrt(1 + delta * delta))  # 1 - 1/sqrt(1 + delta^2)
            moved = shift + s.xhat * eta  # |xhat_c - xhat|
            moved_m = shift * s.mean_h + eta * s.mean_hx  # |mean(h * (xhat_c - xhat))|
        for name, ex in exact.items():
            out_fmt = param_fmt if param_fmt is not None and name in ("dw", "db") else fmt
            ulp_exact = exact_ulp(ex, out_fmt)
            ulp_y = ulp_exact.reshape(-1, ex.shape[-1]) if ulp_exact.ndim else ulp_exact
            intermediate: np.ndarray | float = 0.0
            if name == "y":
                core = s.xhat * s.scale
                # Llama / T5 / half affine round xhat, then w * xhat (then + b): each at most half an ulp.
                base = 0.5 * ulp_y + 0.5 * ulp(s.xhat, fmt) * s.scale
                scale = core
                rigorous = MARGIN * uc * (n + 8) * core
                why = f"0.5 ulp(y) + 0.5 ulp(xhat)*|w| + {MARGIN}*(n+8)*u_{comp.name}*|y|"
                if ln:
                    b_abs = 0 if bias is None else np.abs(np.asarray(bias, np.float64))
                    if bias is not None:
                        base = base + 0.5 * ulp(core, fmt)
                    cond = s.r * s.scale * s.mean_abs_x  # the terms x_i and mu behind x_i - mu
                    scale = core + cond + b_abs
                    rigorous = rigorous + MARGIN * (uc * (b_abs + (n + 4) * cond) + core * eta)
                    why += (
                        f" + {MARGIN}*(n+4)*u_{comp.name}*r*|w|*mean|x| (the mean's error; conditioning)"
                        f" + {MARGIN}*|y|*eta (its second order)"
                    )
            elif name == "dx":
                scale = s.r * (s.h + (s.mean_h if ln else 0) + s.xhat * s.mean_hx)
                intermediate = MARGIN * c_f * uf * scale
                base = ROUNDINGS * ulp_y + intermediate
                rigorous = MARGIN * (n + GRAD_ROUNDINGS) * uc * scale
                why = (
                    f"{ROUNDINGS} ulp + {MARGIN}*({c_f:g}*u_{fmt.name} + (n+{GRAD_ROUNDINGS})*u_{comp.name})"
                    "*r*(|h| + |xhat|*mean|h*xhat|)"
                )
                if ln:  # an error d in the mean moves xhat by d*r and mean(h*xhat) by d*r*mean(h)
                    cond = s.r * s.r * s.mean_abs_x * (s.mean_hx + s.xhat * s.mean_h)
                    scale = scale + cond
                    # ... and to second order: r_c - r, and the parts of xhat's and mean(h*xhat)'s moves beyond e*r
                    second = eta * (s.h + s.mean_h + (s.xhat + moved) * (s.mean_hx + moved_m))
                    second += moved * moved_m + eta * ((delta + 2 * s.xhat) * s.mean_hx + s.xhat * delta * s.mean_h)
                    rigorous = rigorous + MARGIN * ((n + 4) * uc * cond + s.r * second)
                    why += (
                        f" + {MARGIN}*(n+4)*u_{comp.name}*r^2*mean|x|*(mean|h*xhat| + |xhat|*mean|h|)"
                        f" + {MARGIN}*r*(its second order in delta, docs/bounds.md)"
                    )
            elif name == "dw":
                scale = np.sum(s.g * s.xhat, axis=0)
                intermediate = MARGIN * c_f * uf * scale
                base = ROUNDINGS * ulp_y + intermediate
                rigorous = MARGIN * (rows + n + GRAD_ROUNDINGS) * uc * scale
                why = (
                    f"{ROUNDINGS} ulp + {MARGIN}*({c_f:g}*u_{fmt.name} + (rows+n+{GRAD_ROUNDINGS})*u_{comp.name})"
                    "*sum|g*xhat|"
                )
                if ln:
                    cond = np.sum(s.g * s.r * s.mean_abs_x, axis=0)
                    scale = scale + cond
                    second = np.sum(s.g * eta * (delta + s.xhat), axis=0)  # xhat's move beyond e*r
                    rigorous = rigorous + MARGIN * ((n + 4) * uc * cond + second)
                    why += (
                        f" + {MARGIN}*(n+4)*u_{comp.name}*sum|g|*r*mean|x| (the mean's error)"
                        f" + {MARGIN}*sum|g|*eta*(delta + |xhat|) (its second order)"
                    )
            else:  # db
                scale = np.sum(s.g, axis=0)
                base = ROUNDINGS * ulp_y
                rigorous = MARGIN * (rows + 2) * uc * scale
                why = f"{ROUNDINGS} ulp + {MARGIN}*(rows+2)*u_{comp.name}*sum|g|"
            per_scale, per_base, per_intermediate, per_rigorous = (
                _shaped(a, ulp_y, ex.shape) for a in (scale, base, intermediate, base + rigorous)
            )
            tiers = (Tier("rigorous", per_rigorous, why, PROVEN),)
            out[name] = Bound(out_fmt, per_scale, per_base, per_intermediate, tiers, ulp_exact)
    return out


def _flat(a: np.ndarray | float, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` per element of an output of ``shape``, as the kernels below read it (``kernel_view``)."""
    v = np.asarray(a, dtype=np.float64)
    return kernel_view(v if v.shape == shape else np.broadcast_to(v, shape))


@njit(cache=True, nogil=True, error_model="numpy")
def _fold_worst(worst: np.ndarray, approx: np.ndarray, bound: np.ndarray, got: np.ndarray, beyond: np.ndarray) -> None:
    """``worst = max(worst, |got - approx| + bound - beyond)`` per element where that is finite (one reference's
    error less what it may round at the end, into the largest so far; as numpy would, in one pass)."""
    for i in range(worst.size):
        d = abs(got[i] - approx[i]) + bound[i] - beyond[i]
        if np.isfinite(d) and d > worst[i]:
            worst[i] = d


#: An element whose oracle error bound is at most this fraction of its scale S is pinned down: its reference
#: errors count towards the input's K; elsewhere the element has its own.
RESOLVED = 2.0**-40


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _resolved(scale: float, bound: float) -> bool:
    return scale > 0 and bound <= RESOLVED * scale


@njit(cache=True, nogil=True, error_model="numpy")
def _sharp_allowed(
    worst: np.ndarray,
    scale: np.ndarray,
    bound: np.ndarray,
    base: np.ndarray,
    measured: np.ndarray,
    rigorous: np.ndarray,
    narrower: bool,
    k_min: float,
) -> tuple[np.ndarray, float]:
    """The sharp tier's allowance per element and K (at least ``k_min``) from each element's largest reference
    error ``worst`` (see :func:`sharpen`): K is the largest error relative to S where the oracle pins the error down
    (:data:`RESOLVED`), an element it leaves unresolved has its own; the rigorous allowance where the sharp one is
    not finite."""
    k = k_min
    for i in range(worst.size):
        rel = max(worst[i], 0.0) / scale[i]
        if np.isfinite(rel) and _resolved(scale[i], bound[i]) and rel > k:
            k = rel
    allowed = np.empty(worst.size)
    for i in range(worst.size):
        rel = max(worst[i], 0.0) / scale[i]
        local = rel if np.isfinite(rel) and not _resolved(scale[i], bound[i]) else 0.0
        sharp = (base[i] - measured[i] if narrower else 0.0) + FACTOR * max(k, local) * scale[i]
        allowed[i] = sharp if np.isfinite(sharp) else rigorous[i]
    return allowed, k


def compile_kernels() -> None:
    """Compile the sharp tier's kernels now, or load them from numba's cache, for the one combination of types
    :func:`sharpen` calls them with (the auditor calls this while its worker process starts)."""
    one, worst = _flat(1.0, (1,)), np.full(1, -np.inf)
    _fold_worst(worst, one, one, one, one)
    _sharp_allowed(worst, one, one, one, one, one, True, 1.0)


def sharpen(
    limits: dict[str, Bound],
    fmt: FloatFormat,
    exact: dict[str, oracles.Exact],
    computed: list[dict],
    conventions: list[dict] | None,
) -> dict[str, Bound]:
    """Add the sharp tier: ``FACTOR`` times the largest error, relative to each element's scale, that
    a correct computation makes on this very input (docs/bounds.md).

    ``computed`` holds correct computations in the compute precision, ``conventions`` torch's correct
    conventions run in the dtype under audit. Where the output format is narrower, the final roundings
    into it are allowed as in the rigorous bound, and the conventions count by what they err beyond
    their own final rounding: the intermediate roundings they make on this input, measured instead of
    the rigorous bound's worst case. ``conventions=None``: not run in that dtype (a fused kernel's sum
    kept in the compute precision), so the worst case of the intermediate roundings stays.
    """
    comp = compute_format(fmt)
    uc = unit_roundoff(comp)
    out = {}
    for name, b in limits.items():
        ex = exact[name]
        k = K_MIN * uc
        narrower = b.fmt.precision < comp.precision
        with np.errstate(all="ignore"):
            final = 0.5 * b.ulp if narrower else 0.0
            # Per element, the largest finite error over the references (each less what it may round at the
            # end): the error relative to S grows with it, so its largest is the largest reference's.
            approx, bound = _flat(ex.approx, ex.shape), _flat(ex.error_bound, ex.shape)
            worst = np.full(approx.size, -np.inf)
            nothing, rounded = _flat(0.0, ex.shape), _flat(final, ex.shape)
            for ref, beyond in [(r, nothing) for r in computed] + [(r, rounded) for r in conventions or []]:
                got = ref.get(name)
                if got is not None and got.shape == ex.shape:
                    _fold_worst(worst, approx, bound, _flat(got, ex.shape), beyond)
            measured = b.intermediate if conventions is not None else 0.0
            allowed, k = _sharp_allowed(
                worst,
                _flat(b.scale, ex.shape),
                bound,
                _flat(b.base, ex.shape),
                _flat(measured, ex.shape),
                _flat(b.allowed("rigorous"), ex.shape),
                narrower,
                k,
            )
        rounding = f" + the final roundings into {b.fmt.name} (as rigorous)" if narrower else ""
        if narrower and conventions is None:
            rounding += f" and the worst case of the intermediate ones into {fmt.name}"
        conv = ""
        if conventions is not None:
            conv = f" and of torch's correct conventions in {fmt.name}" + (
                " beyond their final rounding" if narrower else ""
            )
        why = (
            f"{FACTOR:g} K S{rounding}: K = the largest |error| / S of correct {comp.name} computations of this "
            f"input (sums sequential, pairwise, blocked by 256, in 32 lanes; LayerNorm's mean also one ulp off)"
            f"{conv}, at least {K_MIN:g} u_{comp.name}; where the oracle's own error is above 2^-40 S, "
            "K of that element"
        )
        tier = Tier("sharp", allowed.reshape(ex.shape), why, SHARP)
        out[name] = replace(b, tiers=(*b.tiers, tier), unit=k)
    return out
