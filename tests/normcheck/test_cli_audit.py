"""``normcheck audit`` end to end: exit codes, one-line usage errors, the JSON report."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from normcheck.cli import main
from normcheck.options import AuditOptions
from normcheck.result import TIMED

from .report_schema import valid_report

HERE = Path(__file__).parent
FILE = str(HERE / "targets" / "file_norms.py")
MISBEHAVING = str(HERE / "targets" / "misbehaving.py")
FAST = ["--examples", "5", "--dtype", "float16"]


def test_a_correct_module_passes_with_exit_0_and_writes_a_versioned_report(tmp_path, capsys):
    report = tmp_path / "r.json"
    assert main(["audit", f"{FILE}:GoodRMSNorm", *FAST, "--json", str(report)]) == 0
    assert "PASS" in capsys.readouterr().out
    data = valid_report(report)
    assert data["schema"] == "normcheck.audit/2" and data["verdict"] == "pass"
    assert data["kind"] == "rmsnorm" and data["settings"]["dtypes"] == ["float16"]
    assert data["environment"]["torch"] and data["eps"]["float16"] == 1e-6
    assert {"dtype", "output", "regime", "max", "p99", "signed_mean"} <= set(data["stats"][0])
    assert any(b["output"] == "dx" and "ulp" in b["rigorous"] and "8 K S" in b["sharp"] for b in data["bounds"])
    [y16] = [s for s in data["stats"] if (s["dtype"], s["output"], s["regime"]) == ("float16", "y", "normal")]
    assert 0 < y16["max"] <= y16["max_sharp"] <= y16["max_rigorous"] and y16["sharp_use"] <= 1
    assert not list(tmp_path.glob(".r.json.*")), "temporary file left behind"


def test_tables_stay_whole_in_an_80_column_log_that_is_not_a_terminal(capsys):
    assert main(["audit", "torch.nn.RMSNorm", "--examples", "3"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out  # nothing cut short
    assert max(len(line) for line in out.splitlines()) <= 80
    assert all(f" {d} " in out for d in ("fp16", "bf16", "fp32")) and " sharp " in out


def test_a_buggy_module_fails_with_exit_1_naming_the_bug_and_a_runnable_reproducer(tmp_path, capsys):
    report = tmp_path / "r.json"
    assert main(["audit", "tests.normcheck.zoo:MiniMindRMSNorm", *FAST, "--json", str(report)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "missing fp32 upcast" in out
    finding = next(f for f in valid_report(report)["findings"] if f["check"] == "accuracy")
    assert finding["diagnosis"]["bug"] == "missing fp32 upcast"
    exec(compile(finding["reproducer"], "<reproducer>", "exec"), {})  # it must run
    assert "max ulp error" in capsys.readouterr().out


def test_a_raising_implementation_is_an_exception_finding(tmp_path):
    report = tmp_path / "r.json"
    argv = ["audit", f"{FILE}:Crashes", "--examples", "3", "--dtype", "bfloat16", "--kind", "rmsnorm"]
    assert main([*argv, "--json", str(report)]) == 1
    data = valid_report(report)
    assert any(f["check"] == "exception" and "bf16 is not supported" in f["message"] for f in data["findings"])
    assert data["cases"] >= 54 and data["skipped"] == {}  # an exception costs no worker: every input is judged


@pytest.mark.parametrize(
    "mode, message",
    [([], "no result within 0.2 s, stuck in forward (file_norms.py:"), (["--in-process"], "no result within 0.2 s")],
)
def test_a_hanging_implementation_hits_the_timeout_in_the_worker_and_in_process(tmp_path, mode, message):
    report = tmp_path / "r.json"
    argv = ["audit", f"{FILE}:Hangs", "--kind", "rmsnorm", "--dtype", "float32", "--examples", "0", "--timeout", "0.2"]
    assert main([*argv, *mode, "--json", str(report)]) == 1
    data = valid_report(report)
    assert data["settings"]["isolation"] == ("in-process" if mode else "worker process")
    assert any(f["check"] == "timeout" and message in f["message"] for f in data["findings"])


#: Inputs of a float32 audit without search: every regime at 4 hidden sizes (44), random rows at 65537,
#: every weight regime (4), n = 1, batched, strided, the 512x16 that paces 32768x16, 32768x16, the statistics'
#: 512x64 (README, Search).
STRUCTURED = 55


@pytest.fixture(scope="module")
def segfault(tmp_path_factory) -> tuple[int, str, dict]:
    """Status, terminal output and report of an audit of an implementation that segfaults on rows of 4000 and more."""
    report = tmp_path_factory.mktemp("segfault") / "r.json"
    argv = ["audit", f"{MISBEHAVING}:SegfaultsOnLongRows", "--kind", "rmsnorm", "--dtype", "float32"]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = main([*argv, "--examples", "0", "--json", str(report)])
    return status, out.getvalue(), valid_report(report)


def test_a_segfault_is_a_finding_with_exit_1_and_a_report(segfault):
    status, out, data = segfault
    assert status == 1 and "killed by SIGSEGV" in out
    [crash] = data["findings"]
    assert crash["check"] == "crash" and crash["regime"] and "Segmentation fault" in crash["detail"]
    assert data["restarts"] == 3 and data["verdict"] == "fail"  # n = 4097, 16385, 65537: one crash per block
    assert crash["occurrences"] == 3 and crash["reproducer"] and crash["reproducer_file"]  # 1x4097: in a file


def test_the_inputs_a_crash_leaves_unrun_are_skipped_and_the_rest_are_cases(segfault):
    """Of 11 inputs at n = 4097 and 11 at 16385 the first crashes (a case) and 10 are not run: 20 skipped."""
    _, out, data = segfault
    assert data["cases"] == STRUCTURED - 20
    assert set(data["skipped"]) == {"float32"} and data["skipped"]["float32"] == 20
    assert f"float32: {data['skipped']['float32']} inputs not run" in out


def test_cases_and_skipped_add_up_to_the_inputs_of_the_audit(segfault):
    """Each input counts once: the determinism check's repeat of a skipped input is not skipped again."""
    _, _, data = segfault
    assert data["cases"] + data["skipped"]["float32"] == STRUCTURED


def test_functions_are_audited_forward_only_when_they_have_no_autograd(tmp_path, capsys):
    report = tmp_path / "r.json"
    assert main(["audit", "tests.normcheck.zoo:numpy_rms", *FAST, "--json", str(report)]) == 0
    data = valid_report(report)
    assert data["settings"]["forward_only"] is True
    assert {s["output"] for s in data["stats"]} == {"y"}
    assert "forward only" in capsys.readouterr().out


def test_ini_settings_reach_the_plugin(pytester):
    pytester.makeini("[pytest]\nnormcheck_dtypes =\n    bfloat16\nnormcheck_examples = 7\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess()
    result.stdout.fnmatch_lines(["*normcheck: dtypes=bfloat16 devices=cpu --normcheck-examples=7*"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["audit", "no_such_pkg_xyz.Norm"], "cannot import target 'no_such_pkg_xyz.Norm'"),
        (["audit", "torch.nn.NoSuchNorm"], "has no attribute 'NoSuchNorm'"),
        (["audit", f"{FILE}:NeedsConfig"], "cannot construct NeedsConfig"),
        (["audit", f"{FILE}:wrong_signature"], "cannot construct wrong_signature"),
        (["audit", "missing/file.py:Norm"], "no such file 'missing/file.py'"),
        (["audit", "torch.nn.RMSNorm", "--device", "xpu"], "--device xpu: torch has no xpu device here"),
        (["audit", "torch.nn.RMSNorm", "--device", "tpu:0"], "--device 'tpu:0' is not a torch device"),
        (["audit", "torch.nn.RMSNorm", "--eps", "-1"], "eps must be a finite number >= 0, got -1.0"),
        (["audit", "torch.nn.RMSNorm", "--hidden-size", "0"], "hidden sizes must be >= 1, got [0]"),
        (["audit", "torch.nn.RMSNorm", "--json", "/no/such/dir/r.json"], "cannot write --json"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert message in err and "Traceback" not in err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where not even root creates files")
def test_an_unwritable_report_path_is_a_usage_error_even_for_root(capsys):
    assert main(["audit", "torch.nn.RMSNorm", "--json", "/proc/normcheck-report.json"]) == 2
    captured = capsys.readouterr()
    assert "cannot write --json '/proc/normcheck-report.json'" in captured.err and captured.err.count("\n") == 1
    assert not captured.out  # refused before auditing, not after


def test_shape_audits_the_users_exact_shape(tmp_path):
    """A bug on a launch path the default shapes never reach is found at the shape given with --shape."""
    target = f"{HERE / 'targets' / 'long_rows.py'}:Bf16StatisticOnManyRows"
    args = ["audit", target, "--examples", "5", "--dtype", "float32", "--no-grad"]
    assert main(args) == 0
    report = tmp_path / "shape.json"
    assert main([*args, "--shape", "2x500x64", "--json", str(report)]) == 1
    data = valid_report(report)
    assert data["settings"]["shapes"] == [[2, 500, 64]]
    assert {tuple(f["worst"]["shape"]) for f in data["findings"] if f["worst"]} == {(2, 500, 64)}


# The failing one forward only: shrinking its failure recompiles at every new shape, twice with gradients.
@pytest.mark.parametrize(
    "target, status, grad", [("torch.nn.RMSNorm", 0, []), ("tests.normcheck.zoo:MiniMindRMSNorm", 1, ["--no-grad"])]
)
def test_compiled_implementations_are_audited_compiled(tmp_path, target, status, grad):
    report = tmp_path / "compiled.json"
    args = [
        "audit",
        target,
        "--compile",
        "--compile-backend",
        "aot_eager",
        "--examples",
        "5",
        "--dtype",
        "bfloat16",
        *grad,
    ]
    assert main([*args, "--json", str(report)]) == status
    data = json.loads(report.read_text())
    assert data["settings"]["compile"] == "aot_eager"
    assert {"implementation", "kernels", "oracle", "bounds"} <= set(data["timing"]) <= set(TIMED)
    assert 0 < data["timing"]["kernels"] < data["timing"]["implementation"] < data["seconds"]


def test_compile_traces_a_torch_nn_module_through_the_backend():
    """torch.compile skips a bare torch.nn module's own forward: the candidate must compile a caller frame."""
    import numpy as np
    import torch

    from normcheck.target.torch_target import Candidate

    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    candidate = Candidate(torch.nn.RMSNorm, "torch.nn.RMSNorm", AuditOptions(compile=counting_backend))
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    run = candidate.run(x, np.ones(3, np.float32), None, np.ones_like(x))
    assert run.failure is None and run.dx is not None
    assert graphs, "the module ran without being compiled"
