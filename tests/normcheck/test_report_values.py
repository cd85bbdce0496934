"""The JSON audit report: valid against its schema, documented key for key, and its values read back.

Each value test reads a figure whose right value is known for its audit (the inputs the implementation
saw, the error of correct rounding, the sign of a directed rounding), so a report writing zero or
nothing for it fails.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")

import jsonschema

from normcheck.cli import main
from normcheck.strategies import REGIMES

from .report_schema import SCHEMA, SCHEMAS, schema_errors, valid_report
from .targets import report_values

TARGETS = "tests.normcheck.targets.report_values"
DOC = (SCHEMAS / "audit-report.md").read_text()
#: In-process, one dtype, forward only: each audit here takes a second or two.
QUICK = ["--in-process", "--dtype", "float16", "--no-grad"]


def audit_json(tmp_path: Path, name: str, *options: str) -> tuple[int, dict]:
    report = tmp_path / f"{name}.json"
    status = main(["audit", f"{TARGETS}:{name}", *QUICK, *options, "--json", str(report)])
    return status, valid_report(report)


def documented_keys() -> list[str]:
    """The keys of the first table of audit-report.md, in order."""
    table = DOC.split("| key | meaning |")[1].split("\n\n")[0]
    return [key for row in table.splitlines()[2:] for key in re.findall(r"`([a-z_0-9]+)`", row.split(" | ")[0])]


def documented_checks() -> tuple[list[str], list[str]]:
    """The checks as the `checks` row lists them, and as the table of checks names them."""
    listed = re.search(r"\| `checks` \| the checks run: ([a-z, ]+) \|", DOC)
    assert listed, "audit-report.md: the `checks` row no longer lists them"
    table = DOC.split("| check | what it means |")[1].split("\n\n")[0]
    named = [c for row in table.splitlines()[2:] for c in re.findall(r"`([a-z_]+)`", row.split(" | ")[0])]
    return listed[1].split(", "), named


def test_the_schema_is_draft_2020_12_and_has_the_keys_and_checks_the_prose_documents():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    keys = documented_keys()
    assert len(keys) == len(set(keys))
    assert set(keys) == set(SCHEMA["properties"]) == set(SCHEMA["required"])
    listed, named = documented_checks()
    assert listed == named == SCHEMA["$defs"]["check"]["enum"]
    assert SCHEMA["$defs"]["regime"]["enum"] == list(REGIMES)
    assert "audit-report.schema.json" in DOC  # the prose points to the types


@pytest.fixture(scope="module")
def counted(tmp_path_factory) -> tuple[dict, set, dict]:
    """A correct float16 norm audited forward only with 3 search examples, and every input it was called with."""
    for recorded in (report_values.SEEN, report_values.SIZES, report_values.PROBES):
        recorded.clear()
    tmp = tmp_path_factory.mktemp("counted")
    status, data = audit_json(tmp, "CountingRMSNorm", "--kind", "rmsnorm", "--weight-offset", "0", "--examples", "3")
    assert status == 0, [f["message"] for f in data["findings"]]
    assert report_values.PROBES  # the replay check tops instances up with one row of an input seen before
    return data, set(report_values.SEEN), dict(report_values.SIZES)


def test_cases_are_the_inputs_the_implementation_ran_and_counts_their_elements(counted):
    data, seen, sizes = counted
    assert data["verdict"] == "pass" and not data["findings"]
    assert data["settings"]["gradients"] is False and data["settings"]["examples"] == 3
    assert data["cases"] == len(seen) > 3  # the structured cases, the statistics' input, then the search's
    y = [s for s in data["stats"] if s["output"] == "y"]
    assert {s["output"] for s in data["stats"]} == {"y"}  # forward only
    assert sum(s["count"] for s in y) == sum(sizes.values())  # every element of every input, judged once
    assert {s["regime"] for s in y} == set(REGIMES)  # the structured cases reach every regime
    assert data["eps"] == {"float16": 1e-6} and data["restarts"] == 0
    assert data["skipped"] == {} and data["too_slow"] == []  # everything ran


def test_checks_list_every_documented_check(counted):
    data, _, _ = counted
    listed, _ = documented_checks()
    assert data["checks"] == listed


def test_a_correct_half_precision_norms_statistics_read_as_round_to_nearest(counted):
    """All-fp32 then one rounding to float16: errors uniform in [0, 0.5] ulp, mean 1/4, unbiased."""
    data, _, _ = counted
    for s in data["stats"]:
        assert s["p99"] <= s["max"] <= s["max_sharp"] <= s["max_rigorous"], s
        assert abs(s["signed_mean"]) <= s["mean"] <= s["max"], s
        assert s["sharp_use"] <= 1 and s["rigorous_use"] <= 1, s  # a pass
    [normal] = [s for s in data["stats"] if s["regime"] == "normal"]
    assert 0.45 < normal["p99"] <= normal["max"] <= 0.501
    assert 0.2 < normal["mean"] < 0.3 and normal["mean"] <= normal["p99"]
    assert abs(normal["signed_mean"]) < 0.01 and normal["max_ulp"] <= 0.501
    assert 0 < normal["sharp_use"] and 0 < normal["rigorous_use"]


@pytest.fixture(scope="module")
def rounded_up(tmp_path_factory) -> dict:
    """A float16 norm that rounds up instead of to nearest, audited forward only (a failing report)."""
    status, data = audit_json(tmp_path_factory.mktemp("up"), "RoundsUpRMSNorm", "--examples", "0")
    assert status == 1
    return data


def test_outputs_rounded_up_read_as_a_positive_signed_mean(rounded_up):
    """Every error of a round-toward-infinity cast is positive: signed_mean is the mean, about half an ulp."""
    data = rounded_up
    assert data["verdict"] == "fail"
    [normal] = [s for s in data["stats"] if s["output"] == "y" and s["regime"] == "normal"]
    assert 0.45 < normal["signed_mean"] <= normal["mean"] < 0.55
    assert normal["signed_mean"] > 0.999 * normal["mean"]
    assert [f["check"] for f in data["findings"]] == ["accuracy"]  # 1 ulp: past the rigorous bound


def _broken(data: dict, path: tuple, value: object) -> dict:
    out = copy.deepcopy(data)
    *head, last = path
    holder = out
    for key in head:
        holder = holder[key]
    holder[last] = value
    return out


@pytest.mark.parametrize(
    "path, value",
    [
        (("checks",), []),
        (("checks",), ["accuracy", "spelling"]),
        (("cases",), -1),
        (("verdict",), "fail"),  # with no findings
        (("stats", 0, "p99"), -0.5),
        (("stats", 0, "mean"), None),
        (("stats", 0, "regime"), "weird"),
        (("skipped",), {"float16": 0}),
        (("settings", "isolation"), "elsewhere"),
        (("eps", "float16"), -1e-6),
        (("undocumented",), 1),
    ],
)
def test_the_schema_refuses_a_report_broken_in_one_place(counted, path, value):
    data, _, _ = counted
    assert schema_errors(_broken(data, path, value))


def test_the_schema_refuses_a_finding_without_its_tier_or_reproducer_fields(rounded_up):
    data = copy.deepcopy(rounded_up)
    [finding] = data["findings"]
    assert finding["worst"]["tier"] == "rigorous" and finding["reproducer"]
    for key, value in [("tier", "medium"), ("ulp_error", -1.0), ("rigorous_ulp", None)]:
        assert schema_errors(_broken(data, ("findings", 0, "worst", key), value)), key
    del data["findings"][0]["worst"]["tier"]
    assert schema_errors(data)
    assert schema_errors(_broken(data, ("findings", 0, "reproducer_file"), {"path": "x.npz", "sha256": "beef"}))
