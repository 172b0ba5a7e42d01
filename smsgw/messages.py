"""What clients hand the gateway and what they get back (the :class:`smsgw.gateway.Gateway` API).

- :class:`SubmitRequest`: one message to send, as a client describes it.
- :func:`validate`: every problem of a request at once, by field (pure: no I/O, time passed in);
  a valid request comes back as a :class:`Prepared` message: its id, encoding, part count and
  absolute times, ready for the queue and the database.
- :class:`Accepted` / :class:`Rejected`: the answer for each request of a submission.
- :class:`MessageView`: a message's status, its parts and its whole history.

Times in requests are wall-clock: ``schedule_at`` is epoch seconds, ``validity`` a number of
seconds counted from when the message is due (``schedule_at``, else acceptance). A message still
unsent when its validity ends is not sent and ends ``expired``; the remaining validity is also
passed to the SMSC as the ``validity_period`` of each part.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import time
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from smpp_codec.errors import TextError
from smpp_codec.segment import SplitMode, count
from smpp_codec.text import Encoding
from smpp_codec.text import decode as decode_text
from smpp_codec.text import encode as encode_text
from smsgw.model import Event, MessageDetail, MessageStatus, NewInbound, Part, StatusChange
from smsgw.queue.base import MAX_PRIORITY, MIN_PRIORITY

__all__ = [
    "ENCODINGS",
    "Accepted",
    "Counters",
    "GatewayStats",
    "MessageView",
    "Prepared",
    "Rejected",
    "SubmitRequest",
    "inbound_notification_body",
    "new_message_id",
    "new_message_ids",
    "status_notification_body",
    "validate",
]

#: ``SubmitRequest.encoding`` values: ``auto`` picks GSM 7-bit when every character fits, else
#: UCS-2 (binary for ``binary`` content).
ENCODINGS: Mapping[str, Encoding | None] = MappingProxyType(
    {"auto": None, **{e.value: e for e in Encoding}}
)

#: SMPP 3.4 addresses are C-Octet strings of 21 octets: 20 characters.
MAX_ADDRESS = 20
_DESTINATION = re.compile(r"\+?[0-9]{1,20}")
_URL = re.compile(r"https?://[^\s/]+\S*")
#: Longest client_ref / tag / client_id kept (they go into logs, JSON and database indexes).
MAX_LABEL = 128


def _tuple_of_str(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen(kw_only=True)
class SubmitRequest:
    """One message to send. ``to`` and ``source`` plus one of ``text`` / ``binary`` are needed.

    - ``encoding``: ``"auto"`` or an :class:`~smpp_codec.text.Encoding` value (``"gsm7"``,
      ``"ucs2"``, ``"latin1"``, ``"ascii"``, ``"binary"``).
    - ``data_coding``: sent instead of the encoding's default ``data_coding`` (a flash SMS is
      ``0x10`` for GSM 7-bit); it must mean the same alphabet as the encoding.
    - ``priority``: 0..9, higher is sent first.
    - ``provider``: send through this provider only, whatever the routes say.
    - ``receipt``: ask the SMSC for delivery receipts (as the provider's ``receipts`` allows).
    - ``callback_url``: where status notifications go (else the client's default, if any).
    """

    to: str
    source: str
    text: str | None = None
    binary: bytes | None = None
    data_coding: int | None = None
    encoding: str = "auto"
    priority: int = 5
    validity: float | None = None
    schedule_at: float | None = None
    client_ref: str | None = None
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    provider: str | None = None
    receipt: bool = True
    client_id: str = "default"
    callback_url: str | None = None


@attrs.frozen
class Accepted:
    """A request that is now durably queued: ``status`` is ``queued`` or ``scheduled``;
    ``parts`` the SMS count as split for the route's first provider; ``encoding`` the one used."""

    id: str
    status: MessageStatus
    parts: int
    encoding: str


@attrs.frozen
class Rejected:
    """The request at ``index`` of the submission is invalid; ``errors`` maps each field at
    fault to what is wrong with it. Nothing of it was stored."""

    index: int
    errors: Mapping[str, str]


@attrs.frozen
class MessageView:
    """A message as the gateway knows it: aggregated status, parts, history (oldest first)."""

    id: str
    status: MessageStatus
    reason: str
    source: str
    destination: str
    client: str | None
    client_ref: str | None
    created_at: float
    updated_at: float
    provider: str | None
    schedule_at: float | None
    expires_at: float | None
    parts: tuple[Part, ...]
    events: tuple[Event, ...]

    @classmethod
    def from_detail(cls, detail: MessageDetail) -> MessageView:
        m = detail.message
        return cls(
            id=m.id,
            status=m.status,
            reason=m.reason,
            source=m.source,
            destination=m.destination,
            client=m.client,
            client_ref=m.client_ref,
            created_at=m.created_at,
            updated_at=m.updated_at,
            provider=m.provider,
            schedule_at=m.schedule_at,
            expires_at=m.expires_at,
            parts=detail.parts,
            events=detail.events,
        )


@attrs.frozen(kw_only=True)
class Prepared:
    """A validated request with everything decided at acceptance (see :func:`validate`)."""

    id: str
    request: SubmitRequest
    encoding: Encoding
    parts: int
    created_at: float
    #: When it may be sent (None: now).
    not_before: float | None
    #: When it stops being worth sending (None: never).
    expires_at: float | None

    @property
    def status(self) -> MessageStatus:
        if self.not_before is not None and self.not_before > self.created_at:
            return MessageStatus.SCHEDULED
        return MessageStatus.QUEUED


def new_message_id() -> str:
    """A fresh message id: a UUIDv7 (RFC 9562) in 32 hex digits (:func:`new_message_ids`)."""
    return new_message_ids(1)[0]


def new_message_ids(count: int) -> list[str]:
    """``count`` fresh message ids: UUIDv7s (RFC 9562) in 32 hex digits.

    Their first 48 bits are the wall-clock time in milliseconds, the rest (but the version and
    variant bits) the OS's randomness: unique across restarts and instances whatever random
    seed the gateway runs with, and time-ordered. The order is what matters: every table is
    indexed by message id, and ids that arrive in order are inserted at the right edge of each
    index, so a batch of new messages touches a few pages instead of one page per message per
    index (with random ids, inserts slowed down 3x as the database grew to 150,000 messages;
    docs/storage.md).

    The randomness of a whole batch is read in one call: each read releases the GIL, and
    under load getting it back costs far more than the read itself.
    """
    millis = time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF  # wall-clock
    head = millis << 80 | 0x7 << 76  # version 7
    entropy = os.urandom(10 * count)
    ids = []
    for start in range(0, 10 * count, 10):
        rand = int.from_bytes(entropy[start : start + 10], "big")  # 74 of its 80 bits used
        value = (
            head
            | (rand >> 62 & 0xFFF) << 64  # rand_a: 12 bits
            | 0b10 << 62  # the RFC 9562 variant
            | (rand & 0x3FFF_FFFF_FFFF_FFFF)  # rand_b: 62 bits
        )
        ids.append(f"{value:032x}")
    return ids


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _label(errors: dict[str, str], field: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        errors[field] = "must be a non-empty string"
    elif len(value) > MAX_LABEL:
        errors[field] = f"must be at most {MAX_LABEL} characters, got {len(value)}"


def _check_addresses(request: SubmitRequest, errors: dict[str, str]) -> None:
    to = request.to
    if not isinstance(to, str) or not _DESTINATION.fullmatch(to):
        errors["to"] = f"must be 1 to {MAX_ADDRESS} digits with an optional leading '+', got {to!r}"
    source = request.source
    if not isinstance(source, str) or not source:
        errors["source"] = "must be a non-empty string"
    elif len(source) > MAX_ADDRESS or not source.isprintable():
        errors["source"] = f"must be at most {MAX_ADDRESS} printable characters, got {source!r}"
    else:
        try:
            source.encode("latin-1")
        except UnicodeEncodeError:
            errors["source"] = f"must be Latin-1 characters (an SMPP address), got {source!r}"


def _content(
    request: SubmitRequest, split_mode: SplitMode, errors: dict[str, str]
) -> tuple[Encoding, int] | None:
    """The encoding and part count of the content, or None (errors filled in)."""
    if request.encoding not in ENCODINGS:
        errors["encoding"] = f"must be one of {', '.join(ENCODINGS)}, got {request.encoding!r}"
        return None
    wanted = ENCODINGS[request.encoding]
    data_coding = request.data_coding
    if data_coding is not None and (
        isinstance(data_coding, bool)
        or not isinstance(data_coding, int)
        or not 0 <= data_coding <= 255
    ):
        errors["data_coding"] = f"must be an int 0..255, got {data_coding!r}"
        return None
    if (request.text is None) == (request.binary is None):
        errors["text"] = "give either text or binary, not both and not neither"
        return None
    content: str | bytes
    if request.binary is not None:
        if not isinstance(request.binary, bytes) or not request.binary:
            errors["binary"] = "must be non-empty bytes"
            return None
        if wanted not in (None, Encoding.BINARY):
            errors["encoding"] = f"binary content is sent as binary, not {request.encoding}"
            return None
        content = request.binary
    else:
        if not isinstance(request.text, str) or not request.text:
            errors["text"] = "must be a non-empty string"
            return None
        if wanted is Encoding.BINARY:
            errors["encoding"] = "binary is for binary content; text needs a text encoding"
            return None
        content = request.text
    try:
        plan = count(content, encoding=wanted, mode=split_mode)
    except TextError as exc:
        errors["binary" if request.binary is not None else "text"] = str(exc)
        return None
    if data_coding is not None and isinstance(content, str):
        # The override must name the same alphabet, or the handset shows garbage.
        data, _ = encode_text(content, plan.encoding)
        try:
            same = decode_text(data, data_coding) == content
        except TextError:
            same = False
        if not same:
            errors["data_coding"] = (
                f"0x{data_coding:02X} does not carry {plan.encoding.value} text as encoded"
            )
            return None
    return plan.encoding, plan.parts


def validate(
    request: SubmitRequest,
    *,
    now: float,
    providers: Collection[str],
    split_mode: SplitMode = SplitMode.UDH8,
    message_id: str | None = None,
) -> Prepared | Mapping[str, str]:
    """``request`` checked field by field: a :class:`Prepared` message, or the errors by field.

    ``now`` is the acceptance time (wall-clock epoch seconds); ``providers`` the configured
    provider names (a pinned provider must be one); ``split_mode`` the mode the part count is
    computed for (the route's first provider's). ``message_id`` None: :func:`new_message_id`.
    """
    errors: dict[str, str] = {}
    _check_addresses(request, errors)
    content = _content(request, split_mode, errors)
    priority = request.priority
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not (MIN_PRIORITY <= priority <= MAX_PRIORITY)
    ):
        errors["priority"] = f"must be an int {MIN_PRIORITY}..{MAX_PRIORITY}, got {priority!r}"
    if request.validity is not None and not (_finite(request.validity) and request.validity > 0):
        errors["validity"] = f"must be a number of seconds > 0, got {request.validity!r}"
    if request.schedule_at is not None and not _finite(request.schedule_at):
        errors["schedule_at"] = f"must be epoch seconds, got {request.schedule_at!r}"
    _label(errors, "client_ref", request.client_ref, optional=True)
    _label(errors, "client_id", request.client_id, optional=False)
    for i, tag in enumerate(request.tags):
        _label(errors, f"tags[{i}]", tag, optional=False)
    if request.provider is not None and request.provider not in providers:
        errors["provider"] = (
            f"unknown provider {request.provider!r}; the providers are "
            + ", ".join(repr(p) for p in providers)
        )
    if request.callback_url is not None and not (
        isinstance(request.callback_url, str) and _URL.fullmatch(request.callback_url)
    ):
        errors["callback_url"] = f"must be an http:// or https:// URL, got {request.callback_url!r}"
    if not isinstance(request.receipt, bool):
        errors["receipt"] = f"must be true or false, got {request.receipt!r}"
    if errors or content is None:
        return MappingProxyType(errors)
    encoding, parts = content
    not_before = (
        request.schedule_at
        if request.schedule_at is not None and request.schedule_at > now
        else None
    )
    due = now if not_before is None else not_before
    expires_at = None if request.validity is None else due + float(request.validity)
    return Prepared(
        id=message_id if message_id is not None else new_message_id(),
        request=request,
        encoding=encoding,
        parts=parts,
        created_at=now,
        not_before=not_before,
        expires_at=expires_at,
    )


# --- statistics -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class GatewayStats:
    """A snapshot of the gateway's counters since it started (see :class:`Counters`)."""

    accepted: int  #: messages accepted by submit()
    rejected: int  #: requests refused by validation
    submitted: int  #: messages whose every part the SMSC accepted
    segments_submitted: int  #: parts (submit_sm) the SMSC accepted
    failed: int  #: messages failed (permanent error, no route, attempts exhausted)
    expired: int  #: messages whose validity ended before they could be sent
    retried: int  #: messages put back in the queue for a later attempt
    throttled: int  #: submits answered with a throttling status
    failovers: int  #: messages moved on to the next provider of their route
    dead_lettered: int
    replayed: int  #: dead letters put back in the queue
    receipts: int  #: delivery receipts received (readable ones)
    receipts_invalid: int  #: receipts that could not be read (answered, not applied)
    #: receipts that came before their part's SMSC id was known (with a Redis queue such a
    #: receipt is relayed instead: ``receipts_relayed``)
    receipts_parked: int
    orphaned_receipts: int  #: receipts no part was found for within the park time
    #: receipts no part was found for here, published to the relay (Redis queue only)
    receipts_relayed: int
    receipts_relay_matched: int  #: relayed receipts (from any instance) recorded here
    mo_received: int  #: inbound messages stored (a multipart MO counts once)
    mo_incomplete: int  #: multipart MOs stored with parts missing (reassembly timed out)
    mo_store_failures: int  #: MOs answered with a temporary error because storing failed
    #: parts of multipart MOs sent again after their message was stored (answers lost): dropped
    mo_duplicate_parts: int
    duplicates_detected: int  #: parts found already accepted when a message came back
    in_flight_abandoned: int  #: messages cut off by a drain's grace (may be sent twice)
    leases_lost: int  #: leases that expired under a consumer (another may send it too)
    rows_rebuilt: int  #: database rows created from the queue payload (crash recovery)
    processing_errors: int  #: messages given back after a storage or queue failure
    task_failures: int  #: supervised task failures (restarted)
    in_flight: int  #: messages being processed now


@attrs.define
class Counters:
    """The mutable counters behind :class:`GatewayStats` (one task tree, no locks)."""

    accepted: int = 0
    rejected: int = 0
    submitted: int = 0
    segments_submitted: int = 0
    failed: int = 0
    expired: int = 0
    retried: int = 0
    throttled: int = 0
    failovers: int = 0
    dead_lettered: int = 0
    replayed: int = 0
    receipts: int = 0
    receipts_invalid: int = 0
    receipts_parked: int = 0
    orphaned_receipts: int = 0
    receipts_relayed: int = 0
    receipts_relay_matched: int = 0
    mo_received: int = 0
    mo_incomplete: int = 0
    mo_store_failures: int = 0
    mo_duplicate_parts: int = 0
    duplicates_detected: int = 0
    in_flight_abandoned: int = 0
    leases_lost: int = 0
    rows_rebuilt: int = 0
    processing_errors: int = 0
    task_failures: int = 0
    in_flight: int = 0

    def snapshot(self) -> GatewayStats:
        return GatewayStats(**attrs.asdict(self))


# --- webhook bodies ---------------------------------------------------------------------------


def status_notification_body(change: StatusChange) -> str:
    """The JSON a status webhook POSTs: the message, its new and previous status, why, when."""
    return json.dumps(
        {
            "event": "status",
            "message_id": change.message_id,
            "client_ref": change.client_ref,
            "status": change.new.value,
            "previous": change.old.value,
            "reason": change.reason,
            "at": change.at,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def inbound_notification_body(message: NewInbound) -> str:
    """The JSON an inbound-message webhook POSTs (``payload`` in base64 when not text)."""
    return json.dumps(
        {
            "event": "inbound",
            "id": message.id,
            "provider": message.provider,
            "from": message.source,
            "to": message.destination,
            "text": message.text,
            "payload": None
            if message.text is not None
            else base64.b64encode(message.payload).decode("ascii"),
            "data_coding": message.data_coding,
            "parts": message.parts,
            "complete": message.complete,
            "received_at": message.received_at,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
