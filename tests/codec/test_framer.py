"""The incremental framer, by example (the split-point property lives in test_properties)."""

from __future__ import annotations

import struct

import pytest

from smpp_codec import (
    NEED_DATA,
    CommandId,
    CommandStatus,
    DeliverSm,
    EnquireLink,
    Framer,
    InvalidCommandLength,
    InvalidPdu,
    MessageState,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    UnknownCommandId,
    encode,
    tlv,
)

S = CommandStatus

PDUS: list[Pdu] = [
    EnquireLink(sequence_number=1),
    SubmitSm(sequence_number=2, source_addr="Acme", destination_addr="447700900123",
             short_message=b"Hello"),
    DeliverSm(
        sequence_number=3, source_addr="447700900123", destination_addr="Acme", esm_class=4,
        short_message=b"id:1 stat:DELIVRD",
        optional_parameters=tlv.build(
            receipted_message_id="1", message_state=MessageState.DELIVERED
        ),
    ),
    SubmitSmResp(sequence_number=4, command_status=S.ESME_RTHROTTLED),
]
STREAM = b"".join(map(encode, PDUS))


def header(length: int, command_id: int = CommandId.SUBMIT_SM, seq: int = 0x42) -> bytes:
    return struct.pack(">IIII", length, command_id, 0, seq)


def test_byte_by_byte() -> None:
    framer = Framer()
    out: list[Pdu] = []
    ends = set()
    end = 0
    for pdu in PDUS:
        end += len(encode(pdu))
        ends.add(end)
    for i in range(len(STREAM)):
        framer.feed(STREAM[i : i + 1])
        got = framer.next_pdu()
        if i + 1 in ends:
            assert got is not NEED_DATA, f"a PDU ends at octet {i + 1}"
            out.append(got)
            assert framer.buffered == 0
        else:
            assert got is NEED_DATA
            assert framer.buffered == i + 1 - max((e for e in ends if e <= i), default=0)
    assert out == PDUS


def test_several_pdus_in_one_chunk() -> None:
    framer = Framer()
    framer.feed(STREAM)
    assert framer.buffered == len(STREAM)
    assert [framer.next_pdu() for _ in PDUS] == PDUS
    assert framer.next_pdu() is NEED_DATA
    assert framer.buffered == 0


def test_a_chunk_ending_inside_the_header_and_inside_the_body() -> None:
    first = encode(PDUS[1])
    framer = Framer()
    framer.feed(first[:10])  # inside the header
    assert framer.next_pdu() is NEED_DATA
    framer.feed(first[10:30])  # header whole, body partial
    assert framer.next_pdu() is NEED_DATA
    assert framer.buffered == 30
    framer.feed(first[30:] + STREAM[:5])  # rest of the PDU and the start of the next stream
    assert framer.next_pdu() == PDUS[1]
    assert framer.buffered == 5
    assert framer.next_pdu() is NEED_DATA


def test_feed_takes_bytearray_and_memoryview() -> None:
    framer = Framer()
    framer.feed(bytearray(STREAM[:20]))
    framer.feed(memoryview(STREAM)[20:])
    assert list(framer) == PDUS


def test_oversize_command_length_is_refused_from_the_header_alone() -> None:
    framer = Framer(max_command_length=1000)
    framer.feed(header(1001, seq=0x42))  # just the 16-octet header; no body has arrived
    with pytest.raises(InvalidCommandLength) as info:
        framer.next_pdu()
    error = info.value
    assert error.command_status == S.ESME_RINVCMDLEN
    assert error.framing_ok is False
    assert (error.command_id, error.sequence_number) == (CommandId.SUBMIT_SM, 0x42)
    assert framer.broken


def test_default_maximum_refuses_a_4_gib_claim_at_once() -> None:
    framer = Framer()
    framer.feed(header(0xFFFFFFFF))
    with pytest.raises(InvalidCommandLength):
        framer.next_pdu()


def test_a_pdu_of_exactly_the_maximum_is_accepted() -> None:
    pdu = SubmitSm(sequence_number=1, optional_parameters=tlv.build(message_payload=b"x" * 100))
    data = encode(pdu)
    framer = Framer(max_command_length=len(data))
    framer.feed(data)
    assert framer.next_pdu() == pdu
    framer.feed(encode(SubmitSm(sequence_number=2, optional_parameters=tlv.build(
        message_payload=b"x" * 101))))
    with pytest.raises(InvalidCommandLength):
        framer.next_pdu()


@pytest.mark.parametrize("length", [0, 1, 15])
def test_command_length_below_16_is_refused_from_the_header(length: int) -> None:
    framer = Framer()
    framer.feed(header(length, CommandId.ENQUIRE_LINK, seq=5))
    with pytest.raises(InvalidCommandLength) as info:
        framer.next_pdu()
    assert info.value.framing_ok is False
    assert info.value.sequence_number == 5


def test_broken_state_persists() -> None:
    framer = Framer(max_command_length=100)
    framer.feed(header(101) + encode(PDUS[0]))
    with pytest.raises(InvalidCommandLength) as first:
        framer.next_pdu()
    framer.feed(STREAM)  # even whole, valid PDUs after it are not trusted
    for _ in range(3):
        with pytest.raises(InvalidCommandLength) as again:
            framer.next_pdu()
        assert again.value is first.value
    with pytest.raises(InvalidCommandLength):
        list(framer)
    assert framer.broken


def test_unknown_command_mid_stream_keeps_the_stream_in_step() -> None:
    unknown = struct.pack(">IIII", 20, 0x00000200, 0, 0x77) + b"\x01\x02\x03\x04"
    framer = Framer()
    framer.feed(encode(PDUS[0]) + unknown + encode(PDUS[1]))
    assert framer.next_pdu() == PDUS[0]
    with pytest.raises(UnknownCommandId) as info:
        framer.next_pdu()
    assert info.value.framing_ok is True
    assert (info.value.command_id, info.value.sequence_number) == (0x200, 0x77)
    assert info.value.command_status == S.ESME_RINVCMDID
    assert not framer.broken
    assert framer.next_pdu() == PDUS[1]
    assert framer.buffered == 0


def test_malformed_body_mid_stream_keeps_the_stream_in_step() -> None:
    bad = bytearray(encode(SubmitSm(sequence_number=9, source_addr="Acme")))
    bad[-1] = 0x05  # sm_length 5 with no short_message after it
    framer = Framer()
    framer.feed(bytes(bad) + encode(PDUS[0]))
    with pytest.raises(InvalidPdu) as info:
        framer.next_pdu()
    assert info.value.framing_ok is True
    assert (info.value.field, info.value.sequence_number) == ("short_message", 9)
    assert framer.next_pdu() == PDUS[0]


def test_iteration_yields_whole_pdus_and_stops_at_need_data() -> None:
    framer = Framer()
    cut = len(STREAM) - 3
    framer.feed(STREAM[:cut])
    assert list(framer) == PDUS[:-1]
    assert framer.buffered == len(encode(PDUS[-1])) - 3
    assert list(framer) == []  # still nothing whole
    framer.feed(STREAM[cut:])
    assert list(framer) == PDUS[-1:]
    assert iter(framer) is framer


def test_max_command_length_below_16_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="16"):
        Framer(max_command_length=15)
    assert Framer(max_command_length=16).max_command_length == 16
