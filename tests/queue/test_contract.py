"""The queue contract (smsgw/queue/base.py), checked on every backend (``queue_env`` params).

Time goes through ``queue_env``: ``advance(s)`` moves SQLite's fake clock, or sleeps for real on
Redis, whose ``short`` timeout is a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest
import trio

from smsgw.queue.base import (
    REPLAYED,
    DeadLetter,
    DuplicateId,
    Lease,
    LeaseLost,
    NewMessage,
    Queue,
    QueueDepth,
)

if TYPE_CHECKING:
    from conftest import QueueEnv

LONG = 600.0  # a visibility timeout no test outlives
TIME_SLACK = 2.0  # how far a backend's timestamps may be from queue_env.now() on a busy machine


def msg(
    message_id: str,
    priority: int = 5,
    *,
    payload: bytes | None = None,
    not_before: float | None = None,
) -> NewMessage:
    return NewMessage(
        id=message_id,
        payload=f"payload of {message_id}".encode() if payload is None else payload,
        priority=priority,
        not_before=not_before,
    )


def ids(leases: Sequence[Lease]) -> list[str]:
    return [lease.message.id for lease in leases]


async def lease_all(queue: Queue, consumer: str = "c", timeout: float = LONG) -> list[Lease]:
    return await queue.lease(consumer, 1000, timeout)


async def test_empty_queue_leases_nothing(queue: Queue) -> None:
    with trio.fail_after(10):
        assert await queue.lease("c", 10, LONG) == []
        assert await queue.depth() == QueueDepth(
            ready=0, delayed=0, leased=0, dead=0, ready_by_priority={}
        )


async def test_leased_message_carries_what_was_enqueued(queue: Queue, queue_env: QueueEnv) -> None:
    payload = bytes(range(256)) + b"\x00end"
    with trio.fail_after(10):
        await queue.enqueue([msg("a", 7, payload=payload), msg("empty", 7, payload=b"")])
        enqueued_around = queue_env.now()
        [a, empty] = await queue.lease("worker-1", 10, LONG)
        leased_around = queue_env.now()
    assert (a.message.id, a.message.payload, a.message.priority) == ("a", payload, 7)
    assert (empty.message.id, empty.message.payload) == ("empty", b"")
    assert a.message.attempts == 1
    assert a.message.last_error is None
    assert a.message.enqueued_at == pytest.approx(enqueued_around, abs=TIME_SLACK)
    assert a.deadline == pytest.approx(leased_around + LONG, abs=TIME_SLACK)
    assert a.token


async def test_higher_priority_is_served_first_strictly(queue: Queue) -> None:
    priorities = [3, 9, 0, 5, 9, 1, 7, 2, 8, 4, 6, 0]
    with trio.fail_after(10):
        await queue.enqueue([msg(f"m{i}", p) for i, p in enumerate(priorities)])
        # One at a time: each lease must take the highest priority still waiting.
        served = [(await queue.lease("c", 1, LONG))[0] for _ in priorities]
        assert await queue.lease("c", 1, LONG) == []
    assert [lease.message.priority for lease in served] == sorted(priorities, reverse=True)


async def test_a_batch_comes_back_highest_priority_first(queue: Queue) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("low", 1), msg("high", 9), msg("mid", 5)])
        assert ids(await lease_all(queue)) == ["high", "mid", "low"]


async def test_fifo_within_a_priority(queue: Queue) -> None:
    with trio.fail_after(20):
        # Singles and batches interleaved, two priorities interleaved.
        for i in range(0, 30, 3):
            await queue.enqueue([msg(f"a{i:02}", 4)])
            await queue.enqueue(
                [msg(f"a{i + 1:02}", 4), msg(f"b{i:02}", 6), msg(f"a{i + 2:02}", 4)]
            )
        served: list[str] = []
        for _ in range(20):
            served += ids(await queue.lease("c", 4, LONG))
    assert served == [f"b{i:02}" for i in range(0, 30, 3)] + [f"a{i:02}" for i in range(30)]


async def test_batch_of_100_is_enqueued_whole_and_in_order(queue: Queue) -> None:
    batch = [msg(f"m{i:03}", 5) for i in range(100)]
    with trio.fail_after(20):
        await queue.enqueue(batch)
        assert (await queue.depth()).ready == 100
        leases = await lease_all(queue)
    assert ids(leases) == [m.id for m in batch]


async def test_max_items_is_respected(queue: Queue) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg(f"m{i}") for i in range(10)])
        sizes = [len(await queue.lease("c", 4, LONG)) for _ in range(4)]
    assert sizes == [4, 4, 2, 0]


async def test_delayed_message_is_invisible_until_due(queue: Queue, queue_env: QueueEnv) -> None:
    with trio.fail_after(10):
        now = queue_env.now()
        await queue.enqueue(
            [
                msg("soon", 9, not_before=now + queue_env.short),
                msg("much later", 9, not_before=now + LONG),
            ]
        )
        if queue_env.fake_clock:  # on real time, "soon" may already be due by now
            assert await lease_all(queue) == []
            depth = await queue.depth()
            assert (depth.ready, depth.delayed, depth.ready_by_priority) == (0, 2, {})
        await queue_env.advance(queue_env.short * 1.5)
        assert (await queue.depth()).delayed == 1
        assert ids(await lease_all(queue)) == ["soon"]
        assert await lease_all(queue) == []


async def test_past_not_before_counts_as_now(queue: Queue, queue_env: QueueEnv) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("first")])
        await queue.enqueue([msg("second", not_before=queue_env.now() - 3600)])
        assert ids(await lease_all(queue)) == ["first", "second"]


async def test_delayed_message_takes_its_place_at_its_due_time(
    queue: Queue, queue_env: QueueEnv
) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("delayed", not_before=queue_env.now() + queue_env.short)])
        await queue.enqueue([msg("waiting")])
        await queue_env.advance(queue_env.short * 1.5)
        await queue.enqueue([msg("newer")])
        assert ids(await lease_all(queue)) == ["waiting", "delayed", "newer"]


async def test_nack_delays_counts_attempts_and_keeps_the_reason(
    queue: Queue, queue_env: QueueEnv
) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("a"), msg("b")])
        first, b = await lease_all(queue)
        assert first.message.attempts == 1
        await queue.nack(first, delay=queue_env.short, reason="ESME_RTHROTTLED")
        await queue.nack(b, delay=LONG, reason="later")
        if queue_env.fake_clock:  # on real time, "a" may already be due by now
            assert await lease_all(queue) == []
            assert (await queue.depth()).delayed == 2
        await queue_env.advance(queue_env.short * 1.5)
        [second] = await lease_all(queue)
        assert (await queue.depth()).delayed == 1  # b
    assert second.message.id == "a"
    assert second.message.attempts == 2
    assert second.message.last_error == "ESME_RTHROTTLED"
    assert second.token != first.token


async def test_nacked_message_goes_behind_what_was_due_before_it(
    queue: Queue, queue_env: QueueEnv
) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("a"), msg("b")])
        [a] = await queue.lease("c", 1, LONG)
        await queue.nack(a, delay=queue_env.short, reason="retry")
        await queue_env.advance(queue_env.short * 1.5)
        await queue.enqueue([msg("c")])
        assert ids(await lease_all(queue)) == ["b", "a", "c"]


async def test_nack_without_delay_is_due_at_once(queue: Queue, queue_env: QueueEnv) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("a"), msg("b")])
        [a] = await queue.lease("c", 1, LONG)
        await queue_env.advance(0.05)
        await queue.nack(a, delay=0, reason="again")
        assert ids(await lease_all(queue)) == ["b", "a"]


async def test_expired_lease_is_reclaimed_and_its_token_refused(
    queue: Queue, queue_env: QueueEnv
) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("a")])
        [stale] = await queue.lease("crashed", 1, queue_env.short)
        await queue_env.advance(queue_env.short * 1.5)
        [fresh] = await queue.lease("other", 1, LONG)
        assert fresh.message.id == "a"
        assert fresh.message.attempts == 2
        assert fresh.token != stale.token
        with pytest.raises(LeaseLost):
            await queue.ack([stale])
        with pytest.raises(LeaseLost):
            await queue.nack(stale, delay=0, reason="late")
        with pytest.raises(LeaseLost):
            await queue.extend(stale, LONG)
        with pytest.raises(LeaseLost):
            await queue.dead_letter(stale, reason="late")
        # None of the refused calls touched the new holder's lease.
        assert (await queue.depth()).leased == 1
        await queue.ack([fresh])
        assert await queue.depth() == QueueDepth(
            ready=0, delayed=0, leased=0, dead=0, ready_by_priority={}
        )


async def test_held_message_is_invisible_to_other_consumers(queue: Queue) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("a"), msg("b")])
        [a] = await queue.lease("one", 1, LONG)
        assert ids(await queue.lease("two", 5, LONG)) == ["b"]
        assert await queue.lease("three", 5, LONG) == []
        depth = await queue.depth()
        assert (depth.ready, depth.leased) == (0, 2)
        await queue.ack([a])


async def test_expired_lease_is_refused_before_anyone_leases_again(
    queue: Queue, queue_env: QueueEnv
) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("a", 3)])
        [lease] = await queue.lease("slow", 1, queue_env.short)
        await queue_env.advance(queue_env.short * 1.5)
        depth = await queue.depth()
        assert (depth.ready, depth.leased, depth.ready_by_priority) == (1, 0, {3: 1})
        with pytest.raises(LeaseLost):
            await queue.ack([lease])
        [again] = await lease_all(queue)
    assert again.message.id == "a"
    assert again.message.attempts == 2


async def test_expired_lease_goes_back_at_its_deadline(queue: Queue, queue_env: QueueEnv) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("a"), msg("b")])
        await queue.lease("crashed", 1, queue_env.short)
        await queue_env.advance(queue_env.short * 1.5)
        await queue.enqueue([msg("c")])
        assert ids(await lease_all(queue)) == ["b", "a", "c"]


async def test_extend_keeps_a_lease_past_its_first_deadline(
    queue: Queue, queue_env: QueueEnv
) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("a")])
        [lease] = await queue.lease("c", 1, queue_env.short)
        extended = await queue.extend(lease, queue_env.short * 4)
        assert extended.deadline > lease.deadline
        assert extended.message.id == "a"
        await queue_env.advance(queue_env.short * 1.5)
        assert await queue.lease("other", 1, LONG) == []
        assert (await queue.depth()).leased == 1
        await queue.ack([extended])
        assert (await queue.depth()).leased == 0


async def test_ack_removes_and_reports_lost_leases_after_acking_the_others(queue: Queue) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("a"), msg("b"), msg("c")])
        a, b, c = await lease_all(queue)
        await queue.ack([])  # nothing to do
        assert await queue.purge(["b"]) == 1
        with pytest.raises(LeaseLost, match="b"):
            await queue.ack([a, b, c])
        assert await queue.depth() == QueueDepth(
            ready=0, delayed=0, leased=0, dead=0, ready_by_priority={}
        )
        with pytest.raises(LeaseLost):
            await queue.ack([a])  # acked already


async def test_a_lease_listed_twice_in_one_ack_is_acked_once(queue: Queue) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("a")])
        [a] = await lease_all(queue)
        await queue.ack([a, a])
        assert (await queue.depth()).leased == 0


async def test_dead_letters_are_listed_oldest_first_and_replayed(
    queue: Queue, queue_env: QueueEnv
) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("a", 2), msg("b", 2), msg("c", 2), msg("d", 5)])
        d, a, b, c = await lease_all(queue)
        await queue.dead_letter(c, reason="invalid destination")
        dead_since = queue_env.now()
        await queue_env.advance(0.05)
        await queue.dead_letter(a, reason="rejected by SMSC")
        await queue.nack(b, delay=0, reason="throttled")
        await queue.ack([d])
        await queue_env.advance(0.05)  # b is due before the replays below
        with pytest.raises(LeaseLost):
            await queue.ack([c])  # dead: no longer held

        dead = await queue.dead_letters()
        assert [(x.message.id, x.reason) for x in dead] == [
            ("c", "invalid destination"),
            ("a", "rejected by SMSC"),
        ]
        assert isinstance(dead[0], DeadLetter)
        assert dead[0].message.attempts == 1
        assert dead[0].message.payload == b"payload of c"
        assert dead[0].dead_at == pytest.approx(dead_since, abs=TIME_SLACK)
        assert [x.message.id for x in await queue.dead_letters(limit=1, offset=1)] == ["a"]
        assert await queue.dead_letters(limit=5, offset=2) == []
        depth = await queue.depth()
        assert (depth.dead, depth.ready) == (2, 1)

        # Only dead letters move; unknown ids and live messages are not counted.
        assert await queue.replay(["a", "b", "nobody"]) == 1
        assert [x.message.id for x in await queue.dead_letters()] == ["c"]
        assert await queue.replay(["c"], priority=9) == 1
        assert await queue.dead_letters() == []
        replayed = await lease_all(queue)
    assert ids(replayed) == ["c", "b", "a"]  # c at priority 9 now; b was due before a's replay
    assert [lease.message.priority for lease in replayed] == [9, 2, 2]
    # attempts restart from zero on replay; b was never dead-lettered
    assert [lease.message.attempts for lease in replayed] == [1, 2, 1]
    # A replayed message says so, with its dead-letter reason (it was worked on before).
    assert [lease.message.last_error for lease in replayed] == [
        REPLAYED + "invalid destination",
        "throttled",
        REPLAYED + "rejected by SMSC",
    ]


async def test_purge_deletes_in_any_state(queue: Queue, queue_env: QueueEnv) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("leased", 9), msg("dead", 9)])
        leased, dead = await lease_all(queue)
        await queue.dead_letter(dead, reason="x")
        await queue.enqueue([msg("ready"), msg("delayed", not_before=queue_env.now() + LONG)])
        assert await queue.depth() == QueueDepth(
            ready=1, delayed=1, leased=1, dead=1, ready_by_priority={5: 1}
        )
        assert await queue.purge(["ready", "delayed", "leased", "dead", "unknown", "ready"]) == 4
        assert await queue.depth() == QueueDepth(
            ready=0, delayed=0, leased=0, dead=0, ready_by_priority={}
        )
        assert await queue.purge([]) == 0
        with pytest.raises(LeaseLost):
            await queue.ack([leased])
        # A purged id may be used again.
        await queue.enqueue([msg("ready")])
        assert ids(await lease_all(queue)) == ["ready"]


async def test_depth_counts_by_state_and_ready_by_priority(
    queue: Queue, queue_env: QueueEnv
) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("to-lease", 9), msg("to-kill", 8)])
        _, to_kill = await lease_all(queue)
        await queue.dead_letter(to_kill, reason="x")
        await queue.enqueue(
            [
                msg("p1a", 1),
                msg("p7", 7),
                msg("p1b", 1),
                msg("p0", 0),
                msg("later", 4, not_before=queue_env.now() + LONG),
            ]
        )
        assert await queue.depth() == QueueDepth(
            ready=4, delayed=1, leased=1, dead=1, ready_by_priority={0: 1, 1: 2, 7: 1}
        )


async def test_duplicate_ids_reject_the_whole_batch(queue: Queue) -> None:
    with trio.fail_after(10):
        await queue.enqueue([msg("a")])
        with pytest.raises(DuplicateId):
            await queue.enqueue([msg("b"), msg("a"), msg("c")])
        with pytest.raises(DuplicateId):
            await queue.enqueue([msg("d"), msg("d")])
        assert (await queue.depth()).ready == 1
        [a] = await lease_all(queue)
        with pytest.raises(DuplicateId):
            await queue.enqueue([msg("a")])  # leased: still in the queue
        await queue.dead_letter(a, reason="x")
        with pytest.raises(DuplicateId):
            await queue.enqueue([msg("e"), msg("a")])  # dead: still in the queue
        # Nothing of the refused batches was stored: their fresh ids are free.
        await queue.enqueue([msg("b"), msg("c"), msg("d"), msg("e")])
        assert ids(await lease_all(queue)) == ["b", "c", "d", "e"]


async def _consume(queue: Queue, name: str, held: set[str], acked: list[str], batch: int) -> None:
    """Lease and ack until the queue is empty, checking nobody else holds what we got."""
    for _ in range(1000):
        leases = await queue.lease(name, batch, LONG)
        if not leases:
            return
        for lease in leases:
            assert lease.message.id not in held, f"{lease.message.id} leased twice at once"
            held.add(lease.message.id)
        await trio.sleep(0)  # let the other consumers lease meanwhile
        for lease in leases:
            held.remove(lease.message.id)
        await queue.ack(leases)
        acked += ids(leases)
    raise AssertionError("consumer did not finish")


async def test_concurrent_consumers_never_hold_one_message_at_once(queue: Queue) -> None:
    all_ids = [f"m{i:03}" for i in range(150)]
    held: set[str] = set()
    acked: list[str] = []
    with trio.fail_after(30):
        await queue.enqueue([msg(i, 5) for i in all_ids])
        async with trio.open_nursery() as nursery:
            for n in range(5):
                nursery.start_soon(_consume, queue, f"task-{n}", held, acked, 1 + n * 2)
    assert sorted(acked) == all_ids


async def test_consumers_on_separate_connections_share_the_work(
    queue: Queue, queue_env: QueueEnv
) -> None:
    all_ids = [f"m{i:03}" for i in range(150)]
    held: set[str] = set()
    acked: list[str] = []
    with trio.fail_after(30):
        await queue.enqueue([msg(i, 8 if i.endswith("7") else 5) for i in all_ids])
        async with (
            queue_env.open() as second,
            queue_env.open() as third,
            trio.open_nursery() as nursery,
        ):
            for n, q in enumerate([queue, second, third, queue, second, third]):
                nursery.start_soon(_consume, q, f"conn-{n}", held, acked, 4)
    assert sorted(acked) == all_ids
