"""Wall time of a default audit (3 dtypes, gradients, 100 search examples per dtype) on this CPU.

    python benchmarks/audit_speed.py [TARGET ...]

Target: under 60 s per module on the 2-core CI machine (issue: normcheck audit).
"""

from __future__ import annotations

import sys
import time

from normcheck.audit import Auditor
from normcheck.candidate import Candidate
from normcheck.inference import infer
from normcheck.loading import load_target

DEFAULT = ["torch.nn.RMSNorm", "torch.nn.LayerNorm"]


def main() -> None:
    for spec in sys.argv[1:] or DEFAULT:
        start = time.perf_counter()
        candidate = Candidate(load_target(spec), spec)
        kind, offset = infer(candidate, None, None)
        result = Auditor(candidate, spec=spec, kind=kind, weight_offset=offset).run()
        seconds = time.perf_counter() - start
        verdict = "pass" if result.passed else f"fail ({len(result.findings)} findings)"
        print(f"{spec:<28} {kind:<10} {result.cases:5d} inputs {seconds:7.1f} s  {verdict}")


if __name__ == "__main__":
    main()
