"""Regenerate the committed precision reports: ``python reports/generate.py`` from the repository root.

Audits, on CPU in float16, bfloat16, float32 and float64: torch.nn.RMSNorm,
torch.nn.functional.rms_norm, torch.nn.LayerNorm, the Llama, Gemma and T5 norms
as the installed transformers package writes them, and a MiniMind-style RMSNorm
before and after its fp32-upcast fix. Writes one JSON per implementation into
reports/json/ and renders them side by side into reports/rmsnorm/ and
reports/layernorm/ (report.md with plots, report.html).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the test zoo (MiniMind) lives in tests/

from normcheck.cli import main  # noqa: E402

DTYPES = ["--dtype", "float16", "--dtype", "bfloat16", "--dtype", "float32", "--dtype", "float64"]
EXAMPLES = ["--examples", "30"]
TARGETS = {
    "rmsnorm": [
        ("torch-RMSNorm", "torch.nn.RMSNorm", []),
        ("torch-functional-rms_norm", "torch.nn.functional.rms_norm", []),
        ("transformers-LlamaRMSNorm", "transformers.models.llama.modeling_llama:LlamaRMSNorm", []),
        (
            "transformers-GemmaRMSNorm",
            "transformers.models.gemma.modeling_gemma:GemmaRMSNorm",
            ["--weight-offset", "1"],
        ),
        ("transformers-T5LayerNorm", "transformers.models.t5.modeling_t5:T5LayerNorm", ["--kind", "rmsnorm"]),
        ("minimind-before-fix", "tests.normcheck.zoo:MiniMindRMSNorm", []),
        ("minimind-after-fix", "tests.normcheck.zoo:MiniMindFixedRMSNorm", []),
    ],
    "layernorm": [("torch-LayerNorm", "torch.nn.LayerNorm", [])],
}


def run() -> int:
    (HERE / "json").mkdir(exist_ok=True)
    for kind, targets in TARGETS.items():
        paths = []
        for name, spec, extra in targets:
            path = HERE / "json" / f"{name}.json"
            print(f"auditing {spec} ...", flush=True)
            status = main(["audit", spec, *DTYPES, *EXAMPLES, *extra, "--json", str(path)])
            if status == 2:
                return 2
            paths.append(str(path))
        if main(["report", *paths, "--out", str(HERE / kind)]) != 0:
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
