"""StatusBatcher: the status writes of concurrent tasks merged into one store call, each task
getting back exactly its own result or error (a real store on a SQLite file)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from smpp_codec.errors import MessageIdError
from smsgw.model import (
    MessageStatus,
    NewMessage,
    NewNotification,
    NotificationKind,
    SmscIdMapping,
    StatusChange,
    StatusEvent,
)
from smsgw.status_batch import StatusBatcher
from smsgw.storage import Store, UnknownMessage
from smsgw.storage.writes import RecordResult


def _message(n: int) -> NewMessage:
    return NewMessage(id=f"m{n}", source="ACME", destination="+4915112345678", parts=1)


def _submitted(n: int) -> StatusEvent:
    return StatusEvent(f"m{n}", MessageStatus.SUBMITTED, "accepted", part_number=1, provider="p")


def _notification(change: StatusChange) -> list[NewNotification]:
    return [
        NewNotification(
            kind=NotificationKind.STATUS,
            target=f"http://127.0.0.1/{change.message_id}",
            body=change.message_id,
            subject=change.message_id,
        )
    ]


async def _write_all(
    batcher: StatusBatcher, writes: Sequence[tuple[int, list[SmscIdMapping], list[StatusEvent]]]
) -> dict[int, RecordResult | Exception]:
    """Every write from its own task, all handed over in the same scheduling round."""
    results: dict[int, RecordResult | Exception] = {}
    notified: dict[int, list[str]] = {}

    async def one(n: int, mappings: list[SmscIdMapping], events: list[StatusEvent]) -> None:
        def notify(change: StatusChange) -> list[NewNotification]:
            notified.setdefault(n, []).append(change.message_id)
            return _notification(change)

        try:
            results[n] = await batcher.write(mappings, events, notify=notify)
        except Exception as exc:  # noqa: BLE001 -- the test looks at which write got what
            results[n] = exc

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(batcher.run)
            async with trio.open_nursery() as writers:
                for n, mappings, events in writes:
                    writers.start_soon(one, n, mappings, events)
            nursery.cancel_scope.cancel()
    for n, ids in notified.items():
        assert ids == [f"m{n}"], "each write's notify hears of its own message only"
    return results


async def test_concurrent_writes_share_one_store_call(store: Store) -> None:
    await store.create_messages([_message(n) for n in range(20)])
    before = store.writer_stats().requests
    results = await _write_all(
        StatusBatcher(store),
        [(n, [SmscIdMapping("p", f"{n + 1:x}", f"m{n}", 1)], [_submitted(n)]) for n in range(20)],
    )
    # One map_and_record call is two writer requests (mappings, events); 20 writes handed over
    # in one round become one call, plus at most one more for stragglers.
    assert store.writer_stats().requests - before <= 4
    for n in range(20):
        result = results[n]
        assert isinstance(result, RecordResult)
        assert [c.message_id for c in result.changes] == [f"m{n}"]
        assert result.changes[0].new is MessageStatus.SUBMITTED
    for n in range(20):
        part = await store.find_part_by_smsc_id("p", f"{n + 1:x}")
        assert part is not None and part.message_id == f"m{n}"
    # Each change's notification (from its own write's notify) was queued with it.
    assert sum((await store.counts()).notifications.values()) == 20


async def test_unknown_message_fails_only_its_own_write(store: Store) -> None:
    await store.create_messages([_message(n) for n in range(5)])
    writes = [(n, [], [_submitted(n)]) for n in range(5)]
    writes.append((99, [], [_submitted(99)]))  # no such message
    results = await _write_all(StatusBatcher(store), writes)
    assert isinstance(results[99], UnknownMessage)
    for n in range(5):
        result = results[n]
        assert isinstance(result, RecordResult), result
        assert [c.new for c in result.changes] == [MessageStatus.SUBMITTED]
    detail = await store.get_message("m3")
    assert detail is not None and detail.message.status is MessageStatus.SUBMITTED


async def test_unusable_smsc_id_fails_only_its_own_write(store: Store) -> None:
    await store.create_messages([_message(n) for n in range(3)])
    writes = [(n, [SmscIdMapping("p", f"{n + 1:x}", f"m{n}", 1)], [_submitted(n)]) for n in (0, 1)]
    writes.append((2, [SmscIdMapping("p", "", "m2", 1)], [_submitted(2)]))  # an empty id
    results = await _write_all(StatusBatcher(store), writes)
    assert isinstance(results[2], MessageIdError)
    for n in (0, 1):
        assert isinstance(results[n], RecordResult)
    detail = await store.get_message("m1")
    assert detail is not None and detail.message.status is MessageStatus.SUBMITTED


async def test_a_lone_write_goes_at_once(store: Store) -> None:
    await store.create_messages([_message(0)])
    batcher = StatusBatcher(store)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(batcher.run)
            result = await batcher.write([], [_submitted(0)])
            nursery.cancel_scope.cancel()
    assert [c.new for c in result.changes] == [MessageStatus.SUBMITTED]


@pytest.mark.parametrize("count", [1, 3])
async def test_handed_over_is_called_once_per_write(store: Store, count: int) -> None:
    await store.create_messages([_message(n) for n in range(count)])
    batcher = StatusBatcher(store)
    calls: list[int] = []

    async def one(n: int) -> None:
        await batcher.write(
            [SmscIdMapping("p", f"{n + 1:x}", f"m{n}", 1)],
            [_submitted(n)],
            handed_over=lambda: calls.append(n),
        )

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(batcher.run)
            async with trio.open_nursery() as writers:
                for n in range(count):
                    writers.start_soon(one, n)
            nursery.cancel_scope.cancel()
    assert sorted(calls) == list(range(count))
