"""Retention: what is pruned, what is kept, and that it goes in bounded batches."""

from __future__ import annotations

import math
from pathlib import Path

import trio
from fakeclock import START, FakeClock

from smsgw.model import (
    MessageStatus,
    NewInbound,
    NewMessage,
    NewNotification,
    NotificationKind,
    ProviderStatsDelta,
    SmscIdMapping,
    StatusEvent,
)
from smsgw.storage import PruneReport, Store

from .helpers import read

S = MessageStatus
T = 30


def msg(message_id: str) -> NewMessage:
    return NewMessage(id=message_id, source="gw", destination="1", parts=2)


def steps(rows: int, batch: int) -> int:
    """Prune steps for ``rows`` rows: full batches, then one that comes up short."""
    return rows // batch + 1


async def test_prune_deletes_old_final_rows_in_batches(
    store: Store, clock: FakeClock, db_path: Path
) -> None:
    finals = [S.DELIVERED, S.UNDELIVERED, S.EXPIRED, S.REJECTED, S.FAILED, S.DELIVERED, S.FAILED]
    with trio.fail_after(T):
        old = [f"old-final-{k}" for k in range(len(finals))]
        await store.create_messages([msg(m) for m in [*old, "old-pending", "new-final"]])
        await store.map_smsc_ids(
            [SmscIdMapping("p", f"{k}{n}", m, n) for k, m in enumerate(old) for n in (1, 2)]
        )
        await store.record_events(
            [StatusEvent(m, s, "end", at=START + 1) for m, s in zip(old, finals, strict=True)]
        )
        await store.record_events([StatusEvent("old-pending", S.SUBMITTED, "waiting")])
        await store.record_events([StatusEvent("new-final", S.DELIVERED, "end", at=START + 1000)])

        await store.store_inbound(
            [NewInbound(id=f"in{k}", provider="p", source="a", destination="b", payload=b"",
                        received_at=START + (1000 if k == 5 else k)) for k in range(6)]
        )  # fmt: skip

        def note(k: int, at: float) -> NewNotification:
            return NewNotification(NotificationKind.STATUS, "https://h", "{}", f"n{k}", at)

        await store.enqueue_notifications(
            [note(k, START) for k in range(8)] + [note(8, START + 900)]
        )
        pending = await store.pending_notifications(now=START + 900)
        seqs = [n.seq for n in pending]
        await store.complete_notifications(seqs[:4], at=START + 1)  # delivered long ago
        await store.retry_notification(seqs[4], error="gone", next_attempt_at=None)  # dead, old
        await store.retry_notification(seqs[5], error="gone", next_attempt_at=None)
        # seqs[6], seqs[7]: still pending, old; kept whatever their age
        await store.complete_notifications([seqs[8]], at=START + 1000)  # delivered recently

        await store.record_provider_stats(
            [ProviderStatsDelta("p", submitted=1, at=START + 60 * k) for k in range(-4, 20)]
        )

        before = store.writer_stats()
        report = await store.prune(START + 500, batch_size=3)
        after = store.writer_stats()
        again = await store.prune(START + 500, batch_size=3)

    minute_cutoff = START + 500
    old_minutes = sum(1 for k in range(-4, 20) if int((START + 60 * k) // 60) * 60 < minute_cutoff)
    assert report == PruneReport(messages=7, inbound=5, notifications=6, provider_stats=old_minutes)
    assert again == PruneReport()

    # Each step is its own write and transaction, deleting at most batch_size rows.
    expected_steps = steps(7, 3) + steps(5, 3) + steps(4, 3) + steps(2, 3) + steps(old_minutes, 3)
    assert after.requests - before.requests == expected_steps
    assert after.transactions - before.transactions == expected_steps
    assert expected_steps >= math.ceil((7 + 5 + 6 + old_minutes) / 3)

    assert read(db_path, "SELECT id FROM messages ORDER BY id") == [
        ("new-final",),
        ("old-pending",),
    ]
    for table in ("parts", "events", "smsc_ids"):
        rows = read(db_path, f"SELECT count(*) FROM {table} WHERE message_id LIKE 'old-final%'")
        assert rows == [(0,)], table
    assert read(db_path, "SELECT count(*) FROM parts") == [(4,)]
    assert read(db_path, "SELECT id FROM inbound") == [("in5",)]
    assert read(db_path, "SELECT subject, state FROM notifications ORDER BY seq") == [
        ("n6", "pending"),
        ("n7", "pending"),
        ("n8", "delivered"),
    ]
    assert all(m >= minute_cutoff for (m,) in read(db_path, "SELECT minute FROM provider_stats"))
