"""The MO handler on a real store, without sockets: the parts of multipart MOs stored before a
restart (:meth:`MoHandler.recover`), and a whole message whose storing fails, tried again with
its parts kept."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import trio

from smsgw.dlr import Notifier
from smsgw.messages import Counters
from smsgw.mo import MoHandler
from smsgw.model import InboundPart
from smsgw.storage import open_store

from .harness import wait_until


def _part(number: int, payload: bytes, *, received_at: float | None = None) -> InboundPart:
    return InboundPart(
        provider="a",
        source="4915112345",
        destination="12345",
        reference=7,
        total=2,
        number=number,
        payload=payload,
        received_at=received_at,
    )


async def test_recovered_parts_that_complete_a_message_are_stored_at_once(tmp_path: Path) -> None:
    async with open_store(tmp_path / "s.sqlite3") as store:
        await store.store_inbound_part(_part(2, b" world"))
        await store.store_inbound_part(_part(1, b"hello"))
        mo = MoHandler(store=store, counters=Counters(), notifier=Notifier(), clock=time.time)
        await mo.recover()
        (message,) = (await store.list_inbound()).items
        assert (message.text, message.parts, message.provider) == ("hello world", 2, "a")
        assert await store.inbound_parts() == [] and mo.pending == 0


async def test_a_recovered_part_keeps_its_age(tmp_path: Path, nursery: trio.Nursery) -> None:
    async with open_store(tmp_path / "s.sqlite3") as store:
        # Received 19.8 s ago: with the default 20 s, its message has 0.2 s left.
        await store.store_inbound_part(_part(1, b"hello", received_at=time.time() - 19.8))
        counters = Counters()
        mo = MoHandler(store=store, counters=counters, notifier=Notifier(), clock=time.time)
        await mo.recover()
        assert mo.pending == 1
        nursery.start_soon(mo.run_expiry)
        with trio.fail_after(5):  # well below the 20 s a fresh part would wait
            await wait_until(lambda: counters.mo_incomplete == 1, what="stored incomplete")
        (message,) = (await store.list_inbound()).items
        assert (message.text, message.parts) == ("hello", 1)
        nursery.cancel_scope.cancel()


async def test_a_whole_message_not_stored_is_tried_again_with_its_parts_kept(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    path = tmp_path / "s.sqlite3"
    async with open_store(path, busy_timeout=0.2) as store:
        await store.store_inbound_part(_part(1, b"hello"))
        await store.store_inbound_part(_part(2, b" world"))
        counters = Counters()
        mo = MoHandler(store=store, counters=counters, notifier=Notifier(), clock=time.time)
        # Another process holds the write lock past the busy timeout.
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            await mo.recover()
            assert counters.mo_store_failures == 1 and counters.mo_received == 0
            assert len(await store.inbound_parts()) == 2  # kept: nothing is lost
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        nursery.start_soon(mo.run_expiry)
        with trio.fail_after(5):
            await wait_until(lambda: counters.mo_received == 1, what="stored on a later try")
        (message,) = (await store.list_inbound()).items
        assert (message.text, message.parts) == ("hello world", 2)
        assert await store.inbound_parts() == [] and counters.mo_incomplete == 0
        nursery.cancel_scope.cancel()
