"""What only the SQLite backend and its adapter promise (the contract is in test_contract.py)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
import trio_asyncio  # type: ignore[import-untyped]
from sqlite_lock import write_locked

from smsgw.adapters.sqlite import (
    ConstraintViolation,
    DatabaseError,
    DatabaseUnavailable,
    open_sqlite,
)
from smsgw.queue.base import NewMessage, QueueError, QueueUnavailable
from smsgw.queue.sqlite import (
    LEASE_SQL,
    RECLAIM_SQL,
    SqliteQueue,
    create_schema,
    open_sqlite_queue,
)

if TYPE_CHECKING:
    from fakeclock import FakeClock

LONG = 600.0


def msg(message_id: str, priority: int = 5) -> NewMessage:
    return NewMessage(id=message_id, payload=message_id.encode(), priority=priority)


# -- the adapter -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "number"), [("OFF", 0), ("NORMAL", 1), ("FULL", 2), ("EXTRA", 3)]
)
async def test_database_is_opened_in_wal_mode_with_the_chosen_durability(
    tmp_path: Path, level: str, number: int
) -> None:
    with trio.fail_after(10):
        async with open_sqlite(tmp_path / "db", synchronous=level, busy_timeout=1.5) as db:  # type: ignore[arg-type]
            assert await db.fetch("PRAGMA journal_mode") == [("wal",)]
            assert await db.fetchone("PRAGMA synchronous") == (number,)
            assert await db.fetchone("PRAGMA busy_timeout") == (1500,)
            assert await db.fetchone("PRAGMA foreign_keys") == (1,)


@pytest.mark.parametrize(
    "kwargs", [{"synchronous": "SOMETIMES"}, {"busy_timeout": -1.0}, {"busy_timeout": math.nan}]
)
async def test_bad_settings_are_refused(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        async with open_sqlite(tmp_path / "db", **kwargs):  # type: ignore[arg-type]
            pass


async def test_transaction_commits_or_rolls_back_as_a_whole(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_sqlite(tmp_path / "db") as db:
            await db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
            async with db.transaction() as tx:
                assert await tx.executemany("INSERT INTO t VALUES (?)", [("a",), ("b",)]) == 2
            with pytest.raises(ConstraintViolation):
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO t VALUES ('c')")
                    await tx.execute("INSERT INTO t VALUES ('a')")  # duplicate: all undone
            with pytest.raises(DatabaseError, match="finished"):
                await tx.execute("INSERT INTO t VALUES ('d')")
            assert await db.execute("DELETE FROM t WHERE k = 'b'") == 1
            assert await db.fetch("SELECT k FROM t ORDER BY k") == [("a",)]


async def test_cancelled_transaction_is_rolled_back_and_the_database_stays_usable(
    tmp_path: Path,
) -> None:
    with trio.fail_after(10):
        async with open_sqlite(tmp_path / "db") as db:
            await db.execute("CREATE TABLE t (k TEXT)")
            with trio.CancelScope() as scope:
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO t VALUES ('lost')")
                    scope.cancel()
                    await trio.sleep(1)  # cancelled here
                    await tx.execute("INSERT INTO t VALUES ('never')")
            assert scope.cancelled_caught
            await db.execute("INSERT INTO t VALUES ('kept')")
            assert await db.fetch("SELECT k FROM t") == [("kept",)]


async def test_other_tasks_statements_wait_outside_a_running_transaction(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_sqlite(tmp_path / "db") as db:
            await db.execute("CREATE TABLE t (k TEXT)")
            inside = trio.Event()

            async def other_task() -> None:
                await inside.wait()
                await db.execute("INSERT INTO t VALUES ('other')")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(other_task)
                with pytest.raises(RuntimeError, match="undo"):
                    async with db.transaction() as tx:
                        await tx.execute("INSERT INTO t VALUES ('mine')")
                        inside.set()
                        # The other task is now blocked on the database: it must wait for us.
                        await trio.testing.wait_all_tasks_blocked()
                        raise RuntimeError("undo")
            # Had the other insert run inside our transaction, the rollback would have undone it.
            assert await db.fetch("SELECT k FROM t") == [("other",)]


async def test_works_inside_an_already_open_trio_asyncio_loop(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with trio_asyncio.open_loop() as loop, open_sqlite(tmp_path / "db") as db:
            assert trio_asyncio.current_loop.get() is loop
            assert await db.fetch("SELECT 1") == [(1,)]


async def test_an_error_in_the_block_comes_out_as_itself(tmp_path: Path) -> None:
    # The adapter's own asyncio loop runs nurseries; callers must not get their error grouped.
    with trio.fail_after(10):
        with pytest.raises(KeyError):
            async with open_sqlite(tmp_path / "db"):
                raise KeyError("mine")
        with pytest.raises(QueueError, match="closed"):
            async with open_sqlite_queue(tmp_path / "q.db") as queue:
                await queue.aclose()
                await queue.depth()
        with pytest.raises(ExceptionGroup):  # a group the caller raised stays a group
            async with open_sqlite(tmp_path / "db"):
                raise ExceptionGroup("callers", [KeyError("mine")])


async def test_closed_database_refuses_statements(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_sqlite(tmp_path / "db") as db:
            pass
        with pytest.raises(DatabaseError, match="closed"):
            await db.fetch("SELECT 1")
        await db.aclose()  # idempotent


async def test_database_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    with trio.fail_after(10), pytest.raises(DatabaseUnavailable):
        async with open_sqlite(tmp_path / "missing-dir" / "db"):
            pass


# -- the queue's storage ----------------------------------------------------------------------


async def test_write_lock_held_elsewhere_makes_writes_unavailable_but_not_reads(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    path = tmp_path / "queue.db"
    with trio.fail_after(10):
        async with open_sqlite_queue(path, clock=fake_clock, busy_timeout=0.1) as queue:
            await queue.enqueue([msg("a")])
            with write_locked(path):  # another process would look the same
                with pytest.raises(QueueUnavailable):
                    await queue.enqueue([msg("b")])
                with pytest.raises(QueueUnavailable):
                    await queue.lease("c", 1, LONG)
                assert (await queue.depth()).ready == 1  # WAL: readers are not blocked
            await queue.enqueue([msg("b")])
            assert [x.message.id for x in await queue.lease("c", 5, LONG)] == ["a", "b"]


async def test_writes_failing_from_a_refused_write_until_one_commits(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    """What ``/readyz`` and ``smsgw_queue_writable`` read: reads work while writes fail, so
    the queue says so itself; a lease that finds nothing writes nothing and proves nothing."""
    path = tmp_path / "queue.db"
    with trio.fail_after(10):
        async with open_sqlite_queue(path, clock=fake_clock, busy_timeout=0.1) as queue:
            await queue.probe_write()
            assert not queue.writes_failing
            with write_locked(path):
                with pytest.raises(QueueUnavailable):
                    await queue.enqueue([msg("a")])
                assert queue.writes_failing
                with pytest.raises(QueueUnavailable):
                    await queue.probe_write()  # it rewrites the header: refused too
                assert queue.writes_failing
            assert await queue.lease("c", 1, LONG) == []  # nothing to lease: nothing written
            assert queue.writes_failing
            await queue.probe_write()
            assert not queue.writes_failing
            with write_locked(path), pytest.raises(QueueUnavailable):
                await queue.probe_write()
            await queue.enqueue([msg("a")])  # any write that commits clears it
            assert not queue.writes_failing
            assert [x.message.id for x in await queue.lease("c", 1, LONG)] == ["a"]
            async with open_sqlite(path) as db:
                assert await db.fetchone("PRAGMA user_version") == (0,)  # the probe changed nothing


async def test_queue_tables_live_beside_the_gateways_own(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    path = tmp_path / "gateway.db"
    with trio.fail_after(10):
        async with open_sqlite(path) as db:
            await db.execute("CREATE TABLE messages (id TEXT PRIMARY KEY, body TEXT)")
            await db.execute("INSERT INTO messages VALUES ('m1', 'hello')")
            await create_schema(db)
            await create_schema(db)  # idempotent
            queue = SqliteQueue(db, clock=fake_clock)
            await queue.enqueue([msg("q1")])
        async with open_sqlite_queue(path) as again, open_sqlite_queue(path) as twice:
            assert (await again.depth()).ready == 1
            assert (await twice.depth()).ready == 1
        async with open_sqlite(path) as db:
            names = await db.fetch(
                "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
            )
            assert await db.fetch("SELECT * FROM messages") == [("m1", "hello")]
    assert names == [
        ("table", "messages"),
        ("table", "queue_messages"),
        ("index", "queue_messages_dead"),
        ("index", "queue_messages_leased"),
        ("index", "queue_messages_ready"),
    ]


async def test_lease_is_an_indexed_scan_in_service_order(tmp_path: Path) -> None:
    now = time.time()  # wall-clock: the queue below runs on it
    with trio.fail_after(10):
        async with open_sqlite_queue(tmp_path / "q.db") as queue:
            await queue.enqueue([msg(f"m{i}", i % 10) for i in range(200)])
        async with open_sqlite(tmp_path / "q.db") as db:
            await db.execute("ANALYZE")
            lease_plan = await db.fetch("EXPLAIN QUERY PLAN " + LEASE_SQL, ("t", "c", now, now, 10))
            reclaim_plan = await db.fetch("EXPLAIN QUERY PLAN " + RECLAIM_SQL, (now,))
    lease_steps = " | ".join(row[3] for row in lease_plan)
    assert "USING INDEX queue_messages_ready" in lease_steps
    assert "TEMP B-TREE" not in lease_steps  # no sort: the index gives the order
    assert "USING INDEX queue_messages_leased" in " | ".join(row[3] for row in reclaim_plan)


async def test_messages_and_leases_survive_closing_and_reopening(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    path = tmp_path / "q.db"
    clock = fake_clock
    with trio.fail_after(10):
        async with open_sqlite_queue(path, clock=clock) as queue:
            await queue.enqueue([msg("a", 9), msg("b", 1)])
            [lease] = await queue.lease("c", 1, 30.0)
        async with open_sqlite_queue(path, clock=clock) as queue:
            assert [x.message.id for x in await queue.lease("c", 5, LONG)] == ["b"]
            clock.advance(31.0)
            [again] = await queue.lease("c", 5, LONG)
    assert (lease.message.id, again.message.id, again.message.attempts) == ("a", "a", 2)


async def test_default_clock_is_the_wall_clock(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_sqlite_queue(tmp_path / "q.db") as queue:
            await queue.enqueue([msg("a")])
            [lease] = await queue.lease("c", 1, 60.0)
    assert lease.message.enqueued_at == pytest.approx(time.time(), abs=60)  # wall-clock
    assert lease.deadline - lease.message.enqueued_at == pytest.approx(60.0, abs=5)


async def test_bad_arguments_raise_typed_errors_and_change_nothing(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    with trio.fail_after(10):
        async with open_sqlite_queue(tmp_path / "q.db", clock=fake_clock) as queue:
            await queue.enqueue([msg("held")])
            [lease] = await queue.lease("c", 1, LONG)
            for max_items in (0, -1, True, 2.0):
                with pytest.raises(ValueError, match="max_items"):
                    await queue.lease("c", max_items, LONG)  # type: ignore[arg-type]
            for timeout in (0.0, -1.0, math.nan, math.inf):
                with pytest.raises(ValueError, match="visibility_timeout"):
                    await queue.lease("c", 1, timeout)
                with pytest.raises(ValueError, match="visibility_timeout"):
                    await queue.extend(lease, timeout)
            with pytest.raises(ValueError, match="delay"):
                await queue.nack(lease, delay=-1.0, reason="x")
            with pytest.raises(ValueError, match="priority"):
                await queue.replay(["held"], priority=10)
            with pytest.raises(ValueError, match="limit"):
                await queue.dead_letters(limit=-1)
            with pytest.raises(TypeError, match="bytes"):
                await queue.enqueue([NewMessage(id="s", payload="text")])  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="id"):
                await queue.enqueue([NewMessage(id="", payload=b"")])
            with pytest.raises(ValueError, match="not_before"):
                await queue.enqueue([NewMessage(id="n", payload=b"", not_before=math.nan)])
            with pytest.raises(ValueError, match="priority"):
                NewMessage(id="p", payload=b"", priority=10)
            depth = await queue.depth()
            assert (depth.ready, depth.leased, depth.delayed) == (0, 1, 0)
            await queue.ack([lease])


async def test_long_id_lists_and_big_batches(tmp_path: Path, fake_clock: FakeClock) -> None:
    n = 1200  # more than one statement's worth of ids (chunks of 500)
    ids = [f"m{i:04}" for i in range(n)]
    with trio.fail_after(30):
        async with open_sqlite_queue(tmp_path / "q.db", clock=fake_clock) as queue:
            await queue.enqueue([msg(i) for i in ids])
            with pytest.raises(QueueError, match="m0700"):
                await queue.enqueue([msg(f"x{i}") for i in range(n)] + [msg("m0700")])
            leases = await queue.lease("c", 10_000, LONG)
            assert [x.message.id for x in leases] == ids
            await queue.ack(leases[:900])
            assert await queue.purge(ids) == n - 900
            assert (await queue.depth()).leased == 0


async def test_closed_queue_refuses_calls(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_sqlite_queue(tmp_path / "q.db") as queue:
            await queue.aclose()
            with pytest.raises(QueueError, match="closed"):
                await queue.enqueue([msg("a")])
            with pytest.raises(QueueError, match="closed"):
                await queue.depth()
