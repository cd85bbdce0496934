"""The audit survives and sees through misbehaving implementations (tests/normcheck/targets/misbehaving.py).

Each implementation runs in normcheck's worker process, as in every default audit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch

from normcheck.api import audit
from normcheck.engine.calls import MAX_LOST
from normcheck.errors import UsageError

from .targets.misbehaving import LONG

ROOT = Path(__file__).resolve().parents[2]
MISBEHAVING = str(Path(__file__).parent / "targets" / "misbehaving.py")


def target(name: str) -> str:
    return f"{MISBEHAVING}:{name}"


def checks(result) -> set[str]:
    return {f.check for f in result.findings}


@pytest.mark.parametrize(
    "name, how",
    [
        ("SegfaultsOnLongRows", "killed by SIGSEGV (Segmentation fault)"),
        ("AbortsOnLongRows", "killed by SIGABRT (Aborted)"),
        ("ExitsOnLongRows", "exited with status 3"),
    ],
)
def test_an_implementation_that_dies_is_a_crash_finding_and_the_audit_goes_on(name, how):
    result = audit(target(name), kind="rmsnorm", dtype=("float32", "bfloat16"), examples=5)
    crashes = [f for f in result.findings if f.check == "crash"]
    assert {f.dtype for f in crashes} == {"float32", "bfloat16"}
    for f in crashes:
        assert how in f.message, f.message
        assert f.example is not None and f.example.n >= LONG and f.regime
        assert "load_target" in f.reproducer
    if name != "ExitsOnLongRows":  # faulthandler names the line (os._exit leaves no last words)
        assert all("misbehave (misbehaving.py:" in f.message and f.detail for f in crashes)
    # Every other input was judged, in both dtypes, and found correct.
    assert checks(result) == {"crash"}
    assert {dtype for dtype, _, _ in result.stats} == {"float32", "bfloat16"}
    assert result.cases > 60
    # A crash is not triggered again in its hidden-size block: at most the blocks past LONG of the default
    # sizes (4095, 4096 | 4097 | 16385 | 65537) crash once each per dtype; the other long inputs are skipped.
    assert 2 * 3 <= result.restarts <= 2 * 4
    assert result.skipped["float32"] >= 9 * 2 and result.skipped["bfloat16"] >= 9 * 2  # other regimes, 4097, 16385


def test_the_reproducer_of_a_crash_crashes_a_fresh_process_the_same_way(tmp_path):
    result = audit(target("SegfaultsOnLongRows"), kind="rmsnorm", dtype="float32", examples=0)
    [crash] = [f for f in result.findings if f.check == "crash"]
    (tmp_path / "reproducer.py").write_text(crash.reproducer)
    done = subprocess.run([sys.executable, "reproducer.py"], cwd=tmp_path, capture_output=True, timeout=300)
    assert done.returncode == -signal.SIGSEGV, done.stderr.decode()[-2000:]


def test_a_hang_inside_c_is_stopped_at_the_timeout_and_says_where_it_was_stuck():
    # 3 s, not less: on a loaded 2-core CI machine a correct call of a short row has taken over 1 s.
    result = audit(target("HangsInCOnLongRows"), kind="rmsnorm", dtype="float32", examples=5, timeout=3)
    [hang] = [f for f in result.findings if f.check == "timeout"]
    assert "no result within 3 s, stuck in misbehave (misbehaving.py:" in hang.message
    assert hang.example.n >= LONG and "pbkdf2_hmac" not in hang.message
    assert checks(result) == {"timeout"}
    assert 1 <= result.restarts <= 4  # once per block past LONG at most: 4095-4096, 4097, 16385, 65537


def test_an_implementation_that_always_hangs_costs_a_bounded_number_of_timeouts():
    result = audit(target("AlwaysHangsInC"), kind="rmsnorm", dtype="float32", examples=20, timeout=0.5)
    assert checks(result) == {"timeout"}
    # One timeout in the probe for the weight offset, MAX_LOST in the audit; then the dtype's inputs are skipped.
    assert result.restarts == 1 + MAX_LOST
    assert result.skipped["float32"] > 20


def test_an_implementation_wrong_on_one_call_in_three_is_a_nondeterminism_finding_not_a_traceback():
    result = audit(target("FlakyRMSNorm"), kind="rmsnorm", dtype="float32", examples=20)
    flaky = [f for f in result.findings if f.check == "nondeterminism"]
    assert flaky, [f.message for f in result.findings]
    assert "ulp on the first call" in flaky[0].message and "ulp on the second" in flaky[0].message
    assert "accuracy" in checks(result)  # the wrong call is judged too


@pytest.mark.parametrize("in_process", [False, True], ids=["worker", "in-process"])
def test_writing_into_the_input_is_a_mutation_finding_and_outputs_are_judged_against_the_original(in_process):
    result = audit("tests.normcheck.zoo:MutatingRMSNorm", dtype="float16", examples=10, in_process=in_process)
    assert result.kind == "rmsnorm"
    assert checks(result) == {"mutation"}, [f.message for f in result.findings]
    assert "wrote into its input x" in result.findings[0].message


def test_writing_into_grad_output_is_a_mutation_finding():
    result = audit(target("WritesIntoGradOutput"), kind="rmsnorm", dtype="float32", examples=5)
    assert checks(result) == {"mutation"}, [f.message for f in result.findings]
    assert "grad_output" in result.findings[0].message


def test_a_stated_kind_is_trusted_and_a_norm_that_matches_nothing_fails_on_accuracy():
    result = audit(target("SumRMSNorm"), kind="rmsnorm", dtype="float32", examples=0)
    assert "accuracy" in checks(result)


def test_without_a_kind_a_norm_that_matches_nothing_is_a_usage_error_naming_the_closest():
    closest = r"matches neither RMSNorm nor LayerNorm on a probe \(closest: rmsnorm, weight offset \d, .* ulp off\)"
    with pytest.raises(UsageError, match=closest):
        audit(target("SumRMSNorm"), dtype="float32", examples=0)


def test_an_eps_hard_coded_in_forward_is_stated_with_eps_or_inferred_and_the_module_passes():
    result = audit(target("HardCodedEpsLayerNorm"), eps=1e-5, examples=5)
    assert result.passed, [f.message for f in result.findings]
    assert result.kind == "layernorm" and set(result.eps.values()) == {1e-5} and not result.eps_inferred
    inferred = audit(target("HardCodedEpsLayerNorm"), examples=5)
    assert inferred.passed and set(inferred.eps.values()) == {1e-5} and inferred.eps_inferred


def test_the_headline_is_the_worst_error_and_the_smallest_failing_input_stands_beside_it():
    result = audit("tests.normcheck.zoo:MiniMindRMSNorm", kind="rmsnorm", dtype="float16", examples=30)
    [f] = [f for f in result.findings if f.check == "accuracy" and f.output == "y"]
    assert f.worst["ulp_error"] > 1000  # huge rows: x**2 overflows float16 (MiniMind's bug)
    assert f"{f.worst['ulp_error']:.3g} ulp" in f.message and f.worst["regime"] == f.regime
    assert f.minimal is not None and f.example.x.size < f.worst["shape"][0] * f.worst["shape"][-1]
    assert f.minimal["shape"] == list(f.example.x.shape)


@pytest.mark.parametrize(
    "name, message",
    [
        ("TowardZeroRMSNorm", "y is biased toward zero by -0.1"),
        ("OneChannelDriftRMSNorm", "1 of 64 channels drift one way (channel 5: +0."),
    ],
)
def test_a_rounding_bias_within_the_accuracy_bound_is_a_bias_finding_on_its_own(name, message):
    result = audit(target(name), kind="rmsnorm", dtype="bfloat16", examples=10)
    assert [f.check for f in result.findings] == ["bias"]
    assert message in result.findings[0].message


def test_a_target_defined_inside_a_function_needs_in_process():
    class Local(torch.nn.Module):
        def __init__(self, dim: int, eps: float = 1e-6) -> None:
            super().__init__()
            self.eps = eps

        def forward(self, x):
            return torch.nn.functional.rms_norm(x, x.shape[-1:], eps=self.eps)

    with pytest.raises(UsageError, match=r"cannot be sent to normcheck's worker process.*in_process=True"):
        audit(Local, kind="rmsnorm", examples=0)
    assert audit(Local, kind="rmsnorm", dtype="float32", examples=0, in_process=True).passed


def test_a_script_without_a_main_guard_gets_told_to_add_one(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            """
            import torch
            import normcheck

            class ScriptNorm(torch.nn.Module):
                def __init__(self, dim, eps=1e-6):
                    super().__init__()
                    self.eps = eps

                def forward(self, x):
                    return torch.nn.functional.rms_norm(x, x.shape[-1:], eps=self.eps)

            normcheck.assert_matches_oracle(ScriptNorm, kind="rmsnorm", dtype="float32", examples=0)
            print("audited")
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "put the audit under `if __name__ == '__main__':`" in done.stderr
    guarded = script.read_text().replace("normcheck.assert", "if __name__ == '__main__':\n    normcheck.assert")
    script.write_text(guarded.replace('print("audited")', '    print("audited")'))
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "audited" in done.stdout, done.stderr


def test_a_module_that_kills_the_worker_while_loading_is_a_one_line_usage_error(tmp_path, capsys):
    from normcheck.cli import main

    target = tmp_path / "dies_at_import.py"
    target.write_text("import os\n\nos.abort()\n\n\nclass Norm:\n    pass\n")
    assert main(["audit", f"{target}:Norm", "--examples", "0", "--dtype", "float32"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("normcheck: error: the worker process was killed by SIGABRT") and "\n" not in err
    assert "while loading" in err and "dies_at_import.py:3" in err


def test_olmos_layernorm_with_its_hard_coded_eps_audits_and_passes(capsys):
    pytest.importorskip("transformers")
    from normcheck.cli import main

    target = "transformers.models.olmo.modeling_olmo.OlmoLayerNorm"
    assert main(["audit", target, "--eps", "1e-5", "--examples", "5"]) == 0
    assert "PASS" in capsys.readouterr().out
