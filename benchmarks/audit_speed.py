"""Wall time of default audits as a user runs them, and where the audit's own time goes.

    python benchmarks/audit_speed.py [--repeat N] [--isolation] [--dtypes] [TARGET ...]

A TARGET may carry options: "tests/normcheck/targets/fused.py:FusedAddRMSNorm --kind rmsnorm --residual".
The default targets are torch.nn.RMSNorm, torch.nn.LayerNorm and that fused residual-add RMSNorm.

Each run is ``python -m normcheck audit TARGET --json FILE``, the default audit (worker process,
3 dtypes, gradients), timed from process start to exit; the runs alternate between targets, and
each figure is the median of ``--repeat`` runs (default 3). From each run's report: ``seconds``
(the audit's own clock), ``timing`` (implementation, its kernels, oracle, bounds), ``cases`` and
``verdict``; "audit/impl" is the median of the per-run ratios seconds / timing["implementation"].

Targets (issue: audit speed), in :data:`TARGETS`: torch.nn.RMSNorm wall <= 6 s, report seconds
<= 4 s, audit/impl <= 3; torch.nn.LayerNorm wall <= 7 s; the fused default wall <= 7 s.

Opt-in comparisons, run in the same alternation:

``--isolation``: each target also with ``--in-process``; target (issue: isolation): the worker
costs at most 25% more wall time.

``--dtypes``: a float32-only and a float64-only default audit of torch.nn.RMSNorm and of
torch.nn.LayerNorm; target (issue 14): float64 takes at most twice the wall time of float32 (met by
RMSNorm, whose float64 oracle works in double words; LayerNorm's float64 outputs take the exact path).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FUSED = "tests/normcheck/targets/fused.py:FusedAddRMSNorm --kind rmsnorm --residual"
#: Upper limits per target: "wall" (s, process start to exit), "seconds" (s, the report's), "ratio" (audit/impl).
TARGETS: dict[str, dict[str, float]] = {
    "torch.nn.RMSNorm": {"wall": 6.0, "seconds": 4.0, "ratio": 3.0},
    "torch.nn.LayerNorm": {"wall": 7.0},
    FUSED: {"wall": 7.0},
}
DEFAULT = list(TARGETS)
ISOLATION_COST = 0.25
DTYPE_TARGETS = ("torch.nn.RMSNorm", "torch.nn.LayerNorm")
DTYPES = ("float32", "float64")
DTYPE_RATIO = 2.0
PARTS = ("implementation", "kernels", "oracle", "bounds")

Run = tuple[float, dict]  # wall seconds, JSON report


def audit(target: str, flags: list[str]) -> Run:
    """Wall time of one command-line audit, process start to exit, and its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "audit.json"
        command = [sys.executable, "-m", "normcheck", "audit", *shlex.split(target), *flags, "--json", str(report)]
        start = time.perf_counter()
        done = subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        if not report.exists():
            sys.exit(f"no report from {shlex.join(command[1:])} (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return wall, json.loads(report.read_text())


def alternate(commands: dict[str, tuple[str, list[str]]], repeat: int) -> dict[str, list[Run]]:
    """``repeat`` rounds of every command (name: target, flags), one after another in each round."""
    runs: dict[str, list[Run]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, (target, flags) in commands.items():
            runs[name].append(audit(target, flags))
    return runs


def medians(runs: list[Run]) -> dict[str, float]:
    """Median wall time, report seconds, timing parts, inputs and audit/impl ratio of some runs."""
    reports = [r for _, r in runs]
    out = {"wall": statistics.median(w for w, _ in runs), "seconds": statistics.median(r["seconds"] for r in reports)}
    for part in PARTS:
        out[part] = statistics.median(r["timing"].get(part, 0.0) for r in reports)
    out["cases"] = statistics.median_low(r["cases"] for r in reports)
    impl = [r["timing"].get("implementation", 0.0) for r in reports]
    out["ratio"] = statistics.median(r["seconds"] / i if i else float("inf") for r, i in zip(reports, impl))
    return out


def verdicts(runs: list[Run]) -> str:
    """The runs' verdicts, once each."""
    return "/".join(dict.fromkeys(r["verdict"] for _, r in runs))


def labels(targets: list[str]) -> dict[str, str]:
    """A short name per target for the tables: its object's name, numbered where two share one."""
    names = {t: shlex.split(t)[0].rpartition(":")[2].rpartition(".")[2][:16] for t in targets}
    if len(set(names.values())) < len(names):
        names = {t: f"{i}:{name}"[:16] for i, (t, name) in enumerate(names.items(), 1)}
    return names


def mark(value: float, limit: float) -> str:
    """Say "ok" where ``value`` is within its target ``limit``, else "over"."""
    return "ok" if value <= limit else "over"


def check(metric: str, value: float, limit: float) -> str:
    """One figure against its target, with "ok" or "over"."""
    unit = "" if metric == "ratio" else " s"
    name = {"wall": "wall", "seconds": "report", "ratio": "audit/impl"}[metric]
    shown = f"{value:.2f}" if metric == "ratio" else f"{value:.1f}"
    return f"{name} {shown}{unit} <= {limit:g}{unit} {mark(value, limit)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", default=DEFAULT)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--isolation", action="store_true", help="also each target --in-process")
    parser.add_argument("--dtypes", action="store_true", help="also float32-only and float64-only audits")
    args = parser.parse_args()
    commands: dict[str, tuple[str, list[str]]] = {t: (t, []) for t in args.targets}
    if args.isolation:
        commands |= {f"{t} --in-process": (t, ["--in-process"]) for t in args.targets}
    if args.dtypes:
        commands |= {f"{t} {dtype}": (t, ["--dtype", dtype]) for t in DTYPE_TARGETS for dtype in DTYPES}
    runs = alternate(commands, args.repeat)
    name = labels(args.targets)
    median = {target: medians(runs[target]) for target in args.targets}
    for target in args.targets:
        print(f"{name[target]:<16} {target}")
    print(f"\nmedian of {args.repeat} runs, seconds; wall: process start to exit, audit: the report's seconds")
    print(
        f"{'target':<16} {'wall':>6} {'audit':>6} {'impl':>6} {'kernels':>7} {'oracle':>6} {'bounds':>6} "
        f"{'audit/impl':>10} {'inputs':>6}  verdict"
    )
    for target in args.targets:
        m = median[target]
        print(
            f"{name[target]:<16} {m['wall']:>6.1f} {m['seconds']:>6.1f} {m['implementation']:>6.1f} "
            f"{m['kernels']:>7.1f} {m['oracle']:>6.1f} {m['bounds']:>6.1f} {m['ratio']:>10.2f} "
            f"{m['cases']:>6}  {verdicts(runs[target])}"
        )
    print("\ntargets")
    for target in args.targets:
        m = median[target]
        limits = TARGETS.get(target, {})
        checks = ", ".join(check(metric, m[metric], limit) for metric, limit in limits.items()) or "none set"
        print(f"{name[target]:<16} {checks}")
    if args.isolation:
        compare_isolation(args.targets, name, runs)
    if args.dtypes:
        compare_dtypes(runs)


def compare_isolation(targets: list[str], name: dict[str, str], runs: dict[str, list[Run]]) -> None:
    """The worker process against ``--in-process``: the cost of isolation, per target."""
    print(f"\nisolation: median wall s, worker against --in-process (target at most {ISOLATION_COST:+.0%})")
    print(f"{'target':<16} {'worker':>6} {'in-process':>10} {'cost':>6}")
    for target in targets:
        worker = statistics.median(w for w, _ in runs[target])
        alone = statistics.median(w for w, _ in runs[f"{target} --in-process"])
        cost = worker / alone - 1
        print(f"{name[target]:<16} {worker:>6.1f} {alone:>10.1f} {cost:>+6.0%} {mark(cost, ISOLATION_COST)}")


def compare_dtypes(runs: dict[str, list[Run]]) -> None:
    """A float32-only against a float64-only default audit of each of :data:`DTYPE_TARGETS`, and where the
    time goes."""
    for target in DTYPE_TARGETS:
        print(f"\n{target}, one dtype: median seconds (wall, the report's, and its timing)")
        print(
            f"{'dtype':<8} {'wall':>6} {'audit':>6} {'impl':>6} {'kernels':>7} {'oracle':>6} {'bounds':>6} "
            f"{'inputs':>6}  verdict"
        )
        per_dtype = {dtype: runs[f"{target} {dtype}"] for dtype in DTYPES}
        for dtype, dtype_runs in per_dtype.items():
            m = medians(dtype_runs)
            print(
                f"{dtype:<8} {m['wall']:>6.1f} {m['seconds']:>6.1f} {m['implementation']:>6.1f} {m['kernels']:>7.1f} "
                f"{m['oracle']:>6.1f} {m['bounds']:>6.1f} {m['cases']:>6}  {verdicts(dtype_runs)}"
            )
        wall = {dtype: statistics.median(w for w, _ in dtype_runs) for dtype, dtype_runs in per_dtype.items()}
        ratio = wall["float64"] / wall["float32"]
        print(f"float64 / float32 wall: {ratio:.2f}x (target at most {DTYPE_RATIO:g}x) {mark(ratio, DTYPE_RATIO)}")


if __name__ == "__main__":
    main()
