"""The pytest plugin, exercised as a user would: a tiny outside repo run with pytester."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from .report_schema import valid_report

NORMS = """
import torch
from torch import nn


class GoodRMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)


class BuggyRMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))
"""

TESTS = """
import pytest
from mynorms import BuggyRMSNorm, GoodRMSNorm


@pytest.mark.normcheck
def test_good(normcheck):
    normcheck.audit(GoodRMSNorm, kind="rmsnorm")


@pytest.mark.normcheck
def test_buggy(normcheck):
    normcheck.audit(BuggyRMSNorm, kind="rmsnorm")
"""


@pytest.fixture
def outside_repo(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(mynorms=NORMS, test_norms=TESTS)
    pytester.makepyprojecttoml('[tool.normcheck]\ndtypes = ["float16"]\nexamples = 5\n')
    return pytester


def test_the_correct_norm_passes_and_the_buggy_one_fails_with_the_diagnosis(outside_repo):
    result = outside_repo.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*normcheck: dtypes=float16 devices=cpu --normcheck-examples=5 --normcheck-seed=0*",
            "*test_buggy*float16-cpu*",
            "*bug: missing fp32 upcast*",
            "*reproducer:*",
            "*= normcheck =*",
            "PASS *GoodRMSNorm rmsnorm float16 on cpu: 0 finding(s)",
            "FAIL *BuggyRMSNorm rmsnorm float16 on cpu: * finding(s) [[]missing fp32 upcast*",
        ]
    )


def test_command_line_options_override_pyproject_and_cuda_skips_without_a_gpu(outside_repo):
    torch = pytest.importorskip("torch")
    args = ["--normcheck-dtype", "bfloat16", "--normcheck-device", "cuda", "--normcheck-examples", "3", "-v", "-rs"]
    result = outside_repo.runpytest_subprocess(*args)
    result.stdout.fnmatch_lines(["*test_good?bfloat16-cuda?*", "*test_buggy?bfloat16-cuda?*"])
    if torch.cuda.is_available():  # pragma: no cover - GPU machines only
        result.assert_outcomes(passed=1, failed=1)
    else:
        result.assert_outcomes(skipped=2)
        result.stdout.fnmatch_lines(["*normcheck: --device cuda: torch has no cuda device here*"])


EXAMPLES_TESTS = """
import pytest
from mynorms import GoodRMSNorm


@pytest.mark.normcheck
def test_configured(normcheck):
    normcheck.audit(GoodRMSNorm, kind="rmsnorm", grad=False, in_process=True)


@pytest.mark.normcheck
def test_without_search(normcheck):
    normcheck.audit(GoodRMSNorm, kind="rmsnorm", grad=False, in_process=True, examples=0)
"""


def test_the_examples_option_sets_how_many_search_inputs_each_audit_runs(pytester, tmp_path):
    """pyproject says 5, the option 2: each configured audit runs 2 search inputs beyond the structured ones
    (an audit that states examples=0 runs those alone), and its report says 2."""
    pytester.makepyfile(mynorms=NORMS, test_examples=EXAMPLES_TESTS)
    pytester.makepyprojecttoml('[tool.normcheck]\ndtypes = ["float16"]\nexamples = 5\n')
    reports = tmp_path / "reports"
    result = pytester.runpytest_inprocess("--normcheck-examples", "2", "--normcheck-report", str(reports))
    result.assert_outcomes(passed=2)
    [configured] = [valid_report(f) for f in reports.glob("*test_configured*.json")]
    [structured] = [valid_report(f) for f in reports.glob("*test_without_search*.json")]
    assert configured["settings"]["examples"] == 2 and structured["settings"]["examples"] == 0
    assert structured["cases"] > 0 and configured["cases"] == structured["cases"] + 2


QUANTIZED_NORMS = (
    NORMS
    + """

class Fp8RMSNorm(GoodRMSNorm):
    amax_of_input = False

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()
        amax = (xf if self.amax_of_input else y).abs().amax(-1, keepdim=True)
        scales = torch.clamp(amax / 448.0, min=1.0 / (448.0 * 512.0))
        return (y / scales).clamp(-448.0, 448.0).to(torch.float8_e4m3fn), scales


class AmaxOfInputFp8RMSNorm(Fp8RMSNorm):
    amax_of_input = True
"""
)

QUANTIZED_TESTS = """
import pytest
from quantnorms import AmaxOfInputFp8RMSNorm, Fp8RMSNorm


@pytest.mark.normcheck
@pytest.mark.parametrize("impl", [Fp8RMSNorm, AmaxOfInputFp8RMSNorm])
def test_quantized(normcheck, impl):
    normcheck.audit(impl, kind="rmsnorm", quant="float8_e4m3fn", in_process=True, examples=0)
"""


def test_a_quantized_norm_is_audited_through_the_fixture_and_its_bug_named(pytester, tmp_path):
    pytester.makepyfile(quantnorms=QUANTIZED_NORMS, test_quantized=QUANTIZED_TESTS)
    reports = tmp_path / "reports"
    result = pytester.runpytest_inprocess("--normcheck-dtype", "bfloat16", "--normcheck-report", str(reports))
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*bug: amax of the input*", "FAIL *AmaxOfInputFp8RMSNorm rmsnorm bfloat16*"])
    written = {r["target"].rsplit(":", 1)[-1]: r for r in map(valid_report, reports.glob("*.json"))}
    verdicts = {name: r["verdict"] for name, r in written.items()}
    assert verdicts == {"Fp8RMSNorm": "pass", "AmaxOfInputFp8RMSNorm": "fail"}
    assert all(r["settings"]["quant"] == "float8_e4m3fn" for r in written.values())
    assert {t["output"] for t in written["Fp8RMSNorm"]["totals"]} == {"q", "scales"}


def test_under_xdist_every_worker_reaches_the_summary_and_the_report_folder(outside_repo, tmp_path):
    pytest.importorskip("xdist")
    reports = tmp_path / "reports"
    result = outside_repo.runpytest_subprocess(
        "-n",
        "2",
        "--normcheck-dtype",
        "float16",
        "--normcheck-dtype",
        "bfloat16",
        "--normcheck-examples",
        "0",
        "--normcheck-report",
        str(reports),
    )
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*= normcheck =*"])
    assert sum("finding(s)" in line for line in result.stdout.lines) == 4
    files = sorted(reports.glob("*.json"))
    assert len(files) == 4
    written = [valid_report(f) for f in files]
    assert sorted(r["verdict"] for r in written) == ["fail", "fail", "pass", "pass"]
    assert all(r["settings"]["source"] == "pytest" for r in written)


def test_assert_matches_oracle_raises_the_same_explanation():
    import normcheck

    from .zoo import LlamaRMSNorm, MiniMindRMSNorm

    assert normcheck.assert_matches_oracle(LlamaRMSNorm, kind="rmsnorm", dtype="float16", examples=5).passed
    with pytest.raises(AssertionError, match=r"(?s)failed .* check.*bug: missing fp32 upcast.*reproducer"):
        normcheck.assert_matches_oracle(MiniMindRMSNorm, kind="rmsnorm", dtype="float16", examples=5)
