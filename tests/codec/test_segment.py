"""Segmentation, UDH/SAR parsing and reassembly."""

from __future__ import annotations

import attrs
import pytest
import smpplib.gsm
from hypothesis import given
from hypothesis import strategies as st

from smpp_codec import gsm7, text
from smpp_codec.constants import EsmClass, Tag
from smpp_codec.segment import (
    ConcatInfo,
    InformationElement,
    PartCount,
    Reassembler,
    Segment,
    SplitMode,
    concat_info,
    count,
    parse_udh,
    split,
)
from smpp_codec.text import Encoding, TextError

UDHI = int(EsmClass.UDHI)
SAR_REF, SAR_TOTAL, SAR_SEQ = Tag.SAR_MSG_REF_NUM, Tag.SAR_TOTAL_SEGMENTS, Tag.SAR_SEGMENT_SEQNUM


# --- exact parts ---------------------------------------------------------------------------


def test_short_text_is_one_plain_part_in_every_splitting_mode() -> None:
    for mode in (SplitMode.UDH8, SplitMode.UDH16, SplitMode.SAR):
        assert split("hello", mode=mode, reference=7) == [Segment(b"hello", 0x00, 0, (), 1, 1)]


def test_payload_mode_puts_everything_in_message_payload() -> None:
    message = "x" * 1000
    assert split(message, mode=SplitMode.PAYLOAD) == [
        Segment(b"", 0x00, 0, ((0x0424, b"x" * 1000),), 1, 1)
    ]


def test_udh8_parts_exact_bytes() -> None:
    segments = split("a" * 153 + "b" * 10, reference=0xAB)
    assert segments == [
        Segment(b"\x05\x00\x03\xab\x02\x01" + b"a" * 153, 0x00, UDHI, (), 1, 2),
        Segment(b"\x05\x00\x03\xab\x02\x02" + b"b" * 10, 0x00, UDHI, (), 2, 2),
    ]


def test_udh16_parts_exact_bytes() -> None:
    segments = split("a" * 152 + "b" * 9, mode=SplitMode.UDH16, reference=0x1234)
    assert segments == [
        Segment(b"\x06\x08\x04\x12\x34\x02\x01" + b"a" * 152, 0x00, UDHI, (), 1, 2),
        Segment(b"\x06\x08\x04\x12\x34\x02\x02" + b"b" * 9, 0x00, UDHI, (), 2, 2),
    ]


def test_sar_parts_exact_bytes() -> None:
    segments = split("a" * 161, mode=SplitMode.SAR, reference=0x0102)
    assert segments == [
        Segment(
            b"a" * 160,
            0x00,
            0,
            ((0x020C, b"\x01\x02"), (0x020E, b"\x02"), (0x020F, b"\x01")),
            1,
            2,
        ),
        Segment(b"a", 0x00, 0, ((0x020C, b"\x01\x02"), (0x020E, b"\x02"), (0x020F, b"\x02")), 2, 2),
    ]


@pytest.mark.parametrize(
    ("message", "encoding", "mode", "parts", "per_part"),
    [
        ("a" * 160, None, SplitMode.UDH8, 1, 160),
        ("a" * 161, None, SplitMode.UDH8, 2, 153),
        ("a" * 306, None, SplitMode.UDH8, 2, 153),
        ("a" * 307, None, SplitMode.UDH8, 3, 153),
        ("a" * 304, None, SplitMode.UDH16, 2, 152),
        ("a" * 305, None, SplitMode.UDH16, 3, 152),
        ("€" * 80, None, SplitMode.UDH8, 1, 160),  # 160 septets
        ("€" * 81, None, SplitMode.UDH8, 2, 153),
        ("ж" * 70, None, SplitMode.UDH8, 1, 140),
        ("ж" * 71, None, SplitMode.UDH8, 2, 134),  # 67 characters a part
        ("ж" * 134, None, SplitMode.UDH8, 2, 134),
        ("ж" * 135, None, SplitMode.UDH8, 3, 134),
        ("ж" * 132, None, SplitMode.UDH16, 2, 132),  # 66 characters a part
        ("ж" * 133, None, SplitMode.UDH16, 3, 132),
        ("a" * 140, Encoding.LATIN1, SplitMode.UDH8, 1, 140),
        ("a" * 268, Encoding.LATIN1, SplitMode.UDH8, 2, 134),
        ("a" * 266, Encoding.LATIN1, SplitMode.UDH16, 2, 133),
        ("a" * 267, Encoding.LATIN1, SplitMode.UDH16, 3, 133),
        (b"\xff" * 141, None, SplitMode.UDH8, 2, 134),
        ("a" * 320, None, SplitMode.SAR, 2, 160),
        ("ж" * 140, None, SplitMode.SAR, 2, 140),
        ("a" * 5000, None, SplitMode.PAYLOAD, 1, 65535),
    ],
)
def test_part_sizes(
    message: str | bytes, encoding: Encoding | None, mode: SplitMode, parts: int, per_part: int
) -> None:
    counted = count(message, encoding=encoding, mode=mode)
    assert (counted.parts, counted.per_part) == (parts, per_part)
    assert len(split(message, encoding=encoding, mode=mode)) == parts


def test_count_fields() -> None:
    assert count("a€😀") == PartCount(Encoding.UCS2, 8, 3, 1, 140)
    assert count("a€") == PartCount(Encoding.GSM7, 3, 2, 1, 160)
    assert count(b"\x00\x01") == PartCount(Encoding.BINARY, 2, 2, 1, 140)


def test_escape_sequence_is_never_split() -> None:
    # Septet 153 (the last place in part 1) would be the escape of '€'.
    first, second = split("a" * 152 + "€" + "b" * 10, reference=1)
    assert first.short_message[6:] == b"a" * 152
    assert second.short_message[6:] == b"\x1b\x65" + b"b" * 10


def test_surrogate_pair_is_never_split() -> None:
    # UTF-16 unit 67 (the last place in part 1) would be the high half of the emoji.
    first, second = split("a" * 66 + "😀" + "b" * 10, reference=1)
    assert first.short_message[6:] == "a".encode("utf-16-be") * 66
    assert second.short_message[6:] == ("😀" + "b" * 10).encode("utf-16-be")


def test_packed_gsm7_parts_have_the_fill_bit_after_udh8() -> None:
    first, second = split("a" * 200, gsm7_packed=True, reference=9)
    assert first.short_message == b"\x05\x00\x03\x09\x02\x01" + gsm7.pack(b"a" * 153, 1)
    assert len(first.short_message) == 140
    assert second.short_message == b"\x05\x00\x03\x09\x02\x02" + gsm7.pack(b"a" * 47, 1)


def test_packed_gsm7_parts_have_no_fill_bits_after_udh16() -> None:
    first, _ = split("a" * 200, mode=SplitMode.UDH16, gsm7_packed=True)
    assert first.short_message[7:] == gsm7.pack(b"a" * 152, 0)
    assert len(first.short_message) == 140


def test_packed_last_part_with_seven_spare_bits_is_padded_with_cr() -> None:
    # 159 septets leave 7 spare bits in 140 octets: a reader would see a 160th septet, '@'.
    (only,) = split("a" * 159, gsm7_packed=True)
    assert only.short_message == gsm7.pack(b"a" * 159 + b"\r")
    assert gsm7.unpack(only.short_message, 160)[-1:] == b"\r"
    (exact,) = split("a" * 160, gsm7_packed=True)
    assert exact.short_message == gsm7.pack(b"a" * 160)


def test_packed_middle_part_never_has_seven_spare_bits() -> None:
    # The escape rule would make part 1 152 septets: 49 + 1064 bits leave 7 spare, so 151.
    first, second = split("a" * 152 + "€" + "b" * 10, gsm7_packed=True)
    assert first.short_message[6:] == gsm7.pack(b"a" * 151, 1)
    assert second.short_message[6:] == gsm7.pack(b"a\x1b\x65" + b"b" * 10, 1)


def test_packed_is_ignored_for_non_gsm_encodings() -> None:
    assert split("ж", gsm7_packed=True) == split("ж")


def test_binary_parts() -> None:
    data = bytes(range(256)) * 2
    segments = split(data, mode=SplitMode.UDH16, reference=0xFFFF)
    assert [s.data_coding for s in segments] == [0x04] * 4
    assert b"".join(s.short_message[7:] for s in segments) == data
    assert [len(s.short_message) for s in segments] == [140, 140, 140, 120]


@pytest.mark.parametrize(
    ("mode", "reference"),
    [
        (SplitMode.UDH8, 256),
        (SplitMode.UDH8, -1),
        (SplitMode.UDH16, 65536),
        (SplitMode.SAR, 65536),
        (SplitMode.PAYLOAD, -1),
    ],
)
def test_reference_out_of_range(mode: SplitMode, reference: int) -> None:
    with pytest.raises(TextError, match="reference"):
        split("short", mode=mode, reference=reference)


def test_reference_limits_are_accepted() -> None:
    assert split("a" * 200, reference=255)[0].short_message[3] == 255
    assert split("a" * 200, mode=SplitMode.UDH16, reference=65535)[0].short_message[3:5] == (
        b"\xff\xff"
    )


def test_255_parts_fit_and_256_do_not() -> None:
    assert len(split("a" * 153 * 255)) == 255
    assert count("a" * 153 * 255).parts == 255
    with pytest.raises(TextError, match="255 parts"):
        split("a" * (153 * 255 + 1))
    with pytest.raises(TextError, match="255 parts"):
        count("a" * (153 * 255 + 1))


def test_more_than_255_parts_after_shortening_is_refused() -> None:
    # Fewer septets than 255 full parts hold, but escapes at part ends force a 256th part:
    # each block is two parts, of 152 septets (the escape moves on) and 153.
    block = "a" * 152 + "€" + "a" * 151
    message = block * 127 + "a" * 154
    assert len(gsm7.encode(message)) <= 153 * 255
    assert len(split(block * 127 + "a" * 153)) == 255
    with pytest.raises(TextError, match="255"):
        split(message)


def test_payload_too_large() -> None:
    assert len(split("a" * 65535, mode=SplitMode.PAYLOAD)) == 1
    with pytest.raises(TextError, match="message_payload"):
        split("a" * 65536, mode=SplitMode.PAYLOAD)
    with pytest.raises(TextError, match="message_payload"):
        split("ж" * 32768, mode=SplitMode.PAYLOAD)


@pytest.mark.parametrize("max_octets", [15, 141, 0])
def test_max_octets_out_of_range(max_octets: int) -> None:
    with pytest.raises(TextError, match="max_octets"):
        split("a", max_octets=max_octets)


def test_encoding_and_input_type_must_agree() -> None:
    with pytest.raises(TextError, match="bytes"):
        split("text", encoding=Encoding.BINARY)
    with pytest.raises(TextError, match="UCS2"):
        split(b"bytes", encoding=Encoding.UCS2)
    with pytest.raises(TextError, match="index 0"):
        split("ж", encoding=Encoding.GSM7)


# --- properties: split, then reassemble ----------------------------------------------------

GSM_CHARS = sorted({*gsm7.DEFAULT_ALPHABET, *gsm7.EXTENSION.values(), "ç"})


def sized_text(draw: st.DrawFn, chars: st.SearchStrategy[str], most: int) -> str:
    """Text of a length drawn uniformly up to ``most``: plain ``st.text`` is mostly short, and
    most messages must need several parts."""
    length = draw(st.integers(0, most))
    return "".join(draw(st.lists(chars, min_size=length, max_size=length)))


@st.composite
def messages(draw: st.DrawFn) -> tuple[str | bytes, Encoding | None]:
    """A message and the encoding asked for, small enough for 255 parts of 16 octets."""
    kind = draw(st.sampled_from(["gsm", "any", "ucs2", "latin1", "ascii", "binary"]))
    if kind == "gsm":
        # Runs of extension characters make escapes land on part boundaries often.
        chars = st.sampled_from(GSM_CHARS) | st.sampled_from(sorted(gsm7.EXTENSION.values()))
        return sized_text(draw, chars, 400), draw(st.sampled_from([None, Encoding.GSM7]))
    any_char = st.characters(exclude_categories=["Cs"])  # no lone surrogates: not encodable
    if kind == "any":
        return sized_text(draw, any_char, 250), None
    if kind == "ucs2":
        astral = st.characters(min_codepoint=0x10000, max_codepoint=0x1FFFF)
        return sized_text(draw, any_char | astral, 250), Encoding.UCS2
    if kind == "latin1":
        return sized_text(draw, st.characters(max_codepoint=0xFF), 400), Encoding.LATIN1
    if kind == "ascii":
        return sized_text(draw, st.characters(max_codepoint=0x7F), 400), Encoding.ASCII
    length = draw(st.integers(0, 400))
    return draw(st.binary(min_size=length, max_size=length)), None


def unpack_part(body: bytes, payload: bytes) -> bytes:
    """The septets of a packed part: the reader's side of ``gsm7_packed=True``."""
    fill = gsm7.fill_bits(len(body) - len(payload))
    return gsm7.unpack(payload, gsm7.septets_in(len(payload), fill), fill)


def check_part_limits(segment: Segment, units: bytes, encoding: Encoding, **kw: object) -> None:
    mode, packed, max_octets = kw["mode"], kw["packed"], kw["max_octets"]
    assert isinstance(max_octets, int)
    if mode is SplitMode.PAYLOAD:
        assert len(segment.tlvs[0][1]) <= 0xFFFF
        return
    udh = len(segment.short_message) - len(units) if not packed else 0
    if encoding is Encoding.GSM7 and not packed:
        udh_bits = udh * 8 + gsm7.fill_bits(udh)
        assert udh_bits + 7 * len(units) <= max_octets * 8
    else:
        assert len(segment.short_message) <= max_octets


@given(
    messages(),
    st.sampled_from(SplitMode),
    st.booleans(),
    st.integers(16, 140),
    st.integers(0, 255),
    st.data(),
)
def test_split_then_reassemble_gives_the_message_back(
    message_and_encoding: tuple[str | bytes, Encoding | None],
    mode: SplitMode,
    packed: bool,
    max_octets: int,
    reference: int,
    data: st.DataObject,
) -> None:
    message, asked = message_and_encoding
    segments = split(
        message,
        encoding=asked,
        mode=mode,
        reference=reference,
        gsm7_packed=packed,
        max_octets=max_octets,
    )
    counted = count(message, encoding=asked, mode=mode, gsm7_packed=packed, max_octets=max_octets)
    assert counted.parts == len(segments)
    encoding = counted.encoding
    packed = packed and encoding is Encoding.GSM7
    assert [s.part_number for s in segments] == list(range(1, len(segments) + 1))
    assert {s.total_parts for s in segments} == {len(segments)}

    reassembler = Reassembler()
    joined = None
    all_units = b""
    for segment in data.draw(st.permutations(segments)):
        body = segment.short_message or dict(segment.tlvs).get(Tag.MESSAGE_PAYLOAD, b"")
        info = concat_info(segment.short_message, segment.esm_class_flags, segment.tlvs)
        if info is None:
            assert len(segments) == 1
            info = ConcatInfo(reference, 1, 1, body)
        units = unpack_part(body, info.payload) if packed else info.payload
        all_units += units
        check_part_limits(segment, units, encoding, mode=mode, packed=packed, max_octets=max_octets)
        assert len(units) <= counted.per_part + (1 if packed else 0)  # + the CR padding
        if encoding is Encoding.GSM7:
            assert not units.endswith(b"\x1b")
        if encoding is Encoding.UCS2 and units:
            assert not 0xDC <= units[0] <= 0xDF, "part starts with a low surrogate"
            assert not 0xD8 <= units[-2] <= 0xDB, "part ends with a high surrogate"
        result = reassembler.add(("src", "dst", reference), attrs.evolve(info, payload=units), 0.0)
        if result is not None:
            joined = result
    assert joined is not None
    assert reassembler.pending == 0
    assert len(all_units) >= counted.units

    if isinstance(message, bytes):
        assert joined == message
        return
    decoded = text.decode(joined, segments[0].data_coding)
    expected = message.replace("ç", "Ç") if encoding is Encoding.GSM7 else message
    if packed and decoded == expected + "\r":
        return  # the CR padding of a last part that would end with 7 spare bits
    assert decoded == expected


@given(messages(), st.sampled_from(SplitMode), st.booleans(), st.integers(16, 140))
def test_count_agrees_with_split(
    message_and_encoding: tuple[str | bytes, Encoding | None],
    mode: SplitMode,
    packed: bool,
    max_octets: int,
) -> None:
    message, asked = message_and_encoding
    kw = {"encoding": asked, "mode": mode, "gsm7_packed": packed, "max_octets": max_octets}
    counted = count(message, **kw)  # type: ignore[arg-type]
    assert counted.parts == len(split(message, **kw))  # type: ignore[arg-type]
    assert counted.characters == len(message)
    if isinstance(message, str) and counted.encoding is Encoding.GSM7:
        assert counted.units == gsm7.septet_count(message)


# --- UDH and concatenation info ------------------------------------------------------------


def test_parse_udh() -> None:
    elements, rest = parse_udh(b"\x0b\x00\x03\x01\x02\x01\x05\x04\x0b\x84\x23\xf0text")
    assert elements == (
        InformationElement(0x00, b"\x01\x02\x01"),
        InformationElement(0x05, b"\x0b\x84\x23\xf0"),
    )
    assert rest == b"text"
    assert parse_udh(b"\x00abc") == ((), b"abc")
    assert parse_udh(b"\x02\x70\x00") == ((InformationElement(0x70, b""),), b"")


@pytest.mark.parametrize(
    ("short_message", "match"),
    [
        (b"", "empty"),
        (b"\x05\x00\x03\x01", "runs past"),
        (b"\x01\x00", "inside the header"),
        (b"\x04\x00\x03\x01\x02", "past the UDH end"),
    ],
)
def test_parse_udh_errors(short_message: bytes, match: str) -> None:
    with pytest.raises(TextError, match=match):
        parse_udh(short_message)


@given(st.binary())
def test_parse_udh_hostile_bytes_raise_only_text_error(data: bytes) -> None:
    try:
        elements, rest = parse_udh(data)
    except TextError:
        return
    assert len(rest) + 1 + sum(2 + len(ie.data) for ie in elements) == len(data)


def test_concat_info_udh8() -> None:
    info = concat_info(b"\x05\x00\x03\x2a\x03\x02hello", UDHI, [])
    assert info == ConcatInfo(0x2A, 3, 2, b"hello")


def test_concat_info_udh16_after_another_ie() -> None:
    with pytest.raises(TextError, match="0x08 at offset 7"):  # UDH length 10 cuts the IE
        concat_info(b"\x0a\x05\x04\x0b\x84\x23\xf0\x08\x04\x01\x02\x02\x01\x00\x41", UDHI, [])
    info = concat_info(
        b"\x0c\x05\x04\x0b\x84\x23\xf0\x08\x04\x01\x02\x02\x01\x00\x41", UDHI | 0x03, []
    )
    assert info == ConcatInfo(0x0102, 2, 1, b"\x00\x41")


def test_concat_info_sar() -> None:
    tlvs = [(0x0204, b"\x00\x01"), (SAR_REF, b"\xbe\xef"), (SAR_TOTAL, b"\x05"), (SAR_SEQ, b"\x05")]
    assert concat_info(b"text", 0, tlvs) == ConcatInfo(0xBEEF, 5, 5, b"text")


def test_concat_info_message_payload_body() -> None:
    tlvs = [(Tag.MESSAGE_PAYLOAD, b"\x05\x00\x03\x01\x02\x02body")]
    assert concat_info(b"", UDHI, tlvs) == ConcatInfo(1, 2, 2, b"body")


def test_concat_info_none_for_single_messages() -> None:
    assert concat_info(b"hello", 0, []) is None
    assert concat_info(b"\x05\x00\x03\x01\x02\x01hello", 0, []) is None  # no UDHI: just text
    assert concat_info(b"\x06\x05\x04\x0b\x84\x23\xf0hi", UDHI, []) is None  # a port IE only


def test_concat_info_udh_wins_over_sar_and_sar_payload_drops_udh() -> None:
    tlvs = [(SAR_REF, b"\x00\x09"), (SAR_TOTAL, b"\x02"), (SAR_SEQ, b"\x01")]
    assert concat_info(b"\x05\x00\x03\x07\x03\x03x", UDHI, tlvs) == ConcatInfo(7, 3, 3, b"x")
    port_udh = b"\x06\x05\x04\x0b\x84\x23\xf0"
    assert concat_info(port_udh + b"x", UDHI, tlvs) == ConcatInfo(9, 2, 1, b"x")


@pytest.mark.parametrize(
    ("short_message", "esm_class", "tlvs", "match"),
    [
        (b"\x05\x00\x03\x01\x00\x01x", UDHI, [], "part 1 of 0"),
        (b"\x05\x00\x03\x01\x02\x00x", UDHI, [], "part 0 of 2"),
        (b"\x05\x00\x03\x01\x02\x03x", UDHI, [], "part 3 of 2"),
        (b"\x04\x00\x02\x01\x02x", UDHI, [], "0x00 has 2 octets"),
        (b"\x05\x08\x03\x01\x02\x01x", UDHI, [], "0x08 has 3 octets"),
        (b"\x09x", UDHI, [], "runs past"),
        (b"", UDHI, [], "empty"),
        (b"x", 0, [(SAR_REF, b"\x00\x01"), (SAR_TOTAL, b"\x02")], "sar_segment_seqnum"),
        (b"x", 0, [(SAR_REF, b"\x01"), (SAR_TOTAL, b"\x02"), (SAR_SEQ, b"\x01")], "2"),
        (b"x", 0, [(SAR_REF, b"\x00\x01"), (SAR_TOTAL, b"\x02"), (SAR_SEQ, b"\x03")], "3 of 2"),
    ],
)
def test_concat_info_errors(
    short_message: bytes, esm_class: int, tlvs: list[tuple[int, bytes]], match: str
) -> None:
    with pytest.raises(TextError, match=match):
        concat_info(short_message, esm_class, tlvs)


# --- Reassembler ---------------------------------------------------------------------------


def test_reassembler_in_any_order_with_duplicates() -> None:
    r = Reassembler()
    assert r.add("k", ConcatInfo(1, 3, 3, b"c"), 0.0) is None
    assert r.add("k", ConcatInfo(1, 3, 1, b"a"), 1.0) is None
    assert r.add("k", ConcatInfo(1, 3, 1, b"A"), 1.5) is None  # duplicate: ignored
    assert r.pending == 1
    assert r.add("k", ConcatInfo(1, 3, 2, b"b"), 2.0) == b"abc"
    assert (r.pending, r.completed, r.duplicates) == (0, 1, 1)
    # The key is free again for a new message.
    assert r.add("k", ConcatInfo(1, 2, 1, b"x"), 3.0) is None
    assert r.pending == 1


def test_reassembler_single_part_message_returns_at_once() -> None:
    r = Reassembler()
    assert r.add("k", ConcatInfo(5, 1, 1, b"whole"), 0.0) == b"whole"
    assert (r.pending, r.completed) == (0, 1)


def test_reassembler_keeps_messages_apart_by_key() -> None:
    r = Reassembler()
    assert r.add(("a", 1), ConcatInfo(1, 2, 1, b"a1"), 0.0) is None
    assert r.add(("b", 1), ConcatInfo(1, 2, 2, b"b2"), 0.0) is None
    assert r.add(("a", 1), ConcatInfo(1, 2, 2, b"a2"), 0.0) == b"a1a2"
    assert r.add(("b", 1), ConcatInfo(1, 2, 1, b"b1"), 0.0) == b"b1b2"


def test_reassembler_refuses_a_conflicting_part_and_keeps_its_state() -> None:
    r = Reassembler()
    r.add("k", ConcatInfo(1, 2, 1, b"a"), 0.0)
    with pytest.raises(TextError, match="reference 2, 2 parts"):
        r.add("k", ConcatInfo(2, 2, 2, b"x"), 0.0)
    with pytest.raises(TextError, match="3 parts"):
        r.add("k", ConcatInfo(1, 3, 2, b"x"), 0.0)
    assert r.add("k", ConcatInfo(1, 2, 2, b"b"), 0.0) == b"ab"


def test_reassembler_expire() -> None:
    r = Reassembler()
    r.add("old", ConcatInfo(7, 3, 2, b"b"), 10.0)
    r.add("old", ConcatInfo(7, 3, 1, b"a"), 40.0)  # age counts from the first part
    r.add("new", ConcatInfo(8, 2, 1, b"x"), 30.0)
    assert r.expire(now=40.0, timeout=30.0) == []  # exactly 30 s old: not older than timeout
    assert r.expire(now=40.5, timeout=30.0) == [("old", 7, {1: b"a", 2: b"b"})]
    assert (r.pending, r.expired) == (1, 1)
    assert r.expire(now=100.0, timeout=30.0) == [("new", 8, {1: b"x"})]
    assert r.pending == 0
    assert r.expire(now=200.0, timeout=30.0) == []


def test_reassembler_evicts_the_oldest_beyond_max_pending() -> None:
    r = Reassembler(max_pending=2)
    r.add("a", ConcatInfo(1, 2, 1, b"a"), 0.0)
    r.add("b", ConcatInfo(2, 2, 1, b"b"), 1.0)
    r.add("c", ConcatInfo(3, 2, 1, b"c"), 2.0)
    assert (r.pending, r.evicted) == (2, 1)
    assert r.add("a", ConcatInfo(1, 2, 2, b"A"), 3.0) is None  # "a" is gone: starts anew
    assert (r.pending, r.evicted) == (2, 2)  # ... and evicts "b"
    assert r.expire(now=3.0, timeout=60.0) == [("a", 1, {1: b"a"}), ("b", 2, {1: b"b"})]
    assert r.expire(now=3.0, timeout=60.0) == []
    assert r.add("c", ConcatInfo(3, 2, 2, b"C"), 4.0) == b"cC"


def test_reassembler_keeps_at_most_max_pending_eviction_reports() -> None:
    r = Reassembler(max_pending=2)
    for i in range(10):
        r.add(i, ConcatInfo(i, 2, 1, b"."), float(i))
    assert r.evicted == 8
    assert [key for key, _, _ in r.expire(now=9.0, timeout=60.0)] == [6, 7]


def test_reassembler_max_pending_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_pending"):
        Reassembler(max_pending=0)


# --- python-smpplib interop ----------------------------------------------------------------


def test_udh8_parts_match_smpplib_for_plain_gsm_text() -> None:
    message = "The quick brown fox jumps over the lazy dog. " * 8
    theirs, coding, esm = smpplib.gsm.make_parts(message)
    ours = split(message, reference=0)
    assert (coding, esm) == (0x00, 0x40)
    assert len(ours) == len(theirs) == 3
    for segment, part in zip(ours, theirs, strict=True):
        # smpplib picks a random reference (octet 3); everything else must agree.
        assert segment.short_message[:3] + segment.short_message[4:] == part[:3] + part[4:]


def test_ucs2_parts_match_smpplib_without_astral_characters() -> None:
    message = "Привет, мир! " * 20
    theirs, coding, _ = smpplib.gsm.make_parts(message)
    ours = split(message)
    assert coding == 0x08
    assert [s.short_message[6:] for s in ours] == [p[6:] for p in theirs]


def test_smpplib_splits_escapes_and_surrogates_where_we_do_not() -> None:
    # smpplib's fault: it cuts at a fixed size, inside a sequence. The spec's answer (and ours)
    # keeps the sequence whole in the next part.
    theirs, _, _ = smpplib.gsm.make_parts("a" * 152 + "€" + "b" * 10)
    assert theirs[0].endswith(b"\x1b")
    assert not split("a" * 152 + "€" + "b" * 10)[0].short_message.endswith(b"\x1b")
    theirs, _, _ = smpplib.gsm.make_parts("a" * 66 + "😀" + "b" * 10)
    assert 0xD8 <= theirs[0][-2] <= 0xDB
    assert split("a" * 66 + "😀" + "b" * 10)[0].short_message[-2:] == b"\x00a"
