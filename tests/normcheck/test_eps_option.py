"""``--eps``: the implementation is built with the stated eps, and the oracle judges with it.

Without transformers: torch's own RMSNorm, and a module of tests/normcheck/targets/report_values.py
that takes an eps but computes with a literal one.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from normcheck.cli import main

from .report_schema import valid_report

HARDCODED = "tests.normcheck.targets.report_values:HardcodedEpsRMSNorm"


def audit_json(tmp_path, *argv: str) -> tuple[int, dict]:
    report = tmp_path / "r.json"
    status = main(["audit", *argv, "--no-grad", "--json", str(report)])
    return status, valid_report(report)


def test_torch_rmsnorm_is_built_and_judged_with_the_stated_eps(tmp_path):
    """torch.nn.RMSNorm's own eps is None (about 1.2e-7 here): it passes at eps 0.01 only if built with 0.01,
    since the rows of the eps_dominant regime are made for, and judged at, the stated eps."""
    argv = ["torch.nn.RMSNorm", "--eps", "0.01", "--dtype", "float16", "--dtype", "float32", "--examples", "3"]
    status, data = audit_json(tmp_path, *argv)
    assert status == 0, [f["message"] for f in data["findings"]]
    assert data["eps"] == {"float16": 0.01, "float32": 0.01}
    assert {s["regime"] for s in data["stats"] if s["dtype"] == "float32"} >= {"eps_dominant", "tiny"}


def test_an_implementation_ignoring_its_eps_fails_at_the_stated_eps_and_passes_at_its_own(tmp_path):
    quick = ["--in-process", "--dtype", "float32", "--examples", "0"]
    status, data = audit_json(tmp_path, HARDCODED, *quick)
    assert status == 0 and data["eps"] == {"float32": 1e-6}  # the eps it hard-codes is its default
    status, data = audit_json(tmp_path, HARDCODED, *quick, "--eps", "0.01")
    assert status == 1 and data["eps"] == {"float32": 0.01}
    accuracy = [f for f in data["findings"] if f["check"] == "accuracy"]
    assert [f["output"] for f in accuracy] == ["y"]
    [y] = accuracy
    assert y["worst"]["tier"] == "rigorous" and y["regime"] in ("eps_dominant", "tiny")
    assert y["worst"]["ulp_error"] > 1000  # 1e-6 for 0.01 where mean(x^2) is near eps: rstd far off


INFERRED = "tests.normcheck.targets.report_values"


@pytest.mark.parametrize("eps", [1e-12, 1e-6, 1e-5, 2.0**-23, 0.1])
@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm"])
def test_the_eps_a_norm_hard_codes_is_read_from_its_outputs(kind: str, eps: float) -> None:
    import numpy as np

    import oracles
    from normcheck.target.eps import inferred_eps

    def norm(x):  # float32 outputs, correctly rounded, of a norm with unit weights
        exact = oracles.rms_norm(x, None, eps) if kind == "rmsnorm" else oracles.layer_norm(x, None, None, eps)
        return exact.round("float32")

    found, estimate = inferred_eps(norm)
    assert found == eps and estimate == pytest.approx(eps, rel=1e-6)
    assert inferred_eps(lambda x: np.asarray(norm(x)) * 1.001)[0] is None  # 0.2% off: no hard-coded value


def test_a_module_that_states_no_eps_is_audited_with_the_one_its_outputs_show(tmp_path):
    status, data = audit_json(tmp_path, f"{INFERRED}:NoEpsLayerNorm", "--dtype", "float16", "--examples", "3")
    assert status == 0 and data["eps"] == {"float16": 1e-5} and data["eps_inferred"] is True
    status, data = audit_json(tmp_path, HARDCODED, "--dtype", "float16", "--examples", "0")
    assert data["eps_inferred"] is False  # read from its attribute (wrongly, as that test shows), not inferred


def test_an_eps_its_outputs_show_but_no_one_hard_codes_is_a_usage_error(capsys):
    assert main(["audit", f"{INFERRED}:OddEpsRMSNorm", "--dtype", "float16", "--examples", "0"]) == 2
    err = capsys.readouterr().err
    assert "cannot find the eps" in err and "its outputs suggest 3.3e-06" in err
