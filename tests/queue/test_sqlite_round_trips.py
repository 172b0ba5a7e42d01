"""The SQLite queue's cost model: every operation is ONE round trip to the database's thread.

A round trip costs the gateway's Trio thread more CPU than the statements it carries (issue 5),
so an operation that slid back to a statement per round trip (BEGIN, ..., COMMIT) would still pass
every contract test while making the gateway slower. These tests count round trips on the real
adapter and the real file: ``CountingDatabase`` is ``SqliteDatabase`` itself, on the same
connection, counting the calls of ``_call``, the one door every statement, transaction and
``run`` goes through to the database's thread.

They also check the other half of the design: a write reads the clock on the database's thread
while it holds SQLite's write lock, so its time is never older than the state it decided on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import trio

from smsgw.adapters.sqlite import SqliteDatabase, open_sqlite
from smsgw.queue.base import DuplicateId, LeaseLost, NewMessage
from smsgw.queue.sqlite import SqliteQueue, create_schema

if TYPE_CHECKING:
    from fakeclock import FakeClock

LONG = 600.0
_T = TypeVar("_T")


class CountingDatabase(SqliteDatabase):
    """The real adapter, counting round trips to the database's thread."""

    calls = 0

    @classmethod
    def sharing(cls, db: SqliteDatabase) -> CountingDatabase:
        """Another handle on ``db``'s open connection (``db`` still owns and closes it)."""
        return cls(db._conn, db._loop, db.path)

    async def _call(self, fn: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        self.calls += 1
        return await super()._call(fn, *args)

    async def trips(self, operation: Awaitable[_T]) -> tuple[int, _T]:
        """How many round trips ``operation`` took, and its result."""
        before = self.calls
        result = await operation
        return self.calls - before, result


@asynccontextmanager
async def counted_queue(
    path: Path, clock: Callable[[], float]
) -> AsyncIterator[tuple[SqliteQueue, CountingDatabase]]:
    async with open_sqlite(path, synchronous="NORMAL") as db:
        await create_schema(db)
        counting = CountingDatabase.sharing(db)
        yield SqliteQueue(counting, clock=clock), counting


def msg(message_id: str, priority: int = 5) -> NewMessage:
    return NewMessage(id=message_id, payload=message_id.encode(), priority=priority)


async def test_every_operation_is_one_round_trip(tmp_path: Path, fake_clock: FakeClock) -> None:
    with trio.fail_after(20):
        async with counted_queue(tmp_path / "q.db", fake_clock) as (queue, db):
            assert (await db.trips(queue.enqueue([msg("a", 9), msg("b"), msg("c")])))[0] == 1
            trips, leases = await db.trips(queue.lease("w", 2, LONG))
            assert (trips, [x.message.id for x in leases]) == (1, ["a", "b"])
            a, b = leases
            trips, longer = await db.trips(queue.extend(a, 2 * LONG))
            assert (trips, longer.deadline) == (1, fake_clock() + 2 * LONG)
            assert (await db.trips(queue.nack(b, delay=5.0, reason="later")))[0] == 1
            (c,) = await queue.lease("w", 1, LONG)
            assert (await db.trips(queue.dead_letter(c, reason="bad")))[0] == 1
            trips, dead = await db.trips(queue.dead_letters())
            assert (trips, [x.message.id for x in dead]) == (1, ["c"])
            trips, depth = await db.trips(queue.depth())
            assert (trips, depth.leased, depth.delayed, depth.dead) == (1, 1, 1, 1)
            assert await db.trips(queue.replay(["c", "c", "nope"], priority=1)) == (1, 1)
            assert (await db.trips(queue.ack([longer, longer])))[0] == 1
            assert await db.trips(queue.purge(["b", "c", "nope"])) == (1, 2)
            assert (await queue.depth()).ready == 0


async def test_refusals_cost_no_extra_round_trip_except_naming_duplicates(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    with trio.fail_after(20):
        async with counted_queue(tmp_path / "q.db", fake_clock) as (queue, db):
            await queue.enqueue([msg("a"), msg("b")])
            (a,) = await queue.lease("w", 1, 30.0)
            fake_clock.advance(31.0)  # the lease is lost
            for lost in (
                queue.ack([a]),
                queue.nack(a, delay=0.0, reason="x"),
                queue.extend(a, LONG),
                queue.dead_letter(a, reason="x"),
            ):
                before = db.calls
                with pytest.raises(LeaseLost):
                    await lost
                assert db.calls - before == 1
            # The error path may look the duplicates up in a second round trip (and only then).
            before = db.calls
            with pytest.raises(DuplicateId, match=r"\['a', 'b'\]"):
                await queue.enqueue([msg("new"), msg("b"), msg("a")])
            assert db.calls - before == 2
            assert (await queue.depth()).ready == 2  # nothing of the refused batch was stored


async def test_long_id_lists_stay_one_round_trip(tmp_path: Path, fake_clock: FakeClock) -> None:
    n = 1200  # several statements' worth of ids (chunks of 500), and two lease tokens
    ids = [f"m{i:04}" for i in range(n)]
    with trio.fail_after(30):
        async with counted_queue(tmp_path / "q.db", fake_clock) as (queue, db):
            assert (await db.trips(queue.enqueue([msg(i) for i in ids])))[0] == 1
            trips, first = await db.trips(queue.lease("w", 700, LONG))
            assert (trips, len(first)) == (1, 700)
            second = await queue.lease("w", n, LONG)
            assert await db.trips(queue.ack(first + second[:-100])) == (1, None)
            assert await db.trips(queue.purge(ids)) == (1, 100)


class LockProbe:
    """A clock that records whether SQLite's write lock was held by someone when it was read.

    It tries to take the lock itself from a second connection that never waits; it runs on
    whichever thread the queue calls it from, so it must not be tied to one thread.
    """

    def __init__(self, path: Path, now: float) -> None:
        self.now = now
        self.lock_held: list[bool] = []
        self._other = sqlite3.connect(
            path, timeout=0, isolation_level=None, check_same_thread=False
        )

    def __call__(self) -> float:
        try:
            self._other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
            self.lock_held.append(True)
        else:
            self._other.execute("ROLLBACK")
            self.lock_held.append(False)
        return self.now

    def close(self) -> None:
        self._other.close()


async def test_writes_read_the_clock_under_the_write_lock(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    path = tmp_path / "q.db"
    with trio.fail_after(20):
        async with counted_queue(path, fake_clock) as (_, db):
            probe = LockProbe(path, fake_clock())
            try:
                queue = SqliteQueue(db, clock=probe)
                await queue.enqueue([msg("a"), msg("b"), msg("c")])
                a, b, c = await queue.lease("w", 3, LONG)
                a = await queue.extend(a, LONG)
                await queue.nack(b, delay=0.0, reason="x")
                await queue.dead_letter(c, reason="x")
                await queue.replay(["c"])
                await queue.ack([a])
                writes = probe.lock_held[:]
                await queue.purge(["b"])  # needs no time: does not read the clock
                await queue.depth()  # a read: takes no write lock
            finally:
                probe.close()
    assert writes == [True] * 7  # enqueue, lease, extend, nack, dead_letter, replay, ack
    assert probe.lock_held[7:] == [False]
