"""Receipts: early ones (before submit_sm_resp) still correlate, unmatched ones are counted as
orphans, and a provider's id format makes hex responses meet decimal receipts; multipart
messages aggregate their parts' receipts."""

from __future__ import annotations

import trio

from smpp_codec.message_id import MessageIdFormat
from smsgw.aggregate import aggregate_status
from smsgw.config import ReceiptMode
from smsgw.messages import Accepted, SubmitRequest
from smsgw.model import MessageStatus
from smsgw.simulator import Faults, IdFormat, ReceiptConfig, ReceiptIdForm, SimulatorConfig

from .harness import Harness, message_history, part_history, provider, wait_status, wait_until

S = MessageStatus
#: 150 Cyrillic letters: UCS-2, 67 characters per UDH8 part -> 3 parts.
RUSSIAN = "Привет мир! " * 12 + "Жжжжжж"


async def test_receipts_that_overtake_their_response_still_correlate(harness: Harness) -> None:
    # Responses held back half a second, receipts sent at once: every receipt comes first.
    sim = await harness.simulator(
        SimulatorConfig(
            seed=3, receipts=ReceiptConfig(before_response=1.0), faults=Faults(latency=0.5)
        )
    )
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]))
    with trio.fail_after(20):
        results = await gateway.submit(
            [SubmitRequest(to=f"491511234{i}", source="ACME", text="early") for i in range(5)]
        )
        ids = [r.id for r in results if isinstance(r, Accepted)]
        views = [await wait_status(gateway, i, S.DELIVERED) for i in ids]
        # Each was kept in the database while parked, and deleted when it was recorded.
        leftover = await gateway.store.parked_receipts()
    assert len(views) == 5 and leftover == []
    stats = gateway.stats()
    assert (stats.receipts, stats.receipts_parked, stats.orphaned_receipts) == (5, 5, 0)
    for view in views:
        # The receipt was applied when the mapping came: "submitted" was recorded first.
        assert part_history(view, 1)[-2:] == [S.SUBMITTED, S.DELIVERED]


async def test_receipts_no_part_matches_are_counted_as_orphans(harness: Harness) -> None:
    # Hex ids in responses, decimal in receipts, but the provider is not told so.
    sim = await harness.simulator(
        SimulatorConfig(
            seed=1, id_format=IdFormat.HEX, receipts=ReceiptConfig(id_form=ReceiptIdForm.DECIMAL)
        )
    )
    # The simulator's ids are large counters, so the hex and decimal spellings of one id differ
    # (an id below 10 would be spelt the same way and match).
    config = harness.config([provider("a", sim.port, early_receipt_park=0.2)])
    gateway = await harness.gateway(config)
    with trio.fail_after(20):
        results = await gateway.submit(
            [SubmitRequest(to="4915112345", source="ACME", text=f"n{i}") for i in range(12)]
        )
        ids = [r.id for r in results if isinstance(r, Accepted)]
        await wait_until(lambda: gateway.stats().receipts == 12, what="12 receipts")
        await wait_until(lambda: gateway.stats().orphaned_receipts >= 1, what="an orphan")
        # Every parked receipt is matched or orphaned once its park time is up.
        assert gateway._dlr is not None
        dlr = gateway._dlr
        await wait_until(lambda: dlr.parked() == 0, what="no receipt parked")
        statuses = [(await gateway.message(i)).status for i in ids]  # type: ignore[union-attr]
    orphans = gateway.stats().orphaned_receipts
    assert orphans >= 1
    assert statuses.count(S.SUBMITTED) == orphans  # an orphan's message keeps waiting
    assert statuses.count(S.DELIVERED) == 12 - orphans


async def test_the_providers_id_format_matches_hex_responses_with_decimal_receipts(
    harness: Harness,
) -> None:
    sim = await harness.simulator(
        SimulatorConfig(
            seed=1, id_format=IdFormat.HEX, receipts=ReceiptConfig(id_form=ReceiptIdForm.DECIMAL)
        )
    )
    fmt = MessageIdFormat.HEX_RESP_DECIMAL_RECEIPT
    gateway = await harness.gateway(
        harness.config([provider("a", sim.port, message_id_format=fmt)])
    )
    with trio.fail_after(20):
        results = await gateway.submit(
            [SubmitRequest(to="4915112345", source="ACME", text=f"n{i}") for i in range(12)]
        )
        for r in results:
            assert isinstance(r, Accepted)
            await wait_status(gateway, r.id, S.DELIVERED)
    assert gateway.stats().orphaned_receipts == 0


async def test_a_three_part_unicode_message_is_delivered_when_every_part_is(
    harness: Harness,
) -> None:
    sim = await harness.simulator()
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]))
    with trio.fail_after(20):
        (accepted,) = await gateway.submit(
            [SubmitRequest(to="4915112345", source="ACME", text=RUSSIAN)]
        )
        assert isinstance(accepted, Accepted)
        assert (accepted.parts, accepted.encoding) == (3, "ucs2")
        view = await wait_status(gateway, accepted.id, S.DELIVERED)
    assert [p.status for p in view.parts] == [S.DELIVERED] * 3
    assert len({p.smsc_id for p in view.parts}) == 3
    assert sim.sim.stats.submits_accepted == 3
    assert gateway.stats().segments_submitted == 3 and gateway.stats().submitted == 1
    assert message_history(view) == [S.QUEUED, S.SUBMITTING, S.SUBMITTED, S.DELIVERED]


async def test_mixed_part_outcomes_aggregate_to_the_worst(harness: Harness) -> None:
    sim = await harness.simulator(
        SimulatorConfig(seed=11, receipts=ReceiptConfig(outcomes={"DELIVRD": 1, "UNDELIV": 1}))
    )
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]))
    with trio.fail_after(30):
        results = await gateway.submit(
            [SubmitRequest(to="4915112345", source="ACME", text=RUSSIAN) for _ in range(6)]
        )
        views = []
        for r in results:
            assert isinstance(r, Accepted)
            views.append(await wait_status(gateway, r.id, S.DELIVERED, S.UNDELIVERED))
    mixed = 0
    for view in views:
        parts = [p.status for p in view.parts]
        assert view.status is aggregate_status(parts)
        if len(set(parts)) > 1:
            mixed += 1
            assert view.status is S.UNDELIVERED
    assert mixed >= 1  # seed 11 gives mixed outcomes (18 parts, even odds)


async def test_with_final_part_receipts_the_last_receipt_settles_every_part(
    harness: Harness,
) -> None:
    sim = await harness.simulator()
    gateway = await harness.gateway(
        harness.config([provider("a", sim.port, receipts=ReceiptMode.FINAL_PART)])
    )
    with trio.fail_after(20):
        (accepted,) = await gateway.submit(
            [SubmitRequest(to="4915112345", source="ACME", text=RUSSIAN)]
        )
        assert isinstance(accepted, Accepted)
        view = await wait_status(gateway, accepted.id, S.DELIVERED)
    assert [p.status for p in view.parts] == [S.DELIVERED] * 3
    assert gateway.stats().receipts == 1  # only the last part asked for one


async def test_a_receipt_after_a_restart_still_notifies_the_messages_callback_url(
    harness: Harness,
) -> None:
    # The receipt comes 1.5 s after the submission: by then the gateway that sent the message
    # has stopped and a new one (fresh memory, same database) is bound in its place.
    sim = await harness.simulator(SimulatorConfig(seed=2, receipts=ReceiptConfig(delay=1.5)))
    config = harness.config([provider("a", sim.port)])
    first = await harness.gateway(config)
    with trio.fail_after(30):
        (accepted,) = await first.submit(
            [
                SubmitRequest(
                    to="4915112345", source="ACME", text="hi", callback_url="https://c.test/dlr"
                )
            ]
        )
        assert isinstance(accepted, Accepted)
        await wait_status(first, accepted.id, S.SUBMITTED)
        await first.drain(2.0)
        harness.gateways.remove(first)
        second = await harness.gateway(config)
        await wait_status(second, accepted.id, S.DELIVERED)
        notes = await second.store.pending_notifications()
    delivered = [n for n in notes if n.subject == accepted.id and '"delivered"' in n.body]
    assert [n.target for n in delivered] == ["https://c.test/dlr"]
