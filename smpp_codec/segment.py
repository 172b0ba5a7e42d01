"""Split a message into SMS parts, read concatenation info back, and reassemble parts.

Sizes. One SMS carries 140 octets of user data (``max_octets``): 160 GSM 7-bit septets, or 140
octets of UCS-2 (70 UTF-16 units) or 8-bit data. A message that fits is sent as one plain part
in every mode. Longer messages are split:

=========  ==========  =================  ============================
mode       header      GSM 7-bit septets  UCS-2 / 8-bit octets
=========  ==========  =================  ============================
UDH8       6 octets    153                134 / 134
UDH16      7 octets    152                132 / 133
SAR        TLVs        160                140 / 140
PAYLOAD    TLV         whole message in one ``message_payload`` (at most 65535 octets)
=========  ==========  =================  ============================

(UCS-2 with UDH16 gets 132, not 133: a part holds whole 16-bit units. 8-bit data gets all 133.)

A part never ends inside a GSM escape sequence (0x1B and its character) nor between the two
halves of a UTF-16 surrogate pair: such a part is one unit shorter and the next one starts with
the whole sequence.

Packed GSM 7-bit (``gsm7_packed=True``). The text starts after ``gsm7.fill_bits(udh)`` padding
bits so it begins on a septet boundary. SMPP gives the length in octets, not septets, so
whoever unpacks a part counts ``gsm7.septets_in(octets, fill)`` septets; when the last octet
has 7 spare bits that count includes a phantom ``'@'``. So: a part that is not the last is made
one septet shorter instead (never ambiguous), and a last part that would end so is padded with a
CR, the padding 3GPP TS 23.038 section 6.1.2.3.1 prescribes for this case (a trailing CR shows as
nothing). Unpacked septets (the default) are what SMPP normally carries and have none of this.

Reassembly. :func:`concat_info` reads the concatenation header of one received PDU;
:class:`Reassembler` collects parts by a key the caller chooses and returns the joined payload.
Unpacked GSM 7-bit, UCS-2 and 8-bit payloads are joined as bytes and decoded as a whole (so a
surrogate pair a sender split across parts is whole again). Packed GSM 7-bit parts cannot be
joined as bytes: unpack each part first (``gsm7.unpack(info.payload,
gsm7.septets_in(len(info.payload), fill), fill)`` with ``fill = gsm7.fill_bits(udh_octets)``,
``udh_octets = len(short_message) - len(info.payload)``), give the reassembler that, and decode
the joined septets.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Hashable, Sequence

import attrs

from smpp_codec import gsm7
from smpp_codec.constants import EsmClass, Tag
from smpp_codec.errors import TextError
from smpp_codec.text import Encoding, choose_encoding
from smpp_codec.text import encode as encode_text

#: IEI of the concatenated short message IE with an 8-bit reference (3GPP TS 23.040 9.2.3.24.1).
IEI_CONCAT_8BIT = 0x00
#: IEI of the concatenated short message IE with a 16-bit reference (3GPP TS 23.040 9.2.3.24.8).
IEI_CONCAT_16BIT = 0x08

#: Most octets of user data (UDH included) one SMS carries over the air.
SMS_OCTETS = 140
#: Smallest ``max_octets`` accepted: room for a UDH16 and a surrogate pair, with some to spare.
MIN_OCTETS = 16
#: Most parts a concatenated message can have (the part counters are one octet).
MAX_PARTS = 255
#: Most octets a ``message_payload`` TLV holds (its length field is 16 bits).
MAX_PAYLOAD_OCTETS = 0xFFFF

_CR = 0x0D


class SplitMode(enum.Enum):
    """How the parts of a long message say they belong together."""

    UDH8 = "udh8"  # UDH with IE 0x00: 8-bit reference
    UDH16 = "udh16"  # UDH with IE 0x08: 16-bit reference
    SAR = "sar"  # sar_msg_ref_num / sar_total_segments / sar_segment_seqnum TLVs
    PAYLOAD = "payload"  # the whole message in one message_payload TLV, never split


_UDH_OCTETS = {SplitMode.UDH8: 6, SplitMode.UDH16: 7, SplitMode.SAR: 0, SplitMode.PAYLOAD: 0}
_MAX_REFERENCE = {
    SplitMode.UDH8: 0xFF,
    SplitMode.UDH16: 0xFFFF,
    SplitMode.SAR: 0xFFFF,
    SplitMode.PAYLOAD: 0xFFFF,
}


@attrs.frozen
class Segment:
    """One PDU's worth of a message, ready for the PDU layer.

    ``short_message`` includes the UDH in the UDH modes and is empty in PAYLOAD mode;
    ``esm_class_flags`` (``EsmClass.UDHI`` when a UDH is present) is ORed into the PDU's
    ``esm_class``; ``tlvs`` are raw ``(tag, value)`` pairs, values big-endian as on the wire.
    """

    short_message: bytes
    data_coding: int
    esm_class_flags: int
    tlvs: tuple[tuple[int, bytes], ...]
    part_number: int
    total_parts: int


@attrs.frozen
class PartCount:
    """What :func:`split` would produce, without building it.

    ``units`` are septets for GSM 7-bit (an extension character counts two), octets otherwise;
    ``characters`` are code points of the text (octets for bytes); ``per_part`` is how many
    units one part holds (a part may hold fewer, to keep an escape or surrogate pair whole).
    """

    encoding: Encoding
    units: int
    characters: int
    parts: int
    per_part: int


@attrs.frozen
class InformationElement:
    """One information element of a user data header."""

    iei: int
    data: bytes


@attrs.frozen
class ConcatInfo:
    """Which part of which concatenated message a PDU carries; ``payload`` is without UDH."""

    reference: int
    total: int
    number: int
    payload: bytes


def _units(message: str | bytes, encoding: Encoding | None) -> tuple[Encoding, bytes, int]:
    """The encoding, encoded units and data_coding of ``message``."""
    if isinstance(message, bytes | bytearray):
        if encoding not in (None, Encoding.BINARY):
            raise TextError(f"bytes are binary data: they cannot be sent as {encoding.name}")
        return Encoding.BINARY, bytes(message), Encoding.BINARY.data_coding
    if encoding is Encoding.BINARY:
        raise TextError("Encoding.BINARY carries bytes, not text: pass the bytes themselves")
    chosen = choose_encoding(message) if encoding is None else encoding
    data, data_coding = encode_text(message, chosen)
    return chosen, data, data_coding


def _capacity(encoding: Encoding, max_octets: int, udh_octets: int) -> int:
    """Units of one part: ``max_octets`` of user data less the UDH (and, for GSM 7-bit, the
    fill bits that align the text to a septet boundary, packed or not: the SMSC packs too)."""
    octets = max_octets - udh_octets
    if encoding is Encoding.GSM7:
        return (octets * 8 - gsm7.fill_bits(udh_octets)) // 7
    if encoding is Encoding.UCS2:
        return octets // 2 * 2
    return octets


def _spare_bits(header_bits: int, septets: int) -> int:
    """Unused bits in the last octet of a packed part."""
    return -(header_bits + 7 * septets) % 8


@attrs.frozen
class _Plan:
    chunks: list[bytes]
    per_part: int
    udh_octets: int  # 0 when the message goes as one plain part


def _part_end(
    units: bytes, start: int, end: int, encoding: Encoding, packed_header_bits: int | None
) -> int:
    """Move ``end`` back so the part ``units[start:end]`` splits no sequence."""
    if encoding is Encoding.GSM7:
        # Back off while the part would end on an escape, or (packed) with 7 spare bits.
        while units[end - 1] == gsm7.ESCAPE or (
            packed_header_bits is not None and _spare_bits(packed_header_bits, end - start) == 7
        ):
            end -= 1
    elif encoding is Encoding.UCS2 and 0xD8 <= units[end - 2] <= 0xDB:
        end -= 2  # the part would end with a high surrogate
    if end <= start:  # pragma: no cover - MIN_OCTETS leaves room for any sequence
        raise AssertionError("a part must hold at least one whole character")
    return end


def _plan(
    encoding: Encoding, units: bytes, mode: SplitMode, packed: bool, max_octets: int
) -> _Plan:
    if not MIN_OCTETS <= max_octets <= SMS_OCTETS:
        raise TextError(f"max_octets must be {MIN_OCTETS}..{SMS_OCTETS}, not {max_octets}")
    gsm_packed = packed and encoding is Encoding.GSM7
    if mode is SplitMode.PAYLOAD:
        if gsm_packed:
            per_part = MAX_PAYLOAD_OCTETS * 8 // 7
        elif encoding is Encoding.UCS2:
            per_part = MAX_PAYLOAD_OCTETS // 2 * 2
        else:
            per_part = MAX_PAYLOAD_OCTETS
        if len(units) > per_part:
            raise TextError(
                f"message needs {len(units)} units; one message_payload holds {per_part}"
            )
        return _Plan([units], per_part, 0)
    single = _capacity(encoding, max_octets, 0)
    if len(units) <= single:
        return _Plan([units], single, 0)
    udh_octets = _UDH_OCTETS[mode]
    per_part = _capacity(encoding, max_octets, udh_octets)
    if len(units) > MAX_PARTS * per_part:
        raise TextError(f"message needs more than {MAX_PARTS} parts of {per_part} units")
    header_bits = udh_octets * 8 + gsm7.fill_bits(udh_octets) if gsm_packed else None
    chunks: list[bytes] = []
    start = 0
    while start < len(units):
        end = start + per_part
        if end >= len(units):
            end = len(units)
        else:
            end = _part_end(units, start, end, encoding, header_bits)
        chunks.append(units[start:end])
        start = end
    if len(chunks) > MAX_PARTS:
        raise TextError(f"message needs {len(chunks)} parts; at most {MAX_PARTS} are possible")
    return _Plan(chunks, per_part, udh_octets)


def _check_reference(mode: SplitMode, reference: int) -> None:
    top = _MAX_REFERENCE[mode]
    if not 0 <= reference <= top:
        raise TextError(f"reference for {mode.name} must be 0..{top}, not {reference}")


def _pack_part(septets: bytes, udh_octets: int) -> bytes:
    fill = gsm7.fill_bits(udh_octets)
    if _spare_bits(udh_octets * 8 + fill, len(septets)) == 7:
        septets += bytes([_CR])  # see the module docstring
    return gsm7.pack(septets, fill)


def split(
    text: str | bytes,
    *,
    encoding: Encoding | None = None,
    mode: SplitMode = SplitMode.UDH8,
    reference: int = 0,
    gsm7_packed: bool = False,
    max_octets: int = SMS_OCTETS,
) -> list[Segment]:
    """Split a message into the parts to submit, in order.

    ``text`` as ``bytes`` is binary data (``Encoding.BINARY``); for ``str``, ``encoding=None``
    chooses GSM 7-bit or UCS-2 (:func:`smpp_codec.text.choose_encoding`). ``reference`` is the
    concatenation reference (0..255 for UDH8, 0..65535 otherwise): choosing it is the caller's
    job, so the same input always gives the same parts. ``max_octets`` is the user data one SMS
    carries (16..140). Sizes and rules are in the module docstring.

    Raises :class:`TextError` when the text does not fit the encoding, the reference is out of
    range, or the message needs more than 255 parts (or more than one ``message_payload``).
    """
    _check_reference(mode, reference)
    chosen, units, data_coding = _units(text, encoding)
    packed = gsm7_packed and chosen is Encoding.GSM7
    plan = _plan(chosen, units, mode, packed, max_octets)
    total = len(plan.chunks)
    segments = []
    for number, chunk in enumerate(plan.chunks, start=1):
        payload = _pack_part(chunk, plan.udh_octets) if packed else chunk
        short_message = payload
        flags = 0
        tlvs: tuple[tuple[int, bytes], ...] = ()
        if mode is SplitMode.PAYLOAD:
            short_message = b""
            tlvs = ((int(Tag.MESSAGE_PAYLOAD), payload),)
        elif total > 1 and mode is SplitMode.UDH8:
            short_message = bytes([5, IEI_CONCAT_8BIT, 3, reference, total, number]) + payload
            flags = int(EsmClass.UDHI)
        elif total > 1 and mode is SplitMode.UDH16:
            ref = reference.to_bytes(2, "big")
            short_message = bytes([6, IEI_CONCAT_16BIT, 4, *ref, total, number]) + payload
            flags = int(EsmClass.UDHI)
        elif total > 1:  # SAR
            tlvs = (
                (int(Tag.SAR_MSG_REF_NUM), reference.to_bytes(2, "big")),
                (int(Tag.SAR_TOTAL_SEGMENTS), bytes([total])),
                (int(Tag.SAR_SEGMENT_SEQNUM), bytes([number])),
            )
        segments.append(Segment(short_message, data_coding, flags, tlvs, number, total))
    return segments


def count(
    text: str | bytes,
    *,
    encoding: Encoding | None = None,
    mode: SplitMode = SplitMode.UDH8,
    gsm7_packed: bool = False,
    max_octets: int = SMS_OCTETS,
) -> PartCount:
    """How :func:`split` would encode and cut ``text``; ``parts`` equals ``len(split(...))``."""
    chosen, units, _ = _units(text, encoding)
    plan = _plan(chosen, units, mode, gsm7_packed and chosen is Encoding.GSM7, max_octets)
    return PartCount(chosen, len(units), len(text), len(plan.chunks), plan.per_part)


def parse_udh(short_message: bytes) -> tuple[tuple[InformationElement, ...], bytes]:
    """Split ``short_message`` (which starts with a UDH) into its IEs and the rest.

    Raises :class:`TextError` when the UDH length or an IE length runs past its end.
    """
    if not short_message:
        raise TextError("short_message is empty: there is no user data header")
    udh_length = short_message[0]
    if 1 + udh_length > len(short_message):
        raise TextError(
            f"UDH length {udh_length} runs past the {len(short_message)}-octet short_message"
        )
    header = short_message[1 : 1 + udh_length]
    elements = []
    i = 0
    while i < udh_length:
        if i + 2 > udh_length:
            raise TextError(f"UDH ends inside the header of an IE at offset {i + 1}")
        iei, length = header[i], header[i + 1]
        if i + 2 + length > udh_length:
            raise TextError(
                f"IE 0x{iei:02X} at offset {i + 1} has length {length}, past the UDH end"
            )
        elements.append(InformationElement(iei, header[i + 2 : i + 2 + length]))
        i += 2 + length
    return tuple(elements), short_message[1 + udh_length :]


def _checked(reference: int, total: int, number: int, payload: bytes) -> ConcatInfo:
    if total == 0 or number == 0 or number > total:
        raise TextError(f"invalid concatenation: part {number} of {total}")
    return ConcatInfo(reference, total, number, payload)


_SAR_TAGS = {Tag.SAR_MSG_REF_NUM: 2, Tag.SAR_TOTAL_SEGMENTS: 1, Tag.SAR_SEGMENT_SEQNUM: 1}


def concat_info(
    short_message: bytes, esm_class: int, tlvs: Sequence[tuple[int, bytes]]
) -> ConcatInfo | None:
    """Concatenation info of a received PDU, or None when it is a message on its own.

    Looks at a UDH concatenation IE (0x00 or 0x08) when ``esm_class`` has UDHI, else at the SAR
    TLVs. When ``short_message`` is empty the ``message_payload`` TLV, if any, is the body.
    ``payload`` is the body without its UDH. A UDH without a concatenation IE and no SAR TLVs
    gives None (the caller strips that UDH with :func:`parse_udh` if it wants the text).

    Raises :class:`TextError` on a malformed UDH, IE or SAR TLV, or part numbers that do not
    make sense (total 0, number 0 or above total).
    """
    body = short_message
    if not body:
        body = next((value for tag, value in tlvs if tag == Tag.MESSAGE_PAYLOAD), b"")
    payload = body
    if esm_class & EsmClass.UDHI:
        elements, payload = parse_udh(body)
        for ie in elements:
            if ie.iei == IEI_CONCAT_8BIT:
                if len(ie.data) != 3:
                    raise TextError(f"concatenation IE 0x00 has {len(ie.data)} octets, not 3")
                return _checked(ie.data[0], ie.data[1], ie.data[2], payload)
            if ie.iei == IEI_CONCAT_16BIT:
                if len(ie.data) != 4:
                    raise TextError(f"concatenation IE 0x08 has {len(ie.data)} octets, not 4")
                reference = int.from_bytes(ie.data[:2], "big")
                return _checked(reference, ie.data[2], ie.data[3], payload)
    sar = {Tag(tag): value for tag, value in tlvs if tag in _SAR_TAGS}
    if not sar:
        return None
    for tag, size in _SAR_TAGS.items():
        if tag not in sar:
            raise TextError(f"SAR TLVs are incomplete: {tag.name.lower()} is missing")
        if len(sar[tag]) != size:
            raise TextError(f"{tag.name.lower()} has {len(sar[tag])} octets, not {size}")
    return _checked(
        int.from_bytes(sar[Tag.SAR_MSG_REF_NUM], "big"),
        sar[Tag.SAR_TOTAL_SEGMENTS][0],
        sar[Tag.SAR_SEGMENT_SEQNUM][0],
        payload,
    )


@attrs.define
class _Pending:
    reference: int
    total: int
    first_seen: float
    parts: dict[int, bytes]


#: What :meth:`Reassembler.expire` reports per dropped message: the caller's key, the
#: concatenation reference, and the parts received (part number -> payload).
Dropped = tuple[Hashable, int, dict[int, bytes]]


class Reassembler:
    """Collects the parts of concatenated messages; sans-IO, time is passed in.

    The key says which parts belong together; it is the caller's choice. Recommended:
    ``(source_addr, destination_addr, reference, total)`` (with the ESME/connection if several
    SMSCs feed one reassembler): the reference alone is only 8 or 16 bits and is reused.

    Memory is bounded: at most ``max_pending`` incomplete messages are held; one more evicts the
    oldest. Evicted messages, like expired ones, are returned by the next :meth:`expire` call
    (at most ``max_pending`` such reports are kept between calls) and counted in ``evicted``.
    """

    def __init__(self, max_pending: int = 4096) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, not {max_pending}")
        self.max_pending = max_pending
        self._pending: dict[Hashable, _Pending] = {}
        self._evicted: collections.deque[Dropped] = collections.deque(maxlen=max_pending)
        #: Messages returned whole.
        self.completed = 0
        #: Parts ignored because that part of that message had already arrived.
        self.duplicates = 0
        #: Incomplete messages dropped by :meth:`expire` for age.
        self.expired = 0
        #: Incomplete messages dropped to stay within ``max_pending``.
        self.evicted = 0

    @property
    def pending(self) -> int:
        """Incomplete messages held now."""
        return len(self._pending)

    def add(self, key: Hashable, info: ConcatInfo, now: float) -> bytes | None:
        """Add a part; return the joined payload (parts in order) when it completes a message.

        A part already received under ``key`` is ignored (counted in ``duplicates``). A part
        whose reference or total differs from the message pending under the same key raises
        :class:`TextError` and changes nothing (the key should include both).
        """
        if info.total == 1:
            self.completed += 1
            return info.payload
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self.max_pending:
                oldest = next(iter(self._pending))
                dropped = self._pending.pop(oldest)
                self._evicted.append((oldest, dropped.reference, dict(dropped.parts)))
                self.evicted += 1
            pending = _Pending(info.reference, info.total, now, {})
            self._pending[key] = pending
        elif (pending.reference, pending.total) != (info.reference, info.total):
            raise TextError(
                f"part says reference {info.reference}, {info.total} parts, but the message "
                f"pending under this key has reference {pending.reference}, {pending.total} parts"
            )
        if info.number in pending.parts:
            self.duplicates += 1
            return None
        pending.parts[info.number] = info.payload
        if len(pending.parts) < pending.total:
            return None
        del self._pending[key]
        self.completed += 1
        return b"".join(pending.parts[n] for n in range(1, pending.total + 1))

    def expire(self, now: float, timeout: float) -> list[Dropped]:
        """Drop incomplete messages whose first part came more than ``timeout`` before ``now``.

        Returns them, after those evicted since the last call, so the caller can log or store
        what arrived.
        """
        dropped = list(self._evicted)
        self._evicted.clear()
        for key, pending in list(self._pending.items()):
            if now - pending.first_seen > timeout:
                del self._pending[key]
                self.expired += 1
                dropped.append((key, pending.reference, dict(pending.parts)))
        return dropped
