"""Explaining the findings: one per check, dtype and output, each with the bug class it matches best
and a reproducer of its smallest failing input."""

from __future__ import annotations

from normcheck.diagnosis.diagnose import Diagnosis, diagnose
from normcheck.diagnosis.quantized import diagnose_quantized
from normcheck.engine.calls import Caller
from normcheck.engine.measure import Measure
from normcheck.quantization import Scheme
from normcheck.report.reproducer import snippet
from normcheck.result import Finding

#: Failing inputs the diagnosis looks at per finding.
MAX_DIAGNOSED = 6


def merge_findings(findings: list[Finding]) -> list[Finding]:
    """One finding per (check, dtype, output): the worst occurrence is the headline, the smallest input
    gives the reproducer (and its own message beside the headline), every other input feeds the diagnosis."""
    groups: dict[tuple[str, str, str | None], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.check, f.dtype, f.output), []).append(f)
    merged = []
    for group in groups.values():
        worst = max(group, key=lambda f: f.severity)  # the first of equals: structured cases come first
        with_input = [f for f in group if f.example is not None]
        smallest = (
            min(reversed(with_input), key=lambda f: f.example.x.size if f.example else 0) if with_input else worst
        )
        head = Finding(
            worst.check,
            worst.dtype,
            worst.output,
            worst.message,
            worst.regime,
            worst=worst.worst,
            example=smallest.example,
            occurrences=len(group),
            severity=worst.severity,
            detail=worst.detail,
        )
        if smallest is not worst and smallest.example is not None:
            head.minimal = {
                "message": smallest.message,
                "regime": smallest.regime,
                "shape": list(smallest.example.x.shape),
            }
        seen = {id(smallest.example)}
        for f in sorted(with_input, key=lambda f: -f.severity):
            if f.example is not None and id(f.example) not in seen:
                seen.add(id(f.example))
                head.others.append(f.example)
        merged.append(head)
    return merged


def decisiveness(d: Diagnosis) -> tuple[float, float]:
    """How clearly a diagnosis separates its best match from the runner-up."""
    if not d.matches:
        return (0.0, 0.0)
    top = d.matches[0]
    second = d.matches[1].agreement if len(d.matches) > 1 else 0.0
    return (top.agreement - second, top.agreement)


def explain(
    f: Finding, caller: Caller, measure: Measure, *, spec: str, reproducer_dir: str, scheme: Scheme | None = None
) -> None:
    """Attach the reproducer and the diagnosis to a finding (of a quantized norm of ``scheme``, where given)."""
    case = f.example
    if case is None:
        return
    w, b = caller.params(case, f.dtype)
    layout = caller.layout(case.n, f.dtype)
    f.reproducer, f.reproducer_file = snippet(
        spec,
        caller.c,
        measure.kind,
        case,
        f.dtype,
        layout.eps,
        measure.offset,
        w,
        b,
        output=f.output,
        folder=reproducer_dir,
    )
    if f.check not in ("accuracy", "nonfinite", "bias") or f.output in (None, "residual_out"):
        return
    output = "dx" if f.output == "dresidual" else f.output  # the same gradient, through the sum
    quantized = f.output in ("q", "scales")
    # Diagnose on every failing input kept (the smallest is often too small to tell bugs apart).
    candidates = []
    for example in [case, *f.others][:MAX_DIAGNOSED]:
        run = caller.run(example, f.dtype, grad=f.output != "y" and not quantized)
        cand = None if run is None else run.y if quantized else getattr(run, f.output)
        if run is None or cand is None:
            continue
        w, b = caller.params(example, f.dtype)
        eps = caller.layout(example.n, f.dtype).eps
        if quantized and scheme is not None:
            x = measure.sums(example, f.dtype)[0][1].x  # a fused residual-add's: the sum, rounded
            candidates.append(
                diagnose_quantized(
                    measure.kind, output, run, scheme, x=x, weight=w, bias=b, eps=eps, offset=measure.offset
                )
            )
            continue
        candidates.append(
            diagnose(
                measure.kind,
                output,
                cand,
                caller.output_format(f.output, example, f.dtype),
                x=measure.normalized(example, f.dtype, run.y).x,
                weight=w,
                bias=b,
                grad=example.grad,
                eps=eps,
                offset=measure.offset,
            )
        )
    named = [d for d in candidates if d.bug is not None]
    pool = named or candidates
    if pool:
        f.diagnosis = max(pool, key=decisiveness)
