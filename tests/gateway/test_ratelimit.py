"""Token buckets, the AIMD controller and the global-AND-provider limiter, on chosen times."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw.config import parse_config
from smsgw.ratelimit import AimdController, ProviderLimiter, RateLimiter, TokenBucket

# --- token bucket ---------------------------------------------------------------------------


def test_a_bucket_starts_full_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    assert [bucket.try_acquire(1, now=100.0) for _ in range(5)] == [0.0] * 5
    assert bucket.try_acquire(1, now=100.0) == pytest.approx(0.1)
    assert bucket.try_acquire(3, now=100.0) == pytest.approx(0.3)
    assert bucket.try_acquire(1, now=100.1) == 0.0
    assert bucket.try_acquire(1, now=100.1) == pytest.approx(0.1)
    assert bucket.tokens(now=200.0) == 5.0  # never more than the burst


def test_waiting_exactly_the_answer_is_enough() -> None:
    bucket = TokenBucket(rate=3, burst=2)
    now = 0.0
    for _ in range(50):
        wait = bucket.try_acquire(2, now)
        if wait:
            now += wait
            assert bucket.try_acquire(2, now) == 0.0


def test_a_refused_acquire_takes_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=3)
    assert bucket.try_acquire(2, now=0.0) == 0.0
    assert bucket.try_acquire(2, now=0.0) == pytest.approx(1.0)
    assert bucket.tokens(now=0.0) == 1.0


def test_impossible_requests_are_errors() -> None:
    bucket = TokenBucket(rate=1, burst=3)
    with pytest.raises(ValueError, match="cannot take 4 tokens at once from a bucket of 3"):
        bucket.try_acquire(4, now=0.0)
    with pytest.raises(ValueError, match="n must be > 0"):
        bucket.try_acquire(0, now=0.0)
    with pytest.raises(ValueError, match="rate must be a finite number > 0"):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst must be a finite number > 0"):
        TokenBucket(rate=1, burst=float("inf"))


def test_time_going_backwards_counts_as_no_time() -> None:
    bucket = TokenBucket(rate=1, burst=2)
    assert bucket.try_acquire(2, now=10.0) == 0.0
    assert bucket.try_acquire(1, now=5.0) == pytest.approx(1.0)
    assert bucket.try_acquire(1, now=10.5) == pytest.approx(0.5)
    assert bucket.try_acquire(1, now=11.0) == 0.0


def test_a_rate_change_keeps_what_was_earned_at_the_old_rate() -> None:
    bucket = TokenBucket(rate=10, burst=100)
    bucket.try_acquire(100, now=0.0)
    bucket.set_rate(1, now=2.0)  # 20 tokens earned at 10/s
    assert bucket.tokens(now=4.0) == pytest.approx(22.0)  # then 2 more at 1/s
    bucket.drain(now=4.0)
    assert bucket.tokens(now=4.0) == 0.0
    assert bucket.tokens(now=5.0) == pytest.approx(1.0)


@given(
    rate=st.floats(0.5, 1000),
    burst=st.integers(1, 50),
    steps=st.lists(st.tuples(st.floats(0, 2), st.integers(1, 50)), max_size=60),
)
def test_never_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    """Over every interval [t_i, t_j] of the run, the tokens granted at times in it are at
    most ``burst + rate * (t_j - t_i)``."""
    bucket = TokenBucket(rate, burst)
    now = 0.0
    grants: list[tuple[float, int]] = []
    for dt, n in steps:
        now += dt
        n = min(n, burst)
        if bucket.try_acquire(n, now) == 0.0:
            grants.append((now, n))
    for i, (start, _) in enumerate(grants):
        total = 0
        for end, n in grants[i:]:
            total += n
            assert total <= burst + rate * (end - start) + 1e-6


@given(rate=st.floats(0.5, 1000), burst=st.integers(1, 50), n=st.integers(1, 50))
def test_a_full_bucket_grants_any_n_up_to_burst(rate: float, burst: int, n: int) -> None:
    bucket = TokenBucket(rate, burst)
    assert bucket.try_acquire(min(n, burst), now=0.0) == 0.0


# --- AIMD -----------------------------------------------------------------------------------


def aimd() -> AimdController:
    return AimdController(100, decrease_factor=0.5, pause=2, increase_per_second=10, floor=10)


def test_throttle_halves_the_rate_and_pauses() -> None:
    control = aimd()
    assert control.current_rate == 100
    assert control.on_throttle(now=10.0) is True
    assert control.current_rate == 50
    assert [control.pause_remaining(t) for t in (10.0, 11.0, 12.0, 13.0)] == [2.0, 1.0, 0.0, 0.0]


def test_throttles_during_the_pause_do_not_cut_again() -> None:
    control = aimd()
    control.on_throttle(now=10.0)
    assert control.on_throttle(now=11.9) is False
    assert control.current_rate == 50
    assert control.pause_remaining(11.9) == pytest.approx(0.1)  # not extended either
    assert control.on_throttle(now=12.0) is True
    assert control.current_rate == 25


def test_success_grows_the_rate_linearly_from_the_end_of_the_pause_up_to_the_ceiling() -> None:
    control = aimd()
    control.on_throttle(now=10.0)  # 50, paused until 12
    control.on_success(now=11.0)  # during the pause: no growth
    assert control.current_rate == 50
    control.on_success(now=13.0)
    assert control.current_rate == 60
    control.on_success(now=13.5)
    assert control.current_rate == 65
    control.on_success(now=15.0)
    assert control.current_rate == 80
    control.on_success(now=30.0)
    assert control.current_rate == 100


def test_the_rate_never_falls_below_the_floor() -> None:
    control = aimd()
    for i in range(10):
        control.on_throttle(now=10.0 * i)
    assert control.current_rate == 10


def test_a_cut_scales_with_the_share_of_throttled_answers() -> None:
    control = aimd()
    for i in range(99):
        control.on_success(now=i * 0.01)
    # 1 throttle in 100 answers: the rate loses 0.5% (a half of 1%) and pauses 1% of 2 s.
    assert control.on_throttle(now=1.0) is True
    assert control.current_rate == pytest.approx(99.5)
    assert control.pause_remaining(1.0) == pytest.approx(0.02)
    # The next window: 3 answers, all throttled -> the full cut.
    control.on_throttle(now=1.5)
    control.on_throttle(now=2.5)
    assert control.on_throttle(now=3.0) is True
    assert control.current_rate == pytest.approx(99.5 * 0.5)


def test_one_percent_random_throttling_keeps_the_rate_near_the_ceiling() -> None:
    # The SMSC answers at the controller's rate; every 100th answer is a throttle. Issue 5
    # asks for >= 90% of the allowed rate sustained: here the rate itself never drops below 95%.
    control = AimdController(1000, decrease_factor=0.5, pause=1, increase_per_second=50, floor=100)
    now, answers = 0.0, 0
    lowest = control.current_rate
    while now < 60.0:
        now += 1.0 / control.current_rate + control.pause_remaining(now)
        answers += 1
        if answers % 100 == 0:
            control.on_throttle(now)
        else:
            control.on_success(now)
        lowest = min(lowest, control.current_rate)
    assert lowest >= 950
    assert answers >= 0.95 * 1000 * 60


def test_aimd_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="floor 20 is above ceiling 10"):
        AimdController(10, increase_per_second=1, floor=20)
    with pytest.raises(ValueError, match="decrease_factor"):
        AimdController(10, decrease_factor=0, increase_per_second=1, floor=1)


@given(
    events=st.lists(st.tuples(st.booleans(), st.floats(0, 5)), max_size=80),
    factor=st.floats(0.05, 1),
    pause=st.floats(0, 3),
)
def test_the_rate_stays_between_floor_and_ceiling(
    events: list[tuple[bool, float]], factor: float, pause: float
) -> None:
    control = AimdController(
        200, decrease_factor=factor, pause=pause, increase_per_second=7, floor=3
    )
    now = 0.0
    for throttled, dt in events:
        now += dt
        before = control.current_rate
        if throttled:
            control.on_throttle(now)
            assert control.current_rate <= before
        else:
            control.on_success(now)
            assert control.current_rate >= before
        assert 3 <= control.current_rate <= 200


# --- provider and composite -------------------------------------------------------------------


def test_a_provider_throttle_cuts_its_bucket_drains_it_and_pauses() -> None:
    limiter = ProviderLimiter(TokenBucket(10, 10), aimd())
    assert limiter.wait_time(1, now=0.0) == 0.0
    limiter.on_throttle(now=0.0)
    assert limiter.current_rate == 50  # the controller's ceiling is 100
    assert limiter.bucket.rate == 50
    assert limiter.wait_time(1, now=0.0) == 2.0  # the pause
    assert limiter.wait_time(1, now=2.0) == 0.0  # 100 tokens earned at 50/s, capped at 10
    assert limiter.bucket.tokens(now=2.0) == 10.0


def test_success_raises_the_bucket_rate_with_the_controller() -> None:
    limiter = ProviderLimiter(TokenBucket(100, 10), aimd())
    limiter.on_throttle(now=0.0)
    limiter.on_success(now=3.0)
    assert limiter.current_rate == 60 and limiter.bucket.rate == 60


def test_a_fixed_provider_limiter_ignores_throttles() -> None:
    limiter = ProviderLimiter(TokenBucket(5, 5))
    limiter.on_throttle(now=0.0)
    limiter.on_success(now=1.0)
    assert limiter.current_rate == 5
    assert limiter.wait_time(5, now=0.0) == 0.0


def test_global_and_provider_limits_are_granted_together_or_not_at_all() -> None:
    limiter = RateLimiter(
        TokenBucket(rate=10, burst=3),
        {"a": ProviderLimiter(TokenBucket(1, 2)), "b": ProviderLimiter(TokenBucket(100, 100))},
    )
    assert limiter.try_acquire("a", 2, now=0.0) == 0.0
    # a is out of tokens: refused, and the global bucket keeps its last token for b.
    assert limiter.try_acquire("a", 1, now=0.0) == pytest.approx(1.0)
    assert limiter.global_bucket is not None
    assert limiter.global_bucket.tokens(now=0.0) == 1.0
    assert limiter.try_acquire("b", 1, now=0.0) == 0.0
    # Now the global bucket is the one refusing b.
    assert limiter.try_acquire("b", 1, now=0.0) == pytest.approx(0.1)
    assert limiter.providers["b"].bucket.tokens(now=0.0) == 99.0
    with pytest.raises(KeyError):
        limiter.try_acquire("zz", 1, now=0.0)


def test_the_composite_wait_is_the_longest_of_pause_and_buckets() -> None:
    limiter = RateLimiter(TokenBucket(1, 1), {"a": ProviderLimiter(TokenBucket(100, 100), aimd())})
    limiter.on_throttle("a", now=0.0)
    assert limiter.current_rate("a") == 50
    assert limiter.try_acquire("a", 1, now=0.0) == 2.0
    assert limiter.try_acquire("a", 1, now=2.0) == 0.0
    assert limiter.try_acquire("a", 1, now=2.0) == pytest.approx(1.0)  # the global one
    limiter.on_success("a", now=3.0)
    assert limiter.current_rate("a") == 60


def test_built_from_the_configuration() -> None:
    text = """
[rate_limit]
per_second = 30
decrease_factor = 0.25
pause = "500ms"
increase_per_second = 0.1
floor = 0.2

[[providers]]
name = "a"
host = "h"
system_id = "u"
password = "p"
rate = { per_second = 20, burst = 4 }

[[providers]]
name = "b"
host = "h"
system_id = "u"
password = "p"
"""
    limiter = RateLimiter.from_config(parse_config(text, source="test.toml", environ={}))
    assert limiter.global_bucket is not None
    assert (limiter.global_bucket.rate, limiter.global_bucket.burst) == (30, 30)
    a = limiter.providers["a"]
    assert (a.bucket.rate, a.bucket.burst) == (20, 4)
    assert a.aimd is not None
    assert (a.aimd.ceiling, a.aimd.floor, a.aimd.increase_per_second) == (20, 4, 2)
    assert (a.aimd.decrease_factor, a.aimd.pause) == (0.25, 0.5)
    b = limiter.providers["b"]
    assert (b.bucket.rate, b.bucket.burst) == (100, 100)
    limiter.on_throttle("a", now=0.0)
    assert limiter.current_rate("a") == 5

    fixed = RateLimiter.from_config(
        parse_config(
            text.replace("floor = 0.2", "floor = 0.2\nadaptive = false"),
            source="test.toml",
            environ={},
        )
    )
    assert fixed.providers["a"].aimd is None
    providers_only = "[[providers]]" + text.split("[[providers]]", 1)[1]
    unlimited = RateLimiter.from_config(
        parse_config(providers_only, source="test.toml", environ={})
    )
    assert unlimited.global_bucket is None
