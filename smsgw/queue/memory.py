"""The queue contract as a plain in-memory model: pure, synchronous, time passed in.

This is the reference the stateful tests hold every backend to, so it is written for obviousness,
not speed (every lease sorts everything). It mirrors ``smsgw.queue.base`` rule for rule:

- a message is *ready* (due at ``due_at``), *leased* (held until ``deadline`` by ``token``) or
  *dead*; an expired lease counts as ready again, due at its deadline;
- due messages are served by priority (higher first), then due time, then enqueue order;
- a lease is held while its token matches and ``now < deadline``.

Tokens are deterministic (``"t1"``, ``"t2"``, ...), one per lease call, like the backends' one per
batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from smsgw.queue.base import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    REPLAYED,
    DeadLetter,
    DuplicateId,
    Lease,
    LeaseLost,
    NewMessage,
    QueueDepth,
    QueuedMessage,
    QueueError,
)


@attrs.define
class _Entry:
    id: str
    payload: bytes
    priority: int
    seq: int
    due_at: float
    enqueued_at: float
    attempts: int = 0
    last_error: str | None = None
    state: str = "ready"  # ready | leased | dead
    token: str | None = None
    deadline: float | None = None
    dead_reason: str | None = None
    dead_at: float | None = None

    def message(self) -> QueuedMessage:
        return QueuedMessage(
            id=self.id,
            payload=self.payload,
            priority=self.priority,
            attempts=self.attempts,
            enqueued_at=self.enqueued_at,
            last_error=self.last_error,
        )

    def visible_at(self) -> float | None:
        """When this entry is (or became) leasable; None for dead entries."""
        if self.state == "ready":
            return self.due_at
        if self.state == "leased":
            return self.deadline
        return None

    def held_by(self, token: str, now: float) -> bool:
        return (
            self.state == "leased"
            and self.token == token
            and self.deadline is not None
            and now < self.deadline
        )


@attrs.define
class MemoryQueue:
    """The model. Every method takes the current time ``now`` (epoch seconds) where it matters."""

    _entries: dict[str, _Entry] = attrs.field(factory=dict)
    _next_seq: int = 1
    _next_token: int = 1

    def enqueue(self, messages: Sequence[NewMessage], *, now: float) -> None:
        ids = [m.id for m in messages]
        if len(set(ids)) != len(ids) or any(i in self._entries for i in ids):
            raise DuplicateId("duplicate message id")
        for m in messages:
            due = now if m.not_before is None else max(m.not_before, now)
            self._entries[m.id] = _Entry(
                id=m.id,
                payload=m.payload,
                priority=m.priority,
                seq=self._next_seq,
                due_at=due,
                enqueued_at=now,
            )
            self._next_seq += 1

    def visible(self, *, now: float) -> list[QueuedMessage]:
        """Every leasable message, in service order."""
        return [e.message() for e in self._visible_entries(now)]

    def _visible_entries(self, now: float) -> list[_Entry]:
        due = [
            e for e in self._entries.values() if (at := e.visible_at()) is not None and at <= now
        ]
        due.sort(key=lambda e: self.service_key(e.id))
        return due

    def lease(
        self, consumer: str, max_items: int, visibility_timeout: float, *, now: float
    ) -> list[Lease]:
        chosen = [e.id for e in self._visible_entries(now)[:max_items]]
        return self.lease_ids(chosen, visibility_timeout, now=now)

    def lease_ids(
        self, ids: Sequence[str], visibility_timeout: float, *, now: float
    ) -> list[Lease]:
        """Lease exactly these visible messages (to follow a backend's admissible choice)."""
        visible = {e.id: e for e in self._visible_entries(now)}
        missing = [i for i in ids if i not in visible]
        if missing:
            raise QueueError(f"not visible, cannot be leased: {missing}")
        token = f"t{self._next_token}"
        self._next_token += 1
        deadline = now + visibility_timeout
        leases = []
        for i in ids:
            e = visible[i]
            if e.state == "leased":  # expired: it went back to the queue due at its deadline
                assert e.deadline is not None
                e.due_at = e.deadline
            e.state, e.token, e.deadline = "leased", token, deadline
            e.attempts += 1
            leases.append(Lease(message=e.message(), token=token, deadline=deadline))
        return leases

    def _held(self, lease: Lease, now: float) -> _Entry:
        e = self._entries.get(lease.message.id)
        if e is None or not e.held_by(lease.token, now):
            raise LeaseLost(f"lease of {lease.message.id!r} no longer held")
        return e

    def ack(self, leases: Sequence[Lease], *, now: float) -> None:
        # Checked against the state before the call: a lease listed twice is acked once.
        held = {(x.message.id, x.token) for x in leases if self._is_held(x, now)}
        for message_id, _token in held:
            del self._entries[message_id]
        lost = sorted({x.message.id for x in leases if (x.message.id, x.token) not in held})
        if lost:
            raise LeaseLost(f"leases no longer held: {lost}")

    def _is_held(self, lease: Lease, now: float) -> bool:
        e = self._entries.get(lease.message.id)
        return e is not None and e.held_by(lease.token, now)

    def nack(self, lease: Lease, *, delay: float, reason: str, now: float) -> None:
        e = self._held(lease, now)
        e.state, e.token, e.deadline = "ready", None, None
        e.due_at = now + delay
        e.last_error = reason

    def extend(self, lease: Lease, visibility_timeout: float, *, now: float) -> Lease:
        e = self._held(lease, now)
        e.deadline = now + visibility_timeout
        return attrs.evolve(lease, deadline=e.deadline)

    def dead_letter(self, lease: Lease, *, reason: str, now: float) -> None:
        e = self._held(lease, now)
        e.state, e.token, e.deadline = "dead", None, None
        e.dead_reason, e.dead_at = reason, now

    def dead_letters(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        dead = sorted(
            (e for e in self._entries.values() if e.state == "dead"),
            key=lambda e: (e.dead_at, e.seq),
        )
        return [
            DeadLetter(message=e.message(), reason=e.dead_reason or "", dead_at=e.dead_at or 0.0)
            for e in dead[offset : offset + limit]
        ]

    def replay(self, ids: Sequence[str], *, priority: int | None = None, now: float) -> int:
        if priority is not None and not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be {MIN_PRIORITY}..{MAX_PRIORITY}, got {priority}")
        moved = 0
        for i in dict.fromkeys(ids):
            e = self._entries.get(i)
            if e is not None and e.state == "dead":
                e.last_error = REPLAYED + (e.dead_reason or "")
                e.state, e.dead_reason, e.dead_at = "ready", None, None
                e.attempts, e.due_at = 0, now
                if priority is not None:
                    e.priority = priority
                moved += 1
        return moved

    def purge(self, ids: Sequence[str]) -> int:
        return sum(self._entries.pop(i, None) is not None for i in dict.fromkeys(ids))

    def depth(self, *, now: float) -> QueueDepth:
        counts = {"ready": 0, "delayed": 0, "leased": 0, "dead": 0}
        by_priority: dict[int, int] = {}
        for e in self._entries.values():
            if e.state == "dead":
                bucket = "dead"
            elif e.state == "leased" and e.deadline is not None and now < e.deadline:
                bucket = "leased"
            elif e.state == "ready" and e.due_at > now:
                bucket = "delayed"
            else:
                bucket = "ready"
                by_priority[e.priority] = by_priority.get(e.priority, 0) + 1
            counts[bucket] += 1
        return QueueDepth(ready_by_priority=dict(sorted(by_priority.items())), **counts)

    def service_key(self, message_id: str) -> tuple[int, float, int]:
        """Where a visible message stands: (-priority, due time, enqueue seq); smaller first."""
        e = self._entries[message_id]
        at = e.visible_at()
        assert at is not None, "dead letters are not served"
        return (-e.priority, at, e.seq)

    def ids(self) -> set[str]:
        """Every message still in the queue, in any state."""
        return set(self._entries)

    def state_of(self, message_id: str) -> str | None:
        e = self._entries.get(message_id)
        return None if e is None else e.state
