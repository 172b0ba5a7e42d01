"""The group-commit writer: batching, durability on return, failures per request and per batch.

Batching is made deterministic by holding the store's connection in a transaction of our own:
the writer cannot commit meanwhile, so every write sent then waits, and all of them go out in
the transactions that follow, which we count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from fakeclock import FakeClock
from sqlite_lock import write_locked

from smsgw.adapters.sqlite import open_sqlite
from smsgw.model import (
    MessageStatus,
    NewMessage,
    NewNotification,
    NotificationKind,
    StatusChange,
    StatusEvent,
)
from smsgw.storage import (
    DuplicateId,
    StoreClosed,
    StoreUnavailable,
    UnknownMessage,
    open_store,
    run_store,
)
from smsgw.storage.writer import QUIET_GAP, Writer

from .helpers import read


def msg(message_id: str) -> NewMessage:
    return NewMessage(id=message_id, source="gw", destination="4912345")


def count(path: Path, message_id: str) -> int:
    return int(read(path, "SELECT count(*) FROM messages WHERE id = ?", (message_id,))[0][0])


async def test_writes_waiting_during_a_commit_share_one_transaction(
    db_path: Path, clock: FakeClock
) -> None:
    returned: list[int] = []

    with trio.fail_after(30):
        async with open_sqlite(db_path) as db, run_store(db, clock=clock) as store:

            async def create(i: int) -> None:
                await store.create_messages([msg(f"m{i}")])
                # Committed when it returns: another connection sees it at once.
                assert count(db_path, f"m{i}") == 1
                returned.append(i)

            # Our transaction holds the connection: the writer cannot begin its own.
            async with trio.open_nursery() as nursery, db.transaction():
                for i in range(100):
                    nursery.start_soon(create, i)
                await trio.testing.wait_all_tasks_blocked()
                # Nobody returned before the commit, and nothing is visible.
                assert returned == []
                assert read(db_path, "SELECT count(*) FROM messages") == [(0,)]
            stats = store.writer_stats()

    assert sorted(returned) == list(range(100))
    assert stats.requests == 100 and stats.failed_requests == 0
    # The first write's batch, then everything that waited meanwhile, in one transaction.
    assert stats.transactions == stats.batches <= 2
    assert stats.largest_batch >= 50


async def test_batches_are_capped_at_max_batch(db_path: Path, clock: FakeClock) -> None:
    with trio.fail_after(30):
        async with open_sqlite(db_path) as db, run_store(db, clock=clock, max_batch=10) as store:
            async with trio.open_nursery() as nursery, db.transaction():
                for i in range(45):
                    nursery.start_soon(store.create_messages, [msg(f"m{i}")])
                await trio.testing.wait_all_tasks_blocked()
            stats = store.writer_stats()
    assert read(db_path, "SELECT count(*) FROM messages") == [(45,)]
    assert stats.largest_batch == 10
    assert 5 <= stats.transactions == stats.batches <= 1 + math.ceil(44 / 10)


async def test_sequential_writes_each_commit(db_path: Path, clock: FakeClock) -> None:
    with trio.fail_after(30):
        async with open_store(db_path, clock=clock) as store:
            for i in range(5):
                await store.create_messages([msg(f"m{i}")])
                assert count(db_path, f"m{i}") == 1
            assert store.writer_stats().transactions == 5


async def test_a_bad_request_fails_alone_in_its_batch(db_path: Path, clock: FakeClock) -> None:
    outcomes: dict[str, str] = {}

    with trio.fail_after(30):
        async with open_sqlite(db_path) as db, run_store(db, clock=clock) as store:
            await store.create_messages([msg("taken")])

            async def create(name: str, ids: list[str]) -> None:
                try:
                    await store.create_messages([msg(i) for i in ids])
                except DuplicateId as exc:
                    outcomes[name] = f"duplicate: {exc}"
                else:
                    outcomes[name] = "ok"

            async with trio.open_nursery() as nursery, db.transaction():
                for i in range(5):
                    nursery.start_soon(create, f"good{i}", [f"g{i}"])
                # A write of two messages, one of which exists: all or nothing.
                nursery.start_soon(create, "bad", ["fresh", "taken"])
                await trio.testing.wait_all_tasks_blocked()
            stats = store.writer_stats()

    assert outcomes.pop("bad").startswith("duplicate: a message with one of these ids")
    assert outcomes == {f"good{i}": "ok" for i in range(5)}
    assert count(db_path, "fresh") == 0
    assert all(count(db_path, f"g{i}") == 1 for i in range(5))
    assert stats.retried_batches == 1 and stats.failed_requests == 1


async def test_a_request_the_code_can_refuse_fails_without_a_retry(
    db_path: Path, clock: FakeClock
) -> None:
    with trio.fail_after(30):
        async with open_sqlite(db_path) as db, run_store(db, clock=clock) as store:
            await store.create_messages([msg("m")])
            errors: list[Exception] = []

            async def record(message_id: str) -> None:
                try:
                    await store.record_events([StatusEvent(message_id, MessageStatus.FAILED, "x")])
                except UnknownMessage as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery, db.transaction():
                nursery.start_soon(record, "m")
                nursery.start_soon(record, "nope")
                await trio.testing.wait_all_tasks_blocked()
            stats = store.writer_stats()
            detail = await store.get_message("m")
    assert [str(e) for e in errors] == ["no message 'nope'"]
    assert detail is not None and detail.message.status is MessageStatus.FAILED
    assert stats.retried_batches == 0


async def test_a_failing_notify_callback_fails_only_its_request(
    db_path: Path, clock: FakeClock
) -> None:
    def bad_notify(change: StatusChange) -> list[NewNotification]:
        raise RuntimeError("webhook body bug")

    def good_notify(change: StatusChange) -> list[NewNotification]:
        return [NewNotification(NotificationKind.STATUS, "http://hook", change.new.value)]

    errors: list[Exception] = []
    with trio.fail_after(30):
        async with open_sqlite(db_path) as db, run_store(db, clock=clock) as store:
            await store.create_messages([msg("a"), msg("b")])

            async def record(message_id: str, notify: object) -> None:
                try:
                    await store.record_events(
                        [StatusEvent(message_id, MessageStatus.FAILED, "x")],
                        notify=notify,  # type: ignore[arg-type]
                    )
                except RuntimeError as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery, db.transaction():
                nursery.start_soon(record, "a", bad_notify)
                nursery.start_soon(record, "b", good_notify)
                await trio.testing.wait_all_tasks_blocked()
    assert [str(e) for e in errors] == ["webhook body bug"]
    assert read(db_path, "SELECT id, status FROM messages ORDER BY id") == [
        ("a", "queued"),
        ("b", "failed"),
    ]
    assert read(db_path, "SELECT body FROM notifications") == [("failed",)]


async def test_database_unavailable_fails_every_request_of_the_batch(
    db_path: Path, clock: FakeClock
) -> None:
    errors: list[Exception] = []
    with trio.fail_after(30):
        async with open_store(db_path, clock=clock, busy_timeout=0.05) as store:

            async def create(i: int) -> None:
                try:
                    await store.create_messages([msg(f"m{i}")])
                except StoreUnavailable as exc:
                    errors.append(exc)

            with write_locked(db_path):  # another process holds the write lock
                async with trio.open_nursery() as nursery:
                    for i in range(5):
                        nursery.start_soon(create, i)
            assert len(errors) == 5
            assert all("database unavailable" in str(e) for e in errors)
            assert read(db_path, "SELECT count(*) FROM messages") == [(0,)]
            # The lock is gone: the store works again.
            await store.create_messages([msg("after")])
    assert count(db_path, "after") == 1


async def test_writes_after_close_are_refused(db_path: Path, clock: FakeClock) -> None:
    with trio.fail_after(30):
        async with open_store(db_path, clock=clock) as store:
            pass
        with pytest.raises(StoreClosed):
            await store.create_messages([msg("late")])
        with pytest.raises(StoreClosed):
            await store.get_message("late")
        with pytest.raises(StoreClosed):
            await store.counts()


async def test_cancelled_store_fails_the_writes_it_did_not_commit(
    db_path: Path, clock: FakeClock
) -> None:
    errors: list[Exception] = []

    async def create(store: object) -> None:
        try:
            await store.create_messages([msg("x")])  # type: ignore[attr-defined]
        except StoreClosed as exc:
            errors.append(exc)

    with trio.fail_after(30):
        async with open_sqlite(db_path) as db, trio.open_nursery() as outer:
            with trio.CancelScope() as scope:
                async with run_store(db, clock=clock) as store, db.transaction():
                    outer.start_soon(create, store)
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()
    assert [str(e) for e in errors] == ["the store closed before this write ended"]
    assert count(db_path, "x") == 0


async def test_writes_sent_before_close_are_committed(db_path: Path, clock: FakeClock) -> None:
    done: list[str] = []
    with trio.fail_after(30):
        async with (
            open_sqlite(db_path) as db,
            trio.open_nursery() as nursery,
            run_store(db, clock=clock) as store,
            db.transaction(),
        ):

            async def create(i: int) -> None:
                await store.create_messages([msg(f"m{i}")])
                done.append(f"m{i}")

            for i in range(20):
                nursery.start_soon(create, i)
            await trio.testing.wait_all_tasks_blocked()
            # Every write is handed over and none committed when the store's block ends
            # (right after our transaction ends): the close waits for all of them.
            assert done == []
    assert len(done) == 20
    assert read(db_path, "SELECT count(*) FROM messages") == [(20,)]


async def test_writes_failing_is_set_by_an_unavailable_database_and_cleared_by_a_commit(
    db_path: Path, clock: FakeClock
) -> None:
    """``writes_failing`` (what ``/readyz`` reads): false until a transaction fails as
    unavailable, then true until one commits; ``probe_write`` is such a transaction, and
    changes no row."""
    with trio.fail_after(30):
        async with open_store(db_path, clock=clock, busy_timeout=0.05) as store:
            await store.create_messages([msg("m0")])
            assert not store.writes_failing
            before = read(db_path, "SELECT * FROM schema_version ORDER BY 1, 2")
            with write_locked(db_path):  # another process holds the write lock
                with pytest.raises(StoreUnavailable):
                    await store.create_messages([msg("m1")])
                assert store.writes_failing
                with pytest.raises(StoreUnavailable):
                    await store.probe_write()
                assert store.writes_failing
            await store.probe_write()
            assert not store.writes_failing
            assert read(db_path, "SELECT * FROM schema_version ORDER BY 1, 2") == before
            assert read(db_path, "SELECT id FROM messages") == [("m0",)]


async def test_an_unusable_path_is_reported(tmp_path: Path) -> None:
    with trio.fail_after(30), pytest.raises(StoreUnavailable):
        async with open_store(tmp_path / "no such dir" / "db.sqlite3"):
            pass


def test_writer_settings_are_checked() -> None:
    for kwargs in (
        {"commit_interval": -1.0, "max_batch": 1},
        {"commit_interval": 0, "max_batch": 0},
    ):
        with pytest.raises(ValueError):
            Writer(None, **kwargs)  # type: ignore[arg-type]


async def test_under_load_writes_that_trickle_in_join_the_batch(
    db_path: Path, clock: FakeClock, mock_clock: trio.testing.MockClock
) -> None:
    # Trio's clock stands still unless the test moves it, so "within QUIET_GAP" is exact (and
    # a fail_after could not fire: waits are bounded by a count of scheduling rounds instead).
    async with open_sqlite(db_path) as db, run_store(db, clock=clock) as store:
        async with trio.open_nursery() as nursery:
            # The writer takes m0, then waits for the database while m1..m3 queue up.
            async with db.transaction():
                nursery.start_soon(store.create_messages, [msg("m0")])
                await trio.testing.wait_all_tasks_blocked()
                for i in range(1, 4):
                    nursery.start_soon(store.create_messages, [msg(f"m{i}")])
                await trio.testing.wait_all_tasks_blocked()
            # m0 commits; m1..m3 were waiting (busy): their batch waits for more.
            await wait_for(lambda: store.writer_stats().transactions == 1)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(store.create_messages, [msg("m4")])
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(QUIET_GAP)  # the quiet gap ends the batch
        stats = store.writer_stats()
    assert read(db_path, "SELECT count(*) FROM messages") == [(5,)]
    # m0 alone, then m1..m4 together: m4 came within the gap.
    assert (stats.transactions, stats.largest_batch) == (2, 4)


async def wait_for(predicate: Callable[[], bool], rounds: int = 1_000_000) -> None:
    for _ in range(rounds):
        if predicate():
            return
        await trio.sleep(0)  # the writer's database calls need scheduling rounds
    raise AssertionError(f"not after {rounds} scheduling rounds: {predicate}")
