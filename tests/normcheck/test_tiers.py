"""The bound tiers as data (normcheck.verdict.tiers): the judge, the statistics and the findings read
the list, so a third tier needs no change outside the list."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from normcheck.engine.judge import judge_output
from normcheck.stats import ErrorStats
from normcheck.strategies import Source, make_input
from normcheck.verdict.bounds import PROVEN, bounds
from normcheck.verdict.tiers import Tier, crossing, effective
from oracles import resolve_format, rms_norm


def test_a_later_tier_never_allows_more_than_an_earlier_one():
    loose = Tier("rigorous", np.array([4.0, 1.0]), "r", PROVEN)
    tight = Tier("sharp", np.array([2.0, 3.0]), "s", "tight")
    rigorous, sharp = effective((loose, tight))
    assert rigorous.tolist() == [4.0, 1.0] and sharp.tolist() == [2.0, 1.0]


def test_a_finding_reads_the_loosest_tier_it_crosses():
    tiers = (Tier("rigorous", np.zeros(1), "", PROVEN), Tier("sharp", np.zeros(1), "", "8x the worst"))
    assert crossing(10.0, [4.0, 2.0], tiers, 0) == f"beyond the rigorous bound (4 ulp: {PROVEN}), 5x the sharp bound"
    assert crossing(3.0, [4.0, 2.0], tiers, 1) == (
        "1.5x the sharp bound (2 ulp, 8x the worst; the rigorous bound, 4 ulp, is not crossed)"
    )


def test_a_third_tier_is_judged_counted_and_named_from_the_list_alone():
    """Append a tier to a real bound of y: an error between the sharp and the new tier is a finding about
    the new tier; the statistics keep its bound and its use."""
    fmt = resolve_format("float32")
    case = make_input(Source(rng=np.random.default_rng(0)), fmt, n=64, rows=2, regime="normal", eps=1e-6)
    exact = rms_norm(case.x, case.weight, eps=1e-6)
    limit = bounds("rmsnorm", fmt, case.x, {"y": exact}, weight=case.weight, bias=None, grad=None, eps=1e-6, offset=0)
    limit = limit["y"]
    unit = np.ldexp(1.0, np.frexp(limit.scale)[1] - fmt.precision)  # ulp_F(S) for these normal scales
    rigorous = limit.allowed("rigorous")
    limit = replace(
        limit,
        tiers=(*limit.tiers, Tier("sharp", rigorous / 2, "half", "half"), Tier("tight", 0.1 * unit, "0.1", "tenth")),
    )
    candidate = exact.approx + 0.3 * unit  # 0.3 ulp off: within rigorous and sharp, beyond the tenth
    findings, errors = judge_output("y", candidate.astype(np.float32), exact, limit, case, "float32")
    assert [f.worst["tier"] for f in findings] == ["tight"]
    assert "the rigorous bound" in findings[0].message and "is not crossed" in findings[0].message
    stats = ErrorStats()
    stats.add(errors)
    summary = stats.summary()
    assert summary["max_tight"] > 0 and summary["tight_use"] > 2.5  # 0.3 ulp against 0.1 ulp
    assert summary["rigorous_use"] < summary["sharp_use"] < 1
