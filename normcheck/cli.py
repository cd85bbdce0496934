"""Command line: ``normcheck audit TARGET`` (exit 0 pass, 1 findings, 2 usage error), ``normcheck scan PACKAGE``
(exit 1 when any implementation fails), ``merge``, ``report``, ``vectors``, ``check-vectors`` and ``demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from normcheck.errors import UsageError
from normcheck.options import (
    DEFAULT_DTYPES,
    DEFAULTS,
    DTYPES,
    REPRODUCER_DIR,
    AuditOptions,
    Framework,
    InputLayout,
    Kind,
    Style,
)
from normcheck.quantization import QUANT_NAMES
from normcheck.scan.discover import NAME_PATTERN
from normcheck.timing import SLACK


def _demo(args: argparse.Namespace) -> int:
    from normcheck.demo import run_demo

    rows, seconds = run_demo(rows=args.rows, hidden=args.hidden, seed=args.seed)
    table = Table(title=f"torch.nn.functional.rms_norm vs the exact oracle ({args.rows}x{args.hidden}, CPU)")
    for col in ("dtype", "max ulp", "mean ulp", "signed mean ulp", "correctly rounded"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r.dtype, f"{r.max_ulp:.3f}", f"{r.mean_ulp:.4f}", f"{r.signed_mean_ulp:+.2e}", f"{r.correctly_rounded:.2%}"
        )
    console = Console()
    console.print(table)
    console.print(f"oracle time: {seconds * 1e3:.1f} ms for {3 * args.rows * args.hidden} outputs")
    return 0


def _common_options(args: argparse.Namespace) -> dict:
    """The options ``audit`` and ``scan`` share, from the command line."""
    return {
        "dtype": tuple(args.dtype or DEFAULT_DTYPES),
        "device": args.device,
        "examples": args.examples,
        "seed": args.seed,
        "grad": not args.no_grad,
        "timeout": args.timeout,
        "compile": args.compile_backend if args.compile else None,
        "param_dtype": args.param_dtype,
        "layout": args.layout,
    }


def _options(args: argparse.Namespace) -> AuditOptions:
    """The audit's options from the command line (their checks are the options' own)."""
    if args.report_dir:  # reproducers of large inputs store them beside the report
        folder = args.report_dir
    else:
        folder = str(Path(args.json).parent) if args.json else REPRODUCER_DIR
    return AuditOptions(
        **_common_options(args),
        kind=args.kind,
        eps=args.eps,
        weight_offset=args.weight_offset,
        hidden_sizes=tuple(args.hidden_size or ()),
        shapes=tuple(parse_shape(text) for text in args.shape or ()),
        in_process=args.in_process,
        residual=args.residual,
        style=args.style,
        framework=args.framework,
        quant=args.quant,
        scaling=args.scaling,
        reproducer_dir=folder,
    )


def parse_shape(text: str) -> tuple[int, ...]:
    """``"8x4096x7168"`` -> ``(8, 4096, 7168)``: leading dimensions, then the hidden size."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) < 2 or min(shape) < 1:
        raise UsageError(f"--shape must be ROWSxHIDDEN or AxBx...xHIDDEN with every size >= 1, got {text!r}")
    return shape


def _audit(args: argparse.Namespace) -> int:
    options = _options(args)
    _check_outputs(args)
    from normcheck.api import open_audit

    with (
        open_audit(args.target, options) as auditor,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as progress,
    ):
        task = progress.add_task(f"auditing {args.target}", total=None)
        auditor.progress = lambda msg: progress.update(task, description=f"{args.target}: {msg}")
        result = auditor.run()
        framework = auditor.caller.c.framework
    from normcheck.report.terminal import print_result

    print_result(result, Console())
    settings = options.settings(framework)
    from normcheck.report.json_report import write_report

    if args.report_dir:
        from normcheck.report.render import render

        Path(args.report_dir).mkdir(parents=True, exist_ok=True)
        json_path = str(Path(args.report_dir) / "audit.json")
        write_report(json_path, result, settings)
        render([json_path], args.report_dir)
    if args.json:
        write_report(args.json, result, settings)
    return 0 if result.passed else 1


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail early, with one line, on a --json or --report-dir that cannot be written."""
    if args.json:
        from normcheck.report.json_report import check_writable

        check_writable(args.json)
    if args.report_dir:
        folder = Path(args.report_dir)
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"--report-dir {args.report_dir!r} exists and is not a folder")


def _scan(args: argparse.Namespace) -> int:
    import os

    from normcheck.scan.render import print_summary, short_name, write
    from normcheck.scan.scanner import scan

    options = AuditOptions(**_common_options(args))
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    _check_outputs(args)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(f"scanning {args.target}: finding norms", total=None)

        def show(state) -> None:
            names = ", ".join(short_name(s) for s in state.running)
            progress.update(task, total=state.total, completed=state.finished, description=f"auditing {names}"[:60])

        doc = scan(
            args.target,
            options,
            include=args.include or (),
            exclude=args.exclude or (),
            names=args.names,
            jobs=args.jobs or os.cpu_count() or 1,
            cache=args.cache,
            reproducers=str(Path(args.report_dir) / "reproducers") if args.report_dir else None,
            progress=show,
        )
    print_summary(doc, Console())
    write(doc, args.json, args.report_dir)
    return 0 if doc["counts"]["fail"] == 0 and doc["counts"]["errors"] == 0 else 1


def _merge(args: argparse.Namespace) -> int:
    from normcheck.scan.render import load, print_summary, write
    from normcheck.scan.summary import merge

    if not (args.json or args.report_dir):
        raise UsageError("give --json FILE and/or --report-dir DIR for the merged summary")
    _check_outputs(args)
    doc = merge([load(path) for path in args.shards])
    print_summary(doc, Console())
    write(doc, args.json, args.report_dir)
    return 0 if doc["counts"]["fail"] == 0 and doc["counts"]["errors"] == 0 else 1


def _report(args: argparse.Namespace) -> int:
    from normcheck.report.render import render

    for path in render(args.results, args.out):
        print(path)
    return 0


def _vectors(args: argparse.Namespace) -> int:
    from normcheck.report.json_report import check_writable, write_atomically
    from normcheck.report.vectors import KINDS, dumps, generate

    if (args.out is None) == (args.out_dir is None):
        raise UsageError("give exactly one of --out FILE (with --kind and --dtype) or --out-dir DIR (every corpus)")
    if args.out is not None:
        if args.kind is None or args.dtype is None:
            raise UsageError("--out needs --kind and --dtype")
        jobs = [(args.kind, args.dtype, args.out)]
    else:
        folder = Path(args.out_dir)
        if not folder.is_dir():
            raise UsageError(f"--out-dir {args.out_dir!r} is not a folder")
        jobs = [(k, d, str(folder / f"{k}-{d}.json")) for k in KINDS for d in DTYPES]
    for kind, dtype, path in jobs:
        check_writable(path, "--out")
        corpus = generate(kind, dtype, seed=args.seed)
        write_atomically(path, dumps(corpus))
        print(f"{path}: {corpus['numberOfTests']} {kind} cases in {dtype}")
    return 0


def _check_vectors(args: argparse.Namespace) -> int:
    from normcheck.report.vectors import check, load

    corpus, results = load(args.vectors), load(args.results)
    failures = check(corpus, results)
    judged = len(results.get("tests", []))
    console = Console()
    if not failures:
        console.print(
            f"[bold green]PASS[/] {judged} of {corpus['numberOfTests']} {corpus['algorithm']} "
            f"{corpus['dtype']} cases within their bounds"
        )
        return 0
    console.print(f"[bold red]FAIL[/] {len(failures)} output(s) out of bounds in {judged} cases:")
    for f in failures:
        console.print(f"  tcId {f['tcId']} {f['output']}[{f.get('index', '-')}]: {f['reason']} -- {f['comment']}")
    return 1


def _add_common_options(command: argparse.ArgumentParser) -> None:
    """The options ``audit`` and ``scan`` share (read back by :func:`_common_options`)."""
    command.add_argument("--device", default=DEFAULTS.device, help="a torch device: cpu, cuda, cuda:1, xpu, mps, ...")
    command.add_argument(
        "--dtype", action="append", choices=DTYPES, help=f"repeat for several (default: {', '.join(DEFAULT_DTYPES)})"
    )
    command.add_argument(
        "--param-dtype", choices=DTYPES, help="keep the parameters in this dtype (default: the audited dtype)"
    )
    command.add_argument(
        "--compile", action="store_true", help="audit the implementation under torch.compile (JAX: jax.jit)"
    )
    command.add_argument("--compile-backend", default="inductor", help="torch.compile backend for --compile")
    command.add_argument(
        "--examples",
        type=int,
        default=DEFAULTS.examples,
        help=f"random search examples per dtype (default {DEFAULTS.examples})",
    )
    command.add_argument(
        "--seed", type=int, default=DEFAULTS.seed, help="search seed: the same seed gives the same verdict"
    )
    command.add_argument("--no-grad", action="store_true", help="audit the forward pass only")
    command.add_argument(
        "--layout",
        choices=tuple(InputLayout),
        default=DEFAULTS.layout,
        help="where the normalized dimension is: last (default), or the channels of a channels-first tensor, "
        "nchw (LayerNorm2d, ConvNext's channels_first) or ncl (1-d)",
    )
    command.add_argument(
        "--timeout",
        type=float,
        default=DEFAULTS.timeout,
        help=f"seconds before a call counts as hanging (or {SLACK:g}x its predicted time, if longer); inputs predicted "
        "to take longer are not run (0: no limit)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="normcheck", description="Exact-oracle audits of RMSNorm and LayerNorm.")
    sub = parser.add_subparsers(dest="command", required=True)
    audit = sub.add_parser("audit", help="audit an implementation against the exact oracle")
    audit.add_argument("target", help="mypkg.RMSNorm, mypkg.sub:RMSNorm, path/to/file.py:Name or a function")
    audit.add_argument("--kind", choices=tuple(Kind), help="inferred by probing when omitted")
    _add_common_options(audit)
    audit.add_argument("--eps", type=float, help="construct with / call with this eps (default: the implementation's)")
    audit.add_argument("--weight-offset", type=int, choices=(0, 1), help="1 for Gemma's (1 + w); inferred if omitted")
    audit.add_argument("--hidden-size", type=int, action="append", help="hidden sizes to search (repeatable)")
    audit.add_argument(
        "--shape",
        action="append",
        help="also audit inputs of exactly this shape, e.g. 32768x256 or 8x4096x7168 (repeatable)",
    )
    audit.add_argument(
        "--residual",
        action="store_true",
        help="a fused residual-add + norm, called as f(x, residual, ...): returns (y, residual_out) or works in "
        "place; with --quant, (q[, scales], residual_out) or q[, scales] with the sum written into residual",
    )
    audit.add_argument(
        "--style",
        choices=tuple(Style),
        default=Style.AUTO,
        help="with --residual: how it hands back y and x + residual (default: found on the first call)",
    )
    audit.add_argument(
        "--quant",
        choices=QUANT_NAMES,
        help="a norm fused with the quantization of its output into this format: returns (q, scales), or q when "
        "given a static scale (forward only); nvfp4 is called with a float32 global scale and returns (q, scales)",
    )
    audit.add_argument(
        "--scaling",
        default=DEFAULTS.scaling,
        help="with --quant: token (a float32 scale per row, default), group:N (per N channels), or tensor (static: "
        "called as f(x, ..., scale)); mxfp8 and mxfp4: block (UE8M0 scales per 32 by either rule, default), "
        "block:ocp or block:ceil; nvfp4: block (E4M3 scales per 16, called as f(x, ..., global_scale)) or "
        "block:swizzled (the scales in 128x4 GEMM tiles)",
    )
    audit.add_argument(
        "--framework",
        choices=tuple(Framework),
        help="what the target is written in (default: jax for Flax modules and jax functions, else torch)",
    )
    audit.add_argument(
        "--in-process",
        action="store_true",
        help="run the implementation in normcheck's own process (for a debugger; a crash or a hang in C "
        "then stops the audit)",
    )
    audit.add_argument("--json", help="write the versioned JSON report here (atomically)")
    audit.add_argument("--report-dir", help="write audit.json, report.md (with plots) and report.html here")
    audit.set_defaults(func=_audit)
    scan = sub.add_parser("scan", help="audit every norm in a package: one audit per distinct implementation")
    scan.add_argument("target", help="an installed package or module: transformers, transformers.models.llama, mypkg")
    _add_common_options(scan)
    scan.add_argument(
        "--include", action="append", help="audit only module.Name matching this pattern (fnmatch; repeatable)"
    )
    scan.add_argument("--exclude", action="append", help="leave out module.Name matching this pattern (repeatable)")
    scan.add_argument("--names", default=NAME_PATTERN, help=f"what a norm is called (regex, default {NAME_PATTERN!r})")
    scan.add_argument("--jobs", type=int, help="audits at once, each in its own processes (default: the cores)")
    scan.add_argument("--cache", help="the folder of finished audits (default: ~/.cache/normcheck/scan)")
    scan.add_argument("--json", help="write the scan's JSON summary here (atomically)")
    scan.add_argument("--report-dir", help="write scan.md and scan.html here")
    scan.set_defaults(func=_scan)
    merge = sub.add_parser("merge", help="merge the JSON summaries of a scan's shards into the whole scan's")
    merge.add_argument("shards", nargs="+", help="scan summaries (scan --json), e.g. one per CI job")
    merge.add_argument("--json", help="write the merged JSON summary here")
    merge.add_argument("--report-dir", help="write scan.md and scan.html of the merged summary here")
    merge.set_defaults(func=_merge)
    rep = sub.add_parser("report", help="render Markdown and self-contained HTML from audit JSON reports")
    rep.add_argument("results", nargs="+", help="audit reports (--json) to show side by side")
    rep.add_argument("--out", required=True, help="folder for report.md, its plots and report.html")
    rep.set_defaults(func=_report)
    vec = sub.add_parser("vectors", help="write portable test vectors (exact answers for hard cases)")
    vec.add_argument("--kind", choices=tuple(Kind))
    vec.add_argument("--dtype", choices=DTYPES)
    vec.add_argument("--out", help="the corpus file to write")
    vec.add_argument("--out-dir", help="write every kind and dtype into this folder")
    vec.add_argument("--seed", type=int, default=0)
    vec.set_defaults(func=_vectors)
    chk = sub.add_parser("check-vectors", help="score outputs computed elsewhere against a vectors file")
    chk.add_argument("vectors", help="a file written by `normcheck vectors`")
    chk.add_argument("results", help='{"tests": [{"tcId": 1, "y": [...], "dx": [...], ...}]}')
    chk.set_defaults(func=_check_vectors)
    demo = sub.add_parser("demo", help="judge torch's RMSNorm in ULPs against the exact oracle")
    demo.add_argument("--rows", type=int, default=16)
    demo.add_argument("--hidden", type=int, default=4096)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (0 pass, 1 findings, 2 usage error)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"normcheck: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("normcheck: interrupted", file=sys.stderr)
        return 130
