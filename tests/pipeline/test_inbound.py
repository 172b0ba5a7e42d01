"""Inbound (MO) messages: stored durably BEFORE the SMSC is answered; each part of a multipart
one stored and answered as it arrives (so an SMSC sending one deliver_sm at a time is served),
then reassembled (UDH and SAR), also across a restart; an incomplete one stored when its time
is up; webhooks queued in the same transaction."""

from __future__ import annotations

import attrs
import pytest
import trio
from sqlite_lock import write_locked

from smpp_codec.constants import CommandStatus, EsmClass
from smpp_codec.pdu import DeliverSm
from smpp_codec.segment import SplitMode
from smsgw.config import InboundConfig
from smsgw.messages import Accepted, SubmitRequest
from smsgw.model import MessageStatus, NotificationKind

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
    assert message.complete and '"complete":true' in note.body
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
    assert all(m.complete for m in page.items)
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
        # Part 1 of 2 only (send_mo sends whole messages), answered once it was stored.
        assert await sim.deliver(_udh8_part(1, b"first half")) == [0]
        await wait_until(lambda: gateway.stats().mo_incomplete == 1, what="stored incomplete")
        page = await gateway.store.list_inbound()
        assert await gateway.store.inbound_parts() == []  # deleted with the message's storing
    (message,) = page.items
    # Marked: a client can tell that text is missing.
    assert (message.text, message.parts, message.complete) == ("first half", 1, False)


def _udh8_part(number: int, text: bytes, *, reference: int = 42, total: int = 2) -> DeliverSm:
    return DeliverSm(
        sequence_number=0,
        source_addr="4915112345",
        destination_addr="12345",
        esm_class=EsmClass.UDHI,
        short_message=bytes([5, 0, 3, reference, total, number]) + text,
    )


@pytest.mark.parametrize("mode", [SplitMode.UDH8, SplitMode.UDH16, SplitMode.SAR])
async def test_multipart_mos_come_through_an_smsc_that_sends_one_deliver_sm_at_a_time(
    harness: Harness, mode: SplitMode
) -> None:
    # Window 1, as many SMSCs have for MOs: part 2 goes only once part 1 is answered.
    sim = await harness.simulator(deliver_window=1)
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]))
    with trio.fail_after(20):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        result = await sim.sim.send_mo(
            source_addr="4915112345", destination_addr="12345", text=LONG, multipart_mode=mode
        )
        assert result.ok and result.parts == 2
        await wait_until(lambda: gateway.stats().mo_received == 1, what="the message stored")
        page = await gateway.store.list_inbound()
    (message,) = page.items
    assert (message.text, message.parts) == (LONG, 2)
    assert gateway.stats().mo_incomplete == 0


async def test_each_part_is_stored_before_it_is_answered(harness: Harness) -> None:
    sim = await harness.simulator()
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]))
    with trio.fail_after(20):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        assert await sim.deliver(_udh8_part(1, b"first half")) == [0]
        # Answered: the part is durable, and its message waits for the other part.
        (part,) = await gateway.store.inbound_parts()
        assert (part.provider, part.reference, part.total, part.number) == ("a", 42, 2, 1)
        assert part.payload == b"first half"
        assert (await gateway.store.list_inbound()).items == ()
        assert await sim.deliver(_udh8_part(2, b" second half")) == [0]
        await wait_until(lambda: gateway.stats().mo_received == 1, what="the message stored")
        page = await gateway.store.list_inbound()
        assert await gateway.store.inbound_parts() == []
    (message,) = page.items
    assert (message.text, message.parts) == ("first half second half", 2)


@pytest.mark.parametrize("second_part_comes", [True, False])
async def test_parts_stored_before_a_restart_are_reassembled_after_it(
    harness: Harness, second_part_comes: bool
) -> None:
    sim = await harness.simulator()
    config = harness.config([provider("a", sim.port)])
    first = await harness.gateway(config)
    with trio.fail_after(20):
        await wait_until(lambda: first.providers.healthy("a"), what="a bound")
        assert await sim.deliver(_udh8_part(1, b"first half")) == [0]
        await first.drain(2.0)  # its reassembler's memory is gone with it
        short = attrs.evolve(config, inbound=InboundConfig(reassembly_timeout=0.5))
        second = await harness.gateway(config if second_part_comes else short)
        await wait_until(lambda: second.providers.healthy("a"), what="a bound again")
        if second_part_comes:
            assert await sim.deliver(_udh8_part(2, b" second half")) == [0]
            await wait_until(lambda: second.stats().mo_received == 1, what="stored whole")
        else:
            await wait_until(lambda: second.stats().mo_incomplete == 1, what="stored incomplete")
        page = await second.store.list_inbound()
        assert await second.store.inbound_parts() == []
    (message,) = page.items
    if second_part_comes:
        assert (message.text, message.parts) == ("first half second half", 2)
    else:
        assert (message.text, message.parts, message.complete) == ("first half", 1, False)


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


@pytest.mark.parametrize("part", [False, True])
async def test_an_mo_that_cannot_be_stored_is_answered_with_a_temporary_error(
    harness: Harness, part: bool
) -> None:
    sim = await harness.simulator()
    config = harness.config([provider("a", sim.port)])
    gateway = await harness.gateway(config)
    with trio.fail_after(30):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        # Another process holds the database's write lock past the busy timeout (5 s).
        with write_locked(config.database_path):
            if part:
                statuses = await sim.deliver(_udh8_part(1, b"first half"))
            else:
                result = await sim.sim.send_mo(
                    source_addr="4915112345", destination_addr="12345", text="Hej", timeout=15
                )
                statuses = list(result.statuses)
        page = await gateway.store.list_inbound()
        parts = await gateway.store.inbound_parts()
    assert statuses == [int(CommandStatus.ESME_RX_T_APPN)]
    assert page.items == () and parts == []
    assert gateway.stats().mo_store_failures == 1 and gateway.stats().mo_received == 0
