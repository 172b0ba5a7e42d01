"""Mobile-originated messages on demand: single, multipart (UDH 8/16, SAR, payload), UCS-2."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from smpp_codec import BindReceiver, BindTransmitter, CommandStatus, DeliverSm, GenericNack
from smpp_codec.constants import DataCoding, EsmClass, Tag
from smpp_codec.segment import Reassembler, SplitMode, concat_info
from smpp_codec.text import decode as decode_text
from smsgw.simulator import NoReceiverError, SimulatorConfig

from .esme import RawEsme, serve

S = CommandStatus


async def collect(esme: RawEsme, count: int, status: int = 0) -> list[DeliverSm]:
    pdus = []
    for _ in range(count):
        pdu = await esme.deliver()
        await esme.ack(pdu, status)
        pdus.append(pdu)
    return pdus


def reassemble(pdus: list[DeliverSm]) -> str:
    joiner = Reassembler()
    joined = None
    for pdu in pdus:
        info = concat_info(pdu.short_message, pdu.esm_class, pdu.optional_parameters)
        assert info is not None
        joined = joiner.add("k", info, now=0.0)
    assert joined is not None
    return decode_text(joined, pdus[0].data_coding)


async def test_a_single_gsm7_mo(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    async with trio.open_nursery() as inner:
        inner.start_soon(collect, esme, 1)
        result = await run.sim.send_mo(source_addr="4917611111", destination_addr="1234",
                                       text="Hello {world}")
    assert result.ok
    assert result.statuses == (0,)
    assert result.system_id == "esme"
    stats = run.sim.stats
    assert (stats.mos_sent, stats.mos_acked, stats.mos_failed) == (1, 1, 0)


async def test_the_mo_pdu_fields(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    async with trio.open_nursery() as inner:
        inner.start_soon(partial(run.sim.send_mo, source_addr="4917611111", destination_addr="1234",
                         text="Hello {world}"))
        (pdu,) = await collect(esme, 1)
    assert (pdu.source_addr, pdu.destination_addr) == ("4917611111", "1234")
    assert (pdu.source_addr_ton, pdu.source_addr_npi) == (1, 1)
    assert pdu.esm_class == 0
    assert pdu.data_coding == DataCoding.SMSC_DEFAULT
    assert decode_text(pdu.short_message, pdu.data_coding) == "Hello {world}"


@pytest.mark.parametrize(
    ("mode", "text", "parts", "data_coding"),
    [
        (SplitMode.UDH8, "a" * 400, 3, DataCoding.SMSC_DEFAULT),
        ("udh16", "b" * 200, 2, DataCoding.SMSC_DEFAULT),
        (SplitMode.SAR, "c" * 161, 2, DataCoding.SMSC_DEFAULT),
        (SplitMode.UDH8, "Привет, мир! 😀 " * 10, 3, DataCoding.UCS2),
        ("sar", "ωmega " * 30, 3, DataCoding.UCS2),
    ],
)
async def test_multipart_mo_parts_reassemble_to_the_text(
    nursery, autojump_clock, mode, text, parts, data_coding
):
    run = await serve(nursery)
    esme = await run.bound()
    async with trio.open_nursery() as inner:
        inner.start_soon(partial(run.sim.send_mo, source_addr="1", destination_addr="2", text=text,
                         multipart_mode=mode))
        pdus = await collect(esme, parts)
    await esme.recv_nothing(30)
    assert {p.data_coding for p in pdus} == {data_coding}
    udh = SplitMode(mode) in (SplitMode.UDH8, SplitMode.UDH16)
    assert all(bool(p.esm_class & EsmClass.UDHI) is udh for p in pdus)
    assert all((p.tlv(Tag.SAR_MSG_REF_NUM) is not None) is (not udh) for p in pdus)
    assert reassemble(pdus) == text
    assert run.sim.stats.mos_acked == parts


async def test_payload_mode_sends_one_message_payload(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    text = "x" * 500
    async with trio.open_nursery() as inner:
        inner.start_soon(partial(run.sim.send_mo, source_addr="1", destination_addr="2", text=text,
                         multipart_mode="payload"))
        (pdu,) = await collect(esme, 1)
    assert pdu.short_message == b""
    assert decode_text(pdu.tlv("message_payload"), pdu.data_coding) == text


async def test_explicit_ucs2_and_binary_content(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    async with trio.open_nursery() as inner:
        inner.start_soon(partial(run.sim.send_mo, source_addr="1", destination_addr="2",
                                 text="plain", encoding="UCS2"))
        (pdu,) = await collect(esme, 1)
    assert pdu.data_coding == DataCoding.UCS2
    assert pdu.short_message == "plain".encode("utf-16-be")
    async with trio.open_nursery() as inner:
        inner.start_soon(partial(run.sim.send_mo, source_addr="1", destination_addr="2",
                         text=b"\x00\x01\xff"))
        (pdu,) = await collect(esme, 1)
    assert pdu.data_coding == DataCoding.BINARY
    assert pdu.short_message == b"\x00\x01\xff"


async def test_mo_goes_to_the_named_system_id_and_not_to_transmitters(nursery):
    run = await serve(nursery)
    await run.bound(BindTransmitter, system_id="tx-only")
    first = await run.bound(BindReceiver, system_id="first")
    second = await run.bound(BindReceiver, system_id="second")
    async with trio.open_nursery() as inner:
        inner.start_soon(collect, second, 1)
        result = await run.sim.send_mo(source_addr="1", destination_addr="2", text="x",
                                       system_id="second")
    assert result.system_id == "second"
    async with trio.open_nursery() as inner:
        inner.start_soon(collect, first, 1)
        result = await run.sim.send_mo(source_addr="1", destination_addr="2", text="y")
    assert result.system_id == "first"  # the first bound receiver
    with pytest.raises(NoReceiverError):
        await run.sim.send_mo(source_addr="1", destination_addr="2", text="z",
                              system_id="tx-only")


async def test_mo_without_any_receiver_raises(nursery):
    run = await serve(nursery)
    await run.bound(BindTransmitter)
    with pytest.raises(NoReceiverError):
        await run.sim.send_mo(source_addr="1", destination_addr="2", text="z")


async def test_mo_statuses_report_refusals_nacks_and_silence(nursery, autojump_clock):
    run = await serve(nursery, SimulatorConfig(response_timeout=5))
    esme = await run.bound()

    async def answer_badly() -> None:
        first = await esme.deliver()
        await esme.ack(first, S.ESME_RX_T_APPN)
        second = await esme.deliver()
        await esme.send(GenericNack(sequence_number=second.sequence_number,
                                    command_status=S.ESME_RINVCMDID))
        await esme.deliver()  # never answered

    async with trio.open_nursery() as inner:
        inner.start_soon(answer_badly)
        result = await run.sim.send_mo(source_addr="1", destination_addr="2", text="q" * 400,
                                       timeout=60)
    assert result.statuses == (S.ESME_RX_T_APPN, S.ESME_RINVCMDID, None)
    assert not result.ok
    stats = run.sim.stats
    assert (stats.mos_sent, stats.mos_acked, stats.mos_failed) == (3, 0, 3)


async def test_send_mo_gives_up_after_its_timeout(nursery, autojump_clock):
    run = await serve(nursery, SimulatorConfig(deliver_window=1, response_timeout=100))
    esme = await run.bound()
    start = trio.current_time()
    result = await run.sim.send_mo(source_addr="1", destination_addr="2", text="w" * 400,
                                   timeout=7)
    assert trio.current_time() - start == pytest.approx(7)
    assert result.statuses == (None, None, None)
    await esme.deliver()  # the first part went out; the window (1) held the others back
    await esme.recv_nothing(200)  # and after the timeout they are never sent
    assert run.sim.stats.mos_sent == 1


async def test_a_text_that_does_not_fit_its_encoding_is_refused(nursery):
    from smpp_codec.errors import TextError

    run = await serve(nursery)
    await run.bound()
    with pytest.raises(TextError):
        await run.sim.send_mo(source_addr="1", destination_addr="2", text="ω", encoding="gsm7")


async def test_spread_sends_the_parts_round_the_receivers_of_the_account(nursery):
    run = await serve(nursery)
    first, second = await run.bound(), await run.bound()
    other = await run.bound(system_id="other")  # another account: none of its parts
    text = "abc " * 100  # GSM 7-bit: 3 parts
    got: dict[str, list[DeliverSm]] = {}

    async def take(name: str, esme: RawEsme, count: int) -> None:
        got[name] = await collect(esme, count)

    async with trio.open_nursery() as inner:
        inner.start_soon(take, "first", first, 2)
        inner.start_soon(take, "second", second, 1)
        result = await run.sim.send_mo(source_addr="1", destination_addr="2", text=text,
                                       spread=True)
    assert result.ok and result.statuses == (0, 0, 0)
    numbers = {
        name: [concat_info(p.short_message, p.esm_class, p.optional_parameters).number
               for p in pdus]
        for name, pdus in got.items()
    }
    assert numbers == {"first": [1, 3], "second": [2]}
    assert reassemble(got["first"][:1] + got["second"] + got["first"][1:]) == text
    with trio.move_on_after(0.2):
        await other.deliver()
        raise AssertionError("a part went to another account")


async def test_with_mo_attempts_a_part_not_answered_ok_is_sent_again(nursery, autojump_clock):
    config = SimulatorConfig(response_timeout=5, mo_attempts=3, mo_retry_delay=2)
    run = await serve(nursery, config)
    esme = await run.bound()
    times = []

    async def answer() -> None:
        first = await esme.deliver()
        times.append(trio.current_time())
        await esme.ack(first, S.ESME_RX_T_APPN)  # an error: again in 2s
        await esme.deliver()  # no answer: again 5s (the timeout) + 2s later
        times.append(trio.current_time())
        third = await esme.deliver()
        times.append(trio.current_time())
        await esme.ack(third)

    async with trio.open_nursery() as inner:
        inner.start_soon(answer)
        result = await run.sim.send_mo(source_addr="1", destination_addr="2", text="hi",
                                       timeout=60)
    assert result.ok and result.statuses == (0,)
    assert [round(t - times[0]) for t in times] == [0, 2, 9]
    stats = run.sim.stats
    assert (stats.mos_sent, stats.mos_acked, stats.mos_failed, stats.mos_retried) == (3, 1, 2, 2)


async def test_with_mo_attempts_the_last_answer_is_the_status(nursery, autojump_clock):
    run = await serve(nursery, SimulatorConfig(mo_attempts=2, mo_retry_delay=1))
    esme = await run.bound()

    async def refuse() -> None:
        for _ in range(2):
            await esme.ack(await esme.deliver(), S.ESME_RSYSERR)

    async with trio.open_nursery() as inner:
        inner.start_soon(refuse)
        result = await run.sim.send_mo(source_addr="1", destination_addr="2", text="hi")
    assert result.statuses == (S.ESME_RSYSERR,)
    await esme.recv_nothing(5)  # two sends: no third


async def test_with_mo_attempts_parts_of_a_closed_connection_go_to_another(
    nursery, autojump_clock
):
    run = await serve(nursery, SimulatorConfig(deliver_window=1, mo_attempts=2, mo_retry_delay=3))
    first = await run.bound()
    text = "abc " * 100  # 3 parts, one at a time on the first connection
    got = []

    async def crash_then_serve() -> None:
        await first.deliver()  # part 1 sent; parts 2 and 3 queued behind the window
        await first.aclose()  # gone without answering: part 1 again in 3s, 2 and 3 at once
        second = await run.bound()
        for _ in range(3):
            pdu = await second.deliver()
            got.append(concat_info(pdu.short_message, pdu.esm_class, pdu.optional_parameters))
            await second.ack(pdu)

    async with trio.open_nursery() as inner:
        inner.start_soon(crash_then_serve)
        result = await run.sim.send_mo(source_addr="1", destination_addr="2", text=text,
                                       timeout=60)
    assert result.ok
    assert [info.number for info in got] == [2, 3, 1]
    assert run.sim.stats.mos_retried == 3
