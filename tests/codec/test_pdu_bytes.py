"""Exact wire bytes of every SMPP 3.4 PDU, written out by hand from the specification's layouts
(section 4), each checked both ways: ``encode(pdu) == wire`` and ``decode(wire) == pdu``.

The hex is written field by field with the spec's field names so a reader can check it against
the spec without running anything; ASCII is spelled out in the comments.
"""

from __future__ import annotations

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
    CancelSmResp,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    MessageState,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Unbind,
    UnbindResp,
    UnsuccessSme,
    decode,
    encode,
    status_name,
    tlv,
)
from smpp_codec.pdu import PDU_CLASSES

S = CommandStatus


def wire(text: str) -> bytes:
    """Bytes from hex written one field per line; ``#`` starts a comment."""
    fields = (line.split("#", 1)[0] for line in text.splitlines())
    return bytes.fromhex("".join("".join(field.split()) for field in fields))


# (PDU, its exact wire bytes). Strings are ASCII; "00" after a string is its NUL terminator.
TABLE: list[tuple[Pdu, bytes]] = [
    (
        GenericNack(sequence_number=7, command_status=S.ESME_RINVCMDID),
        wire("""
            00000010  # command_length 16
            80000000  # command_id generic_nack
            00000003  # command_status ESME_RINVCMDID
            00000007  # sequence_number
        """),
    ),
    (
        BindTransmitter(
            sequence_number=1, system_id="esme1", password="secret", system_type="",
            interface_version=0x34, addr_ton=1, addr_npi=1, address_range="",
        ),
        wire("""
            00000022        # command_length 34
            00000002        # command_id bind_transmitter
            00000000        # command_status
            00000001        # sequence_number
            65736d653100    # system_id "esme1"
            73656372657400  # password "secret"
            00              # system_type ""
            34              # interface_version 3.4
            01              # addr_ton international
            01              # addr_npi ISDN
            00              # address_range ""
        """),
    ),
    (
        BindTransmitterResp(
            sequence_number=1, system_id="SMSC",
            optional_parameters=((Tag.SC_INTERFACE_VERSION, b"\x34"),),
        ),
        wire("""
            0000001A      # command_length 26
            80000002      # command_id bind_transmitter_resp
            00000000      # command_status
            00000001      # sequence_number
            534d534300    # system_id "SMSC"
            0210 0001 34  # TLV sc_interface_version, length 1, 3.4
        """),
    ),
    (
        BindReceiver(
            sequence_number=2, system_id="esme1", password="secret", system_type="VMA",
            interface_version=0x34, addr_ton=1, addr_npi=1, address_range="^447",
        ),
        wire("""
            00000029        # command_length 41
            00000001        # command_id bind_receiver
            00000000        # command_status
            00000002        # sequence_number
            65736d653100    # system_id "esme1"
            73656372657400  # password "secret"
            564d4100        # system_type "VMA"
            34              # interface_version
            01              # addr_ton
            01              # addr_npi
            5e34343700      # address_range "^447" (a regular expression, section 5.2.7)
        """),
    ),
    (
        BindReceiverResp(
            sequence_number=2, system_id="SMSC",
            optional_parameters=tlv.build(sc_interface_version=0x34),
        ),
        wire("""
            0000001A      # command_length 26
            80000001      # command_id bind_receiver_resp
            00000000      # command_status
            00000002      # sequence_number
            534d534300    # system_id "SMSC"
            0210 0001 34  # TLV sc_interface_version
        """),
    ),
    (
        BindTransceiver(
            sequence_number=3, system_id="esme1", password="secret", system_type="",
            interface_version=0x34, addr_ton=0, addr_npi=0, address_range="",
        ),
        wire("""
            00000022        # command_length 34
            00000009        # command_id bind_transceiver
            00000000        # command_status
            00000003        # sequence_number
            65736d653100    # system_id "esme1"
            73656372657400  # password "secret"
            00              # system_type ""
            34              # interface_version
            00              # addr_ton unknown
            00              # addr_npi unknown
            00              # address_range ""
        """),
    ),
    (
        BindTransceiverResp(
            sequence_number=3, system_id="SMSC",
            optional_parameters=tlv.build(sc_interface_version=0x34),
        ),
        wire("""
            0000001A      # command_length 26
            80000009      # command_id bind_transceiver_resp
            00000000      # command_status
            00000003      # sequence_number
            534d534300    # system_id "SMSC"
            0210 0001 34  # TLV sc_interface_version
        """),
    ),
    (
        Outbind(sequence_number=4, system_id="SMSC", password="secret"),
        wire("""
            0000001C        # command_length 28
            0000000B        # command_id outbind
            00000000        # command_status
            00000004        # sequence_number
            534d534300      # system_id "SMSC"
            73656372657400  # password "secret"
        """),
    ),
    (
        Unbind(sequence_number=5),
        wire("00000010 00000006 00000000 00000005  # length 16, unbind, status 0, seq 5"),
    ),
    (
        UnbindResp(sequence_number=5),
        wire("00000010 80000006 00000000 00000005  # length 16, unbind_resp, status 0, seq 5"),
    ),
    (
        EnquireLink(sequence_number=6),
        wire("00000010 00000015 00000000 00000006  # length 16, enquire_link, status 0, seq 6"),
    ),
    (
        EnquireLinkResp(sequence_number=6),
        wire("00000010 80000015 00000000 00000006  # length 16, enquire_link_resp, seq 6"),
    ),
    (
        SubmitSm(
            sequence_number=0x10, service_type="", source_addr_ton=5, source_addr_npi=0,
            source_addr="Acme", dest_addr_ton=1, dest_addr_npi=1,
            destination_addr="447700900123", esm_class=0, protocol_id=0, priority_flag=0,
            schedule_delivery_time="", validity_period="000001000000000R",
            registered_delivery=1, replace_if_present_flag=0, data_coding=0,
            sm_default_msg_id=0, short_message=b"Hello",
        ),
        wire("""
            00000046                            # command_length 70
            00000004                            # command_id submit_sm
            00000000                            # command_status
            00000010                            # sequence_number
            00                                  # service_type ""
            05                                  # source_addr_ton alphanumeric
            00                                  # source_addr_npi
            41636d6500                          # source_addr "Acme"
            01                                  # dest_addr_ton international
            01                                  # dest_addr_npi ISDN
            34343737303039303031323300          # destination_addr "447700900123"
            00                                  # esm_class
            00                                  # protocol_id
            00                                  # priority_flag
            00                                  # schedule_delivery_time "" (immediate)
            30303030303130303030303030303052 00 # validity_period "000001000000000R" (1 day)
            01                                  # registered_delivery: receipt wanted
            00                                  # replace_if_present_flag
            00                                  # data_coding SMSC default
            00                                  # sm_default_msg_id
            05                                  # sm_length
            48656c6c6f                          # short_message "Hello"
        """),
    ),
    (
        SubmitSmResp(sequence_number=0x10, message_id="0af3c1"),
        wire("""
            00000017        # command_length 23
            80000004        # command_id submit_sm_resp
            00000000        # command_status
            00000010        # sequence_number
            30616633633100  # message_id "0af3c1"
        """),
    ),
    (
        SubmitMulti(
            sequence_number=0x11, service_type="", source_addr_ton=1, source_addr_npi=1,
            source_addr="4412",
            dest_address=(
                SmeAddress(destination_addr="4477", dest_addr_ton=1, dest_addr_npi=1),
                DistributionList(dl_name="staff"),
            ),
            esm_class=0, protocol_id=0, priority_flag=0, schedule_delivery_time="",
            validity_period="", registered_delivery=0, replace_if_present_flag=0,
            data_coding=3, sm_default_msg_id=0, short_message=b"Hi",
        ),
        wire("""
            00000034      # command_length 52
            00000021      # command_id submit_multi
            00000000      # command_status
            00000011      # sequence_number
            00            # service_type ""
            01            # source_addr_ton
            01            # source_addr_npi
            3434313200    # source_addr "4412"
            02            # number_of_dests
            01            #   dest_flag 1: SME address
            01            #   dest_addr_ton
            01            #   dest_addr_npi
            3434373700    #   destination_addr "4477"
            02            #   dest_flag 2: distribution list
            737461666600  #   dl_name "staff"
            00            # esm_class
            00            # protocol_id
            00            # priority_flag
            00            # schedule_delivery_time ""
            00            # validity_period ""
            00            # registered_delivery
            00            # replace_if_present_flag
            03            # data_coding Latin-1
            00            # sm_default_msg_id
            02            # sm_length
            4869          # short_message "Hi"
        """),
    ),
    (
        SubmitMultiResp(
            sequence_number=0x11, message_id="m1",
            unsuccess_sme=(
                UnsuccessSme(destination_addr="4478", error_status_code=S.ESME_RINVDSTADR,
                             dest_addr_ton=1, dest_addr_npi=1),
            ),
        ),
        wire("""
            0000001F    # command_length 31
            80000021    # command_id submit_multi_resp
            00000000    # command_status
            00000011    # sequence_number
            6d3100      # message_id "m1"
            01          # no_unsuccess
            01          #   dest_addr_ton
            01          #   dest_addr_npi
            3434373800  #   destination_addr "4478"
            0000000B    #   error_status_code ESME_RINVDSTADR
        """),
    ),
    (
        DeliverSm(
            sequence_number=0x20, service_type="", source_addr_ton=1, source_addr_npi=1,
            source_addr="447700900123", dest_addr_ton=5, dest_addr_npi=0,
            destination_addr="Acme", esm_class=0x04, protocol_id=0, priority_flag=0,
            schedule_delivery_time="", validity_period="", registered_delivery=0,
            replace_if_present_flag=0, data_coding=0, sm_default_msg_id=0,
            short_message=b"id:0af3c1 stat:DELIVRD",
            optional_parameters=tlv.build(
                receipted_message_id="0af3c1", message_state=MessageState.DELIVERED
            ),
        ),
        wire("""
            00000057                                      # command_length 87
            00000005                                      # command_id deliver_sm
            00000000                                      # command_status
            00000020                                      # sequence_number
            00                                            # service_type ""
            01                                            # source_addr_ton
            01                                            # source_addr_npi
            34343737303039303031323300                    # source_addr "447700900123"
            05                                            # dest_addr_ton alphanumeric
            00                                            # dest_addr_npi
            41636d6500                                    # destination_addr "Acme"
            04                                            # esm_class: SMSC delivery receipt
            00                                            # protocol_id
            00                                            # priority_flag
            00                                            # schedule_delivery_time ""
            00                                            # validity_period ""
            00                                            # registered_delivery
            00                                            # replace_if_present_flag
            00                                            # data_coding
            00                                            # sm_default_msg_id
            16                                            # sm_length 22
            69643a306166336331 20 737461743a44454c49565244  # "id:0af3c1 stat:DELIVRD"
            001E 0007 30616633633100                      # TLV receipted_message_id "0af3c1"
            0427 0001 02                                  # TLV message_state DELIVERED
        """),
    ),
    (
        DeliverSmResp(sequence_number=0x20),
        wire("""
            00000011  # command_length 17
            80000005  # command_id deliver_sm_resp
            00000000  # command_status
            00000020  # sequence_number
            00        # message_id "" (unused, NULL: section 4.6.2)
        """),
    ),
    (
        DataSm(
            sequence_number=0x30, service_type="", source_addr_ton=1, source_addr_npi=1,
            source_addr="4477", dest_addr_ton=1, dest_addr_npi=1, destination_addr="4478",
            esm_class=0, registered_delivery=1, data_coding=8,
            optional_parameters=tlv.build(
                source_port=9200, destination_port=2948, message_payload=b"\x00H\x00i"
            ),
        ),
        wire("""
            00000036             # command_length 54
            00000103             # command_id data_sm
            00000000             # command_status
            00000030             # sequence_number
            00                   # service_type ""
            01                   # source_addr_ton
            01                   # source_addr_npi
            3434373700           # source_addr "4477"
            01                   # dest_addr_ton
            01                   # dest_addr_npi
            3434373800           # destination_addr "4478"
            00                   # esm_class
            01                   # registered_delivery
            08                   # data_coding UCS-2
            020A 0002 23F0       # TLV source_port 9200
            020B 0002 0B84       # TLV destination_port 2948
            0424 0004 00480069   # TLV message_payload "Hi" in UCS-2
        """),
    ),
    (
        DataSmResp(sequence_number=0x30, message_id="d1"),
        wire("""
            00000013  # command_length 19
            80000103  # command_id data_sm_resp
            00000000  # command_status
            00000030  # sequence_number
            643100    # message_id "d1"
        """),
    ),
    (
        # An error response that still carries a body: data_sm_resp may explain the failure
        # in TLVs (section 4.7.2), so the body is sent although command_status is not 0.
        DataSmResp(
            sequence_number=0x31, command_status=S.ESME_RDELIVERYFAILURE, message_id="",
            optional_parameters=tlv.build(
                delivery_failure_reason=1, network_error_code=b"\x03\x00\x01"
            ),
        ),
        wire("""
            0000001D            # command_length 29
            80000103            # command_id data_sm_resp
            000000FE            # command_status ESME_RDELIVERYFAILURE
            00000031            # sequence_number
            00                  # message_id ""
            0425 0001 01        # TLV delivery_failure_reason 1: destination unavailable
            0423 0003 030001    # TLV network_error_code: GSM, error 1
        """),
    ),
    (
        QuerySm(
            sequence_number=0x40, message_id="0af3c1", source_addr_ton=5, source_addr_npi=0,
            source_addr="Acme",
        ),
        wire("""
            0000001E        # command_length 30
            00000003        # command_id query_sm
            00000000        # command_status
            00000040        # sequence_number
            30616633633100  # message_id "0af3c1"
            05              # source_addr_ton
            00              # source_addr_npi
            41636d6500      # source_addr "Acme"
        """),
    ),
    (
        QuerySmResp(
            sequence_number=0x40, message_id="0af3c1", final_date="230102150405000+",
            message_state=MessageState.DELIVERED, error_code=0,
        ),
        wire("""
            0000002A                             # command_length 42
            80000003                             # command_id query_sm_resp
            00000000                             # command_status
            00000040                             # sequence_number
            30616633633100                       # message_id "0af3c1"
            3233303130323135303430353030302B 00  # final_date "230102150405000+"
            02                                   # message_state DELIVERED
            00                                   # error_code
        """),
    ),
    (
        CancelSm(
            sequence_number=0x50, service_type="", message_id="0af3c1", source_addr_ton=5,
            source_addr_npi=0, source_addr="Acme", dest_addr_ton=1, dest_addr_npi=1,
            destination_addr="447700900123",
        ),
        wire("""
            0000002E                    # command_length 46
            00000008                    # command_id cancel_sm
            00000000                    # command_status
            00000050                    # sequence_number
            00                          # service_type ""
            30616633633100              # message_id "0af3c1"
            05                          # source_addr_ton
            00                          # source_addr_npi
            41636d6500                  # source_addr "Acme"
            01                          # dest_addr_ton
            01                          # dest_addr_npi
            34343737303039303031323300  # destination_addr "447700900123"
        """),
    ),
    (
        CancelSmResp(sequence_number=0x50),
        wire("00000010 80000008 00000000 00000050  # length 16, cancel_sm_resp, seq 0x50"),
    ),
    (
        ReplaceSm(
            sequence_number=0x60, message_id="0af3c1", source_addr_ton=5, source_addr_npi=0,
            source_addr="Acme", schedule_delivery_time="", validity_period="000002000000000R",
            registered_delivery=1, sm_default_msg_id=0, short_message=b"Bye",
        ),
        wire("""
            00000036                             # command_length 54
            00000007                             # command_id replace_sm
            00000000                             # command_status
            00000060                             # sequence_number
            30616633633100                       # message_id "0af3c1"
            05                                   # source_addr_ton
            00                                   # source_addr_npi
            41636d6500                           # source_addr "Acme"
            00                                   # schedule_delivery_time ""
            30303030303230303030303030303052 00  # validity_period "000002000000000R"
            01                                   # registered_delivery
            00                                   # sm_default_msg_id
            03                                   # sm_length
            427965                               # short_message "Bye"
        """),
    ),
    (
        ReplaceSmResp(sequence_number=0x60),
        wire("00000010 80000007 00000000 00000060  # length 16, replace_sm_resp, seq 0x60"),
    ),
    (
        AlertNotification(
            sequence_number=0x70, source_addr_ton=1, source_addr_npi=1,
            source_addr="447700900123", esme_addr_ton=1, esme_addr_npi=1, esme_addr="4412",
            optional_parameters=tlv.build(ms_availability_status=0),
        ),
        wire("""
            0000002B                    # command_length 43
            00000102                    # command_id alert_notification
            00000000                    # command_status
            00000070                    # sequence_number
            01                          # source_addr_ton
            01                          # source_addr_npi
            34343737303039303031323300  # source_addr "447700900123"
            01                          # esme_addr_ton
            01                          # esme_addr_npi
            3434313200                  # esme_addr "4412"
            0422 0001 00                # TLV ms_availability_status 0: available
        """),
    ),
]


def _id(row: tuple[Pdu, bytes]) -> str:
    pdu = row[0]
    return f"{type(pdu).__name__}-{pdu.sequence_number:#x}"


@pytest.mark.parametrize("row", TABLE, ids=[_id(row) for row in TABLE])
def test_encode_gives_the_exact_bytes(row: tuple[Pdu, bytes]) -> None:
    pdu, expected = row
    assert encode(pdu).hex(" ", 4) == expected.hex(" ", 4)


@pytest.mark.parametrize("row", TABLE, ids=[_id(row) for row in TABLE])
def test_decode_gives_the_pdu(row: tuple[Pdu, bytes]) -> None:
    pdu, data = row
    assert int.from_bytes(data[:4], "big") == len(data)  # the table's own command_length
    decoded = decode(data)
    assert type(decoded) is type(pdu)
    assert decoded == pdu


def test_the_table_covers_every_pdu_class() -> None:
    covered = {type(pdu) for pdu, _ in TABLE}
    assert covered == set(PDU_CLASSES.values())
    assert len(covered) == 27


# --- typed access to what the table's PDUs carry ---------------------------------------------


def test_typed_tlv_access_on_decoded_pdus() -> None:
    by_type = {type(pdu): data for pdu, data in TABLE}
    receipt = decode(by_type[DeliverSm])
    assert receipt.tlv("receipted_message_id") == "0af3c1"
    assert receipt.tlv("message_state") == MessageState.DELIVERED
    assert receipt.tlv(Tag.MESSAGE_STATE) == 2
    assert receipt.tlv("sar_msg_ref_num") is None  # absent
    data_sm = decode(by_type[DataSm])
    assert data_sm.tlv("source_port") == 9200
    assert data_sm.tlv("message_payload") == b"\x00H\x00i"
    for cls in (BindTransmitterResp, BindReceiverResp, BindTransceiverResp):
        assert decode(by_type[cls]).tlv("sc_interface_version") == 0x34


# --- optional parameters: raw, ordered, byte for byte ----------------------------------------

# A deliver_sm_resp (smallest PDU with TLVs) whose optional parameters mix an unknown vendor tag,
# zero-length TLVs of a known and an unknown tag, and a known one, in that order.
MIXED_TLVS = wire("""
    0000002A      # command_length 42
    80000005      # command_id deliver_sm_resp
    00000000      # command_status
    00000009      # sequence_number
    00            # message_id ""
    1401 0002 4142  # TLV 0x1401 (vendor specific, unknown), "AB"
    0427 0000     # TLV message_state, zero length
    FFFF 0000     # TLV 0xFFFF (unknown), zero length
    020C 0002 0102  # TLV sar_msg_ref_num 0x0102
    1401 0001 43  # TLV 0x1401 again, "C"
""")


def test_unknown_and_zero_length_tlvs_are_kept_raw_in_order() -> None:
    pdu = decode(MIXED_TLVS)
    assert pdu == DeliverSmResp(
        sequence_number=9,
        optional_parameters=(
            (0x1401, b"AB"),
            (Tag.MESSAGE_STATE, b""),
            (0xFFFF, b""),
            (Tag.SAR_MSG_REF_NUM, b"\x01\x02"),
            (0x1401, b"C"),
        ),
    )
    assert encode(pdu) == MIXED_TLVS


def test_repeated_tags_are_kept_and_typed_access_gives_the_first() -> None:
    pdu = decode(MIXED_TLVS)
    assert [value for tag, value in pdu.optional_parameters if tag == 0x1401] == [b"AB", b"C"]
    assert pdu.tlv(0x1401) == b"AB"  # unknown tag: raw bytes
    assert pdu.tlv("message_state") is None  # zero-length known tag: no value to type
    assert pdu.tlv("sar_msg_ref_num") == 0x0102


def test_source_telematics_id_of_one_and_two_octets() -> None:
    # Section 5.3.2.8 gives source_telematics_id 1 octet, the TLV table 2; peers send both.
    body = """
        00000103        # command_id data_sm
        00000000        # command_status
        00000001        # sequence_number
        00 0000 3100    # service_type "", source_addr_ton, source_addr_npi, source_addr "1"
        0000 00         # dest_addr_ton, dest_addr_npi, destination_addr ""
        00 00 00        # esm_class, registered_delivery, data_coding
    """
    one = wire("00000020  # command_length 32" + body + "0010 0001 02    # 1 octet")
    two = wire("00000021  # command_length 33" + body + "0010 0002 0002  # 2 octets")
    for data in (one, two):
        pdu = decode(data)
        assert pdu.tlv("source_telematics_id") == 2
        assert encode(pdu) == data  # kept as received
    assert tlv.build(source_telematics_id=2) == ((Tag.SOURCE_TELEMATICS_ID, b"\x02"),)


def test_receipted_message_id_without_nul_is_accepted() -> None:
    # receipted_message_id is a C-Octet string; several SMSCs send it without the NUL.
    data = wire("""
        00000018          # command_length 24
        80000005          # deliver_sm_resp (any PDU with TLVs would do)
        00000000 00000001
        00                # message_id ""
        001E 0003 616263  # TLV receipted_message_id "abc" without its NUL
    """)
    pdu = decode(data)
    assert pdu.tlv("receipted_message_id") == "abc"
    assert encode(pdu) == data


# --- error responses without a body ---------------------------------------------------------

THROTTLED = wire("""
    00000010  # command_length 16: no body (section 4.4.2: no body when command_status != 0)
    80000004  # command_id submit_sm_resp
    00000058  # command_status ESME_RTHROTTLED
    0000002A  # sequence_number
""")


def test_error_response_without_body_decodes_and_encodes_back_to_16_octets() -> None:
    pdu = decode(THROTTLED)
    assert pdu == SubmitSmResp(sequence_number=42, command_status=S.ESME_RTHROTTLED)
    assert pdu.message_id == ""
    assert encode(pdu) == THROTTLED


@pytest.mark.parametrize(
    "cls",
    [BindTransmitterResp, BindReceiverResp, BindTransceiverResp, SubmitSmResp, SubmitMultiResp,
     DeliverSmResp, DataSmResp, QuerySmResp],
    ids=lambda cls: cls.__name__,
)
def test_every_error_response_with_a_body_is_sent_without_it(cls: type[Pdu]) -> None:
    pdu = cls(sequence_number=3, command_status=S.ESME_RSYSERR)
    data = encode(pdu)
    assert data == (16).to_bytes(4, "big") + cls.command_id.to_bytes(4, "big") + wire(
        "00000008 00000003"
    )
    assert decode(data) == pdu


def test_error_response_with_a_body_is_accepted() -> None:
    # Many SMSCs send the (empty) message_id after an error status anyway.
    data = wire("00000011 80000004 00000058 0000002A 00")
    assert decode(data) == SubmitSmResp(sequence_number=42, command_status=S.ESME_RTHROTTLED)


# --- command_status values -------------------------------------------------------------------


def test_unknown_command_status_is_kept_as_int() -> None:
    data = wire("00000010 80000015 0000ABCD 00000001  # enquire_link_resp, status 0xABCD")
    pdu = decode(data)
    assert pdu.command_status == 0xABCD
    assert type(pdu.command_status) is int
    assert encode(pdu) == data
    vendor = wire("00000010 80000004 00000400 00000002  # submit_sm_resp, vendor status 0x400")
    assert decode(vendor).command_status == 0x400
    assert encode(decode(vendor)) == vendor
    top = wire("00000010 80000000 FFFFFFFF 00000003  # generic_nack, status 0xFFFFFFFF")
    assert encode(decode(top)) == top


def test_status_name() -> None:
    assert status_name(0) == "ESME_ROK"
    assert status_name(0x58) == "ESME_RTHROTTLED"
    assert status_name(S.ESME_RINVCMDLEN) == "ESME_RINVCMDLEN"
    assert status_name(0xC4) == "ESME_RINVOPTPARAMVAL"
    assert status_name(0xABCD) == "0x0000ABCD"
    assert status_name(0xFFFFFFFF) == "0xFFFFFFFF"
