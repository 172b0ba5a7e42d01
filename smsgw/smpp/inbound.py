"""What the SMSC sends the application: deliver_sm, data_sm, alert_notification.

The application receives :class:`Inbound` objects from a bounded channel and answers each with
:meth:`Inbound.reply` once it has decided (stored the message, say): the SMSC sees the answer
only then. An inbound PDU left unanswered for ``inbound_answer_timeout`` is answered by the
client with ``inbound_default_status`` (a temporary error by default, so the SMSC redelivers);
``reply`` then returns False and the application knows the SMSC will send it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from smpp_codec import AlertNotification, DataSm, DeliverSm, Pdu
from smpp_codec.receipt import is_receipt

InboundPdu = DeliverSm | DataSm | AlertNotification
Answerer = Callable[["Inbound", Pdu], Awaitable[bool]]


class Inbound:
    """One PDU from the SMSC for the application."""

    __slots__ = ("_answerer", "answered", "deadline", "pdu", "received_at")

    def __init__(
        self, pdu: InboundPdu, *, received_at: float, deadline: float, answerer: Answerer
    ) -> None:
        self.pdu = pdu
        self.received_at = received_at
        #: When the client answers with the default status if the application has not.
        self.deadline = deadline
        #: True once an answer was queued (by the application or by the default).
        self.answered = not self.needs_answer
        self._answerer = answerer

    @property
    def needs_answer(self) -> bool:
        """alert_notification has no response; deliver_sm and data_sm do."""
        return not isinstance(self.pdu, AlertNotification)

    @property
    def is_receipt(self) -> bool:
        """A delivery receipt or notification (see :func:`smpp_codec.receipt.is_receipt`)."""
        if isinstance(self.pdu, AlertNotification):
            return False
        return is_receipt(self.pdu)

    async def reply(self, command_status: int = 0, **fields: Any) -> bool:
        """Answer the SMSC (``ESME_ROK`` by default, or the status the application chose).

        Returns False when nothing was sent: already answered (by the default, after
        ``inbound_answer_timeout``), or the connection is gone (the SMSC will redeliver).
        """
        if self.answered or isinstance(self.pdu, AlertNotification):
            return False
        return await self._answerer(self, self.pdu.response(command_status, **fields))

    def __repr__(self) -> str:
        return f"Inbound({type(self.pdu).__name__} #{self.pdu.sequence_number})"
