"""How a status event changes a message and its parts, and which history rows it writes (pure).

The store loads the messages a batch of events is about into :class:`MessageRecord`\\ s, applies
each event in order with :func:`apply_event`, and writes back what changed. Keeping the rule
here, free of SQL, keeps it in one place and testable on its own.

The rule for one event (the history it writes is what docs/storage.md calls a message's rows):

- Its targets are one part (``part_number``) or every part (``None``).
- A target takes the new status if :func:`smsgw.model.may_replace` allows it. If no target
  takes it, the event is *refused*: one row at the level it was aimed at, ``applied=False``.
- Otherwise each target that took it gets a row (``applied=True``), and the message's status
  is recomputed from its parts (:func:`smsgw.aggregate.aggregate_status`). A row for the
  message (``part_number`` NULL) records its new aggregated status when that changed, or when
  the event was aimed at the whole message.

So a message's rows (part NULL) are the history of its aggregated status, and each part's rows
the history of that part.
"""

from __future__ import annotations

import attrs

from smsgw.aggregate import aggregate_status
from smsgw.model import MessageStatus, StatusChange, StatusEvent, may_replace
from smsgw.storage.errors import UnknownMessage

__all__ = ["Applied", "EventRow", "MessageRecord", "PartRecord", "apply_event", "initial_status"]


@attrs.define
class PartRecord:
    status: MessageStatus
    reason: str
    updated_at: float
    provider: str | None


@attrs.define
class MessageRecord:
    """What :func:`apply_event` needs to know of a message, and changes."""

    id: str
    client: str | None
    client_ref: str | None
    status: MessageStatus
    reason: str
    updated_at: float
    provider: str | None
    parts: dict[int, PartRecord]
    callback_url: str | None = None

    def copy(self) -> MessageRecord:
        # Built directly, not with attrs.evolve: this runs for every event the store records.
        return MessageRecord(
            self.id,
            self.client,
            self.client_ref,
            self.status,
            self.reason,
            self.updated_at,
            self.provider,
            {
                n: PartRecord(p.status, p.reason, p.updated_at, p.provider)
                for n, p in self.parts.items()
            },
            self.callback_url,
        )


@attrs.frozen
class EventRow:
    message_id: str
    part_number: int | None
    status: MessageStatus
    reason: str
    at: float
    applied: bool


@attrs.frozen
class Applied:
    """What one event did: the rows to write, the parts it changed, and the message's change."""

    rows: tuple[EventRow, ...]
    parts: tuple[int, ...]  # part numbers whose record changed
    message_changed: bool  # the message's record changed (status, reason or provider)
    change: StatusChange | None  # the aggregated status changed
    refused: bool


def initial_status(schedule_at: float | None, created_at: float) -> MessageStatus:
    """``scheduled`` if the message is due later than its creation, else ``queued``."""
    if schedule_at is not None and schedule_at > created_at:
        return MessageStatus.SCHEDULED
    return MessageStatus.QUEUED


def apply_event(record: MessageRecord, event: StatusEvent, at: float) -> Applied:
    """Apply ``event`` (at time ``at``) to ``record`` in place (rule in the module docstring).

    Raises :class:`UnknownMessage` if the event names a part the message does not have; the
    record is then unchanged.
    """
    if event.part_number is None:
        targets = sorted(record.parts)
    elif event.part_number in record.parts:
        targets = [event.part_number]
    else:
        raise UnknownMessage(
            f"message {record.id!r} has no part {event.part_number} (it has {len(record.parts)})"
        )
    taking = [n for n in targets if may_replace(record.parts[n].status, event.status)]
    if not taking:
        row = EventRow(record.id, event.part_number, event.status, event.reason, at, False)
        return Applied((row,), (), False, None, True)

    rows = []
    for number in taking:
        part = record.parts[number]
        part.status = event.status
        part.reason = event.reason
        part.updated_at = at
        if event.provider is not None:
            part.provider = event.provider
        rows.append(EventRow(record.id, number, event.status, event.reason, at, True))

    old = record.status
    new = aggregate_status(p.status for p in record.parts.values())
    message_changed = False
    change = None
    if new is not old or event.part_number is None:
        record.status = new
        record.reason = event.reason
        record.updated_at = at
        message_changed = True
        rows.append(EventRow(record.id, None, new, event.reason, at, True))
    if new is not old:
        change = StatusChange(
            message_id=record.id,
            client=record.client,
            client_ref=record.client_ref,
            old=old,
            new=new,
            reason=event.reason,
            at=at,
            callback_url=record.callback_url,
        )
    if event.provider is not None and record.provider != event.provider:
        record.provider = event.provider
        message_changed = True
    return Applied(tuple(rows), tuple(taking), message_changed, change, False)
