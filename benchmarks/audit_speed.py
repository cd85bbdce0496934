"""Wall time of a default audit (3 dtypes, gradients, 100 search examples per dtype), end to end.

    python benchmarks/audit_speed.py [--repeat N] [TARGET ...]

A TARGET may carry options: "tests/normcheck/targets/fused.py:FusedAddRMSNorm --kind rmsnorm --residual".

Runs ``python -m normcheck audit TARGET`` as a user does (imports, worker start,
oracle, report) with the implementation in a worker process (the default) and
with ``--in-process``, alternating, and prints the median of each and the cost of
isolation. Target (issue: isolation): the worker costs at most 25% more.

Then a float32-only and a float64-only default audit of torch.nn.RMSNorm,
alternating, with where their time goes (the report's ``timing``). Target
(issue 14): float64 takes at most twice the time of float32.
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

DEFAULT = ["torch.nn.RMSNorm", "torch.nn.LayerNorm"]
MODES = {"worker": [], "in-process": ["--in-process"]}
DTYPE_TARGET = "torch.nn.RMSNorm"
DTYPES = ("float32", "float64")


def audit_seconds(target: str, flags: list[str]) -> tuple[float, dict]:
    """Wall time of one command-line audit, and its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "audit.json"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "normcheck", "audit", *shlex.split(target), *flags, "--json", str(report)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - start
        return seconds, json.loads(report.read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("targets", nargs="*", default=DEFAULT)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'target':<22} {'mode':<11} {'inputs':>6} {'median s':>9}  runs (s)  verdict")
    for target in args.targets:
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        reports: dict[str, dict] = {}
        for _ in range(args.repeat):
            for mode, flags in MODES.items():
                seconds, reports[mode] = audit_seconds(target, flags)
                times[mode].append(seconds)
        for mode in MODES:
            r, median = reports[mode], statistics.median(times[mode])
            runs = " ".join(f"{t:.1f}" for t in times[mode])
            print(f"{target:<22} {mode:<11} {r['cases']:>6} {median:>9.1f}  {runs}  {r['verdict']}")
        cost = statistics.median(times["worker"]) / statistics.median(times["in-process"]) - 1
        print(f"{target:<22} isolation costs {cost:+.0%} (median against median)")
    compare_dtypes(args.repeat)


def compare_dtypes(repeat: int) -> None:
    """A float32-only against a float64-only default audit of :data:`DTYPE_TARGET`, and where the time goes."""
    times: dict[str, list[float]] = {d: [] for d in DTYPES}
    reports: dict[str, dict] = {}
    for _ in range(repeat):
        for dtype in DTYPES:
            seconds, reports[dtype] = audit_seconds(DTYPE_TARGET, ["--dtype", dtype])
            times[dtype].append(seconds)
    print(f"\n{DTYPE_TARGET}, one dtype: wall time end to end, and the audit's own timing of its last run")
    print(f"{'dtype':<8} {'inputs':>6} {'median s':>9}  runs (s)  {'timing (s)'}")
    for dtype in DTYPES:
        r = reports[dtype]
        runs = " ".join(f"{t:.1f}" for t in times[dtype])
        rest = r["seconds"] - sum(v for k, v in r["timing"].items() if k != "kernels")
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r["timing"].items()) + f", search and statistics {rest:.1f}"
        print(f"{dtype:<8} {r['cases']:>6} {statistics.median(times[dtype]):>9.1f}  {runs}  {parts}  {r['verdict']}")
    ratio = statistics.median(times["float64"]) / statistics.median(times["float32"])
    print(f"float64 / float32: {ratio:.2f}x (median against median; target at most 2x)")


if __name__ == "__main__":
    main()
