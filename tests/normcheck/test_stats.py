"""The error statistics on hand-built errors: the histogram's bins, and figures read once, then again."""

from __future__ import annotations

import numpy as np

from normcheck.result import AuditResult
from normcheck.stats import HIST_EDGES, Errors, ErrorStats, log2_histogram


def _errors(signed: np.ndarray) -> Errors:
    size = signed.size
    return Errors("y", signed, {"sharp": np.full(size, 4.0)}, signed, np.zeros(size), np.full(size, 8))


def test_the_log2_histogram_counts_as_numpy_does_on_every_edge_and_past_the_ends():
    edges = HIST_EDGES
    inner = np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges[1:], 0.0)])
    rng = np.random.default_rng(0)
    random = np.ldexp(rng.random(10_000), rng.integers(-40, 60, 10_000))
    values = np.concatenate([inner, random, [0.0, 5e-324, 2.0**31, 1e300, np.inf, np.nan]])
    expected, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    assert log2_histogram(values).tolist() == expected.tolist()
    assert log2_histogram(np.array([2.0**30, 2.0**29]))[-1] == 2  # the last bin is closed


def test_figures_read_twice_are_the_same_and_follow_errors_added_later():
    stats = ErrorStats()
    stats.add(_errors(np.array([0.25, -0.5, 1.0])))
    first = stats.summary(), stats.distribution()
    assert stats.summary() == first[0] and stats.distribution() == first[1]
    assert first[0]["count"] == 3 and first[0]["max"] == 1.0
    stats.add(_errors(np.array([-3.0])))
    assert stats.summary()["count"] == 4 and stats.summary()["max"] == 3.0
    assert sum(stats.distribution()["histogram"]["counts"]) == 4
    other = ErrorStats()
    other.add(_errors(np.array([6.0])))
    stats.merge(other)
    assert stats.summary()["max"] == 6.0 and stats.distribution()["by_hidden_size"]["8"]["count"] == 5


def test_the_totals_fold_every_regime_and_again_after_more_errors():
    result = AuditResult("t", "rmsnorm", "cpu", 0, ["float16"], {}, False, 0, 0)
    result.add_errors("float16", "tiny", _errors(np.array([1.0, 2.0])))
    assert result.totals()[("float16", "y")].summary()["count"] == 2
    result.add_errors("float16", "huge", _errors(np.array([-7.0])))
    total = result.totals()[("float16", "y")].summary()
    assert total["count"] == 3 and total["max"] == 7.0
