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

``python reports/generate.py --census`` audits the census of transformers' norm classes (CENSUS: each with
its mechanism as read in its source and checked by hand) on CPU in float16, bfloat16 and float32 with
gradients into reports/json/census-NAME.json and writes reports/census.md (``--census --table``: from the
committed JSON alone; ``--only census-NAME`` reruns one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from normcheck.report.json_report import write_atomically

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

TF = "transformers.models"
OFFSET = ["--weight-offset", "1"]
#: torch's own CPU LayerNorm with half-precision (or no) parameters, as checked for every class that calls it.
TORCH_LN = (
    "torch's CPU kernel saves mean and rstd for the backward in the input dtype (the autograd node's saved tensors "
    "are float16/bfloat16) and sums dw, db row by row in the parameter dtype (bit for bit, the 3x61 db finding)"
)


class Census(NamedTuple):
    """One transformers norm class: how it is audited, and its mechanism as read in its source and checked by hand."""

    name: str  # the class; its audit is reports/json/census-NAME.json
    module: str  # under transformers.models
    extra: list[str]
    mechanism: str
    review: dict[str, str] | None = None  # dtype: why its verdict is under review

    @property
    def spec(self) -> str:
        return f"{TF}.{self.module}:{self.name}"


CENSUS_DTYPES = CUDA_DTYPES  # float16, bfloat16, float32, with gradients
CENSUS: list[Census] = [
    Census(
        "DeepseekV4UnweightedRMSNorm",
        "deepseek_v4.modeling_deepseek_v4",
        [],
        "`x * torch.rsqrt(x.float().square().mean(-1) + eps).to(x.dtype)`: rstd rounded to the input dtype before the "
        "multiply. Checked: y equals `x.float() * rstd.to(dtype).float()` rounded once, bit for bit; rstd kept in "
        "float32 takes y from 1.09 to 0.38 ulp (fp16 2x3) and passes the audit. The rounded rstd's gradient sum(g*x) "
        "is formed in float16: -inf on rows near 6e4, hence NaN dx (named 'missing fp32 upcast' in the backward).",
    ),
    Census(
        "GradiumPhononTTSFlowLayerNorm",
        "gradium_phonon_tts.modeling_gradium_phonon_tts",
        [],
        "`mean`, `var(unbiased=False)`, `rsqrt(var + eps)` and the affine in the input dtype (no upcast). Checked: "
        "the same ops on a float32 copy (affine in the input dtype) take y from 18.6 to 0.41 ulp (fp16 2x3) and pass "
        "the audit; NaN y: the float16 variance of rows of 1e4 overflows (3e8), rsqrt gives 0, an overflowed x - mean "
        "gives inf * 0; fp16 dx -inf on tiny rows: d rsqrt = -r^3/2 overflows. bf16 gradients are named for the "
        "statistics held in bfloat16 (the same cause).",
    ),
    Census(
        "PocketTTSFlowLayerNorm",
        "pocket_tts.modeling_pocket_tts",
        [],
        "The same code as `GradiumPhononTTSFlowLayerNorm`, the same findings and the same check.",
    ),
    Census(
        "ImageGPTLayerNorm",
        "imagegpt.modeling_imagegpt",
        [],
        "An RMSNorm: `tensor / torch.sqrt(torch.mean(torch.square(tensor), -1) + eps) * weight`, all in the input "
        "dtype. Checked: the same ops on a float32 copy, cast, times w take y from 1462 to 0.34 ulp (fp16 2x3) and "
        "pass the audit; fp16 dx -inf on tiny rows: the gradient of mean(x^2) (grad / 2 sqrt) overflows float16.",
        review={
            "bfloat16": "its dw finding is named 'eps outside sqrt', but eps is inside the sqrt: no emulation "
            "reproduces its failing element, and that one divides as ImageGPT does"
        },
    ),
    Census(
        "MuseSparkTextCenteredRMSNorm",
        "muse_spark.modeling_muse_spark",
        OFFSET,
        "An RMSNorm (no centering) in float32, times `(1.0 + self.weight).float()`: 1 + w rounded to the weight dtype "
        "first (Gemma: `1.0 + self.weight.float()`). Checked: 1 + w is inexact in float16 for 30 of the fp16 "
        "finding's 31 weights; Gemma's order takes y from 1.23 to 0.49 ulp (fp16), 1.26 to 0.45 (bf16) and passes.",
    ),
    Census(
        "VideoPrismLayerNorm",
        "videoprism.modeling_videoprism",
        OFFSET,
        "`F.layer_norm(x, shape, self.weight + 1.0, self.bias, eps)`: 1 + w rounded to the weight dtype, and "
        f"{TORCH_LN}. Checked: the kernel on float32 copies leaves only the y bias finding of the rounded 1 + w; with "
        "1 + w in float32 too, the audit passes.",
    ),
    Census(
        "MoonshineStreamingLayerNorm",
        "moonshine_streaming.modeling_moonshine_streaming",
        OFFSET,
        "`self.ln(x) * (self.gamma + 1.0)`: nn.LayerNorm without affine, then 1 + gamma and the scale in the input "
        "dtype; the kernel saves mean and rstd in the input dtype. Checked: the kernel on float32 copies removes the "
        "dx finding (which names no bug), leaving y and dw's rounded offset; all in float32, one cast, it passes.",
    ),
    Census(
        "ChameleonLayerNorm",
        "chameleon.modeling_chameleon",
        [],
        "`F.layer_norm(x, (n,), None, None, eps=1e-5) * weight + bias`: without parameters torch's CPU kernel saves "
        "mean and rstd in the input dtype too (checked on the autograd node); the affine is autograd's, correct. "
        "Checked: with the kernel on float32 copies the audit passes. The cause is torch's kernel.",
    ),
    Census(
        "SamLayerNorm",
        "sam.modeling_sam",
        [],
        f"nn.LayerNorm's forward (channels_last): {TORCH_LN}. Checked: with the kernel on float32 copies the audit "
        "passes. The cause is torch's kernel, not transformers' code.",
    ),
    Census(
        "EsmFoldLayerNorm",
        "esm.modeling_esmfold",
        [],
        "`F.layer_norm(x, c_in, weight, bias, eps)` (weights cast to bfloat16 for bf16 inputs): torch's kernel as in "
        "`SamLayerNorm`, the same findings; with the kernel on float32 copies the audit passes.",
    ),
    Census(
        "EsmcLayerNorm",
        "esmc.modeling_esmc",
        [],
        "`super().forward(x).to(x.dtype)`: nn.LayerNorm, torch's kernel as in `SamLayerNorm`, the same findings; with "
        "the kernel on float32 copies the audit passes.",
    ),
    Census(
        "NanoChatRMSNorm",
        "nanochat.modeling_nanochat",
        [],
        "`x.float()`, `x * rsqrt(mean(x^2) + eps)`, `.type_as(x)`: all in float32, one cast, no weight (all-fp32 "
        "convention bit for bit on 100%); eps-only constructor, eps 1e-6 read from the module.",
    ),
    Census(
        "Inkling2UnweightedRMSNorm",
        "inkling2.modeling_inkling2",
        [],
        "`.float()`, `h * rsqrt(h.square().mean(-1) + eps)`, `.to(input_dtype)`: as `NanoChatRMSNorm` (all-fp32 on "
        "100%), eps 1e-6.",
    ),
    Census(
        "EsmFold2LayerNorm",
        "esmfold2.modeling_esmfold2",
        [],
        "`F.layer_norm(x.float(), shape, weight, bias, eps).to(x.dtype)` with float32 parameters (transformers builds "
        "some with `dtype=torch.float32`; half ones raise 'mixed dtype (CPU)'): all in float32, one cast; the "
        "parameters are kept in float32 (`kept_parameters`).",
    ),
    Census(
        "DebertaLayerNorm",
        "deberta.modeling_deberta",
        [],
        "`.float()`, two-pass variance, `(x - mean) / sqrt(var + eps)`, cast, `weight * h + bias` in the input dtype "
        "(the half-affine convention, 100% in bf16). fp32 dx reaches 1.26e6 ulps of scale on constant rows: at eps "
        "1e-12 rstd is 1e6 and amplifies the mean's rounding, as in torch.nn.LayerNorm (3% of the sharp bound).",
    ),
    Census(
        "LlamaRMSNorm",
        "llama.modeling_llama",
        [],
        "`h.to(float32)`, `h * rsqrt(mean(h^2) + eps)`, `weight * h.to(input_dtype)`: Llama's cast order (100%).",
    ),
    Census(
        "GemmaRMSNorm",
        "gemma.modeling_gemma",
        OFFSET,
        "`_norm(x.float()) * (1.0 + self.weight.float())`, `.type_as(x)`: 1 + w in float32 (all-fp32 on 100%).",
    ),
    Census(
        "T5LayerNorm",
        "t5.modeling_t5",
        ["--kind", "rmsnorm"],
        "The statistic in float32, `x * rsqrt` promoted to float32, cast to the weight dtype, `weight * h`: T5's "
        "order (its outputs are Llama's on 100%).",
    ),
    Census("Qwen3RMSNorm", "qwen3.modeling_qwen3", [], "The same code as `LlamaRMSNorm` (100% Llama's order)."),
]


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


OUTPUTS = ("y", "dx", "dw", "db")


def _census(name: str) -> dict:
    return json.loads((HERE / "json" / f"census-{name}.json").read_text())


def _worst(data: dict, dtype: str, output: str) -> str | None:
    """The worst error of one output: NaN or inf where it was non-finite, else the largest error of the statistics'
    inputs and of the findings (those of the search too), in ulps of each element's scale."""
    found = [f for f in data["findings"] if (f["dtype"], f["output"]) == (dtype, output)]
    nonfinite = [f["worst"]["candidate"] for f in found if f["check"] == "nonfinite"]
    if nonfinite:
        return f"{output} {nonfinite[0]}"
    errors = [_max_error(data, dtype, output), *(f["worst"]["ulp_error"] for f in found if f["check"] == "accuracy")]
    errors = [e for e in errors if e is not None]
    return f"{output} {max(errors):.3g}" if errors else None


def _census_cell(data: dict, dtype: str, review: str | None) -> str:
    """The verdict in one dtype, the worst error of each output, and why the verdict is under review if it is."""
    worst = ", ".join(filter(None, (_worst(data, dtype, output) for output in OUTPUTS)))
    kept = " (float32 parameters)" if dtype in data["kept_parameters"] else ""
    cell = f"{_verdict(data, dtype)}{kept} ({worst})"
    return f"**verdict under review**: {review}. {cell}" if review else cell


def census_counts() -> str:
    """How many classes pass and fail, and how many failing classes each bug is named for, from the committed JSON."""
    reports = [_census(entry.name) for entry in CENSUS]
    failing = [data for data in reports if data["verdict"] != "pass"]
    bugs = Counter(bug for data in failing for bug in {_why(f) for f in data["findings"]})
    by_bug = "; ".join(f"{bug}: {count}" for bug, count in sorted(bugs.items(), key=lambda item: (-item[1], item[0])))
    total, fail = len(reports), len(failing)
    return f"{total} classes: {total - fail} pass, {fail} fail. Failing classes per named bug (else check): {by_bug}"


def census_markdown() -> str:
    """reports/census.md, from the committed JSON alone."""
    env = _census(CENSUS[0].name)["environment"]
    lines = [
        "# Census of transformers' norm classes",
        "",
        f"Default audits (transformers {env['transformers']}, torch {env['torch']}, CPU, with gradients,",
        f"{EXAMPLES[1]} search examples per dtype): `python reports/generate.py --census`; `--census --table`",
        "re-renders this file from `reports/json/census-*.json`. Per dtype: the verdict, the outputs that fail and",
        "the named bug (a check's name where none is named), and the worst error of each output in ulps of each",
        "element's scale (NaN or inf: non-finite where the exact value is finite). Each mechanism was read in the",
        "source and checked by hand with torch: the suspected rounding reproduces the output, and each failing class",
        "with it removed ([census_fixes.py](census_fixes.py)) passes the same audit.",
        "",
        census_counts() + ".",
        "",
        "| class | float16 | bfloat16 | float32 | mechanism (checked by hand) |",
        "|---|---|---|---|---|",
    ]
    for entry in CENSUS:
        data = _census(entry.name)
        cells = [_census_cell(data, dtype, (entry.review or {}).get(dtype)) for dtype in CENSUS_DTYPES[1::2]]
        lines.append(f"| `{entry.name}` (`{TF}.{entry.module}`) | " + " | ".join(cells) + f" | {entry.mechanism} |")
    return "\n".join(lines) + "\n"


def _write_census() -> str:
    """Write reports/census.md from the committed JSON; returns its counts."""
    (HERE / "census.md").write_text(census_markdown())
    return census_counts()


def _audit(
    name: str, spec: str, extra: list[str], device: str, dtypes: list[str] | None = None
) -> tuple[str, int, float]:
    """One audit in its own process (audits run side by side); its output goes to reports/json/NAME.log."""
    dtypes = dtypes or (CUDA_DTYPES if device != "cpu" else DTYPES)
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
    parser.add_argument("--census", action="store_true", help="audit the census of transformers' norm classes (CPU)")
    args = parser.parse_args(argv)
    targets = CUDA_TARGETS if args.device != "cpu" else TARGETS
    if args.table:
        print(_write_census() if args.census else readme_table(targets))
        return 0
    (HERE / "json").mkdir(exist_ok=True)
    if args.census:
        jobs = [(f"census-{c.name}", c.spec, c.extra, "cpu", CENSUS_DTYPES) for c in CENSUS]
    else:
        jobs = [
            (name, spec, extra, args.device) for kind_targets in targets.values() for name, spec, extra in kind_targets
        ]
    jobs = [job for job in jobs if not args.only or job[0] in args.only]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, status, seconds in pool.map(lambda job: _audit(*job), jobs):
            print(f"{name}: exit {status} in {seconds:.0f} s", flush=True)
            if status == 2:
                print((HERE / "json" / f"{name}.log").read_text()[-2000:], file=sys.stderr)
    print(f"{len(jobs)} audits in {time.perf_counter() - start:.0f} s", flush=True)
    if args.census:
        print(_write_census())
        return 0
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
