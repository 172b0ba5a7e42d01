"""Typed errors of the SMPP client, each saying whether trying again can help.

Every error has ``retryable`` (another attempt, maybe on another connection, may succeed) and
``sent`` (the request reached the wire, so the SMSC may have acted on it: a retry can make a
duplicate). The gateway above decides what to do with a message from these two facts and the
SMSC's ``command_status`` where there is one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from smpp_codec import CommandStatus, Pdu, status_name

S = CommandStatus

#: Statuses that mean "slow down": the rate controller reacts to them.
THROTTLING: Final = frozenset({S.ESME_RTHROTTLED, S.ESME_RMSGQFUL})

#: Statuses of a rejected request that may succeed if sent again later (the SMSC's trouble, not
#: the message's). Everything else is taken as a verdict on the message itself.
TRANSIENT: Final = frozenset(
    {
        S.ESME_RSYSERR,
        S.ESME_RX_T_APPN,
        S.ESME_RSUBMITFAIL,
        S.ESME_RDELIVERYFAILURE,
        S.ESME_RUNKNOWNERR,
        S.ESME_RINVBNDSTS,  # the session is not in a state to take it: reconnect and resend
    }
)

#: Bind statuses that blame the credentials or the account: retrying soon will not help.
BAD_CREDENTIALS: Final = frozenset({S.ESME_RINVPASWD, S.ESME_RINVSYSID, S.ESME_RINVSYSTYP})


class TlsHandshakeError(OSError):
    """The TLS handshake with the SMSC failed; the message says why (the certificate could
    not be verified, the peer is not speaking TLS, ...). An ``OSError``: a failed connection
    attempt like any other, tried again after the backoff."""


class SmppClientError(Exception):
    """Base of the client's errors."""

    retryable: bool = True
    sent: bool = False


class SessionClosed(SmppClientError):
    """The session is closing or closed: the request was not sent."""


class ConnectionLost(SmppClientError):
    """The link ended while the request was outstanding (or before it could be sent).

    ``sent`` tells which: when True the SMSC may have accepted it.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class RequestTimeout(SmppClientError):
    """No answer in time. ``sent`` is False when the time ran out before the request left
    (waiting for a bind or a window slot)."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class InvalidResponse(SmppClientError):
    """The SMSC answered with a response we could not decode; it may have accepted the request."""

    sent = True


class _StatusError(SmppClientError):
    sent = True

    def __init__(self, command_status: int, response: Pdu | None, message: str = "") -> None:
        self.command_status = command_status
        self.response = response
        super().__init__(message or status_name(command_status))

    @property
    def status_name(self) -> str:
        return status_name(self.command_status)


class ThrottledError(_StatusError):
    """ESME_RTHROTTLED or ESME_RMSGQFUL: the SMSC wants us slower; the request was not taken."""

    retryable = True


class SubmitRejected(_StatusError):
    """The SMSC answered the request with an error status (or a generic_nack).

    ``retryable`` is True for statuses in :data:`TRANSIENT`.
    """

    def __init__(self, command_status: int, response: Pdu | None, message: str = "") -> None:
        super().__init__(command_status, response, message)
        self.retryable = command_status in TRANSIENT


class BindError(SmppClientError):
    """The SMSC refused the bind (``command_status`` is its answer; None when it never answered).

    ``permanent`` is True when the credentials or account are at fault
    (:data:`BAD_CREDENTIALS`): the supervisor then waits its longest delay before trying again.
    """

    sent = True

    def __init__(self, message: str, *, command_status: int | None) -> None:
        self.command_status = command_status
        self.permanent = command_status in BAD_CREDENTIALS
        self.retryable = not self.permanent
        name = "no answer" if command_status is None else status_name(command_status)
        super().__init__(f"{message} ({name})")


def error_for_status(command_status: int, response: Pdu | None) -> SmppClientError:
    """The error a request answered with ``command_status`` (not ESME_ROK) raises."""
    if command_status in THROTTLING:
        return ThrottledError(command_status, response)
    return SubmitRejected(command_status, response)


@contextlib.contextmanager
def ungrouped() -> Iterator[None]:
    """Around a nursery that runs a context manager's block: what the block raised comes out
    as itself, not in the exception group the nursery makes of it. Several exceptions at once
    (the block's and a task's) stay a group; so does a group the block raised itself."""
    try:
        yield
    except ExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        (lone,) = group.exceptions
        raise lone from lone.__cause__
