"""The random search: hypothesis draws inputs, and shrinks a failing one to a minimal reproducer."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.strategies import SearchStrategy

from normcheck.report.reproducer import bits
from normcheck.result import Finding
from normcheck.strategies import NormInput
from normcheck.target.protocol import Run

#: Judge one input: ``(case, keep)`` -> the call's answer (None: not run) and its findings; ``keep`` is False
#: while hypothesis shrinks (what the statistics count is the search's inputs, not its shrinking attempts).
Attempt = Callable[[NormInput, bool], tuple[Run | None, list[Finding]]]
#: Call again on an input judged before: ``(case, first answer, keep)`` -> a nondeterminism finding, if any.
Replay = Callable[[NormInput, Run, bool], list[Finding]]


def case_key(case: NormInput) -> tuple:
    """Identifies an input by its bits: hypothesis may build the same input again."""
    arrays = (case.x, case.weight, case.bias, case.grad, *(() if case.residual is None else (case.residual,)))
    return (case.strided, *(a.shape for a in arrays), *(bits(a).tobytes() for a in arrays))


def search(
    strategy: SearchStrategy[NormInput],
    *,
    examples: int,
    seed_value: int,
    attempt: Attempt,
    replay: Replay,
    progress: Callable[[int], None],
) -> list[Finding]:
    """Random search with hypothesis; a failure is shrunk to a minimal input.

    The implementation's answer to each distinct input is kept: when hypothesis
    runs an input again (to shrink or to replay its final example) it judges the
    first answer, and the new call is compared with it bit for bit, so a flaky
    implementation is a ``nondeterminism`` finding, never a flaky test.
    """
    if examples <= 0:
        return []
    failing: list[Finding] = []
    flaky: list[Finding] = []
    answers: dict[tuple, tuple[Run | None, list[Finding]]] = {}
    state = {"count": 0, "shrinking": False}

    @seed(seed_value)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.generate, Phase.shrink),
        report_multiple_bugs=False,
    )
    @given(strategy)
    def probe(case: NormInput) -> None:
        state["count"] += 1
        keep = not state["shrinking"]
        if keep:
            progress(state["count"])
        key = case_key(case)
        if key in answers:
            first, found = answers[key]
            if first is not None and not flaky:
                flaky.extend(replay(case, first, keep))
        else:
            run, found = attempt(case, keep)
            answers[key] = (run, found)
            failing.extend(found)
        if found:
            state["shrinking"] = True
            raise AssertionError(found[0].message)

    try:
        probe()
    except AssertionError:
        pass
    return failing + flaky
