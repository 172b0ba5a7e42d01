"""The MO handler on a real store, without sockets: the parts of multipart MOs stored before a
restart (:meth:`MoHandler.recover`), a whole message whose storing fails, tried again with its
parts kept, and a part the SMSC sends again after its message was stored; and a property over
parts in any order, sent again, across restarts."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_lock import write_locked

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
        with write_locked(path):
            await mo.recover()
            assert counters.mo_store_failures == 1 and counters.mo_received == 0
            assert len(await store.inbound_parts()) == 2  # kept: nothing is lost
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


# --- a property: parts in any order, sent again, across restarts ----------------------------


@st.composite
def _traffic(draw: st.DrawFn) -> tuple[list[list[bytes]], list[tuple[str, int, int]]]:
    """Messages (their parts' payloads), and what happens: ("part", message, number-1) in any
    order, some parts sent again, and ("restart", 0, 0) anywhere."""
    messages = [
        [draw(st.binary(min_size=1, max_size=6)) for _ in range(draw(st.integers(2, 3)))]
        for _ in range(draw(st.integers(1, 3)))
    ]
    parts = [("part", i, j) for i, payloads in enumerate(messages) for j in range(len(payloads))]
    again = draw(st.lists(st.sampled_from(parts), max_size=3))
    events = draw(st.permutations(parts + again))
    for _ in range(draw(st.integers(0, 2))):
        events.insert(draw(st.integers(0, len(events))), ("restart", 0, 0))
    return messages, events


def _expected(
    messages: list[list[bytes]], events: list[tuple[str, int, int]]
) -> tuple[list[bytes], int]:
    """What the handler should have stored (the joined payloads of whole messages, in any
    order) and how many part rows should still wait, by the rules of smsgw/mo.py: a copy of a
    part of a message already stored is dropped if no restart came between, else it starts a
    message of its own."""
    stored: list[bytes] = []
    pending: dict[int, dict[int, bytes]] = {}
    rows: dict[int, int] = {}  # stored part rows of each pending message
    recent: set[tuple[int, int]] = set()  # parts of messages stored in this process
    for kind, i, j in events:
        if kind == "restart":
            recent = set()
            continue
        if i not in pending and (i, j) in recent:
            continue  # recognised and dropped
        collected = pending.setdefault(i, {})
        collected.setdefault(j, messages[i][j])
        rows[i] = rows.get(i, 0) + 1
        if len(collected) == len(messages[i]):
            stored.append(b"".join(collected[n] for n in range(len(messages[i]))))
            recent |= {(i, n) for n in collected}
            del pending[i], rows[i]
    return stored, sum(rows.values())


def _pdu_of(i: int, j: int, total: int, payload: bytes) -> DeliverSm:
    return DeliverSm(
        sequence_number=1,
        source_addr="4915112345",
        destination_addr="12345",
        esm_class=EsmClass.UDHI,
        data_coding=4,  # binary: the payloads are any bytes
        short_message=bytes([5, 0, 3, i + 1, total, j + 1]) + payload,
    )


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traffic=_traffic())
async def test_every_message_is_stored_once_whatever_the_order_copies_and_restarts(
    traffic: tuple[list[list[bytes]], list[tuple[str, int, int]]],
) -> None:
    messages, events = traffic
    answered: list[int] = []

    async def answer(_inbound: Inbound, response: Pdu) -> bool:
        answered.append(response.command_status)
        return True

    with tempfile.TemporaryDirectory() as tmp, trio.fail_after(30):
        path = Path(tmp) / "s.sqlite3"
        segments: list[list[tuple[str, int, int]]] = [[]]
        for event in events:
            if event[0] == "restart":
                segments.append([])
            else:
                segments[-1].append(event)
        for segment in segments:  # each a process: its store opened, its parts recovered
            async with open_store(path, synchronous="OFF") as store:
                mo = MoHandler(
                    store=store, counters=Counters(), notifier=Notifier(), clock=time.time
                )
                await mo.recover()
                for _kind, i, j in segment:
                    pdu = _pdu_of(i, j, len(messages[i]), messages[i][j])
                    await mo.handle(
                        "a", Inbound(pdu, received_at=0.0, deadline=30.0, answerer=answer)
                    )
                stored = [m.payload for m in (await store.list_inbound(limit=1000)).items]
                left = len(await store.inbound_parts())
    expected, waiting = _expected(messages, events)
    assert sorted(stored) == sorted(expected) and left == waiting
    assert answered == [int(CommandStatus.ESME_ROK)] * (len(events) - len(segments) + 1)
