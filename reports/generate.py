"""Regenerate the committed precision reports: ``python reports/generate.py`` from the repository root.

Audits, on CPU in float16, bfloat16, float32 and float64: torch.nn.RMSNorm,
torch.nn.functional.rms_norm, torch.nn.LayerNorm, the Llama, Gemma and T5 norms
as the installed transformers package writes them, a MiniMind-style RMSNorm
before and after its fp32-upcast fix, and flax.nnx.RMSNorm and flax.nnx.LayerNorm
(needs ``pip install normcheck[jax]``), with parameters in the input dtype and in
float32 (Flax's default), and LayerNorm with its two-pass variance (examples/flax_norms.py);
``--only NAME`` (repeatable) runs the named audits alone.
Writes one JSON per implementation into reports/json/ and renders them side by side into reports/rmsnorm/ and
reports/layernorm/ (report.md with plots, report.html), and prints README's table
(``python reports/generate.py --table`` prints it from the committed JSON alone).

``python reports/generate.py --device cuda`` does the same on a CUDA GPU, in float16,
bfloat16 and float32, for torch's norms eager and under torch.compile, the Triton
examples compiled for the GPU, Liger-Kernel's norms (at a shape that reaches its
block kernel too) and the transformers norms: reports/json/cuda-*.json,
reports/cuda-rmsnorm/ and reports/cuda-layernorm/. ``--jobs N`` runs N audits at once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

DTYPES = ["--dtype", "float16", "--dtype", "bfloat16", "--dtype", "float32", "--dtype", "float64"]
CUDA_DTYPES = ["--dtype", "float16", "--dtype", "bfloat16", "--dtype", "float32"]
EXAMPLES = ["--examples", "30"]
#: Liger-Kernel's RMSNorm takes its block kernel for rows >= 32768 at hidden sizes <= 256.
LIGER_BLOCK_SHAPE = ["--shape", "32768x256"]
#: Flax's own default: parameters in float32 whatever the input dtype (normcheck's default is the input dtype).
FLAX_DEFAULT_PARAMS = ["--param-dtype", "float32"]
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
        ("flax-nnx-RMSNorm", "flax.nnx.RMSNorm", []),
        ("flax-nnx-RMSNorm-float32-params", "flax.nnx.RMSNorm", FLAX_DEFAULT_PARAMS),
    ],
    "layernorm": [
        ("torch-LayerNorm", "torch.nn.LayerNorm", []),
        ("flax-nnx-LayerNorm", "flax.nnx.LayerNorm", []),
        ("flax-nnx-LayerNorm-float32-params", "flax.nnx.LayerNorm", FLAX_DEFAULT_PARAMS),
        ("flax-nnx-LayerNorm-two-pass", "examples/flax_norms.py:TwoPassLayerNorm", []),
    ],
}
COMPILE = ["--compile"]
CUDA_TARGETS = {
    "rmsnorm": [
        ("cuda-torch-RMSNorm", "torch.nn.RMSNorm", []),
        ("cuda-torch-functional-rms_norm", "torch.nn.functional.rms_norm", []),
        ("cuda-compiled-torch-RMSNorm", "torch.nn.RMSNorm", COMPILE),
        ("cuda-compiled-torch-functional-rms_norm", "torch.nn.functional.rms_norm", COMPILE),
        ("cuda-triton-example-RMSNorm", "examples/triton_norms.py:TritonRMSNorm", ["--no-grad"]),
        ("cuda-liger-LigerRMSNorm", "liger_kernel.transformers:LigerRMSNorm", LIGER_BLOCK_SHAPE),
        ("cuda-transformers-LlamaRMSNorm", "transformers.models.llama.modeling_llama:LlamaRMSNorm", []),
        (
            "cuda-transformers-GemmaRMSNorm",
            "transformers.models.gemma.modeling_gemma:GemmaRMSNorm",
            ["--weight-offset", "1"],
        ),
        ("cuda-transformers-T5LayerNorm", "transformers.models.t5.modeling_t5:T5LayerNorm", ["--kind", "rmsnorm"]),
    ],
    "layernorm": [
        ("cuda-torch-LayerNorm", "torch.nn.LayerNorm", []),
        ("cuda-torch-functional-layer_norm", "torch.nn.functional.layer_norm", []),
        ("cuda-compiled-torch-LayerNorm", "torch.nn.LayerNorm", COMPILE),
        ("cuda-compiled-torch-functional-layer_norm", "torch.nn.functional.layer_norm", COMPILE),
        ("cuda-triton-example-LayerNorm", "examples/triton_norms.py:TritonLayerNorm", ["--no-grad"]),
        ("cuda-liger-LigerLayerNorm", "liger_kernel.transformers:LigerLayerNorm", LIGER_BLOCK_SHAPE),
    ],
}


NAMES = {
    **{
        name: f"CUDA: {spec.split(':')[-1]}{' (torch.compile)' if extra == COMPILE else ''}"
        for targets in CUDA_TARGETS.values()
        for name, spec, extra in targets
    },
    "torch-RMSNorm": "`torch.nn.RMSNorm`",
    "torch-functional-rms_norm": "`torch.nn.functional.rms_norm`",
    "transformers-LlamaRMSNorm": "transformers `LlamaRMSNorm`",
    "transformers-GemmaRMSNorm": "transformers `GemmaRMSNorm`",
    "transformers-T5LayerNorm": "transformers `T5LayerNorm`",
    "minimind-before-fix": "MiniMind RMSNorm, before the fix",
    "minimind-after-fix": "MiniMind RMSNorm, after the fix",
    "torch-LayerNorm": "`torch.nn.LayerNorm`",
    "flax-nnx-RMSNorm": "`flax.nnx.RMSNorm` (param_dtype = input dtype)",
    "flax-nnx-RMSNorm-float32-params": "`flax.nnx.RMSNorm` (flax's default param_dtype float32)",
    "flax-nnx-LayerNorm": "`flax.nnx.LayerNorm` (param_dtype = input dtype)",
    "flax-nnx-LayerNorm-float32-params": "`flax.nnx.LayerNorm` (flax's default param_dtype float32)",
    "flax-nnx-LayerNorm-two-pass": "`flax.nnx.LayerNorm(use_fast_variance=False)` (param_dtype = input dtype)",
}


def _why(finding: dict) -> str:
    """The bug a finding is diagnosed as, else the check it failed."""
    return (finding["diagnosis"] or {}).get("bug") or finding["check"]


def _verdict(data: dict, dtype: str) -> str:
    """``pass``, or ``FAIL`` with the outputs that fail and the named bugs (else the failed checks), in one dtype."""
    found = [f for f in data["findings"] if f["dtype"] == dtype]
    why = sorted({_why(f) for f in found})
    outputs = sorted({f["output"] for f in found if f["output"]})
    return f"FAIL {', '.join(outputs)}: {'; '.join(why)}" if found else "pass"


def _max_error(data: dict, dtype: str, output: str) -> float | None:
    """The largest error of one output in one dtype, in ulps of each element's scale (None: not measured)."""
    errors = [s["max"] for s in data["stats"] if s["dtype"] == dtype and s["output"] == output and s["count"]]
    return max(errors) if errors else None


def readme_table(targets: dict = TARGETS) -> str:
    """README's table, from the committed JSON: the max error of y per dtype and the verdict per dtype."""
    lines = ["| implementation | float16 | bfloat16 | float32 | float64 |", "|---|---|---|---|---|"]
    for kind_targets in targets.values():
        for name, _spec, _extra in kind_targets:
            data = json.loads((HERE / "json" / f"{name}.json").read_text())
            cells = []
            for dtype in ("float16", "bfloat16", "float32", "float64"):
                y = _max_error(data, dtype, "y")
                cells.append(f"{y:.3g} ({_verdict(data, dtype)})" if y is not None else "-")
            lines.append(f"| {NAMES[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _audit(name: str, spec: str, extra: list[str], device: str) -> tuple[str, int, float]:
    """One audit in its own process (audits run side by side); its output goes to reports/json/NAME.log."""
    dtypes = CUDA_DTYPES if device != "cpu" else DTYPES
    command = [sys.executable, "-m", "normcheck", "audit", spec, "--device", device, *dtypes, *EXAMPLES, *extra]
    command += ["--json", str(HERE / "json" / f"{name}.json")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    with open(HERE / "json" / f"{name}.log", "w") as log:
        status = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    return name, status, time.perf_counter() - start


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the committed precision reports.")
    parser.add_argument("--table", action="store_true", help="print README's table from the committed JSON")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--jobs", type=int, default=1, help="audits run at once")
    parser.add_argument("--only", action="append", help="run only these audits (names as in reports/json/)")
    args = parser.parse_args(argv)
    targets = CUDA_TARGETS if args.device != "cpu" else TARGETS
    if args.table:
        print(readme_table(targets))
        return 0
    (HERE / "json").mkdir(exist_ok=True)
    jobs = [(name, spec, extra, args.device) for kind_targets in targets.values() for name, spec, extra in kind_targets]
    jobs = [job for job in jobs if not args.only or job[0] in args.only]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, status, seconds in pool.map(lambda job: _audit(*job), jobs):
            print(f"{name}: exit {status} in {seconds:.0f} s", flush=True)
            if status == 2:
                print((HERE / "json" / f"{name}.log").read_text()[-2000:], file=sys.stderr)
    prefix = "cuda-" if args.device != "cpu" else ""
    for kind, kind_targets in targets.items():
        paths = [str(HERE / "json" / f"{name}.json") for name, _spec, _extra in kind_targets]
        paths = [p for p in paths if Path(p).exists()]
        command = [sys.executable, "-m", "normcheck", "report", *paths, "--out", str(HERE / f"{prefix}{kind}")]
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            return 2
    print(readme_table(targets))
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
