"""The GSM 7-bit default alphabet (3GPP TS 23.038, section 6.2.1) and its extension table.

SMPP normally carries GSM text *unpacked*: one septet (0x00-0x7F) per octet of ``short_message``;
the SMSC packs it for the radio. :func:`encode` and :func:`decode` work on that form.
:func:`pack` and :func:`unpack` convert to and from the packed radio form (8 septets in 7 octets,
least significant bit first), for SMSCs configured to take packed data and for TP-UD parsing.

Decisions a maintainer must know (each follows the spec unless said otherwise):

- 0x09 decodes to ``'Ç'`` (U+00C7), as the 3GPP table draws it and as handsets (Android) display
  it. The Unicode consortium's GSM0338.TXT maps it to ``'ç'`` instead, arguing language intent;
  so :func:`encode` accepts both ``'Ç'`` and ``'ç'`` for 0x09. ``'ç'`` therefore does not round
  trip: it comes back as ``'Ç'``.
- Decoding is lenient about escapes, per the notes of the extension table: an escape followed by
  a septet the extension table does not define shows that septet's default-table character
  (``1B 41`` -> ``'A'``); ``1B 1B`` (reserved for a further extension table) shows a space; a
  trailing escape with nothing after it shows a space (what a handset that ignores the escape
  displays). ``1B 0D`` (the "CR2" control) therefore decodes to ``'\\r'``.
- Form feed (U+000C) encodes as ``1B 0A`` (the extension table's page break).
- Septet values above 0x7F are not GSM 7-bit: :func:`decode` raises :class:`TextError`.
"""

from __future__ import annotations

import codecs
import functools
import re

from smpp_codec.errors import TextError

#: The escape septet that selects the extension table for the next septet.
ESCAPE = 0x1B

#: The 128 characters of the default alphabet, by septet value. 0x1B is the escape; the entry
#: here is what a lone (dangling) escape decodes to.
DEFAULT_ALPHABET = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ ÆæßÉ"  # 0x10-0x1F (Greek capitals are U+0394 etc., not look-alikes)
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

#: The extension table: septet after an escape -> character.
EXTENSION = {
    0x0A: "\x0c",  # page break, form feed
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

if len(DEFAULT_ALPHABET) != 128:  # pragma: no cover - guards an edit of the table above
    raise AssertionError("the GSM default alphabet must have 128 entries")


def _build_encode_map() -> dict[int, bytes]:
    table = {ord(char): bytes([septet]) for septet, char in enumerate(DEFAULT_ALPHABET)}
    table[ord(" ")] = b"\x20"  # not the placeholder at 0x1B
    table[ord("ç")] = b"\x09"  # see the module docstring
    for septet, char in EXTENSION.items():
        table[ord(char)] = bytes([ESCAPE, septet])
    return table


_ENCODE_MAP = _build_encode_map()
# For ASCII text (most messages): str.translate has an ASCII-to-ASCII fast path about 20 times
# faster than charmap_encode. ASCII characters outside the alphabet (controls, '`') map to a
# non-ASCII marker so that .encode("ascii") fails on them.
_ASCII_MAP = {cp: septets.decode("latin-1") for cp, septets in _ENCODE_MAP.items() if cp < 0x80}
_ASCII_MAP.update({cp: "\x80" for cp in range(0x80) if cp not in _ASCII_MAP})
# 256 entries for codecs.charmap_decode: octets 0x80-0xFF map to U+FFFE, "undefined", so the
# strict decoder raises on them.
_DECODE_TABLE = DEFAULT_ALPHABET + "\ufffe" * 128
_NOT_GSM = re.compile("[^" + re.escape("".join(chr(cp) for cp in _ENCODE_MAP)) + "]")
# An escape and the septet after it (none when the escape is the last septet).
_ESCAPE_SEQUENCE = re.compile(rb"\x1b([\x00-\x7f]?)")


def encode(text: str) -> bytes:
    """Encode ``text`` as unpacked septets, extension characters as two septets.

    Raises :class:`TextError` naming the first character outside the alphabet and its index.
    """
    if text.isascii():
        try:
            return text.translate(_ASCII_MAP).encode("ascii")
        except UnicodeEncodeError:
            pass  # not GSM: charmap_encode below finds and names the character
    try:
        return codecs.charmap_encode(text, "strict", _ENCODE_MAP)[0]
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        raise TextError(
            f"character {char!r} (U+{ord(char):04X}) at index {exc.start} is not in the GSM 7-bit"
            " alphabet"
        ) from None


def can_encode(text: str) -> bool:
    """Whether every character of ``text`` is in the default alphabet or its extension."""
    return _NOT_GSM.search(text) is None


def septet_count(text: str) -> int:
    """Number of septets ``text`` takes (an extension character takes two).

    Raises :class:`TextError` like :func:`encode` when a character does not fit.
    """
    return len(encode(text))


def decode(septets: bytes) -> str:
    """Decode unpacked septets (one per octet) to text; escapes are read leniently.

    See the module docstring for what an unknown or dangling escape becomes.
    """
    if not septets.isascii():
        index = next(i for i, octet in enumerate(septets) if octet > 0x7F)
        raise TextError(
            f"octet 0x{septets[index]:02X} at index {index} is not a GSM 7-bit septet (> 0x7F)"
        )
    if ESCAPE not in septets:
        return codecs.charmap_decode(septets, "strict", _DECODE_TABLE)[0]
    # re.split with one group alternates: plain run, septet after an escape, plain run, ...
    pieces = _ESCAPE_SEQUENCE.split(septets)
    out: list[str] = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            out.append(codecs.charmap_decode(piece, "strict", _DECODE_TABLE)[0])
        elif not piece or piece[0] == ESCAPE:
            out.append(" ")
        else:
            out.append(EXTENSION.get(piece[0]) or DEFAULT_ALPHABET[piece[0]])
    return "".join(out)


def fill_bits(udh_octets: int) -> int:
    """Padding bits after a UDH of ``udh_octets`` octets so the text starts on a septet boundary.

    6 (8-bit concatenation UDH) -> 1; 7 (16-bit concatenation UDH) -> 0; 0 (no UDH) -> 0.
    """
    return (7 - (udh_octets * 8) % 7) % 7


def septets_in(octets: int, fill_bits: int = 0) -> int:
    """How many whole septets ``octets`` packed octets hold after ``fill_bits`` padding bits.

    When the last octet has 7 spare bits this counts one septet too many (a 0x00, ``'@'``):
    packed data in SMPP has no septet count, which is why :mod:`smpp_codec.segment` never
    produces such parts (see :func:`smpp_codec.segment.split`).
    """
    return max(0, (octets * 8 - fill_bits) // 7)


def _check_fill_bits(fill: int) -> None:
    if not 0 <= fill <= 6:
        raise TextError(f"fill_bits must be 0..6, not {fill}")


@functools.lru_cache(maxsize=64)
def _masks(octets: int) -> tuple[int, int, int, int, int, int]:
    """Masks that select, in every 16/32/64-bit lane of an ``octets``-long integer, its low
    and high halves of 7/14/28 payload bits (see :func:`pack`)."""
    lanes16, lanes32, lanes64 = octets // 2, octets // 4, octets // 8

    def repeat(lane: int, width: int, count: int) -> int:
        return int.from_bytes(lane.to_bytes(width, "little") * count, "little")

    return (
        repeat(0x007F, 2, lanes16),
        repeat(0x7F << 7, 2, lanes16),
        repeat(0x3FFF, 4, lanes32),
        repeat(0x3FFF << 14, 4, lanes32),
        repeat(0x0FFFFFFF, 8, lanes64),
        repeat(0x0FFFFFFF << 28, 8, lanes64),
    )


def pack(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets (values 0x00-0x7F) 8 to 7 octets, LSB first, after ``fill_bits`` zero bits.

    The result has ``ceil((fill_bits + 7 * len(septets)) / 8)`` octets; unused high bits of the
    last octet are zero.

    How: the septets, read as one little-endian integer, sit 8 bits apart. Three mask-and-shift
    steps close the gaps lane by lane (two 7-bit values per 16-bit lane become 14 bits, two of
    those per 32-bit lane 28 bits, two per 64-bit lane 56 bits), then deleting every eighth
    octet joins the 7-octet groups. This is a handful of big-integer operations per message
    instead of a Python loop per septet.
    """
    _check_fill_bits(fill_bits)
    if not septets.isascii():
        raise TextError("a septet is above 0x7F: not GSM 7-bit data")
    count = len(septets)
    padded = septets + bytes(-count % 8)
    a16, b16, a32, b32, a64, b64 = _masks(len(padded))
    x = int.from_bytes(padded, "little")
    x = (x & a16) | ((x >> 1) & b16)
    x = (x & a32) | ((x >> 2) & b32)
    x = (x & a64) | ((x >> 4) & b64)
    grouped = bytearray(x.to_bytes(len(padded), "little"))
    del grouped[7::8]  # the empty top octet of each 64-bit lane
    size = (fill_bits + 7 * count + 7) // 8
    if fill_bits:
        shifted = int.from_bytes(grouped, "little") << fill_bits
        return shifted.to_bytes(len(grouped) + 1, "little")[:size]
    return bytes(grouped[:size])


def unpack(data: bytes, count: int, fill_bits: int = 0) -> bytes:
    """Extract ``count`` septets from packed ``data``, skipping ``fill_bits`` leading bits.

    ``count`` is needed because the packed length alone is ambiguous (see :func:`septets_in`).
    Raises :class:`TextError` when ``data`` is too short for ``count`` septets.
    """
    _check_fill_bits(fill_bits)
    if count < 0:
        raise TextError(f"septet count must not be negative, not {count}")
    if count and fill_bits + 7 * count > 8 * len(data):
        raise TextError(
            f"{len(data)} octets hold fewer than {count} septets after {fill_bits} fill bits"
        )
    groups = (count + 7) // 8
    bits = int.from_bytes(data, "little") >> fill_bits
    bits &= (1 << (7 * count)) - 1
    grouped = bits.to_bytes(7 * groups, "little")
    spread = bytearray(8 * groups)
    for i in range(7):  # re-insert the empty top octet of each 64-bit lane
        spread[i::8] = grouped[i::7]
    a16, b16, a32, b32, a64, b64 = _masks(8 * groups)
    x = int.from_bytes(spread, "little")
    x = (x & a64) | ((x & b64) << 4)
    x = (x & a32) | ((x & b32) << 2)
    x = (x & a16) | ((x & b16) << 1)
    return x.to_bytes(8 * groups, "little")[:count]
