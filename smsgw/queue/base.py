"""The queue contract shared by every backend (embedded SQLite, Redis).

Semantics (docs/queue.md has the full text):

- At-least-once: a message leaves the queue only by ``ack``, ``dead_letter`` or ``purge``.
- Priorities 0..9, **higher is served first**, strictly: a lower priority is leased only when no
  higher one is due (unless the backend's documented anti-starvation share is configured).
- FIFO within a priority: due messages of one priority are served by due time, then enqueue
  order. A message enqueued due now is due at its enqueue time (so plain enqueues are FIFO); a
  delayed one at its ``not_before`` (a past ``not_before`` counts as now); a nacked one at
  ``now + delay``; a replayed one at the replay time; an expired lease at its deadline. So a
  message that comes back takes its place behind everything that was due before it.
- A message with ``not_before`` in the future is invisible until it is due.
- A lease is *held* while its token is the message's current one and its deadline has not
  passed. A lease not acked/nacked before its deadline makes the message visible again (a crashed
  consumer's work is reclaimed); the stale lease's token is then refused with ``LeaseLost`` by
  ack, nack, extend and dead_letter, even if nobody has leased the message again yet.
- ``attempts`` counts leases handed out for the message (reset to 0 by ``replay``). A replayed
  message's ``last_error`` is :data:`REPLAYED` followed by its dead-letter reason: attempts
  start again, but the message has been worked on before.

Times in this interface are wall-clock epoch seconds (floats): leases must mean the same thing to
several processes and machines sharing one Redis. Backends take the time from an injectable clock
(SQLite) or from the server (Redis), never from Trio's clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs

MIN_PRIORITY = 0
MAX_PRIORITY = 9
DEFAULT_PRIORITY = 5
#: The start of a replayed message's ``last_error`` (its dead-letter reason follows).
REPLAYED = "replayed from the dead-letter queue: "


class QueueError(Exception):
    """Base of the queue's errors."""


class QueueUnavailable(QueueError):
    """The backend cannot be reached right now; the operation may be retried."""


class DuplicateId(QueueError):
    """An enqueued id is already in the queue (or twice in the batch); nothing was enqueued.

    Distinct from ``QueueUnavailable`` so that a caller retrying an enqueue whose outcome it did
    not learn can tell "it was stored the first time" from a failure."""


class LeaseLost(QueueError):
    """The lease expired (or was never held): another consumer may own the message now."""


def _check_priority(_inst: object, _attr: object, value: int) -> None:
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(f"priority must be {MIN_PRIORITY}..{MAX_PRIORITY}, got {value}")


@attrs.frozen
class NewMessage:
    """A message to enqueue. ``id`` is chosen by the caller and unique in the queue."""

    id: str
    payload: bytes
    priority: int = attrs.field(default=DEFAULT_PRIORITY, validator=_check_priority)
    not_before: float | None = None  # epoch seconds; None = due now


@attrs.frozen
class QueuedMessage:
    id: str
    payload: bytes
    priority: int
    attempts: int  # leases handed out so far, this one included
    enqueued_at: float  # epoch seconds
    last_error: str | None = None  # reason given by the last nack


@attrs.frozen
class Lease:
    """A message held by one consumer until ``deadline`` (epoch seconds)."""

    message: QueuedMessage
    token: str  # proves ownership to ack/nack/extend/dead_letter
    deadline: float


@attrs.frozen
class DeadLetter:
    message: QueuedMessage
    reason: str
    dead_at: float  # epoch seconds


@attrs.frozen
class QueueDepth:
    """Counts by state, and ready counts by priority (only non-zero priorities listed).

    ``ready``: leasable now (due, or an expired lease); ``delayed``: not due yet; ``leased``: held
    leases; ``dead``: dead letters. Every message is in exactly one of them.
    """

    ready: int
    delayed: int
    leased: int
    dead: int
    ready_by_priority: Mapping[int, int]


class Queue(Protocol):
    """What every backend provides. All methods may raise ``QueueUnavailable``."""

    async def enqueue(self, messages: Sequence[NewMessage]) -> None:
        """Store messages durably; when this returns they survive a crash. Duplicate ids raise
        ``DuplicateId`` and store nothing of the batch."""

    async def lease(self, consumer: str, max_items: int, visibility_timeout: float) -> list[Lease]:
        """Hand out up to ``max_items`` due messages, highest priority first; may return []."""

    async def ack(self, leases: Sequence[Lease]) -> None:
        """Remove delivered messages. A lease that is no longer held raises ``LeaseLost``
        (after acking the others). Leases are judged by the state before the call: one listed
        twice is acked once, not reported lost."""

    async def nack(self, lease: Lease, *, delay: float, reason: str) -> None:
        """Give the message back, due again after ``delay`` seconds, remembering ``reason``."""

    async def extend(self, lease: Lease, visibility_timeout: float) -> Lease:
        """Push the deadline of a held lease (long work); ``LeaseLost`` if not held."""

    async def dead_letter(self, lease: Lease, *, reason: str) -> None:
        """Move a held message to the dead-letter queue with a reason."""

    async def dead_letters(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """Dead letters, oldest first."""

    async def replay(self, ids: Sequence[str], *, priority: int | None = None) -> int:
        """Move dead letters back to the queue (attempts reset to 0, ``last_error`` set to
        :data:`REPLAYED` followed by the dead-letter reason, so whoever leases it knows it has
        been sent before); returns how many moved."""

    async def purge(self, ids: Sequence[str]) -> int:
        """Delete messages by id in any state; returns how many were deleted."""

    async def depth(self) -> QueueDepth: ...

    async def aclose(self) -> None: ...
