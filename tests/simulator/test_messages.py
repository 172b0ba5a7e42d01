"""Message submission and management: ids, submit_multi, data_sm, query/cancel/replace_sm."""

from __future__ import annotations

import re
import struct
import uuid

import pytest
import trio

from smpp_codec import (
    BindTransmitter,
    CancelSm,
    CancelSmResp,
    CommandStatus,
    DataSm,
    DataSmResp,
    DistributionList,
    MessageState,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    encode,
    tlv,
)
from smpp_codec.smpptime import format_relative, parse_time
from smsgw.simulator import Faults, ReceiptConfig, SimulatorConfig

from .esme import RawEsme, serve

S = CommandStatus


def submit(seq: int, **fields: object) -> SubmitSm:
    fields.setdefault("source_addr", "4915112345")
    fields.setdefault("destination_addr", "4917612345")
    fields.setdefault("short_message", b"hello")
    return SubmitSm(sequence_number=seq, **fields)  # type: ignore[arg-type]


async def submit_ok(esme: RawEsme, **fields: object) -> str:
    resp = await esme.request(submit(esme.seq(), **fields))
    assert isinstance(resp, SubmitSmResp)
    assert resp.command_status == 0, resp
    return resp.message_id


@pytest.mark.parametrize(
    ("id_format", "pattern"),
    [("hex", r"[0-9A-F]+"), ("decimal", r"[0-9]+"), ("uuid", None)],
)
async def test_message_ids_are_unique_and_in_the_configured_form(nursery, id_format, pattern):
    run = await serve(nursery, SimulatorConfig(id_format=id_format, seed=7))
    esmes = [await run.bound(BindTransmitter, system_id=f"e{i}") for i in range(2)]
    ids = []
    for i in range(150):
        ids.append(await submit_ok(esmes[i % 2]))
    assert len(set(ids)) == len(ids)
    for message_id in ids:
        if pattern is None:
            assert str(uuid.UUID(message_id)) == message_id
        else:
            assert re.fullmatch(pattern, message_id), message_id
    assert run.sim.stats.submits_accepted == 150
    assert run.sim.stats.messages_stored == 150


async def test_the_same_seed_gives_the_same_ids_and_another_seed_others(nursery):
    async def ids(seed: int) -> list[str]:
        run = await serve(nursery, SimulatorConfig(seed=seed))
        esme = await run.bound()
        return [await submit_ok(esme) for _ in range(3)]

    first = await ids(11)
    assert await ids(11) == first
    assert set(await ids(12)).isdisjoint(first)


async def test_empty_and_rejected_destinations_are_refused(nursery):
    run = await serve(nursery, SimulatorConfig(reject_destinations="999,000"))
    esme = await run.bound()
    for dest in ("", "9991234", "000"):
        resp = await esme.request(submit(esme.seq(), destination_addr=dest))
        assert resp.command_status == S.ESME_RINVDSTADR
    assert await submit_ok(esme, destination_addr="4999")
    stats = run.sim.stats
    assert (stats.submits_accepted, stats.submits_rejected) == (1, 3)


async def test_submit_multi_lists_failed_destinations_in_unsuccess_sme(nursery):
    run = await serve(nursery, SimulatorConfig(reject_destinations=["999"]))
    esme = await run.bound()
    pdu = SubmitMulti(
        sequence_number=esme.seq(),
        source_addr="123",
        dest_address=(
            SmeAddress("4917600001", 1, 1),
            SmeAddress("9990001", 1, 1),
            DistributionList("friends"),
            SmeAddress("4917600002"),
        ),
        short_message=b"hi all",
    )
    resp = await esme.request(pdu)
    assert isinstance(resp, SubmitMultiResp)
    assert resp.command_status == 0
    assert resp.message_id
    failed = {(u.destination_addr, u.error_status_code) for u in resp.unsuccess_sme}
    assert failed == {("9990001", S.ESME_RINVDSTADR), ("friends", S.ESME_RINVDLNAME)}
    bad = next(u for u in resp.unsuccess_sme if u.destination_addr == "9990001")
    assert (bad.dest_addr_ton, bad.dest_addr_npi) == (1, 1)


async def test_submit_multi_without_destinations_is_refused(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    # The codec will not encode it: patch number_of_dests to 0 and cut the one destination.
    data = encode(SubmitMulti(sequence_number=5, source_addr="1", dest_address=[SmeAddress("2")]))
    offset = 16 + 1 + 1 + 1 + 2  # header, service_type, ton, npi, source_addr "1"
    body = data[16:offset] + b"\0" + data[offset + 1 + 5:]
    await esme.send_raw(struct.pack(">IIII", 16 + len(body), 0x21, 0, 5) + body)
    resp = await esme.recv()
    assert isinstance(resp, SubmitMultiResp)
    assert resp.command_status == S.ESME_RINVNUMDESTS


async def test_data_sm_is_accepted_with_a_message_id(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    pdu = DataSm(
        sequence_number=esme.seq(),
        source_addr="1",
        destination_addr="2",
        optional_parameters=tlv.build(message_payload=b"payload text"),
    )
    resp = await esme.request(pdu)
    assert isinstance(resp, DataSmResp)
    assert resp.command_status == 0
    assert resp.message_id
    query = await esme.request(QuerySm(sequence_number=esme.seq(), message_id=resp.message_id,
                                       source_addr="1"))
    assert query.command_status == 0


async def test_query_sm_reports_enroute_then_the_final_state(nursery, autojump_clock):
    config = SimulatorConfig(receipts=ReceiptConfig(delay=60, outcomes="UNDELIV=1"))
    run = await serve(nursery, config)
    esme = await run.bound()
    message_id = await submit_ok(esme)
    query = QuerySm(sequence_number=esme.seq(), message_id=message_id, source_addr="4915112345")
    resp = await esme.request(query)
    assert isinstance(resp, QuerySmResp)
    assert resp.command_status == 0
    assert resp.message_id == message_id
    assert resp.message_state == MessageState.ENROUTE
    assert resp.final_date == ""
    submitted = run.sim.smsc.wall(trio.current_time())
    await trio.sleep(61)
    resp = await esme.request(QuerySm(sequence_number=esme.seq(), message_id=message_id))
    assert resp.message_state == MessageState.UNDELIVERABLE
    assert resp.error_code == 1  # the default err of UNDELIV is "001"
    final = parse_time(resp.final_date)
    assert abs((final - submitted).total_seconds() - 60) < 1


async def test_query_of_an_unknown_or_foreign_message_fails(nursery):
    run = await serve(nursery)
    alice = await run.bound(system_id="alice")
    bob = await run.bound(system_id="bob")
    message_id = await submit_ok(alice)
    for esme, mid, source in ((alice, "nope", ""), (bob, message_id, "")):
        resp = await esme.request(QuerySm(sequence_number=esme.seq(), message_id=mid,
                                          source_addr=source))
        assert resp.command_status == S.ESME_RINVMSGID
    resp = await alice.request(QuerySm(sequence_number=alice.seq(), message_id=message_id,
                                       source_addr="555"))
    assert resp.command_status == S.ESME_RINVSRCADR


async def test_cancel_sm_works_only_while_the_message_is_pending(nursery, autojump_clock):
    config = SimulatorConfig(receipts=ReceiptConfig(delay=30))
    run = await serve(nursery, config)
    esme = await run.bound()
    pending = await submit_ok(esme, registered_delivery=1)
    resp = await esme.request(CancelSm(sequence_number=esme.seq(), message_id=pending))
    assert isinstance(resp, CancelSmResp)
    assert resp.command_status == 0
    query = await esme.request(QuerySm(sequence_number=esme.seq(), message_id=pending))
    assert query.message_state == MessageState.DELETED
    again = await esme.request(CancelSm(sequence_number=esme.seq(), message_id=pending))
    assert again.command_status == S.ESME_RCANCELFAIL
    # the cancelled message's receipt never comes
    await esme.recv_nothing(60)
    assert run.sim.stats.receipts_sent == 0
    delivered = await submit_ok(esme)
    await trio.sleep(31)
    late = await esme.request(CancelSm(sequence_number=esme.seq(), message_id=delivered))
    assert late.command_status == S.ESME_RCANCELFAIL


async def test_cancel_sm_without_id_cancels_every_pending_message_of_the_source(
    nursery, autojump_clock
):
    run = await serve(nursery, SimulatorConfig(receipts=ReceiptConfig(delay=30)))
    esme = await run.bound()
    ids = [await submit_ok(esme, source_addr="777", destination_addr=f"49{i}") for i in range(3)]
    other = await submit_ok(esme, source_addr="888")
    resp = await esme.request(CancelSm(sequence_number=esme.seq(), source_addr="777",
                                       destination_addr="491"))
    assert resp.command_status == 0
    states = {}
    for message_id in [*ids, other]:
        query = await esme.request(QuerySm(sequence_number=esme.seq(), message_id=message_id))
        states[message_id] = query.message_state
    assert states == {ids[0]: MessageState.ENROUTE, ids[1]: MessageState.DELETED,
                      ids[2]: MessageState.ENROUTE, other: MessageState.ENROUTE}
    resp = await esme.request(CancelSm(sequence_number=esme.seq(), source_addr="777"))
    assert resp.command_status == 0
    resp = await esme.request(CancelSm(sequence_number=esme.seq(), source_addr="777"))
    assert resp.command_status == S.ESME_RCANCELFAIL


async def test_replace_sm_changes_a_pending_message_and_its_receipt(nursery, autojump_clock):
    run = await serve(nursery, SimulatorConfig(receipts=ReceiptConfig(delay=30)))
    esme = await run.bound()
    message_id = await submit_ok(esme, short_message=b"first text")
    replace = ReplaceSm(
        sequence_number=esme.seq(),
        message_id=message_id,
        source_addr="4915112345",
        short_message=b"second text",
        registered_delivery=1,
    )
    resp = await esme.request(replace)
    assert isinstance(resp, ReplaceSmResp)
    assert resp.command_status == 0
    receipt = await esme.deliver(timeout=60)
    assert b"text:second text" in receipt.short_message
    await esme.ack(receipt)
    late = await esme.request(ReplaceSm(sequence_number=esme.seq(), message_id=message_id,
                                        short_message=b"x"))
    assert late.command_status == S.ESME_RREPLACEFAIL
    unknown = await esme.request(ReplaceSm(sequence_number=esme.seq(), message_id="zz"))
    assert unknown.command_status == S.ESME_RINVMSGID


async def test_replace_sm_with_a_new_schedule_moves_the_receipt(nursery, autojump_clock):
    run = await serve(nursery, SimulatorConfig(receipts=ReceiptConfig(delay=10)))
    esme = await run.bound()
    start = trio.current_time()
    message_id = await submit_ok(esme, registered_delivery=1)
    resp = await esme.request(ReplaceSm(
        sequence_number=esme.seq(), message_id=message_id, registered_delivery=1,
        schedule_delivery_time="000000000100000R", short_message=b"later",
    ))
    assert resp.command_status == 0
    receipt = await esme.deliver(timeout=300)
    assert trio.current_time() - start == pytest.approx(70)  # 1 minute later, then the delay
    await esme.ack(receipt)
    await esme.recv_nothing(100)  # the receipt of the old schedule is not sent too
    assert run.sim.stats.receipts_sent == 1


async def test_schedule_and_validity_times(nursery, autojump_clock):
    run = await serve(nursery, SimulatorConfig(receipts=ReceiptConfig(delay=10)))
    esme = await run.bound()
    start = trio.current_time()
    in_two_minutes = format_relative(parse_time("000000000200000R"))
    scheduled = await submit_ok(esme, schedule_delivery_time=in_two_minutes,
                                registered_delivery=1)
    # Valid for 5 seconds but delivered after 10: it expires.
    expiring = await submit_ok(esme, validity_period="000000000005000R", registered_delivery=1)
    first = await esme.deliver(timeout=300)
    assert first.tlv("receipted_message_id") == expiring
    assert first.tlv("message_state") == MessageState.EXPIRED
    assert trio.current_time() - start == pytest.approx(5)
    await esme.ack(first)
    second = await esme.deliver(timeout=300)
    assert second.tlv("receipted_message_id") == scheduled
    assert second.tlv("message_state") == MessageState.DELIVERED
    assert trio.current_time() - start == pytest.approx(130)
    await esme.ack(second)


async def test_bad_time_fields_are_refused_with_their_status(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    resp = await esme.request(submit(esme.seq(), schedule_delivery_time="991399999999999+"))
    assert resp.command_status == S.ESME_RINVSCHED
    resp = await esme.request(submit(esme.seq(), validity_period="0000000000000000"))
    assert resp.command_status == S.ESME_RINVEXPIRY


async def test_the_store_forgets_the_oldest_messages_beyond_its_limit(nursery):
    run = await serve(nursery, SimulatorConfig(max_messages=3))
    esme = await run.bound()
    ids = [await submit_ok(esme) for _ in range(4)]
    first = await esme.request(QuerySm(sequence_number=esme.seq(), message_id=ids[0]))
    assert first.command_status == S.ESME_RINVMSGID
    last = await esme.request(QuerySm(sequence_number=esme.seq(), message_id=ids[-1]))
    assert last.command_status == 0
    assert run.sim.stats.messages_stored == 3


async def test_faults_do_not_touch_message_management(nursery):
    run = await serve(nursery, SimulatorConfig(faults=Faults(throttle_fraction=1)))
    esme = await run.bound()
    resp = await esme.request(submit(esme.seq()))
    assert resp.command_status == S.ESME_RTHROTTLED
    query = await esme.request(QuerySm(sequence_number=esme.seq(), message_id="1"))
    assert query.command_status == S.ESME_RINVMSGID
