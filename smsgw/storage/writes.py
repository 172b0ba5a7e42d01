"""The kinds of write the writer runs (:class:`~smsgw.storage.writer.OpKind`), with their SQL.

Each kind's ``apply`` runs every request of its kind in a batch with a constant number of
statements (``executemany`` over all of them). It is plain synchronous code: the writer runs a
whole batch, every kind of it, on the database thread in one round trip. Payloads arrive
validated and with their times filled in (by :mod:`smsgw.storage.store`, in the caller's task),
so ``apply`` only writes. ``notify`` callbacks of ``record_events`` run there too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from smsgw.adapters.sqlite import ConstraintViolation
from smsgw.correlation import SmscKey
from smsgw.model import (
    InboundPart,
    MessageStatus,
    NewInbound,
    NewMessage,
    NewNotification,
    NotificationState,
    ProviderStatsDelta,
    SmscIdMapping,
    StatusChange,
    StatusEvent,
)
from smsgw.storage.errors import DuplicateId, MessageStateError, StoreError, UnknownMessage
from smsgw.storage.transitions import (
    EventRow,
    MessageRecord,
    PartRecord,
    apply_event,
    initial_status,
)
from smsgw.storage.writer import Failure, OpKind

__all__ = [
    "CREATE_MESSAGES",
    "DEFER_NOTIFICATIONS",
    "ENQUEUE_NOTIFICATIONS",
    "MAP_SMSC_IDS",
    "NOTIFICATION_OUTCOMES",
    "PARK_RECEIPTS",
    "PROBE",
    "RECORD_EVENTS",
    "RECORD_PROVIDER_STATS",
    "SET_PARTS",
    "STORE_INBOUND",
    "STORE_INBOUND_PARTS",
    "UNPARK_RECEIPTS",
    "Notify",
    "RecordResult",
]

#: At most this many ``?`` in one ``IN (...)`` list.
CHUNK = 500

Notify = Callable[[StatusChange], Sequence[NewNotification]]


def chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def marks(n: int) -> str:
    return ", ".join("?" * n)


def _event_params(row: EventRow) -> tuple[Any, ...]:
    return (row.message_id, row.part_number, row.status.value, row.reason, row.at, int(row.applied))


_INSERT_EVENT = (
    "INSERT INTO events (message_id, part_number, status, reason, at, applied)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)

_INSERT_NOTIFICATION = (
    "INSERT INTO notifications (kind, target, body, subject, created_at, state, next_attempt_at)"
    " VALUES (?, ?, ?, ?, ?, 'pending', ?)"
)


def _notification_params(n: NewNotification) -> tuple[Any, ...]:
    return (n.kind.value, n.target, n.body, n.subject, n.created_at, n.created_at)


def _insert_notifications(db: sqlite3.Connection, notifications: Sequence[NewNotification]) -> None:
    if notifications:
        db.executemany(_INSERT_NOTIFICATION, [_notification_params(n) for n in notifications])


def _inserted(
    db: sqlite3.Connection, sql: str, payloads: Sequence[Sequence[tuple[Any, ...]]]
) -> list[tuple[int, ...]]:
    """Insert each request's rows with ``sql`` (``... RETURNING seq``); each request's outcome
    is its rows' ``seq``, in order."""
    return [tuple(int(db.execute(sql, row).fetchone()[0]) for row in rows) for rows in payloads]


# --- create_messages --------------------------------------------------------------------------


def _create_messages(
    db: sqlite3.Connection, payloads: Sequence[Sequence[tuple[NewMessage, float]]]
) -> list[None]:
    messages: list[tuple[Any, ...]] = []
    parts: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    for batch in payloads:
        for m, created_at in batch:
            status = initial_status(m.schedule_at, created_at).value
            messages.append(
                (m.id, status, m.source, m.destination, m.parts, m.client, m.client_ref, m.text,
                 created_at, created_at, m.reason, m.schedule_at, m.expires_at, m.callback_url)
            )  # fmt: skip
            for number in range(1, m.parts + 1):
                parts.append((m.id, number, status, created_at, m.reason))
                events.append((m.id, number, status, m.reason, created_at, 1))
            events.append((m.id, None, status, m.reason, created_at, 1))
    db.executemany(
        "INSERT INTO messages (id, status, source, destination, part_count, client, client_ref,"
        " text, created_at, updated_at, reason, schedule_at, expires_at, callback_url)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        messages,
    )
    db.executemany(
        "INSERT INTO parts (message_id, part_number, status, updated_at, reason)"
        " VALUES (?, ?, ?, ?, ?)",
        parts,
    )
    db.executemany(_INSERT_EVENT, events)
    return [None] * len(payloads)


def _explain_create(exc: Exception, payload: Sequence[tuple[NewMessage, float]]) -> Exception:
    if isinstance(exc, ConstraintViolation) and "UNIQUE" in str(exc):
        ids = [m.id for m, _created_at in payload]
        return DuplicateId(f"a message with one of these ids already exists: {ids}")
    return exc


CREATE_MESSAGES = OpKind("create_messages", 0, _create_messages, _explain_create)


# --- set_parts --------------------------------------------------------------------------------

#: A message may be re-split while none of its parts has reached the SMSC.
_RESPLITTABLE = frozenset({MessageStatus.SCHEDULED, MessageStatus.QUEUED, MessageStatus.SUBMITTING})


@attrs.frozen
class SetParts:
    message_id: str
    parts: int
    reason: str
    at: float


def _set_parts(db: sqlite3.Connection, payloads: Sequence[SetParts]) -> list[Failure | None]:
    # Rare (a re-split for another provider): one request at a time is fine.
    outcomes: list[Failure | None] = []
    for op in payloads:
        row = db.execute("SELECT status FROM messages WHERE id = ?", (op.message_id,)).fetchone()
        if row is None:
            outcomes.append(Failure(UnknownMessage(f"no message {op.message_id!r}")))
            continue
        status = MessageStatus(row[0])
        rows = db.execute(
            "SELECT status FROM parts WHERE message_id = ?", (op.message_id,)
        ).fetchall()
        locked = sorted({r[0] for r in rows} - {s.value for s in _RESPLITTABLE})
        if locked:
            outcomes.append(
                Failure(
                    MessageStateError(
                        f"message {op.message_id!r} cannot be re-split: parts already {locked}"
                    )
                )
            )
            continue
        # Every part restarts in the message's (aggregated) status, so that stays the same.
        db.execute("DELETE FROM parts WHERE message_id = ?", (op.message_id,))
        db.executemany(
            "INSERT INTO parts (message_id, part_number, status, updated_at, reason)"
            " VALUES (?, ?, ?, ?, ?)",
            [(op.message_id, n, status.value, op.at, op.reason) for n in range(1, op.parts + 1)],
        )
        db.executemany(
            _INSERT_EVENT,
            [(op.message_id, n, status.value, op.reason, op.at, 1) for n in range(1, op.parts + 1)],
        )
        db.execute("UPDATE messages SET part_count = ? WHERE id = ?", (op.parts, op.message_id))
        outcomes.append(None)
    return outcomes


SET_PARTS = OpKind("set_parts", 1, _set_parts)


# --- map_smsc_ids -----------------------------------------------------------------------------


@attrs.frozen
class MappedId:
    mapping: SmscIdMapping
    key: SmscKey
    at: float


def _map_smsc_ids(db: sqlite3.Connection, payloads: Sequence[Sequence[MappedId]]) -> list[None]:
    rows = [m for batch in payloads for m in batch]
    db.executemany(
        "INSERT INTO smsc_ids (provider, smsc_id, raw_smsc_id, message_id, part_number, mapped_at)"
        " VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (provider, smsc_id) DO UPDATE SET raw_smsc_id = excluded.raw_smsc_id,"
        " message_id = excluded.message_id, part_number = excluded.part_number,"
        " mapped_at = excluded.mapped_at",
        [
            (m.key.provider, m.key.smsc_id, m.mapping.smsc_id, m.mapping.message_id,
             m.mapping.part_number, m.at)
            for m in rows
        ],
    )  # fmt: skip
    db.executemany(
        "UPDATE parts SET smsc_id = ?, provider = ? WHERE message_id = ? AND part_number = ?",
        [
            (m.mapping.smsc_id, m.key.provider, m.mapping.message_id, m.mapping.part_number)
            for m in rows
        ],
    )
    return [None] * len(payloads)


def _explain_map(exc: Exception, payload: Sequence[MappedId]) -> Exception:
    if isinstance(exc, ConstraintViolation) and "FOREIGN KEY" in str(exc):
        parts = [(m.mapping.message_id, m.mapping.part_number) for m in payload]
        return UnknownMessage(f"no such message part among {parts}")
    return exc


MAP_SMSC_IDS = OpKind("map_smsc_ids", 2, _map_smsc_ids, _explain_map)


# --- record_events ----------------------------------------------------------------------------


@attrs.frozen
class RecordResult:
    """What :meth:`Store.record_events` did.

    ``changes``: the messages whose aggregated status changed, in order. ``refused``: the events
    whose target was already final (recorded in the history with ``applied=False``).
    """

    changes: tuple[StatusChange, ...]
    refused: tuple[StatusEvent, ...]


@attrs.frozen
class RecordEvents:
    events: tuple[tuple[StatusEvent, float], ...]  # each with its time
    notify: Notify | None
    #: The ``parked_receipts`` rows of receipts these events record: deleted in the transaction.
    parked_done: tuple[int, ...] = ()


#: A status from its stored value (a dict lookup: ``MessageStatus(value)`` is much slower, and
#: this runs for every part of every message a batch of events touches).
_STATUS = {status.value: status for status in MessageStatus}


def _load(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, MessageRecord]:
    records: dict[str, MessageRecord] = {}
    for chunk in chunks(ids):
        rows = db.execute(
            "SELECT m.id, m.client, m.client_ref, m.status, m.reason, m.updated_at, m.provider,"
            " p.part_number, p.status, p.reason, p.updated_at, p.provider, m.callback_url"
            " FROM messages AS m JOIN parts AS p ON p.message_id = m.id"
            f" WHERE m.id IN ({marks(len(chunk))})",
            chunk,
        ).fetchall()
        for row in rows:
            record = records.get(row[0])
            if record is None:
                record = records[row[0]] = MessageRecord(
                    id=row[0],
                    client=row[1],
                    client_ref=row[2],
                    status=_STATUS[row[3]],
                    reason=row[4],
                    updated_at=row[5],
                    provider=row[6],
                    parts={},
                    callback_url=row[12],
                )
            record.parts[row[7]] = PartRecord(_STATUS[row[8]], row[9], row[10], row[11])
    return records


@attrs.define
class _Applied:
    """One request's effect, computed on copies of the records it touches (all or nothing)."""

    records: dict[str, MessageRecord] = attrs.Factory(dict)
    rows: list[EventRow] = attrs.Factory(list)
    parts: set[tuple[str, int]] = attrs.Factory(set)
    messages: set[str] = attrs.Factory(set)
    changes: list[StatusChange] = attrs.Factory(list)
    refused: list[StatusEvent] = attrs.Factory(list)
    notifications: list[NewNotification] = attrs.Factory(list)


def _run_request(records: dict[str, MessageRecord], op: RecordEvents) -> _Applied:
    out = _Applied()
    for event, at in op.events:
        record = out.records.get(event.message_id)
        if record is None:
            original = records.get(event.message_id)
            if original is None:
                raise UnknownMessage(f"no message {event.message_id!r}")
            record = out.records[event.message_id] = original.copy()
        applied = apply_event(record, event, at)
        out.rows.extend(applied.rows)
        out.parts.update((record.id, n) for n in applied.parts)
        if applied.message_changed:
            out.messages.add(record.id)
        if applied.change is not None:
            out.changes.append(applied.change)
        if applied.refused:
            out.refused.append(event)
    if op.notify is not None:
        for change in out.changes:
            for notification in op.notify(change):
                if not isinstance(notification, NewNotification):
                    raise TypeError(f"notify must return NewNotification, got {notification!r}")
                if notification.created_at is None:
                    notification = attrs.evolve(notification, created_at=change.at)
                out.notifications.append(notification)
    return out


def _record_events(
    db: sqlite3.Connection, payloads: Sequence[RecordEvents]
) -> list[RecordResult | Failure]:
    ids = list(dict.fromkeys(event.message_id for op in payloads for event, _at in op.events))
    records = _load(db, ids)
    outcomes: list[RecordResult | Failure] = []
    rows: list[EventRow] = []
    dirty_parts: set[tuple[str, int]] = set()
    dirty_messages: set[str] = set()
    notifications: list[NewNotification] = []
    for op in payloads:
        try:
            applied = _run_request(records, op)
        except (StoreError, TypeError, ValueError) as exc:
            outcomes.append(Failure(exc))
            continue
        records.update(applied.records)
        rows.extend(applied.rows)
        dirty_parts |= applied.parts
        dirty_messages |= applied.messages
        notifications.extend(applied.notifications)
        outcomes.append(RecordResult(tuple(applied.changes), tuple(applied.refused)))
    part_rows = []
    for message_id, number in sorted(dirty_parts):
        part = records[message_id].parts[number]
        part_rows.append(
            (part.status.value, part.reason, part.updated_at, part.provider, message_id, number)
        )
    message_rows = []
    for message_id in sorted(dirty_messages):
        r = records[message_id]
        message_rows.append((r.status.value, r.reason, r.updated_at, r.provider, r.id))
    if part_rows:
        db.executemany(
            "UPDATE parts SET status = ?, reason = ?, updated_at = ?, provider = ?"
            " WHERE message_id = ? AND part_number = ?",
            part_rows,
        )
    if message_rows:
        db.executemany(
            "UPDATE messages SET status = ?, reason = ?, updated_at = ?, provider = ? WHERE id = ?",
            message_rows,
        )
    if rows:
        db.executemany(_INSERT_EVENT, [_event_params(row) for row in rows])
    _insert_notifications(db, notifications)
    _unpark(db, [seq for op, outcome in zip(payloads, outcomes, strict=True)
                 if not isinstance(outcome, Failure) for seq in op.parked_done])  # fmt: skip
    return outcomes


RECORD_EVENTS = OpKind("record_events", 3, _record_events)


# --- parked receipts --------------------------------------------------------------------------


def _unpark(db: sqlite3.Connection, seqs: Sequence[int]) -> None:
    if seqs:
        db.executemany("DELETE FROM parked_receipts WHERE seq = ?", [(seq,) for seq in seqs])


def _park_receipts(
    db: sqlite3.Connection, payloads: Sequence[Sequence[tuple[str, bytes, float]]]
) -> list[tuple[int, ...]]:
    """Each request's receipts (provider, encoded PDU, time); its outcome is their rows."""
    return _inserted(
        db,
        "INSERT INTO parked_receipts (provider, pdu, parked_at) VALUES (?, ?, ?) RETURNING seq",
        payloads,
    )


def _unpark_receipts(db: sqlite3.Connection, payloads: Sequence[Sequence[int]]) -> list[None]:
    _unpark(db, [seq for seqs in payloads for seq in seqs])
    return [None] * len(payloads)


PARK_RECEIPTS = OpKind("park_receipts", 9, _park_receipts)


UNPARK_RECEIPTS = OpKind("unpark_receipts", 10, _unpark_receipts)


# --- store_inbound ----------------------------------------------------------------------------


@attrs.frozen
class StoreInbound:
    messages: tuple[NewInbound, ...]
    notifications: tuple[NewNotification, ...]
    #: The ``inbound_parts`` rows the messages were made of: deleted in the same transaction.
    parts_done: tuple[int, ...] = ()


def _store_inbound(db: sqlite3.Connection, payloads: Sequence[StoreInbound]) -> list[None]:
    db.executemany(
        "INSERT INTO inbound (id, provider, source, destination, payload, data_coding, text,"
        " part_count, received_at, complete) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (m.id, m.provider, m.source, m.destination, m.payload, m.data_coding, m.text, m.parts,
             m.received_at, int(m.complete))
            for op in payloads
            for m in op.messages
        ],
    )  # fmt: skip
    done = [(seq,) for op in payloads for seq in op.parts_done]
    db.executemany("DELETE FROM inbound_parts WHERE seq = ?", done)
    _insert_notifications(db, [n for op in payloads for n in op.notifications])
    return [None] * len(payloads)


def _explain_inbound(exc: Exception, payload: StoreInbound) -> Exception:
    if isinstance(exc, ConstraintViolation) and "UNIQUE" in str(exc):
        ids = [m.id for m in payload.messages]
        return DuplicateId(f"an inbound message with one of these ids already exists: {ids}")
    return exc


def _store_inbound_parts(
    db: sqlite3.Connection, payloads: Sequence[Sequence[InboundPart]]
) -> list[tuple[int, ...]]:
    """Each request's parts; its outcome is their row numbers (``seq``), in order."""
    return _inserted(
        db,
        "INSERT INTO inbound_parts (provider, source, destination, reference, total, number,"
        " payload, data_coding, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        [
            [(p.provider, p.source, p.destination, p.reference, p.total, p.number, p.payload,
              p.data_coding, p.received_at) for p in parts]
            for parts in payloads
        ],
    )  # fmt: skip


STORE_INBOUND_PARTS = OpKind("store_inbound_parts", 4, _store_inbound_parts)


STORE_INBOUND = OpKind("store_inbound", 5, _store_inbound, _explain_inbound)


# --- the webhook outbox -----------------------------------------------------------------------


def _enqueue_notifications(
    db: sqlite3.Connection, payloads: Sequence[Sequence[NewNotification]]
) -> list[None]:
    _insert_notifications(db, [n for batch in payloads for n in batch])
    return [None] * len(payloads)


ENQUEUE_NOTIFICATIONS = OpKind("enqueue_notifications", 6, _enqueue_notifications)


@attrs.frozen
class NotificationOutcome:
    """A delivery attempt's result: delivered, or failed (retry at ``next_attempt_at``, or give
    up when it is None)."""

    seq: int
    at: float
    delivered: bool
    error: str | None = None
    next_attempt_at: float | None = None


def _notification_outcomes(
    db: sqlite3.Connection, payloads: Sequence[Sequence[NotificationOutcome]]
) -> list[None]:
    outcomes = [o for batch in payloads for o in batch]
    delivered = [(o.at, o.seq) for o in outcomes if o.delivered]
    retry = [(o.error, o.next_attempt_at, o.seq) for o in outcomes if not o.delivered]
    if delivered:
        db.executemany(
            "UPDATE notifications SET state = 'delivered', delivered_at = ?,"
            " attempts = attempts + 1 WHERE seq = ? AND state = 'pending'",
            delivered,
        )
    if retry:
        db.executemany(
            "UPDATE notifications SET attempts = attempts + 1, last_error = ?1,"
            f" state = CASE WHEN ?2 IS NULL THEN '{NotificationState.DEAD.value}' ELSE state END,"
            " next_attempt_at = coalesce(?2, next_attempt_at)"
            " WHERE seq = ?3 AND state = 'pending'",
            retry,
        )
    return [None] * len(payloads)


NOTIFICATION_OUTCOMES = OpKind("notification_outcomes", 7, _notification_outcomes)


def _defer_notifications(
    db: sqlite3.Connection, payloads: Sequence[tuple[float, Sequence[int]]]
) -> list[None]:
    db.executemany(
        "UPDATE notifications SET next_attempt_at = max(next_attempt_at, ?)"
        " WHERE seq = ? AND state = 'pending'",
        [(until, seq) for until, seqs in payloads for seq in seqs],
    )
    return [None] * len(payloads)


DEFER_NOTIFICATIONS = OpKind("defer_notifications", 7, _defer_notifications)


# --- provider statistics ----------------------------------------------------------------------


def _record_provider_stats(
    db: sqlite3.Connection, payloads: Sequence[Sequence[tuple[ProviderStatsDelta, int]]]
) -> list[None]:
    db.executemany(
        "INSERT INTO provider_stats (provider, minute, submitted, failed, throttled, receipts,"
        " latency_sum, latency_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (provider, minute) DO UPDATE SET"
        " submitted = submitted + excluded.submitted, failed = failed + excluded.failed,"
        " throttled = throttled + excluded.throttled, receipts = receipts + excluded.receipts,"
        " latency_sum = latency_sum + excluded.latency_sum,"
        " latency_count = latency_count + excluded.latency_count",
        [
            (d.provider, minute, d.submitted, d.failed, d.throttled, d.receipts, d.latency_sum,
             d.latency_count)
            for batch in payloads
            for d, minute in batch
        ],
    )  # fmt: skip
    return [None] * len(payloads)


RECORD_PROVIDER_STATS = OpKind("record_provider_stats", 8, _record_provider_stats)


def _probe(db: sqlite3.Connection, payloads: Sequence[None]) -> list[None]:
    # Rewrites a row as it is: its page still goes to the write-ahead log, so this fails
    # where any write would (a full disk, a lock held elsewhere), and changes nothing.
    db.execute("UPDATE schema_version SET version = version")
    return [None] * len(payloads)


PROBE = OpKind("probe", 11, _probe)
