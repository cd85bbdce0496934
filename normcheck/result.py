"""What an audit found out: its findings and statistics, the data every report and the verdict read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from normcheck.stats import Errors, ErrorStats

if TYPE_CHECKING:
    from normcheck.diagnosis.diagnose import Diagnosis
    from normcheck.strategies import NormInput

#: The outputs a call answers with (:class:`~normcheck.target.protocol.Run`'s attributes).
OUTPUTS = ("y", "dx", "dw", "db", "residual_out", "dresidual", "scales")
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
    "replay",
    "bias",
)
#: Where an audit's time goes: calls of the implementation (``kernels``: inside its forward and
#: backward, device synchronized; the rest of ``implementation`` is copies to and from the device and
#: the worker process), the exact oracle, and the bounds (with the correct references they rest on).
#: ``overlapped``: the part of ``implementation`` a worker process spent on a call while this process
#: computed the same input's oracle and bounds (counted in both).
TIMED = ("implementation", "kernels", "oracle", "bounds", "overlapped")


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
    #: The module states no eps: the one used was inferred from its outputs (normcheck.target.eps.inferred_eps).
    eps_inferred: bool = False
    #: Inputs not run because smaller ones predict they take longer than the timeout (normcheck.timing):
    #: ``{"dtype", "shape", "regime", "predicted_s"}`` each. Slow is not hung: they are not findings.
    too_slow: list[dict] = field(default_factory=list)
    #: A quantized norm's output scheme, in words (``Scheme.describe``), or None.
    quantization: str | None = None
    #: Per dtype, how a quantized norm with blocks answered a hidden size that is not their multiple: "judged
    #: (...)", "refused (...): the exception" or "not run (...)"; empty for other norms.
    partial_blocks: dict[str, str] = field(default_factory=dict)
    isolation: str = "worker process"  #: where the implementation ran: "worker process" or "in-process"
    #: Seconds spent per part of the audit (see :data:`TIMED`); the rest of :attr:`seconds` (``overlapped`` added
    #: back) is the search's own.
    timing: dict[str, float] = field(default_factory=dict)
    #: :meth:`totals` as last folded; None once :meth:`stat` hands out statistics to add to.
    _totals: dict[tuple[str, str], ErrorStats] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return not self.findings

    @property
    def primary(self) -> str:
        """The output the per-regime figures are of: ``q`` for a quantized norm, else ``y``."""
        return "y" if self.quantization is None else "q"

    def totals(self) -> dict[tuple[str, str], ErrorStats]:
        """The statistics per (dtype, output), every regime folded together, in dtype order (folded once: the
        reports read their figures from the same objects)."""
        if self._totals is None:
            merged: dict[tuple[str, str], ErrorStats] = {}
            for (dtype, output, _regime), stats in sorted(
                self.stats.items(), key=lambda kv: (self.dtypes.index(kv[0][0]), kv[0][1])
            ):
                merged.setdefault((dtype, output), ErrorStats()).merge(stats)
            self._totals = merged
        return self._totals

    def stat(self, dtype: str, output: str, regime: str) -> ErrorStats:
        """The statistics of one output, dtype and regime, to add errors to (the totals are folded again)."""
        self._totals = None
        return self.stats.setdefault((dtype, output, regime), ErrorStats())

    def add_errors(self, dtype: str, regime: str, errors: Errors) -> None:
        """:meth:`ErrorStats.add` on the statistics of one output, dtype and regime."""
        self.stat(dtype, errors.output, regime).add(errors)
