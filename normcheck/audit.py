"""The audit engine: structured cases, then a hypothesis search; every output judged against the oracle.

Data flows one way: strategies -> inputs -> implementation and oracle -> ULP
errors against the bound -> findings (diagnosed, with a reproducer) -> result.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings

import oracles
from normcheck.bounds import FACTOR, Bound, bounds, exact_ulp, sharpen, ulp, unit_roundoff
from normcheck.candidate import Candidate, Run
from normcheck.diagnosis import Diagnosis, convention_match, diagnose
from normcheck.isolation import IsolatedCandidate, WorkerLost
from normcheck.references import correct_outputs
from normcheck.reproducer import REPRODUCER_DIR, bits, snippet
from normcheck.strategies import (
    HIDDEN_SIZES,
    REGIMES,
    RESIDUAL_REGIMES,
    WEIGHT_REGIMES,
    NormInput,
    Source,
    compute_format,
    make_input,
    make_residual,
    norm_inputs,
)
from normcheck.timing import Pace, time_limit, too_slow
from oracles import FloatFormat, resolve_format, round_floats

OUTPUTS = ("y", "dx", "dw", "db", "residual_out", "dresidual")
#: What an audit checks; a finding names one.
CHECKS = (
    "accuracy",
    "nonfinite",
    "exception",
    "crash",
    "timeout",
    "shape",
    "dtype",
    "mutation",
    "nondeterminism",
    "bias",
)
#: Failures that cost the worker process: their hidden-size block is not run again in that dtype.
LOST_FAILURES = ("crash", "timeout")
#: Crashes and timeouts per dtype after which, if they outnumber the calls that returned, the dtype's
#: remaining inputs are skipped (an implementation that dies or hangs everywhere costs a few of them).
MAX_LOST = 3
#: Bias test: the mean error (in ulps, toward larger magnitude) a correct rounding cannot show.
BIAS_ULPS, BIAS_Z = 0.1, 8.0
#: Bins of the ULP-error histograms: 0, then powers of two from 2**-10 to 2**30.
HIST_EDGES = np.concatenate([[0.0], 2.0 ** np.arange(-10, 31)])
#: Failing inputs the diagnosis looks at per finding.
MAX_DIAGNOSED = 6
#: (hidden size, rows) of the structured cases of every regime: small, odd, and long rows past the block sizes
#: at which kernels switch to multi-block paths (8192, 16384); random rows also at LONGEST.
STRUCTURED_SIZES = ((3, 2), (61, 3), (4097, 1), (16385, 1))
LONGEST = 65537
#: Many short rows: kernels switch to a block kernel (several rows per program) at shapes like this
#: (Liger-Kernel's RMSNorm: rows >= 32768 at hidden sizes <= 256), so the default audit sends one.
MANY_ROWS = (32768, 16)
#: The regimes an exact ``--shape`` is audited in: random rows, and rows whose mean hides the signal.
SHAPE_REGIMES = ("normal", "offset")
#: How torch refuses parameters of another dtype than it computes in ("mixed dtype (CPU): expect parameter
#: to have scalar type of Float", "expected scalar type Float but found Half").
PARAMETER_DTYPE_ERROR = re.compile(r"dtype|scalar type", re.IGNORECASE)
#: The dtype parameters are kept in where a module refuses them in the input dtype.
KEPT_DTYPE = "float32"


@dataclass
class Finding:
    """One thing wrong with the implementation: the worst case seen, and the smallest input that shows it."""

    check: str  #: one of :data:`CHECKS`
    dtype: str
    output: str | None
    message: str  #: the headline: the worst case seen (largest error) for this check, dtype and output
    regime: str | None = None
    worst: dict | None = None
    diagnosis: Diagnosis | None = None
    reproducer: str | None = None
    #: The ``path`` and ``sha256`` of the file the reproducer loads a large input from, or None (inputs inline).
    reproducer_file: dict[str, str] | None = None
    example: NormInput | None = None  #: the input the reproducer rebuilds (the smallest failing one)
    occurrences: int = 1
    #: Further failing inputs of the same check (for the diagnosis; the reproducer uses ``example``).
    others: list[NormInput] = field(default_factory=list)
    severity: float = 0.0  #: how bad this occurrence is (ULP error for accuracy): the headline is the largest
    #: The smallest failing input's own message, regime and shape, where it is not the headline's input.
    minimal: dict | None = None
    detail: str | None = None  #: the worker's last output for a crash or timeout (a stack), or None


def too_slow_lines(entries: list[dict]) -> list[str]:
    """One line per dtype and shape of the inputs not run because they were predicted to take longer than
    the timeout (:attr:`AuditResult.too_slow`)."""
    groups: dict[tuple[str, str], list[float]] = {}
    for e in entries:
        groups.setdefault((e["dtype"], "x".join(map(str, e["shape"]))), []).append(e["predicted_s"])
    return [
        f"{dtype}: {shape} not run: too slow at this size (predicted {max(p):.3g} s)"
        + (f", {len(p)} inputs" if len(p) > 1 else "")
        for (dtype, shape), p in groups.items()
    ]


def smallest_input_note(minimal: dict | None) -> str | None:
    """The line that puts a finding's smallest failing input (its reproducer's) beside the worst case."""
    if not minimal:
        return None
    shape = "x".join(map(str, minimal["shape"]))
    return f"smallest failing input ({shape}, {minimal['regime']} rows, the reproducer's): {minimal['message']}"


class ErrorStats:
    """Errors of one output in one dtype and regime.

    The unit is the ulp of each element's scale S, the magnitude of the terms it is
    computed from (docs/bounds.md): it reads as the ULP error where the element does
    not cancel, and stays meaningful where it does. The plain ULP error is kept too,
    for the elements that do not cancel.
    """

    def __init__(self) -> None:
        self._signed: list[np.ndarray] = []
        self._plain: list[np.ndarray] = []
        self._binade: list[np.ndarray] = []
        self._n: list[np.ndarray] = []
        self.max_sharp = self.max_rigorous = 0.0  #: the largest bounds seen, in the same unit
        self.sharp_use = self.rigorous_use = 0.0  #: the largest error / bound ratios seen (below 1 for a pass)

    def add(
        self,
        signed: np.ndarray,
        sharp: np.ndarray,
        rigorous: np.ndarray,
        plain: np.ndarray,
        binade: np.ndarray,
        n: np.ndarray,
    ) -> None:
        """Per element: the signed error, the sharp and rigorous bounds (ulps of scale), the plain
        ULP error (NaN where the element cancels), ``floor(log2|exact|)`` and the hidden size."""
        if not signed.size:
            return
        self._signed.append(signed)
        self._plain.append(plain)
        self._binade.append(binade.astype(np.int32))
        self._n.append(n.astype(np.int32))
        self.max_sharp = max(self.max_sharp, float(np.max(sharp)))
        self.max_rigorous = max(self.max_rigorous, float(np.max(rigorous)))
        with np.errstate(all="ignore"):
            for attr, bound in (("sharp_use", sharp), ("rigorous_use", rigorous)):
                ratio = np.abs(signed) / bound
                ratio = ratio[np.isfinite(ratio)]
                if ratio.size:
                    setattr(self, attr, max(getattr(self, attr), float(ratio.max())))

    def merge(self, other: ErrorStats) -> None:
        """Fold another collector (another regime) into this one."""
        self._signed += other._signed
        self._plain += other._plain
        self._binade += other._binade
        self._n += other._n
        for attr in ("max_sharp", "max_rigorous", "sharp_use", "rigorous_use"):
            setattr(self, attr, max(getattr(self, attr), getattr(other, attr)))

    def distribution(self) -> dict:
        """Histogram of |error| (log bins) and max / mean error by |exact| binade and by hidden size."""
        if not self._signed:
            return {}
        a = np.abs(np.concatenate(self._signed))
        b, n = np.concatenate(self._binade), np.concatenate(self._n)
        counts, _ = np.histogram(np.clip(a, HIST_EDGES[0], HIST_EDGES[-1]), bins=HIST_EDGES)

        def by(keys: np.ndarray) -> dict[str, dict[str, float]]:
            return {
                str(int(k)): {
                    "count": int((keys == k).sum()),
                    "max": float(a[keys == k].max()),
                    "mean": float(a[keys == k].mean()),
                }
                for k in np.unique(keys)
            }

        return {
            "histogram": {"edges": HIST_EDGES.tolist(), "counts": counts.tolist()},
            "by_binade": by(b),
            "by_hidden_size": by(n),
        }

    def summary(self) -> dict[str, float | int | None]:
        if not self._signed:
            return {"count": 0}
        s = np.concatenate(self._signed)
        a = np.abs(s)
        plain = np.abs(np.concatenate(self._plain))
        plain = plain[np.isfinite(plain)]
        return {
            "count": int(a.size),
            "max": float(a.max()),
            "mean": float(a.mean()),
            "p99": float(np.percentile(a, 99)),
            "signed_mean": float(s.mean()),
            "max_ulp": float(plain.max()) if plain.size else None,
            "max_sharp": self.max_sharp,
            "max_rigorous": self.max_rigorous,
            "sharp_use": self.sharp_use,
            "rigorous_use": self.rigorous_use,
        }


@dataclass
class AuditResult:
    """Everything an audit found out; :attr:`passed` is the verdict."""

    target: str
    kind: str
    device: str
    weight_offset: int
    dtypes: list[str]
    eps: dict[str, float]
    forward_only: bool
    seed: int
    examples: int
    findings: list[Finding] = field(default_factory=list)
    stats: dict[tuple[str, str, str], ErrorStats] = field(default_factory=dict)
    #: per (dtype, output): the formulas of both tiers, {"rigorous": ..., "sharp": ...}
    bound_reasons: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    conventions: dict[str, dict[str, float]] = field(default_factory=dict)
    #: A fused residual-add's style ("return" or "inplace") and, per dtype, how many inputs' y normalized
    #: which sum: the one rounded to the dtype, or the one kept in the compute precision.
    fused_style: str | None = None
    residual_sums: dict[str, dict[str, int]] = field(default_factory=dict)
    cases: int = 0
    seconds: float = 0.0
    #: Inputs not run per dtype, because of crashes or timeouts at their hidden size (see ``MAX_LOST``).
    skipped: dict[str, int] = field(default_factory=dict)
    restarts: int = 0  #: worker processes started again after a crash or timeout
    #: Per dtype whose parameters were kept in float32 instead (the module refused them in that dtype): why.
    kept_parameters: dict[str, str] = field(default_factory=dict)
    #: Inputs not run because smaller ones predict they take longer than the timeout (normcheck.timing):
    #: ``{"dtype", "shape", "regime", "predicted_s"}`` each. Slow is not hung: they are not findings.
    too_slow: list[dict] = field(default_factory=list)
    isolation: str = "worker process"  #: where the implementation ran: "worker process" or "in-process"
    #: Seconds spent per part of the audit (see :data:`TIMED`); the rest of :attr:`seconds` is the search's own.
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.findings

    def totals(self) -> dict[tuple[str, str], ErrorStats]:
        """The statistics per (dtype, output), every regime folded together, in dtype order."""
        merged: dict[tuple[str, str], ErrorStats] = {}
        for (dtype, output, _regime), stats in sorted(
            self.stats.items(), key=lambda kv: (self.dtypes.index(kv[0][0]), kv[0][1])
        ):
            merged.setdefault((dtype, output), ErrorStats()).merge(stats)
        return merged

    def stat(self, dtype: str, output: str, regime: str) -> ErrorStats:
        return self.stats.setdefault((dtype, output, regime), ErrorStats())

    def add_errors(self, dtype: str, output: str, regime: str, *errors: np.ndarray) -> None:
        """:meth:`ErrorStats.add` on the statistics of one output, dtype and regime."""
        self.stat(dtype, output, regime).add(*errors)


#: Where an audit's time goes: calls of the implementation (``kernels``: inside its forward and
#: backward, device synchronized; the rest of ``implementation`` is copies to and from the device and
#: the worker process), the exact oracle, and the bounds (with the correct references they rest on).
TIMED = ("implementation", "kernels", "oracle", "bounds")


def _oracle(
    kind: str, case: NormInput, w: np.ndarray | None, b: np.ndarray | None, eps: float, offset: int, grad: bool
) -> dict[str, oracles.Exact]:
    x, g = case.x, case.grad
    if kind == "rmsnorm":
        out = {"y": oracles.rms_norm(x, w, eps, offset)}
        if grad:
            out["dx"], dw = oracles.rms_norm_backward(x, g, w, eps, offset)
            if dw is not None:
                out["dw"] = dw
        return out
    out = {"y": oracles.layer_norm(x, w, b, eps, offset)}
    if grad:
        out["dx"], dw, db = oracles.layer_norm_backward(x, g, w, b, eps, offset)
        if dw is not None:
            out["dw"] = dw
        if db is not None:
            out["db"] = db
    return out


def _decisiveness(d: Diagnosis) -> tuple[float, float]:
    """How clearly a diagnosis separates its best match from the runner-up."""
    if not d.matches:
        return (0.0, 0.0)
    top = d.matches[0]
    second = d.matches[1].agreement if len(d.matches) > 1 else 0.0
    return (top.agreement - second, top.agreement)


def _case_key(case: NormInput) -> tuple:
    """Identifies an input by its bits: hypothesis may build the same input again."""
    arrays = (case.x, case.weight, case.bias, case.grad, *(() if case.residual is None else (case.residual,)))
    return (case.strided, *(a.shape for a in arrays), *(bits(a).tobytes() for a in arrays))


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
        smallest = min(reversed(with_input), key=lambda f: f.example.x.size) if with_input else worst
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
            if id(f.example) not in seen:
                seen.add(id(f.example))
                head.others.append(f.example)
        merged.append(head)
    return merged


def _rows(case: NormInput) -> int:
    """How many rows of its hidden size the input holds (every leading dimension together)."""
    return case.x.size // case.n


def size_block(n: int) -> tuple[int, int]:
    """The hidden sizes sharing ``n``'s power-of-two block (``(2049, 4096)`` for 4097...): kernels pick
    their block size, and often their code path, by it, so a crash at one size predicts the others."""
    hi = 1 << max(0, (n - 1).bit_length())
    return hi // 2 + 1 if hi > 1 else 1, hi


@dataclass
class _Lost:
    """Crashes and timeouts of one dtype: the size blocks they hit, and the inputs skipped since."""

    blocks: set[tuple[int, int]] = field(default_factory=set)
    events: int = 0
    returned: int = 0  #: calls that came back (whatever their answer)
    skipped: int = 0

    def gave_up(self) -> bool:
        return self.events >= MAX_LOST and self.events > self.returned


class Auditor:
    """Audits one implementation (a :class:`Candidate`, in this process or a worker) across dtypes."""

    def __init__(
        self,
        candidate: Candidate | IsolatedCandidate,
        *,
        spec: str,
        kind: str,
        weight_offset: int = 0,
        dtypes: tuple[str, ...] = ("float16", "bfloat16", "float32"),
        hidden_sizes: tuple[int, ...] = (),
        shapes: tuple[tuple[int, ...], ...] = (),
        examples: int = 100,
        seed: int = 0,
        grad: bool = True,
        progress: Callable[[str], None] | None = None,
        reproducer_dir: str = REPRODUCER_DIR,
    ) -> None:
        self.c, self.spec, self.kind, self.offset = candidate, spec, kind, weight_offset
        self.reproducer_dir = reproducer_dir  #: where reproducers of large inputs store them
        self.dtypes, self.examples, self.seed, self.grad = dtypes, examples, seed, grad
        self.hidden_sizes = tuple(hidden_sizes) or HIDDEN_SIZES
        self.shapes = tuple(tuple(shape) for shape in shapes)
        self.progress = progress or (lambda _msg: None)
        self._collecting = True
        self._lost: dict[str, _Lost] = {}
        #: Dtypes whose parameter dtype is settled: a call answered, or float32 parameters were tried.
        self._settled: set[str] = set()
        self._pace: dict[tuple[str, bool], Pace] = {}  #: per dtype and gradients on or off
        self.result = AuditResult(spec, kind, candidate.device, weight_offset, list(dtypes), {}, False, seed, examples)
        self.result.isolation = "worker process" if isinstance(candidate, IsolatedCandidate) else "in-process"
        self.fused = candidate.fused is not None

    # -- calling the implementation -------------------------------------------------

    def _params(self, case: NormInput, dtype: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The weight and bias the implementation gets for ``case``, in the dtype it stores them in."""
        layout = self.c.describe(case.n, dtype)
        pfmt = resolve_format(layout.parameter_dtype)
        w = round_floats(case.weight, pfmt) if layout.has_weight else None
        b = round_floats(case.bias, pfmt) if layout.has_bias and self.kind == "layernorm" else None
        return w, b

    def _run(self, case: NormInput, dtype: str, *, grad: bool) -> Run | None:
        """Call the implementation on ``case``; None where earlier crashes or timeouts say not to.

        A crash or timeout is not triggered again in the same hidden-size block
        (:func:`size_block`) and dtype, and after :data:`MAX_LOST` of them, if they
        outnumber the calls that came back, the dtype's remaining inputs are skipped:
        an implementation that dies or hangs costs a bounded time. An input that the calls before it
        predict to take longer than the timeout is not run either (:mod:`normcheck.timing`).
        """
        lost = self._lost.setdefault(dtype, _Lost())
        if size_block(case.n) in lost.blocks or lost.gave_up():
            lost.skipped += self._collecting  # inputs of the audit, not hypothesis' shrinking attempts
            return None
        g = case.grad if grad and self.c.supports_grad else None
        rows, timeout = _rows(case), self.c.timeout
        pace = self._pace.setdefault((dtype, g is not None), Pace())
        predicted = pace.predict(rows, case.n)
        if too_slow(predicted, timeout):
            if self._collecting:
                entry = {"dtype": dtype, "shape": list(case.x.shape), "regime": case.regime, "predicted_s": predicted}
                self.result.too_slow.append(entry)
            return None
        try:
            w, b = self._params(case, dtype)
        except WorkerLost as exc:  # building the module took the worker down
            run = Run(failure=exc.failure, error=exc.error, detail=exc.detail)
        else:
            start = time.perf_counter()
            with self._clock("implementation"), self._allowing(time_limit(predicted, timeout)):
                run = self.c.run(case.x, w, b, g, case.strided, residual=case.residual)
            if run.failure is None:
                pace.record(rows, case.n, time.perf_counter() - start)
            elif run.failure == "timeout" and predicted is not None:
                run = replace(run, error=f"{run.error}; {predicted:.3g} s predicted from the calls before it")
            self.result.timing["kernels"] = self.result.timing.get("kernels", 0.0) + run.seconds
        if run.failure in LOST_FAILURES:
            lost.blocks.add(size_block(case.n))
            lost.events += 1
        else:
            lost.returned += 1
        if run.failure is None:
            self._settled.add(dtype)
        elif self._refuses_parameters(run, dtype):
            return self._keep_parameters(case, dtype, run, grad=grad)
        return run

    def _refuses_parameters(self, run: Run, dtype: str) -> bool:
        """Whether ``run``, before any answer in ``dtype``, is a torch module refusing parameters in ``dtype``."""
        return (
            run.failure == "exception"
            and dtype not in self._settled
            and dtype != KEPT_DTYPE
            and self.c.framework == "torch"
            and PARAMETER_DTYPE_ERROR.search(run.error or "") is not None
        )

    def _keep_parameters(self, case: NormInput, dtype: str, refused: Run, *, grad: bool) -> Run:
        """Call again with the parameters in float32 (as transformers keeps modules that compute in float32
        with float32 weights): where that answers, they stay in float32 for ``dtype``, and the report says so."""
        self._settled.add(dtype)
        self.c.keep_parameters(dtype, KEPT_DTYPE)
        run = self._run(case, dtype, grad=grad)
        if run is not None and run.failure is None:
            self.result.kept_parameters[dtype] = (
                f"parameters kept in {KEPT_DTYPE}: the implementation refuses {dtype} ones ({refused.error})"
            )
            return run
        self.c.keep_parameters(dtype, None)
        return refused

    def _exact(self, case: NormInput, dtype: str, grad: bool) -> dict[str, oracles.Exact]:
        w, b = self._params(case, dtype)
        eps = self.c.describe(case.n, dtype).eps
        with self._clock("oracle"):
            return _oracle(self.kind, case, w, b, eps, self.offset, grad)

    @contextmanager
    def _allowing(self, seconds: float) -> Iterator[None]:
        """Let the implementation's calls inside the block take ``seconds`` before they count as hung."""
        timeout, self.c.timeout = self.c.timeout, seconds
        try:
            yield
        finally:
            self.c.timeout = timeout

    @contextmanager
    def _clock(self, part: str) -> Iterator[None]:
        """Add the time the block takes to ``result.timing[part]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.result.timing[part] = self.result.timing.get(part, 0.0) + time.perf_counter() - start

    def _output_format(self, name: str, case: NormInput, dtype: str) -> FloatFormat:
        """``dw`` and ``db`` come in the parameters' dtype, every other output in the input dtype."""
        return resolve_format(dtype if name not in ("dw", "db") else self.c.describe(case.n, dtype).parameter_dtype)

    # -- a fused residual-add ---------------------------------------------------------

    def normalized(self, case: NormInput, dtype: str, y: np.ndarray | None = None) -> tuple[NormInput, str | None]:
        """What the norm of ``case`` most likely normalizes (the first of :meth:`sums`), and which sum."""
        which, option = self.sums(case, dtype, y)[0]
        return option, which

    def sums(self, case: NormInput, dtype: str, y: np.ndarray | None = None) -> list[tuple[str | None, NormInput]]:
        """What the norm of ``case`` may normalize: ``x`` itself, or a fused residual-add's sums, named.

        Correct fused kernels normalize the sum rounded to the dtype (the unfused composition) or the
        sum kept in their compute precision. Where the two differ and the implementation's ``y`` is
        given, both come back, the one whose exact norm ``y``'s worst element is nearer to (in ulps)
        first; else the rounded one alone, unnamed. :meth:`judge` judges against the first that a
        correct implementation passes (the two norms may differ by less than the roundings a correct
        convention makes, as Llama's cast of xhat, so nearness alone can pick the wrong one).
        """
        if case.residual is None:
            return [(None, case)]
        fmt = resolve_format(dtype)
        total = oracles.residual_sum(case.x, case.residual)
        comp = compute_format(fmt)
        sums = {f"rounded to {dtype}": total.round(fmt), f"kept in {comp.name}": total.round(comp)}
        options = {name: replace(case, x=np.array(s), residual=None) for name, s in sums.items()}
        rounded = next(iter(options))
        if y is None or y.shape != case.x.shape or np.array_equal(*sums.values(), equal_nan=True):
            return [(None, options[rounded])]
        yd = np.asarray(y, np.float64)

        def distance(name: str) -> float:
            exact = self._exact(options[name], dtype, grad=False)["y"].approx
            with np.errstate(all="ignore"):
                d = np.abs(yd - exact) / ulp(exact, fmt)
            return float(d.max(initial=0.0, where=np.isfinite(d)))

        return [(name, options[name]) for name in sorted(options, key=distance)]

    def _residual_out(self, case: NormInput, dtype: str) -> tuple[oracles.Exact, Bound]:
        """The exact ``x + residual`` and what a correct residual_out may be off by: half an ulp, and a
        rounding in the compute precision first (a sum in float32 rounded to bfloat16 rounds twice)."""
        fmt = resolve_format(dtype)
        total = oracles.residual_sum(case.x, case.residual)
        comp = compute_format(fmt)
        with np.errstate(all="ignore"):
            scale = np.abs(total.approx)
            twice = unit_roundoff(comp) * scale if comp.precision > fmt.precision else 0.0
            allowed = np.broadcast_to(0.5 * exact_ulp(total, fmt) + twice, total.shape)
        reason = f"0.5 ulp(x + residual) + u_{comp.name}*|x + residual| (rounded once, or via {comp.name})"
        if comp.precision == fmt.precision:
            reason = "0.5 ulp(x + residual) (correctly rounded)"
        bound = Bound(fmt, scale, allowed, np.zeros(total.shape), allowed, reason, allowed, reason)
        return total, bound

    # -- one input --------------------------------------------------------------

    def check(self, case: NormInput, dtype: str) -> list[Finding]:
        """Run the implementation and the oracle on one input; return what is wrong."""
        run = self._run(case, dtype, grad=self.grad)
        return [] if run is None else self.judge(case, dtype, run)

    def judge(self, case: NormInput, dtype: str, run: Run) -> list[Finding]:
        """What is wrong with ``run``, the implementation's answer on ``case``."""
        self.result.cases += 1
        findings = self._run_problems(run, case, dtype)
        if run.y is None or run.failure:
            return findings
        got = {"y": run.y, "dx": run.dx, "dw": run.dw, "db": run.db, "residual_out": run.residual_out}
        if run.fused_style is not None:
            self.result.fused_style = run.fused_style
        if case.residual is not None:
            got["dresidual"] = run.dresidual
        tried = []
        for which, option in self.sums(case, dtype, run.y):
            records: list[Callable[[], None]] = []
            found = self._judge_outputs(got, option, case, dtype, self.grad and run.dx is not None, records)
            tried.append((which, found, records))
            if not any(f.check == "accuracy" for f in found):
                break
        which, found, records = next((t for t in tried if not any(f.check == "accuracy" for f in t[1])), tried[0])
        for record in records:
            record()
        if which is not None and self._collecting:
            counts = self.result.residual_sums.setdefault(dtype, {})
            counts[which] = counts.get(which, 0) + 1
        return findings + found

    def _judge_outputs(
        self,
        got: dict[str, np.ndarray | None],
        normalized: NormInput,
        case: NormInput,
        dtype: str,
        grad: bool,
        records: list[Callable[[], None]],
    ) -> list[Finding]:
        """Every output in ``got`` against the exact outputs on ``normalized`` (``case``'s x, or a fused
        sum); what they would record (bound reasons, statistics) goes into ``records``, for :meth:`judge`
        to keep or drop."""
        exact, limits = self._measure(normalized, dtype, grad)
        if case.residual is not None:  # the residual's gradient is x's: both reach the norm through the sum
            for table in (exact, limits):
                if "dx" in table:
                    table["dresidual"] = table["dx"]
            exact["residual_out"], limits["residual_out"] = self._residual_out(case, dtype)
        findings = []
        for name, ex in exact.items():
            cand = got.get(name)
            if cand is None:
                continue
            if np.shape(cand) != ex.shape:
                findings.append(
                    Finding(
                        "shape",
                        dtype,
                        name,
                        f"{name} has shape {np.shape(cand)}, expected {ex.shape}",
                        case.regime,
                        example=case,
                    )
                )
                continue
            limit = limits[name]
            reasons = {"rigorous": limit.reason, "sharp": limit.sharp_reason}
            records.append(partial(self.result.bound_reasons.__setitem__, (dtype, name), reasons))
            findings += self._judge_output(name, cand, ex, limit, case, dtype, records)
        return findings

    def _measure(self, case: NormInput, dtype: str, grad: bool) -> tuple[dict[str, oracles.Exact], dict[str, Bound]]:
        """The exact outputs on ``case`` and both tiers of their bounds."""
        fmt = resolve_format(dtype)
        layout = self.c.describe(case.n, dtype)
        self.result.eps[dtype] = layout.eps
        w, b = self._params(case, dtype)
        g = case.grad if grad else None
        exact = self._exact(case, dtype, grad)
        param_fmt = resolve_format(layout.parameter_dtype)
        with self._clock("bounds"):
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
            computed, conventions = correct_outputs(self.kind, case.x, w, b, g, layout.eps, self.offset)
            if case.x.dtype != fmt.dtype:  # a fused sum kept in the compute precision: conventions ran in that
                computed, conventions = computed + conventions, None
            return exact, sharpen(limits, fmt, exact, computed, conventions)

    def _run_problems(self, run: Run, case: NormInput, dtype: str) -> list[Finding]:
        out = []
        if run.failure == "exception":
            out.append(
                Finding("exception", dtype, None, f"the implementation raised {run.error}", case.regime, example=case)
            )
        elif run.failure is not None:  # crash or timeout
            shape = "x".join(map(str, case.x.shape))
            lo, hi = size_block(case.n)
            out.append(
                Finding(
                    run.failure,
                    dtype,
                    None,
                    f"{run.error} (input {shape}, {case.regime} rows; hidden sizes {lo}-{hi} are not run again "
                    f"in {dtype})",
                    case.regime,
                    example=case,
                    detail=run.detail,
                )
            )
        for p in run.problems:
            check = "dtype" if "dtype" in p else "shape"
            out.append(Finding(check, dtype, "y", p, case.regime, example=case))
        if run.mutated:
            what = " and ".join(run.mutated)
            out.append(
                Finding(
                    "mutation",
                    dtype,
                    None,
                    f"the implementation wrote into its input {what} (in place); outputs are still judged "
                    "against the original input",
                    case.regime,
                    example=case,
                )
            )
        return out

    def _judge_output(
        self,
        name: str,
        cand: np.ndarray,
        ex: oracles.Exact,
        limit: Bound,
        case: NormInput,
        dtype: str,
        records: list[Callable[[], None]],
    ) -> list[Finding]:
        fmt = limit.fmt  # the output's format: the parameters' for dw and db
        c = np.asarray(cand, dtype=np.float64)
        defined = ~ex.undefined
        findings = []
        nonfinite = defined & ~np.isfinite(c)
        if nonfinite.any():
            # Where the exact value overflows the format, or a correct computation may (the exact value plus the
            # rigorous bound reaches the rounding threshold of overflow, or the terms of a convention that rounds
            # them into the format do: T5's two paths of dx), an infinity of its sign is right, and so is a NaN
            # (an intermediate inf - inf).
            rounded = ex.round(fmt).astype(np.float64)
            overflow = float(fmt.max_finite) + 2.0 ** (fmt.emax - fmt.precision)
            with np.errstate(invalid="ignore"):
                overflows = np.isinf(rounded) | (np.abs(ex.approx) + limit.rigorous >= overflow)
                overflows |= (limit.intermediate > 0) & (limit.scale >= overflow)
                bad_special = nonfinite & ~(overflows & (np.isnan(c) | (np.sign(c) == np.sign(ex.approx))))
            if bad_special.any():
                i = tuple(int(v) for v in np.argwhere(bad_special)[0])
                findings.append(
                    Finding(
                        "nonfinite",
                        dtype,
                        name,
                        f"{name} is {c[i]} where the exact value is finite "
                        f"({ex.approx[i]:.6g}, rounds to {rounded[i]:.6g}); {int(bad_special.sum())} such elements",
                        case.regime,
                        worst={"index": list(i), "candidate": float(c[i]), "exact": float(ex.approx[i])},
                        example=case,
                        severity=float(bad_special.sum()),
                    )
                )
        judged = defined & np.isfinite(c)
        if not judged.any():
            return findings
        sharp = np.minimum(limit.sharp, limit.rigorous)
        with np.errstate(all="ignore"):
            unit = ulp(limit.scale, fmt)
            err = np.where(judged, c - ex.approx, 0.0)
            signed = err / unit
            sharp_ulps, rigorous_ulps = sharp / unit, limit.rigorous / unit
            # The plain ULP error, where the element does not cancel against its own terms.
            whole = judged & (np.abs(ex.approx) >= limit.scale / 16)
            plain = np.where(whole, err / ulp(ex.approx, fmt), np.nan)
        if self._collecting:
            with np.errstate(divide="ignore"):
                binade = np.floor(np.log2(np.abs(ex.approx[judged])))
            records.append(
                partial(
                    self.result.add_errors,
                    dtype,
                    name,
                    case.regime,
                    signed[judged],
                    sharp_ulps[judged],
                    rigorous_ulps[judged],
                    plain[judged],
                    np.nan_to_num(binade, neginf=fmt.emin - fmt.precision),
                    np.full(int(judged.sum()), case.n),
                )
            )
        over_sharp = ex.exceeds(c, sharp) & judged
        if not over_sharp.any():
            return findings
        over_rigorous = ex.exceeds(c, limit.rigorous) & judged
        tier = "rigorous" if over_rigorous.any() else "sharp"
        crossed = over_rigorous if tier == "rigorous" else over_sharp
        i = tuple(int(v) for v in np.unravel_index(int(np.argmax(np.where(crossed, np.abs(signed), -1))), c.shape))
        e, sharp_i, rigorous_i = abs(signed[i]), sharp_ulps[i], rigorous_ulps[i]
        if tier == "rigorous":
            how = (
                f"beyond the rigorous bound ({rigorous_i:.3g} ulp: no correct implementation can be this far off), "
                f"{e / sharp_i:.3g}x the sharp bound"
            )
        else:
            how = (
                f"{e / sharp_i:.3g}x the sharp bound ({sharp_i:.3g} ulp, {FACTOR:g}x the worst correct computation "
                f"on this input; the rigorous bound, {rigorous_i:.3g} ulp, is not crossed)"
            )
        value_ulp = ""
        if name != "y" and not np.isnan(plain[i]) and not 0.5 < abs(plain[i]) / max(e, 1e-300) < 2:
            value_ulp = f" (of its terms' scale; {abs(plain[i]):.3g} ulp of itself)"
        shape = "x".join(map(str, case.x.shape))
        findings.append(
            Finding(
                "accuracy",
                dtype,
                name,
                f"{name} is {e:.3g} ulp{value_ulp} from the exact value at {list(i)}: {how}; "
                f"{int(crossed.sum())} of {int(judged.sum())} elements exceed the {tier} bound (input {shape})",
                case.regime,
                worst={
                    "index": list(i),
                    "shape": list(case.x.shape),
                    "regime": case.regime,
                    "tier": tier,
                    "candidate": float(c[i]),
                    "candidate_hex": float(c[i]).hex(),
                    "exact": float(ex.approx[i]),
                    "ulp_error": float(e),
                    "value_ulp_error": None if np.isnan(plain[i]) else float(abs(plain[i])),
                    "sharp_ulp": float(sharp_i),
                    "rigorous_ulp": float(rigorous_i),
                },
                example=case,
                severity=float(e),
            )
        )
        return findings

    def _nondeterminism(self, case: NormInput, dtype: str, first: Run, second: Run) -> list[Finding]:
        """A finding if two calls on the same input gave different bits, with both calls' ULP errors."""
        for name in OUTPUTS:
            a, c = getattr(first, name), getattr(second, name)
            if a is None or c is None or a.shape != c.shape or a.dtype != c.dtype:
                continue
            differ = bits(a) != bits(c)
            if not differ.any():
                continue
            errors = ""
            exact, limits = self._measure(case, dtype, grad=name != "y")
            if name in exact and exact[name].shape == a.shape:
                approx, unit = exact[name].approx, ulp(limits[name].scale, limits[name].fmt)
                with np.errstate(all="ignore"):
                    e1, e2 = (float(np.nanmax(np.abs(v.astype(np.float64) - approx) / unit)) for v in (a, c))
                errors = f": max error {e1:.3g} ulp on the first call, {e2:.3g} ulp on the second"
            return [
                Finding(
                    "nondeterminism",
                    dtype,
                    name,
                    f"two identical calls gave different {name} on {int(differ.sum())} of {a.size} elements{errors}",
                    case.regime,
                    example=case,
                )
            ]
        return []

    # -- phases ------------------------------------------------------------------

    def structured_cases(self, fmt: FloatFormat, eps: float) -> list[NormInput]:
        """Deterministic cases first: every regime at small, odd and long hidden sizes, every weight regime."""
        rng = np.random.default_rng(self.seed)
        src = Source(rng=rng)
        pdt = fmt
        cases = []
        # Short rows first: an implementation that dies on long rows has worked many times before it does.
        for n, count in (*STRUCTURED_SIZES, (LONGEST, 1)):
            for regime in REGIMES if n != LONGEST else ("normal",):
                cases.append(
                    make_input(
                        src, fmt, n=n, rows=count, regime=regime, eps=eps, weight_dtype=pdt, weight_offset=self.offset
                    )
                )
        for wreg in WEIGHT_REGIMES:
            cases.append(
                make_input(
                    src,
                    fmt,
                    n=64,
                    rows=4,
                    regime="normal",
                    eps=eps,
                    weight_dtype=pdt,
                    weight_offset=self.offset,
                    weight_regime=wreg,
                )
            )
        cases.append(make_input(src, fmt, n=1, rows=4, regime="normal", eps=eps, weight_offset=self.offset))
        cases.append(
            make_input(src, fmt, n=128, rows=4, regime="normal", eps=eps, weight_offset=self.offset, batched=True)
        )
        cases.append(
            make_input(src, fmt, n=256, rows=4, regime="normal", eps=eps, weight_offset=self.offset, strided=True)
        )
        rows, n = MANY_ROWS
        cases.append(make_input(src, fmt, n=n, rows=rows, regime="normal", eps=eps, weight_offset=self.offset))
        for shape in self.shapes:  # the user's own shapes: they pick the kernel's code path
            for regime in SHAPE_REGIMES:
                cases.append(
                    make_input(
                        src,
                        fmt,
                        n=shape[-1],
                        rows=1,
                        regime=regime,
                        eps=eps,
                        weight_offset=self.offset,
                        leading=shape[:-1],
                    )
                )
        if self.fused:  # every case gets a residual, each regime of x with several; each also at n = 61 and 4097
            k = len(RESIDUAL_REGIMES)
            cases = [self._add_residual(src, fmt, c, RESIDUAL_REGIMES[(i + i // k) % k]) for i, c in enumerate(cases)]
            for reg in RESIDUAL_REGIMES:
                for n, count in (STRUCTURED_SIZES[1], STRUCTURED_SIZES[2]):
                    plain = make_input(src, fmt, n=n, rows=count, regime="normal", eps=eps, weight_offset=self.offset)
                    cases.append(self._add_residual(src, fmt, plain, reg))
        return cases

    @staticmethod
    def _add_residual(src: Source, fmt: FloatFormat, case: NormInput, regime: str) -> NormInput:
        x, residual = make_residual(src, fmt, case.x, regime)
        return replace(case, x=x, residual=residual, residual_regime=regime)

    def aggregate_case(self, fmt: FloatFormat, eps: float) -> NormInput:
        """Many rows for the statistical checks (biased rounding, per-channel drift)."""
        src = Source(rng=np.random.default_rng(self.seed + 1))
        wreg = "near_zero" if self.offset else "normal"
        case = make_input(
            src, fmt, n=64, rows=512, regime="normal", eps=eps, weight_offset=self.offset, weight_regime=wreg
        )
        return self._add_residual(src, fmt, case, "small") if self.fused else case

    def audit_dtype(self, dtype: str) -> list[Finding]:
        fmt = resolve_format(dtype)
        try:
            eps = self.c.describe(self.hidden_sizes[0], dtype).eps
        except WorkerLost as lost:
            n = self.hidden_sizes[0]
            return [
                Finding(
                    lost.failure,
                    dtype,
                    None,
                    f"building the module (n={n}) took the worker down: {lost.error}",
                    detail=lost.detail,
                )
            ]
        self._collecting = True
        cases = self.structured_cases(fmt, eps)
        aggregate = self.aggregate_case(fmt, eps)
        # Inputs of more rows than the statistics' come after them: that call predicts their time (normcheck.timing).
        first = [c for c in cases if _rows(c) <= _rows(aggregate)]
        later = [c for c in cases if _rows(c) > _rows(aggregate)]

        def structured(batch: list[NormInput], start: int) -> list[Finding]:
            found = []
            for i, case in enumerate(batch, start + 1):
                self.progress(f"{dtype}: structured case {i}/{len(cases)} ({case.regime}, n={case.n})")
                found += self.check(case, dtype)
            return found

        findings = structured(first, 0)
        for case in first:  # two calls on a short and on a long row of random values, bit for bit
            if case.regime == "normal" and case.n in (STRUCTURED_SIZES[0][0], STRUCTURED_SIZES[2][0]):
                findings += self._determinism(case, dtype)
        self.progress(f"{dtype}: statistics over {aggregate.x.size} outputs")
        findings += self.check(aggregate, dtype)
        findings += self._bias(aggregate, dtype)
        findings += structured(later, len(first))
        findings += self._search(dtype, eps)
        return findings

    def _determinism(self, case: NormInput, dtype: str) -> list[Finding]:
        first = self._run(case, dtype, grad=self.grad)
        second = self._run(case, dtype, grad=self.grad)
        if first is None or second is None:
            return []
        return self._nondeterminism(case, dtype, first, second)

    def _bias(self, case: NormInput, dtype: str) -> list[Finding]:
        """Biased rounding (truncation) overall, and per-channel drift (a low-precision weight offset)."""
        fmt = resolve_format(dtype)
        if fmt.precision > 11 and dtype != "bfloat16":
            return []  # in fp32/fp64 outputs the compute error, not the final rounding, dominates
        n = case.n
        run = self._run(case, dtype, grad=False)
        if run is None or run.y is None or run.y.shape != case.x.shape:
            return []
        ex = self._exact(self.normalized(case, dtype, run.y)[0], dtype, grad=False)["y"]
        with np.errstate(all="ignore"):
            err = ex.signed_ulp_error(run.y.astype(fmt.dtype), fmt) * np.sign(ex.approx)
        err = err[np.isfinite(err)].reshape(-1, n) if np.isfinite(err).all() else err
        findings = []
        flat = np.ravel(err)
        flat = flat[np.isfinite(flat)]
        if flat.size >= 1000:
            mean, sd = float(flat.mean()), float(flat.std()) or 1.0
            z = mean / (sd / np.sqrt(flat.size))
            if abs(mean) > BIAS_ULPS and abs(z) > BIAS_Z:
                findings.append(
                    Finding(
                        "bias",
                        dtype,
                        "y",
                        f"y is biased {'toward zero' if mean < 0 else 'away from zero'} by {mean:+.3f} ulp "
                        f"on average over "
                        f"{flat.size} outputs (z = {z:.1f}); correct rounding is unbiased",
                        case.regime,
                        example=case,
                        severity=abs(mean),
                    )
                )
        if np.ndim(err) == 2 and err.shape[0] >= 64:
            # A channel drifts when it departs from the other channels (an overall bias is reported above).
            col_mean = err.mean(axis=0) - err.mean()
            col_z = col_mean / (err.std(axis=0) + 1e-12) * np.sqrt(err.shape[0])
            bad = (np.abs(col_mean) > 2 * BIAS_ULPS) & (np.abs(col_z) > BIAS_Z)
            if bad.any():
                j = int(np.argmax(np.abs(col_mean) * bad))
                findings.append(
                    Finding(
                        "bias",
                        dtype,
                        "y",
                        f"{int(bad.sum())} of {n} channels drift one way (channel {j}: {col_mean[j]:+.3f} ulp from the "
                        f"mean over {err.shape[0]} rows); a per-channel error such as a rounded weight offset",
                        case.regime,
                        example=case,
                        severity=abs(float(col_mean[j])),
                    )
                )
        return findings

    def _search(self, dtype: str, eps: float) -> list[Finding]:
        """Random search with hypothesis; a failure is shrunk to a minimal input.

        The implementation's answer to each distinct input is kept: when hypothesis
        runs an input again (to shrink or to replay its final example) it judges the
        first answer, and the new call is compared with it bit for bit, so a flaky
        implementation is a ``nondeterminism`` finding, never a flaky test.
        """
        if self.examples <= 0:
            return []
        failing: list[Finding] = []
        flaky: list[Finding] = []
        answers: dict[tuple, tuple[Run | None, list[Finding]]] = {}
        strategy = norm_inputs(
            dtype=dtype, eps=eps, hidden_sizes=self.hidden_sizes, weight_offset=self.offset, residual=self.fused
        )
        counter = [0]

        @seed(self.seed)
        @settings(
            max_examples=self.examples,
            database=None,
            deadline=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
            phases=(Phase.generate, Phase.shrink),
            report_multiple_bugs=False,
        )
        @given(strategy)
        def search(case: NormInput) -> None:
            counter[0] += 1
            if self._collecting:
                self.progress(f"{dtype}: search example {counter[0]}/{self.examples}")
            key = _case_key(case)
            if key in answers:
                first, found = answers[key]
                again = self._run(case, dtype, grad=self.grad) if first is not None and not flaky else None
                if again is not None and first is not None:
                    flaky.extend(self._nondeterminism(case, dtype, first, again))
            else:
                run = self._run(case, dtype, grad=self.grad)
                found = [] if run is None else self.judge(case, dtype, run)
                answers[key] = (run, found)
                failing.extend(found)
            if found:
                self._collecting = False
                raise AssertionError(found[0].message)

        try:
            search()
        except AssertionError:
            pass
        self._collecting = True
        return failing + flaky

    # -- the whole audit ----------------------------------------------------------

    def run(self) -> AuditResult:
        start = time.perf_counter()
        found: list[Finding] = []
        for dtype in self.dtypes:
            found += self.audit_dtype(dtype)
        self.result.findings = merge_findings(found)
        for f in self.result.findings:
            self._explain(f)
        self.result.forward_only = not self.c.supports_grad
        for dtype in self.dtypes:
            fmt = resolve_format(dtype)
            eps = self.result.eps.get(dtype)
            if eps is None:
                continue  # nothing of this dtype ran to completion
            case = self.aggregate_case(fmt, eps)
            run = self._run(case, dtype, grad=False)
            if run is not None and run.y is not None and run.y.shape == case.x.shape:
                w, b = self._params(case, dtype)
                x = self.normalized(case, dtype, run.y)[0].x
                if x.dtype == case.x.dtype:  # the emulations cannot hold a sum kept in a wider format
                    self.result.conventions[dtype] = convention_match(
                        self.kind, self.offset, run.y, fmt, x=x, weight=w, bias=b, eps=eps
                    )
        self.result.skipped = {d: lost.skipped for d, lost in self._lost.items() if lost.skipped}
        self.result.restarts = self.c.restarts if isinstance(self.c, IsolatedCandidate) else 0
        self.result.seconds = time.perf_counter() - start
        return self.result

    def _explain(self, f: Finding) -> None:
        """Attach the diagnosis and the reproducer to a finding."""
        case = f.example
        if case is None:
            return
        w, b = self._params(case, f.dtype)
        layout = self.c.describe(case.n, f.dtype)
        f.reproducer, f.reproducer_file = snippet(
            self.spec,
            self.c,
            self.kind,
            case,
            f.dtype,
            layout.eps,
            self.offset,
            w,
            b,
            output=f.output,
            folder=self.reproducer_dir,
        )
        if f.check not in ("accuracy", "nonfinite", "bias") or f.output in (None, "residual_out"):
            return
        output = "dx" if f.output == "dresidual" else f.output  # the same gradient, through the sum
        # Diagnose on every failing input kept (the smallest is often too small to tell bugs apart).
        candidates = []
        for example in [case, *f.others][:MAX_DIAGNOSED]:
            run = self._run(example, f.dtype, grad=f.output != "y")
            cand = None if run is None else getattr(run, f.output)
            if cand is None:
                continue
            w, b = self._params(example, f.dtype)
            candidates.append(
                diagnose(
                    self.kind,
                    output,
                    cand,
                    self._output_format(f.output, example, f.dtype),
                    x=self.normalized(example, f.dtype, run.y)[0].x,
                    weight=w,
                    bias=b,
                    grad=example.grad,
                    eps=self.c.describe(example.n, f.dtype).eps,
                    offset=self.offset,
                )
            )
        named = [d for d in candidates if d.bug is not None]
        pool = named or candidates
        if pool:
            f.diagnosis = max(pool, key=_decisiveness)
