"""The parts of multipart MOs shared between instances through Redis (smsgw/mo_shared.py): on a
real Redis, the scripts' rules (claim on the last part, copies, messages timed out, claims left
by a crash), a property over parts spread over two instances, and the MO handler with shared
parts on real stores: each message stored once, in one instance, whatever instance its parts
reached."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_lock import write_locked

from smpp_codec import Pdu
from smpp_codec.constants import CommandStatus, EsmClass
from smpp_codec.pdu import DeliverSm
from smsgw.adapters.redis import RedisClient, open_redis
from smsgw.dlr import Notifier
from smsgw.messages import Counters
from smsgw.mo import MoHandler
from smsgw.mo_shared import Added, Claim, SharedParts
from smsgw.model import InboundPart, NewInbound
from smsgw.smpp.inbound import Inbound
from smsgw.storage import Store, open_store
from smsgw.testing.ports import free_port

from .harness import wait_until

OK = int(CommandStatus.ESME_ROK)
RETRY_LATER = int(CommandStatus.ESME_RX_T_APPN)


def part(
    number: int, payload: bytes, *, total: int = 2, reference: int = 7, data_coding: int = 0
) -> InboundPart:
    return InboundPart(
        provider="smsc",
        source="4915112345",
        destination="12345",
        reference=reference,
        total=total,
        number=number,
        payload=payload,
        data_coding=data_coding,
    )


# --- the scripts ------------------------------------------------------------------------------


async def test_the_part_that_completes_a_message_claims_it_with_every_part(
    redis: RedisClient, prefix: str
) -> None:
    shared = SharedParts(redis, prefix, "a")
    assert await shared.add(part(3, b"!", total=3)) is Added.PENDING
    assert await shared.add(part(1, b"hello", total=3, data_coding=8)) is Added.PENDING
    assert await shared.count() == (1, 0)
    claim = await shared.add(part(2, b" world", total=3))
    assert isinstance(claim, Claim) and claim.complete
    assert claim.key == part(1, b"", total=3).key
    assert (claim.payload, claim.data_coding) == (b"hello world!", 8)  # part 1's coding
    assert await shared.count() == (0, 1)
    assert await shared.done(claim) is True
    assert await shared.count() == (0, 0)
    assert await shared.done(claim) is False  # done already


async def test_copies_of_parts_are_kept_once_and_recognised_after_their_message(
    redis: RedisClient, prefix: str
) -> None:
    shared = SharedParts(redis, prefix, "a")
    assert await shared.add(part(1, b"hello")) is Added.PENDING
    assert await shared.add(part(1, b"hello")) is Added.PENDING  # a copy while pending
    claim = await shared.add(part(2, b" world"))
    assert isinstance(claim, Claim) and claim.payload == b"hello world"
    # While the message is being stored: a copy is dropped, another part asked for again.
    assert await shared.add(part(2, b" world")) is Added.DUPLICATE
    assert await shared.add(part(2, b" there")) is Added.BUSY
    await shared.done(claim)
    # After it: a copy is dropped; the same key and number with other content is a new
    # message (references repeat).
    assert await shared.add(part(1, b"hello")) is Added.DUPLICATE
    assert await shared.add(part(1, b"howdy")) is Added.PENDING
    assert await shared.count() == (1, 0)


async def test_a_sweep_claims_messages_timed_out_and_the_oldest_beyond_max_pending(
    redis: RedisClient, prefix: str
) -> None:
    shared = SharedParts(redis, prefix, "a")
    await shared.add(part(1, b"old", reference=1))
    await trio.sleep(0.3)
    await shared.add(part(2, b"newer", reference=2))
    (claim,) = await shared.sweep(timeout=0.2, max_pending=100)
    assert (claim.key[3], claim.complete, claim.parts) == (1, False, {1: (b"old", 0)})
    await shared.add(part(1, b"newest", reference=3))
    (claim,) = await shared.sweep(timeout=60, max_pending=1)
    assert (claim.key[3], claim.complete) == (2, False)  # the older of the two
    assert await shared.count() == (1, 2)


async def test_a_claim_not_done_in_time_is_taken_by_another_instance_under_its_id(
    redis: RedisClient, prefix: str
) -> None:
    a = SharedParts(redis, prefix, "a")
    b = SharedParts(redis, prefix, "b", claim_timeout=0.2)
    await a.add(part(1, b"hello"))
    claim = await a.add(part(2, b" world"))
    assert isinstance(claim, Claim)
    assert await b.sweep(timeout=60, max_pending=100) == []  # "a" may still be storing it
    await trio.sleep(0.3)
    (again,) = await b.sweep(timeout=60, max_pending=100)
    assert again == claim  # same id: the same instance would find it stored
    assert await b.sweep(timeout=60, max_pending=100) == []  # its claim is b's now, and new


async def test_at_start_an_instance_takes_back_its_own_claims_at_once(
    redis: RedisClient, prefix: str
) -> None:
    before = SharedParts(redis, prefix, "a")
    await before.add(part(1, b"hello"))
    claim = await before.add(part(2, b" world"))
    other = SharedParts(redis, prefix, "b")
    assert await other.sweep(timeout=60, max_pending=100, mine=True) == []
    restarted = SharedParts(redis, prefix, "a")
    assert await restarted.sweep(timeout=60, max_pending=100, mine=True) == [claim]


async def test_a_sweep_claims_at_most_its_limit(redis: RedisClient, prefix: str) -> None:
    shared = SharedParts(redis, prefix, "a")
    for reference in range(5):
        await shared.add(part(1, b"x", reference=reference))
    await trio.sleep(0.1)
    first = await shared.sweep(timeout=0.05, max_pending=100, limit=3)
    rest = await shared.sweep(timeout=0.05, max_pending=100, limit=3)
    assert (len(first), len(rest)) == (3, 2)
    assert sorted(c.key[3] for c in first + rest) == [0, 1, 2, 3, 4]


# --- a property: parts spread over two instances ----------------------------------------------

_ADDRESSES = st.text(min_size=0, max_size=6)  # any text: it is in the key's JSON


@st.composite
def _spread(draw: st.DrawFn) -> tuple[list[InboundPart], list[tuple[int, InboundPart]]]:
    """Parts of up to four messages (addresses of any text, references that repeat between
    them, keys that differ), each part sent to instance 0 or 1, in any order, some twice."""
    parts: list[InboundPart] = []
    keys: set[tuple[str, str, str, int, int]] = set()
    for index in range(draw(st.integers(1, 4))):
        total = draw(st.integers(2, 4))
        first = InboundPart(
            provider="smsc",
            source=draw(_ADDRESSES),
            destination=draw(_ADDRESSES),
            reference=index % 2,
            total=total,
            number=1,
            payload=b"",
        )
        if first.key in keys:
            continue  # the same key: it would be the same message
        keys.add(first.key)
        for number in range(1, total + 1):
            payload = draw(st.binary(min_size=1, max_size=4))
            parts.append(attrs.evolve(first, number=number, payload=payload))
    copies = draw(st.lists(st.sampled_from(parts), max_size=3))
    order = draw(st.permutations(parts + copies))
    return parts, [(draw(st.integers(0, 1)), p) for p in order]


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(traffic=_spread())
async def test_each_message_is_claimed_once_with_all_its_parts_whatever_instance_they_reach(
    redis_server: Any, traffic: tuple[list[InboundPart], list[tuple[int, InboundPart]]]
) -> None:
    parts, events = traffic
    prefix = f"p{uuid.uuid4().hex[:10]}"
    with trio.fail_after(20):
        async with open_redis(redis_server.url) as redis:
            instances = [SharedParts(redis, prefix, name) for name in ("a", "b")]
            claims: list[Claim] = []
            for which, p in events:
                added = await instances[which].add(p)
                if isinstance(added, Claim):
                    claims.append(added)
                    await instances[which].done(added)
            assert await instances[0].count() == (0, 0)
    expected = {}
    for p in parts:
        expected.setdefault(p.key, {})[p.number] = p.payload
    assert sorted(c.key for c in claims) == sorted(expected)  # each once
    for claim in claims:
        assert claim.complete
        assert {n: payload for n, (payload, _dc) in claim.parts.items()} == expected[claim.key]


async def test_instances_racing_on_the_same_messages_claim_each_once(
    redis_server: Any, prefix: str
) -> None:
    """Two instances, each with its own connections, add every part of 200 three-part messages
    at once (each part to both, as an SMSC sending copies on two sessions would)."""
    claims: list[Claim] = []

    async def instance(name: str) -> None:
        async with open_redis(redis_server.url, max_connections=8) as redis:
            shared = SharedParts(redis, prefix, name)

            async def send(reference: int) -> None:
                for number in (1, 2, 3):
                    added = await shared.add(
                        part(number, b"p%d" % number, total=3, reference=reference)
                    )
                    if isinstance(added, Claim):
                        claims.append(added)

            async with trio.open_nursery() as senders:
                for reference in range(200):
                    senders.start_soon(send, reference)

    with trio.fail_after(30):
        async with trio.open_nursery() as both:
            both.start_soon(instance, "a")
            both.start_soon(instance, "b")
    assert sorted(c.key[3] for c in claims) == list(range(200))
    assert all(c.payload == b"p1p2p3" for c in claims)


# --- the MO handler with shared parts ---------------------------------------------------------


def _udh8(number: int, text: bytes, *, total: int = 2) -> tuple[Inbound, list[int]]:
    """Part ``number`` of ``total`` of reference 7, and the statuses it is answered with."""
    pdu = DeliverSm(
        sequence_number=1,
        source_addr="4915112345",
        destination_addr="12345",
        esm_class=EsmClass.UDHI,
        short_message=bytes([5, 0, 3, 7, total, number]) + text,
    )
    answers: list[int] = []

    async def answer(_inbound: Inbound, response: Pdu) -> bool:
        answers.append(response.command_status)
        return True

    return Inbound(pdu, received_at=0.0, deadline=30.0, answerer=answer), answers


def handler(store: Store, shared: SharedParts, **kw: Any) -> tuple[MoHandler, Counters]:
    counters = Counters()
    mo = MoHandler(
        store=store, counters=counters, notifier=Notifier(), clock=time.time, shared=shared, **kw
    )
    return mo, counters


async def test_a_message_whose_parts_reach_two_instances_is_stored_once_whole(
    redis: RedisClient, prefix: str, tmp_path: Path
) -> None:
    async with (
        open_store(tmp_path / "a.sqlite3") as store_a,
        open_store(tmp_path / "b.sqlite3") as store_b,
    ):
        a, _ = handler(store_a, SharedParts(redis, prefix, "a"))
        b, counters_b = handler(store_b, SharedParts(redis, prefix, "b"))
        first, answers_1 = _udh8(1, b"hello")
        second, answers_2 = _udh8(2, b" world")
        with trio.fail_after(10):
            await a.handle("smsc", first)
            assert answers_1 == [OK]  # answered once Redis has it
            await b.handle("smsc", second)
        assert answers_2 == [OK]
        assert (await store_a.list_inbound()).items == ()
        (message,) = (await store_b.list_inbound()).items
        assert (message.text, message.parts, message.complete) == ("hello world", 2, True)
        assert counters_b.mo_received == 1
        # Nothing of it in the databases' part tables, nor left in Redis.
        assert await store_a.inbound_parts() == [] == await store_b.inbound_parts()
        assert await SharedParts(redis, prefix, "a").count() == (0, 0)
        # Our answer to part 1 was lost: the SMSC sends it again, to either instance.
        again, answers = _udh8(1, b"hello")
        await a.handle("smsc", again)
        assert answers == [OK] and (await store_a.list_inbound()).items == ()


async def test_a_claim_left_by_a_crash_is_stored_at_start_and_only_once(
    redis: RedisClient, prefix: str, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with open_store(tmp_path / "a.sqlite3") as store:
        # Before the crash: one message claimed and never stored, one stored but its parts
        # not deleted from Redis (the crash came between the two steps).
        crashed = SharedParts(redis, prefix, "a")
        await crashed.add(part(1, b"never ", reference=1))
        unstored = await crashed.add(part(2, b"stored", reference=1))
        await crashed.add(part(1, b"stored ", reference=2))
        stored = await crashed.add(part(2, b"once", reference=2))
        assert isinstance(unstored, Claim) and isinstance(stored, Claim)
        await store.store_inbound(
            [NewInbound(id=stored.id, provider="smsc", source="s", destination="d", payload=b"")]
        )
        mo, counters = handler(store, SharedParts(redis, prefix, "a"))
        await mo.recover()
        nursery.start_soon(mo.run_expiry)
        with trio.fail_after(10):
            await wait_until(lambda: counters.mo_received == 1, what="the unstored one stored")
            while await crashed.count() != (0, 0):
                await trio.sleep(0.05)
        items = (await store.list_inbound()).items
        assert sorted(m.id for m in items) == sorted([unstored.id, stored.id])
        assert [m.text for m in items if m.id == unstored.id] == ["never stored"]
        nursery.cancel_scope.cancel()


async def test_parts_stored_in_the_database_move_to_redis(
    redis: RedisClient, prefix: str, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A gateway moved from the embedded queue to Redis, with a message half received."""
    async with open_store(tmp_path / "a.sqlite3") as store:
        await store.store_inbound_part(part(1, b"hello"))
        shared = SharedParts(redis, prefix, "a")
        mo, _counters = handler(store, shared)
        await mo.recover()
        nursery.start_soon(mo.run_expiry)
        with trio.fail_after(10):
            while await store.inbound_parts():
                await trio.sleep(0.05)
            assert await shared.count() == (1, 0)
            second, answers = _udh8(2, b" world")
            await mo.handle("smsc", second)
        assert answers == [OK]
        (message,) = (await store.list_inbound()).items
        assert message.text == "hello world"
        nursery.cancel_scope.cancel()


async def test_a_part_redis_cannot_take_is_answered_with_a_temporary_error(
    tmp_path: Path,
) -> None:
    async with (
        open_redis(f"redis://127.0.0.1:{free_port()}", timeout=0.5) as down,
        open_store(tmp_path / "a.sqlite3") as store,
    ):
        mo, counters = handler(store, SharedParts(down, "p", "a"))
        first, answers = _udh8(1, b"hello")
        with trio.fail_after(10):
            await mo.handle("smsc", first)
        assert answers == [RETRY_LATER] and counters.mo_store_failures == 1
        assert await store.inbound_parts() == []  # nowhere: the SMSC keeps it


async def test_a_message_claimed_while_the_database_is_locked_is_stored_later(
    redis: RedisClient, prefix: str, tmp_path: Path, nursery: trio.Nursery
) -> None:
    path = tmp_path / "a.sqlite3"
    async with open_store(path, busy_timeout=0.2) as store:
        shared = SharedParts(redis, prefix, "a")
        mo, counters = handler(store, shared)
        with write_locked(path):
            with trio.fail_after(10):
                for number, text in ((1, b"hello"), (2, b" world")):
                    inbound, answers = _udh8(number, text)
                    await mo.handle("smsc", inbound)
                    assert answers == [OK]  # in Redis: answered
            assert counters.mo_store_failures == 1 and counters.mo_received == 0
            assert await shared.count() == (0, 1)  # claimed, kept in Redis
        nursery.start_soon(mo.run_expiry)
        with trio.fail_after(10):
            await wait_until(lambda: counters.mo_received == 1, what="stored on a later try")
            while await shared.count() != (0, 0):
                await trio.sleep(0.05)
        (message,) = (await store.list_inbound()).items
        assert message.text == "hello world"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("which", ["first", "other"])
async def test_a_message_missing_parts_is_stored_incomplete_by_any_instance(
    redis: RedisClient, prefix: str, tmp_path: Path, nursery: trio.Nursery, which: str
) -> None:
    """The timeout counts in Redis: the instance that got the part, or another, stores it."""
    async with (
        open_store(tmp_path / "a.sqlite3") as store_a,
        open_store(tmp_path / "b.sqlite3") as store_b,
    ):
        a, counters_a = handler(store_a, SharedParts(redis, prefix, "a"), reassembly_timeout=0.4)
        b, counters_b = handler(store_b, SharedParts(redis, prefix, "b"), reassembly_timeout=0.4)
        first, _answers = _udh8(1, b"hello", total=3)
        with trio.fail_after(10):
            await a.handle("smsc", first)
            sweeper, counters, store = (
                (a, counters_a, store_a) if which == "first" else (b, counters_b, store_b)
            )
            nursery.start_soon(sweeper.run_expiry)
            await wait_until(lambda: counters.mo_incomplete == 1, what="stored incomplete")
        (message,) = (await store.list_inbound()).items
        assert (message.text, message.parts, message.complete) == ("hello", 1, False)
        nursery.cancel_scope.cancel()
