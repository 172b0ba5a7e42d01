"""Keyset pagination: no duplicates and no gaps, also while messages are being inserted."""

from __future__ import annotations

import trio
from fakeclock import START, FakeClock

from smsgw.model import MessageStatus, NewInbound, NewMessage, StatusEvent
from smsgw.storage import MessageFilter, Store

T = 30
MAX_PAGES = 30  # every paging loop stops here at the latest


def msg(message_id: str, created_at: float | None = None) -> NewMessage:
    return NewMessage(id=message_id, source="gw", destination="1", created_at=created_at)


async def test_pages_have_no_duplicates_or_gaps_while_inserting(
    store: Store, clock: FakeClock
) -> None:
    with trio.fail_after(T):
        # Four messages per creation time, so page boundaries fall inside ties (seq decides).
        await store.create_messages([msg(f"m{i:02}", START + i // 4) for i in range(57)])
        initial = [f"m{i:02}" for i in reversed(range(57))]  # newest first
        clock.advance(100)
        seen: list[str] = []
        cursor = None
        for page_number in range(MAX_PAGES):
            page = await store.list_messages(cursor=cursor, limit=10)
            seen.extend(m.id for m in page.items)
            # Concurrent inserts: new messages (newer than anything listed) and a late one
            # created in the past (older than anything listed).
            clock.advance(1)
            await store.create_messages([msg(f"new{page_number}-{k}") for k in range(3)])
            await store.create_messages([msg(f"past{page_number}", START - 100 + page_number)])
            cursor = page.next_cursor
            if cursor is None:
                break
    assert len(seen) == len(set(seen)), "duplicates across pages"
    assert seen[:57] == initial, "gaps or disorder among the messages that existed"
    extra = seen[57:]
    assert all(m.startswith("past") for m in extra)  # never the newer inserts
    # The past ones that were listed come newest first, like everything else.
    assert extra == sorted(extra, key=lambda m: -int(m[4:]))


async def test_filtered_pages(store: Store) -> None:
    with trio.fail_after(T):
        await store.create_messages([msg(f"m{i:02}", START + i // 3) for i in range(40)])
        await store.record_events(
            [StatusEvent(f"m{i:02}", MessageStatus.FAILED, "x") for i in range(0, 40, 2)]
        )
        seen: list[str] = []
        cursor = None
        for _ in range(MAX_PAGES):
            page = await store.list_messages(
                MessageFilter(status=MessageStatus.FAILED), cursor=cursor, limit=3
            )
            seen.extend(m.id for m in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    assert seen == [f"m{i:02}" for i in reversed(range(0, 40, 2))]


async def test_exact_multiple_of_the_page_size_has_no_empty_last_page(store: Store) -> None:
    with trio.fail_after(T):
        await store.create_messages([msg(f"m{i}") for i in range(4)])
        first = await store.list_messages(limit=2)
        assert first.next_cursor is not None
        second = await store.list_messages(cursor=first.next_cursor, limit=2)
    assert len(second.items) == 2 and second.next_cursor is None


async def test_inbound_pages(store: Store, clock: FakeClock) -> None:
    def inbound(i: int) -> NewInbound:
        return NewInbound(
            id=f"i{i:02}", provider="p", source="a", destination="b", payload=b"x",
            received_at=START + i // 3,
        )  # fmt: skip

    with trio.fail_after(T):
        await store.store_inbound([inbound(i) for i in range(23)])
        clock.advance(100)  # what arrives while paging is newer than all of it
        seen: list[str] = []
        cursor = None
        for n in range(MAX_PAGES):
            page = await store.list_inbound(cursor=cursor, limit=5)
            seen.extend(m.id for m in page.items)
            clock.advance(1)
            await store.store_inbound(
                [NewInbound(id=f"late{n}", provider="p", source="a", destination="b", payload=b"")]
            )
            cursor = page.next_cursor
            if cursor is None:
                break
    assert seen == [f"i{i:02}" for i in reversed(range(23))]
