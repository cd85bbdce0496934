"""The random search: hypothesis draws inputs, and shrinks a failing one to a minimal reproducer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


@contextmanager
def without_local_constants() -> Iterator[None]:
    """Hypothesis (since 6.131) now and then draws a constant it found in the source of any loaded module outside
    site-packages: normcheck's own, the implementation's and whatever they import. The inputs a seed gives would
    change with an edit of any of that code, or with which modules happen to be loaded (an import in normcheck's
    command line changed 4 of torch.nn.RMSNorm's 324 inputs). While normcheck searches, hypothesis sees no local
    constants; its global ones, fixed per hypothesis version, stay. Through hypothesis internals: where they
    differ, nothing is changed (tests/normcheck/test_strategies.py would fail)."""
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    cache = getattr(getattr(providers, "CONSTANTS_CACHE", None), "cache", None)
    if original is None or cache is None:
        yield
        return
    empty = Constants()
    providers._get_local_constants = lambda: empty
    cache.clear()  # (the constants hypothesis allowed before, per kind of draw)
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.clear()


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
        with without_local_constants():
            probe()
    except AssertionError:
        pass
    return failing + flaky
