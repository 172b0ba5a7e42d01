"""GSM 03.38 default alphabet, extension table and 7-bit packing."""

from __future__ import annotations

import pytest
import smpplib.gsm
from hypothesis import given
from hypothesis import strategies as st

from smpp_codec import gsm7
from smpp_codec.text import TextError

# The default alphabet as 3GPP TS 23.038 section 6.2.1 draws it, written out by code point so a
# typo in gsm7.py's string cannot hide in a copy of it. 0x1B (escape) is checked separately.
SPEC_DEFAULT = {
    0x00: 0x0040, 0x01: 0x00A3, 0x02: 0x0024, 0x03: 0x00A5, 0x04: 0x00E8, 0x05: 0x00E9,
    0x06: 0x00F9, 0x07: 0x00EC, 0x08: 0x00F2, 0x09: 0x00C7, 0x0A: 0x000A, 0x0B: 0x00D8,
    0x0C: 0x00F8, 0x0D: 0x000D, 0x0E: 0x00C5, 0x0F: 0x00E5, 0x10: 0x0394, 0x11: 0x005F,
    0x12: 0x03A6, 0x13: 0x0393, 0x14: 0x039B, 0x15: 0x03A9, 0x16: 0x03A0, 0x17: 0x03A8,
    0x18: 0x03A3, 0x19: 0x0398, 0x1A: 0x039E, 0x1C: 0x00C6, 0x1D: 0x00E6, 0x1E: 0x00DF,
    0x1F: 0x00C9, 0x20: 0x0020, 0x21: 0x0021, 0x22: 0x0022, 0x23: 0x0023, 0x24: 0x00A4,
    0x40: 0x00A1, 0x5B: 0x00C4, 0x5C: 0x00D6, 0x5D: 0x00D1, 0x5E: 0x00DC, 0x5F: 0x00A7,
    0x60: 0x00BF, 0x7B: 0x00E4, 0x7C: 0x00F6, 0x7D: 0x00F1, 0x7E: 0x00FC, 0x7F: 0x00E0,
}  # fmt: skip
# 0x25-0x3F, 0x41-0x5A and 0x61-0x7A are the ASCII characters of the same value.
SPEC_DEFAULT.update({v: v for v in range(0x25, 0x40)})
SPEC_DEFAULT.update({v: v for v in range(0x41, 0x5B)})
SPEC_DEFAULT.update({v: v for v in range(0x61, 0x7B)})

SPEC_EXTENSION = {
    "\x0c": b"\x1b\x0a", "^": b"\x1b\x14", "{": b"\x1b\x28", "}": b"\x1b\x29",
    "\\": b"\x1b\x2f", "[": b"\x1b\x3c", "~": b"\x1b\x3d", "]": b"\x1b\x3e",
    "|": b"\x1b\x40", "€": b"\x1b\x65",
}  # fmt: skip

GSM_CHARS = sorted({chr(cp) for cp in SPEC_DEFAULT.values()} | set(SPEC_EXTENSION) | {"ç"})
gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS))


def test_spec_table_is_complete() -> None:
    assert len(SPEC_DEFAULT) == 127  # every septet but the escape


@pytest.mark.parametrize("septet", sorted(SPEC_DEFAULT))
def test_default_table_both_ways(septet: int) -> None:
    char = chr(SPEC_DEFAULT[septet])
    assert gsm7.encode(char) == bytes([septet])
    assert gsm7.decode(bytes([septet])) == char


@pytest.mark.parametrize(("char", "septets"), sorted(SPEC_EXTENSION.items()))
def test_extension_table_both_ways(char: str, septets: bytes) -> None:
    assert gsm7.encode(char) == septets
    assert gsm7.decode(septets) == char
    assert gsm7.septet_count(char) == 2


def test_whole_default_table_round_trip() -> None:
    every = bytes(s for s in range(128) if s != gsm7.ESCAPE)
    text = gsm7.decode(every)
    assert len(text) == 127
    assert gsm7.encode(text) == every


def test_c_cedilla_both_cases_encode_to_0x09_and_decode_to_capital() -> None:
    # The 3GPP table draws Ç at 0x09; the Unicode mapping maps it to ç. Both are accepted.
    assert gsm7.encode("ç") == gsm7.encode("Ç") == b"\x09"
    assert gsm7.decode(b"\x09") == "Ç"


@pytest.mark.parametrize(
    ("text", "septets"),
    [
        ("hello", b"hello"),
        ("@£$", b"\x00\x01\x02"),
        ("Price: 5€", b"Price: 5\x1b\x65"),
        ("a[b]", b"a\x1b\x3cb\x1b\x3e"),
        ("¿¡_§¤", b"\x60\x40\x11\x5f\x24"),
        ("ΔΩ", b"\x10\x15"),
        ("", b""),
    ],
)
def test_known_encodings(text: str, septets: bytes) -> None:
    assert gsm7.encode(text) == septets
    assert gsm7.decode(septets) == text


@pytest.mark.parametrize(
    ("text", "index", "char"),
    [("`", 0, "`"), ("ok\t", 2, "\t"), ("Ω≈", 1, "≈"), ("€中€", 1, "中"), ("😀", 0, "😀")],
)
def test_encode_names_first_bad_character(text: str, index: int, char: str) -> None:
    with pytest.raises(TextError, match=f"at index {index} ") as info:
        gsm7.encode(text)
    assert repr(char) in str(info.value)
    assert not gsm7.can_encode(text)
    with pytest.raises(TextError):
        gsm7.septet_count(text)


def test_decode_rejects_octets_above_0x7f() -> None:
    with pytest.raises(TextError, match="0x80 at index 2"):
        gsm7.decode(b"ab\x80")
    with pytest.raises(TextError):
        gsm7.decode(b"\x1b\xff")


@pytest.mark.parametrize(
    ("septets", "text"),
    [
        (b"a\x1b", "a "),  # dangling escape at the end: shown as a space
        (b"\x1b", " "),
        (b"\x1b\x1ba", " a"),  # escape to a further extension table: a space
        (b"\x1b\x41", "A"),  # unknown extension: the default-table character
        (b"\x1b\x00", "@"),
        (b"\x1b\x0d", "\r"),  # CR2 control: its default-table character
        (b"\x1b\x65\x1b\x65", "€€"),
    ],
)
def test_decode_is_lenient_with_escapes(septets: bytes, text: str) -> None:
    assert gsm7.decode(septets) == text


@given(gsm_text)
def test_round_trip_gsm_text(text: str) -> None:
    septets = gsm7.encode(text)
    assert gsm7.decode(septets) == text.replace("ç", "Ç")
    assert gsm7.septet_count(text) == len(septets)
    assert gsm7.can_encode(text)
    assert septets.isascii()


@given(st.text())
def test_can_encode_agrees_with_encode(text: str) -> None:
    try:
        septets = gsm7.encode(text)
    except TextError:
        assert not gsm7.can_encode(text)
    else:
        assert gsm7.can_encode(text)
        assert len(septets) == len(text) + sum(c in SPEC_EXTENSION for c in text)


@given(st.binary())
def test_decode_arbitrary_octets_raises_only_text_error(data: bytes) -> None:
    try:
        text = gsm7.decode(data)
    except TextError:
        assert not data.isascii()
    else:
        assert len(text) <= len(data)


# --- packing -------------------------------------------------------------------------------

# (septets, fill bits, packed). Sources: 3GPP TS 23.038 (hellohello); Device::Gsm test suite
# (the quick fox); HeboTech ATLib test suite (the rest, including the fill-bit vectors).
LOREM_160 = (
    "Lorem ipsum dolor sit amet, consectetur adipisicing elit, sed do eiusmod tempor incididunt"
    " ut labore et dolore magna aliqua.Ut enim ad minim veniam, quis nostru"
)
PACKING_VECTORS = [
    ("hellohello", 0, "E8329BFD4697D9EC37"),
    (
        "The quick fox jumps over the lazy dog",
        0,
        "54741914AFA7C76B90F98D07A9EB6DF81CF4B697E5203ABA0C6287F57910F97D06",
    ),
    (
        "The quick brown fox jumps over the lazy dog",
        0,
        "54741914AFA7C76B9058FEBEBB41E6371EA4AEB7E173D0DB5E9683E8E832881DD6E741E4F719",
    ),
    ("A", 0, "41"),
    ("AB", 0, "4121"),
    ("Tada :)", 0, "D430390CD2A500"),
    ("HELLO123", 0, "C82293F98CC966"),
    ("Design@Home", 0, "C4F23C7D760390EF7619"),
    ("Hello world", 0, "C8329BFD06DDDF723619"),
    ("Hello world", 1, "906536FB0DBABFE56C32"),
    ("Hi", 2, "20D3"),
    (
        LOREM_160,
        0,
        "CCB7BCDC06A5E1F37A1B447EB3DF72D03C4D0785DB653A0B347EBBE7E531BD4CAFCB4161721A9E9EA7C7"
        "69F7195466A7E92CD0BC4C0691DFA072BA3E6FBFC9207AB90D7FCB4169F7384D4E93EB6E3AA84E07B1C3"
        "E2B7BC0C2AD341E437FB2D2F83DAE1B33B0C0AB3D3F17AD855A583CAEE741B142683DA6977BA0DB297DD"
        "E9709B058AD7D37390FB3DA7CBEB",
    ),
]


@pytest.mark.parametrize(("text", "fill", "packed"), PACKING_VECTORS)
def test_packing_vectors(text: str, fill: int, packed: str) -> None:
    septets = gsm7.encode(text)
    assert gsm7.pack(septets, fill) == bytes.fromhex(packed)
    assert gsm7.unpack(bytes.fromhex(packed), len(septets), fill) == septets


def test_pack_raw_septet_vector_with_escape() -> None:
    septets = bytes.fromhex("4C696E65311B0A4C696E6532")
    assert gsm7.pack(septets) == bytes.fromhex("CCB4BB1CDB289869775906")


def test_160_septets_fill_exactly_140_octets() -> None:
    assert len(LOREM_160) == 160
    assert len(gsm7.pack(gsm7.encode(LOREM_160))) == 140


def reference_pack(septets: bytes, fill: int) -> bytes:
    """Bit-by-bit packing, the slow obvious way, to check the fast one against."""
    bits = [0] * fill
    for septet in septets:
        bits.extend((septet >> i) & 1 for i in range(7))
    bits.extend([0] * (-len(bits) % 8))
    return bytes(
        sum(bit << i for i, bit in enumerate(bits[start : start + 8]))
        for start in range(0, len(bits), 8)
    )


septet_strings = st.binary().map(lambda b: bytes(x & 0x7F for x in b))


@given(septet_strings, st.integers(0, 6))
def test_pack_matches_bitwise_reference(septets: bytes, fill: int) -> None:
    assert gsm7.pack(septets, fill) == reference_pack(septets, fill)


@given(septet_strings, st.integers(0, 6))
def test_unpack_inverts_pack(septets: bytes, fill: int) -> None:
    packed = gsm7.pack(septets, fill)
    assert len(packed) == (fill + 7 * len(septets) + 7) // 8
    assert gsm7.unpack(packed, len(septets), fill) == septets


@given(st.binary(), st.integers(0, 6))
def test_unpack_reads_every_whole_septet(data: bytes, fill: int) -> None:
    count = gsm7.septets_in(len(data), fill)
    septets = gsm7.unpack(data, count, fill)
    assert len(septets) == count
    assert septets.isascii()
    # Packing them again gives the same bits (the spare high bits of data aside).
    used_bits = fill + 7 * count
    expected = int.from_bytes(data, "little") & ((1 << used_bits) - 1) & ~((1 << fill) - 1)
    assert int.from_bytes(gsm7.pack(septets, fill), "little") == expected


def test_septets_in_counts_a_phantom_septet_in_seven_spare_bits() -> None:
    # 7 septets in 7 octets leave 7 spare bits, which read as one more '@': why segment.split
    # never leaves 7 spare bits in a packed part.
    assert gsm7.septets_in(len(gsm7.pack(b"abcdefg")), 0) == 8
    assert gsm7.septets_in(len(gsm7.pack(b"abcdefgh")), 0) == 8


@pytest.mark.parametrize(("udh", "fill"), [(0, 0), (6, 1), (7, 0), (5, 2), (12, 2), (4, 3), (3, 4)])
def test_fill_bits(udh: int, fill: int) -> None:
    assert gsm7.fill_bits(udh) == fill
    assert (udh * 8 + fill) % 7 == 0


def test_pack_errors() -> None:
    with pytest.raises(TextError, match="fill_bits"):
        gsm7.pack(b"a", 7)
    with pytest.raises(TextError, match="fill_bits"):
        gsm7.unpack(b"a", 1, -1)
    with pytest.raises(TextError, match="0x7F"):
        gsm7.pack(b"\x80")
    with pytest.raises(TextError, match="fewer than 2 septets"):
        gsm7.unpack(b"\x41", 2)
    with pytest.raises(TextError, match="negative"):
        gsm7.unpack(b"\x41", -1)


# --- python-smpplib interop ----------------------------------------------------------------

# smpplib.gsm's table is right except: it has '`' at 0x5F where the spec has '§', it has no form
# feed (1B 0A), no 'ç', and it "encodes" U+001B as a bare escape. Everything else must agree.
SMPPLIB_WRONG = {"§", "\x0c", "ç"}


@pytest.mark.parametrize("char", [c for c in GSM_CHARS if c not in SMPPLIB_WRONG])
def test_agrees_with_smpplib_where_smpplib_is_right(char: str) -> None:
    assert gsm7.encode(char) == smpplib.gsm.gsm_encode(char)


def test_smpplib_table_faults_and_the_spec_answer() -> None:
    assert smpplib.gsm.gsm_encode("`") == b"\x5f"  # smpplib: wrong, '`' is not GSM
    assert not gsm7.can_encode("`")
    assert gsm7.encode("§") == b"\x5f"  # the spec: 0x5F is the section sign
    with pytest.raises(UnicodeError):
        smpplib.gsm.gsm_encode("§")
    assert gsm7.encode("\x0c") == b"\x1b\x0a"  # form feed is in the extension table
    with pytest.raises(UnicodeError):
        smpplib.gsm.gsm_encode("\x0c")
    assert smpplib.gsm.gsm_encode("\x1b") == b"\x1b"  # smpplib: a bare escape, not a character
    assert not gsm7.can_encode("\x1b")


@given(st.text(alphabet=st.sampled_from([c for c in GSM_CHARS if c not in SMPPLIB_WRONG])))
def test_agrees_with_smpplib_on_text(text: str) -> None:
    assert gsm7.encode(text) == smpplib.gsm.gsm_encode(text)
