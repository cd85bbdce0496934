"""Correct implementations under default audits with several seeds: any finding is a false positive.

    python benchmarks/false_positives.py [--seeds 5] [--eps E ...]     (needs transformers for its norms)

For each implementation, eps and seed: the verdict, and the largest share of the sharp bound any
output used (a pass stays below 100%; how far below is the margin). The eps values are the
implementation's own default and, by default, 1e-12 (BERT's, where rstd reaches 1e6 on constant rows
and amplifies the mean's rounding) and 1e-7. Run from the repository root.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time

sys.path.insert(0, ".")  # the test zoo lives in tests/

from normcheck.api import audit
from tests.normcheck.zoo import CORRECT

TRANSFORMERS = [
    ("transformers.models.llama.modeling_llama.LlamaRMSNorm", "rmsnorm", 0),
    ("transformers.models.qwen3.modeling_qwen3.Qwen3RMSNorm", "rmsnorm", 0),
    ("transformers.models.deepseek_v3.modeling_deepseek_v3.DeepseekV3RMSNorm", "rmsnorm", 0),
    ("transformers.models.gemma.modeling_gemma.GemmaRMSNorm", "rmsnorm", 1),
    ("transformers.models.t5.modeling_t5.T5LayerNorm", "rmsnorm", 0),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eps", type=float, action="append", help="eps values besides each default")
    args = parser.parse_args()
    targets = list(CORRECT) + (TRANSFORMERS if importlib.util.find_spec("transformers") else [])
    print("max sharp use: the largest error / sharp bound of any output (half precision: of fp16 and bf16 outputs,")
    print("whose bound is the exact worst case of the final roundings, which Llama-style casts reach)")
    print(f"{'implementation':<72} {'eps':>7} {'seeds':>5} {'findings':>8} {'fp32 use':>9} {'half use':>9} {'s':>5}")
    failures = 0
    for spec, kind, offset in targets:
        for eps in (None, *(args.eps or (1e-12, 1e-7))):
            start, findings = time.perf_counter(), 0
            use = {"float32": 0.0, "half": 0.0}
            for seed in range(args.seeds):
                result = audit(spec, kind=kind, weight_offset=offset, seed=seed, eps=eps)
                findings += len(result.findings)
                for (dtype, _output), stats in result.totals().items():
                    group = "float32" if dtype == "float32" else "half"
                    use[group] = max(use[group], stats.summary().get("sharp_use", 0.0))
            failures += findings
            seconds = time.perf_counter() - start
            label = "default" if eps is None else f"{eps:g}"
            print(
                f"{spec:<72} {label:>7} {args.seeds:>5} {findings:>8} {use['float32']:>9.0%} {use['half']:>9.0%} "
                f"{seconds:5.0f}",
                flush=True,
            )
    print(f"false positives: {failures}")


if __name__ == "__main__":
    main()
