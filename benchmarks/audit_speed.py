"""Wall time of a default audit (3 dtypes, gradients, 100 search examples per dtype), end to end.

    python benchmarks/audit_speed.py [--repeat N] [TARGET ...]

A TARGET may carry options: "tests/normcheck/targets/fused.py:FusedAddRMSNorm --kind rmsnorm --residual".

Runs ``python -m normcheck audit TARGET`` as a user does (imports, worker start,
oracle, report) with the implementation in a worker process (the default) and
with ``--in-process``, alternating, and prints the median of each and the cost of
isolation. Target (issue: isolation): the worker costs at most 25% more.
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


if __name__ == "__main__":
    main()
