"""Text <-> ``short_message`` bytes, by SMPP ``data_coding``.

Rules a maintainer must know:

- :func:`choose_encoding` picks GSM 7-bit when every character fits (extension table included),
  else UCS-2. Latin-1 is never chosen automatically: many handsets and SMSCs mishandle
  ``data_coding`` 0x03; it is there for an explicit request.
- UCS-2 is written as UTF-16BE: a character outside the Basic Multilingual Plane (most emoji)
  becomes a surrogate pair, two 16-bit units, which is what handsets send and display.
- GSM 7-bit text here is unpacked (one septet per octet), the form SMPP carries.
- :func:`decode` reads ``data_coding`` 0x00-0x0F by the SMPP 3.4 table (0x00, "SMSC default",
  as GSM 03.38) and 0x10-0xFF by the coding groups of 3GPP TS 23.038 section 4, which many SMSCs
  pass through from the radio side. It is lenient where data can still be read and strict
  where it cannot: see its docstring.
- Only :class:`TextError` escapes: never ``UnicodeDecodeError``/``UnicodeEncodeError``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from smpp_codec import gsm7
from smpp_codec.constants import DataCoding
from smpp_codec.errors import TextError


class Encoding(enum.Enum):
    """A way to write text into ``short_message``; ``data_coding`` is its SMPP default value."""

    GSM7 = "gsm7"
    ASCII = "ascii"  # IA5
    LATIN1 = "latin1"
    UCS2 = "ucs2"
    BINARY = "binary"  # bytes, not text

    @property
    def data_coding(self) -> int:
        return _DEFAULT_DATA_CODING[self]


_DEFAULT_DATA_CODING = {
    Encoding.GSM7: int(DataCoding.SMSC_DEFAULT),
    Encoding.ASCII: int(DataCoding.IA5),
    Encoding.LATIN1: int(DataCoding.LATIN1),
    Encoding.UCS2: int(DataCoding.UCS2),
    Encoding.BINARY: int(DataCoding.BINARY),
}


def choose_encoding(text: str) -> Encoding:
    """GSM7 if every character of ``text`` fits the GSM alphabet, else UCS2 (never Latin-1)."""
    return Encoding.GSM7 if gsm7.can_encode(text) else Encoding.UCS2


def _encode_with(text: str, codec: str, name: str) -> bytes:
    try:
        return text.encode(codec)
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        raise TextError(
            f"character {char!r} (U+{ord(char):04X}) at index {exc.start} cannot be encoded as"
            f" {name}"
        ) from None


def encode(text: str, encoding: Encoding | None = None) -> tuple[bytes, int]:
    """Encode ``text``; return the bytes and the ``data_coding`` to send with them.

    ``encoding=None`` means :func:`choose_encoding`. A lone surrogate in ``text`` cannot be
    written as UCS-2 and raises :class:`TextError`.
    """
    if not isinstance(text, str):
        raise TextError(f"text must be str, not {type(text).__name__}")
    if encoding is None:
        encoding = choose_encoding(text)
    if encoding is Encoding.GSM7:
        data = gsm7.encode(text)
    elif encoding is Encoding.ASCII:
        data = _encode_with(text, "ascii", "ASCII (IA5)")
    elif encoding is Encoding.LATIN1:
        data = _encode_with(text, "latin-1", "Latin-1")
    elif encoding is Encoding.UCS2:
        data = _encode_with(text, "utf-16-be", "UCS-2/UTF-16")
    else:
        raise TextError("Encoding.BINARY carries bytes, not text: pass the bytes themselves")
    return data, encoding.data_coding


def _decode_ucs2(data: bytes) -> str:
    if len(data) % 2:
        raise TextError(f"UCS-2 data has an odd length ({len(data)} octets)")
    # A lone surrogate (a pair cut by a sender that split it across parts) becomes U+FFFD, so
    # the result can always be stored as UTF-8.
    return data.decode("utf-16-be", "replace")


def _decode_strict(codec: str, name: str) -> Callable[[bytes], str]:
    def decode_with(data: bytes) -> str:
        try:
            return data.decode(codec)
        except UnicodeDecodeError as exc:
            raise TextError(
                f"octet 0x{data[exc.start]:02X} at index {exc.start} is not valid {name}"
            ) from None

    return decode_with


def _decode_gsm7(data: bytes) -> str:
    return gsm7.decode(data)


def _decode_ia5(data: bytes) -> str:
    # IA5 is ASCII; octets above 0x7F (SMSCs that label Latin-1 as IA5) are read as Latin-1,
    # its superset, instead of losing the message.
    return data.decode("latin-1")


def _decode_latin1(data: bytes) -> str:
    return data.decode("latin-1")


_SMPP_CODINGS: dict[int, Callable[[bytes], str] | str] = {
    0x00: _decode_gsm7,
    0x01: _decode_ia5,
    0x02: "binary (octet unspecified), not text",
    0x03: _decode_latin1,
    0x04: "binary (octet unspecified), not text",
    0x05: "JIS X 0208, which is not supported",
    0x06: _decode_strict("iso8859_5", "ISO-8859-5 (Cyrillic)"),
    0x07: _decode_strict("iso8859_8", "ISO-8859-8 (Latin/Hebrew)"),
    0x08: _decode_ucs2,
    0x09: "pictogram encoding, which is not supported",
    0x0A: "ISO-2022-JP (music codes), which is not supported",
    0x0D: "extended Kanji JIS X 0212, which is not supported",
    0x0E: "KS C 5601, which is not supported",
}

# Alphabet bits of the 3GPP TS 23.038 general data coding groups.
_GSM_ALPHABETS: dict[int, Callable[[bytes], str] | str] = {
    0b00: _decode_gsm7,
    0b01: "8-bit data, not text",
    0b10: _decode_ucs2,
    0b11: "a reserved alphabet",
}


def _decoder(data_coding: int) -> Callable[[bytes], str] | str:
    """The decoder for ``data_coding``, or why there is none."""
    if not 0 <= data_coding <= 0xFF:
        return "out of range (0..255)"
    if data_coding <= 0x0F:
        return _SMPP_CODINGS.get(data_coding, "reserved")
    group = data_coding >> 4
    if group <= 0b0111:  # general data coding (00xx) and automatic deletion (01xx) groups
        if data_coding & 0x20:
            return "compressed text, which is not supported"
        return _GSM_ALPHABETS[(data_coding >> 2) & 0b11]
    if group <= 0b1011:
        return "a reserved coding group"
    if group in (0b1100, 0b1101):  # message waiting indication, discard / store
        return _decode_gsm7
    if group == 0b1110:  # message waiting indication, store, UCS-2
        return _decode_ucs2
    # 1111: data coding / message class; bit 2 chooses 8-bit data over the default alphabet.
    return "8-bit data, not text" if data_coding & 0x04 else _decode_gsm7


def decode(data: bytes, data_coding: int) -> str:
    """Decode ``short_message`` (or ``message_payload``) bytes by their ``data_coding``.

    - 0x00 (SMSC default) is GSM 03.38, unpacked. 0x01 (IA5) reads octets above 0x7F as
      Latin-1. 0x03 Latin-1, 0x06 ISO-8859-5, 0x07 ISO-8859-8, 0x08 UTF-16BE.
    - UCS-2 of odd length raises :class:`TextError`; a lone surrogate becomes U+FFFD.
    - 0x10-0xFF follow the 3GPP TS 23.038 coding groups: 0x11 and 0xF0 are GSM 7-bit, 0x18 and
      0xE0 UCS-2, 0xF4 8-bit data.
    - Binary codings (0x02, 0x04, 8-bit data groups), compressed, reserved and unsupported
      codings raise :class:`TextError` naming the ``data_coding``.
    """
    decoder = _decoder(data_coding)
    if isinstance(decoder, str):
        raise TextError(f"data_coding 0x{data_coding:02X} is {decoder}")
    return decoder(data)
