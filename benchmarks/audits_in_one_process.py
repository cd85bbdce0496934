"""Wall time of consecutive default audits in one process, as a test run of normcheck's pytest plugin makes them.

    python benchmarks/audits_in_one_process.py [--audits N] [TARGET]

One fresh ``python`` process imports ``normcheck.api`` and runs ``audit(TARGET)`` N times (default 4; TARGET
default ``torch.nn.RMSNorm``, default options: a worker process, 3 dtypes, gradients); each audit's wall time
and its report's ``seconds`` are printed. The first audit starts the zygote its workers fork from
(``normcheck.target.zygote``); the ones after it start their workers from it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, sys, time
from normcheck.api import audit
runs = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    result = audit(sys.argv[2])
    runs.append((time.perf_counter() - start, result.seconds, result.passed))
print(json.dumps(runs))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", nargs="?", default="torch.nn.RMSNorm")
    parser.add_argument("--audits", type=int, default=4)
    args = parser.parse_args()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(args.audits), args.target], capture_output=True, text=True, check=True
    )
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{args.target}: {args.audits} default audits in one process")
    print("| audit | wall | report seconds | verdict |")
    print("|---:|---:|---:|---|")
    for i, (wall, seconds, passed) in enumerate(runs, 1):
        print(f"| {i} | {wall:.1f} s | {seconds:.1f} s | {'pass' if passed else 'FAIL'} |")


if __name__ == "__main__":
    main()
