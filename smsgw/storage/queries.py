"""The store's read queries, built as (SQL, parameters) so that tests can check each one's plan.

Every query here is served by an index (tests/storage/test_schema.py runs ``EXPLAIN QUERY
PLAN`` on each): listings walk an index in their ``ORDER BY`` and stop after ``LIMIT``, lookups
are index searches. Two exceptions, both counts for metrics: messages per status and inbound
messages scan a covering index, so they cost O(rows).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from smsgw.model import MessageStatus, NotificationState
from smsgw.storage.errors import InvalidCursor

__all__ = [
    "EVENTS_OF",
    "INBOUND_COLUMNS",
    "MESSAGE_BY_ID",
    "MESSAGE_COLUMNS",
    "NOTIFICATION_COLUMNS",
    "PARTS_OF",
    "Query",
    "count_queries",
    "find_parts",
    "inbound_page",
    "make_cursor",
    "message_page",
    "parse_cursor",
    "pending_notifications",
    "provider_stats",
]

Query = tuple[str, list[Any]]

MESSAGE_COLUMNS = (
    "id, status, source, destination, part_count, client, client_ref, text, created_at,"
    " updated_at, reason, provider, schedule_at, expires_at, seq, callback_url"
)
INBOUND_COLUMNS = (
    "seq, id, provider, source, destination, payload, data_coding, text, part_count, received_at,"
    " complete"
)
NOTIFICATION_COLUMNS = (
    "seq, kind, target, body, subject, created_at, state, attempts, next_attempt_at,"
    " delivered_at, last_error"
)

MESSAGE_BY_ID = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?"
PARTS_OF = (
    "SELECT message_id, part_number, status, updated_at, reason, provider, smsc_id"
    " FROM parts WHERE message_id = ? ORDER BY part_number"
)
EVENTS_OF = (
    "SELECT seq, message_id, part_number, status, reason, at, applied"
    " FROM events WHERE message_id = ? ORDER BY seq"
)


# --- cursors: "<listing>:<time>:<seq>", the position of the last row of a page ---------------


def make_cursor(listing: str, at: float, seq: int) -> str:
    return f"{listing}:{at!r}:{seq}"


def parse_cursor(listing: str, cursor: str) -> tuple[float, int]:
    """The (time, seq) of a cursor of ``listing``; :class:`InvalidCursor` for anything else."""
    parts = cursor.split(":") if isinstance(cursor, str) else []
    try:
        if len(parts) != 3 or parts[0] != listing:
            raise ValueError
        at, seq = float(parts[1]), int(parts[2])
    except ValueError:
        raise InvalidCursor(f"not a cursor of this listing: {cursor!r}") from None
    if not math.isfinite(at):
        raise InvalidCursor(f"not a cursor of this listing: {cursor!r}")
    return at, seq


# --- listings ---------------------------------------------------------------------------------


def message_page(
    *,
    status: MessageStatus | None,
    client: str | None,
    client_ref: str | None,
    since: float | None,
    until: float | None,
    cursor: str | None,
    limit: int,
) -> Query:
    """Newest first: ``ORDER BY created_at DESC, seq DESC`` walks the index of the filter's
    column (status, client or client_ref, each with created_at), or of created_at alone; the
    rowid (``seq``) that ends every index entry breaks ties."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("status", status.value if status is not None else None),
        ("client", client),
        ("client_ref", client_ref),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    if until is not None:
        where.append("created_at < ?")
        params.append(until)
    if cursor is not None:
        where.append("(created_at, seq) < (?, ?)")
        params.extend(parse_cursor("m", cursor))
    sql = f"SELECT {MESSAGE_COLUMNS} FROM messages"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + " ORDER BY created_at DESC, seq DESC LIMIT ?", [*params, limit]


def inbound_page(cursor: str | None, limit: int) -> Query:
    sql = f"SELECT {INBOUND_COLUMNS} FROM inbound"
    params: list[Any] = []
    if cursor is not None:
        sql += " WHERE (received_at, seq) < (?, ?)"
        params.extend(parse_cursor("i", cursor))
    return sql + " ORDER BY received_at DESC, seq DESC LIMIT ?", [*params, limit]


def message_ids(ids: Sequence[str]) -> Query:
    marks = ", ".join("?" * len(ids))
    return f"SELECT id FROM messages WHERE id IN ({marks})", list(ids)


def find_parts(provider: str, smsc_ids: Sequence[str]) -> Query:
    marks = ", ".join("?" * len(smsc_ids))
    return (
        "SELECT smsc_id, message_id, part_number FROM smsc_ids"
        f" WHERE provider = ? AND smsc_id IN ({marks})",
        [provider, *smsc_ids],
    )


def pending_notifications(now: float, limit: int, excluding: Sequence[int] = ()) -> Query:
    if not excluding:
        return (
            f"SELECT {NOTIFICATION_COLUMNS} FROM notifications"
            " WHERE state = 'pending' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, seq LIMIT ?",
            [now, limit],
        )
    # The rows left out travel as one JSON array: any number, one parameter.
    return (
        f"SELECT {NOTIFICATION_COLUMNS} FROM notifications"
        " WHERE state = 'pending' AND next_attempt_at <= ?"
        " AND seq NOT IN (SELECT value FROM json_each(?))"
        " ORDER BY next_attempt_at, seq LIMIT ?",
        [now, json.dumps(excluding), limit],
    )


def provider_stats(provider: str | None, since: float | None, until: float | None) -> Query:
    where: list[str] = []
    params: list[Any] = []
    if provider is not None:
        where.append("provider = ?")
        params.append(provider)
    if since is not None:
        where.append("minute >= ?")
        params.append(since)
    if until is not None:
        where.append("minute < ?")
        params.append(until)
    sql = (
        "SELECT provider, minute, submitted, failed, throttled, receipts, latency_sum,"
        " latency_count FROM provider_stats"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + " ORDER BY minute, provider", params


# --- counts -----------------------------------------------------------------------------------

MESSAGES_PER_STATUS = "SELECT status, count(*) FROM messages GROUP BY status"
INBOUND_COUNT = "SELECT count(*) FROM inbound"
#: One count per state, each over its partial index (the states are our constants, inlined so
#: that SQLite sees which partial index applies).
NOTIFICATIONS_PER_STATE = "SELECT " + ", ".join(
    f"(SELECT count(*) FROM notifications WHERE state = '{state.value}')"
    for state in NotificationState
)


def count_queries() -> list[str]:
    return [MESSAGES_PER_STATUS, INBOUND_COUNT, NOTIFICATIONS_PER_STATE]
