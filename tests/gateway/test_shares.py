"""How instances sharing an SMSC account divide its connections and rates (pure: smsgw.shares),
and the rate limiter taking a share (smsgw.ratelimit)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw.config import parse_config
from smsgw.ratelimit import AimdController, ProviderLimiter, RateLimiter, TokenBucket
from smsgw.shares import connection_share, global_share, rate_share, surplus

ids = st.lists(
    st.text("abcdefgh0123456789-", min_size=1, max_size=8), min_size=1, max_size=8, unique=True
)


@given(instances=ids, total=st.integers(1, 64))
def test_the_shares_of_all_instances_add_up_to_the_total(instances: list[str], total: int) -> None:
    shares = [connection_share(instances, me, total) for me in instances]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1
    # Every instance computes the same division whatever order it read the list in.
    assert shares == [connection_share(list(reversed(instances)), me, total) for me in instances]


def test_instances_in_id_order_take_the_remainder() -> None:
    assert [connection_share(["b", "a", "c"], me, 4) for me in "abc"] == [2, 1, 1]
    # Fewer connections than instances: the last in order get none.
    assert [connection_share(["a", "b", "c"], me, 1) for me in "abc"] == [1, 0, 0]
    # An instance counts itself before the others have heard of it.
    assert connection_share(["a"], "b", 4) == 2
    assert connection_share([], "a", 3) == 3


def test_surplus_gives_back_slots_out_of_the_account_then_the_highest() -> None:
    assert surplus({0, 1, 2, 3}, target=2, total=4) == [3, 2]
    assert surplus({0, 1}, target=2, total=4) == []
    assert surplus({0, 5}, target=2, total=4) == [5]  # the account shrank to 4
    assert surplus({1, 2, 6}, target=1, total=2) == [2, 6]
    assert surplus({0, 2, 3}, target=0, total=4) == [3, 2, 0]


@given(
    held=st.sets(st.integers(0, 20), max_size=12),
    target=st.integers(0, 12),
    total=st.integers(1, 16),
)
def test_what_is_kept_after_the_surplus_fits(held: set[int], target: int, total: int) -> None:
    given_back = surplus(held, target, total)
    kept = held - set(given_back)
    assert set(given_back) <= held and len(given_back) == len(set(given_back))
    assert all(i < total for i in kept)
    assert len(kept) == min(target, len([i for i in held if i < total]))


def test_rate_share_follows_the_slots_held() -> None:
    assert rate_share(2, 4) == 0.5
    assert rate_share(4, 4) == 1.0
    # Holding none (it cannot send then): one slot's share keeps the limiter valid.
    assert rate_share(0, 4) == 0.25
    assert rate_share(5, 4) == 1.0  # briefly above a shrunk account: never above the whole


def test_the_global_share_is_the_share_of_all_providers_capacity_held() -> None:
    # a: 4 connections at 100/s, b: 2 at 50/s. Half of each: half the capacity.
    assert global_share({"a": (2, 4, 100.0), "b": (1, 2, 50.0)}, instances=2) == 0.5
    # All of a, none of b: 100 of 150.
    assert global_share({"a": (4, 4, 100.0), "b": (0, 2, 50.0)}, instances=2) == pytest.approx(
        2 / 3
    )
    # Three instances, two connections: the two holding one each take half each, not a third.
    assert global_share({"a": (1, 2, 100.0)}, instances=3) == 0.5
    # Holding nothing (sending nothing): an even share keeps the limiter valid.
    assert global_share({"a": (0, 2, 100.0)}, instances=3) == pytest.approx(1 / 3)
    assert global_share({}, instances=0) == 1.0


@given(
    providers=st.lists(st.tuples(st.integers(1, 8), st.floats(1, 1000)), min_size=1, max_size=4),
    instances=st.lists(
        st.text("abcdef", min_size=1, max_size=3), min_size=1, max_size=5, unique=True
    ),
)
def test_the_global_shares_of_instances_dividing_the_slots_add_up_to_one(
    providers: list[tuple[int, float]], instances: list[str]
) -> None:
    """Each instance holding its connection share of every provider: their global shares add
    up to 1 when every instance holds some slot, never to more than 1 + the even shares of
    those holding none."""
    shares = []
    idle = 0
    for me in instances:
        held = {
            str(i): (connection_share(instances, me, slots), slots, rate)
            for i, (slots, rate) in enumerate(providers)
        }
        shares.append(global_share(held, len(instances)))
        idle += all(n == 0 for n, _slots, _rate in held.values())
    assert sum(shares) == pytest.approx(1 + idle / len(instances))


# --- the limiter taking a share -------------------------------------------------------------


def test_a_bucket_share_scales_rate_and_burst_from_the_configured_ones() -> None:
    bucket = TokenBucket(rate=100, burst=50)
    bucket.set_share(0.5, now=0.0)
    assert (bucket.rate, bucket.burst) == (50, 25)
    assert bucket.tokens(now=0.0) == 25  # saved tokens above the new burst are dropped
    bucket.set_share(1.0, now=0.0)
    assert (bucket.rate, bucket.burst) == (100, 50)
    bucket.set_share(0.001, now=0.0)
    assert bucket.burst == 1.0  # at least one token
    with pytest.raises(ValueError, match="share"):
        bucket.set_share(0.0, now=0.0)
    with pytest.raises(ValueError, match="share"):
        bucket.set_share(1.5, now=0.0)


@given(shares=st.lists(st.integers(1, 8), min_size=1, max_size=4), seconds=st.integers(1, 30))
def test_instances_taking_their_shares_grant_no_more_than_the_whole(
    shares: list[int], seconds: int
) -> None:
    """Buckets of instances holding ``shares`` of ``sum(shares)`` slots, each taking tokens as
    fast as granted for ``seconds``: together at most one bucket's ``burst + rate * T``."""
    total = sum(shares)
    buckets = [TokenBucket(rate=40, burst=20) for _ in shares]
    for bucket, held in zip(buckets, shares, strict=True):
        bucket.set_share(rate_share(held, total), now=0.0)
    granted = 0
    steps = seconds * 100
    for step in range(steps + 1):
        now = step / 100
        for bucket in buckets:
            while bucket.try_acquire(1, now) == 0.0:
                granted += 1
    # Each share's burst is at least 1 token: a little slack for those rounded up.
    assert granted <= 20 + 40 * seconds + len(shares)


def test_an_adaptive_limiter_keeps_its_cut_when_its_share_changes() -> None:
    aimd = AimdController(100, decrease_factor=0.5, pause=1.0, increase_per_second=5, floor=10)
    limiter = ProviderLimiter(TokenBucket(100, 100), aimd)
    limiter.on_throttle(now=0.0)
    assert limiter.current_rate == 50  # cut by half
    limiter.set_share(0.5, now=0.0)
    assert limiter.current_rate == 25  # still half of what it may send
    assert limiter.bucket.rate == 25
    assert (aimd.ceiling, aimd.floor, aimd.increase_per_second) == (50, 5, 2.5)
    limiter.on_success(now=3.0)  # 2 s of growth after the 1 s pause, at the share's pace
    assert limiter.current_rate == pytest.approx(30)
    limiter.set_share(1.0, now=3.0)
    assert limiter.current_rate == pytest.approx(60)
    assert aimd.ceiling == 100


def test_the_rate_limiter_sets_every_named_share_and_the_global_one() -> None:
    config = parse_config(
        """
[rate_limit]
per_second = 300
adaptive = false

[[providers]]
name = "a"
host = "127.0.0.1"
system_id = "a"
password = "x"
rate = { per_second = 100 }

[[providers]]
name = "b"
host = "127.0.0.1"
system_id = "b"
password = "x"
rate = { per_second = 60 }
""",
        source="test",
        environ={},
    )
    limiter = RateLimiter.from_config(config)
    limiter.set_shares({"a": 0.25, "gone": 0.5}, 1 / 3, now=0.0)
    assert limiter.current_rate("a") == 25
    assert limiter.current_rate("b") == 60  # not named: unchanged
    assert limiter.global_bucket is not None
    assert limiter.global_bucket.rate == pytest.approx(100)
