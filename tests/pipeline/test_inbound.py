"""Inbound (MO) messages: stored durably BEFORE the SMSC is answered, multipart ones
reassembled first (UDH and SAR), an incomplete one stored when its time is up; webhooks
queued in the same transaction."""

from __future__ import annotations

import sqlite3

import attrs
import pytest
import trio

from smpp_codec.constants import CommandStatus, EsmClass
from smpp_codec.pdu import DeliverSm
from smpp_codec.segment import SplitMode
from smsgw.config import InboundConfig
from smsgw.messages import Accepted, SubmitRequest
from smsgw.model import MessageStatus, NotificationKind
from smsgw.simulator.connection import MoWaiter

from .harness import Harness, provider, wait_status, wait_until

LONG = "A long inbound message, " * 12  # 288 GSM characters: two UDH8 parts


async def test_a_single_mo_is_stored_before_the_smsc_gets_its_answer(harness: Harness) -> None:
    sim = await harness.simulator()
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]))
    gateway.notifier.inbound_target = "https://example.test/inbound"
    with trio.fail_after(20):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        result = await sim.sim.send_mo(
            source_addr="4915112345", destination_addr="12345", text="Hej"
        )
        assert result.ok
        # The answer came: the row must be there already (no waiting).
        page = await gateway.store.list_inbound()
        notifications = await gateway.store.pending_notifications()
    (message,) = page.items
    assert (message.provider, message.source, message.destination) == ("a", "4915112345", "12345")
    assert (message.text, message.parts) == ("Hej", 1)
    (note,) = notifications
    assert note.kind is NotificationKind.INBOUND and note.target == "https://example.test/inbound"
    assert note.subject == message.id and '"text":"Hej"' in note.body
    assert gateway.stats().mo_received == 1


async def test_multipart_mos_are_reassembled_before_they_are_stored(harness: Harness) -> None:
    sim = await harness.simulator()
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]))
    with trio.fail_after(20):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        for mode in (SplitMode.UDH8, SplitMode.UDH16, SplitMode.SAR):
            result = await sim.sim.send_mo(
                source_addr="4915112345", destination_addr="12345", text=LONG, multipart_mode=mode
            )
            assert result.ok and result.parts == 2
        unicode = await sim.sim.send_mo(
            source_addr="4915112345", destination_addr="12345", text="Ж" * 150
        )
        assert unicode.ok and unicode.parts == 3
        page = await gateway.store.list_inbound()
    texts = [m.text for m in reversed(page.items)]
    assert texts == [LONG, LONG, LONG, "Ж" * 150]
    assert [m.parts for m in reversed(page.items)] == [2, 2, 2, 3]
    assert gateway.stats().mo_received == 4 and gateway.stats().mo_incomplete == 0


@pytest.mark.parametrize("by_reload", [False, True])
async def test_an_incomplete_multipart_mo_is_stored_when_its_time_is_up(
    harness: Harness, by_reload: bool
) -> None:
    sim = await harness.simulator()
    config = harness.config([provider("a", sim.port)])
    short = attrs.evolve(config, inbound=InboundConfig(reassembly_timeout=0.3))
    gateway = await harness.gateway(config if by_reload else short)
    if by_reload:  # [inbound] reassembly_timeout is taken live
        await gateway.reload(short)
    with trio.fail_after(10):  # well below the default 20 s
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        # Part 1 of 2 only (send_mo sends whole messages): the simulator's connection is given
        # one deliver_sm with a UDH8 concatenation header.
        connection = sim.sim._receiver(None)
        waiter = MoWaiter(1)
        header = bytes([5, 0, 3, 42, 2, 1])
        connection.queue_mo(
            [
                DeliverSm(
                    sequence_number=0,
                    source_addr="4915112345",
                    destination_addr="12345",
                    esm_class=EsmClass.UDHI,
                    short_message=header + b"first half",
                )
            ],
            waiter,
        )
        await waiter.done.wait()
        assert waiter.statuses == [0]  # answered once stored, incomplete
        page = await gateway.store.list_inbound()
    (message,) = page.items
    assert (message.text, message.parts) == ("first half", 1)
    assert gateway.stats().mo_incomplete == 1


async def test_status_changes_queue_webhooks_to_the_callback_url(harness: Harness) -> None:
    sim = await harness.simulator()
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]))
    with trio.fail_after(20):
        (accepted,) = await gateway.submit(
            [
                SubmitRequest(
                    to="4915112345",
                    source="ACME",
                    text="hi",
                    client_ref="r1",
                    callback_url="https://client.test/dlr",
                )
            ]
        )
        assert isinstance(accepted, Accepted)
        await wait_status(gateway, accepted.id, MessageStatus.DELIVERED)
        notes = await gateway.store.pending_notifications()
    statuses = [n.body for n in notes if n.subject == accepted.id]
    assert all(n.target == "https://client.test/dlr" for n in notes)
    assert ['"status":"submitting"' in b for b in statuses] == [True, False, False]
    assert '"status":"submitted"' in statuses[1] and '"status":"delivered"' in statuses[2]
    assert all('"client_ref":"r1"' in b for b in statuses)


async def test_webhook_statuses_limit_the_changes_notified(harness: Harness) -> None:
    sim = await harness.simulator()
    config = harness.config([provider("a", sim.port)])
    config = attrs.evolve(
        config,
        webhooks=attrs.evolve(
            config.webhooks, statuses=(MessageStatus.DELIVERED, MessageStatus.FAILED)
        ),
    )
    gateway = await harness.gateway(config)
    with trio.fail_after(20):
        (accepted,) = await gateway.submit(
            [SubmitRequest(to="4915112345", source="ACME", text="hi", callback_url="https://c.test/")]
        )
        assert isinstance(accepted, Accepted)
        await wait_status(gateway, accepted.id, MessageStatus.DELIVERED)
        notes = await gateway.store.pending_notifications()
    # Only the final change: submitting and submitted made none.
    (note,) = [n for n in notes if n.subject == accepted.id]
    assert '"status":"delivered"' in note.body


async def test_an_mo_that_cannot_be_stored_is_answered_with_a_temporary_error(
    harness: Harness,
) -> None:
    sim = await harness.simulator()
    config = harness.config([provider("a", sim.port)])
    gateway = await harness.gateway(config)
    with trio.fail_after(30):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        # Another process holds the database's write lock past the busy timeout (5 s).
        blocker = sqlite3.connect(config.database_path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            result = await sim.sim.send_mo(
                source_addr="4915112345", destination_addr="12345", text="Hej", timeout=15
            )
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        page = await gateway.store.list_inbound()
    assert result.statuses == (int(CommandStatus.ESME_RX_T_APPN),)
    assert page.items == ()
    assert gateway.stats().mo_store_failures == 1 and gateway.stats().mo_received == 0
