"""Every write and read of the Store, on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from fakeclock import START, FakeClock

from smpp_codec.message_id import MessageIdError, MessageIdFormat
from smsgw.correlation import SmscKey, receipt_key
from smsgw.model import (
    Event,
    MessageStatus,
    NewInbound,
    NewMessage,
    NewNotification,
    NotificationKind,
    NotificationState,
    Part,
    PartRef,
    ProviderStats,
    ProviderStatsDelta,
    SmscIdMapping,
    StatusChange,
    StatusEvent,
)
from smsgw.storage import (
    DuplicateId,
    InvalidCursor,
    MessageFilter,
    MessageStateError,
    Store,
    UnknownMessage,
)
from smsgw.storage.store import MAX_DUE

from .helpers import read

S = MessageStatus
T = 20  # seconds: the bound on every test


def msg(message_id: str, **kwargs: object) -> NewMessage:
    return NewMessage(id=message_id, source="gw", destination="4912345", **kwargs)  # type: ignore[arg-type]


def ev(message_id: str, status: MessageStatus, reason: str = "r", **kwargs: object) -> StatusEvent:
    return StatusEvent(message_id, status, reason, **kwargs)  # type: ignore[arg-type]


async def test_create_messages(store: Store, clock: FakeClock) -> None:
    with trio.fail_after(T):
        await store.create_messages(
            [
                msg("a", parts=2, client="acme", client_ref="r1", text="hi", expires_at=START + 60),
                msg("b", schedule_at=START + 3600, created_at=START - 1),
                msg("c", schedule_at=START - 10),  # already due
            ]
        )
        a = await store.get_message("a")
        b = await store.get_message("b")
        c = await store.get_message("c")
    assert a is not None and b is not None and c is not None
    m = a.message
    assert (m.status, m.parts, m.client, m.client_ref, m.text) == (S.QUEUED, 2, "acme", "r1", "hi")
    assert (m.created_at, m.updated_at, m.reason, m.expires_at) == (
        START,
        START,
        "accepted",
        START + 60,
    )
    assert (m.source, m.destination, m.provider, m.schedule_at) == ("gw", "4912345", None, None)
    assert a.parts == tuple(Part("a", n, S.QUEUED, START, "accepted", None, None) for n in (1, 2))
    assert [(e.part_number, e.status, e.applied) for e in a.events] == [
        (1, S.QUEUED, True),
        (2, S.QUEUED, True),
        (None, S.QUEUED, True),
    ]
    assert b.message.status is S.SCHEDULED and b.message.created_at == START - 1
    assert c.message.status is S.QUEUED
    assert await store.get_message("nope") is None


async def test_create_messages_refuses_bad_input(store: Store) -> None:
    with trio.fail_after(T):
        with pytest.raises(DuplicateId, match=r"\['x'\]"):
            await store.create_messages([msg("x"), msg("y"), msg("x")])
        with pytest.raises(TypeError):
            await store.create_messages([{"id": "x"}])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            await store.create_messages(msg("x"))  # type: ignore[arg-type]
        await store.create_messages([])
        assert (await store.counts()).messages[S.QUEUED] == 0


async def test_multipart_lifecycle_and_history(store: Store, clock: FakeClock) -> None:
    with trio.fail_after(T):
        await store.create_messages([msg("m", parts=2)])
        clock.advance(1)
        await store.record_events([ev("m", S.SUBMITTING, "sending", provider="p1")])
        clock.advance(1)
        r1 = await store.record_events([ev("m", S.SUBMITTED, "resp 1", part_number=1)])
        r2 = await store.record_events(
            [ev("m", S.SUBMITTED, "resp 2", part_number=2, at=START + 2.5)]
        )
        clock.advance(10)
        await store.record_events([ev("m", S.DELIVERED, "DELIVRD", part_number=2)])
        mid = await store.get_message("m")
        last = await store.record_events([ev("m", S.UNDELIVERED, "UNDELIV", part_number=1)])
        detail = await store.get_message("m")
    assert r1.changes == () and r1.refused == ()
    assert r2.changes == (
        StatusChange("m", None, None, S.SUBMITTING, S.SUBMITTED, "resp 2", START + 2.5),
    )
    assert mid is not None and mid.message.status is S.SUBMITTED  # part 1 still pending
    assert [c.new for c in last.changes] == [S.UNDELIVERED]
    assert detail is not None
    assert detail.message.status is S.UNDELIVERED and detail.message.provider == "p1"
    assert detail.message.updated_at == START + 12 and detail.message.reason == "UNDELIV"
    assert [(p.status, p.provider, p.reason) for p in detail.parts] == [
        (S.UNDELIVERED, "p1", "UNDELIV"),
        (S.DELIVERED, "p1", "DELIVRD"),
    ]
    history = [(e.part_number, e.status.value, e.at - START) for e in detail.events]
    assert history == [
        (1, "queued", 0), (2, "queued", 0), (None, "queued", 0),
        (1, "submitting", 1), (2, "submitting", 1), (None, "submitting", 1),
        (1, "submitted", 2),
        (2, "submitted", 2.5), (None, "submitted", 2.5),
        (2, "delivered", 12),
        (1, "undelivered", 12), (None, "undelivered", 12),
    ]  # fmt: skip
    assert [e.seq for e in detail.events] == sorted(e.seq for e in detail.events)


async def test_receipt_before_submitted_is_not_undone(store: Store) -> None:
    with trio.fail_after(T):
        await store.create_messages([msg("m")])
        await store.record_events([ev("m", S.SUBMITTING)])
        await store.record_events([ev("m", S.DELIVERED, "early receipt", part_number=1)])
        late = ev("m", S.SUBMITTED, "resp processed late", part_number=1)
        result = await store.record_events([late])
        detail = await store.get_message("m")
    assert result.refused == (late,) and result.changes == ()
    assert detail is not None and detail.message.status is S.DELIVERED
    assert detail.events[-1] == Event(
        detail.events[-1].seq, "m", 1, S.SUBMITTED, "resp processed late", START, False
    )


async def test_record_events_is_all_or_nothing(store: Store) -> None:
    with trio.fail_after(T):
        await store.create_messages([msg("m")])
        with pytest.raises(UnknownMessage, match="no message 'ghost'"):
            await store.record_events([ev("m", S.FAILED), ev("ghost", S.FAILED)])
        with pytest.raises(UnknownMessage, match="no part 2"):
            await store.record_events([ev("m", S.FAILED), ev("m", S.SUBMITTED, part_number=2)])
        detail = await store.get_message("m")
        assert await store.record_events([]) == (await store.record_events([]))
    assert detail is not None and detail.message.status is S.QUEUED and len(detail.events) == 2


async def test_record_events_notify_enqueues_in_the_same_write(store: Store) -> None:
    def notify(change: StatusChange) -> list[NewNotification]:
        body = json.dumps({"id": change.message_id, "status": change.new.value})
        return [
            NewNotification(NotificationKind.STATUS, "https://client/hook", body, change.message_id)
        ]

    with trio.fail_after(T):
        await store.create_messages([msg("m", parts=2, client_ref="ref")])
        # Two events, one change of the aggregate (part 1 alone does not change it).
        await store.record_events(
            [
                ev("m", S.SUBMITTED, part_number=1),
                ev("m", S.SUBMITTED, part_number=2, at=START + 5),
            ],
            notify=notify,
        )
        pending = await store.pending_notifications(now=START + 5)
        with pytest.raises(TypeError):
            await store.record_events([ev("m", S.FAILED)], notify="nope")  # type: ignore[arg-type]
    assert [(n.kind, n.subject, json.loads(n.body), n.created_at) for n in pending] == [
        (NotificationKind.STATUS, "m", {"id": "m", "status": "submitted"}, START + 5)
    ]


async def test_pending_notifications_leave_out_those_in_flight(store: Store) -> None:
    """The deliverer reads due rows past those it has in flight, however many (more than a
    page: a busy target's batches), and asks for up to MAX_DUE at once."""
    hooks = [
        NewNotification(NotificationKind.STATUS, "https://client/hook", "{}", f"m{i}")
        for i in range(1500)
    ]
    with trio.fail_after(T):
        await store.enqueue_notifications(hooks)
        first = await store.pending_notifications(1200, now=START)
        rest = await store.pending_notifications(
            MAX_DUE, now=START, excluding=[n.seq for n in first]
        )
        some = await store.pending_notifications(2, now=START, excluding=[first[0].seq])
        for limit in (0, MAX_DUE + 1):
            with pytest.raises(ValueError, match="limit"):
                await store.pending_notifications(limit)
        with pytest.raises(TypeError):
            await store.pending_notifications(excluding=["1"])  # type: ignore[list-item]
    assert len(first) == 1200 and len(rest) == 300
    assert {n.seq for n in first}.isdisjoint(n.seq for n in rest)
    assert [n.subject for n in first + rest] == [f"m{i}" for i in range(1500)]
    assert [n.seq for n in some] == [first[1].seq, first[2].seq]


async def test_set_parts(store: Store, clock: FakeClock) -> None:
    with trio.fail_after(T):
        await store.create_messages([msg("m"), msg("sent")])
        await store.record_events([ev("m", S.SUBMITTING)])
        clock.advance(1)
        await store.set_parts("m", 3, reason="split for p2 (UDH)")
        detail = await store.get_message("m")
        await store.record_events([ev("sent", S.SUBMITTED)])
        with pytest.raises(MessageStateError, match="cannot be re-split"):
            await store.set_parts("sent", 2, reason="x")
        with pytest.raises(UnknownMessage):
            await store.set_parts("ghost", 2, reason="x")
        with pytest.raises(ValueError):
            await store.set_parts("m", 0, reason="x")
    assert detail is not None
    assert detail.message.parts == 3 and detail.message.status is S.SUBMITTING
    assert [(p.part_number, p.status, p.reason) for p in detail.parts] == [
        (n, S.SUBMITTING, "split for p2 (UDH)") for n in (1, 2, 3)
    ]
    assert [(e.part_number, e.at) for e in detail.events[-3:]] == [
        (n, START + 1) for n in (1, 2, 3)
    ]


async def test_map_smsc_ids_and_find_parts(store: Store, db_path: Path) -> None:
    vonage = MessageIdFormat.HEX_RESP_DECIMAL_RECEIPT
    with trio.fail_after(T):
        await store.create_messages([msg("m", parts=2), msg("n")])
        await store.map_smsc_ids(
            [
                SmscIdMapping("p1", "0A1B2C", "m", 1, id_format=vonage),
                SmscIdMapping("p1", "0A1B2D", "m", 2, id_format=vonage),
                SmscIdMapping("p2", "0A1B2C", "n", 1),  # same raw id, another provider
            ]
        )
        by_receipt = await store.find_part_by_smsc_id("p1", "00662316", vonage)
        other = await store.find_part_by_smsc_id("p2", "0a1b2c")
        # The receipt side is read as decimal: the hex spelling is not a decimal id.
        missing = await store.find_part_by_smsc_id("p1", "0A1B2C", vonage)
        found = await store.find_parts(
            [receipt_key("p1", "662317", vonage), SmscKey("p1", "1"), SmscKey("p2", "0a1b2c")]
        )
        detail = await store.get_message("m")
    assert by_receipt == PartRef("m", 1)
    assert other == PartRef("n", 1)
    assert missing is None
    assert found == {
        SmscKey("p1", "662317"): PartRef("m", 2),
        SmscKey("p2", "0a1b2c"): PartRef("n", 1),
    }
    assert detail is not None and [(p.smsc_id, p.provider) for p in detail.parts] == [
        ("0A1B2C", "p1"),
        ("0A1B2D", "p1"),
    ]
    assert read(db_path, "SELECT raw_smsc_id, smsc_id FROM smsc_ids WHERE provider = 'p1'") == [
        ("0A1B2C", "662316"),
        ("0A1B2D", "662317"),
    ]


async def test_remapping_an_smsc_id_points_at_the_newest_part(store: Store) -> None:
    with trio.fail_after(T):
        await store.create_messages([msg("old"), msg("new")])
        await store.map_smsc_ids([SmscIdMapping("p", "42", "old", 1)])
        await store.map_smsc_ids([SmscIdMapping("p", "0042", "new", 1)])
        assert await store.find_part_by_smsc_id("p", "42") == PartRef("new", 1)


async def test_map_smsc_ids_refuses_unknown_parts_and_bad_ids(store: Store) -> None:
    with trio.fail_after(T):
        await store.create_messages([msg("m")])
        with pytest.raises(UnknownMessage, match="no such message part"):
            await store.map_smsc_ids(
                [SmscIdMapping("p", "1", "m", 1), SmscIdMapping("p", "2", "m", 2)]
            )
        assert await store.find_part_by_smsc_id("p", "1") is None  # all or nothing
        with pytest.raises(MessageIdError):
            await store.map_smsc_ids([SmscIdMapping("p", "  ", "m", 1)])


async def test_map_and_record_share_one_commit(store: Store, clock: FakeClock) -> None:
    notified: list[StatusChange] = []

    def notify(change: StatusChange) -> list[NewNotification]:
        notified.append(change)
        return []

    with trio.fail_after(T):
        await store.create_messages([msg("m", callback_url="https://c/cb")])
        before = store.writer_stats().transactions
        result = await store.map_and_record(
            [SmscIdMapping("p", "77", "m", 1)],
            [ev("m", S.SUBMITTED, "accepted", part_number=1, provider="p")],
            notify=notify,
        )
        transactions = store.writer_stats().transactions - before
        part = await store.find_part_by_smsc_id("p", "77")
        detail = await store.get_message("m")
        # An unusable id is refused before anything is written.
        with pytest.raises(MessageIdError):
            await store.map_and_record(
                [SmscIdMapping("p", " ", "m", 1)], [ev("m", S.DELIVERED, part_number=1)]
            )
        after = await store.get_message("m")
    assert transactions == 1
    assert part == PartRef("m", 1)
    assert [(c.old, c.new, c.callback_url) for c in result.changes] == [
        (S.QUEUED, S.SUBMITTED, "https://c/cb")
    ]
    assert notified == list(result.changes)
    assert detail is not None and detail.message.status is S.SUBMITTED
    assert after is not None and after.message.status is S.SUBMITTED


async def test_inbound(store: Store, clock: FakeClock) -> None:
    hook = NewNotification(NotificationKind.INBOUND, "https://client/mo", '{"id": "i1"}', "i1")
    with trio.fail_after(T):
        await store.store_inbound(
            [
                NewInbound(
                    id="i1", provider="p", source="4917", destination="gw", payload=b"hi",
                    text="hi", parts=1,
                )
            ],
            [hook],
        )  # fmt: skip
        clock.advance(1)
        await store.store_inbound(
            [NewInbound(id="i2", provider="p", source="4917", destination="gw",
                        payload=b"\x00\x01", data_coding=4, parts=2)]
        )  # fmt: skip
        page = await store.list_inbound()
        pending = await store.pending_notifications()
        with pytest.raises(DuplicateId, match="i1"):
            await store.store_inbound(
                [NewInbound(id="i1", provider="p", source="a", destination="b", payload=b"")]
            )
        counts = await store.counts()
        outbox = await store.notification_counts()
    assert page.next_cursor is None
    assert [
        (m.id, m.payload, m.text, m.data_coding, m.parts, m.received_at) for m in page.items
    ] == [
        ("i2", b"\x00\x01", None, 4, 2, START + 1),
        ("i1", b"hi", "hi", 0, 1, START),
    ]
    assert [(n.kind, n.target, n.subject) for n in pending] == [
        (NotificationKind.INBOUND, "https://client/mo", "i1")
    ]
    assert counts.inbound == 2
    assert outbox == counts.notifications == {
        NotificationState.PENDING: 1,
        NotificationState.DELIVERED: 0,
        NotificationState.DEAD: 0,
    }


async def test_notification_outbox(store: Store, clock: FakeClock) -> None:
    def note(n: int) -> NewNotification:
        return NewNotification(NotificationKind.STATUS, f"https://h/{n}", "{}")

    with trio.fail_after(T):
        await store.enqueue_notifications([note(1), note(2), note(3)])
        first = await store.pending_notifications(limit=2)
        assert [n.target for n in first] == ["https://h/1", "https://h/2"]
        assert all(n.state is NotificationState.PENDING and n.attempts == 0 for n in first)
        await store.complete_notifications([first[0].seq], at=START + 1)
        await store.retry_notification(first[1].seq, error="HTTP 503", next_attempt_at=START + 60)
        third = (await store.pending_notifications())[0]
        await store.retry_notification(third.seq, error="HTTP 410", next_attempt_at=None)
        now_due = await store.pending_notifications()
        later_due = await store.pending_notifications(now=START + 60)
        counts = await store.counts()
        # Completing one that is no longer pending changes nothing.
        await store.complete_notifications([third.seq])
        counts_after = await store.counts()
    assert now_due == []
    assert [(n.target, n.attempts, n.last_error) for n in later_due] == [
        ("https://h/2", 1, "HTTP 503")
    ]
    assert counts.notifications == {
        NotificationState.PENDING: 1,
        NotificationState.DELIVERED: 1,
        NotificationState.DEAD: 1,
    }
    assert counts_after == counts


async def test_deferring_notifications_moves_them_later_without_an_attempt(
    store: Store, clock: FakeClock
) -> None:
    def note(n: int) -> NewNotification:
        return NewNotification(NotificationKind.STATUS, f"https://h/{n}", "{}")

    with trio.fail_after(T):
        await store.enqueue_notifications([note(1), note(2)])
        one, two = await store.pending_notifications()
        await store.retry_notification(two.seq, error="HTTP 503", next_attempt_at=START + 100)
        await store.defer_notifications([one.seq, two.seq], until=START + 30)
        due_at_29 = await store.pending_notifications(now=START + 29)
        due_at_30 = await store.pending_notifications(now=START + 30)
        due_at_100 = await store.pending_notifications(now=START + 100)
    assert due_at_29 == []
    assert [(n.seq, n.attempts) for n in due_at_30] == [(one.seq, 0)]  # no attempt counted
    # Never earlier than it was: the retry at +100 stays at +100.
    assert [(n.seq, n.attempts) for n in due_at_100] == [(one.seq, 0), (two.seq, 1)]


async def test_provider_stats(store: Store, clock: FakeClock) -> None:
    minute = int(START // 60) * 60
    with trio.fail_after(T):
        await store.record_provider_stats(
            [
                ProviderStatsDelta("p1", submitted=3, latency_sum=0.3, latency_count=3),
                ProviderStatsDelta("p1", failed=1, throttled=2, at=minute + 59.9),
                ProviderStatsDelta("p2", receipts=5, at=minute + 60),
            ]
        )
        await store.record_provider_stats([ProviderStatsDelta("p1", submitted=1)])
        everything = await store.provider_stats()
        p1 = await store.provider_stats(provider="p1")
        later = await store.provider_stats(since=minute + 60)
    assert everything == [
        ProviderStats("p1", minute, 4, 1, 2, 0, pytest.approx(0.3), 3),  # type: ignore[arg-type]
        ProviderStats("p2", minute + 60, 0, 0, 0, 5, 0.0, 0),
    ]
    assert p1 == everything[:1] and later == everything[1:]


async def test_counts(store: Store) -> None:
    with trio.fail_after(T):
        await store.create_messages([msg("a"), msg("b"), msg("c", schedule_at=START + 10)])
        await store.record_events([ev("a", S.FAILED)])
        counts = await store.counts()
    assert counts.messages[S.QUEUED] == 1
    assert counts.messages[S.FAILED] == 1
    assert counts.messages[S.SCHEDULED] == 1
    assert sum(counts.messages.values()) == 3 and set(counts.messages) == set(MessageStatus)


async def test_list_messages_filters(store: Store, clock: FakeClock) -> None:
    with trio.fail_after(T):
        for i in range(6):
            await store.create_messages(
                [msg(f"m{i}", client="acme" if i % 2 else "zed", client_ref=f"ref{i % 3}")]
            )
            clock.advance(10)
        await store.record_events([ev("m1", S.FAILED), ev("m4", S.FAILED)])

        async def ids(**filters: object) -> list[str]:
            page = await store.list_messages(MessageFilter(**filters))  # type: ignore[arg-type]
            return [m.id for m in page.items]

        assert await ids() == ["m5", "m4", "m3", "m2", "m1", "m0"]
        assert await ids(status=S.FAILED) == ["m4", "m1"]
        assert await ids(client="acme") == ["m5", "m3", "m1"]
        assert await ids(client_ref="ref1") == ["m4", "m1"]
        assert await ids(since=START + 10, until=START + 40) == ["m3", "m2", "m1"]
        assert await ids(status=S.QUEUED, client="zed", since=START + 1) == ["m2"]


async def test_listing_arguments_are_checked(store: Store) -> None:
    with trio.fail_after(T):
        for cursor in ["", "m:1.0", "i:1.0:2", "m:nan:1", "m:x:1", "m:1.0:1.5"]:
            with pytest.raises(InvalidCursor):
                await store.list_messages(cursor=cursor)
        with pytest.raises(InvalidCursor):
            await store.list_inbound(cursor="m:1.0:2")
        for limit in (0, 1001, True):
            with pytest.raises(ValueError):
                await store.list_messages(limit=limit)
        with pytest.raises(ValueError):
            MessageFilter(since=float("nan"))
        with pytest.raises(ValueError):
            await store.prune(float("inf"))
