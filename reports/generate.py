"""Regenerate the committed precision reports: ``python reports/generate.py`` from the repository root.

Audits, on CPU in float16, bfloat16, float32 and float64: torch.nn.RMSNorm,
torch.nn.functional.rms_norm, torch.nn.LayerNorm, the Llama, Gemma and T5 norms
as the installed transformers package writes them, a MiniMind-style RMSNorm
before and after its fp32-upcast fix, and flax.nnx.RMSNorm and flax.nnx.LayerNorm
(needs ``pip install normcheck[jax]``), with parameters in the input dtype and in
float32 (Flax's default), and LayerNorm with its two-pass variance (examples/flax_norms.py);
``--only NAME`` (repeatable) runs the named audits alone. Norms fused with output quantization, as engines'
torch references write them (examples/quantized_norms.py; QUANTIZED_TARGETS), are audited in float16, bfloat16
and float32 into reports/quantized/, and printed as README's second table.
Writes one JSON per implementation into reports/json/ and renders them side by side into reports/rmsnorm/ and
reports/layernorm/ (report.md with plots, report.html), and prints README's table
(``python reports/generate.py --table`` prints it from the committed JSON alone).

``python reports/generate.py --device cuda`` does the same on a CUDA GPU, in float16,
bfloat16 and float32, for torch's norms eager and under torch.compile, the Triton
examples compiled for the GPU, Liger-Kernel's norms (at a shape that reaches its
block kernel too) and the transformers norms: reports/json/cuda-*.json,
reports/cuda-rmsnorm/ and reports/cuda-layernorm/. ``--jobs N`` runs N audits at once.

``python reports/generate.py --census`` scans transformers (``normcheck scan``, the default audit of every
distinct norm it defines, on CPU) into reports/census/ (scan.json, scan.md, scan.html; ``--census --table``
re-renders the last two from the committed JSON); ``--census-checks`` audits the hand checks of its failures
(census_fixes.py, reports/census/mechanisms.md). ``--jobs N`` runs N audits at once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from normcheck.report.json_report import write_atomically
from normcheck.scan.summary import named_bug, worst_errors

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: The dtypes audited on CPU, and on CUDA (and for quantized norms).
DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")
CUDA_DTYPE_NAMES = DTYPE_NAMES[:3]
DTYPES = [arg for dtype in DTYPE_NAMES for arg in ("--dtype", dtype)]
CUDA_DTYPES = [arg for dtype in CUDA_DTYPE_NAMES for arg in ("--dtype", dtype)]
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

OFFSET = ["--weight-offset", "1"]
#: The census: every norm transformers defines, with the default audit; its modular_* sources are left out
#: (the templates its modeling files are generated from, importing what those define).
CENSUS_SCAN = ["transformers", "--exclude", "*.modular_*"]
CENSUS = HERE / "census"
#: The hand checks of the census's failures (reports/census/mechanisms.md): a class of census_fixes.py, the
#: options its audit needs, and the bugs its audit still names (none: it passes).
CENSUS_CHECKS: list[tuple[str, list[str], set[str]]] = [
    ("FixedDeepseekV4", [], set()),
    ("FixedGradiumPhononTTS", [], set()),
    ("FixedPocketTTS", [], set()),
    ("FixedImageGPT", [], set()),
    ("FixedMuseSpark", OFFSET, set()),
    ("FixedVideoPrism", OFFSET, set()),
    ("KernelFixedVideoPrism", OFFSET, {"weight offset in low precision"}),
    ("FixedMoonshine", OFFSET, set()),
    ("KernelFixedMoonshine", OFFSET, {"weight offset in low precision (half affine)"}),
    ("KernelFixedChameleon", [], set()),
    ("KernelFixedSam", [], set()),
    ("KernelFixedEsmFold", [], set()),
    ("KernelFixedEsmc", [], set()),
    ("KernelFixedDINOv3ConvNext", [], set()),
    ("FixedNemotron1P", OFFSET, set()),
    ("KernelFixedNemotron1P", OFFSET, {"weight offset in low precision"}),
    ("KernelFixedEomt2d", ["--layout", "nchw"], set()),
    ("KernelFixedSqueezeBert", ["--layout", "ncl"], set()),
    ("FixedVitDet", ["--layout", "nchw"], set()),
]


#: Norms fused with output quantization, as engines' torch references write them (examples/quantized_norms.py):
#: audited in float16, bfloat16 and float32, forward only; README's second table.
QUANTIZED = "examples/quantized_norms.py"
FP8_TOKEN = ["--quant", "float8_e4m3fn"]
QUANTIZED_TARGETS = {
    "quantized": [
        ("quantized-fp8-per-token", f"{QUANTIZED}:rms_norm_dynamic_per_token_fp8", FP8_TOKEN),
        ("quantized-fp8-per-token-compiled", f"{QUANTIZED}:rms_norm_dynamic_per_token_fp8", [*FP8_TOKEN, *COMPILE]),
        ("quantized-int8-per-token", f"{QUANTIZED}:rms_norm_dynamic_per_token_int8", ["--quant", "int8"]),
        (
            "quantized-fp8-fused-add",
            f"{QUANTIZED}:fused_add_rms_norm_dynamic_per_token_fp8",
            [*FP8_TOKEN, "--residual"],
        ),
        (
            "quantized-fp8-per-group128",
            f"{QUANTIZED}:rms_norm_per_group128_fp8",
            [*FP8_TOKEN, "--scaling", "group:128"],
        ),
        ("quantized-fp8-static", f"{QUANTIZED}:rms_norm_static_fp8", [*FP8_TOKEN, "--scaling", "tensor"]),
        ("quantized-nvfp4", f"{QUANTIZED}:rms_norm_nvfp4", ["--quant", "nvfp4"]),
        (
            "quantized-nvfp4-swizzled",
            f"{QUANTIZED}:rms_norm_nvfp4_swizzled",
            ["--quant", "nvfp4", "--scaling", "block:swizzled"],
        ),
        ("quantized-zoo-amax-of-input", "tests.normcheck.targets.quant_zoo:Fp8AmaxOfInputRMSNorm", FP8_TOKEN),
    ]
}
#: The same references on a CUDA GPU (the zoo's bug left out): reports/json/cuda-quantized-*.json.
CUDA_QUANTIZED_TARGETS = {
    "quantized": [(f"cuda-{name}", spec, extra) for name, spec, extra in QUANTIZED_TARGETS["quantized"][:-1]]
}
NAMES = {
    **{
        name: f"CUDA: {spec.split(':')[-1]}{' (torch.compile)' if extra == COMPILE else ''}"
        for targets in CUDA_TARGETS.values()
        for name, spec, extra in targets
    },
    "quantized-fp8-per-token": "vLLM-style RMSNorm + dynamic per-token FP8 (e4m3, reciprocal scale)",
    "quantized-fp8-per-token-compiled": "the same under `torch.compile`",
    "quantized-int8-per-token": "vLLM-style RMSNorm + dynamic per-token int8",
    "quantized-fp8-fused-add": "vLLM-style residual add + RMSNorm + dynamic per-token FP8",
    "quantized-fp8-per-group128": "vLLM-style RMSNorm + per-group-of-128 FP8 (float32 scales)",
    "quantized-fp8-static": "vLLM-style RMSNorm + static per-tensor FP8",
    "quantized-nvfp4": "vLLM-style RMSNorm + NVFP4 (E2M1, E4M3 block scales, global scale)",
    "quantized-nvfp4-swizzled": "the same, its scales as bytes in 128x4 swizzled tiles (FlashInfer's layout)",
    "quantized-zoo-amax-of-input": "zoo: per-token FP8 with the scale from max abs x (bug)",
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
NAMES.update({name: f"CUDA: {NAMES[name.removeprefix('cuda-')]}" for name, _, _ in CUDA_QUANTIZED_TARGETS["quantized"]})


def _verdict(data: dict, dtype: str) -> str:
    """``pass``, or ``FAIL`` with the outputs that fail and the named bugs (else the failed checks), in one dtype."""
    found = [f for f in data["findings"] if f["dtype"] == dtype]
    why = sorted({named_bug(f) for f in found})
    outputs = sorted({f["output"] for f in found if f["output"]})
    listed = f" {', '.join(outputs)}" if outputs else ""
    return f"FAIL{listed}: {'; '.join(why)}" if found else "pass"


def _header(dtypes: tuple[str, ...]) -> list[str]:
    """A README table's header: the implementation, then one column per dtype."""
    return ["| implementation | " + " | ".join(dtypes) + " |", "|---|" + "---|" * len(dtypes)]


def _committed(name: str) -> dict | None:
    """The committed audit ``reports/json/NAME.json`` (None where it has not been run yet: a GPU audit added
    since the last GPU run)."""
    path = HERE / "json" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def readme_table(targets: dict = TARGETS, dtypes: tuple[str, ...] = DTYPE_NAMES) -> str:
    """README's table, from the committed JSON: the max error of y per dtype and the verdict per dtype."""
    lines = _header(dtypes)
    for kind_targets in targets.values():
        for name, _spec, _extra in kind_targets:
            data = _committed(name)
            if data is None:
                lines.append(f"| {NAMES[name]} | " + " | ".join(["not run yet"] * len(dtypes)) + " |")
                continue
            cells = []
            for dtype in dtypes:
                y = worst_errors(data, dtype).get("y")
                cells.append(f"{y:.3g} ({_verdict(data, dtype)})" if y is not None else "-")
            lines.append(f"| {NAMES[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(cuda: bool) -> str:
    """README's two tables of the committed audits, on CPU or on CUDA (float16, bfloat16 and float32 there)."""
    if cuda:
        return readme_table(CUDA_TARGETS, CUDA_DTYPE_NAMES) + "\n\n" + quantized_table(CUDA_QUANTIZED_TARGETS)
    return readme_table(TARGETS) + "\n\n" + quantized_table(QUANTIZED_TARGETS)


def quantized_table(targets: dict = QUANTIZED_TARGETS) -> str:
    """README's table of quantized norms, from the committed JSON: the largest error of the values (steps of the
    element format) and of the scales (float32 ulps) per dtype, and the verdict."""
    dtypes = CUDA_DTYPE_NAMES  # the dtypes quantized norms are audited in (_audit)
    lines = _header(dtypes)
    for name, _spec, _extra in targets["quantized"]:
        data = _committed(name)
        if data is None:
            lines.append(f"| {NAMES[name]} | " + " | ".join(["not run yet"] * len(dtypes)) + " |")
            continue
        cells = []
        for dtype in dtypes:
            worst = worst_errors(data, dtype, ("q", "scales"))
            figures = ", ".join(f"{o} {worst[o]:.3g}" for o in worst)
            cells.append(f"{figures} ({_verdict(data, dtype)})")
        lines.append(f"| {NAMES[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def census_counts(doc: dict) -> str:
    """The census in two sentences, for README: the counts, failures by named bug, what was not audited."""
    c = doc["counts"]
    bugs = "; ".join(f"{bug}: {n}" for bug, n in c["fail_by_bug"].items())
    reasons = "; ".join(f"{why}: {n}" for why, n in c["not_audited_by_reason"].items())
    return (
        f"{c['names']} classes and functions, {c['distinct']} distinct implementations: {c['pass']} pass, "
        f"{c['fail']} fail, {c['not_audited']} not audited. Failing implementations per named bug (else check): "
        f"{bugs}. Not audited, by reason: {reasons}"
    )


def _write_census() -> str:
    """Render reports/census/scan.md and scan.html from the committed scan.json; returns its counts."""
    from normcheck.scan.render import load, write

    doc = load(str(CENSUS / "scan.json"))
    write(doc, None, str(CENSUS))
    return census_counts(doc)


def _scan_census(jobs: int) -> int:
    """Scan transformers into reports/census/ (a fresh cache: every implementation audited)."""
    with tempfile.TemporaryDirectory() as cache:
        command = [sys.executable, "-m", "normcheck", "scan", *CENSUS_SCAN, "--jobs", str(jobs), "--cache", cache]
        command += ["--json", str(CENSUS / "scan.json"), "--report-dir", str(CENSUS)]
        status = subprocess.run(command, cwd=ROOT).returncode
    if status == 2:
        return status
    _relative_to_root(CENSUS / "scan.json")
    print(_write_census())
    return 0


def _check_census(jobs: int) -> int:
    """Audit every class of CENSUS_CHECKS with the census's options; 1 if one names other bugs than expected."""

    def check(entry: tuple[str, list[str], set[str]]) -> tuple[str, set[str], set[str]]:
        name, extra, expected = entry
        with tempfile.TemporaryDirectory() as folder:
            report = Path(folder) / "r.json"
            command = [sys.executable, "-m", "normcheck", "audit", f"reports/census_fixes.py:{name}", *extra]
            subprocess.run([*command, "--json", str(report)], cwd=ROOT, capture_output=True)
            data = json.loads(report.read_text()) if report.exists() else {"findings": [{"check": "no report"}]}
        return name, expected, {named_bug(f) for f in data["findings"]}

    wrong = 0
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for name, expected, found in pool.map(check, CENSUS_CHECKS):
            ok = found == expected
            wrong += not ok
            print(f"{'ok' if ok else 'WRONG'} {name}: {', '.join(sorted(found)) or 'pass'}", flush=True)
    return 1 if wrong else 0


def _audit(
    name: str, spec: str, extra: list[str], device: str, dtypes: list[str] | None = None
) -> tuple[str, int, float]:
    """One audit in its own process (audits run side by side); its output goes to reports/json/NAME.log."""
    dtypes = dtypes or (CUDA_DTYPES if device != "cpu" or "--quant" in extra else DTYPES)
    command = [sys.executable, "-m", "normcheck", "audit", spec, "--device", device, *dtypes, *EXAMPLES, *extra]
    command += ["--json", str(HERE / "json" / f"{name}.json")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    with open(HERE / "json" / f"{name}.log", "w") as log:
        status = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    _relative_to_root(HERE / "json" / f"{name}.json")
    return name, status, time.perf_counter() - start


def _relative_to_root(path: Path) -> None:
    """Name files inside the repository relative to its root (reproducers' ``.npz`` inputs, stack frames):
    committed reports must not carry the path of the checkout that wrote them. Run from the root."""
    if path.exists():
        text = path.read_text()
        root = json.dumps(f"{ROOT}{os.sep}")[1:-1]  # as the JSON spells it
        if root in text:
            write_atomically(str(path), text.replace(root, ""))


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the committed precision reports.")
    parser.add_argument("--table", action="store_true", help="print README's table from the committed JSON")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--jobs", type=int, default=1, help="audits run at once")
    parser.add_argument("--only", action="append", help="run only these audits (names as in reports/json/)")
    parser.add_argument("--census", action="store_true", help="scan transformers into reports/census/ (CPU)")
    parser.add_argument(
        "--census-checks", action="store_true", help="audit the hand checks of the census's failures (census_fixes.py)"
    )
    args = parser.parse_args(argv)
    cuda = args.device != "cpu"
    plain = CUDA_TARGETS if cuda else TARGETS
    targets = {**plain, **(CUDA_QUANTIZED_TARGETS if cuda else QUANTIZED_TARGETS)}
    if args.table:
        print(_write_census() if args.census else tables(cuda))
        return 0
    if args.census:
        return _scan_census(args.jobs)
    if args.census_checks:
        return _check_census(args.jobs)
    (HERE / "json").mkdir(exist_ok=True)
    jobs = [(name, spec, extra, args.device) for kind_targets in targets.values() for name, spec, extra in kind_targets]
    unknown = sorted(set(args.only or ()) - {job[0] for job in jobs})
    if unknown:
        print(f"generate.py: error: no such audit: {', '.join(unknown)} (names as in reports/json/)", file=sys.stderr)
        return 2
    jobs = [job for job in jobs if not args.only or job[0] in args.only]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, status, seconds in pool.map(lambda job: _audit(*job), jobs):
            print(f"{name}: exit {status} in {seconds:.0f} s", flush=True)
            if status == 2:
                print((HERE / "json" / f"{name}.log").read_text()[-2000:], file=sys.stderr)
    print(f"{len(jobs)} audits in {time.perf_counter() - start:.0f} s", flush=True)
    prefix = "cuda-" if args.device != "cpu" else ""
    for kind, kind_targets in targets.items():
        paths = [str(HERE / "json" / f"{name}.json") for name, _spec, _extra in kind_targets]
        paths = [p for p in paths if Path(p).exists()]
        command = [sys.executable, "-m", "normcheck", "report", *paths, "--out", str(HERE / f"{prefix}{kind}")]
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            return 2
    print(tables(cuda))
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
