"""Delivery receipts: real-world receipt texts, TLV receipts in PDUs, round trips, hostile input.

The receipt strings in REAL_WORLD are quoted from public bug reports and provider documentation
(the source is named on each); the ones marked "variant" exercise a vendor habit the parser
accepts without a public sample at hand.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp_codec import decode, encode
from smpp_codec.constants import EsmClass, MessageState, Tag
from smpp_codec.pdu import DataSm, DeliverSm
from smpp_codec.receipt import (
    STAT_ALIASES,
    STAT_FOR_STATE,
    TEXT_LIMIT,
    DeliveryReceipt,
    ReceiptError,
    format_receipt,
    normalize_stat,
    parse_receipt_text,
    receipt_from_pdu,
    stat_for_state,
    state_for_stat,
)

S = MessageState
R = DeliveryReceipt

REAL_WORLD: list[tuple[str, str | bytes, DeliveryReceipt]] = [
    (
        "SMPP 3.4 Appendix B layout, 10-digit dates",
        "id:0123456789 sub:001 dlvrd:001 submit date:2104131013 done date:2104131014 "
        "stat:DELIVRD err:000 text:Hello, this is a te",
        R(
            message_id="0123456789",
            stat="DELIVRD",
            state=S.DELIVERED,
            err="000",
            sub="001",
            dlvrd="001",
            submit_date=datetime(2021, 4, 13, 10, 13),
            done_date=datetime(2021, 4, 13, 10, 14),
            text="Hello, this is a te",
        ),
    ),
    (
        "node-smpp #199: 12-digit dates with seconds, empty text",
        "id:0000029095 sub:001 dlvrd:001 submit date:211125034959 done date:211125035001 "
        "stat:DELIVRD err:000 text:",
        R(
            message_id="0000029095",
            stat="DELIVRD",
            state=S.DELIVERED,
            err="000",
            sub="001",
            dlvrd="001",
            submit_date=datetime(2021, 11, 25, 3, 49, 59),
            done_date=datetime(2021, 11, 25, 3, 50, 1),
            text="",
        ),
    ),
    (
        "node-smpp #77: 'Text:' capitalised, unpadded counters, 2-digit err",
        "id:45013692 sub:0 dlvrd:28 submit date:1908121157 done date:1908121158 stat:UNDELIV "
        "err:21 Text:*100#",
        R(
            message_id="45013692",
            stat="UNDELIV",
            state=S.UNDELIVERABLE,
            err="21",
            sub="0",
            dlvrd="28",
            submit_date=datetime(2019, 8, 12, 11, 57),
            done_date=datetime(2019, 8, 12, 11, 58),
            text="*100#",
        ),
    ),
    (
        "php-smpp #70: 4-digit err, a GSM escape byte in the text, as bytes",
        b"id:117062714244798261 sub:001 dlvrd:001 submit date:1706271624 done date:1706271624 "
        b"stat:DELIVRD err:0000 text:H\x1bello world",
        R(
            message_id="117062714244798261",
            stat="DELIVRD",
            state=S.DELIVERED,
            err="0000",
            sub="001",
            dlvrd="001",
            submit_date=datetime(2017, 6, 27, 16, 24),
            done_date=datetime(2017, 6, 27, 16, 24),
            text="H\x1bello world",
        ),
    ),
    (
        "smppex #46: dates in the SMPP absolute time format, no text",
        "id:rdwjwxns18krxr9936ey96ymcw sub:000 dlvrd:000 submit date:180711070003912+ "
        "done date:180711070000012+ stat:UNDELIV err:000",
        R(
            message_id="rdwjwxns18krxr9936ey96ymcw",
            stat="UNDELIV",
            state=S.UNDELIVERABLE,
            err="000",
            sub="000",
            dlvrd="000",
            submit_date=datetime(2018, 7, 11, 7, 0, 3, 900_000),
            done_date=datetime(2018, 7, 11, 7, 0, 0),
        ),
    ),
    (
        "jsmpp #67: no sub, no dlvrd, no text",
        "id:0654354026 submit date:2302101454 done date:2302101454 stat:DELIVRD err:000",
        R(
            message_id="0654354026",
            stat="DELIVRD",
            state=S.DELIVERED,
            err="000",
            submit_date=datetime(2023, 2, 10, 14, 54),
            done_date=datetime(2023, 2, 10, 14, 54),
        ),
    ),
    (
        "jsmpp #62: no sub, no dlvrd",
        "id:1526758174 submit date:1701240904 done date:1701240904 stat:DELIVRD err:000 "
        "text:hellow",
        R(
            message_id="1526758174",
            stat="DELIVRD",
            state=S.DELIVERED,
            err="000",
            submit_date=datetime(2017, 1, 24, 9, 4),
            done_date=datetime(2017, 1, 24, 9, 4),
            text="hellow",
        ),
    ),
    (
        "Jasmin #447: stat FAILED, an all-zero done date",
        "id:1216080510463401720 sub:001 dlvrd:001 submit date:1608051046 "
        "done date:0000000000 stat:FAILED err:002 Text:",
        R(
            message_id="1216080510463401720",
            stat="UNDELIV",
            state=S.UNDELIVERABLE,
            err="002",
            sub="001",
            dlvrd="001",
            submit_date=datetime(2016, 8, 5, 10, 46),
            done_date=None,
            text="",
        ),
    ),
    (
        "Jasmin #195: UUID id, 12-digit YYYYMMDDhhmm dates",
        "id:c87c2273-7edb-4bc7-8d3a-7f57f21b625e submit date:201506201641 "
        "done date:201506201641 stat:DELIVRD err:000",
        R(
            message_id="c87c2273-7edb-4bc7-8d3a-7f57f21b625e",
            stat="DELIVRD",
            state=S.DELIVERED,
            err="000",
            submit_date=datetime(2015, 6, 20, 16, 41),
            done_date=datetime(2015, 6, 20, 16, 41),
        ),
    ),
    (
        "Jasmin #760: UUID id, DELIVRD with an error code",
        "id:fa9542be-3c16-44bb-9a8c-d277ea1851ef submit date:1911211739 "
        "done date:1911211741 stat:DELIVRD err:002",
        R(
            message_id="fa9542be-3c16-44bb-9a8c-d277ea1851ef",
            stat="DELIVRD",
            state=S.DELIVERED,
            err="002",
            submit_date=datetime(2019, 11, 21, 17, 39),
            done_date=datetime(2019, 11, 21, 17, 41),
        ),
    ),
    (
        "gosmpp #124: hex id, 1-digit counters and err, a space after 'text:'",
        "id:123A456B sub:1 dlvrd:1 submit date:1702281424 done date:1702281424 stat:DELIVRD "
        "err:0 text: hello how are you there",
        R(
            message_id="123A456B",
            stat="DELIVRD",
            state=S.DELIVERED,
            err="0",
            sub="1",
            dlvrd="1",
            submit_date=datetime(2017, 2, 28, 14, 24),
            done_date=datetime(2017, 2, 28, 14, 24),
            text="hello how are you there",
        ),
    ),
    (
        "python-smpplib PR #90: 32-character hex id, UNDELIV",
        "id:6C7C7DE28BB3E961947700000000FE37 sub:001 dlvrd:000 submit date:1907311208 "
        "done date:1907311208 stat:UNDELIV err:001 text:Ceci est un tet.",
        R(
            message_id="6C7C7DE28BB3E961947700000000FE37",
            stat="UNDELIV",
            state=S.UNDELIVERABLE,
            err="001",
            sub="001",
            dlvrd="000",
            submit_date=datetime(2019, 7, 31, 12, 8),
            done_date=datetime(2019, 7, 31, 12, 8),
            text="Ceci est un tet.",
        ),
    ),
    (
        "Vonage (Nexmo) documented layout: decimal id, 'text:none ' with a trailing space",
        "id:0000662316 sub:001 dlvrd:000 submit date:2104131013 done date:2104131213 "
        "stat:EXPIRED err:001 text:none ",
        R(
            message_id="0000662316",
            stat="EXPIRED",
            state=S.EXPIRED,
            err="001",
            sub="001",
            dlvrd="000",
            submit_date=datetime(2021, 4, 13, 10, 13),
            done_date=datetime(2021, 4, 13, 12, 13),
            text="none",
        ),
    ),
    (
        "e-com-net.com blog: UNDELIV with an SMPP status as err, a service string as text",
        "id:0911897980 sub:001 dlvrd:000 submit date:1201121551 done date:1201121551 "
        "stat:UNDELIV err:075 text:-PROFILE",
        R(
            message_id="0911897980",
            stat="UNDELIV",
            state=S.UNDELIVERABLE,
            err="075",
            sub="001",
            dlvrd="000",
            submit_date=datetime(2012, 1, 12, 15, 51),
            done_date=datetime(2012, 1, 12, 15, 51),
            text="-PROFILE",
        ),
    ),
    (
        "smppcenter.com knowledge base: 20-digit id, 12-digit dates",
        "id:64567564356765435676 sub:001 dlvrd:001 submit date:190608165232 "
        "done date:190608165237 stat:DELIVRD err:000 text:Hello World",
        R(
            message_id="64567564356765435676",
            stat="DELIVRD",
            state=S.DELIVERED,
            err="000",
            sub="001",
            dlvrd="001",
            submit_date=datetime(2019, 6, 8, 16, 52, 32),
            done_date=datetime(2019, 6, 8, 16, 52, 37),
            text="Hello World",
        ),
    ),
    (
        "variant: upper-case names, vendor stat spelling, underscored dates, 14-digit dates",
        "ID:ABC123 SUB:001 DLVRD:001 SUBMIT_DATE:20210413101302 DONE_DATE:20210413101459 "
        "STAT:delivered ERR:000 TEXT:Hi",
        R(
            message_id="ABC123",
            stat="DELIVRD",
            state=S.DELIVERED,
            err="000",
            sub="001",
            dlvrd="001",
            submit_date=datetime(2021, 4, 13, 10, 13, 2),
            done_date=datetime(2021, 4, 13, 10, 14, 59),
            text="Hi",
        ),
    ),
    (
        "variant: fields out of order, extra spaces, unknown fields, NUL-terminated",
        b"  stat:REJECTD   id:77  err:E42 imsi:001010123456789 submitdate:2104131013 "
        b"smsc:abc:1 donedate:2104131013 text:stat:DELIVRD is not the status\x00",
        R(
            message_id="77",
            stat="REJECTD",
            state=S.REJECTED,
            err="E42",
            submit_date=datetime(2021, 4, 13, 10, 13),
            done_date=datetime(2021, 4, 13, 10, 13),
            text="stat:DELIVRD is not the status",
            extra={"imsi": "001010123456789", "smsc": "abc:1"},
        ),
    ),
    (
        "variant: intermediate notification, ENROUTE, empty counters and date",
        "id:5 sub: dlvrd: submit date: done date: stat:ENROUTE err:",
        R(message_id="5", stat="ENROUTE", state=S.ENROUTE, err="", sub="", dlvrd=""),
    ),
    (
        "variant: a stat this parser does not know is kept, its state UNKNOWN",
        "id:9 stat:SKIPPED err:000",
        R(message_id="9", stat="SKIPPED", state=S.UNKNOWN, err="000"),
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(text, expected, id=name) for name, text, expected in REAL_WORLD],
)
def test_real_world_receipts(text: str | bytes, expected: DeliveryReceipt) -> None:
    receipt = parse_receipt_text(text)
    # Field by field first, so a failure names the field; then the whole, for anything missed.
    for field in (
        "message_id", "stat", "state", "err", "sub", "dlvrd",
        "submit_date", "done_date", "text", "extra", "network_error_code",
    ):  # fmt: skip
        assert getattr(receipt, field) == getattr(expected, field), field
    assert receipt == expected


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("sub:001 dlvrd:001 stat:DELIVRD err:000", "no message id"),
        ("id: sub:001 stat:DELIVRD", "no message id"),
        ("id:123 sub:001 dlvrd:001 err:000 text:x", "no status"),
        ("id:123 stat: err:000", "no status"),
        ("id:123 err:000 text:stat:DELIVRD", "no status"),  # text: takes the rest
        ("", "empty"),
        (b" \x00 ", "empty"),
        ("Hello, world", "no 'name:value' field"),
        # node-smpp #140: a hand-built "receipt" that puts words before its first field.
        (
            "message text:123 sub:001 dlvrd:0 submit date:2007281200 done date: stat:ACCEPTD",
            "before",
        ),
        ("id:1 id:2 stat:DELIVRD", "'id' twice"),
        ("id:1 submit date:2104131013 submit_date:2104131013 stat:DELIVRD", "'submit_date' twice"),
        ("id:1 stat:DELIVRD submit date:2113131013", "not a valid date"),
        ("id:1 stat:DELIVRD done date:210413101", "expected YYMMDDhhmm"),
        ("id:1 stat:DELIVRD done date:21O4131013", "expected YYMMDDhhmm"),
        ("id:1 stat:DELIVRD done date:202113131013", "not a valid date"),
        ("id:1 stat:DELIVRD done date:180711070003949+", "48"),
        ("id:1 stat:DELIVRD done date:000001000000000R", "expected YYMMDDhhmm"),
    ],
)
def test_bad_receipts_say_what_is_wrong(text: str | bytes, word: str) -> None:
    with pytest.raises(ReceiptError, match=word):
        parse_receipt_text(text)


def test_twelve_digits_prefer_seconds_when_both_readings_are_dates() -> None:
    # 2010-06-20 16:41 in Jasmin's YYYYMMDDhhmm is also 2020-10-06 20:16:41 in YYMMDDhhmmss:
    # the layout the specification family uses wins.
    receipt = parse_receipt_text("id:1 done date:201006201641 stat:DELIVRD")
    assert receipt.done_date == datetime(2020, 10, 6, 20, 16, 41)


# --- stat and state -------------------------------------------------------------------------


def test_stat_table_is_the_spec_table() -> None:
    assert dict(STAT_FOR_STATE) == {
        S.ENROUTE: "ENROUTE",
        S.DELIVERED: "DELIVRD",
        S.EXPIRED: "EXPIRED",
        S.DELETED: "DELETED",
        S.UNDELIVERABLE: "UNDELIV",
        S.ACCEPTED: "ACCEPTD",
        S.UNKNOWN: "UNKNOWN",
        S.REJECTED: "REJECTD",
    }
    for state, stat in STAT_FOR_STATE.items():
        assert stat_for_state(state) == stat
        assert state_for_stat(stat) is state
        assert state_for_stat(stat.lower()) is state


@pytest.mark.parametrize(
    ("variant", "stat", "state"),
    [
        ("DELIVERED", "DELIVRD", S.DELIVERED),
        ("Delivered", "DELIVRD", S.DELIVERED),
        ("UNDELIVERABLE", "UNDELIV", S.UNDELIVERABLE),
        ("undelivered", "UNDELIV", S.UNDELIVERABLE),
        ("FAILED", "UNDELIV", S.UNDELIVERABLE),
        ("REJECTED", "REJECTD", S.REJECTED),
        ("ACCEPTED", "ACCEPTD", S.ACCEPTED),
        ("BUFFRED", "ENROUTE", S.ENROUTE),
        ("BUFFERD", "ENROUTE", S.ENROUTE),
        ("BUFFERED", "ENROUTE", S.ENROUTE),
        (" delivrd ", "DELIVRD", S.DELIVERED),
        ("SKIPPED", "SKIPPED", S.UNKNOWN),
        ("ACKED", "ACKED", S.UNKNOWN),
    ],
)
def test_vendor_stats(variant: str, stat: str, state: MessageState) -> None:
    assert normalize_stat(variant) == stat
    assert state_for_stat(variant) is state


def test_every_alias_names_a_known_stat() -> None:
    assert set(STAT_ALIASES.values()) <= set(STAT_FOR_STATE.values())


# --- the receipt class ----------------------------------------------------------------------


def test_receipt_refuses_empty_id_and_stat_and_aware_dates() -> None:
    with pytest.raises(ReceiptError, match="message_id"):
        R(message_id="", stat="DELIVRD", state=S.DELIVERED)
    with pytest.raises(ReceiptError, match="stat"):
        R(message_id="1", stat="", state=S.DELIVERED)
    with pytest.raises(ReceiptError, match="naive"):
        R(
            message_id="1",
            stat="DELIVRD",
            state=S.DELIVERED,
            done_date=datetime.fromisoformat("2021-04-13T10:13:00+01:00"),
        )


def test_receipts_are_immutable_and_hashable() -> None:
    extra = {"imsi": "1"}
    receipt = R(message_id="1", stat="DELIVRD", state=S.DELIVERED, extra=extra)
    extra["imsi"] = "2"  # the receipt holds its own copy
    assert receipt.extra == {"imsi": "1"}
    with pytest.raises(TypeError):
        receipt.extra["imsi"] = "3"  # type: ignore[index]
    assert len({receipt, R(message_id="1", stat="DELIVRD", state=S.DELIVERED, extra=extra)}) == 2
    assert receipt != R(message_id="1", stat="DELIVRD", state=S.DELIVERED)


# --- writing --------------------------------------------------------------------------------


def test_format_receipt_exact_bytes() -> None:
    receipt = R(
        message_id="0000029095",
        stat="DELIVRD",
        state=S.DELIVERED,
        err="000",
        sub="1",
        dlvrd="1",
        submit_date=datetime(2021, 11, 25, 3, 49, 59),
        done_date=datetime(2021, 11, 25, 3, 50, 1),
        text="Hello, this is a test message longer than twenty characters",
        extra={"imsi": "001010123456789"},
    )
    assert format_receipt(receipt) == (
        b"id:0000029095 sub:001 dlvrd:001 submit date:2111250349 done date:2111250350 "
        b"stat:DELIVRD err:000 imsi:001010123456789 text:Hello, this is a tes"
    )
    assert len("Hello, this is a tes") == TEXT_LIMIT


def test_format_receipt_leaves_out_what_is_none() -> None:
    receipt = R(message_id="abc", stat="EXPIRED", state=S.EXPIRED)
    assert format_receipt(receipt) == b"id:abc stat:EXPIRED"


def test_format_receipt_writes_latin1() -> None:
    receipt = R(message_id="1", stat="DELIVRD", state=S.DELIVERED, text="Grüße")
    assert format_receipt(receipt) == b"id:1 stat:DELIVRD text:Gr\xfc\xdfe"
    assert parse_receipt_text(format_receipt(receipt)) == receipt


@pytest.mark.parametrize(
    ("receipt", "word"),
    [
        (R(message_id="a b", stat="DELIVRD", state=S.DELIVERED), "whitespace"),
        (R(message_id="a", stat="DELIVRD", state=S.DELIVERED, err="0 0"), "whitespace"),
        (R(message_id="a", stat="DELIVRD", state=S.DELIVERED, sub=" 1"), "whitespace"),
        (R(message_id="a\x00", stat="DELIVRD", state=S.DELIVERED), "whitespace"),
        (R(message_id="a", stat="DELIVRD", state=S.DELIVERED, extra={"x": "1 2"}), "whitespace"),
        (R(message_id="a", stat="DELIVRD", state=S.DELIVERED, extra={"Imsi": "1"}), "name"),
        (R(message_id="a", stat="DELIVRD", state=S.DELIVERED, extra={"stat": "1"}), "name"),
        (R(message_id="a", stat="DELIVRD", state=S.DELIVERED, extra={"donedate": "1"}), "name"),
        (R(message_id="a", stat="DELIVRD", state=S.DELIVERED, extra={"a b": "1"}), "name"),
        (
            R(message_id="a", stat="DELIVRD", state=S.DELIVERED, done_date=datetime(1999, 1, 1)),
            "2000-2099",
        ),
        (R(message_id="a", stat="DELIVRD", state=S.DELIVERED, text="\u20ac5"), "Latin-1"),
    ],
)
def test_format_receipt_refuses_what_would_not_read_back(
    receipt: DeliveryReceipt, word: str
) -> None:
    with pytest.raises(ReceiptError, match=word):
        format_receipt(receipt)


# --- receipts in PDUs -----------------------------------------------------------------------

RID = Tag.RECEIPTED_MESSAGE_ID
STATE = Tag.MESSAGE_STATE
NEC = Tag.NETWORK_ERROR_CODE
PAYLOAD = Tag.MESSAGE_PAYLOAD
TEXT = (
    b"id:0000029095 sub:001 dlvrd:001 submit date:2111250349 done date:2111250350 "
    b"stat:DELIVRD err:000 text:Hello"
)


def deliver_sm(
    esm_class: int = 0x04, short_message: bytes = TEXT, tlvs: tuple[tuple[int, bytes], ...] = ()
) -> DeliverSm:
    return DeliverSm(
        sequence_number=1,
        esm_class=esm_class,
        short_message=short_message,
        optional_parameters=tlvs,
    )


def test_text_only_receipt() -> None:
    assert receipt_from_pdu(deliver_sm()) == parse_receipt_text(TEXT)


def test_tlvs_win_over_the_text() -> None:
    pdu = deliver_sm(tlvs=((RID, b"1C6F\x00"), (STATE, b"\x05"), (NEC, b"\x03\x00\x22")))
    receipt = receipt_from_pdu(pdu)
    assert receipt is not None
    assert receipt.message_id == "1C6F"  # not the text's 0000029095
    assert receipt.state is S.UNDELIVERABLE  # the TLV's, not DELIVRD's
    assert receipt.stat == "DELIVRD"  # what the text said
    assert receipt.network_error_code == b"\x03\x00\x22"
    assert receipt.err == "000"
    assert receipt.submit_date == datetime(2021, 11, 25, 3, 49)
    assert receipt.text == "Hello"


def test_gosmpp_124_tlvs_without_text() -> None:
    """The TLVs of a real receipt (gosmpp issue #124), with an empty short_message."""
    pdu = deliver_sm(
        short_message=b"",
        tlvs=(
            (RID, b"3534bce5cd49a0e96e149217386900d98646\x00"),
            (STATE, bytes([2])),
            (NEC, bytes([3, 0, 0])),
        ),
    )
    assert receipt_from_pdu(pdu) == R(
        message_id="3534bce5cd49a0e96e149217386900d98646",
        stat="DELIVRD",
        state=S.DELIVERED,
        network_error_code=b"\x03\x00\x00",
    )


def test_tlvs_rescue_an_unreadable_text() -> None:
    pdu = deliver_sm(
        short_message=b"Your message was delivered", tlvs=((RID, b"42"), (STATE, b"\x02"))
    )
    assert receipt_from_pdu(pdu) == R(message_id="42", stat="DELIVRD", state=S.DELIVERED)


def test_tlvs_fill_what_the_text_lacks() -> None:
    no_stat = deliver_sm(short_message=b"id:42 err:000 text:hi", tlvs=((STATE, b"\x03"),))
    assert receipt_from_pdu(no_stat) == R(
        message_id="42", stat="EXPIRED", state=S.EXPIRED, err="000", text="hi"
    )
    no_id = deliver_sm(short_message=b"stat:DELIVRD", tlvs=((RID, b"abc\x00"),))
    assert receipt_from_pdu(no_id) == R(message_id="abc", stat="DELIVRD", state=S.DELIVERED)


def test_receipted_message_id_without_nul_and_empty() -> None:
    no_nul = receipt_from_pdu(deliver_sm(tlvs=((RID, b"abc"),)))
    assert no_nul is not None
    assert no_nul.message_id == "abc"
    empty = receipt_from_pdu(deliver_sm(tlvs=((RID, b"\x00"),)))
    assert empty is not None
    assert empty.message_id == "0000029095"  # an empty TLV counts as absent


def test_data_sm_receipt_reads_message_payload() -> None:
    pdu = DataSm(
        sequence_number=7,
        esm_class=0x04,
        optional_parameters=((PAYLOAD, b"id:99 stat:UNDELIV err:034"),),
    )
    assert receipt_from_pdu(pdu) == R(
        message_id="99", stat="UNDELIV", state=S.UNDELIVERABLE, err="034"
    )


def test_deliver_sm_with_empty_short_message_reads_message_payload() -> None:
    pdu = deliver_sm(short_message=b"", tlvs=((PAYLOAD, b"id:99 stat:DELIVRD"),))
    assert receipt_from_pdu(pdu) == R(message_id="99", stat="DELIVRD", state=S.DELIVERED)


@pytest.mark.parametrize(
    "esm_class",
    [
        EsmClass.DELIVERY_RECEIPT,
        EsmClass.DELIVERY_ACK,
        EsmClass.INTERMEDIATE_NOTIFICATION,
        EsmClass.DELIVERY_RECEIPT | EsmClass.UDHI,  # other bits do not matter
        EsmClass.DELIVERY_RECEIPT | EsmClass.STORE_AND_FORWARD_MODE | EsmClass.REPLY_PATH,
    ],
)
def test_receipt_message_types(esm_class: int) -> None:
    assert receipt_from_pdu(deliver_sm(esm_class)) == parse_receipt_text(TEXT)


@pytest.mark.parametrize(
    "esm_class",
    [
        0x00,
        EsmClass.USER_ACK,
        EsmClass.CONVERSATION_ABORT,
        0x0C,  # 0x04 | 0x08 is no message type
        0x24,
        EsmClass.UDHI,
        0x3C,
    ],
)
def test_other_message_types_are_not_receipts(esm_class: int) -> None:
    # Even with the receipt TLVs and a receipt text: esm_class decides.
    pdu = deliver_sm(esm_class, tlvs=((RID, b"1\x00"), (STATE, b"\x02")))
    assert receipt_from_pdu(pdu) is None


@pytest.mark.parametrize(
    ("short_message", "tlvs", "word"),
    [
        (b"", (), "no text"),
        (b"  \x00", ((STATE, b"\x02"),), "receipted_message_id"),
        (b"", ((RID, b"1\x00"),), "message_state"),
        (b"garbage", ((RID, b"1\x00"),), "no 'name:value' field"),
        (TEXT, ((STATE, b""),), "must have 1"),
        (TEXT, ((STATE, b"\x02\x02"),), "must have 1"),
        (TEXT, ((STATE, b"\x00"),), "no SMPP 3.4 message state"),
        (TEXT, ((STATE, b"\x09"),), "no SMPP 3.4 message state"),
        (TEXT, ((NEC, b"\x03\x00"),), "must have 3"),
        (TEXT, ((RID, b"a\x00b\x00"),), "NUL inside"),
        (TEXT, ((RID, b"a\x00"), (RID, b"a\x00")), "twice"),
        (TEXT, ((STATE, b"\x02"), (STATE, b"\x02")), "twice"),
    ],
)
def test_bad_pdu_receipts_say_what_is_wrong(
    short_message: bytes, tlvs: tuple[tuple[int, bytes], ...], word: str
) -> None:
    with pytest.raises(ReceiptError, match=word):
        receipt_from_pdu(deliver_sm(short_message=short_message, tlvs=tlvs))


def test_unrelated_tlvs_are_ignored() -> None:
    pdu = deliver_sm(tlvs=((0x1403, b"vendor"), (Tag.USER_MESSAGE_REFERENCE, b"\x00\x01")))
    assert receipt_from_pdu(pdu) == parse_receipt_text(TEXT)


def test_receipt_survives_the_wire() -> None:
    """A receipt PDU encoded and decoded by the codec gives the receipt it was built with."""
    pdu = deliver_sm(tlvs=((RID, b"1C6F\x00"), (STATE, b"\x02"), (NEC, b"\x03\x00\x00")))
    decoded = decode(encode(pdu))
    assert isinstance(decoded, DeliverSm)
    assert receipt_from_pdu(decoded) == receipt_from_pdu(pdu)


# --- properties -----------------------------------------------------------------------------

tokens = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20
)
counters = st.from_regex(r"[0-9]{3,5}", fullmatch=True)
minute_dates = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59)
).map(lambda d: d.replace(second=0, microsecond=0))
texts = st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=TEXT_LIMIT).map(
    lambda t: t.strip(" \t\r\n\f\v\x00")
)
reserved = {"id", "sub", "dlvrd", "stat", "err", "text", "submit_date", "done_date"}
extra_keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda k: k not in reserved | {"submitdate", "donedate"}
)


@st.composite
def canonical_receipts(draw: st.DrawFn) -> DeliveryReceipt:
    """Receipts the text can carry whole (see format_receipt)."""
    stat = draw(st.sampled_from(sorted(STAT_FOR_STATE.values())))
    return R(
        message_id=draw(tokens),
        stat=stat,
        state=state_for_stat(stat),
        err=draw(st.none() | st.just("") | tokens),
        sub=draw(st.none() | counters),
        dlvrd=draw(st.none() | counters),
        submit_date=draw(st.none() | minute_dates),
        done_date=draw(st.none() | minute_dates),
        text=draw(st.none() | texts),
        extra=draw(st.dictionaries(extra_keys, st.just("") | tokens, max_size=3)),
    )


@given(canonical_receipts())
def test_round_trip(receipt: DeliveryReceipt) -> None:
    assert parse_receipt_text(format_receipt(receipt)) == receipt


blank_runs = st.sampled_from([" ", "  ", "\t", "\r\n", " \x00 "])


@given(canonical_receipts(), st.data())
def test_field_order_and_name_case_do_not_matter(
    receipt: DeliveryReceipt, data: st.DataObject
) -> None:
    line = format_receipt(receipt).decode("latin-1")
    head, sep, text = line.partition(" text:")
    # Split on the spaces between fields (values hold none; "submit date" is rejoined).
    fields = head.replace("submit date:", "submit_date:").replace("done date:", "done_date:")
    parts = data.draw(st.permutations(fields.split(" ")))
    shouted = [p.upper() if data.draw(st.booleans()) else p for p in parts]
    # Upper-casing a value changes it: only the names are re-cased.
    renamed = [
        s.partition(":")[0] + ":" + p.partition(":")[2] for s, p in zip(shouted, parts, strict=True)
    ]
    separators = data.draw(
        st.lists(blank_runs, min_size=len(renamed), max_size=len(renamed)), label="separators"
    )
    shuffled = "".join(sep_ + part for sep_, part in zip(separators, renamed, strict=True))
    if sep:
        shuffled += " Text:" + text
    assert parse_receipt_text(shuffled) == receipt


@given(st.binary(max_size=300))
def test_hostile_bytes_raise_only_receipt_error(data: bytes) -> None:
    try:
        receipt = parse_receipt_text(data)
    except ReceiptError:
        return
    assert receipt.message_id
    assert receipt.stat


@given(st.text(max_size=300))
def test_hostile_text_raises_only_receipt_error(text: str) -> None:
    try:
        receipt = parse_receipt_text(text)
    except ReceiptError:
        return
    assert receipt.message_id
    assert receipt.stat


receipt_words = st.sampled_from(
    [
        "id:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:", "err:", "text:",
        "Text:", "submit_date:", "DONE_DATE:", " ", ":", "0", "1", "9", "+", "-", "R",
        "DELIVRD", "\x00", "\t", "é", "2104131013", "211125034959", "20210413101302",
        "180711070003912+", "000000000000000R", "\u20ac",
    ]
)  # fmt: skip


@given(st.lists(receipt_words, max_size=40).map("".join))
def test_near_receipts_raise_only_receipt_error(text: str) -> None:
    try:
        receipt = parse_receipt_text(text)
    except ReceiptError:
        return
    assert receipt.message_id
    assert receipt.stat


@given(canonical_receipts(), st.integers(min_value=0), st.binary(min_size=1, max_size=8))
def test_corrupted_receipts_raise_only_receipt_error(
    receipt: DeliveryReceipt, position: int, junk: bytes
) -> None:
    raw = format_receipt(receipt)
    at = position % (len(raw) + 1)
    try:
        corrupted = parse_receipt_text(raw[:at] + junk + raw[at:])
    except ReceiptError:
        return
    assert corrupted.message_id
    assert corrupted.stat


tlv_values = st.one_of(
    st.binary(max_size=10),
    st.sampled_from([b"\x02", b"\x05", b"abc\x00", b"\x03\x00\x00", TEXT]),
)
tlv_tags = st.sampled_from([RID, STATE, NEC, PAYLOAD, Tag.USER_MESSAGE_REFERENCE, 0x1403])


@given(
    st.integers(min_value=0, max_value=255),
    st.one_of(st.binary(max_size=200), st.just(TEXT), st.just(b"")),
    st.lists(st.tuples(tlv_tags, tlv_values), max_size=5).map(tuple),
)
def test_hostile_pdus_give_none_a_receipt_or_receipt_error(
    esm_class: int, short_message: bytes, tlvs: tuple[tuple[int, bytes], ...]
) -> None:
    pdu = deliver_sm(esm_class, short_message, tlvs)
    try:
        receipt = receipt_from_pdu(pdu)
    except ReceiptError:
        assert (esm_class & 0x3C) in {0x04, 0x08, 0x20}
        return
    if (esm_class & 0x3C) not in {0x04, 0x08, 0x20}:
        assert receipt is None
    else:
        assert receipt is not None
        assert receipt.message_id


# --- the canonical layout's fast path ---------------------------------------------------------

_VALUE_CHARS = st.characters(
    codec="latin-1", blacklist_characters=" \t\r\n\f\v\x00\x1c\x1d\x1e\x1f\x85\xa0"
)


@given(
    values=st.lists(st.text(_VALUE_CHARS, max_size=12), min_size=7, max_size=7),
    text=st.none() | st.text(st.characters(codec="latin-1"), max_size=30),
    upper=st.booleans(),
)
def test_the_canonical_fast_path_reads_what_the_general_path_reads(
    values: list[str], text: str | None, upper: bool
) -> None:
    from smpp_codec.receipt import _BLANK, _CANONICAL, _KNOWN_KEYS, _fields, _split_fields

    keys = ["id", "sub", "dlvrd", "submit date", "done date", "stat", "err"]
    fields = zip(keys, values, strict=True)
    receipt = " ".join(f"{k.upper() if upper else k}:{v}" for k, v in fields)
    if text is not None:
        receipt += f" Text:{text}"
    receipt = receipt.strip(_BLANK)
    assert _CANONICAL.fullmatch(receipt) is not None
    general = dict(_split_fields(receipt))
    expected_known = {k: v for k, v in general.items() if k in _KNOWN_KEYS}
    expected_extra = {k: v for k, v in general.items() if k not in _KNOWN_KEYS}
    assert _fields(receipt) == (expected_known, expected_extra)
