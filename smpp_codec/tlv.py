"""Optional parameters (TLVs).

A PDU keeps its TLVs raw: ``optional_parameters`` is a tuple of ``(tag, value)`` pairs in wire
order, so unknown tags, repeated tags and zero-length TLVs survive a decode/encode round trip
byte for byte. This module adds the typed layer on top: the table of the SMPP 3.4 parameters with
their types and lengths (section 5.3.2), :func:`get` to read one by its spec name, and
:func:`build` to make the raw pairs from typed values.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable

import attrs

from .constants import CommandStatus, Tag
from .errors import EncodeError

RawTlv = tuple[int, bytes]
RawTlvs = tuple[RawTlv, ...]
TlvValue = int | str | bytes | bool


class Kind(enum.Enum):
    INT = "int"  # unsigned big-endian integer of a fixed size (``sizes``)
    CSTRING = "cstring"  # NUL-terminated; ``max_length`` includes the NUL
    OCTETS = "octets"  # opaque octets within ``min_length``..``max_length``
    FLAG = "flag"  # zero-length: presence is the value


@attrs.frozen
class TlvSpec:
    name: str
    tag: int
    kind: Kind
    sizes: tuple[int, ...] = ()  # INT: accepted octet sizes, first is the one we encode
    min_length: int = 0
    max_length: int = 0xFFFF


def _int(tag: Tag, *sizes: int) -> TlvSpec:
    return TlvSpec(tag.name.lower(), tag, Kind.INT, sizes=sizes)


def _cstr(tag: Tag, max_length: int) -> TlvSpec:
    return TlvSpec(tag.name.lower(), tag, Kind.CSTRING, min_length=1, max_length=max_length)


def _oct(tag: Tag, min_length: int = 0, max_length: int = 0xFFFF) -> TlvSpec:
    return TlvSpec(tag.name.lower(), tag, Kind.OCTETS, min_length=min_length, max_length=max_length)


#: Every SMPP 3.4 optional parameter (section 5.3.2).
SPECS: tuple[TlvSpec, ...] = (
    _int(Tag.DEST_ADDR_SUBUNIT, 1),
    _int(Tag.DEST_NETWORK_TYPE, 1),
    _int(Tag.DEST_BEARER_TYPE, 1),
    _int(Tag.DEST_TELEMATICS_ID, 2),
    _int(Tag.SOURCE_ADDR_SUBUNIT, 1),
    _int(Tag.SOURCE_NETWORK_TYPE, 1),
    _int(Tag.SOURCE_BEARER_TYPE, 1),
    # The 3.4 text gives this one 2 octets in one table and 1 in its own section: accept both.
    _int(Tag.SOURCE_TELEMATICS_ID, 1, 2),
    _int(Tag.QOS_TIME_TO_LIVE, 4),
    _int(Tag.PAYLOAD_TYPE, 1),
    _cstr(Tag.ADDITIONAL_STATUS_INFO_TEXT, 256),
    _cstr(Tag.RECEIPTED_MESSAGE_ID, 65),
    _int(Tag.MS_MSG_WAIT_FACILITIES, 1),
    _int(Tag.PRIVACY_INDICATOR, 1),
    _oct(Tag.SOURCE_SUBADDRESS, 2, 23),
    _oct(Tag.DEST_SUBADDRESS, 2, 23),
    _int(Tag.USER_MESSAGE_REFERENCE, 2),
    _int(Tag.USER_RESPONSE_CODE, 1),
    _int(Tag.SOURCE_PORT, 2),
    _int(Tag.DESTINATION_PORT, 2),
    _int(Tag.SAR_MSG_REF_NUM, 2),
    _int(Tag.LANGUAGE_INDICATOR, 1),
    _int(Tag.SAR_TOTAL_SEGMENTS, 1),
    _int(Tag.SAR_SEGMENT_SEQNUM, 1),
    _int(Tag.SC_INTERFACE_VERSION, 1),
    _int(Tag.CALLBACK_NUM_PRES_IND, 1),
    _oct(Tag.CALLBACK_NUM_ATAG, 0, 65),
    _int(Tag.NUMBER_OF_MESSAGES, 1),
    _oct(Tag.CALLBACK_NUM, 4, 19),
    _int(Tag.DPF_RESULT, 1),
    _int(Tag.SET_DPF, 1),
    _int(Tag.MS_AVAILABILITY_STATUS, 1),
    _oct(Tag.NETWORK_ERROR_CODE, 3, 3),
    _oct(Tag.MESSAGE_PAYLOAD),
    _int(Tag.DELIVERY_FAILURE_REASON, 1),
    _int(Tag.MORE_MESSAGES_TO_SEND, 1),
    _int(Tag.MESSAGE_STATE, 1),
    _oct(Tag.USSD_SERVICE_OP, 1, 1),
    _int(Tag.DISPLAY_TIME, 1),
    _int(Tag.SMS_SIGNAL, 2),
    _int(Tag.MS_VALIDITY, 1),
    TlvSpec("alert_on_message_delivery", Tag.ALERT_ON_MESSAGE_DELIVERY, Kind.FLAG, max_length=0),
    _int(Tag.ITS_REPLY_TYPE, 1),
    _oct(Tag.ITS_SESSION_INFO, 2, 2),
)

BY_TAG: dict[int, TlvSpec] = {spec.tag: spec for spec in SPECS}
BY_NAME: dict[str, TlvSpec] = {spec.name: spec for spec in SPECS}

_HEADER = struct.Struct(">HH")


def _spec(name_or_tag: str | int) -> TlvSpec | None:
    if isinstance(name_or_tag, str):
        try:
            return BY_NAME[name_or_tag]
        except KeyError:
            raise KeyError(f"no SMPP 3.4 optional parameter is named {name_or_tag!r}") from None
    return BY_TAG.get(name_or_tag)


def check_length(tag: int, length: int) -> str | None:
    """Why a TLV of this tag cannot have this value length, or None when it can.

    Zero-length values are accepted for every tag: real SMSCs send them, and they round-trip.
    """
    spec = BY_TAG.get(tag)
    if spec is None or length == 0:
        return None
    if spec.kind is Kind.INT:
        if length not in spec.sizes:
            sizes = " or ".join(map(str, spec.sizes))
            return f"{spec.name} must be {sizes} octet(s), got {length}"
    elif not spec.min_length <= length <= spec.max_length:
        return f"{spec.name} length must be {spec.min_length}..{spec.max_length}, got {length}"
    return None


def decode_value(spec: TlvSpec, value: bytes) -> TlvValue:
    """The typed value of one TLV (its length already checked by :func:`check_length`)."""
    if spec.kind is Kind.INT:
        return int.from_bytes(value, "big")
    if spec.kind is Kind.CSTRING:
        end = value.find(0)
        return (value if end < 0 else value[:end]).decode("latin-1")
    if spec.kind is Kind.FLAG:
        return True
    return value


def get(tlvs: Iterable[RawTlv], name_or_tag: str | int) -> TlvValue | None:
    """The typed value of the first TLV with this spec name or tag, or None if absent.

    Integers come back as ``int``, C-Octet strings as ``str`` (without the NUL), flags
    (``alert_on_message_delivery``) as ``True``, everything else as ``bytes``. An unknown numeric
    tag gives its raw bytes; a zero-length value of a known non-flag tag gives None (there is
    no value to type).
    """
    spec = _spec(name_or_tag)
    tag = spec.tag if spec is not None else name_or_tag
    for t, value in tlvs:
        if t == tag:
            if spec is None:
                return value
            if not value and spec.kind is not Kind.FLAG:
                return None
            return decode_value(spec, value)
    return None


def encode_value(spec: TlvSpec, value: TlvValue) -> bytes:
    """The wire bytes of one typed TLV value, checked against the spec."""
    name = spec.name
    if spec.kind is Kind.INT:
        if not isinstance(value, int) or isinstance(value, bool):
            raise EncodeError(f"{name} must be an int, got {value!r}", field=name)
        size = spec.sizes[0]
        if not 0 <= value < 1 << (8 * size):
            raise EncodeError(f"{name} must fit in {size} octet(s), got {value}", field=name,
                              command_status=CommandStatus.ESME_RINVOPTPARAMVAL)
        return value.to_bytes(size, "big")
    if spec.kind is Kind.FLAG:
        if value is not True:
            raise EncodeError(f"{name} is a flag: pass True to include it", field=name)
        return b""
    if spec.kind is Kind.CSTRING:
        if not isinstance(value, str):
            raise EncodeError(f"{name} must be a str, got {value!r}", field=name)
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError:
            raise EncodeError(f"{name} must be Latin-1 text, got {value!r}", field=name) from None
        if 0 in raw:
            raise EncodeError(f"{name} must not contain NUL", field=name)
        raw += b"\0"
    elif isinstance(value, bytes | bytearray):
        raw = bytes(value)
    else:
        raise EncodeError(f"{name} must be bytes, got {value!r}", field=name)
    problem = check_length(spec.tag, len(raw))  # the spec's length range, NUL included
    if problem is not None:
        raise EncodeError(problem, field=name, command_status=CommandStatus.ESME_RINVPARLEN)
    return raw


def build(**values: TlvValue | None) -> RawTlvs:
    """Raw TLV pairs from typed values by spec name, in the order given; None values are left
    out. ``build(sar_msg_ref_num=7, sar_total_segments=2, sar_segment_seqnum=1)``."""
    out: list[RawTlv] = []
    for name, value in values.items():
        if value is None:
            continue
        spec = _spec(name)
        assert spec is not None
        out.append((spec.tag, encode_value(spec, value)))
    return tuple(out)
