"""Delivery receipts: what one says (:func:`receipt_pdu`), and where receipts wait
(:class:`ReceiptSchedule` until their time, :class:`ReceiptQueues` until a receiver takes them).

A receipt is sent once by default. If its deliver_sm is answered with an error, or not at all,
it counts as failed and is not resent: the simulator plays an SMSC that gives up, which is what
a gateway must survive. With ``ReceiptConfig.attempts`` above 1 a failed receipt is sent again
after ``retry_delay`` (as real SMSCs do), until that many sends. A receipt that comes due while
no receiver of its system_id is bound waits in the queue (store and forward, as SMSCs do) until
one binds.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from collections import deque
from collections.abc import Callable
from datetime import datetime

import attrs

from smpp_codec import segment, text, tlv
from smpp_codec.constants import EsmClass, RegisteredDelivery
from smpp_codec.errors import TextError
from smpp_codec.pdu import DeliverSm
from smpp_codec.receipt import TEXT_LIMIT, DeliveryReceipt, format_receipt

from .config import ReceiptConfig
from .store import Address, Message
from .values import OUTCOMES

#: Network type of the network_error_code TLV: GSM (SMPP 3.4 section 5.3.2.31).
_GSM_NETWORK = 3


@attrs.define(eq=False)
class ReceiptJob:
    """One receipt to send: for ``message``, about ``destination``, at ``due``.

    ``on_written`` (a held submit_sm_resp, for receipt-before-response) is called exactly once,
    through :meth:`release`: when the receipt has been written, or when it will not be soon
    (no receiver bound, cancelled, dropped).
    """

    message: Message
    destination: Address
    due: float
    on_written: Callable[[], None] | None = None
    #: Sends so far (a failed receipt may be sent again: ``ReceiptConfig.attempts``).
    sends: int = 0
    #: When a failed receipt may be sent again (None: at ``due``).
    retry_at: float | None = None

    @property
    def ready_at(self) -> float:
        """When it may be sent (next)."""
        return self.due if self.retry_at is None else self.retry_at

    @property
    def system_id(self) -> str:
        return self.message.system_id

    def release(self) -> None:
        callback, self.on_written = self.on_written, None
        if callback is not None:
            callback()

    def wanted(self) -> bool:
        """Whether the message (still) asks for this receipt.

        Not when it was cancelled, nor when replace_sm moved its final time (a new job was made
        for the new time), nor when replace_sm changed registered_delivery to ask for none.
        """
        if self.message.cancelled_at is not None or self.due != self.message.final_at:
            return False
        return wants_receipt(self.message.registered_delivery, self.message.outcome)


def wants_receipt(registered_delivery: int, outcome: str) -> bool:
    """SMPP 3.4 section 5.2.17: bits 1-0 are 01 (receipt on success or failure) or 10 (on
    failure only); 00 asks for none and 11 is reserved (none)."""
    kind = registered_delivery & 0x03
    if kind == RegisteredDelivery.SMSC_RECEIPT_ON_SUCCESS_OR_FAILURE:
        return True
    return kind == RegisteredDelivery.SMSC_RECEIPT_ON_FAILURE and outcome != "DELIVRD"


def snippet(message: Message) -> str:
    """The first characters of the message's text, as a receipt's ``text:`` quotes them.

    Decoded by its data_coding (a UDH skipped) when possible; characters a Latin-1 receipt
    cannot hold, and control characters, become ``?``.
    """
    content = message.content
    if message.esm_class & EsmClass.UDHI:
        with contextlib.suppress(TextError):
            content = segment.parse_udh(content)[1]
    try:
        decoded = text.decode(content, message.data_coding)
    except TextError:
        decoded = content.decode("latin-1")
    chars = [
        c if c.isprintable() and ord(c) < 0x100 else "?" for c in decoded[:TEXT_LIMIT]
    ]
    return "".join(chars).strip()


def _network_error_code(err: str) -> bytes | None:
    if err.isdigit() and int(err) <= 0xFFFF:
        return bytes([_GSM_NETWORK]) + int(err).to_bytes(2, "big")
    return None


def receipt_pdu(
    job: ReceiptJob, config: ReceiptConfig, submitted: datetime, done: datetime
) -> DeliverSm:
    """The deliver_sm of a receipt (``sequence_number`` 0: the session stamps it).

    Addressed back to the sender: source is the message's destination, destination its source.
    ``submitted``/``done`` are naive datetimes (the receipt format has no time zone).
    """
    message = job.message
    outcome = message.outcome
    state = OUTCOMES[outcome]
    receipt_id = message.receipt_id(config.id_form)
    err = config.err[outcome]
    short_message = b""
    if config.text:
        short_message = format_receipt(
            DeliveryReceipt(
                message_id=receipt_id,
                stat=outcome,
                state=state,
                err=err,
                sub="001",
                dlvrd="001" if outcome == "DELIVRD" else "000",
                submit_date=submitted,
                done_date=done,
                text=snippet(message),
            )
        )
    tlvs: tlv.RawTlvs = ()
    if config.tlvs:
        network_error = None if outcome == "DELIVRD" else _network_error_code(err)
        tlvs = tlv.build(
            receipted_message_id=receipt_id,
            message_state=int(state),
            network_error_code=network_error,
        )
    dest = job.destination
    src = message.source
    return DeliverSm(
        sequence_number=0,
        service_type=message.service_type,
        source_addr_ton=dest.ton,
        source_addr_npi=dest.npi,
        source_addr=dest.addr,
        dest_addr_ton=src.ton,
        dest_addr_npi=src.npi,
        destination_addr=src.addr,
        esm_class=int(EsmClass.DELIVERY_RECEIPT),
        short_message=short_message,
        optional_parameters=tlvs,
    )


class ReceiptSchedule:
    """Receipts waiting for their time: a heap by due time."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, ReceiptJob]] = []
        self._tie = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, job: ReceiptJob) -> None:
        heapq.heappush(self._heap, (job.ready_at, next(self._tie), job))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[ReceiptJob]:
        heap = self._heap
        out = []
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[2])
        return out


class ReceiptQueues:
    """Receipts due, per system_id, waiting for a receiver; at most ``limit`` in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._queues: dict[str, deque[ReceiptJob]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, job: ReceiptJob) -> ReceiptJob | None:
        """Queue ``job``; return the job dropped to make room (the oldest of the longest
        queue), if any."""
        self._queues.setdefault(job.system_id, deque()).append(job)
        self._size += 1
        if self._size <= self.limit:
            return None
        longest = max(self._queues.values(), key=len)
        self._size -= 1
        return longest.popleft()

    def pop(self, system_id: str) -> ReceiptJob | None:
        queue = self._queues.get(system_id)
        if not queue:
            return None
        self._size -= 1
        return queue.popleft()
