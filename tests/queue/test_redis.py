"""Redis-specific behaviour of the queue (the shared contract suite is test_contract.py).

Against real redis-servers: the session's shared one (fixture ``redis_server``, fresh prefix per
test) and, for restarts and outages, a private one per test.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import trio
import trio_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgw.adapters.redis import open_redis
from smsgw.queue.base import Lease, LeaseLost, NewMessage, QueueError, QueueUnavailable
from smsgw.queue.redis import CHUNK, RedisQueue, check_prefix, key_names, open_redis_queue
from smsgw.testing.redis import RedisServer

HANG_GUARD = 20  # seconds: only stops a broken test from hanging, never a timing assertion


def fresh_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def sync_client(url: str) -> redis.Redis:
    """A plain blocking client to look at the server from outside the queue (use with ``with``)."""
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def flush_scripts(url: str) -> None:
    with sync_client(url) as client:
        client.script_flush()


def batch(n: int, *, start: int = 0, priority: int = 5) -> list[NewMessage]:
    return [NewMessage(f"m{i}", b"payload-%d" % i, priority=priority) for i in range(start, n)]


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private server (AOF, fsync always) that a test may kill, stop and restart."""
    with RedisServer.start(tmp_path, appendonly=True, appendfsync="always") as server:
        yield server


@pytest.fixture
async def shared(redis_server: RedisServer) -> AsyncIterator[RedisQueue]:
    async with open_redis_queue(redis_server.url, prefix=fresh_prefix()) as q:
        yield q


async def drain(q: RedisQueue, consumer: str = "drain", *, vt: float = 60) -> list[Lease]:
    leases: list[Lease] = []
    for _ in range(1000):  # bounded
        got = await q.lease(consumer, 100, vt)
        if not got:
            return leases
        leases += got
    raise AssertionError("queue never ran dry")


# --- restarts and outages ----------------------------------------------------------------------


async def test_a_crash_and_restart_loses_nothing_acknowledged(own_server: RedisServer) -> None:
    with trio.fail_after(HANG_GUARD):
        async with open_redis_queue(own_server.url, prefix="q") as q:
            await q.enqueue(batch(40))
            await q.enqueue([NewMessage(f"single{i}", b"s", priority=9) for i in range(5)])
            held = await q.lease("c1", 10, 60)  # 5 x priority 9, then m0..m4
            await q.ack(held[:3])
            await q.nack(held[3], delay=0, reason="try again")
            kept_lease = held[4]
            expected = {f"m{i}" for i in range(40)} | {f"single{i}" for i in range(5)}
            expected -= {lease.message.id for lease in held[:3]}

            # SIGKILL: Redis gets no chance to flush anything it had not written yet.
            await trio.to_thread.run_sync(lambda: own_server.restart(kill=True))

            # The same queue object, not reopened: its pooled connections died with the server.
            depth = await q.depth()
            assert (depth.ready, depth.leased, depth.dead) == (len(expected) - 6, 6, 0)
            await q.ack([kept_lease])  # a lease taken before the restart is still held
            expected.discard(kept_lease.message.id)
            leased = await drain(q)
            ids = [lease.message.id for lease in leased]
            assert sorted(ids) == sorted(expected - {lease.message.id for lease in held[5:]})
            nacked = next(x for x in leased if x.message.id == held[3].message.id)
            assert (nacked.message.last_error, nacked.message.attempts) == ("try again", 2)
            assert {x.message.payload for x in leased if x.message.id == "m39"} == {b"payload-39"}


async def test_operations_raise_unavailable_while_redis_is_down(own_server: RedisServer) -> None:
    with trio.fail_after(HANG_GUARD):
        async with open_redis_queue(own_server.url, prefix="q", timeout=1.0) as q:
            await q.enqueue(batch(3))
            lease = (await q.lease("c", 1, 60))[0]
            await trio.to_thread.run_sync(own_server.stop)

            operations = {
                "enqueue": q.enqueue(batch(4, start=3)),
                "lease": q.lease("c", 1, 60),
                "ack": q.ack([lease]),
                "nack": q.nack(lease, delay=1, reason="x"),
                "extend": q.extend(lease, 30),
                "dead_letter": q.dead_letter(lease, reason="x"),
                "dead_letters": q.dead_letters(),
                "replay": q.replay(["m0"]),
                "purge": q.purge(["m0"]),
                "depth": q.depth(),
            }
            for name, operation in operations.items():
                with pytest.raises(QueueUnavailable, match="unavailable") as caught:
                    await operation
                assert str(own_server.port) in str(caught.value), name

            await trio.to_thread.run_sync(own_server.resume)
            await q.ack([lease])  # the failed calls changed nothing; the lease is still held
            assert (await q.depth()).ready == 2


async def test_a_hung_server_times_out_as_unavailable(own_server: RedisServer) -> None:
    """A server that accepts but never answers (SIGSTOP) costs one ``timeout``, not a hang."""
    with trio.fail_after(HANG_GUARD):
        async with open_redis_queue(own_server.url, prefix="q", timeout=0.3) as q:
            await q.enqueue(batch(2))
            assert own_server.pid is not None
            os.kill(own_server.pid, signal.SIGSTOP)
            try:
                with pytest.raises(QueueUnavailable, match=r"no answer to queue.lease within 0.3"):
                    await q.lease("c", 1, 60)
            finally:
                os.kill(own_server.pid, signal.SIGCONT)
            # A fresh connection works. The timed-out lease may still have run once the server
            # woke up (its message then returns after the visibility timeout), so the outcome
            # of a timed-out call is unknown: that is what QueueUnavailable means.
            assert len(await q.lease("c", 1, 60)) == 1
            depth = await q.depth()
            assert depth.ready + depth.leased == 2


async def test_out_of_memory_is_unavailable_and_stores_nothing(own_server: RedisServer) -> None:
    """With maxmemory-policy noeviction (what docs/queue-redis.md asks for) a full Redis refuses
    writes; the queue reports that as retryable, and a refused batch left nothing behind."""
    with sync_client(own_server.url) as observer:
        async with open_redis_queue(own_server.url, prefix="q") as q:
            await q.enqueue(batch(1))
            observer.config_set("maxmemory-policy", "noeviction")
            observer.config_set("maxmemory", observer.info("memory")["used_memory"] + 100_000)
            stored = 1
            # Redis 6 says "OOM command not allowed ...", 7 "command not allowed when used
            # memory > 'maxmemory'".
            with pytest.raises(QueueUnavailable, match=r"OOM|maxmemory"):
                for i in range(1, 1000):  # bounded: 100 kB is full long before 1000 x 5 kB
                    await q.enqueue([NewMessage(f"big{i}-{j}", b"x" * 1000) for j in range(5)])
                    stored += 5
            assert (await q.depth()).ready == stored
            leases = await drain(q)  # leasing (and acking, which frees memory) still works
            await q.ack(leases)
            assert len(leases) == stored


async def test_scripts_are_reloaded_when_the_server_forgot_them(redis_server: RedisServer) -> None:
    """EVALSHA falls back to EVAL after SCRIPT FLUSH (what a restart does), also in pipelines."""
    n = CHUNK + 17  # so ack, replay and purge each send two scripts in one pipeline
    async with open_redis_queue(redis_server.url, prefix=fresh_prefix()) as q:
        await q.enqueue(batch(n))
        flush_scripts(redis_server.url)
        leases = await drain(q)
        assert len(leases) == n
        flush_scripts(redis_server.url)
        await q.ack(leases[:-2])
        for lease in leases[-2:]:
            await q.dead_letter(lease, reason="bad")
        flush_scripts(redis_server.url)
        assert await q.replay([lease.message.id for lease in leases]) == 2
        assert await q.purge([f"m{i}" for i in range(n)] + ["unknown"]) == 2
        depth = await q.depth()
        assert (depth.ready, depth.delayed, depth.leased, depth.dead) == (0, 0, 0, 0)


# --- several instances on one queue -------------------------------------------------------------


async def test_two_instances_never_hold_one_message_at_once(redis_server: RedisServer) -> None:
    prefix = fresh_prefix()
    seen: dict[str, list[str]] = {}

    async def consumer(q: RedisQueue, name: str) -> None:
        for _ in range(200):  # bounded
            leases = await q.lease(name, 7, 60)
            if not leases:
                return
            for lease in leases:
                seen.setdefault(lease.message.id, []).append(name)
            await trio.sleep(0)  # let the others interleave

    with trio.fail_after(HANG_GUARD):
        async with (
            open_redis_queue(redis_server.url, prefix=prefix) as a,
            open_redis_queue(redis_server.url, prefix=prefix) as b,
        ):
            await a.enqueue(batch(300))
            async with trio.open_nursery() as nursery:
                for i in range(3):
                    nursery.start_soon(consumer, a, f"a{i}")
                    nursery.start_soon(consumer, b, f"b{i}")
    assert sorted(seen) == sorted(f"m{i}" for i in range(300))
    assert all(len(holders) == 1 for holders in seen.values())
    assert {h[0][0] for h in seen.values()} == {"a", "b"}  # both instances took part


async def test_an_instance_reclaims_the_expired_leases_of_another(
    redis_server: RedisServer,
) -> None:
    prefix = fresh_prefix()
    with trio.fail_after(HANG_GUARD):
        async with open_redis_queue(redis_server.url, prefix=prefix) as b:
            async with open_redis_queue(redis_server.url, prefix=prefix) as a:
                await a.enqueue(batch(5))
                stale = await a.lease("instance-a", 5, 0.3)
                assert await b.lease("instance-b", 5, 60) == []  # a holds them all
            # Instance a is gone without acking. After the visibility timeout b gets the work.
            await trio.sleep(0.4)
            reclaimed = await b.lease("instance-b", 10, 60)
            assert [x.message.id for x in reclaimed] == [x.message.id for x in stale]
            assert all(x.message.attempts == 2 for x in reclaimed)
            with pytest.raises(LeaseLost):
                await b.ack(stale)
            await b.ack(reclaimed)
            assert (await b.depth()).leased == 0


async def test_deadlines_come_from_the_server_clock(redis_server: RedisServer) -> None:
    def server_time() -> float:
        with sync_client(redis_server.url) as client:
            seconds, micros = client.time()
        return seconds + micros / 1e6

    async with open_redis_queue(redis_server.url, prefix=fresh_prefix()) as q:
        await q.enqueue(batch(1))
        before = server_time()
        lease = (await q.lease("c", 1, 100.0))[0]
        after = server_time()
    assert before + 100.0 <= lease.deadline <= after + 100.0
    assert before - 5 <= lease.message.enqueued_at <= after


async def test_more_concurrent_calls_than_connections_wait_their_turn(
    own_server: RedisServer,
) -> None:
    async with open_redis_queue(own_server.url, prefix="q", max_connections=2) as q:
        with trio.fail_after(HANG_GUARD):
            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(q.enqueue, [NewMessage(f"m{i}", b"")])
        assert (await q.depth()).ready == 20
        with sync_client(own_server.url) as observer:
            assert len(observer.client_list()) <= 2 + 1  # the queue's two, and the observer


async def test_uses_the_trio_asyncio_loop_already_open(redis_server: RedisServer) -> None:
    """The gateway opens one loop in its root nursery; the queue must run on it, not its own."""
    async with (
        trio_asyncio.open_loop() as loop,
        open_redis_queue(redis_server.url, prefix=fresh_prefix()) as q,
    ):
        assert q._redis._loop is loop
        await q.enqueue(batch(1))
        assert len(await q.lease("c", 1, 60)) == 1


async def test_the_adapter_runs_commands_and_pipelines(redis_server: RedisServer) -> None:
    key = f"{{{fresh_prefix()}}}:adapter"
    async with open_redis(redis_server.url) as client:
        assert await client.command("SET", key, b"\x00\xff") is True
        assert await client.pipeline([("GET", key), ("STRLEN", key), ("DEL", key)]) == [
            b"\x00\xff",
            2,
            1,
        ]
        with pytest.raises(QueueError, match="unknown command") as caught:
            await client.command("NO-SUCH-COMMAND")
        assert not isinstance(caught.value, QueueUnavailable)  # a bug, not an outage


async def test_urls_that_are_not_redis_are_refused() -> None:
    with pytest.raises(ValueError, match="not a Redis URL"):
        async with open_redis_queue("http://127.0.0.1:6379"):
            pass


# --- keys ---------------------------------------------------------------------------------------


async def test_prefixes_isolate_queues(redis_server: RedisServer) -> None:
    base = fresh_prefix()
    prefixes = [base, base + "b", base + ":b"]  # look alike, must not share anything
    async with (
        open_redis_queue(redis_server.url, prefix=prefixes[0]) as one,
        open_redis_queue(redis_server.url, prefix=prefixes[1]) as two,
        open_redis_queue(redis_server.url, prefix=prefixes[2]) as three,
    ):
        await one.enqueue(batch(3))
        await two.enqueue(batch(2))  # same ids: not duplicates in another queue
        assert (await three.depth()).ready == 0
        assert await three.purge(["m0", "m1"]) == 0
        assert [x.message.id for x in await two.lease("c", 10, 60)] == ["m0", "m1"]
        assert (await one.depth()).ready == 3
    with sync_client(redis_server.url) as client:
        keys = {k.decode() for k in client.scan_iter(match=f"{{{base}*")}
    assert keys  # every key the queues wrote is under '{prefix}:' for exactly one prefix
    for key in keys:
        assert sum(key.startswith("{" + p + "}:") for p in prefixes) == 1, key


@given(st.text(st.characters(blacklist_characters="{}", blacklist_categories=["Zs", "Cc"])))
def test_key_names_are_hash_tagged_by_the_prefix(prefix: str) -> None:
    if not prefix or any(c.isspace() for c in prefix):
        with pytest.raises(ValueError, match="prefix"):
            check_prefix(prefix)
        return
    keys = key_names(check_prefix(prefix))
    assert len(set(keys)) == len(keys)
    assert all(k.startswith("{" + prefix + "}:") for k in keys)


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "a b", "x\n"])
def test_bad_prefixes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        check_prefix(bad)


# --- values survive the trip through Lua --------------------------------------------------------


async def test_duplicate_ids_store_nothing_of_the_batch(shared: RedisQueue) -> None:
    await shared.enqueue(batch(2))
    with pytest.raises(QueueError, match="'m1'"):
        await shared.enqueue([NewMessage("new", b""), NewMessage("m1", b"")])
    with pytest.raises(QueueError, match="'twice'"):
        await shared.enqueue([NewMessage("twice", b""), NewMessage("twice", b"")])
    assert (await shared.depth()).ready == 2


async def test_bad_arguments_are_refused_before_anything_is_sent(shared: RedisQueue) -> None:
    with pytest.raises(TypeError, match="bytes"):
        await shared.enqueue([NewMessage("a", "text")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        await shared.enqueue([NewMessage("a", b"", not_before=float("nan"))])
    with pytest.raises(ValueError, match="non-empty"):
        await shared.enqueue([NewMessage("", b"")])
    with pytest.raises(ValueError, match="max_items"):
        await shared.lease("c", 0, 10)
    with pytest.raises(ValueError, match="visibility_timeout"):
        await shared.lease("c", 1, 0)
    with pytest.raises(ValueError, match="priority"):
        await shared.replay(["a"], priority=10)
    assert (await shared.depth()).ready == 0


# Each example is several round trips to a real server, so fewer examples than the profile's.
@settings(max_examples=25)
@given(
    messages=st.lists(
        st.tuples(st.text(min_size=1, max_size=40), st.binary(max_size=300)),
        min_size=1,
        max_size=20,
        unique_by=lambda m: m[0],
    ),
    delay=st.floats(min_value=10, max_value=1e9),
)
def test_ids_payloads_and_times_survive_redis(
    redis_server: RedisServer, messages: list[tuple[str, bytes]], delay: float
) -> None:
    """Any text id and any bytes come back as they went in, in order; times keep their size."""

    async def run() -> None:
        async with open_redis_queue(redis_server.url, prefix=fresh_prefix()) as q:
            new = [NewMessage(i, p) for i, p in messages]
            later = NewMessage("\x00later", b"", not_before=time.time() + delay)  # wall-clock
            await q.enqueue([*new, later])
            leases = await q.lease("c", len(new) + 1, delay)
            assert [(x.message.id, x.message.payload) for x in leases] == messages
            assert leases[0].deadline == pytest.approx(time.time() + delay, abs=30)  # wall-clock
            depth = await q.depth()
            assert (depth.ready, depth.delayed, depth.leased) == (0, 1, len(new))

    trio.run(run)
