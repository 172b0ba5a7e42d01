"""The :class:`Store`: the gateway's typed database operations (Trio; asyncio stays in the adapter).

Writes go through the group-commit writer (:mod:`smsgw.storage.writer`): each ``await`` returns
once its write is committed, so what it wrote survives a crash from then on. Every write call is
atomic on its own (all of its items or none). Reads go straight to the database and see what is
committed.

Arguments are checked in the caller's task, before anything reaches the writer: bad input raises
``ValueError``/``TypeError`` there (:mod:`smsgw.model` validates each item). Times left ``None``
are taken from the store's ``clock`` (wall-clock epoch seconds) at the call.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import attrs
import trio

from smpp_codec.message_id import MessageIdFormat
from smsgw.adapters.sqlite import (
    DatabaseUnavailable,
    Row,
    SqliteDatabase,
    Synchronous,
    open_sqlite,
)
from smsgw.correlation import SmscKey, receipt_key, resp_key
from smsgw.errors import lone
from smsgw.model import (
    Event,
    InboundMessage,
    InboundPart,
    Message,
    MessageDetail,
    MessageStatus,
    NewInbound,
    NewMessage,
    NewNotification,
    Notification,
    NotificationKind,
    NotificationState,
    Part,
    PartRef,
    ProviderStats,
    ProviderStatsDelta,
    SmscIdMapping,
    StatusEvent,
)
from smsgw.storage import queries, retention, writes
from smsgw.storage.errors import (
    DuplicateId,
    StoreClosed,
    StoreUnavailable,
)
from smsgw.storage.retention import PruneReport
from smsgw.storage.schema import migrate
from smsgw.storage.writer import OpKind, Writer, WriterStats
from smsgw.storage.writes import Notify, RecordResult

__all__ = [
    "MAX_PAGE",
    "MessageFilter",
    "Page",
    "Store",
    "StoreCounts",
    "open_store",
    "run_store",
]

Clock = Callable[[], float]
T = TypeVar("T")

#: The largest page a listing returns.
MAX_PAGE = 1000
#: The most due notifications one read returns (``[webhooks] batch_size``'s maximum).
MAX_DUE = 10_000


@attrs.frozen
class Page(Generic[T]):
    """One page of a listing, newest first. ``next_cursor`` None: this is the last page."""

    items: tuple[T, ...]
    next_cursor: str | None


def _optional_time(_inst: object, attribute: attrs.Attribute[float | None], value: object) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise ValueError(f"{attribute.name} must be None or a finite time, got {value!r}")


@attrs.frozen
class MessageFilter:
    """Which messages :meth:`Store.list_messages` lists: every condition given must hold.

    ``since`` <= created_at < ``until``.
    """

    status: MessageStatus | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(MessageStatus)),
    )
    client: str | None = None
    client_ref: str | None = None
    since: float | None = attrs.field(default=None, validator=_optional_time)
    until: float | None = attrs.field(default=None, validator=_optional_time)


def _read_message(
    db: sqlite3.Connection, message_id: str
) -> tuple[Row, list[Row], list[Row]] | None:
    """On the database thread: a message's row, its parts and its events."""
    row = db.execute(queries.MESSAGE_BY_ID, (message_id,)).fetchone()
    if row is None:
        return None
    parts = db.execute(queries.PARTS_OF, (message_id,)).fetchall()
    events = db.execute(queries.EVENTS_OF, (message_id,)).fetchall()
    return row, parts, events


@attrs.frozen
class StoreCounts:
    """Row counts, for metrics and operators."""

    messages: Mapping[MessageStatus, int]  # every status, 0 included
    inbound: int
    notifications: Mapping[NotificationState, int]  # every state, 0 included


def _check_time(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite time, got {value!r}")
    return float(value)


def _check_limit(limit: int, most: int = MAX_PAGE) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= most:
        raise ValueError(f"limit must be an int in 1..{most}, got {limit!r}")


def _check_seq(seq: int) -> None:
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise TypeError(f"a notification seq is an int, got {seq!r}")


def _check_items(name: str, items: Sequence[Any], cls: type) -> None:
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise TypeError(f"{name} must be a sequence of {cls.__name__}, got {type(items).__name__}")
    for item in items:
        if not isinstance(item, cls):
            raise TypeError(f"{name} must hold {cls.__name__}, got {item!r}")


def _check_unique(what: str, ids: Sequence[str]) -> None:
    seen: set[str] = set()
    repeated: set[str] = set()
    for item in ids:
        (repeated if item in seen else seen).add(item)
    if repeated:
        raise DuplicateId(f"{what} ids repeated in one call: {sorted(repeated)}")


# --- rows -> model --------------------------------------------------------------------------


def _message(row: Row) -> Message:
    return Message(
        id=row[0],
        status=MessageStatus(row[1]),
        source=row[2],
        destination=row[3],
        parts=row[4],
        client=row[5],
        client_ref=row[6],
        text=row[7],
        created_at=row[8],
        updated_at=row[9],
        reason=row[10],
        provider=row[11],
        schedule_at=row[12],
        expires_at=row[13],
        callback_url=row[15],
    )


def _inbound(row: Row) -> InboundMessage:
    return InboundMessage(
        seq=row[0],
        id=row[1],
        provider=row[2],
        source=row[3],
        destination=row[4],
        payload=bytes(row[5]),
        data_coding=row[6],
        text=row[7],
        parts=row[8],
        received_at=row[9],
        complete=bool(row[10]),
    )


def _notification(row: Row) -> Notification:
    return Notification(
        seq=row[0],
        kind=NotificationKind(row[1]),
        target=row[2],
        body=row[3],
        subject=row[4],
        created_at=row[5],
        state=NotificationState(row[6]),
        attempts=row[7],
        next_attempt_at=row[8],
        delivered_at=row[9],
        last_error=row[10],
    )


class Store:
    """The gateway's database: messages, parts, history, SMSC ids, inbound, outbox, statistics.

    Obtain one with :func:`open_store` (or :func:`run_store` on an open database). All methods
    are safe to call from many tasks at once.
    """

    def __init__(self, db: SqliteDatabase, writer: Writer, *, clock: Clock) -> None:
        self._db = db
        self._writer = writer
        self._clock = clock

    @property
    def path(self) -> str:
        return self._db.path

    def writer_stats(self) -> WriterStats:
        """The writer's counters (transactions committed, batches, failures...)."""
        return self._writer.stats()

    def _time(self, value: float | None) -> float:
        return self._clock() if value is None else value

    # --- writes ---------------------------------------------------------------------------

    async def create_messages(self, messages: Sequence[NewMessage]) -> None:
        """Create messages, each with its parts, in ``queued`` (or ``scheduled``: see
        :class:`NewMessage`) and its first history rows.

        Raises :class:`DuplicateId` if an id exists already (then none is created).
        """
        _check_items("messages", messages, NewMessage)
        _check_unique("message", [m.id for m in messages])
        if messages:
            payload = tuple((m, self._time(m.created_at)) for m in messages)
            await self._writer.submit(writes.CREATE_MESSAGES, payload)

    async def set_parts(
        self, message_id: str, parts: int, *, reason: str, at: float | None = None
    ) -> None:
        """Give a message ``parts`` parts (the processor split it for a provider).

        Every part restarts in the message's current status. Allowed only while no part has
        reached the SMSC (all scheduled, queued or submitting): else
        :class:`MessageStateError`. :class:`UnknownMessage` if there is no such message.
        """
        if not isinstance(message_id, str) or not message_id:
            raise ValueError(f"message_id must be a non-empty str, got {message_id!r}")
        if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
            raise ValueError(f"parts must be an int >= 1, got {parts!r}")
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, got {reason!r}")
        op = writes.SetParts(message_id, parts, reason, _check_time("at", self._time(at)))
        await self._writer.submit(writes.SET_PARTS, op)

    async def record_events(
        self,
        events: Sequence[StatusEvent],
        *,
        notify: Notify | None = None,
        parked_done: Sequence[int] = (),
    ) -> RecordResult:
        """Record status transitions, in order, and update the parts' and messages' statuses.

        The rule (which events apply, which history rows they write) is in
        :mod:`smsgw.storage.transitions`. ``notify``, if given, is called for each message
        whose aggregated status changed, inside the writer's transaction; the notifications it
        returns are enqueued in the same transaction, so a status change and its webhook are
        durable together. It must be quick and must not block (it runs in the writer task); if
        it raises, this call fails and writes nothing.

        ``parked_done``: the :meth:`park_receipts` rows of the receipts these events record,
        deleted in the same transaction.

        Raises :class:`UnknownMessage` if an event names no existing message or part (then no
        event of the call is recorded, and no row deleted).
        """
        _check_items("events", events, StatusEvent)
        if notify is not None and not callable(notify):
            raise TypeError(f"notify must be callable, got {notify!r}")
        if not events:
            await self.unpark_receipts(parked_done)
            return RecordResult((), ())
        op = writes.RecordEvents(
            tuple((e, self._time(e.at)) for e in events), notify, tuple(map(int, parked_done))
        )
        result: RecordResult = await self._writer.submit(writes.RECORD_EVENTS, op)
        return result

    async def map_smsc_ids(self, mappings: Sequence[SmscIdMapping]) -> None:
        """Record the SMSC message id of each part (raw, and normalised in the provider's
        ``id_format``). A (provider, id) mapped before is re-mapped: SMSCs reuse ids after a
        while, and the newest use is the one receipts are about.

        Raises ``MessageIdError`` (a ``ValueError``) for an empty id, :class:`UnknownMessage`
        for a part that does not exist (then nothing of the call is mapped).
        """
        _check_items("mappings", mappings, SmscIdMapping)
        payload = tuple(
            writes.MappedId(m, resp_key(m.provider, m.smsc_id, m.id_format), self._time(m.at))
            for m in mappings
        )
        if payload:
            await self._writer.submit(writes.MAP_SMSC_IDS, payload)

    async def map_and_record(
        self,
        mappings: Sequence[SmscIdMapping],
        events: Sequence[StatusEvent],
        *,
        notify: Notify | None = None,
        handed_over: Callable[[], None] | None = None,
    ) -> RecordResult:
        """:meth:`map_smsc_ids` and :meth:`record_events` handed to the writer together, so
        they share a group commit (what the processor does for every accepted part). Both are
        settled when this returns; the first error is raised (a ``MessageIdError`` of a mapping
        before anything is written).

        ``handed_over``, if given, is called once both writes are queued for the writer and
        before they are committed: every write queued after that call is committed after them
        (in the same transaction or a later one), or fails with them."""
        _check_items("mappings", mappings, SmscIdMapping)
        _check_items("events", events, StatusEvent)
        if notify is not None and not callable(notify):
            raise TypeError(f"notify must be callable, got {notify!r}")
        items: list[tuple[OpKind, Any]] = []
        if mappings:
            mapped = tuple(
                writes.MappedId(m, resp_key(m.provider, m.smsc_id, m.id_format), self._time(m.at))
                for m in mappings
            )
            items.append((writes.MAP_SMSC_IDS, mapped))
        if events:
            op = writes.RecordEvents(tuple((e, self._time(e.at)) for e in events), notify)
            items.append((writes.RECORD_EVENTS, op))
        if not items:
            if handed_over is not None:
                handed_over()
            return RecordResult((), ())
        results = await self._writer.submit_many(items, handed_over=handed_over)
        result: RecordResult = results[-1] if events else RecordResult((), ())
        return result

    async def store_inbound(
        self,
        messages: Sequence[NewInbound],
        notifications: Sequence[NewNotification] = (),
        *,
        parts_done: Sequence[int] = (),
    ) -> None:
        """Store mobile-originated messages, and their webhooks in the same transaction; delete
        the ``inbound_parts`` rows ``parts_done`` (the parts they were made of) in it too.

        When this returns they are durable: the MO flow answers the SMSC only then. Raises
        :class:`StoreUnavailable` if they could not be stored (answer with a temporary error),
        :class:`DuplicateId` if an id exists already.
        """
        _check_items("messages", messages, NewInbound)
        _check_items("notifications", notifications, NewNotification)
        _check_unique("inbound message", [m.id for m in messages])
        if not messages and not notifications and not parts_done:
            return
        op = writes.StoreInbound(
            tuple(attrs.evolve(m, received_at=self._time(m.received_at)) for m in messages),
            self._stamped(notifications),
            tuple(int(seq) for seq in parts_done),
        )
        await self._writer.submit(writes.STORE_INBOUND, op)

    async def delete_inbound_parts(self, seqs: Sequence[int]) -> None:
        """Delete stored parts of multipart MOs that will not be part of a message (copies)."""
        await self.store_inbound([], parts_done=seqs)

    async def park_receipts(self, receipts: Sequence[tuple[str, bytes]]) -> list[int]:
        """Keep receipts that overtook their submit_sm_resp, each (provider, its PDU encoded),
        until they are recorded; returns their rows. Durable when this returns: the SMSC may be
        answered."""
        if not receipts:
            return []
        at = self._clock()
        payload = tuple((str(provider), bytes(pdu), at) for provider, pdu in receipts)
        seqs: tuple[int, ...] = await self._writer.submit(writes.PARK_RECEIPTS, payload)
        return list(seqs)

    async def unpark_receipts(self, seqs: Sequence[int]) -> None:
        """Delete parked receipts (orphans: no mapping came)."""
        if seqs:
            await self._writer.submit(writes.UNPARK_RECEIPTS, tuple(map(int, seqs)))

    async def parked_receipts(self) -> list[tuple[int, str, bytes, float]]:
        """Every parked receipt, oldest first: (row, provider, encoded PDU, parked_at). Read
        at start, to match them again."""
        rows = await self._fetch(
            "SELECT seq, provider, pdu, parked_at FROM parked_receipts ORDER BY seq"
        )
        return [(int(r[0]), str(r[1]), bytes(r[2]), float(r[3])) for r in rows]

    async def store_inbound_part(self, part: InboundPart) -> InboundPart:
        """Store one part of a multipart MO until its message is whole; returns it with its
        ``seq`` (and its time). Durable when this returns: the SMSC may be answered."""
        _check_items("parts", [part], InboundPart)
        stored = attrs.evolve(part, received_at=self._time(part.received_at), seq=None)
        (seq,) = await self._writer.submit(writes.STORE_INBOUND_PARTS, (stored,))
        return attrs.evolve(stored, seq=seq)

    async def inbound_parts(self) -> list[InboundPart]:
        """Every stored part of a multipart MO not yet whole, oldest first (to reassemble them
        again after a restart)."""
        rows = await self._fetch(
            "SELECT provider, source, destination, reference, total, number, payload,"
            " data_coding, received_at, seq FROM inbound_parts ORDER BY seq"
        )
        return [
            InboundPart(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), r[7], r[8], r[9])
            for r in rows
        ]

    def _stamped(self, notifications: Sequence[NewNotification]) -> tuple[NewNotification, ...]:
        return tuple(
            n if n.created_at is not None else attrs.evolve(n, created_at=self._clock())
            for n in notifications
        )

    async def enqueue_notifications(self, notifications: Sequence[NewNotification]) -> None:
        """Add webhooks to the outbox, due at once (state ``pending``)."""
        _check_items("notifications", notifications, NewNotification)
        if notifications:
            await self._writer.submit(writes.ENQUEUE_NOTIFICATIONS, self._stamped(notifications))

    async def complete_notifications(self, seqs: Sequence[int], *, at: float | None = None) -> None:
        """Mark pending notifications delivered (others are left as they are)."""
        for seq in seqs:
            _check_seq(seq)
        now = _check_time("at", self._time(at))
        outcomes = tuple(writes.NotificationOutcome(seq, now, True) for seq in seqs)
        if outcomes:
            await self._writer.submit(writes.NOTIFICATION_OUTCOMES, outcomes)

    async def defer_notifications(self, seqs: Sequence[int], *, until: float) -> None:
        """Make pending notifications due no sooner than ``until``, without counting an
        attempt (the deliverer holds back a target that has its share of attempts under way)."""
        for seq in seqs:
            _check_seq(seq)
        _check_time("until", until)
        if seqs:
            await self._writer.submit(writes.DEFER_NOTIFICATIONS, (until, tuple(seqs)))

    async def retry_notification(
        self, seq: int, *, error: str, next_attempt_at: float | None, at: float | None = None
    ) -> None:
        """Record a failed delivery attempt of a pending notification: due again at
        ``next_attempt_at``, or given up (state ``dead``) if it is None."""
        _check_seq(seq)
        if not isinstance(error, str):
            raise TypeError(f"error must be a str, got {error!r}")
        if next_attempt_at is not None:
            _check_time("next_attempt_at", next_attempt_at)
        outcome = writes.NotificationOutcome(seq, self._time(at), False, error, next_attempt_at)
        await self._writer.submit(writes.NOTIFICATION_OUTCOMES, (outcome,))

    async def record_provider_stats(self, deltas: Sequence[ProviderStatsDelta]) -> None:
        """Add counts to the providers' minute buckets (the minute of each delta's ``at``)."""
        _check_items("deltas", deltas, ProviderStatsDelta)
        payload = tuple((d, int(self._time(d.at) // 60) * 60) for d in deltas)
        if payload:
            await self._writer.submit(writes.RECORD_PROVIDER_STATS, payload)

    @property
    def writes_failing(self) -> bool:
        """The database refused the last transaction as unavailable (locked beyond the busy
        timeout, disk full...), and none has committed since."""
        return self._writer.failing_since is not None

    async def probe_write(self) -> None:
        """A write that changes nothing, through the writer: returns once committed, raises
        :class:`StoreUnavailable` if the database cannot take writes now (and clears
        :attr:`writes_failing` if it can)."""
        await self._writer.submit(writes.PROBE, None)

    async def prune(self, older_than: float, *, batch_size: int = 500) -> PruneReport:
        """Delete final messages, inbound messages, finished notifications and statistics older
        than ``older_than`` (epoch seconds), ``batch_size`` rows per transaction
        (:mod:`smsgw.storage.retention`)."""
        _check_time("older_than", older_than)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        return await retention.prune(self._writer, older_than, batch_size=batch_size)

    # --- reads ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._writer.closed:
            raise StoreClosed("the store is closed")

    async def _fetch(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Row]:
        self._check_open()
        try:
            return await self._db.fetch(sql, params)
        except DatabaseUnavailable as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def get_message(self, message_id: str) -> MessageDetail | None:
        """A message with its parts and full history (oldest first), or None."""
        self._check_open()
        try:
            # One read transaction (one round trip): the three reads see the same state.
            found = await self._db.run_transaction(_read_message, message_id, immediate=False)
        except DatabaseUnavailable as exc:
            raise StoreUnavailable(str(exc)) from exc
        if found is None:
            return None
        row, parts, events = found
        return MessageDetail(
            message=_message(row),
            parts=tuple(
                Part(p[0], p[1], MessageStatus(p[2]), p[3], p[4], p[5], p[6]) for p in parts
            ),
            events=tuple(
                Event(e[0], e[1], e[2], MessageStatus(e[3]), e[4], e[5], bool(e[6])) for e in events
            ),
        )

    async def list_messages(
        self,
        filters: MessageFilter = MessageFilter(),  # frozen: safe to share
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[Message]:
        """Messages matching ``filters``, newest first (by creation time, then insertion).

        Keyset pagination: pass the returned ``next_cursor`` to get the next page. Messages
        created while paging (later than the first page's newest) are never returned by later
        pages, so pages have no duplicates and no gaps.
        """
        if not isinstance(filters, MessageFilter):
            raise TypeError(f"filters must be a MessageFilter, got {filters!r}")
        _check_limit(limit)
        sql, params = queries.message_page(
            status=filters.status,
            client=filters.client,
            client_ref=filters.client_ref,
            since=filters.since,
            until=filters.until,
            cursor=cursor,
            limit=limit + 1,  # one more tells whether there is a next page
        )
        rows = await self._fetch(sql, params)
        items = tuple(_message(row) for row in rows[:limit])
        more = len(rows) > limit
        last = rows[limit - 1] if more else None
        return Page(items, queries.make_cursor("m", last[8], last[14]) if last else None)

    async def find_part_by_smsc_id(
        self, provider: str, smsc_id: str, id_format: MessageIdFormat = MessageIdFormat.AUTO
    ) -> PartRef | None:
        """The part a receipt's message id names (read in the provider's ``id_format``)."""
        return await self.find_part(receipt_key(provider, smsc_id, id_format))

    async def find_part(self, key: SmscKey) -> PartRef | None:
        """The part mapped to ``key``, or None."""
        found = await self.find_parts([key])
        return found.get(key)

    async def existing(self, message_ids: Sequence[str]) -> set[str]:
        """Which of ``message_ids`` have a row (one read per 500 ids)."""
        found: set[str] = set()
        for chunk in writes.chunks(list(dict.fromkeys(message_ids))):
            found.update(row[0] for row in await self._fetch(*queries.message_ids(chunk)))
        return found

    async def find_parts(self, keys: Sequence[SmscKey]) -> dict[SmscKey, PartRef]:
        """The parts mapped to any of ``keys`` (one read per 500 keys of a provider)."""
        by_provider: dict[str, list[str]] = {}
        for key in keys:
            by_provider.setdefault(key.provider, []).append(key.smsc_id)
        found: dict[SmscKey, PartRef] = {}
        for provider, ids in by_provider.items():
            for chunk in writes.chunks(list(dict.fromkeys(ids))):
                rows = await self._fetch(*queries.find_parts(provider, chunk))
                for smsc_id, message_id, part_number in rows:
                    found[SmscKey(provider, smsc_id)] = PartRef(message_id, part_number)
        return found

    async def list_inbound(
        self, cursor: str | None = None, limit: int = 100
    ) -> Page[InboundMessage]:
        """Inbound messages, newest first (by receipt time, then insertion); keyset pages."""
        _check_limit(limit)
        rows = await self._fetch(*queries.inbound_page(cursor, limit + 1))
        items = tuple(_inbound(row) for row in rows[:limit])
        last = items[-1] if len(rows) > limit else None
        return Page(items, queries.make_cursor("i", last.received_at, last.seq) if last else None)

    async def pending_notifications(
        self, limit: int = 100, *, now: float | None = None, excluding: Collection[int] = ()
    ) -> list[Notification]:
        """Pending notifications due at ``now`` (default: the clock), the longest due first,
        up to ``limit`` (1 to :data:`MAX_DUE`), leaving out the seqs in ``excluding`` (those
        the caller has in flight)."""
        _check_limit(limit, MAX_DUE)
        left_out = tuple(excluding)  # read now: the caller's set may change meanwhile
        for seq in left_out:
            _check_seq(seq)
        query = queries.pending_notifications(self._time(now), limit, left_out)
        return [_notification(row) for row in await self._fetch(*query)]

    async def counts(self) -> StoreCounts:
        """How many messages per status, inbound messages, and notifications per state.

        For tools and tests: counting messages per status reads an entry of an index for every
        message kept (0.4 s at 150,000 messages), and the writer waits meanwhile. The metrics
        read :meth:`notification_counts` only.
        """
        messages = dict.fromkeys(MessageStatus, 0)
        for status, count in await self._fetch(queries.MESSAGES_PER_STATUS):
            messages[MessageStatus(status)] = count
        (inbound,) = (await self._fetch(queries.INBOUND_COUNT))[0]
        notifications = await self.notification_counts()
        return StoreCounts(messages=messages, inbound=inbound, notifications=notifications)

    async def notification_counts(self) -> dict[NotificationState, int]:
        """Notifications in the webhook outbox per state (every state, 0 included): cheap,
        each state is counted over its own partial index."""
        (counts,) = await self._fetch(queries.NOTIFICATIONS_PER_STATE)
        return dict(zip(list(NotificationState), counts, strict=True))

    async def provider_stats(
        self,
        *,
        provider: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[ProviderStats]:
        """Minute buckets (``since`` <= minute < ``until``), by minute then provider."""
        if since is not None:
            _check_time("since", since)
        if until is not None:
            _check_time("until", until)
        rows = await self._fetch(*queries.provider_stats(provider, since, until))
        return [ProviderStats(*row) for row in rows]


@asynccontextmanager
async def run_store(
    db: SqliteDatabase,
    *,
    commit_interval: float = 0.005,
    max_batch: int = 500,
    clock: Clock = time.time,  # wall-clock
) -> AsyncIterator[Store]:
    """A store on a database the caller opened (the gateway shares one file with the queue).

    Creates or migrates the schema, and runs the writer task until the block ends; then the
    writes already handed over are committed before this returns. If the block is cancelled or
    raises, writes not yet committed fail with :class:`StoreClosed`.
    """
    writer = Writer(db, commit_interval=commit_interval, max_batch=max_batch)
    await migrate(db, clock=clock)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            try:
                yield Store(db, writer, clock=clock)
            finally:
                writer.close()
    except ExceptionGroup as group:
        # The nursery groups what the block raised; hand the caller its own exception back
        # (the writer task itself does not raise: it reports failures to the callers).
        error = lone(group)
        if isinstance(error, BaseExceptionGroup):
            raise
        raise error from error.__cause__


@asynccontextmanager
async def open_store(
    path: str | os.PathLike[str],
    *,
    commit_interval: float = 0.005,
    max_batch: int = 500,
    clock: Clock = time.time,  # wall-clock
    synchronous: Synchronous = "FULL",
    busy_timeout: float = 5.0,
) -> AsyncIterator[Store]:
    """Open the store in the SQLite file ``path`` (created if missing); closed when the block
    ends (after the writes handed over are committed).

    ``commit_interval``/``max_batch``: the group commit (:mod:`smsgw.storage.writer`).
    ``clock``: wall-clock epoch seconds for times the caller leaves out. ``synchronous`` and
    ``busy_timeout``: as :func:`smsgw.adapters.sqlite.open_sqlite` (``FULL``: a write that
    returned survives a power cut).
    """
    try:
        async with (
            open_sqlite(path, synchronous=synchronous, busy_timeout=busy_timeout) as db,
            run_store(
                db, commit_interval=commit_interval, max_batch=max_batch, clock=clock
            ) as store,
        ):
            yield store
    except DatabaseUnavailable as exc:
        raise StoreUnavailable(str(exc)) from exc
