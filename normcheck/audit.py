"""The audit engine: structured cases, then a hypothesis search; every output judged against the oracle.

Data flows one way: strategies -> inputs -> implementation and oracle -> ULP
errors against the bound -> findings (diagnosed, with a reproducer) -> result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings

import oracles
from normcheck.bounds import ROUNDINGS, bounds, exact_ulp
from normcheck.candidate import Candidate, Run
from normcheck.diagnosis import Diagnosis, convention_match, diagnose
from normcheck.errors import UsageError
from normcheck.reproducer import snippet
from normcheck.strategies import HIDDEN_SIZES, REGIMES, WEIGHT_REGIMES, NormInput, Source, make_input, norm_inputs
from oracles import FloatFormat, resolve_format

OUTPUTS = ("y", "dx", "dw", "db")
#: Bias test: the mean error (in ulps, toward larger magnitude) a correct rounding cannot show.
BIAS_ULPS, BIAS_Z = 0.1, 8.0
#: Bins of the ULP-error histograms: 0, then powers of two from 2**-10 to 2**30.
HIST_EDGES = np.concatenate([[0.0], 2.0 ** np.arange(-10, 31)])
#: Failing inputs the diagnosis looks at per finding.
MAX_DIAGNOSED = 6


@dataclass
class Finding:
    """One thing wrong with the implementation, with the smallest input that shows it."""

    check: str  #: accuracy, nonfinite, exception, shape, dtype, mutation, nondeterminism, bias
    dtype: str
    output: str | None
    message: str
    regime: str | None = None
    worst: dict | None = None
    diagnosis: Diagnosis | None = None
    reproducer: str | None = None
    example: NormInput | None = None
    occurrences: int = 1
    #: Further failing inputs of the same check (for the diagnosis; the reproducer uses ``example``).
    others: list[NormInput] = field(default_factory=list)


class ErrorStats:
    """ULP errors of one output in one dtype and regime."""

    def __init__(self) -> None:
        self._abs: list[np.ndarray] = []
        self._signed: list[np.ndarray] = []
        self._binade: list[np.ndarray] = []
        self._n: list[np.ndarray] = []
        self.max_allowed = 0.0
        self.bound_use = 0.0  #: the largest error / allowed ratio seen (below 1 for a pass)

    def add(self, signed: np.ndarray, allowed: np.ndarray, binade: np.ndarray, n: np.ndarray) -> None:
        """Errors (signed, in ulps), their bounds, ``floor(log2|exact|)`` and the hidden size, per element."""
        if signed.size:
            self._signed.append(signed)
            self._abs.append(np.abs(signed))
            self._binade.append(binade.astype(np.int32))
            self._n.append(n.astype(np.int32))
            self.max_allowed = max(self.max_allowed, float(np.max(allowed)))
            with np.errstate(all="ignore"):
                ratio = np.abs(signed) / allowed
            ratio = ratio[np.isfinite(ratio)]
            if ratio.size:
                self.bound_use = max(self.bound_use, float(ratio.max()))

    def merge(self, other: ErrorStats) -> None:
        """Fold another collector (another regime) into this one."""
        self._abs += other._abs
        self._signed += other._signed
        self._binade += other._binade
        self._n += other._n
        self.max_allowed = max(self.max_allowed, other.max_allowed)
        self.bound_use = max(self.bound_use, other.bound_use)

    def distribution(self) -> dict:
        """Histogram of |error| (log bins) and max / mean error by |exact| binade and by hidden size."""
        if not self._abs:
            return {}
        a, b, n = np.concatenate(self._abs), np.concatenate(self._binade), np.concatenate(self._n)
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

    def summary(self) -> dict[str, float | int]:
        if not self._abs:
            return {"count": 0}
        a, s = np.concatenate(self._abs), np.concatenate(self._signed)
        return {
            "count": int(a.size),
            "max": float(a.max()),
            "mean": float(a.mean()),
            "p99": float(np.percentile(a, 99)),
            "signed_mean": float(s.mean()),
            "max_allowed": self.max_allowed,
            "bound_use": self.bound_use,
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
    bound_reasons: dict[tuple[str, str], str] = field(default_factory=dict)
    conventions: dict[str, dict[str, float]] = field(default_factory=dict)
    cases: int = 0
    seconds: float = 0.0

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


class Auditor:
    """Audits one implementation (a :class:`Candidate`) across dtypes."""

    def __init__(
        self,
        candidate: Candidate,
        *,
        spec: str,
        kind: str,
        weight_offset: int = 0,
        dtypes: tuple[str, ...] = ("float16", "bfloat16", "float32"),
        hidden_sizes: tuple[int, ...] = (),
        examples: int = 100,
        seed: int = 0,
        grad: bool = True,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.c, self.spec, self.kind, self.offset = candidate, spec, kind, weight_offset
        self.dtypes, self.examples, self.seed, self.grad = dtypes, examples, seed, grad
        self.hidden_sizes = tuple(hidden_sizes) or HIDDEN_SIZES
        self.progress = progress or (lambda _msg: None)
        self._collecting = True
        self.result = AuditResult(spec, kind, candidate.device, weight_offset, list(dtypes), {}, False, seed, examples)

    # -- one input --------------------------------------------------------------

    def check(self, case: NormInput, dtype: str) -> list[Finding]:
        """Run the implementation and the oracle on one input; return what is wrong."""
        fmt = resolve_format(dtype)
        n = case.n
        eps = self.c.eps(n, dtype)
        self.result.eps[dtype] = eps
        pfmt = resolve_format(self.c.parameter_dtype(n, dtype))
        w, b = self._w(case, dtype), self._b(case, dtype)
        want_grad = self.grad and self.c.supports_grad
        run = self.c.run(case.x, w, b, case.grad if want_grad else None, strided=case.strided)
        self.result.cases += 1
        findings = self._run_problems(run, case, dtype)
        if run.y is None or run.error:
            return findings
        got = {"y": run.y, "dx": run.dx, "dw": run.dw, "db": run.db}
        exact = _oracle(self.kind, case, w, b, eps, self.offset, want_grad and self.c.supports_grad)
        limits = bounds(self.kind, fmt, case.x, exact, weight=w, bias=b, grad=case.grad, eps=eps, offset=self.offset)
        for name, ex in exact.items():
            cand = got.get(name)
            if cand is None:
                continue
            out_fmt = fmt if name in ("y", "dx") else pfmt
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
            self.result.bound_reasons[(dtype, name)] = limits[name].reason
            findings += self._judge(name, cand, ex, limits[name].allowed, out_fmt, case, dtype)
        return findings

    def _run_problems(self, run: Run, case: NormInput, dtype: str) -> list[Finding]:
        out = []
        if run.error:
            out.append(
                Finding("exception", dtype, None, f"the implementation raised {run.error}", case.regime, example=case)
            )
        for p in run.problems:
            check = "dtype" if "dtype" in p else "shape"
            out.append(Finding(check, dtype, "y", p, case.regime, example=case))
        if run.mutated:
            out.append(
                Finding(
                    "mutation", dtype, None, "the implementation modified its input in place", case.regime, example=case
                )
            )
        return out

    def _judge(
        self,
        name: str,
        cand: np.ndarray,
        ex: oracles.Exact,
        allowed: np.ndarray,
        fmt: FloatFormat,
        case: NormInput,
        dtype: str,
    ) -> list[Finding]:
        c = np.asarray(cand, dtype=np.float64)
        defined = ~ex.undefined
        rounded = ex.round(fmt).astype(np.float64)
        findings = []
        bad_special = defined & ~np.isfinite(c) & ~((c == rounded) & np.isinf(rounded))
        if bad_special.any():
            i = tuple(int(v) for v in np.argwhere(bad_special)[0])
            findings.append(
                Finding(
                    "nonfinite",
                    dtype,
                    name,
                    f"{name} is {c[i]} where the exact value is finite "
                    f"({ex.approx[i]:.6g}, rounds to {rounded[i]:.6g})",
                    case.regime,
                    worst={"index": list(i), "candidate": float(c[i]), "exact": float(ex.approx[i])},
                    example=case,
                )
            )
        judged = defined & np.isfinite(c)
        if not judged.any():
            return findings
        with np.errstate(all="ignore"):
            signed = np.where(judged, ex.signed_ulp_error(c.astype(fmt.dtype), fmt), 0.0)
            allowed_ulps = allowed / exact_ulp(ex, fmt)
        # A bound that cannot be computed (NaN scales) falls back to the final roundings alone.
        allowed_ulps = np.where(np.isnan(allowed_ulps), ROUNDINGS, allowed_ulps)
        if self._collecting:
            with np.errstate(divide="ignore"):
                binade = np.floor(np.log2(np.abs(ex.approx[judged])))
            self.result.stat(dtype, name, case.regime).add(
                signed[judged],
                allowed_ulps[judged],
                np.nan_to_num(binade, neginf=fmt.emin - fmt.precision),
                np.full(int(judged.sum()), case.n),
            )
        excess = np.where(judged, np.abs(signed) - allowed_ulps, -np.inf)
        if excess.max() > 0:
            i = tuple(int(v) for v in np.unravel_index(int(np.argmax(excess)), excess.shape))
            count = int((excess > 0).sum())
            findings.append(
                Finding(
                    "accuracy",
                    dtype,
                    name,
                    f"{name} is {abs(signed[i]):.3g} ulp from the exact value at {list(i)} "
                    f"(allowed {allowed_ulps[i]:.3g});"
                    f" {count} of {int(judged.sum())} elements exceed the bound",
                    case.regime,
                    worst={
                        "index": list(i),
                        "candidate": float(c[i]),
                        "candidate_hex": float(c[i]).hex(),
                        "exact": float(ex.approx[i]),
                        "correctly_rounded": float(rounded[i]),
                        "ulp_error": float(abs(signed[i])),
                        "allowed_ulp": float(allowed_ulps[i]),
                    },
                    example=case,
                )
            )
        return findings

    # -- phases ------------------------------------------------------------------

    def structured_cases(self, fmt: FloatFormat, eps: float) -> list[NormInput]:
        """Deterministic cases first: every regime at small, odd and long hidden sizes, every weight regime."""
        rng = np.random.default_rng(self.seed)
        src = Source(rng=rng)
        pdt = fmt
        cases = []
        for regime in REGIMES:
            for n, count in ((3, 2), (61, 3), (4097, 1)):
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
        return cases

    def aggregate_case(self, fmt: FloatFormat, eps: float) -> NormInput:
        """Many rows for the statistical checks (biased rounding, per-channel drift)."""
        src = Source(rng=np.random.default_rng(self.seed + 1))
        wreg = "near_zero" if self.offset else "normal"
        return make_input(
            src, fmt, n=64, rows=512, regime="normal", eps=eps, weight_offset=self.offset, weight_regime=wreg
        )

    def audit_dtype(self, dtype: str) -> list[Finding]:
        fmt = resolve_format(dtype)
        self._require_dtype(dtype)
        eps = self.c.eps(self.hidden_sizes[0], dtype)
        findings: list[Finding] = []
        self._collecting = True
        cases = self.structured_cases(fmt, eps)
        for i, case in enumerate(cases):
            self.progress(f"{dtype}: structured case {i + 1}/{len(cases)} ({case.regime}, n={case.n})")
            findings += self.check(case, dtype)
        findings += self._determinism(cases[0], dtype) + self._determinism(cases[2], dtype)
        aggregate = self.aggregate_case(fmt, eps)
        self.progress(f"{dtype}: statistics over {aggregate.x.size} outputs")
        findings += self.check(aggregate, dtype)
        findings += self._bias(aggregate, dtype, eps)
        findings += self._search(dtype, eps)
        return findings

    def _require_dtype(self, dtype: str) -> None:
        torch = self.c.torch
        try:
            (torch.ones(2, dtype=getattr(torch, dtype), device=self.c.device) * 2).sum().item()
        except Exception as exc:
            raise UsageError(f"device {self.c.device!r} cannot compute in {dtype}: {exc}") from None

    def _determinism(self, case: NormInput, dtype: str) -> list[Finding]:
        w, b = self._w(case, dtype), self._b(case, dtype)
        g = case.grad if self.grad and self.c.supports_grad else None
        first, second = self.c.run(case.x, w, b, g), self.c.run(case.x, w, b, g)
        for name in OUTPUTS:
            a, c = getattr(first, name), getattr(second, name)
            if a is not None and c is not None and a.shape == c.shape:
                if not np.array_equal(a.view(np.uint8), c.view(np.uint8)):
                    return [
                        Finding(
                            "nondeterminism",
                            dtype,
                            name,
                            f"two identical calls gave different {name}",
                            case.regime,
                            example=case,
                        )
                    ]
        return []

    def _bias(self, case: NormInput, dtype: str, eps: float) -> list[Finding]:
        """Biased rounding (truncation) overall, and per-channel drift (a low-precision weight offset)."""
        fmt = resolve_format(dtype)
        if fmt.precision > 11 and dtype != "bfloat16":
            return []  # in fp32/fp64 outputs the compute error, not the final rounding, dominates
        n = case.n
        w, b = self._w(case, dtype), self._b(case, dtype)
        run = self.c.run(case.x, w, b, None)
        if run.y is None or run.y.shape != case.x.shape:
            return []
        ex = _oracle(self.kind, case, w, b, eps, self.offset, False)["y"]
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
                    )
                )
        if np.ndim(err) == 2 and err.shape[0] >= 64:
            col_mean = err.mean(axis=0)
            col_z = col_mean / (err.std(axis=0) + 1e-12) * np.sqrt(err.shape[0])
            bad = (np.abs(col_mean) > 2 * BIAS_ULPS) & (np.abs(col_z) > BIAS_Z)
            if bad.any():
                j = int(np.argmax(np.abs(col_mean) * bad))
                findings.append(
                    Finding(
                        "bias",
                        dtype,
                        "y",
                        f"{int(bad.sum())} of {n} channels drift one way (channel {j}: {col_mean[j]:+.3f} ulp over "
                        f"{err.shape[0]} rows); a per-channel error such as a rounded weight offset",
                        case.regime,
                        example=case,
                    )
                )
        return findings

    def _search(self, dtype: str, eps: float) -> list[Finding]:
        """Random search with hypothesis; a failure is shrunk to a minimal input."""
        if self.examples <= 0:
            return []
        failing: list[tuple[NormInput, list[Finding]]] = []
        strategy = norm_inputs(dtype=dtype, eps=eps, hidden_sizes=self.hidden_sizes, weight_offset=self.offset)
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
            found = [f for f in self.check(case, dtype) if f.check != "nondeterminism"]
            if found:
                self._collecting = False
                failing.append((case, found))
                raise AssertionError(found[0].message)

        try:
            search()
        except AssertionError:
            pass
        self._collecting = True
        return failing[-1][1] if failing else []

    # -- the whole audit ----------------------------------------------------------

    def run(self) -> AuditResult:
        start = time.perf_counter()
        merged: dict[tuple[str, str, str | None], Finding] = {}
        for dtype in self.dtypes:
            for f in self.audit_dtype(dtype):
                key = (f.check, f.dtype, f.output)
                old = merged.get(key)
                if old is None:
                    merged[key] = f
                    continue
                old.occurrences += 1
                if f.example is not None and (old.example is None or f.example.x.size < old.example.x.size):
                    f.occurrences, f.others = old.occurrences, [*old.others, old.example]
                    merged[key] = f
                elif f.example is not None:
                    old.others.append(f.example)
        self.result.findings = list(merged.values())
        for f in self.result.findings:
            self._explain(f)
        self.result.forward_only = not self.c.supports_grad
        for dtype in self.dtypes:
            fmt = resolve_format(dtype)
            case = self.aggregate_case(fmt, self.result.eps.get(dtype, 1e-6))
            run = self._plain_run(case, dtype)
            if run is not None:
                self.result.conventions[dtype] = convention_match(
                    self.kind,
                    self.offset,
                    run,
                    fmt,
                    x=case.x,
                    weight=self._w(case, dtype),
                    bias=self._b(case, dtype),
                    eps=self.result.eps.get(dtype, 1e-6),
                )
        self.result.seconds = time.perf_counter() - start
        return self.result

    def _w(self, case: NormInput, dtype: str) -> np.ndarray | None:
        has_w, _ = self.c.has_parameters(case.n, dtype)
        return case.weight.astype(resolve_format(self.c.parameter_dtype(case.n, dtype)).dtype) if has_w else None

    def _b(self, case: NormInput, dtype: str) -> np.ndarray | None:
        _, has_b = self.c.has_parameters(case.n, dtype)
        if not has_b or self.kind != "layernorm":
            return None
        return case.bias.astype(resolve_format(self.c.parameter_dtype(case.n, dtype)).dtype)

    def _plain_run(self, case: NormInput, dtype: str) -> np.ndarray | None:
        run = self.c.run(case.x, self._w(case, dtype), self._b(case, dtype), None)
        return run.y if run.y is not None and run.y.shape == case.x.shape else None

    def _explain(self, f: Finding) -> None:
        """Attach the diagnosis and the reproducer to a finding."""
        case = f.example
        if case is None:
            return
        w, b = self._w(case, f.dtype), self._b(case, f.dtype)
        eps = self.result.eps.get(f.dtype, 1e-6)
        f.reproducer = snippet(self.spec, self.c.style, self.kind, case, f.dtype, eps, self.offset, w, b)
        if f.check not in ("accuracy", "nonfinite", "bias") or f.output is None:
            return
        # Diagnose on every failing input kept (the smallest is often too small to tell bugs apart).
        candidates = []
        for example in [case, *f.others][:MAX_DIAGNOSED]:
            w, b = self._w(example, f.dtype), self._b(example, f.dtype)
            run = self.c.run(example.x, w, b, example.grad if f.output != "y" else None)
            cand = getattr(run, f.output)
            if cand is None:
                continue
            fmt = resolve_format(f.dtype if f.output in ("y", "dx") else self.c.parameter_dtype(example.n, f.dtype))
            candidates.append(
                diagnose(
                    self.kind,
                    f.output,
                    cand,
                    fmt,
                    x=example.x,
                    weight=w,
                    bias=b,
                    grad=example.grad,
                    eps=eps,
                    offset=self.offset,
                )
            )
        named = [d for d in candidates if d.bug is not None]
        pool = named or candidates
        if pool:
            f.diagnosis = max(pool, key=_decisiveness)
