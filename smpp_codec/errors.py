"""The codec's errors. Each carries the ``command_status`` a peer should be answered with.

Decoding bytes from a peer raises only :class:`DecodeError` (or a subclass); encoding a PDU that
breaks the specification raises :class:`EncodeError`. Both derive from :class:`SmppError`.
"""

from __future__ import annotations

from .constants import CommandStatus, status_name


class SmppError(Exception):
    """Base of every error this library raises on purpose."""

    #: The status to answer the peer with (``ESME_R...``), as a plain int.
    command_status: int = CommandStatus.ESME_RUNKNOWNERR

    def __init__(self, message: str, *, command_status: int | None = None) -> None:
        super().__init__(message)
        if command_status is not None:
            self.command_status = command_status

    @property
    def status_name(self) -> str:
        return status_name(self.command_status)


class EncodeError(SmppError, ValueError):
    """A PDU cannot be encoded as it is: a field breaks the specification.

    ``field`` names the offending attribute (``"source_addr"``, ``"optional_parameters"``...).
    """

    def __init__(self, message: str, *, field: str, command_status: int | None = None) -> None:
        super().__init__(message, command_status=command_status)
        self.field = field


class DecodeError(SmppError):
    """Bytes from a peer are not a valid PDU.

    What is known of the PDU is kept so the caller can answer it: ``command_id`` and
    ``sequence_number`` (``None`` when the header itself was unreadable). ``framing_ok`` tells
    whether the byte stream is still in step (the bad PDU was skipped whole) or lost (the stream
    must be closed: nothing after this point can be trusted).
    """

    def __init__(
        self,
        message: str,
        *,
        command_status: int,
        command_id: int | None = None,
        sequence_number: int | None = None,
        field: str | None = None,
        framing_ok: bool = True,
    ) -> None:
        super().__init__(message, command_status=command_status)
        self.command_id = command_id
        self.sequence_number = sequence_number
        self.field = field
        self.framing_ok = framing_ok


class InvalidCommandLength(DecodeError):
    """``command_length`` is below 16, above the configured maximum, or disagrees with the data.

    Answer with ``generic_nack`` / ``ESME_RINVCMDLEN`` and close the connection when
    ``framing_ok`` is false.
    """


class UnknownCommandId(DecodeError):
    """``command_id`` names no SMPP 3.4 command: answer ``generic_nack`` / ``ESME_RINVCMDID``."""


class InvalidPdu(DecodeError):
    """The body of a known command is malformed; ``command_status`` is the error to answer its
    response with (``ESME_RINVSRCADR`` for a bad ``source_addr``, ...)."""


class TextError(SmppError, ValueError):
    """Text that cannot be encoded, bytes that cannot be decoded as text, or a bad segmentation
    request (:mod:`smpp_codec.text`, :mod:`smpp_codec.gsm7`, :mod:`smpp_codec.segment`)."""


class ReceiptError(SmppError, ValueError):
    """A delivery receipt cannot be read or written (:mod:`smpp_codec.receipt`)."""


class TimeFormatError(SmppError, ValueError):
    """A string is not an SMPP time, or a value cannot be written as one
    (:mod:`smpp_codec.smpptime`)."""


class MessageIdError(SmppError, ValueError):
    """A message id cannot be normalised: empty, or too long to read as a hex number
    (:mod:`smpp_codec.message_id`)."""
