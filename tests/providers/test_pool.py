"""The pure pool decisions: connection choice, the sliding error window, the health rule."""

from __future__ import annotations

import math
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp_codec import CommandStatus
from smsgw.pool import (
    HealthPolicy,
    RecentCounts,
    Sample,
    SlidingCounter,
    is_healthy,
    pick_connection,
    sample_for,
)
from smsgw.providers import ProviderUnavailable
from smsgw.retry import Outcome, classify_exception
from smsgw.smpp import (
    ConnectionLost,
    InvalidResponse,
    RequestTimeout,
    SessionClosed,
    SubmitRejected,
    ThrottledError,
)

S = CommandStatus

# --- pick_connection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("free", "start", "expected"),
    [
        ([], 0, None),
        ([0, 0, 0], 0, None),
        ([0, -1, 0], 2, None),  # full or unbound everywhere
        ([3, 5, 1], 0, 1),  # the most free window wins
        ([3, 5, 1], 2, 1),  # wherever the scan starts
        ([4, 4, 4], 0, 0),
        ([4, 4, 4], 1, 1),  # ties: the first from start
        ([4, 4, 4], 5, 2),  # start wraps around
        ([4, 0, 4], 1, 2),
        ([1, 0, 0], 2, 0),
    ],
)
def test_pick_connection_table(free: list[int], start: int, expected: int | None) -> None:
    assert pick_connection(free, start) == expected


@given(st.lists(st.integers(-2, 20), max_size=12), st.integers(0, 100))
def test_pick_connection_takes_a_largest_free_window_first_from_start(
    free: list[int], start: int
) -> None:
    picked = pick_connection(free, start)
    if all(f <= 0 for f in free):
        assert picked is None
        return
    assert picked is not None
    best = max(free)
    assert free[picked] == best
    # No connection with the same free window comes earlier in the scan from ``start``.
    n = len(free)
    before = [(start + k) % n for k in range((picked - start) % n)]
    assert all(free[i] < best for i in before)


@given(st.integers(1, 10), st.integers(1, 30))
def test_equal_windows_rotate_round_robin(n: int, rounds: int) -> None:
    """The manager moves its cursor past each pick: equal connections take turns."""
    free = [5] * n
    cursor = 0
    picks = []
    for _ in range(rounds * n):
        i = pick_connection(free, cursor)
        assert i is not None
        picks.append(i)
        cursor = i + 1
    assert picks == list(range(n)) * rounds


# --- SlidingCounter ---------------------------------------------------------------------------


def test_sliding_counter_window_edges() -> None:
    counter = SlidingCounter(60.0, buckets=60)
    counter.add(0.5, Sample.OK)
    counter.add(10.0, Sample.ERROR)
    counter.add(10.2, Sample.ERROR)
    counter.add(30.0, Sample.THROTTLED)
    counter.add(31.0, Sample.LINK)
    counter.add(31.0, Sample.REJECTED, 3)
    assert counter.counts(59.9) == RecentCounts(
        ok=1, errors=2, rejected=3, throttled=1, link_errors=1
    )
    # One step later the event of t=0.5 has left the window.
    assert counter.counts(60.0).ok == 0
    assert counter.counts(70.5) == RecentCounts(errors=0, rejected=3, throttled=1, link_errors=1)
    assert counter.counts(91.0) == RecentCounts()


def test_sliding_counter_reuses_ring_positions() -> None:
    counter = SlidingCounter(10.0, buckets=5)  # steps of 2 s
    counter.add(1.0, Sample.ERROR)
    counter.add(11.0, Sample.OK)  # the same ring position as t=1, a later step
    assert counter.counts(11.0) == RecentCounts(ok=1)


@pytest.mark.parametrize(("span", "buckets"), [(0.0, 10), (-1.0, 10), (math.inf, 10), (1.0, 0)])
def test_sliding_counter_rejects_bad_sizes(span: float, buckets: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        SlidingCounter(span, buckets)


events = st.lists(
    st.tuples(st.floats(0.0, 7.0, allow_nan=False), st.sampled_from(list(Sample))), max_size=60
)


@given(
    events,
    st.floats(0.5, 30.0, allow_nan=False),
    st.integers(1, 12),
    st.lists(st.floats(0.0, 40.0, allow_nan=False), max_size=5),
)
def test_sliding_counter_matches_a_naive_model(
    gaps: list[tuple[float, Sample]], span: float, buckets: int, later: list[float]
) -> None:
    """Against a list of every event: counted iff its step is one of the last ``buckets``."""
    counter = SlidingCounter(span, buckets)
    seen: list[tuple[float, Sample]] = []

    def model(now: float) -> RecentCounts:
        step = counter.step(now)
        kept = [s for t, s in seen if step - buckets < counter.step(t) <= step]
        return RecentCounts(
            ok=kept.count(Sample.OK),
            errors=kept.count(Sample.ERROR),
            rejected=kept.count(Sample.REJECTED),
            throttled=kept.count(Sample.THROTTLED),
            link_errors=kept.count(Sample.LINK),
        )

    now = 0.0
    for gap, sample in gaps:
        now += gap
        counter.add(now, sample)
        seen.append((now, sample))
        assert counter.counts(now) == model(now)
    for gap in later:
        now += gap
        assert counter.counts(now) == model(now)


# --- health rule ------------------------------------------------------------------------------

POLICY = HealthPolicy(window=60.0, max_error_rate=0.5, min_samples=10)


@pytest.mark.parametrize(
    ("bound", "recent", "expected"),
    [
        (0, RecentCounts(ok=100), False),  # nothing bound: never healthy
        (1, RecentCounts(), True),
        (1, RecentCounts(errors=9), True),  # too few samples to judge
        (1, RecentCounts(errors=10), False),
        (1, RecentCounts(ok=5, errors=5), False),  # at the threshold: unhealthy
        (2, RecentCounts(ok=6, errors=5), True),
        (1, RecentCounts(ok=5, rejected=5, errors=4), True),  # rejections: the provider works
        (1, RecentCounts(throttled=1000, link_errors=50), True),  # neither counts in the rate
    ],
)
def test_is_healthy(bound: int, recent: RecentCounts, expected: bool) -> None:
    assert is_healthy(bound, recent, POLICY) is expected


def test_recent_counts_rate() -> None:
    assert RecentCounts().error_rate == 0.0
    assert RecentCounts(ok=1, errors=1, rejected=2, throttled=7).error_rate == 0.25


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 0.0},
        {"window": math.inf},
        {"max_error_rate": 0.0},
        {"max_error_rate": 1.5},
        {"min_samples": 0},
        {"buckets": 0},
    ],
)
def test_health_policy_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HealthPolicy(**kwargs)  # type: ignore[arg-type]


# --- sample_for -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ThrottledError(S.ESME_RTHROTTLED, None), Sample.THROTTLED),
        (ThrottledError(S.ESME_RMSGQFUL, None), Sample.THROTTLED),
        (SubmitRejected(S.ESME_RINVDSTADR, None), Sample.REJECTED),
        (SubmitRejected(S.ESME_RSYSERR, None), Sample.ERROR),
        (SubmitRejected(S.ESME_RINVCMDID, None), Sample.ERROR),  # FAILOVER: the provider's
        (ConnectionLost("gone", sent=True), Sample.ERROR),
        (RequestTimeout("slow", sent=True), Sample.ERROR),
        (InvalidResponse("garbled"), Sample.ERROR),
        (SessionClosed("closing"), Sample.ERROR),
        (ValueError("not ours"), Sample.ERROR),
    ],
)
def test_sample_for(exc: Exception, expected: Sample) -> None:
    assert sample_for(exc) is expected


def test_sample_for_follows_the_providers_status_map() -> None:
    exc = SubmitRejected(S.ESME_RINVDSTADR, None)
    overrides = MappingProxyType({int(S.ESME_RINVDSTADR): Outcome.FAILOVER})
    assert sample_for(exc, provider_overrides=overrides) is Sample.ERROR


def test_provider_unavailable_fails_over() -> None:
    exc = ProviderUnavailable("acme", "no connection bound within 1s")
    assert classify_exception(exc) is Outcome.FAILOVER
    assert exc.sent is False and exc.retryable is True
    assert exc.provider == "acme"
    assert str(exc) == "provider 'acme': no connection bound within 1s"
