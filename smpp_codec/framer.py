"""Incremental framing of an SMPP byte stream (sans-IO).

Feed bytes as they arrive, in any chunking; take whole PDUs out::

    framer = Framer()
    framer.feed(chunk)
    while (pdu := framer.next_pdu()) is not NEED_DATA:
        handle(pdu)

``command_length`` is checked as soon as the 16-octet header is in, before a body is buffered: a
length below 16 or above ``max_command_length`` raises
:class:`~smpp_codec.errors.InvalidCommandLength` and the framer is broken from then on (the
stream cannot be re-synchronised; answer ``generic_nack`` and close). A whole PDU with an
unknown command or a malformed body raises its :class:`~smpp_codec.errors.DecodeError` with
``framing_ok=True``: that PDU is consumed and the next call carries on with the next one.
"""

from __future__ import annotations

import enum
import struct
from typing import Final, Literal

from .codec import HEADER_LENGTH, decode_after_header
from .constants import CommandStatus
from .errors import InvalidCommandLength
from .pdu import Pdu

_HEADER = struct.Struct(">IIII")


class _NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


#: Returned by :meth:`Framer.next_pdu` when the buffer holds no whole PDU.
NEED_DATA: Final = _NeedData.NEED_DATA
NeedData = Literal[_NeedData.NEED_DATA]

#: Default cap on one PDU. The largest SMPP 3.4 PDU that carries a 64 KiB message_payload is a
#: little over 64 KiB; anything bigger from a peer is garbage or an attack.
DEFAULT_MAX_COMMAND_LENGTH: Final = 70_000


class Framer:
    """Splits a byte stream into PDUs; holds at most one partial PDU in its buffer."""

    def __init__(self, max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH) -> None:
        if max_command_length < HEADER_LENGTH:
            raise ValueError(f"max_command_length must be >= 16, got {max_command_length}")
        self.max_command_length = max_command_length
        self._buffer = bytearray()
        self._broken: InvalidCommandLength | None = None

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as PDUs."""
        return len(self._buffer)

    @property
    def broken(self) -> bool:
        """True once a bad ``command_length`` was seen: the stream is out of step for good."""
        return self._broken is not None

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_pdu(self) -> Pdu | NeedData:
        """The next whole PDU, or ``NEED_DATA``; raises the codec's errors (see module doc)."""
        if self._broken is not None:
            raise self._broken
        buf = self._buffer
        if len(buf) < HEADER_LENGTH:
            return NEED_DATA
        length, command_id, status, seq = _HEADER.unpack_from(buf)
        if not HEADER_LENGTH <= length <= self.max_command_length:
            self._broken = InvalidCommandLength(
                f"command_length {length} is outside 16..{self.max_command_length}",
                command_status=CommandStatus.ESME_RINVCMDLEN,
                command_id=command_id,
                sequence_number=seq,
                framing_ok=False,
            )
            raise self._broken
        if len(buf) < length:
            return NEED_DATA
        data = bytes(buf[:length])
        del buf[:length]
        return decode_after_header(data, command_id, status, seq)

    def __iter__(self) -> Framer:
        return self

    def __next__(self) -> Pdu:
        pdu = self.next_pdu()
        if pdu is NEED_DATA:
            raise StopIteration
        return pdu
