"""What a correct implementation returns on an input: the exact outputs (the oracle), both tiers of their
bounds, and for a fused residual-add which of its sums the norm normalizes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

import oracles
from normcheck.engine.calls import Caller
from normcheck.strategies import NormInput, compute_format
from normcheck.target.protocol import Layout
from normcheck.timing import clocked
from normcheck.verdict.bounds import PROVEN, SHARP, Bound, bounds, exact_ulp, sharpen, ulp, unit_roundoff
from normcheck.verdict.references import correct_outputs
from normcheck.verdict.tiers import Tier
from oracles import resolve_format

#: The exact outputs of an input and their bounds, by output name.
Outputs = tuple[dict[str, oracles.Exact], dict[str, Bound]]


class Measure:
    """The exact side of an audit: the oracle and the bounds, for the parameters the implementation keeps."""

    def __init__(self, caller: Caller, kind: str, offset: int) -> None:
        self.caller, self.kind, self.offset = caller, kind, offset
        #: What :meth:`prepare` computed, and the input, dtype, gradients and layout it holds for.
        self._prepared: tuple[NormInput, tuple[str, bool, Layout], Outputs] | None = None

    def prepare(self, case: NormInput, dtype: str, grad: bool) -> None:
        """Compute :meth:`outputs` now (while the implementation computes in its worker); the next call of
        :meth:`outputs` on the same input, dtype and gradients, the layout unchanged, returns them."""
        outputs = self.outputs(case, dtype, grad)
        self._prepared = (case, (dtype, grad, self.caller.layout(case.n, dtype)), outputs)

    def exact(self, case: NormInput, dtype: str, grad: bool) -> dict[str, oracles.Exact]:
        w, b = self.caller.params(case, dtype)
        eps = self.caller.layout(case.n, dtype).eps
        with clocked(self.caller.timing, "oracle"):
            return oracles.norm_outputs(self.kind, case.x, w, b, eps, self.offset, case.grad if grad else None)

    def outputs(self, case: NormInput, dtype: str, grad: bool) -> Outputs:
        """The exact outputs on ``case`` and both tiers of their bounds."""
        layout = self.caller.layout(case.n, dtype)
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared[0] is case and prepared[1] == (dtype, grad, layout):
            return prepared[2]
        fmt = resolve_format(dtype)
        w, b = self.caller.params(case, dtype)
        g = case.grad if grad else None
        exact = self.exact(case, dtype, grad)
        param_fmt = resolve_format(layout.parameter_dtype)
        with clocked(self.caller.timing, "bounds"):
            limits = bounds(
                self.kind,
                fmt,
                case.x,
                exact,
                weight=w,
                bias=b,
                grad=g,
                eps=layout.eps,
                offset=self.offset,
                param_fmt=param_fmt,
            )
            computed, in_dtype = correct_outputs(self.kind, case.x, w, b, g, layout.eps, self.offset)
            conventions: list[dict[str, np.ndarray]] | None = in_dtype
            if case.x.dtype != fmt.dtype:  # a fused sum kept in the compute precision: conventions ran in that
                computed, conventions = computed + in_dtype, None
            return exact, sharpen(limits, fmt, exact, computed, conventions)

    # -- a fused residual-add ---------------------------------------------------------

    def normalized(self, case: NormInput, dtype: str, y: np.ndarray | None = None) -> NormInput:
        """What the norm of ``case`` most likely normalizes (the first of :meth:`sums`)."""
        return self.sums(case, dtype, y)[0][1]

    def sums(
        self, case: NormInput, dtype: str, y: np.ndarray | None = None, *, both: bool = False
    ) -> list[tuple[str | None, NormInput]]:
        """What the norm of ``case`` may normalize: ``x`` itself, or a fused residual-add's sums, named.

        Correct fused kernels normalize the sum rounded to the dtype (the unfused composition) or the
        sum kept in their compute precision. Where the two differ and the implementation's ``y`` is
        given, both come back, the one whose exact norm ``y``'s worst element is nearer to (in ulps)
        first; without ``y``, both in that order where ``both`` (a quantized answer is no ``y`` to measure
        by), else the rounded one alone, unnamed. The judge takes the first that a correct implementation
        passes (the two norms may differ by less than the roundings a correct convention makes, as Llama's
        cast of xhat, so nearness alone can pick the wrong one).
        """
        if case.residual is None:
            return [(None, case)]
        fmt = resolve_format(dtype)
        total = oracles.residual_sum(case.x, case.residual)
        comp = compute_format(fmt)
        sums = {f"rounded to {dtype}": total.round(fmt), f"kept in {comp.name}": total.round(comp)}
        options = {name: replace(case, x=np.array(s), residual=None) for name, s in sums.items()}
        rounded = next(iter(options))
        as_rounded, as_kept = sums.values()
        if np.array_equal(as_rounded, as_kept, equal_nan=True) or (y is None and not both):
            return [(None, options[rounded])]
        if y is None or y.shape != case.x.shape:
            return list(options.items()) if y is None else [(None, options[rounded])]
        yd = np.asarray(y, np.float64)

        def distance(name: str) -> float:
            exact = self.exact(options[name], dtype, grad=False)["y"].approx
            with np.errstate(all="ignore"):
                d = np.abs(yd - exact) / ulp(exact, fmt)
            return float(d.max(initial=0.0, where=np.isfinite(d)))

        return [(name, options[name]) for name in sorted(options, key=distance)]


def residual_out(case: NormInput, dtype: str) -> tuple[oracles.Exact, Bound]:
    """The exact ``x + residual`` and what a correct residual_out may be off by: half an ulp, and a
    rounding in the compute precision first (a sum in float32 rounded to bfloat16 rounds twice)."""
    fmt = resolve_format(dtype)
    total = oracles.residual_sum(case.x, case.residual)
    comp = compute_format(fmt)
    with np.errstate(all="ignore"):
        scale = np.abs(total.approx)
        twice = unit_roundoff(comp) * scale if comp.precision > fmt.precision else 0.0
        unit = exact_ulp(total, fmt)
        allowed = np.broadcast_to(0.5 * unit + twice, total.shape)
    reason = f"0.5 ulp(x + residual) + u_{comp.name}*|x + residual| (rounded once, or via {comp.name})"
    if comp.precision == fmt.precision:
        reason = "0.5 ulp(x + residual) (correctly rounded)"
    tiers = (Tier("rigorous", allowed, reason, PROVEN), Tier("sharp", allowed, reason, SHARP))
    bound = Bound(fmt, scale, allowed, np.zeros(total.shape), tiers, unit)
    return total, bound
