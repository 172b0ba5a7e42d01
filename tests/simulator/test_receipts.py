"""Delivery receipts: timing, outcomes, text and TLVs, routing, receipt-before-response."""

from __future__ import annotations

from collections import Counter

import pytest
import trio

from smpp_codec import (
    BindReceiver,
    BindTransmitter,
    CommandStatus,
    DeliverSm,
    MessageState,
    SmeAddress,
    SubmitMulti,
    SubmitSm,
    SubmitSmResp,
    encode,
)
from smpp_codec.constants import EsmClass
from smpp_codec.receipt import parse_receipt_text, receipt_from_pdu
from smsgw.simulator import ReceiptConfig, SimulatorConfig

from .esme import RawEsme, serve

S = CommandStatus


def submit(seq: int, **fields: object) -> SubmitSm:
    fields.setdefault("source_addr", "4915112345")
    fields.setdefault("destination_addr", "4917612345")
    fields.setdefault("short_message", b"hello world")
    fields.setdefault("registered_delivery", 1)
    return SubmitSm(sequence_number=seq, **fields)  # type: ignore[arg-type]


async def submit_ok(esme: RawEsme, **fields: object) -> str:
    resp = await esme.request(submit(esme.seq(), **fields))
    assert resp.command_status == 0, resp
    assert isinstance(resp, SubmitSmResp)
    return resp.message_id


async def test_a_receipt_carries_text_and_tlvs_that_agree(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    message_id = await submit_ok(esme, source_addr_ton=1, source_addr_npi=1, dest_addr_ton=2,
                                 short_message=b"hello world, a long text beyond twenty")
    pdu = await esme.deliver()
    assert pdu.esm_class == EsmClass.DELIVERY_RECEIPT
    # addressed back to the sender
    assert (pdu.source_addr, pdu.destination_addr) == ("4917612345", "4915112345")
    assert (pdu.source_addr_ton, pdu.dest_addr_ton, pdu.dest_addr_npi) == (2, 1, 1)
    receipt = receipt_from_pdu(pdu)
    assert receipt is not None
    assert receipt.message_id == message_id
    assert receipt.state == MessageState.DELIVERED
    text = parse_receipt_text(pdu.short_message)
    assert (text.message_id, text.stat, text.err, text.sub, text.dlvrd) == (
        message_id, "DELIVRD", "000", "001", "001"
    )
    assert text.text == "hello world, a long"  # 20 characters, trailing space stripped
    assert text.submit_date is not None
    assert text.done_date is not None
    assert pdu.tlv("receipted_message_id") == message_id
    assert pdu.tlv("message_state") == MessageState.DELIVERED
    assert pdu.tlv("network_error_code") is None
    await esme.ack(pdu)
    with trio.fail_after(5):
        while run.sim.stats.receipts_acked < 1:
            await trio.sleep(0.01)
    stats = run.sim.stats
    assert (stats.receipts_sent, stats.receipts_acked, stats.receipts_failed) == (1, 1, 0)


@pytest.mark.parametrize(("text", "tlvs"), [(True, False), (False, True)])
async def test_receipt_text_only_or_tlvs_only(nursery, text, tlvs):
    run = await serve(nursery, SimulatorConfig(receipts=ReceiptConfig(text=text, tlvs=tlvs)))
    esme = await run.bound()
    message_id = await submit_ok(esme)
    pdu = await esme.deliver()
    assert bool(pdu.short_message) is text
    assert bool(pdu.optional_parameters) is tlvs
    receipt = receipt_from_pdu(pdu)
    assert receipt is not None
    assert receipt.message_id == message_id


async def test_a_failed_outcome_carries_its_err_and_network_error_code(nursery):
    config = SimulatorConfig(receipts=ReceiptConfig(outcomes={"UNDELIV": 1}, err="UNDELIV=034"))
    run = await serve(nursery, config)
    esme = await run.bound()
    await submit_ok(esme)
    pdu = await esme.deliver()
    receipt = receipt_from_pdu(pdu)
    assert receipt is not None
    assert (receipt.stat, receipt.err, receipt.state) == ("UNDELIV", "034",
                                                         MessageState.UNDELIVERABLE)
    assert receipt.network_error_code == bytes([3, 0, 34])
    assert parse_receipt_text(pdu.short_message).dlvrd == "000"


async def test_the_receipt_delay_and_jitter_are_honoured(nursery, autojump_clock):
    config = SimulatorConfig(receipts=ReceiptConfig(delay="30s", jitter="10s"), seed=3)
    run = await serve(nursery, config)
    esme = await run.bound()
    waits = []
    for _ in range(5):
        start = trio.current_time()
        await submit_ok(esme)
        pdu = await esme.deliver(timeout=100)
        waits.append(trio.current_time() - start)
        await esme.ack(pdu)
    assert all(30 <= w <= 40 for w in waits), waits
    assert len(set(waits)) > 1  # jitter: not all equal


async def test_the_outcome_mix_follows_its_weights_and_the_seed(nursery):
    async def outcomes(seed: int) -> list[str]:
        config = SimulatorConfig(
            seed=seed, receipts=ReceiptConfig(outcomes="DELIVRD=6,UNDELIV=2,EXPIRED=1,REJECTD=1")
        )
        run = await serve(nursery, config)
        esme = await run.bound()
        await esme.send_raw(b"".join(encode(submit(i + 10)) for i in range(200)))
        stats = []
        for _ in range(400):  # 200 responses and 200 receipts, in some order
            pdu = await esme.recv()
            if isinstance(pdu, DeliverSm):
                receipt = receipt_from_pdu(pdu)
                assert receipt is not None
                assert receipt.state == MessageState[{
                    "DELIVRD": "DELIVERED", "UNDELIV": "UNDELIVERABLE",
                    "EXPIRED": "EXPIRED", "REJECTD": "REJECTED"}[receipt.stat]]
                stats.append(receipt.stat)
                await esme.ack(pdu)
        return stats

    first = await outcomes(5)
    counts = Counter(first)
    assert sum(counts.values()) == 200
    assert set(counts) == {"DELIVRD", "UNDELIV", "EXPIRED", "REJECTD"}
    assert counts["DELIVRD"] > counts["UNDELIV"] > max(counts["EXPIRED"], counts["REJECTD"]) / 2
    assert await outcomes(5) == first
    assert await outcomes(6) != first


@pytest.mark.parametrize(
    ("registered_delivery", "outcome", "expected"),
    [(0, "DELIVRD", False), (1, "DELIVRD", True), (1, "UNDELIV", True),
     (2, "DELIVRD", False), (2, "REJECTD", True), (3, "UNDELIV", False),
     (0x11, "DELIVRD", True)],
)
async def test_registered_delivery_decides_whether_a_receipt_is_sent(
    nursery, autojump_clock, registered_delivery, outcome, expected
):
    config = SimulatorConfig(receipts=ReceiptConfig(outcomes={outcome: 1}))
    run = await serve(nursery, config)
    esme = await run.bound()
    await submit_ok(esme, registered_delivery=registered_delivery)
    if expected:
        await esme.deliver()
    else:
        await esme.recv_nothing(30)
    assert run.sim.stats.receipts_sent == int(expected)


async def test_receipts_disabled_are_never_sent(nursery, autojump_clock):
    run = await serve(nursery, SimulatorConfig(receipts=ReceiptConfig(enabled=False)))
    esme = await run.bound()
    await submit_ok(esme)
    await esme.recv_nothing(30)


async def test_receipt_ids_can_be_written_in_decimal_for_hex_responses(nursery):
    config = SimulatorConfig(id_format="hex", receipts=ReceiptConfig(id_form="decimal"))
    run = await serve(nursery, config)
    esme = await run.bound()
    message_id = await submit_ok(esme)
    pdu = await esme.deliver()
    receipt = receipt_from_pdu(pdu)
    assert receipt is not None
    assert receipt.message_id == str(int(message_id, 16))
    assert parse_receipt_text(pdu.short_message).message_id == str(int(message_id, 16))


async def test_a_receipt_goes_to_the_receiver_of_the_same_system_id(nursery, autojump_clock):
    run = await serve(nursery)
    other = await run.bound(BindReceiver, system_id="other")
    tx = await run.bound(BindTransmitter, system_id="shop")
    rx = await run.bound(BindReceiver, system_id="shop")
    message_id = await submit_ok(tx)
    pdu = await rx.deliver()
    assert pdu.tlv("receipted_message_id") == message_id
    await rx.ack(pdu)
    await other.recv_nothing(30)
    await tx.recv_nothing(30)


async def test_receipts_wait_for_a_receiver_to_bind(nursery):
    run = await serve(nursery)
    tx = await run.bound(BindTransmitter, system_id="shop")
    ids = [await submit_ok(tx) for _ in range(3)]
    with trio.fail_after(5):
        while run.sim.stats.receipts_queued < 3:
            await trio.sleep(0.01)
    rx = await run.bound(BindReceiver, system_id="shop")
    got = []
    for _ in ids:
        pdu = await rx.deliver()
        got.append(pdu.tlv("receipted_message_id"))
        await rx.ack(pdu)
    assert got == ids
    assert run.sim.stats.receipts_queued == 0


async def test_the_deliver_window_limits_unanswered_receipts(nursery, autojump_clock):
    run = await serve(nursery, SimulatorConfig(deliver_window=3, response_timeout=100))
    esme = await run.bound()
    await esme.send_raw(b"".join(encode(submit(i + 10)) for i in range(6)))
    receipts = []
    for _ in range(9):  # 6 responses and the first 3 receipts
        pdu = await esme.recv()
        if isinstance(pdu, DeliverSm):
            receipts.append(pdu)
    assert len(receipts) == 3
    await esme.recv_nothing(30)  # the window is full
    await esme.ack(receipts[0])
    fourth = await esme.deliver()
    assert fourth.sequence_number not in {r.sequence_number for r in receipts}
    await esme.recv_nothing(30)


async def test_an_unanswered_receipt_fails_after_the_timeout_and_is_not_resent(
    nursery, autojump_clock
):
    run = await serve(nursery, SimulatorConfig(response_timeout=20))
    esme = await run.bound()
    await submit_ok(esme)
    await esme.deliver()
    await esme.recv_nothing(100)
    stats = run.sim.stats
    assert (stats.receipts_sent, stats.receipts_acked, stats.receipts_failed) == (1, 0, 1)


async def test_a_receipt_refused_by_the_esme_counts_as_failed(nursery, autojump_clock):
    run = await serve(nursery)
    esme = await run.bound()
    await submit_ok(esme)
    pdu = await esme.deliver()
    await esme.ack(pdu, S.ESME_RX_T_APPN)
    await esme.recv_nothing(30)
    stats = run.sim.stats
    assert (stats.receipts_sent, stats.receipts_acked, stats.receipts_failed) == (1, 0, 1)


async def test_receipts_in_flight_when_the_connection_drops_count_as_failed(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    await submit_ok(esme)
    await esme.deliver()
    await esme.aclose()
    with trio.fail_after(5):
        while run.sim.stats.receipts_failed < 1:
            await trio.sleep(0.01)
    assert run.sim.stats.sessions == 0


async def test_a_refused_receipt_is_sent_again_until_its_attempts_are_spent(
    nursery, autojump_clock
):
    config = SimulatorConfig(receipts=ReceiptConfig(attempts=3, retry_delay=5))
    run = await serve(nursery, config)
    esme = await run.bound()
    message_id = await submit_ok(esme)
    sends = []
    for _ in range(3):
        pdu = await esme.deliver()
        sends.append((trio.current_time(), receipt_from_pdu(pdu)))
        await esme.ack(pdu, S.ESME_RX_T_APPN)
    await esme.recv_nothing(30)  # three sends, then it gives up
    assert all(r is not None and r.message_id == message_id for _, r in sends)
    # Each resend waits retry_delay after the failure.
    assert sends[1][0] - sends[0][0] == pytest.approx(5, abs=0.1)
    assert sends[2][0] - sends[1][0] == pytest.approx(5, abs=0.1)
    stats = run.sim.stats
    assert (stats.receipts_sent, stats.receipts_failed, stats.receipts_retried) == (3, 3, 2)


async def test_a_resent_receipt_stops_once_acknowledged(nursery, autojump_clock):
    run = await serve(nursery, SimulatorConfig(receipts=ReceiptConfig(attempts=5, retry_delay=1)))
    esme = await run.bound()
    await submit_ok(esme)
    await esme.ack(await esme.deliver(), S.ESME_RX_T_APPN)
    await esme.ack(await esme.deliver())
    await esme.recv_nothing(30)
    stats = run.sim.stats
    assert (stats.receipts_sent, stats.receipts_acked, stats.receipts_failed) == (2, 1, 1)


async def test_a_receipt_lost_with_its_connection_goes_to_the_next_receiver(nursery):
    config = SimulatorConfig(receipts=ReceiptConfig(attempts=2, retry_delay=0.2))
    run = await serve(nursery, config)
    esme = await run.bound()
    message_id = await submit_ok(esme)
    await esme.deliver()
    await esme.aclose()  # in flight when the connection ends
    with trio.fail_after(5):
        again = await run.bound()
        pdu = await again.deliver()
    receipt = receipt_from_pdu(pdu)
    assert receipt is not None and receipt.message_id == message_id
    await again.ack(pdu)
    with trio.fail_after(5):
        while run.sim.stats.receipts_acked < 1:
            await trio.sleep(0.01)
    assert run.sim.stats.receipts_retried == 1


async def test_submit_multi_gets_one_receipt_per_accepted_destination(nursery, autojump_clock):
    run = await serve(nursery, SimulatorConfig(reject_destinations=["999"]))
    esme = await run.bound()
    pdu = SubmitMulti(
        sequence_number=esme.seq(), source_addr="1", registered_delivery=1,
        dest_address=(SmeAddress("491"), SmeAddress("9992"), SmeAddress("493")),
        short_message=b"hi",
    )
    resp = await esme.request(pdu)
    receipts = [await esme.deliver(), await esme.deliver()]
    assert {r.source_addr for r in receipts} == {"491", "493"}
    assert {r.tlv("receipted_message_id") for r in receipts} == {resp.message_id}
    await esme.recv_nothing(30)


@pytest.mark.parametrize("delay", [0, 30])
async def test_receipt_before_response_on_a_transceiver(nursery, autojump_clock, delay):
    config = SimulatorConfig(receipts=ReceiptConfig(before_response=1.0, delay=delay))
    run = await serve(nursery, config)
    esme = await run.bound()
    seq = esme.seq()
    await esme.send(submit(seq))
    first = await esme.recv()
    second = await esme.recv()
    assert isinstance(first, DeliverSm)
    assert isinstance(second, SubmitSmResp)
    assert second.sequence_number == seq
    assert first.tlv("receipted_message_id") == second.message_id


async def test_receipt_before_response_across_a_transmitter_receiver_pair(nursery):
    config = SimulatorConfig(receipts=ReceiptConfig(before_response=1.0))
    run = await serve(nursery, config)
    tx = await run.bound(BindTransmitter, system_id="shop")
    rx = await run.bound(BindReceiver, system_id="shop")
    seq = tx.seq()
    await tx.send(submit(seq))
    receipt = await rx.deliver()
    # The receipt was written before the response: it is in hand while the response may be
    # in flight; the response does come.
    resp = await tx.recv()
    assert isinstance(resp, SubmitSmResp)
    assert receipt.tlv("receipted_message_id") == resp.message_id


async def test_receipt_before_response_without_a_receiver_still_answers(nursery):
    config = SimulatorConfig(receipts=ReceiptConfig(before_response=1.0))
    run = await serve(nursery, config)
    tx = await run.bound(BindTransmitter)
    resp = await tx.request(submit(tx.seq()))
    assert resp.command_status == 0
    assert run.sim.stats.receipts_queued == 1


async def test_receipt_before_response_fraction_mixes_both_orders(nursery):
    config = SimulatorConfig(seed=2, receipts=ReceiptConfig(before_response=0.5))
    run = await serve(nursery, config)
    esme = await run.bound()
    orders = Counter()
    for _ in range(40):
        seq = esme.seq()
        await esme.send(submit(seq))
        first = await esme.recv()
        second = await esme.recv()
        kinds = (type(first).__name__, type(second).__name__)
        orders[kinds] += 1
        receipt = first if isinstance(first, DeliverSm) else second
        await esme.ack(receipt)
    assert set(orders) == {("DeliverSm", "SubmitSmResp"), ("SubmitSmResp", "DeliverSm")}
