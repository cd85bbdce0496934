"""The audit of one implementation across dtypes: structured cases, the statistics' input, then a
hypothesis search; every answer judged against the oracle, the findings explained at the end."""

from __future__ import annotations

import time
from collections.abc import Callable

from normcheck.diagnosis.diagnose import convention_match
from normcheck.engine.bias import bias_findings, quantized_bias
from normcheck.engine.calls import Caller, row_count
from normcheck.engine.explain import explain, merge_findings
from normcheck.engine.judge import Judgement, first_difference, judge_outputs, nondeterminism, run_problems
from normcheck.engine.measure import Measure, residual_out
from normcheck.engine.plan import STRUCTURED_SIZES, Plan
from normcheck.engine.quantized import judge_quantized
from normcheck.engine.replay import Replay
from normcheck.engine.search import search
from normcheck.options import DEFAULTS, AuditOptions
from normcheck.result import AuditResult, Finding
from normcheck.strategies import HIDDEN_SIZES, NormInput, norm_inputs
from normcheck.target.isolation import IsolatedCandidate, WorkerLost
from normcheck.target.protocol import Run
from normcheck.target.torch_target import Candidate
from oracles import FloatFormat, resolve_format


class Auditor:
    """Audits one implementation (a :class:`Candidate`, in this process or a worker) across dtypes."""

    def __init__(
        self,
        candidate: Candidate | IsolatedCandidate,
        *,
        spec: str,
        kind: str,
        weight_offset: int = 0,
        options: AuditOptions = DEFAULTS,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        """``kind`` and ``weight_offset`` as inferred (``options`` may leave them unset)."""
        self.spec, self.kind, self.offset, self.options = spec, kind, weight_offset, options
        block = options.scheme.block if options.scheme is not None else None
        #: Hidden sizes are multiples of a quantized norm's group of channels.
        self.plan = Plan(options.seed, weight_offset, options.shapes, candidate.fused is not None, block or 1)
        #: As stated, or the plan's default (fitted to the group of channels).
        self.hidden_sizes = tuple(dict.fromkeys(map(self.plan.fit, options.hidden_sizes or HIDDEN_SIZES)))
        self.progress = progress or (lambda _msg: None)
        self.result = AuditResult(
            spec, kind, candidate.device, weight_offset, list(options.dtypes), {}, False, options.seed, options.examples
        )
        self.result.isolation = "worker process" if isinstance(candidate, IsolatedCandidate) else "in-process"
        self.scheme = options.scheme  #: a quantized norm's output scheme, or None
        self.result.quantization = None if self.scheme is None else self.scheme.describe()
        self.caller = Caller(candidate, kind, self.result.timing)
        self.measure = Measure(self.caller, kind, weight_offset)
        self.replay = Replay(self.caller)

    # -- one input --------------------------------------------------------------

    def check(self, case: NormInput, dtype: str, *, keep: bool = True) -> list[Finding]:
        """Run the implementation and the oracle on one input; return what is wrong. ``keep=False``
        (hypothesis shrinking): the statistics do not count it."""
        run = self._call(case, dtype, keep)
        return [] if run is None else self.judge(case, dtype, run, keep=keep)

    def _call(self, case: NormInput, dtype: str, keep: bool) -> Run | None:
        """The implementation's answer on ``case``; in a worker process, the exact outputs and bounds the
        judge needs are computed while it computes (an input's sums of a fused residual-add wait for y)."""
        grad = self.options.grad and self.caller.c.supports_grad

        def prepare() -> None:
            self.measure.prepare(case, dtype, grad)

        meanwhile = prepare if case.residual is None else None
        return self.caller.run(case, dtype, grad=self.options.grad, keep=keep, meanwhile=meanwhile)

    def judge(self, case: NormInput, dtype: str, run: Run, *, keep: bool = True) -> list[Finding]:
        """What is wrong with ``run``, the implementation's answer on ``case``; its errors go into the
        statistics where ``keep``. A fused residual-add is judged against the first of its sums that a
        correct implementation passes (``Measure.sums``)."""
        self.result.cases += 1
        findings = run_problems(run, case, dtype)
        if run.y is None or run.failure:
            return findings
        got = {"y": run.y, "dx": run.dx, "dw": run.dw, "db": run.db, "residual_out": run.residual_out}
        if run.fused_style is not None:
            self.result.fused_style = run.fused_style
        if case.residual is not None:
            got["dresidual"] = run.dresidual
        layout = self.caller.layout(case.n, dtype)
        self.result.eps[dtype] = layout.eps
        self.result.eps_inferred = self.result.eps_inferred or layout.eps_inferred
        grad = self.options.grad and run.dx is not None and self.scheme is None
        # (a quantized answer is no y to measure the sums' nearness by: they are tried in turn)
        tried = []
        for which, option in self.measure.sums(case, dtype, run.y if self.scheme is None else None, both=True):
            exact, limits = self.measure.outputs(option, dtype, grad)
            if case.residual is not None:  # the residual's gradient is x's: both reach the norm through the sum
                if "dx" in exact:  # (the tables hold different types: one at a time)
                    exact["dresidual"] = exact["dx"]
                if "dx" in limits:
                    limits["dresidual"] = limits["dx"]
                exact["residual_out"], limits["residual_out"] = residual_out(case, dtype)
            if self.scheme is not None:
                verdict = judge_quantized(run, exact["y"], limits["y"], case, dtype, self.scheme)
                others = {name: value for name, value in exact.items() if name != "y"}  # residual_out, if fused
                rest = judge_outputs(got, others, limits, case, dtype)
                verdict.findings += rest.findings
                verdict.errors += rest.errors
                verdict.reasons.update(rest.reasons)
            else:
                verdict = judge_outputs(got, exact, limits, case, dtype)
            tried.append((which, verdict))
            if tried[-1][1].accurate:
                break
        which, verdict = next((t for t in tried if t[1].accurate), tried[0])
        self._keep(verdict, dtype, case, keep)
        if keep and which is not None:
            counts = self.result.residual_sums.setdefault(dtype, {})
            counts[which] = counts.get(which, 0) + 1
        return findings + verdict.findings

    def _keep(self, verdict: Judgement, dtype: str, case: NormInput, keep: bool) -> None:
        """The bounds' formulas of a judgement and, where ``keep``, its errors, into the result."""
        for name, reasons in verdict.reasons.items():
            self.result.bound_reasons[(dtype, name)] = reasons
        if keep:
            for errors in verdict.errors:
                self.result.add_errors(dtype, case.regime, errors)

    def _replay(self, case: NormInput, dtype: str, first: Run | None, keep: bool = True) -> list[Finding]:
        """Call again on ``case``: a finding if the answer's bits differ from ``first``'s (the call is made,
        or counted as skipped, even where ``first`` was not run)."""
        second = self.caller.run(case, dtype, grad=self.options.grad, keep=keep)
        name = None if first is None or second is None else first_difference(first, second)
        if first is None or second is None or name is None:
            return []
        exact, limits = self.measure.outputs(case, dtype, grad=name != "y")
        return [nondeterminism(name, first, second, exact.get(name), limits.get(name), case, dtype)]

    # -- phases ------------------------------------------------------------------

    def audit_dtype(self, dtype: str) -> list[Finding]:
        """Every input of one dtype: :meth:`structured_inputs`, then :meth:`searched_inputs`."""
        fmt = resolve_format(dtype)
        try:
            eps = self.caller.layout(self.hidden_sizes[0], dtype).eps
        except WorkerLost as lost:
            message = f"building the module (n={self.hidden_sizes[0]}) took the worker down: {lost.error}"
            return [Finding(lost.failure, dtype, None, message, detail=lost.detail)]
        return self.structured_inputs(dtype, fmt, eps) + self.searched_inputs(dtype, eps)

    def structured_inputs(self, dtype: str, fmt: FloatFormat, eps: float) -> list[Finding]:
        """The plan's inputs: the structured cases, the statistics' input and its bias, a quantized norm's
        partial block and ties."""
        cases = self.plan.structured_cases(fmt, eps)
        aggregate = self.plan.aggregate_case(fmt, eps)
        # Inputs of more rows than the statistics' come after them: that call predicts their time (normcheck.timing).
        first = [c for c in cases if row_count(c) <= row_count(aggregate)]
        later = [c for c in cases if row_count(c) > row_count(aggregate)]

        def checked(batch: list[NormInput], start: int) -> list[Finding]:
            found = []
            for i, case in enumerate(batch, start + 1):
                self.progress(f"{dtype}: structured case {i}/{len(cases)} ({case.regime}, n={case.n})")
                found += self.check(case, dtype)
            return found

        findings = checked(first, 0)
        twice = (self.plan.fit(STRUCTURED_SIZES[0][0]), self.plan.fit(STRUCTURED_SIZES[2][0]))
        for case in first:  # two calls on a short and on a long row of random values, bit for bit
            if case.regime == "normal" and case.n in twice:
                again = self.caller.run(case, dtype, grad=self.options.grad, keep=False)  # counted as a structured case
                findings += self._replay(case, dtype, again, keep=False)
        self.progress(f"{dtype}: statistics over {aggregate.x.size} outputs")
        findings += self.check(aggregate, dtype)
        findings += self._bias(aggregate, dtype)
        findings += checked(later, len(first))
        findings += self._partial_block(dtype, fmt, eps)
        return findings + self._ties(dtype, fmt)

    def searched_inputs(self, dtype: str, eps: float) -> list[Finding]:
        """The hypothesis search's inputs, a failure shrunk."""
        strategy = norm_inputs(
            dtype=dtype, eps=eps, hidden_sizes=self.hidden_sizes, weight_offset=self.offset, residual=self.plan.fused
        )
        return search(
            strategy,
            examples=self.options.examples,
            seed_value=self.options.seed,
            attempt=lambda case, keep: self._attempt(case, dtype, keep),
            replay=lambda case, first_run, keep: self._replay(case, dtype, first_run, keep),
            progress=lambda i: self.progress(f"{dtype}: search example {i}/{self.options.examples}"),
        )

    def _partial_block(self, dtype: str, fmt: FloatFormat, eps: float) -> list[Finding]:
        """A hidden size that is not a multiple of a quantized norm's block: judged, its last block shorter, where
        the kernel answers; where it raises, a refusal noted, not a finding (kernels may require multiples)."""
        case = self.plan.partial_block_case(fmt, eps)
        if case is None:
            return []
        self.progress(f"{dtype}: a hidden size of {case.n}, not a multiple of the block")
        run = self._call(case, dtype, keep=True)
        last = f"n={case.n}, the last block of {case.n % self.plan.multiple}"
        if run is None:
            self.result.partial_blocks[dtype] = f"not run ({last})"
            return []
        if run.failure == "exception":
            self.result.partial_blocks[dtype] = f"refused ({last}): {run.error}"
            return []
        self.result.partial_blocks[dtype] = f"judged ({last})"
        return self.judge(case, dtype, run)

    def _ties(self, dtype: str, fmt: FloatFormat) -> list[Finding]:
        """A quantized norm with dynamic float32 scales on rows whose scaled values are ties of its element format."""
        scheme = self.scheme
        case = None if scheme is None else self.plan.ties_case(fmt, scheme)
        if scheme is None or case is None:
            return []
        self.progress(f"{dtype}: values on the rounding boundaries of {scheme.element.name}")
        return self.check(case, dtype)

    def _attempt(self, case: NormInput, dtype: str, keep: bool) -> tuple[Run | None, list[Finding]]:
        run = self._call(case, dtype, keep)
        return run, [] if run is None else self.judge(case, dtype, run, keep=keep)

    def _bias(self, case: NormInput, dtype: str) -> list[Finding]:
        """Biased rounding (truncation) overall, and per-channel drift (a low-precision weight offset); for a
        quantized norm, biased rounding of its values into the element format."""
        fmt = resolve_format(dtype)
        if fmt.precision > 11 and dtype != "bfloat16" and self.scheme is None:
            return []  # in fp32/fp64 outputs the compute error, not the final rounding, dominates
        run = self.caller.run(case, dtype, grad=False)
        if run is None or run.y is None or run.y.shape != case.x.shape:
            return []
        if self.scheme is not None:  # the values' rounding into the element format, in every dtype
            ex = self.measure.exact(self.measure.normalized(case, dtype), dtype, grad=False)["y"]
            return quantized_bias(run, ex, case, dtype, self.scheme)
        ex = self.measure.exact(self.measure.normalized(case, dtype, run.y), dtype, grad=False)["y"]
        return bias_findings(run.y, ex, fmt, case, dtype)

    def _conventions(self, dtype: str) -> None:
        """Which correct convention the implementation's y on the statistics' input matches best."""
        fmt = resolve_format(dtype)
        eps = self.result.eps.get(dtype)
        if eps is None or self.scheme is not None:
            return  # nothing of this dtype ran to completion (or y is not an output)
        case = self.plan.aggregate_case(fmt, eps)
        run = self.caller.run(case, dtype, grad=False)
        if run is not None and run.y is not None and run.y.shape == case.x.shape:
            w, b = self.caller.params(case, dtype)
            x = self.measure.normalized(case, dtype, run.y).x
            if x.dtype == case.x.dtype:  # the emulations cannot hold a sum kept in a wider format
                self.result.conventions[dtype] = convention_match(
                    self.kind, self.offset, run.y, fmt, x=x, weight=w, bias=b, eps=eps
                )

    # -- the whole audit ----------------------------------------------------------

    def run(self) -> AuditResult:
        start = time.perf_counter()
        found: list[Finding] = []
        for dtype in self.options.dtypes:
            found += self.audit_dtype(dtype)
        found += self.replay.findings(self.measure.outputs)
        self.result.findings = merge_findings(found)
        for f in self.result.findings:
            explain(
                f,
                self.caller,
                self.measure,
                spec=self.spec,
                reproducer_dir=self.options.reproducer_dir,
                scheme=self.scheme,
            )
        c = self.caller.c
        self.result.forward_only = not c.supports_grad or self.scheme is not None
        for dtype in self.options.dtypes:
            self._conventions(dtype)
        self.result.skipped = self.caller.skipped()
        self.result.too_slow = self.caller.too_slow
        self.result.kept_parameters = self.caller.kept_parameters
        self.result.restarts = c.restarts if isinstance(c, IsolatedCandidate) else 0
        self.result.seconds = time.perf_counter() - start
        return self.result
