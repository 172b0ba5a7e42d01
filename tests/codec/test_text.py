"""Encodings, automatic choice and decoding by data_coding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp_codec import gsm7, text
from smpp_codec.text import Encoding, TextError


def test_text_error_is_a_value_error() -> None:
    assert issubclass(TextError, ValueError)


@pytest.mark.parametrize(
    ("encoding", "data_coding"),
    [
        (Encoding.GSM7, 0x00),
        (Encoding.ASCII, 0x01),
        (Encoding.LATIN1, 0x03),
        (Encoding.UCS2, 0x08),
        (Encoding.BINARY, 0x04),
    ],
)
def test_default_data_coding(encoding: Encoding, data_coding: int) -> None:
    assert encoding.data_coding == data_coding


@pytest.mark.parametrize(
    ("message", "encoding", "data", "data_coding"),
    [
        ("hello", None, b"hello", 0x00),
        ("€", None, b"\x1b\x65", 0x00),
        ("Ω", None, b"\x15", 0x00),  # Greek capital omega is in the GSM alphabet
        ("Ω", Encoding.UCS2, b"\x03\xa9", 0x08),
        ("€", Encoding.UCS2, b"\x20\xac", 0x08),
        ("Привет", None, "Привет".encode("utf-16-be"), 0x08),
        ("😀", None, b"\xd8\x3d\xde\x00", 0x08),  # astral: a surrogate pair
        ("café", None, b"caf\x05", 0x00),
        ("café", Encoding.LATIN1, b"caf\xe9", 0x03),
        ("hi", Encoding.ASCII, b"hi", 0x01),
        ("`", None, b"\x00\x60", 0x08),  # backtick is not GSM
        ("", None, b"", 0x00),
    ],
)
def test_known_encodings(
    message: str, encoding: Encoding | None, data: bytes, data_coding: int
) -> None:
    assert text.encode(message, encoding) == (data, data_coding)
    assert text.decode(data, data_coding) == message


def test_latin1_is_never_chosen() -> None:
    # ÿ is Latin-1 but not GSM: UCS-2, not Latin-1.
    assert text.choose_encoding("ÿ") is Encoding.UCS2
    assert text.choose_encoding("é") is Encoding.GSM7


@pytest.mark.parametrize(
    ("message", "encoding", "index"),
    [
        ("aé", Encoding.ASCII, 1),
        ("a€", Encoding.LATIN1, 1),
        ("ab中", Encoding.GSM7, 2),
        ("x\ud800", Encoding.UCS2, 1),  # a lone surrogate cannot be written as UTF-16
        ("x\ud800", None, 1),
    ],
)
def test_encode_errors_name_the_character(
    message: str, encoding: Encoding | None, index: int
) -> None:
    with pytest.raises(TextError, match=f"index {index}"):
        text.encode(message, encoding)


def test_encode_refuses_binary_and_bytes() -> None:
    with pytest.raises(TextError, match="bytes"):
        text.encode("abc", Encoding.BINARY)
    with pytest.raises(TextError, match="str"):
        text.encode(b"abc")  # type: ignore[arg-type]


@given(st.text())
def test_any_text_round_trips(message: str) -> None:
    # st.text() has no lone surrogates but has astral characters.
    data, data_coding = text.encode(message)
    expected = message.replace("ç", "Ç") if data_coding == 0x00 else message
    assert text.decode(data, data_coding) == expected
    assert (data_coding == 0x00) == gsm7.can_encode(message)


@given(st.text())
def test_ucs2_round_trips_anything(message: str) -> None:
    data, data_coding = text.encode(message, Encoding.UCS2)
    assert data_coding == 0x08
    assert len(data) == 2 * sum(1 if ord(c) < 0x10000 else 2 for c in message)
    assert text.decode(data, data_coding) == message


@given(st.text(alphabet=st.characters(max_codepoint=0xFF)))
def test_latin1_round_trips(message: str) -> None:
    assert text.decode(*text.encode(message, Encoding.LATIN1)) == message


@pytest.mark.parametrize(
    ("data", "data_coding", "expected"),
    [
        (b"caf\xe9", 0x01, "café"),  # IA5 with a Latin-1 octet: read as Latin-1
        (b"\xbf\xe0\xe8", 0x06, "Прш"),  # ISO-8859-5
        (b"\xf9\xec", 0x07, "של"),  # ISO-8859-8
        (b"\xd8\x3d", 0x08, "\ufffd"),  # a lone high surrogate becomes U+FFFD
        (b"\xde\x00\x00a", 0x08, "\ufffda"),  # a lone low surrogate too
    ],
)
def test_lenient_decoding(data: bytes, data_coding: int, expected: str) -> None:
    assert text.decode(data, data_coding) == expected


@pytest.mark.parametrize(
    ("data_coding", "alphabet"),
    [
        (0x10, "gsm"),  # general group, class 0, GSM
        (0x11, "gsm"),
        (0x13, "gsm"),
        (0x18, "ucs2"),  # general group, class 0, UCS-2
        (0x19, "ucs2"),
        (0x08 | 0x40, "ucs2"),  # automatic deletion group
        (0x40, "gsm"),
        (0xC0, "gsm"),  # message waiting, discard
        (0xD8, "gsm"),  # message waiting, store
        (0xE0, "ucs2"),  # message waiting, store, UCS-2
        (0xF0, "gsm"),  # data coding / message class, default alphabet
        (0xF3, "gsm"),
        (0xF8, "gsm"),  # bit 3 is reserved: ignored
    ],
)
def test_3gpp_coding_groups(data_coding: int, alphabet: str) -> None:
    message = "Hi €"
    data = gsm7.encode(message) if alphabet == "gsm" else message.encode("utf-16-be")
    assert text.decode(data, data_coding) == message


@pytest.mark.parametrize(
    ("data_coding", "reason"),
    [
        (0x02, "binary"),
        (0x04, "binary"),
        (0x14, "8-bit data"),
        (0xF4, "8-bit data"),
        (0xF7, "8-bit data"),
        (0x1C, "reserved alphabet"),
        (0x20, "compressed"),
        (0x2A, "compressed"),
        (0x80, "reserved coding group"),
        (0xB5, "reserved coding group"),
        (0x05, "JIS"),
        (0x09, "pictogram"),
        (0x0A, "ISO-2022-JP"),
        (0x0D, "JIS X 0212"),
        (0x0E, "KS C 5601"),
        (0x0B, "reserved"),
        (0x0F, "reserved"),
        (0x100, "out of range"),
        (-1, "out of range"),
    ],
)
def test_undecodable_codings(data_coding: int, reason: str) -> None:
    with pytest.raises(TextError, match=reason) as info:
        text.decode(b"abcd", data_coding)
    if data_coding >= 0:
        assert f"0x{data_coding:02X}" in str(info.value)


@pytest.mark.parametrize(
    ("data", "data_coding", "match"),
    [
        (b"abc", 0x08, "odd length"),
        (b"a\x80", 0x00, "0x80 at index 1"),
        (b"a\xc0", 0x07, "0xC0 at index 1"),  # undefined in ISO-8859-8
        (b"a\x80", 0xF0, "0x80"),
    ],
)
def test_malformed_data_raises_text_error(data: bytes, data_coding: int, match: str) -> None:
    with pytest.raises(TextError, match=match):
        text.decode(data, data_coding)


@given(st.binary(), st.integers(0, 0xFF))
def test_hostile_bytes_raise_only_text_error(data: bytes, data_coding: int) -> None:
    try:
        decoded = text.decode(data, data_coding)
    except TextError:
        return
    # Whatever decodes can be stored as UTF-8 (no lone surrogates leak out).
    decoded.encode("utf-8")
