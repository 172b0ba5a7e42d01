"""Schema versioning, a restart keeps everything, and every query is served by an index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
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
from smsgw.storage import MessageFilter, SchemaError, open_store, queries
from smsgw.storage.retention import _STEPS
from smsgw.storage.schema import MIGRATIONS, SCHEMA_VERSION

from .helpers import read

T = 30
TABLES = {"messages", "parts", "events", "smsc_ids", "inbound", "notifications", "provider_stats"}


def tables(path: Path) -> set[str]:
    return {row[0] for row in read(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}


async def test_schema_is_created_once_and_versioned(db_path: Path, clock: FakeClock) -> None:
    with trio.fail_after(T):
        for _ in range(3):
            async with open_store(db_path, clock=clock):
                pass
    assert TABLES | {"schema_version"} <= tables(db_path)
    # One row per migration, each applied once.
    assert read(db_path, "SELECT component, version, applied_at FROM schema_version") == [
        ("storage", version, START) for version in range(1, SCHEMA_VERSION + 1)
    ]
    assert [version for version, _, _ in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


async def test_two_processes_opening_a_new_file_at_once(db_path: Path, clock: FakeClock) -> None:
    async def open_one(message_id: str) -> None:
        async with open_store(db_path, clock=clock) as store:
            await store.create_messages(
                [NewMessage(id=message_id, source="a", destination="1")]
            )

    with trio.fail_after(T):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(open_one, "m1")
            nursery.start_soon(open_one, "m2")
    assert read(db_path, "SELECT count(*) FROM schema_version") == [(SCHEMA_VERSION,)]
    assert read(db_path, "SELECT count(*) FROM messages") == [(2,)]


async def test_a_version_1_database_is_migrated_and_keeps_its_messages(
    db_path: Path, clock: FakeClock
) -> None:
    # A file as the first release left it: only migration 1, one message in it.
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute(
            "CREATE TABLE schema_version (component TEXT NOT NULL, version INTEGER NOT NULL,"
            " applied_at REAL NOT NULL, PRIMARY KEY (component, version))"
        )
        _version, _description, statements = MIGRATIONS[0]
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES ('storage', 1, 0)")
        conn.execute(
            "INSERT INTO messages (id, status, source, destination, part_count, created_at,"
            " updated_at, reason) VALUES ('old', 'queued', 'a', '1', 1, 5, 5, 'accepted')"
        )
        conn.execute(
            "INSERT INTO parts (message_id, part_number, status, updated_at, reason)"
            " VALUES ('old', 1, 'queued', 5, 'accepted')"
        )
        conn.execute(
            "INSERT INTO inbound (id, provider, source, destination, payload, data_coding,"
            " text, part_count, received_at) VALUES ('mo', 'p', 's', 'd', x'6869', 0, 'hi', 1, 5)"
        )
    conn.close()
    with trio.fail_after(T):
        async with open_store(db_path, clock=clock) as store:
            await store.create_messages(
                [NewMessage(id="new", source="a", destination="1", callback_url="http://h/cb")]
            )
            old = await store.get_message("old")
            new = await store.get_message("new")
            (mo,) = (await store.list_inbound()).items
            assert await store.inbound_parts() == [] and await store.parked_receipts() == []
    assert (mo.text, mo.complete) == ("hi", True)  # rows from before migration 5 say complete
    assert old is not None and old.message.callback_url is None
    assert new is not None and new.message.callback_url == "http://h/cb"
    assert read(db_path, "SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v in range(1, SCHEMA_VERSION + 1)
    ]


async def test_a_newer_schema_is_refused(db_path: Path, clock: FakeClock) -> None:
    with trio.fail_after(T):
        async with open_store(db_path, clock=clock):
            pass
        conn = sqlite3.connect(db_path)
        with conn:
            conn.execute(
                "INSERT INTO schema_version VALUES ('storage', ?, 0)", (SCHEMA_VERSION + 1,)
            )
        conn.close()
        with pytest.raises(SchemaError, match="newer smsgw"):
            async with open_store(db_path, clock=clock):
                pass


async def test_a_restart_keeps_everything(db_path: Path, clock: FakeClock) -> None:
    async def snapshot() -> object:
        async with open_store(db_path, clock=clock) as store:
            return (
                await store.get_message("m"),
                await store.list_messages(MessageFilter(client_ref="ref")),
                await store.find_part_by_smsc_id("p", "77"),
                await store.list_inbound(),
                await store.pending_notifications(now=START + 10),
                await store.provider_stats(),
                await store.counts(),
            )

    with trio.fail_after(T):
        async with open_store(db_path, clock=clock) as store:  # synchronous=FULL, the default
            await store.create_messages(
                [NewMessage(id="m", source="a", destination="1", parts=2, client_ref="ref")]
            )
            await store.map_smsc_ids([SmscIdMapping("p", "77", "m", 2)])
            await store.record_events(
                [StatusEvent("m", MessageStatus.DELIVERED, "DELIVRD", part_number=2)]
            )
            await store.store_inbound(
                [NewInbound(id="i", provider="p", source="a", destination="b", payload=b"\xff")],
                [NewNotification(NotificationKind.INBOUND, "https://h", "{}", "i")],
            )
            await store.record_provider_stats([ProviderStatsDelta("p", receipts=1)])
        first = await snapshot()
        second = await snapshot()
    assert first == second
    detail = first[0]  # type: ignore[index]
    assert detail is not None and len(detail.events) == 4
    assert first[2] is not None  # type: ignore[index]


# --- every query is served by an index --------------------------------------------------------


def plan(path: Path, sql: str, params: object = ()) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]  # type: ignore[arg-type]
    finally:
        conn.close()


def listing_queries() -> list[tuple[str, list[object]]]:
    cursor = queries.make_cursor("m", START, 5)
    out = []
    for status in (None, MessageStatus.FAILED):
        for client, client_ref in ((None, None), ("acme", None), (None, "ref")):
            for since, until in ((None, None), (START, START + 60)):
                for page_cursor in (None, cursor):
                    out.append(
                        queries.message_page(
                            status=status, client=client, client_ref=client_ref, since=since,
                            until=until, cursor=page_cursor, limit=10,
                        )
                    )  # fmt: skip
    out.append(queries.inbound_page(None, 10))
    out.append(queries.inbound_page(queries.make_cursor("i", START, 3), 10))
    out.append(queries.find_parts("p", ["1", "2", "3"]))
    out.append(queries.pending_notifications(START, 10))
    out.append(queries.pending_notifications(START, 10, (1, 2, 3)))
    out.append(queries.provider_stats("p", START, START + 600))
    out.append((queries.MESSAGE_BY_ID, ["m"]))
    out.append((queries.PARTS_OF, ["m"]))
    out.append((queries.EVENTS_OF, ["m"]))
    out.extend((sql, []) for sql in queries.count_queries())
    out.extend((sql, {"cutoff": START, "limit": 10}) for sql in _STEPS.values())  # type: ignore[misc]
    return out


async def test_every_query_uses_an_index(db_path: Path, clock: FakeClock) -> None:
    """No full table scan, no sort in a temporary b-tree: every query searches an index, or
    walks one in its ORDER BY order (and stops at LIMIT), or counts over a covering index."""
    with trio.fail_after(T):
        async with open_store(db_path, clock=clock):
            pass
    for sql, params in listing_queries():
        steps = plan(db_path, sql, params)
        for step in steps:
            assert "TEMP B-TREE" not in step, (sql, steps)
            # json_each walks a parameter (the due rows left out), not a table.
            if step.startswith("SCAN") and step != "SCAN CONSTANT ROW":
                if step.startswith("SCAN json_each VIRTUAL TABLE"):
                    continue
                assert " USING INDEX " in step or " USING COVERING INDEX " in step, (sql, steps)
        if sql.startswith("SELECT id, status") and " WHERE " in sql:
            assert any(step.startswith("SEARCH messages USING INDEX") for step in steps), steps
