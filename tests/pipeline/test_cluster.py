"""The instances of a Redis queue and their connection slot leases, on a real Redis
(smsgw.cluster): membership expires, a slot is never held by two instances, leases are renewed,
lost and taken back as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_sync
import trio

from smsgw.adapters.redis import RedisClient, open_redis
from smsgw.cluster import Cluster
from smsgw.queue.base import QueueUnavailable
from smsgw.testing.redis import RedisServer


async def test_members_are_listed_until_they_leave_or_expire(
    redis: RedisClient, prefix: str
) -> None:
    a, b, c = (Cluster(redis, prefix, name) for name in "abc")
    with trio.fail_after(10):
        await a.heartbeat(["p", "q"], timeout=30)
        await b.heartbeat(["p"], timeout=30)
        seen = await c.heartbeat([], timeout=0.3)
        assert seen.instances == ("a", "b", "c")
        seen = await a.heartbeat(["p", "q"], timeout=30)
        assert seen.by_provider == {"p": ("a", "b"), "q": ("a",)}
        await b.leave(["p"], everything=True)
        await trio.sleep(0.4)  # c's entry expires
        seen = await a.heartbeat(["p", "q"], timeout=30)
    assert seen.instances == ("a",)
    assert seen.by_provider == {"p": ("a",), "q": ("a",)}


async def test_concurrent_acquirers_never_hold_more_than_the_slots(
    redis: RedisClient, prefix: str
) -> None:
    instances = [Cluster(redis, prefix, f"i{n}") for n in range(5)]
    taken: dict[str, list[int]] = {}

    async def grab(cluster: Cluster) -> None:
        taken[cluster.instance] = await cluster.acquire("p", range(4), 3, ttl=30)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for cluster in instances:
                nursery.start_soon(grab, cluster)
        holders = await instances[0].holders("p", 4)
    slots = [i for got in taken.values() for i in got]
    assert sorted(slots) == [0, 1, 2, 3]  # each slot once, all of them taken
    for cluster in instances:
        for i in taken[cluster.instance]:
            assert holders[i] == cluster.instance


async def test_renew_keeps_takes_back_or_loses_a_slot(redis: RedisClient, prefix: str) -> None:
    a, b = Cluster(redis, prefix, "a"), Cluster(redis, prefix, "b")
    with trio.fail_after(10):
        assert await a.acquire("p", [0, 1], 2, ttl=0.2) == [0, 1]
        assert await b.acquire("p", [0, 1], 2, ttl=30) == []  # both held
        await trio.sleep(0.3)  # a's leases expired
        assert await b.acquire("p", [1], 1, ttl=30) == [1]
        # Slot 0 was free: a takes it back; slot 1 is b's now: lost.
        assert await a.renew("p", {0, 1}, ttl=30) == {0}
        assert await a.holders("p", 3) == ["a", "b", None]
        # Releasing gives back only what is a's.
        await a.release("p", [0, 1])
        assert await a.holders("p", 2) == [None, "b"]


async def test_a_restarted_instance_takes_back_the_slots_under_its_id(
    redis: RedisClient, prefix: str
) -> None:
    first = Cluster(redis, prefix, "a")
    with trio.fail_after(10):
        assert await first.acquire("p", range(3), 2, ttl=30) == [0, 1]
        again = Cluster(redis, prefix, "a")  # the same instance_id after a crash
        other = Cluster(redis, prefix, "b")
        assert await other.acquire("p", range(3), 3, ttl=30) == [2]
        assert await again.acquire("p", range(3), 3, ttl=30) == [0, 1]


async def test_two_runs_of_one_instance_id_are_told_apart(redis: RedisClient, prefix: str) -> None:
    first, second = Cluster(redis, prefix, "a"), Cluster(redis, prefix, "a")
    other = Cluster(redis, prefix, "b")
    with trio.fail_after(10):
        assert not (await first.heartbeat(["p"], timeout=30)).same_id
        assert not (await first.heartbeat(["p"], timeout=30)).same_id  # its own token
        assert not (await other.heartbeat(["p"], timeout=30)).same_id  # another id
        # A second process with the same id: each sees the other's token from now on.
        assert (await second.heartbeat(["p"], timeout=30)).same_id
        assert (await first.heartbeat(["p"], timeout=30)).same_id
        # A run that leaves takes its token with it: a restart after a drain is not suspect.
        await first.leave(["p"], everything=True)
        await second.leave(["p"], everything=True)
        again = Cluster(redis, prefix, "a")
        assert not (await again.heartbeat(["p"], timeout=30)).same_id


async def test_the_heartbeat_and_slot_renewals_go_on_while_redis_is_full(tmp_path: Path) -> None:
    """Redis at ``maxmemory`` with ``noeviction`` (what docs/queue.md asks for) refuses writes
    that could grow it. An instance already listed grows nothing by beating: if its heartbeat
    were refused, every instance would close its connections after ``instance_timeout`` and
    stop draining the queue that fills Redis. Joining (a new entry, a new slot) may be refused."""
    with RedisServer.start(tmp_path, appendonly=False) as server:
        async with open_redis(server.url) as redis:
            a, b = Cluster(redis, "p", "a"), Cluster(redis, "p", "b")
            with trio.fail_after(20):
                await a.heartbeat(["sms"], timeout=30)
                assert await a.acquire("sms", [0, 1], 1, ttl=30) == [0]
                await trio.to_thread.run_sync(_fill, server.url)
                for _ in range(3):
                    seen = await a.heartbeat(["sms"], timeout=30)
                    assert seen.instances == ("a",) and seen.by_provider == {"sms": ("a",)}
                    assert await a.renew("sms", {0}, ttl=30) == {0}
                with pytest.raises(QueueUnavailable, match="maxmemory"):
                    await b.acquire("sms", [1], 1, ttl=30)


def _fill(url: str) -> None:
    """Write 500 kB, then set ``maxmemory`` 100 kB below what is used: Redis is full (and stays
    so, whatever small amounts the test's own calls move)."""
    client = redis_sync.Redis.from_url(url, socket_timeout=5)
    try:
        for i in range(500):
            client.set(f"junk:{i}", b"x" * 1000)
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", client.info("memory")["used_memory"] - 100_000)
        with pytest.raises(redis_sync.exceptions.OutOfMemoryError):
            client.set("one-more", b"x")
    finally:
        client.close()
