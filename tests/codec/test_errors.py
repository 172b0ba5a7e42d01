"""The codec's error model, by example.

Encode side: a PDU that breaks the specification raises :class:`EncodeError` naming the field and
carrying the status the spec gives for it; nothing is ever truncated to fit. Decode side: bad
bytes raise :class:`InvalidCommandLength`, :class:`UnknownCommandId` or :class:`InvalidPdu` with
the status to answer with, the field at fault, and the header fields when they were readable;
:func:`error_response` turns that into the PDU to send back (or None).
"""

from __future__ import annotations

import struct
from typing import Any

import attrs
import pytest

from smpp_codec import (
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CommandId,
    CommandStatus,
    DataSm,
    DataSmResp,
    DecodeError,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EncodeError,
    EnquireLink,
    GenericNack,
    InvalidCommandLength,
    InvalidPdu,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    SmeAddress,
    SmppError,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tag,
    UnknownCommandId,
    UnsuccessSme,
    decode,
    encode,
    error_response,
    tlv,
)
from smpp_codec.compile import wire_fields
from smpp_codec.fields import FieldKind
from smpp_codec.pdu import PDU_CLASSES

S = CommandStatus


def framed(command_id: int, body: bytes, *, seq: int = 7, status: int = 0) -> bytes:
    """A whole PDU with an honest command_length around ``body``."""
    return struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body


def raises_encode(pdu: Pdu) -> EncodeError:
    with pytest.raises(EncodeError) as info:
        encode(pdu)
    assert isinstance(info.value, SmppError)
    assert isinstance(info.value, ValueError)
    return info.value


def raises_decode(data: bytes, error: type[DecodeError] = InvalidPdu) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert type(info.value) is error
    return info.value


# --- encode: C-Octet string maximum lengths ---------------------------------------------------

# (class, field, maximum length including the NUL, status for a bad value), from sections 4 and
# 5.2 of the spec. Written out here rather than read from the codec's declarations so that a
# wrong declaration fails.
CSTRING_LIMITS: list[tuple[type[Pdu], str, int, int]] = [
    *[
        (cls, field, max_length, status)
        for cls in (BindTransmitter, BindReceiver, BindTransceiver)
        for field, max_length, status in (
            ("system_id", 16, S.ESME_RINVSYSID),
            ("password", 9, S.ESME_RINVPASWD),
            ("system_type", 13, S.ESME_RINVSYSTYP),
            ("address_range", 41, S.ESME_RINVSRCADR),
        )
    ],
    *[
        (cls, "system_id", 16, S.ESME_RINVSYSID)
        for cls in (BindTransmitterResp, BindReceiverResp, BindTransceiverResp, Outbind)
    ],
    (Outbind, "password", 9, S.ESME_RINVPASWD),
    *[
        (cls, field, max_length, status)
        for cls in (SubmitSm, DeliverSm)
        for field, max_length, status in (
            ("service_type", 6, S.ESME_RINVSERTYP),
            ("source_addr", 21, S.ESME_RINVSRCADR),
            ("destination_addr", 21, S.ESME_RINVDSTADR),
        )
    ],
    (SubmitMulti, "service_type", 6, S.ESME_RINVSERTYP),
    (SubmitMulti, "source_addr", 21, S.ESME_RINVSRCADR),
    # data_sm and alert_notification allow 65-octet addresses (sections 4.7.1, 4.12.1).
    (DataSm, "service_type", 6, S.ESME_RINVSERTYP),
    (DataSm, "source_addr", 65, S.ESME_RINVSRCADR),
    (DataSm, "destination_addr", 65, S.ESME_RINVDSTADR),
    (AlertNotification, "source_addr", 65, S.ESME_RINVSRCADR),
    (AlertNotification, "esme_addr", 65, S.ESME_RINVDSTADR),
    *[
        (cls, "message_id", 65, S.ESME_RINVMSGID)
        for cls in (SubmitSmResp, SubmitMultiResp, DeliverSmResp, DataSmResp, QuerySm,
                    QuerySmResp, CancelSm, ReplaceSm)
    ],
    (QuerySm, "source_addr", 21, S.ESME_RINVSRCADR),
    (CancelSm, "service_type", 6, S.ESME_RINVSERTYP),
    (CancelSm, "source_addr", 21, S.ESME_RINVSRCADR),
    (CancelSm, "destination_addr", 21, S.ESME_RINVDSTADR),
    (ReplaceSm, "source_addr", 21, S.ESME_RINVSRCADR),
]


def test_the_limit_table_covers_every_cstring_field() -> None:
    declared = {
        (cls, name)
        for cls in PDU_CLASSES.values()
        for name, wire in wire_fields(cls)
        if wire.kind is FieldKind.CSTRING
    }
    assert {(cls, field) for cls, field, _, _ in CSTRING_LIMITS} == declared


def _minimal(cls: type[Pdu], **fields: Any) -> Pdu:
    """A valid PDU of ``cls`` (submit_multi needs one destination) with ``fields`` set."""
    if cls is SubmitMulti:
        fields.setdefault("dest_address", (SmeAddress("1"),))
    return cls(sequence_number=1, **fields)


@pytest.mark.parametrize(
    ("cls", "field", "max_length", "status"),
    CSTRING_LIMITS,
    ids=[f"{cls.__name__}.{field}" for cls, field, _, _ in CSTRING_LIMITS],
)
def test_cstring_maximum_length(cls: type[Pdu], field: str, max_length: int, status: int) -> None:
    longest = _minimal(cls, **{field: "7" * (max_length - 1)})
    assert decode(encode(longest)) == longest
    error = raises_encode(_minimal(cls, **{field: "7" * max_length}))
    assert error.field == field
    assert error.command_status == status


def test_submit_multi_destination_limits() -> None:
    ok = SubmitMulti(
        sequence_number=1,
        dest_address=(SmeAddress("1" * 20), DistributionList("d" * 20)),
    )
    assert decode(encode(ok)) == ok
    error = raises_encode(attrs.evolve(ok, dest_address=(SmeAddress("1" * 21),)))
    assert (error.field, error.command_status) == ("dest_address", S.ESME_RINVDSTADR)
    error = raises_encode(attrs.evolve(ok, dest_address=(DistributionList("d" * 21),)))
    assert (error.field, error.command_status) == ("dest_address", S.ESME_RINVDLNAME)
    for count in (0, 255):  # number_of_dests is 1..254 (section 4.5.1)
        many = attrs.evolve(ok, dest_address=(SmeAddress("1"),) * count)
        error = raises_encode(many)
        assert (error.field, error.command_status) == ("dest_address", S.ESME_RINVNUMDESTS)
    error = raises_encode(attrs.evolve(ok, dest_address=("447700900123",)))
    assert error.field == "dest_address"


def test_unsuccess_sme_address_limit() -> None:
    ok = SubmitMultiResp(
        sequence_number=1, message_id="m", unsuccess_sme=(UnsuccessSme("1" * 20, 0x0B),)
    )
    assert decode(encode(ok)) == ok
    error = raises_encode(attrs.evolve(ok, unsuccess_sme=(UnsuccessSme("1" * 21, 0x0B),)))
    assert error.field == "unsuccess_sme"


# --- encode: short_message, message_payload, time fields ------------------------------------


@pytest.mark.parametrize("cls", [SubmitSm, DeliverSm, SubmitMulti, ReplaceSm],
                         ids=lambda cls: cls.__name__)
def test_short_message_holds_at_most_254_octets(cls: type[Pdu]) -> None:
    ok = _minimal(cls, short_message=b"x" * 254)
    assert decode(encode(ok)).short_message == b"x" * 254  # type: ignore[attr-defined]
    error = raises_encode(_minimal(cls, short_message=b"x" * 255))
    assert (error.field, error.command_status) == ("short_message", S.ESME_RINVMSGLEN)


@pytest.mark.parametrize("cls", [SubmitSm, DeliverSm, SubmitMulti],
                         ids=lambda cls: cls.__name__)
def test_message_payload_with_a_short_message_is_refused(cls: type[Pdu]) -> None:
    # Section 5.3.2.32: when message_payload is used, sm_length is 0.
    payload = tlv.build(message_payload=b"x" * 300)
    ok = _minimal(cls, optional_parameters=payload)
    assert decode(encode(ok)) == ok
    error = raises_encode(_minimal(cls, short_message=b"x", optional_parameters=payload))
    assert error.field == "optional_parameters"
    assert error.command_status == S.ESME_RINVOPTPARAMVAL


TIME_FIELDS = [
    (cls, field, status)
    for cls in (SubmitSm, DeliverSm, SubmitMulti, ReplaceSm)
    for field, status in (
        ("schedule_delivery_time", S.ESME_RINVSCHED),
        ("validity_period", S.ESME_RINVEXPIRY),
    )
] + [(QuerySmResp, "final_date", S.ESME_RQUERYFAIL)]  # no status in the spec: the codec's choice


@pytest.mark.parametrize(("cls", "field", "status"), TIME_FIELDS,
                         ids=[f"{c.__name__}.{f}" for c, f, _ in TIME_FIELDS])
def test_time_fields_are_empty_or_16_characters(cls: type[Pdu], field: str, status: int) -> None:
    for good in ("", "230102150405000+", "000001000000000R"):
        pdu = _minimal(cls, **{field: good})
        assert decode(encode(pdu)) == pdu
    for bad in ("2", "230102150405000", "230102150405000+0", "230102150405000+" * 2):
        error = raises_encode(_minimal(cls, **{field: bad}))
        assert (error.field, error.command_status) == (field, status)


# --- encode: text, integers, types ----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "status"),
    [
        ("source_addr", "Caf\u00e9\u2615", S.ESME_RINVSRCADR),  # U+2615 is not Latin-1
        ("destination_addr", "\u0661\u0662", S.ESME_RINVDSTADR),  # Arabic-Indic digits
        ("service_type", "\U0001f600", S.ESME_RINVSERTYP),
        ("validity_period", "00000100000000\u20ac" + "R", S.ESME_RINVEXPIRY),
        ("source_addr", "44\x0077", S.ESME_RINVSRCADR),  # an embedded NUL would cut the string
    ],
)
def test_text_outside_latin1_or_with_nul_is_refused(field: str, value: str, status: int) -> None:
    error = raises_encode(SubmitSm(sequence_number=1, **{field: value}))
    assert (error.field, error.command_status) == (field, status)


def test_latin1_text_is_accepted() -> None:
    pdu = SubmitSm(sequence_number=1, source_addr="Caf\u00e9", destination_addr="\u00ff")
    assert encode(pdu)[16:].startswith(b"\x00\x00\x00Caf\xe9\x00\x00\x00\xff\x00")
    assert decode(encode(pdu)) == pdu


U8_FIELDS = [
    (SubmitSm, "source_addr_ton", S.ESME_RINVSRCTON),
    (SubmitSm, "source_addr_npi", S.ESME_RINVSRCNPI),
    (SubmitSm, "dest_addr_ton", S.ESME_RINVDSTTON),
    (SubmitSm, "dest_addr_npi", S.ESME_RINVDSTNPI),
    (SubmitSm, "esm_class", S.ESME_RINVESMCLASS),
    (SubmitSm, "priority_flag", S.ESME_RINVPRTFLG),
    (SubmitSm, "registered_delivery", S.ESME_RINVREGDLVFLG),
    (SubmitSm, "replace_if_present_flag", S.ESME_RINVREPFLAG),
    (SubmitSm, "sm_default_msg_id", S.ESME_RINVDFTMSGID),
    (BindTransmitter, "addr_ton", S.ESME_RINVSRCTON),
    (BindTransmitter, "addr_npi", S.ESME_RINVSRCNPI),
    (DataSm, "esm_class", S.ESME_RINVESMCLASS),
    (DataSm, "registered_delivery", S.ESME_RINVREGDLVFLG),
]


@pytest.mark.parametrize(("cls", "field", "status"), U8_FIELDS,
                         ids=[f"{c.__name__}.{f}" for c, f, _ in U8_FIELDS])
@pytest.mark.parametrize("value", [-1, 256, 1 << 40])
def test_u8_out_of_range(cls: type[Pdu], field: str, status: int, value: int) -> None:
    error = raises_encode(cls(sequence_number=1, **{field: value}))
    assert (error.field, error.command_status) == (field, status)
    top = cls(sequence_number=1, **{field: 255})
    assert decode(encode(top)) == top


@pytest.mark.parametrize(("field", "value"), [
    ("protocol_id", 256), ("data_coding", -1), ("interface_version", 300),
])
def test_u8_without_a_specific_status_still_names_the_field(field: str, value: int) -> None:
    cls = BindTransmitter if field == "interface_version" else SubmitSm
    error = raises_encode(cls(sequence_number=1, **{field: value}))
    assert error.field == field


def test_submit_multi_sme_address_ton_out_of_range() -> None:
    # A dest_addr_ton inside a submit_multi destination is still a destination TON: the status
    # for a bad one is ESME_RINVDSTTON (section 5.1.3), as for submit_sm's dest_addr_ton.
    pdu = SubmitMulti(sequence_number=1, dest_address=(SmeAddress("1", dest_addr_ton=256),))
    error = raises_encode(pdu)
    assert error.field == "dest_address"
    assert error.command_status == S.ESME_RINVDSTTON


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("source_addr", 447700900123),
        ("source_addr", b"4477"),
        ("schedule_delivery_time", None),
        ("short_message", "Hello"),
        ("esm_class", "4"),
        ("esm_class", 4.0),
        ("esm_class", None),
        ("optional_parameters", ((Tag.MESSAGE_STATE, "2"),)),
        ("optional_parameters", (("message_state", b"\x02"),)),
        ("optional_parameters", ((0x10000, b""),)),
        ("optional_parameters", ((Tag.MESSAGE_STATE,),)),
        ("sequence_number", "1"),
        ("sequence_number", -1),
        ("sequence_number", 1 << 32),
        ("command_status", 1 << 32),
        ("command_status", None),
    ],
)
def test_wrong_types_and_ranges_name_the_field(field: str, value: object) -> None:
    fields: dict[str, Any] = {"sequence_number": 1, field: value}
    error = raises_encode(SubmitSm(**fields))
    assert error.field == field


def test_wrong_tlv_value_types_and_lengths() -> None:
    cases: list[tuple[dict[str, Any], str, int | None]] = [
        ({"message_state": 256}, "message_state", S.ESME_RINVOPTPARAMVAL),
        ({"sar_msg_ref_num": 1 << 16}, "sar_msg_ref_num", S.ESME_RINVOPTPARAMVAL),
        ({"sar_msg_ref_num": "7"}, "sar_msg_ref_num", None),
        ({"sar_msg_ref_num": True}, "sar_msg_ref_num", None),
        ({"message_payload": "text"}, "message_payload", None),
        ({"receipted_message_id": 12}, "receipted_message_id", None),
        ({"receipted_message_id": "\u20ac"}, "receipted_message_id", None),
        ({"receipted_message_id": "x" * 65}, "receipted_message_id", S.ESME_RINVPARLEN),
        ({"network_error_code": b"\x03\x00"}, "network_error_code", S.ESME_RINVPARLEN),
        ({"alert_on_message_delivery": 1}, "alert_on_message_delivery", None),
    ]
    for values, field, status in cases:
        with pytest.raises(EncodeError) as info:
            tlv.build(**values)
        assert info.value.field == field, values
        if status is not None:
            assert info.value.command_status == status, values
    assert tlv.build(receipted_message_id="x" * 64)[0][1] == b"x" * 64 + b"\0"
    assert tlv.build(alert_on_message_delivery=True) == ((Tag.ALERT_ON_MESSAGE_DELIVERY, b""),)


@pytest.mark.parametrize(
    "raw",
    [
        (Tag.MESSAGE_STATE, b"\x02\x00"),  # 1 octet (5.3.2.35)
        (Tag.SAR_MSG_REF_NUM, b"\x07"),  # 2 octets (5.3.2.22)
        (Tag.NETWORK_ERROR_CODE, b"\x03\x00\x01\x00"),  # 3 octets (5.3.2.31)
        (Tag.RECEIPTED_MESSAGE_ID, b"x" * 66),  # at most 65 (5.3.2.12)
        (Tag.QOS_TIME_TO_LIVE, b"\x00\x01"),  # 4 octets (5.3.2.9)
        (0x1401, b"x" * 0x10000),  # no TLV value can exceed the 16-bit length field
    ],
    ids=lambda raw: f"0x{raw[0]:04X}-{len(raw[1])}",
)
def test_raw_tlvs_of_a_wrong_length_are_refused(raw: tuple[int, bytes]) -> None:
    error = raises_encode(DeliverSmResp(sequence_number=1, optional_parameters=(raw,)))
    assert (error.field, error.command_status) == ("optional_parameters", S.ESME_RINVPARLEN)


def test_encode_refuses_what_is_not_a_pdu() -> None:
    with pytest.raises(TypeError):
        encode(b"\x00" * 16)  # type: ignore[arg-type]


# --- decode: command_length and command_id ----------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00\x10", b"\x00\x00\x00\x0f" + bytes(11)])
def test_fewer_than_16_octets(data: bytes) -> None:
    error = raises_decode(data, InvalidCommandLength)
    assert error.command_status == S.ESME_RINVCMDLEN
    assert error.framing_ok is False
    assert error.command_id is None and error.sequence_number is None


@pytest.mark.parametrize("claimed", [0, 15, 17, 0xFFFFFFFF])
def test_command_length_disagreeing_with_the_data(claimed: int) -> None:
    data = struct.pack(">IIII", claimed, CommandId.ENQUIRE_LINK, 0, 9)
    error = raises_decode(data, InvalidCommandLength)
    assert error.command_status == S.ESME_RINVCMDLEN
    assert error.framing_ok is False
    assert (error.command_id, error.sequence_number) == (CommandId.ENQUIRE_LINK, 9)


@pytest.mark.parametrize("command_id", [0x00000000, 0x0000000A, 0x00000200, 0x80000200,
                                        0x8000000B, 0xFFFFFFFF])
def test_unknown_command_id(command_id: int) -> None:
    # 0x8000000B would be outbind_resp, which does not exist: outbind has no response.
    error = raises_decode(framed(command_id, b"\x01\x02", seq=0x1234), UnknownCommandId)
    assert error.command_status == S.ESME_RINVCMDID
    assert (error.command_id, error.sequence_number) == (command_id, 0x1234)
    assert error.framing_ok is True
    assert error_response(error) == GenericNack(
        sequence_number=0x1234, command_status=S.ESME_RINVCMDID
    )


# --- decode: malformed bodies ---------------------------------------------------------------

SUBMIT = encode(SubmitSm(
    sequence_number=7, source_addr="Acme", destination_addr="447700900123",
    short_message=b"Hello",
))
# Offsets in SUBMIT's body: service_type 16, source_addr_ton 17, source_addr_npi 18,
# source_addr 19..23, dest_addr_ton 24, dest_addr_npi 25, destination_addr 26..38, esm_class 39,
# protocol_id 40, priority_flag 41, schedule_delivery_time 42, validity_period 43,
# registered_delivery 44, ..., sm_length 48, short_message 49..53.


def _resized(data: bytes) -> bytes:
    """``data`` with command_length rewritten to its real length (only the body is at fault)."""
    return len(data).to_bytes(4, "big") + data[4:]


BAD_BODIES: list[tuple[str, bytes, int, str]] = [
    # (what, whole PDU, status, field)
    ("ends inside the u8 run", _resized(SUBMIT[:25]), S.ESME_RINVCMDLEN, "dest_addr_ton"),
    ("ends before sm_length", _resized(SUBMIT[:48]), S.ESME_RINVCMDLEN, "sm_length"),
    ("sm_length overruns the PDU", _resized(SUBMIT[:-1]), S.ESME_RINVMSGLEN, "short_message"),
    ("body of only a service_type", _resized(SUBMIT[:17]), S.ESME_RINVCMDLEN,
     "source_addr_ton"),
    ("source_addr without NUL up to the end", _resized(SUBMIT[:22]), S.ESME_RINVCMDLEN,
     "source_addr"),
    ("over-long source_addr", framed(CommandId.SUBMIT_SM, b"\x00\x01\x01" + b"1" * 21 + b"\x00"
                                     + SUBMIT[24:]), S.ESME_RINVSRCADR, "source_addr"),
    ("over-long destination_addr", framed(
        CommandId.SUBMIT_SM, SUBMIT[16:26] + b"2" * 21 + b"\x00" + SUBMIT[39:]),
     S.ESME_RINVDSTADR, "destination_addr"),
    ("over-long service_type", framed(CommandId.SUBMIT_SM, b"CMTXYZ\x00" + SUBMIT[17:]),
     S.ESME_RINVSERTYP, "service_type"),
    ("schedule_delivery_time of 5 characters", framed(
        CommandId.SUBMIT_SM, SUBMIT[16:42] + b"23010\x00" + SUBMIT[43:]),
     S.ESME_RINVSCHED, "schedule_delivery_time"),
    ("validity_period of 17 characters", framed(
        CommandId.SUBMIT_SM, SUBMIT[16:43] + b"000001000000000R0\x00" + SUBMIT[44:]),
     S.ESME_RINVEXPIRY, "validity_period"),
    ("over-long system_id", framed(CommandId.BIND_TRANSMITTER, b"s" * 16 + b"\x00pw\x00\x00"
                                   + b"\x34\x00\x00\x00"), S.ESME_RINVSYSID, "system_id"),
    ("over-long password", framed(CommandId.BIND_TRANSMITTER, b"sys\x00" + b"p" * 9
                                  + b"\x00\x00\x34\x00\x00\x00"), S.ESME_RINVPASWD, "password"),
    ("bind without address_range", framed(CommandId.BIND_TRANSMITTER,
                                          b"sys\x00pw\x00\x00\x34\x00\x00"),
     S.ESME_RINVCMDLEN, "address_range"),
    ("over-long message_id", framed(CommandId.QUERY_SM, b"9" * 65 + b"\x00\x00\x00\x00"),
     S.ESME_RINVMSGID, "message_id"),
    # optional parameters
    ("1 stray octet after the body", _resized(SUBMIT + b"\x02"),
     S.ESME_RINVOPTPARSTREAM, "optional_parameters"),
    ("3 stray octets after a TLV", _resized(SUBMIT + b"\x04\x27\x00\x01\x02" + b"\x00\x1e\x00"),
     S.ESME_RINVOPTPARSTREAM, "optional_parameters"),
    ("TLV length overruns the PDU", _resized(SUBMIT + b"\x14\x01\x00\x05abcd"),
     S.ESME_RINVOPTPARSTREAM, "optional_parameters"),
    ("message_state of 2 octets", _resized(SUBMIT + b"\x04\x27\x00\x02\x00\x02"),
     S.ESME_RINVPARLEN, "optional_parameters"),
    ("sar_msg_ref_num of 3 octets", _resized(SUBMIT + b"\x02\x0c\x00\x03\x00\x00\x07"),
     S.ESME_RINVPARLEN, "optional_parameters"),
    ("source_telematics_id of 3 octets", _resized(SUBMIT + b"\x00\x10\x00\x03\x00\x00\x02"),
     S.ESME_RINVPARLEN, "optional_parameters"),
    ("network_error_code of 2 octets", _resized(SUBMIT + b"\x04\x23\x00\x02\x03\x00"),
     S.ESME_RINVPARLEN, "optional_parameters"),
    ("receipted_message_id of 66 octets", _resized(SUBMIT + b"\x00\x1e\x00\x42" + b"9" * 66),
     S.ESME_RINVPARLEN, "optional_parameters"),
    ("message_payload with a short_message", _resized(SUBMIT + b"\x04\x24\x00\x01x"),
     S.ESME_RINVOPTPARAMVAL, "optional_parameters"),
    # submit_multi destinations
    ("number_of_dests 0", framed(CommandId.SUBMIT_MULTI, b"\x00\x00\x00\x00" + b"\x00"
                                 + bytes(9)), S.ESME_RINVNUMDESTS, "dest_address"),
    ("dest_flag 3", framed(CommandId.SUBMIT_MULTI, b"\x00\x00\x00\x00" + b"\x01\x03\x00\x00"
                           + b"1\x00" + bytes(9)), S.ESME_RINVDESTFLAG, "dest_address"),
    ("over-long dl_name", framed(CommandId.SUBMIT_MULTI, b"\x00\x00\x00\x00" + b"\x01\x02"
                                 + b"d" * 21 + b"\x00" + bytes(9)),
     S.ESME_RINVDLNAME, "dest_address"),
    # PDUs that have no body
    ("enquire_link with a body", framed(CommandId.ENQUIRE_LINK, b"\x00"), S.ESME_RINVCMDLEN,
     "body"),
    ("unbind_resp with a body", framed(CommandId.UNBIND_RESP, b"\x00\x00"), S.ESME_RINVCMDLEN,
     "body"),
    ("generic_nack with a body", framed(CommandId.GENERIC_NACK, b"\x00\x00\x00\x00"),
     S.ESME_RINVCMDLEN, "body"),
    ("bind_transmitter with a trailing octet", framed(
        CommandId.BIND_TRANSMITTER, b"sys\x00pw\x00\x00\x34\x00\x00\x00" + b"\x00"),
     S.ESME_RINVCMDLEN, "body"),
]


@pytest.mark.parametrize(("what", "data", "status", "field"), BAD_BODIES,
                         ids=[row[0] for row in BAD_BODIES])
def test_malformed_body(what: str, data: bytes, status: int, field: str) -> None:
    assert int.from_bytes(data[:4], "big") == len(data)  # the header itself is honest
    error = raises_decode(data, InvalidPdu)
    assert (error.field, error.command_status) == (field, status), what
    command_id, seq = struct.unpack(">I4xI", data[4:16])
    assert (error.command_id, error.sequence_number) == (command_id, seq)
    assert error.framing_ok is True
    assert error.status_name == CommandStatus(status).name


def test_the_malformed_submit_sm_rows_start_from_a_valid_pdu() -> None:
    assert decode(SUBMIT) == SubmitSm(
        sequence_number=7, source_addr="Acme", destination_addr="447700900123",
        short_message=b"Hello",
    )
    assert SUBMIT[19:24] == b"Acme\x00" and SUBMIT[48:] == b"\x05Hello"


# --- error_response ---------------------------------------------------------------------------


def _error(data: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(data)
    return info.value


def test_bad_request_gets_its_own_response_with_the_status() -> None:
    bad_source = framed(CommandId.SUBMIT_SM, b"\x00\x01\x01" + b"1" * 21 + b"\x00" + SUBMIT[24:],
                        seq=0x55)
    answer = error_response(_error(bad_source))
    assert answer == SubmitSmResp(sequence_number=0x55, command_status=S.ESME_RINVSRCADR)
    assert encode(answer) == bytes.fromhex("00000010 80000004 0000000A 00000055")

    bad_password = framed(CommandId.BIND_TRANSCEIVER,
                          b"sys\x00" + b"p" * 9 + b"\x00\x00\x34\x00\x00\x00", seq=1)
    assert error_response(_error(bad_password)) == BindTransceiverResp(
        sequence_number=1, command_status=S.ESME_RINVPASWD
    )

    bad_tlv = _resized(SUBMIT + b"\x04\x27\x00\x02\x00\x02")
    assert error_response(_error(bad_tlv)) == SubmitSmResp(
        sequence_number=7, command_status=S.ESME_RINVPARLEN
    )

    extra = framed(CommandId.ENQUIRE_LINK, b"\x00", seq=3)
    assert error_response(_error(extra)) == attrs.evolve(
        EnquireLink(sequence_number=3).response(), command_status=S.ESME_RINVCMDLEN
    )


def test_unknown_command_gets_generic_nack() -> None:
    answer = error_response(_error(framed(0x00000200, b"", seq=0x99)))
    assert answer == GenericNack(sequence_number=0x99, command_status=S.ESME_RINVCMDID)
    assert encode(answer) == bytes.fromhex("00000010 80000000 00000003 00000099")


def test_unreadable_header_gets_generic_nack() -> None:
    answer = error_response(_error(b"\x00\x00\x00\x08\x00\x00\x00\x15"))
    assert answer == GenericNack(sequence_number=0, command_status=S.ESME_RINVCMDLEN)


def test_invalid_command_length_of_a_known_request_gets_generic_nack() -> None:
    # Section 4.3.1: an invalid command_length means the header is corrupt, and the answer is
    # generic_nack (ESME_RINVCMDLEN), not the request's own response: the body cannot be
    # trusted to be a submit_sm at all.
    data = struct.pack(">IIII", 40, CommandId.SUBMIT_SM, 0, 0x21) + bytes(8)
    error = _error(data)
    assert isinstance(error, InvalidCommandLength)
    assert error_response(error) == GenericNack(
        sequence_number=0x21, command_status=S.ESME_RINVCMDLEN
    )


def test_malformed_response_is_not_answered() -> None:
    over_long_id = framed(CommandId.SUBMIT_SM_RESP, b"9" * 65 + b"\x00", seq=4)
    error = _error(over_long_id)
    assert (error.command_status, error.field) == (S.ESME_RINVMSGID, "message_id")
    assert error_response(error) is None
    bad_tlv = framed(CommandId.DELIVER_SM_RESP, b"\x00\x04\x27\x00\x02\x00\x02", seq=4)
    assert error_response(_error(bad_tlv)) is None
    body_on_nack = framed(CommandId.GENERIC_NACK, b"\x00", seq=4)
    assert error_response(_error(body_on_nack)) is None


def test_malformed_pdu_without_a_response_gets_generic_nack() -> None:
    # outbind and alert_notification have no response PDU of their own.
    bad_outbind = framed(CommandId.OUTBIND, b"s" * 16 + b"\x00pw\x00", seq=8)
    assert error_response(_error(bad_outbind)) == GenericNack(
        sequence_number=8, command_status=S.ESME_RINVSYSID
    )
