"""normcheck.timing: a call's time predicted from the calls before it (slow is not hung)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from normcheck.engine.plan import MANY_ROWS, PACE_ROWS, Plan, row_count
from normcheck.timing import SLACK, Pace, time_limit, too_slow
from oracles import resolve_format

#: The default audit's many-rows input, and the smaller ones it runs before it (rows, n).
MANY = MANY_ROWS
BEFORE = [(2, 3), (3, 61), (1, 4097), (1, 16385), (1, 65537), (4, 64), (4, 1), (4, 128), (512, 64)]


def paced(seconds) -> Pace:
    """A Pace that measured the calls of BEFORE, ``seconds(rows, n)`` each."""
    pace = Pace()
    for rows, n in BEFORE:
        pace.record(rows, n, seconds(rows, n))
    return pace


def test_one_program_per_row_under_the_interpreter_is_predicted_too_slow():
    def interpreted(rows: int, n: int) -> float:
        return 3e-4 + 1.5e-3 * rows + 1e-8 * rows * n  # Python per program, numpy per element

    predicted = paced(interpreted).predict(*MANY)
    assert interpreted(*MANY) <= predicted <= 1.1 * interpreted(*MANY)  # 49 s, not under
    assert too_slow(predicted, 20.0)


def test_a_fast_implementation_is_not_predicted_slow_by_timing_noise():
    def vectorized(rows: int, n: int) -> float:
        spike = 1.0 if (rows, n) in ((4, 64), (1, 4097)) else 0.0  # a loaded machine: noise only adds time
        return 3e-4 + 1e-9 * rows * n + spike

    predicted = paced(vectorized).predict(*MANY)
    assert predicted < 0.05 and not too_slow(predicted, 1.0)


def test_only_rows_at_least_as_long_predict():
    pace = Pace()
    assert pace.predict(1, 3) is None
    pace.record(2, 3, 0.02)  # short rows, slow per row: they say nothing about longer ones
    assert pace.predict(1, 4) is None
    pace.record(1, 4097, 0.002)
    assert pace.predict(1000, 16) == 1000 * 0.002
    assert pace.predict(10, 3) == 10 * 0.002  # the least bound of the rows as long
    assert pace.predict(1, 65537) is None


@given(
    overhead=st.floats(0, 1),
    base=st.floats(1e-6, 1e-2),
    growth=st.floats(0, 1e-6),
    calls=st.lists(st.tuples(st.integers(1, 64), st.integers(1, 70000)), min_size=1, max_size=20),
    n=st.integers(1, 70000),
    rows=st.integers(64, 100000),
)
def test_a_call_of_more_rows_is_never_predicted_faster_than_it_is(overhead, base, growth, calls, n, rows):
    """Where time is an overhead plus rows times a cost per row that grows with n, the prediction for
    at least as many rows as any measured call is at least the real time."""

    def seconds(r: int, m: int) -> float:
        return overhead + r * (base + growth * m)

    pace = Pace()
    for r, m in calls:
        pace.record(r, m, seconds(r, m))
    predicted = pace.predict(rows, n)
    assert predicted is None if max(m for _, m in calls) < n else predicted >= seconds(rows, n) * (1 - 1e-12)


def test_a_call_predicted_past_the_timeout_is_not_run_unless_there_is_no_limit():
    assert too_slow(21.0, 20.0) and not too_slow(19.0, 20.0)
    assert not too_slow(None, 20.0) and not too_slow(1e6, 0.0)


def test_a_slow_call_may_take_slack_times_its_prediction_before_it_is_hung():
    assert time_limit(None, 20.0) == 20.0  # nothing predicts it
    assert time_limit(0.01, 20.0) == 20.0  # never less than the timeout
    assert time_limit(10.0, 20.0) == SLACK * 10.0
    assert time_limit(10.0, 0.0) == 0.0  # no limit stays no limit


@pytest.mark.parametrize("shapes, shape", [((), MANY_ROWS), (((2048, 4096),), (2048, 4096))])
def test_many_rows_are_predicted_from_many_rows_of_their_hidden_size_run_before_them(shapes, shape):
    """Through a GPU's worker a call costs about a millisecond whatever its size: from calls of a few rows an
    input of many rows is predicted a hundred times slower than it is (on an H200 Liger-Kernel's 32768x256
    input at 80 s, not run); the plan runs PACE_ROWS rows of its hidden size just before it, which predict
    it at no less than its time and at most the fixed cost spread over the rows it stands for more."""
    cases = Plan(seed=0, offset=0, shapes=shapes).structured_cases(resolve_format("bfloat16"), 1e-6)
    first = next(i for i, c in enumerate(cases) if c.x.shape == shape)
    assert cases[first - 1].x.shape == (PACE_ROWS, shape[-1])
    overhead = 1e-3

    def gpu(rows: int, n: int) -> float:
        return overhead + 2e-9 * rows * n  # a fixed cost per call, copies per element

    def predicted(before: list) -> float:
        pace = Pace()
        for case in before:
            pace.record(row_count(case), case.n, gpu(row_count(case), case.n))
        return pace.predict(*shape)

    assert predicted(cases[: first - 1]) > 100 * gpu(*shape)
    assert gpu(*shape) <= predicted(cases[:first]) <= 1.5 * gpu(*shape) + shape[0] / PACE_ROWS * overhead
