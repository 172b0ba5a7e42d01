"""Whole-PDU encoding and decoding: ``encode(pdu) -> bytes`` and ``decode(data) -> Pdu``."""

from __future__ import annotations

import struct

from .compile import HEADER, Decoder, Encoder, compile_pdu, diagnose
from .constants import RESPONSE_BIT, CommandStatus
from .errors import DecodeError, EncodeError, InvalidCommandLength, UnknownCommandId
from .pdu import PDU_CLASSES, GenericNack, Pdu, Request

HEADER_LENGTH = 16

_DECODERS: dict[int, Decoder] = {}
_ENCODERS: dict[type[Pdu], Encoder] = {}
for _cls in PDU_CLASSES.values():
    _DECODERS[_cls.command_id], _ENCODERS[_cls] = compile_pdu(_cls)
del _cls

_unpack_header = HEADER.unpack_from


def encode(pdu: Pdu) -> bytes:
    """The wire bytes of one PDU; :class:`EncodeError` names the field that breaks the spec."""
    try:
        encoder = _ENCODERS[type(pdu)]
    except KeyError:
        raise TypeError(f"not an SMPP PDU: {pdu!r}") from None
    try:
        return encoder(pdu)
    except EncodeError:
        raise
    except (ValueError, TypeError, AttributeError, OverflowError, struct.error) as exc:
        raise diagnose(pdu, exc) from exc


def decode(data: bytes) -> Pdu:
    """Decode exactly one whole PDU.

    Raises :class:`InvalidCommandLength` when ``command_length`` disagrees with ``len(data)``,
    :class:`UnknownCommandId` for a command SMPP 3.4 does not define, and
    :class:`~smpp_codec.errors.InvalidPdu` for a malformed body; nothing else.
    """
    data = bytes(data)
    if len(data) < HEADER_LENGTH:
        raise InvalidCommandLength(
            f"{len(data)} octets cannot hold a 16-octet PDU header",
            command_status=CommandStatus.ESME_RINVCMDLEN,
            framing_ok=False,
        )
    length, command_id, status, seq = _unpack_header(data)
    if length != len(data):
        raise InvalidCommandLength(
            f"command_length is {length} but {len(data)} octets were given",
            command_status=CommandStatus.ESME_RINVCMDLEN,
            command_id=command_id,
            sequence_number=seq,
            framing_ok=False,
        )
    return decode_after_header(data, command_id, status, seq)


def decode_after_header(data: bytes, command_id: int, status: int, seq: int) -> Pdu:
    """Decode a whole PDU whose header fields were already read (the framer's fast path)."""
    try:
        decoder = _DECODERS[command_id]
    except KeyError:
        raise UnknownCommandId(
            f"unknown command_id 0x{command_id:08X}",
            command_status=CommandStatus.ESME_RINVCMDID,
            command_id=command_id,
            sequence_number=seq,
        ) from None
    return decoder(data, status, seq)


def error_response(error: DecodeError) -> Pdu | None:
    """The PDU to answer a PDU that failed to decode with, or None when it must not be answered.

    A malformed request of a known command gets its own response carrying the error status
    (``submit_sm_resp`` with ``ESME_RINVSRCADR``...); an unknown command or an unreadable
    header gets ``generic_nack``; a malformed response is never answered (SMPP answers requests
    only), the caller logs it.
    """
    cid = error.command_id
    seq = error.sequence_number or 0
    if isinstance(error, InvalidCommandLength):
        # The PDU's extent is unknown, so its body was never read: SMPP 3.4 section 4.3.1
        # answers that with generic_nack, whatever the command.
        return GenericNack(sequence_number=seq, command_status=error.command_status)
    cls = PDU_CLASSES.get(cid) if cid is not None else None
    if cls is None:
        return GenericNack(sequence_number=seq, command_status=error.command_status)
    if issubclass(cls, Request):
        return cls.response_class(sequence_number=seq, command_status=error.command_status)
    if cid is not None and cid & RESPONSE_BIT:
        return None
    # outbind / alert_notification have no response of their own.
    return GenericNack(sequence_number=seq, command_status=error.command_status)
