"""The embedded queue backend: one table in a SQLite file (WAL), no server needed.

Layout (docs/queue.md has the full story): every message is one row of ``queue_messages`` with a
``state`` of ``ready``, ``leased`` or ``dead``.

- ``ready`` rows are served in the order of the partial index ``(priority DESC, due_at, seq)``:
  a lease is one indexed scan that stops after ``max_items`` due rows.
- ``leased`` rows carry the lease token, consumer and deadline; a partial index on the deadline
  lets every lease first turn expired leases back into ``ready`` rows, due at their deadline.
- ``dead`` rows carry the reason and time; a partial index on ``(dead_at, seq)`` lists them.

Every operation is one SQLite transaction (an enqueue of 100 messages too), taken with
``BEGIN IMMEDIATE`` where it reads before it writes, so leasing is atomic against other tasks,
other connections and other processes using the same file. The time (``clock()``) is read after
the write lock is held, so a lease never carries a time older than the state it was decided on.

Every operation is also ONE round trip to the database's thread: a module-level function that
runs all its statements there (the round trip, not the SQL, is what costs the Trio thread most).
Only an error path (naming the duplicate ids of a refused enqueue) takes a second one.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from smsgw.adapters.sqlite import (
    ConstraintViolation,
    DatabaseUnavailable,
    Row,
    SqliteDatabase,
    Synchronous,
    open_sqlite,
)
from smsgw.queue.base import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    REPLAYED,
    DeadLetter,
    DuplicateId,
    Lease,
    LeaseLost,
    NewMessage,
    QueueDepth,
    QueuedMessage,
    QueueError,
    QueueUnavailable,
)

Clock = Callable[[], float]

_T = TypeVar("_T")

# Statements are built with at most this many ``?`` per list of ids (SQLite allows 32766).
_CHUNK = 500

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS queue_messages (
        seq            INTEGER PRIMARY KEY,  -- enqueue order: a new rowid exceeds every present one
        id             TEXT    NOT NULL UNIQUE,
        payload        BLOB    NOT NULL,
        priority       INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 9),
        state          TEXT    NOT NULL CHECK (state IN ('ready', 'leased', 'dead')),
        due_at         REAL    NOT NULL,     -- when the message is (or was) due; orders a priority
        enqueued_at    REAL    NOT NULL,
        attempts       INTEGER NOT NULL DEFAULT 0,
        last_error     TEXT,
        lease_token    TEXT,                 -- leased: the holder's token
        lease_consumer TEXT,                 -- leased: who holds it (for operators)
        lease_deadline REAL,                 -- leased: visible again from this time
        dead_reason    TEXT,                 -- dead: why
        dead_at        REAL                  -- dead: since when
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS queue_messages_ready
        ON queue_messages (priority DESC, due_at, seq) WHERE state = 'ready'
    """,
    """
    CREATE INDEX IF NOT EXISTS queue_messages_leased
        ON queue_messages (lease_deadline) WHERE state = 'leased'
    """,
    """
    CREATE INDEX IF NOT EXISTS queue_messages_dead
        ON queue_messages (dead_at, seq) WHERE state = 'dead'
    """,
)

_MESSAGE_COLUMNS = "id, payload, priority, attempts, enqueued_at, last_error"

RECLAIM_SQL = """
    UPDATE queue_messages
       SET state = 'ready', due_at = lease_deadline,
           lease_token = NULL, lease_consumer = NULL, lease_deadline = NULL
     WHERE state = 'leased' AND lease_deadline <= ?
"""

LEASE_SQL = f"""
    UPDATE queue_messages
       SET state = 'leased', attempts = attempts + 1,
           lease_token = ?, lease_consumer = ?, lease_deadline = ?
     WHERE seq IN (SELECT seq FROM queue_messages
                    WHERE state = 'ready' AND due_at <= ?
                    ORDER BY priority DESC, due_at, seq
                    LIMIT ?)
 RETURNING {_MESSAGE_COLUMNS}, due_at, seq
"""

# A lease is held while its token matches and its deadline has not passed.
_HELD = "id = ? AND state = 'leased' AND lease_token = ? AND lease_deadline > ?"


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _message(row: Row) -> QueuedMessage:
    msg_id, payload, priority, attempts, enqueued_at, last_error = row[:6]
    return QueuedMessage(
        id=msg_id,
        payload=bytes(payload),
        priority=priority,
        attempts=attempts,
        enqueued_at=enqueued_at,
        last_error=last_error,
    )


def _check_time(name: str, value: float, *, positive: bool) -> None:
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def _check_new(messages: Sequence[NewMessage]) -> None:
    seen: set[str] = set()
    for message in messages:
        if not isinstance(message, NewMessage):
            raise TypeError(f"expected NewMessage, got {type(message).__name__}")
        if not isinstance(message.id, str) or not message.id:
            raise ValueError(f"message id must be a non-empty str, got {message.id!r}")
        if not isinstance(message.payload, bytes):
            raise TypeError(f"payload of {message.id!r} must be bytes, not {type(message.payload)}")
        if message.not_before is not None and not math.isfinite(message.not_before):
            raise ValueError(f"not_before of {message.id!r} must be finite")
        if message.id in seen:
            raise DuplicateId(f"duplicate message id in batch: {message.id!r}")
        seen.add(message.id)


# -- the operations, each run whole on the database's thread ---------------------------------
#
# A round trip to the database thread costs the Trio thread more CPU than the statements it
# carries, so each operation is one function run by ``SqliteDatabase.run_transaction`` (writes:
# BEGIN IMMEDIATE, the function, COMMIT) or ``SqliteDatabase.run`` (reads): one round trip.
# They touch only the connection and their arguments. The writes call ``clock()`` first thing,
# i.e. right after BEGIN IMMEDIATE took the write lock, so a write never carries a time older
# than the state it was decided on; this is why the clock must be safe to call from another
# thread (see ``SqliteQueue``).


def _enqueue(conn: sqlite3.Connection, clock: Clock, messages: Sequence[NewMessage]) -> None:
    now = clock()
    conn.executemany(
        "INSERT INTO queue_messages (id, payload, priority, state, due_at, enqueued_at)"
        " VALUES (?, ?, ?, 'ready', ?, ?)",
        [
            (
                m.id,
                m.payload,
                m.priority,
                now if m.not_before is None else max(m.not_before, now),
                now,
            )
            for m in messages
        ],
    )


def _existing_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> list[str]:
    found: list[str] = []
    for chunk in _chunks(ids):
        rows = conn.execute(
            f"SELECT id FROM queue_messages WHERE id IN ({_marks(len(chunk))})", chunk
        ).fetchall()
        found.extend(row[0] for row in rows)
    return sorted(found)


def _lease(
    conn: sqlite3.Connection,
    clock: Clock,
    token: str,
    consumer: str,
    max_items: int,
    visibility_timeout: float,
) -> list[Lease]:
    now = clock()
    conn.execute(RECLAIM_SQL, (now,))
    deadline = now + visibility_timeout
    rows = conn.execute(LEASE_SQL, (token, consumer, deadline, now, max_items)).fetchall()
    # RETURNING yields rows in no promised order: restore the service order.
    rows.sort(key=lambda row: (-row[2], row[6], row[7]))
    return [Lease(message=_message(row), token=token, deadline=deadline) for row in rows]


def _ack(
    conn: sqlite3.Connection, clock: Clock, by_token: Mapping[str, Sequence[str]]
) -> set[tuple[str, str]]:
    """Delete the held leases among ``by_token`` (token -> ids); returns the (id, token) deleted."""
    now = clock()
    deleted: set[tuple[str, str]] = set()
    for token, ids in by_token.items():
        for chunk in _chunks(ids):
            rows = conn.execute(
                f"DELETE FROM queue_messages WHERE id IN ({_marks(len(chunk))})"
                " AND state = 'leased' AND lease_token = ? AND lease_deadline > ?"
                " RETURNING id, lease_token",
                (*chunk, token, now),
            ).fetchall()
            deleted.update((row[0], row[1]) for row in rows)
    return deleted


def _nack(
    conn: sqlite3.Connection, clock: Clock, msg_id: str, token: str, delay: float, reason: str
) -> int:
    now = clock()
    return conn.execute(
        "UPDATE queue_messages SET state = 'ready', due_at = ?, last_error = ?,"
        " lease_token = NULL, lease_consumer = NULL, lease_deadline = NULL"
        f" WHERE {_HELD}",
        (now + delay, reason, msg_id, token, now),
    ).rowcount


def _extend(
    conn: sqlite3.Connection, clock: Clock, msg_id: str, token: str, visibility_timeout: float
) -> float | None:
    """The new deadline, or None if the lease is not held."""
    now = clock()
    deadline = now + visibility_timeout
    changed = conn.execute(
        f"UPDATE queue_messages SET lease_deadline = ? WHERE {_HELD}",
        (deadline, msg_id, token, now),
    ).rowcount
    return deadline if changed else None


def _dead_letter(
    conn: sqlite3.Connection, clock: Clock, msg_id: str, token: str, reason: str
) -> int:
    now = clock()
    return conn.execute(
        "UPDATE queue_messages SET state = 'dead', dead_reason = ?, dead_at = ?,"
        " lease_token = NULL, lease_consumer = NULL, lease_deadline = NULL"
        f" WHERE {_HELD}",
        (reason, now, msg_id, token, now),
    ).rowcount


def _dead_letters(conn: sqlite3.Connection, limit: int, offset: int) -> list[DeadLetter]:
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS}, dead_reason, dead_at FROM queue_messages"
        " WHERE state = 'dead' ORDER BY dead_at, seq LIMIT ? OFFSET ?",
        (limit, offset),
    ).fetchall()
    return [DeadLetter(message=_message(row), reason=row[6], dead_at=row[7]) for row in rows]


def _replay(
    conn: sqlite3.Connection, clock: Clock, ids: Sequence[str], priority: int | None
) -> int:
    now = clock()
    moved = 0
    for chunk in _chunks(ids):
        moved += conn.execute(
            "UPDATE queue_messages SET state = 'ready', attempts = 0, due_at = ?,"
            " priority = coalesce(?, priority), dead_reason = NULL, dead_at = NULL,"
            " last_error = ? || coalesce(dead_reason, '')"  # the row's old dead_reason
            f" WHERE state = 'dead' AND id IN ({_marks(len(chunk))})",
            (now, priority, REPLAYED, *chunk),
        ).rowcount
    return moved


def _purge(conn: sqlite3.Connection, ids: Sequence[str]) -> int:
    deleted = 0
    for chunk in _chunks(ids):
        deleted += conn.execute(
            f"DELETE FROM queue_messages WHERE id IN ({_marks(len(chunk))})", chunk
        ).rowcount
    return deleted


def _probe(conn: sqlite3.Connection) -> None:
    # Setting user_version to its own value still writes the header page to the write-ahead
    # log: this fails where any write would, and changes nothing.
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    conn.execute(f"PRAGMA user_version = {int(version)}")


def _depth(conn: sqlite3.Connection, clock: Clock) -> QueueDepth:
    """The counts, each from a range of one of the partial indexes (run in one read
    transaction, so they agree). A single ``GROUP BY`` over the table was simpler, but it read
    every row and its payload: 175 ms at 150,000 messages, during which the queue's one
    connection served nothing else; these take about 15 ms there."""
    now = clock()
    count = "SELECT count(*) FROM queue_messages WHERE "
    ready_by_priority: dict[int, int] = {}
    delayed = 0
    for priority in range(MIN_PRIORITY, MAX_PRIORITY + 1):
        (due,) = conn.execute(
            count + "state = 'ready' AND priority = ? AND due_at <= ?", (priority, now)
        ).fetchone()
        (later,) = conn.execute(
            count + "state = 'ready' AND priority = ? AND due_at > ?", (priority, now)
        ).fetchone()
        delayed += later
        if due:
            ready_by_priority[priority] = due
    # An expired lease is ready again (the next lease reclaims it): counted as ready.
    for priority, expired in conn.execute(
        "SELECT priority, count(*) FROM queue_messages"
        " WHERE state = 'leased' AND lease_deadline <= ? GROUP BY priority",
        (now,),
    ):
        ready_by_priority[priority] = ready_by_priority.get(priority, 0) + expired
    (leased,) = conn.execute(count + "state = 'leased' AND lease_deadline > ?", (now,)).fetchone()
    (dead,) = conn.execute(count + "state = 'dead'").fetchone()
    return QueueDepth(
        ready=sum(ready_by_priority.values()),
        delayed=delayed,
        leased=leased,
        dead=dead,
        ready_by_priority=dict(sorted(ready_by_priority.items())),
    )


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        conn.execute(statement)


async def create_schema(db: SqliteDatabase) -> None:
    """Create the queue's tables and indexes if missing (idempotent, safe to race)."""
    try:
        await db.run_transaction(_create_schema)
    except DatabaseUnavailable as exc:
        raise QueueUnavailable(str(exc)) from exc


class SqliteQueue:
    """The :class:`~smsgw.queue.base.Queue` contract on a SQLite database.

    Construct with :func:`open_sqlite_queue`, or on a database the caller already has open (the
    gateway shares its file) with ``await create_schema(db)`` then ``SqliteQueue(db, clock=...)``.
    Several processes may open queues on the same file: they share one queue.

    Each operation is one round trip to the database's thread (one transaction), and ``clock``
    is called on that thread, under the write lock: it must be a plain thread-safe function
    (``time.time``, a fake that returns a number), never ``trio.current_time``.
    """

    def __init__(self, db: SqliteDatabase, *, clock: Clock = time.time) -> None:  # wall-clock
        self._db = db
        self._clock = clock
        self._closed = False
        self._writes_failing = False

    @property
    def writes_failing(self) -> bool:
        """The last write transaction was refused as unavailable (the file's disk is full, a
        lock held elsewhere beyond the busy timeout), and no write has committed since. Reads
        may still work meanwhile: this is what tells."""
        return self._writes_failing

    async def probe_write(self) -> None:
        """A write that changes nothing (it rewrites the file's header as it is): returns once
        committed, raises :class:`QueueUnavailable` if the file cannot take writes now, and
        sets :attr:`writes_failing` accordingly."""
        await self._write(_probe)

    def _check_open(self) -> None:
        if self._closed:
            raise QueueError("queue is closed")

    async def _write(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(conn, *args)`` in one BEGIN IMMEDIATE transaction, in one round trip."""
        self._check_open()
        try:
            result = await self._db.run_transaction(fn, *args)
        except DatabaseUnavailable as exc:
            self._writes_failing = True
            raise QueueUnavailable(str(exc)) from exc
        if fn is not _lease or result:  # a lease that found nothing wrote nothing: no proof
            self._writes_failing = False
        return result

    async def _read(self, fn: Callable[..., _T], *args: Any, snapshot: bool = False) -> _T:
        """``fn(conn, *args)`` outside a transaction (one statement reads a consistent state),
        or with ``snapshot`` in a read transaction (several statements read the same state)."""
        self._check_open()
        try:
            if snapshot:
                return await self._db.run_transaction(fn, *args, immediate=False)
            return await self._db.run(fn, *args)
        except DatabaseUnavailable as exc:
            raise QueueUnavailable(str(exc)) from exc

    async def enqueue(self, messages: Sequence[NewMessage]) -> None:
        _check_new(messages)
        if not messages:
            return
        try:
            # A snapshot: the list is read on the database thread while other tasks run.
            await self._write(_enqueue, self._clock, tuple(messages))
        except ConstraintViolation as exc:
            # The error path may take a second round trip: name the ids already stored.
            existing = await self._read(_existing_ids, [m.id for m in messages])
            raise DuplicateId(f"message ids already in the queue: {existing}") from exc

    async def lease(self, consumer: str, max_items: int, visibility_timeout: float) -> list[Lease]:
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise ValueError(f"max_items must be an int >= 1, got {max_items!r}")
        _check_time("visibility_timeout", visibility_timeout, positive=True)
        token = uuid.uuid4().hex
        return await self._write(
            _lease, self._clock, token, consumer, max_items, visibility_timeout
        )

    async def ack(self, leases: Sequence[Lease]) -> None:
        if not leases:
            return
        by_token: dict[str, list[str]] = {}
        for lease in leases:
            by_token.setdefault(lease.token, []).append(lease.message.id)
        deleted = await self._write(_ack, self._clock, by_token)
        # Judged against the state before the call, so a lease listed twice is acked once.
        lost = sorted({x.message.id for x in leases if (x.message.id, x.token) not in deleted})
        if lost:
            raise LeaseLost(f"leases no longer held (not acked): {lost}")

    async def nack(self, lease: Lease, *, delay: float, reason: str) -> None:
        _check_time("delay", delay, positive=False)
        if not await self._write(_nack, self._clock, lease.message.id, lease.token, delay, reason):
            raise LeaseLost(f"lease of {lease.message.id!r} no longer held (not nacked)")

    async def extend(self, lease: Lease, visibility_timeout: float) -> Lease:
        _check_time("visibility_timeout", visibility_timeout, positive=True)
        deadline = await self._write(
            _extend, self._clock, lease.message.id, lease.token, visibility_timeout
        )
        if deadline is None:
            raise LeaseLost(f"lease of {lease.message.id!r} no longer held (not extended)")
        return Lease(message=lease.message, token=lease.token, deadline=deadline)

    async def dead_letter(self, lease: Lease, *, reason: str) -> None:
        if not await self._write(_dead_letter, self._clock, lease.message.id, lease.token, reason):
            raise LeaseLost(f"lease of {lease.message.id!r} no longer held (not dead-lettered)")

    async def dead_letters(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got {limit}, {offset}")
        return await self._read(_dead_letters, limit, offset)

    async def replay(self, ids: Sequence[str], *, priority: int | None = None) -> int:
        if priority is not None and not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be {MIN_PRIORITY}..{MAX_PRIORITY}, got {priority}")
        return await self._write(_replay, self._clock, list(dict.fromkeys(ids)), priority)

    async def purge(self, ids: Sequence[str]) -> int:
        return await self._write(_purge, list(dict.fromkeys(ids)))

    async def depth(self) -> QueueDepth:
        return await self._read(_depth, self._clock, snapshot=True)

    async def aclose(self) -> None:
        """Refuse further calls. The database belongs to whoever opened it and is not closed."""
        self._closed = True


@asynccontextmanager
async def open_sqlite_queue(
    path: str | os.PathLike[str],
    *,
    clock: Clock = time.time,  # wall-clock
    synchronous: Synchronous = "FULL",
    busy_timeout: float = 5.0,
) -> AsyncIterator[SqliteQueue]:
    """Open the queue in the SQLite file ``path`` (created if missing); closed when the block ends.

    ``clock`` gives wall-clock epoch seconds (tests pass a fake one). ``synchronous="FULL"`` makes
    an enqueue durable against power loss when it returns; ``"NORMAL"`` only against a crash of
    the process (docs/queue.md). ``busy_timeout``: seconds to wait for another connection's write
    lock before an operation fails with ``QueueUnavailable``.
    """
    try:
        async with open_sqlite(path, synchronous=synchronous, busy_timeout=busy_timeout) as db:
            await create_schema(db)
            queue = SqliteQueue(db, clock=clock)
            try:
                yield queue
            finally:
                await queue.aclose()
    except DatabaseUnavailable as exc:
        raise QueueUnavailable(str(exc)) from exc
