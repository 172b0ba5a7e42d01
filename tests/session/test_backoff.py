"""The reconnect delay policy (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw.smpp import Backoff, BackoffPolicy


def test_delays_double_up_to_the_maximum_without_jitter() -> None:
    b = Backoff(BackoffPolicy(initial=1, maximum=10, jitter=0), rand=lambda: 0.5)
    assert [b.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]


def test_jitter_takes_up_to_its_fraction_off() -> None:
    policy = BackoffPolicy(initial=4, maximum=60, jitter=0.5)
    assert Backoff(policy, rand=lambda: 0.0).next_delay() == 4
    assert Backoff(policy, rand=lambda: 0.999).next_delay() == pytest.approx(2.002)


def test_a_healthy_connection_resets_and_a_short_one_does_not() -> None:
    b = Backoff(BackoffPolicy(initial=1, maximum=60, jitter=0, reset_after=30), rand=lambda: 0)
    for _ in range(3):
        b.next_delay()
    b.connected_for(29.9)
    assert b.next_delay() == 8
    b.connected_for(30)
    assert b.next_delay() == 1


def test_permanent_failures_wait_the_maximum() -> None:
    b = Backoff(BackoffPolicy(initial=1, maximum=60, jitter=0), rand=lambda: 0)
    assert b.next_delay(permanent=True) == 60


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"maximum": 0.5, "initial": 1}, {"jitter": 1.5}, {"multiplier": 0.5}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


@given(
    st.floats(0.01, 10),
    st.floats(10, 1000),
    st.floats(1, 4),
    st.floats(0, 1),
    st.lists(st.floats(0, 0.999999), min_size=1, max_size=200),
)
def test_delays_stay_within_bounds(
    initial: float, maximum: float, multiplier: float, jitter: float, draws: list[float]
) -> None:
    it = iter(draws)
    b = Backoff(
        BackoffPolicy(initial=initial, maximum=maximum, multiplier=multiplier, jitter=jitter),
        rand=lambda: next(it),
    )
    for _ in draws:
        delay = b.next_delay()
        assert initial * (1 - jitter) - 1e-9 <= delay <= maximum
