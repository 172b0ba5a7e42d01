"""The queue contract shared by every backend (embedded SQLite, Redis).

Semantics (docs/queue.md has the full text):

- At-least-once: a message leaves the queue only by ``ack``, ``dead_letter`` or ``purge``.
- Priorities 0..9, **higher is served first**, strictly: a lower priority is leased only when no
  higher one is due (unless the backend's documented anti-starvation share is configured).
- FIFO within a priority (by enqueue order; a nacked message goes back by its due time).
- A message with ``not_before`` in the future is invisible until it is due.
- A lease not acked/nacked before its deadline makes the message visible again (a crashed
  consumer's work is reclaimed); the stale lease's token is then refused.
- ``attempts`` counts leases handed out for the message.

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


class QueueError(Exception):
    """Base of the queue's errors."""


class QueueUnavailable(QueueError):
    """The backend cannot be reached right now; the operation may be retried."""


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
    """Counts by state, and ready counts by priority (only non-zero priorities listed)."""

    ready: int
    delayed: int
    leased: int
    dead: int
    ready_by_priority: Mapping[int, int]


class Queue(Protocol):
    """What every backend provides. All methods may raise ``QueueUnavailable``."""

    async def enqueue(self, messages: Sequence[NewMessage]) -> None:
        """Store messages durably; when this returns they survive a crash. Duplicate ids raise
        ``QueueError`` and store nothing of the batch."""

    async def lease(
        self, consumer: str, max_items: int, visibility_timeout: float
    ) -> list[Lease]:
        """Hand out up to ``max_items`` due messages, highest priority first; may return []."""

    async def ack(self, leases: Sequence[Lease]) -> None:
        """Remove delivered messages. A lease that is no longer held raises ``LeaseLost``
        (after acking the others)."""

    async def nack(self, lease: Lease, *, delay: float, reason: str) -> None:
        """Give the message back, due again after ``delay`` seconds, remembering ``reason``."""

    async def extend(self, lease: Lease, visibility_timeout: float) -> Lease:
        """Push the deadline of a held lease (long work); ``LeaseLost`` if not held."""

    async def dead_letter(self, lease: Lease, *, reason: str) -> None:
        """Move a held message to the dead-letter queue with a reason."""

    async def dead_letters(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """Dead letters, oldest first."""

    async def replay(self, ids: Sequence[str], *, priority: int | None = None) -> int:
        """Move dead letters back to the queue (attempts reset to 0); returns how many moved."""

    async def purge(self, ids: Sequence[str]) -> int:
        """Delete messages by id in any state; returns how many were deleted."""

    async def depth(self) -> QueueDepth: ...

    async def aclose(self) -> None: ...
