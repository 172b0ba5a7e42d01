"""The MO handler on a real store, without sockets: the parts of multipart MOs stored before a
restart (:meth:`MoHandler.recover`), a whole message whose storing fails, tried again with its
parts kept, and a part the SMSC sends again after its message was stored."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import trio

from smpp_codec import Pdu
from smpp_codec.constants import CommandStatus, EsmClass
from smpp_codec.pdu import DeliverSm
from smsgw.dlr import Notifier
from smsgw.messages import Counters
from smsgw.mo import MoHandler
from smsgw.model import InboundPart
from smsgw.smpp.inbound import Inbound
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
        assert (message.text, message.parts, message.complete) == ("hello", 1, False)
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


def _udh8(number: int, text: bytes) -> tuple[Inbound, list[int]]:
    """Part ``number`` of 2 of reference 7, and the statuses it is answered with."""
    pdu = DeliverSm(
        sequence_number=1,
        source_addr="4915112345",
        destination_addr="12345",
        esm_class=EsmClass.UDHI,
        short_message=bytes([5, 0, 3, 7, 2, number]) + text,
    )
    answers: list[int] = []

    async def answer(_inbound: Inbound, response: Pdu) -> bool:
        answers.append(response.command_status)
        return True

    return Inbound(pdu, received_at=0.0, deadline=30.0, answerer=answer), answers


async def test_a_part_sent_again_after_its_message_was_stored_is_dropped(tmp_path: Path) -> None:
    async with open_store(tmp_path / "s.sqlite3") as store:
        counters = Counters()
        mo = MoHandler(store=store, counters=counters, notifier=Notifier(), clock=time.time)
        with trio.fail_after(10):
            for inbound, _answers in (_udh8(1, b"hello"), _udh8(2, b" world")):
                await mo.handle("a", inbound)
            # Our answer to part 2 was lost: the SMSC sends it again.
            again, answers = _udh8(2, b" world")
            await mo.handle("a", again)
            assert answers == [int(CommandStatus.ESME_ROK)]
            assert counters.mo_duplicate_parts == 1 and mo.pending == 0
            assert await store.inbound_parts() == []
            # The same key and number with other content is a new message (references repeat).
            other, _answers = _udh8(2, b" there")
            await mo.handle("a", other)
            assert mo.pending == 1 and counters.mo_duplicate_parts == 1
        (message,) = (await store.list_inbound()).items
        assert (message.text, message.parts) == ("hello world", 2)
