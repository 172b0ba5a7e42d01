"""The message model shared by the gateway's pipeline: statuses, and what the store keeps.

Statuses (**fixed**: users see these names, ARCHITECTURE.md "Message lifecycle")::

    scheduled -> queued -> submitting -> submitted -> delivered | undelivered | expired | rejected
                                      \\-> failed

A multipart message has one status per part and one aggregated status computed from them
(:mod:`smsgw.aggregate`); a part uses the same names as a message, so :data:`PartStatus` is
:class:`MessageStatus`.

Which transition may happen is deliberately loose, with one exception (:func:`may_replace`):
a final status is left only by ``queued`` or ``scheduled`` (a replay of the message). That is
what makes the receipt race harmless: a receipt may be applied to a part before the processor
records that part's ``submitted``; the late ``submitted`` is then recorded in the history but
does not move the part back.

Times are wall-clock epoch seconds (floats), chosen by the caller or the store's clock.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeAlias

import attrs

from smpp_codec.constants import MessageState
from smpp_codec.message_id import MessageIdFormat

__all__ = [
    "FINAL_STATUSES",
    "PENDING_STATUSES",
    "Event",
    "InboundMessage",
    "InboundPart",
    "Message",
    "MessageDetail",
    "MessageStatus",
    "NewInbound",
    "NewMessage",
    "NewNotification",
    "Notification",
    "NotificationKind",
    "NotificationState",
    "Part",
    "PartRef",
    "PartStatus",
    "ProviderStats",
    "ProviderStatsDelta",
    "SmscIdMapping",
    "StatusChange",
    "StatusEvent",
    "may_replace",
    "status_for_message_state",
]


class MessageStatus(enum.Enum):
    """The status of a message or of one of its parts. Values are what users see."""

    #: Accepted, not yet due (``schedule_at`` in the future).
    SCHEDULED = "scheduled"
    #: Accepted and waiting in the queue (also after a temporary error, waiting to be retried).
    QUEUED = "queued"
    #: Handed to a provider connection; no submit_sm_resp yet.
    SUBMITTING = "submitting"
    #: The SMSC accepted it (it has an SMSC message id); waiting for the receipt.
    SUBMITTED = "submitted"
    #: The receipt says delivered.
    DELIVERED = "delivered"
    #: The receipt says it could not be delivered (UNDELIV, DELETED, UNKNOWN...).
    UNDELIVERED = "undelivered"
    #: Its validity passed, before sending or as the receipt says.
    EXPIRED = "expired"
    #: The receipt says the SMSC or network rejected it.
    REJECTED = "rejected"
    #: A permanent error, or attempts exhausted: dead-lettered, can be replayed.
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """Whether nothing more happens to it unless it is replayed."""
        return self in FINAL_STATUSES


#: A part's status uses the same names as a message's (the aggregated status is one of them).
PartStatus: TypeAlias = MessageStatus

FINAL_STATUSES: frozenset[MessageStatus] = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.EXPIRED,
        MessageStatus.REJECTED,
        MessageStatus.FAILED,
    }
)
PENDING_STATUSES: frozenset[MessageStatus] = frozenset(MessageStatus) - FINAL_STATUSES

#: The statuses that may replace a final one: a replay puts a finished message back in line.
_LEAVE_FINAL = frozenset({MessageStatus.QUEUED, MessageStatus.SCHEDULED})


def may_replace(current: MessageStatus, new: MessageStatus) -> bool:
    """Whether a message or part in ``current`` takes ``new`` (see the module docstring).

    A pending status takes anything; a final one only ``queued`` or ``scheduled`` (a replay).
    A refused transition is still recorded in the history (with ``applied=False``).
    """
    return not current.is_final or new in _LEAVE_FINAL


_STATUS_FOR_STATE: Mapping[MessageState, MessageStatus | None] = MappingProxyType(
    {
        MessageState.ENROUTE: None,
        # ACCEPTED is "read by customer service on behalf of the subscriber": the SMSC still
        # holds the message; Kannel counts ACCEPTD as intermediate too.
        MessageState.ACCEPTED: None,
        MessageState.DELIVERED: MessageStatus.DELIVERED,
        MessageState.EXPIRED: MessageStatus.EXPIRED,
        MessageState.DELETED: MessageStatus.UNDELIVERED,
        MessageState.UNDELIVERABLE: MessageStatus.UNDELIVERED,
        MessageState.UNKNOWN: MessageStatus.UNDELIVERED,
        MessageState.REJECTED: MessageStatus.REJECTED,
    }
)


def status_for_message_state(state: MessageState) -> MessageStatus | None:
    """The status a receipt's ``message_state`` gives a part; None for intermediate states.

    DELETED and UNKNOWN are final states in which the message was not delivered: ``undelivered``.
    """
    return _STATUS_FOR_STATE[state]


# --- validators -------------------------------------------------------------------------------


def _non_empty(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty str, got {value!r}")


def _optional_non_empty(
    _inst: object, attribute: attrs.Attribute[str | None], value: object
) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{attribute.name} must be None or a non-empty str, got {value!r}")


def _time(_inst: object, attribute: attrs.Attribute[float | None], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number of seconds, got {value!r}")


def _positive_int(_inst: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


def _optional_part(_inst: object, attribute: attrs.Attribute[int | None], value: object) -> None:
    if value is not None:
        _positive_int(_inst, attribute, value)  # type: ignore[arg-type]


def _non_negative_int(_inst: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, got {value!r}")


def _non_negative_number(_inst: object, attribute: attrs.Attribute[float], value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _status(_inst: object, attribute: attrs.Attribute[MessageStatus], value: object) -> None:
    if not isinstance(value, MessageStatus):
        raise TypeError(f"{attribute.name} must be a MessageStatus, got {value!r}")


# --- what callers write -----------------------------------------------------------------------


@attrs.frozen
class NewMessage:
    """An outbound message accepted from a client, for :meth:`Store.create_messages`.

    Its first status is ``scheduled`` when ``schedule_at`` is later than ``created_at``, else
    ``queued``. ``parts`` is the number of segments as known at acceptance; the processor may
    change it once it has split the message for a provider (:meth:`Store.set_parts`).
    ``created_at`` None: the store's clock.
    """

    id: str = attrs.field(validator=_non_empty)
    source: str = attrs.field(validator=attrs.validators.instance_of(str))
    destination: str = attrs.field(validator=_non_empty)
    parts: int = attrs.field(default=1, validator=_positive_int)
    client: str | None = attrs.field(default=None, validator=_optional_non_empty)
    client_ref: str | None = attrs.field(default=None, validator=_optional_non_empty)
    text: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    schedule_at: float | None = attrs.field(default=None, validator=_time)
    expires_at: float | None = attrs.field(default=None, validator=_time)
    created_at: float | None = attrs.field(default=None, validator=_time)
    reason: str = attrs.field(default="accepted", validator=attrs.validators.instance_of(str))
    #: Where this message's status webhooks go (None: its client's default).
    callback_url: str | None = attrs.field(default=None, validator=_optional_non_empty)


@attrs.frozen
class StatusEvent:
    """A status transition to record (:meth:`Store.record_events`).

    ``part_number`` None: the event is about the whole message and applies to each of its parts
    that takes it (:func:`may_replace`). ``provider``, when given, is recorded as the provider
    handling the part(s). ``at`` None: the store's clock.
    """

    message_id: str = attrs.field(validator=_non_empty)
    status: MessageStatus = attrs.field(validator=_status)
    reason: str = attrs.field(validator=attrs.validators.instance_of(str))
    part_number: int | None = attrs.field(default=None, validator=_optional_part)
    provider: str | None = attrs.field(default=None, validator=_optional_non_empty)
    at: float | None = attrs.field(default=None, validator=_time)


@attrs.frozen
class SmscIdMapping:
    """The SMSC message id a provider gave one part (:meth:`Store.map_smsc_ids`).

    ``smsc_id`` is the raw id of the submit_sm_resp; it is stored raw and normalised by
    ``id_format.resp_form`` (:mod:`smpp_codec.message_id`), the provider's setting.
    """

    provider: str = attrs.field(validator=_non_empty)
    smsc_id: str = attrs.field(validator=attrs.validators.instance_of(str))
    message_id: str = attrs.field(validator=_non_empty)
    part_number: int = attrs.field(validator=_positive_int)
    id_format: MessageIdFormat = attrs.field(
        default=MessageIdFormat.AUTO, validator=attrs.validators.instance_of(MessageIdFormat)
    )
    at: float | None = attrs.field(default=None, validator=_time)


@attrs.frozen
class NewInbound:
    """A mobile-originated message, reassembled (:meth:`Store.store_inbound`).

    ``payload`` is the reassembled short message as received; ``text`` its decoded text (None if
    it is binary). ``received_at`` None: the store's clock.
    """

    id: str = attrs.field(validator=_non_empty)
    provider: str = attrs.field(validator=_non_empty)
    source: str = attrs.field(validator=attrs.validators.instance_of(str))
    destination: str = attrs.field(validator=attrs.validators.instance_of(str))
    payload: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    data_coding: int = attrs.field(default=0, validator=_non_negative_int)
    text: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    parts: int = attrs.field(default=1, validator=_positive_int)
    received_at: float | None = attrs.field(default=None, validator=_time)
    #: False: a multipart message stored with parts missing (its reassembly timed out).
    complete: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))


@attrs.frozen
class InboundPart:
    """One part of a multipart MO, stored as it arrives until its message is whole
    (:meth:`Store.store_inbound_part`; ``smsgw/mo.py``).

    ``payload`` is the part's user data without its UDH. ``seq`` is the row's number, None until
    stored. ``received_at`` None: the store's clock.
    """

    provider: str = attrs.field(validator=_non_empty)
    source: str = attrs.field(validator=attrs.validators.instance_of(str))
    destination: str = attrs.field(validator=attrs.validators.instance_of(str))
    reference: int = attrs.field(validator=_non_negative_int)
    total: int = attrs.field(validator=_positive_int)
    number: int = attrs.field(validator=_positive_int)
    payload: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    data_coding: int = attrs.field(default=0, validator=_non_negative_int)
    received_at: float | None = attrs.field(default=None, validator=_time)
    seq: int | None = None

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        """The parts of one message share it: (provider, source, destination, reference,
        total). The reference alone is only 8 or 16 bits, and is reused."""
        return (self.provider, self.source, self.destination, self.reference, self.total)


class NotificationKind(enum.Enum):
    """What a webhook notification is about."""

    STATUS = "status"
    INBOUND = "inbound"


class NotificationState(enum.Enum):
    """Where a webhook notification is in the outbox."""

    PENDING = "pending"  # to be (re)tried from next_attempt_at
    DELIVERED = "delivered"
    DEAD = "dead"  # given up


@attrs.frozen
class NewNotification:
    """A webhook to deliver later (the outbox). ``body`` is the JSON text to POST.

    ``subject`` is the id of the message or inbound message it is about (for operators).
    ``created_at`` None: the store's clock. It is due at once.
    """

    kind: NotificationKind = attrs.field(validator=attrs.validators.instance_of(NotificationKind))
    target: str = attrs.field(validator=_non_empty)
    body: str = attrs.field(validator=attrs.validators.instance_of(str))
    subject: str | None = attrs.field(default=None, validator=_optional_non_empty)
    created_at: float | None = attrs.field(default=None, validator=_time)


@attrs.frozen
class ProviderStatsDelta:
    """Counts to add to a provider's minute bucket (:meth:`Store.record_provider_stats`).

    ``latency_sum`` / ``latency_count``: seconds from enqueue to submit_sm_resp, summed, so that
    a mean per minute can be computed. ``at`` None: the store's clock.
    """

    provider: str = attrs.field(validator=_non_empty)
    submitted: int = attrs.field(default=0, validator=_non_negative_int)
    failed: int = attrs.field(default=0, validator=_non_negative_int)
    throttled: int = attrs.field(default=0, validator=_non_negative_int)
    receipts: int = attrs.field(default=0, validator=_non_negative_int)
    latency_sum: float = attrs.field(default=0.0, validator=_non_negative_number)
    latency_count: int = attrs.field(default=0, validator=_non_negative_int)
    at: float | None = attrs.field(default=None, validator=_time)


# --- what the store returns -------------------------------------------------------------------


@attrs.frozen
class PartRef:
    """One part of one message: what an SMSC message id maps to."""

    message_id: str
    part_number: int


@attrs.frozen
class Message:
    """A message's row: its aggregated status and what the client gave."""

    id: str
    status: MessageStatus
    source: str
    destination: str
    parts: int
    client: str | None
    client_ref: str | None
    text: str | None
    created_at: float
    updated_at: float  # the time of its latest status row (smsgw.storage.transitions)
    reason: str  # the reason of that row
    provider: str | None  # the last provider that handled it
    schedule_at: float | None
    expires_at: float | None
    callback_url: str | None = None  # where its status webhooks go (None: the client's default)


@attrs.frozen
class Part:
    """One segment of a message."""

    message_id: str
    part_number: int  # 1-based
    status: MessageStatus
    updated_at: float
    reason: str
    provider: str | None
    smsc_id: str | None  # raw, as the provider last named it


@attrs.frozen
class Event:
    """One row of a message's history.

    ``part_number`` None: the message's aggregated status. ``applied`` False: the transition was
    refused because its target was already final (:func:`may_replace`); ``status`` is then what
    was asked for, and nothing changed.
    """

    seq: int
    message_id: str
    part_number: int | None
    status: MessageStatus
    reason: str
    at: float
    applied: bool


@attrs.frozen
class MessageDetail:
    """A message with its parts and its full history, oldest event first."""

    message: Message
    parts: tuple[Part, ...]
    events: tuple[Event, ...]


@attrs.frozen
class StatusChange:
    """A message's aggregated status changed (what a status webhook reports)."""

    message_id: str
    client: str | None
    client_ref: str | None
    old: MessageStatus
    new: MessageStatus
    reason: str
    at: float
    #: The message's own webhook target, as stored with it (None: its client's default).
    callback_url: str | None = None


@attrs.frozen
class InboundMessage:
    seq: int
    id: str
    provider: str
    source: str
    destination: str
    payload: bytes
    data_coding: int
    text: str | None
    parts: int
    received_at: float
    complete: bool = True


@attrs.frozen
class Notification:
    seq: int
    kind: NotificationKind
    target: str
    body: str
    subject: str | None
    created_at: float
    state: NotificationState
    attempts: int
    next_attempt_at: float
    delivered_at: float | None
    last_error: str | None


@attrs.frozen
class ProviderStats:
    """A provider's counters for the minute starting at ``minute`` (epoch seconds)."""

    provider: str
    minute: int
    submitted: int
    failed: int
    throttled: int
    receipts: int
    latency_sum: float
    latency_count: int
