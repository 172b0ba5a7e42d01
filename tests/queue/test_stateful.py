"""Any sequence of queue operations, checked against the in-memory model (smsgw/queue/memory.py).

Hypothesis drives a ``RuleBasedStateMachine`` in a worker thread (``trio.to_thread``); each rule
runs its backend call back in the test's Trio loop with ``trio.from_thread.run``. One Trio run, one
open queue for the whole test: fast, and every step stays deterministic. Each example uses fresh
message ids and purges them all in its teardown (checking the purge count against the model), so
examples do not see each other's messages.

SQLite runs the full machine under the fake clock, and the model must agree *exactly*: which
messages a lease returns and in which order, every field, every deadline, depth and dead letters
after every step. Time moves by rule (``advance``), so leases expire, expired leases are reclaimed
and stale tokens are refused.

Redis runs a bounded variant: fewer steps, no ``advance`` rule (its clock is the server's, and
waiting out timeouts would make the test slow), delays either 0 or beyond the test's lifetime.
It checks that every lease is *admissible*: the right number of messages, all visible, none held
by someone else, strictly by priority, FIFO among first-attempt messages; then the model follows
the backend's choice. Everything else (ack/nack/extend/dead-letter/replay/purge outcomes, stale
tokens after ack, depth, dead letters) is compared exactly as for SQLite.

Both: nothing lost (at teardown SQLite drains everything the model says is there; both purge
exactly the model's count), nothing duplicated (a message held by a live lease never comes back).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import hypothesis.strategies as st
import trio
from hypothesis import settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from smsgw.queue.base import (
    DeadLetter,
    Lease,
    LeaseLost,
    NewMessage,
    Queue,
    QueuedMessage,
    QueueError,
)
from smsgw.queue.memory import MemoryQueue

if TYPE_CHECKING:
    from conftest import QueueEnv

T = TypeVar("T")

PRIORITIES = st.sampled_from([0, 4, 4, 9])  # few values: ties and priority jumps both common
REASONS = st.sampled_from(["throttled", "invalid number", "timeout"])
_example_numbers = itertools.count()


@attrs.define
class Held:
    """A lease as the backend and the model each issued it, for the same message."""

    backend: Lease
    model: Lease


class QueueMachine(RuleBasedStateMachine):
    """The machine; subclasses below choose the backend's time and delay strategies."""

    env: QueueEnv
    queue: Queue
    fake_time: bool
    delays: st.SearchStrategy[float]  # nack delays
    visibility: st.SearchStrategy[float]  # lease and extend timeouts
    offsets: st.SearchStrategy[float | None]  # not_before - now, None for no not_before

    def __init__(self) -> None:
        super().__init__()
        self.model = MemoryQueue()
        self.prefix = f"x{next(_example_numbers)}-"
        self.counter = itertools.count()
        self.enqueued: list[str] = []  # every id offered to enqueue, stored or not
        self.leases: list[Held] = []  # recent leases, live or stale (stale ones are refused)

    # -- plumbing --------------------------------------------------------------------------

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        async def bounded() -> T:
            with trio.fail_after(15):
                return await fn(*args, **kwargs)

        return trio.from_thread.run(bounded)

    def now(self) -> float:
        return self.env.now()

    def both(self, backend: Callable[[], Awaitable[T]], model: Callable[[], Any]) -> T | None:
        """Run one operation on both; they must succeed, or fail with the same error type."""
        model_error = backend_error = None
        result = None
        try:
            model()
        except QueueError as exc:
            model_error = type(exc)
        try:
            result = self.call(backend)
        except QueueError as exc:
            backend_error = type(exc)
        assert backend_error == model_error, (backend_error, model_error)
        return result

    def fresh_id(self) -> str:
        return f"{self.prefix}{next(self.counter)}"

    # -- rules ---------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        assert self.model.ids() == set()

    @rule(data=st.data())
    def enqueue(self, data: st.DataObject) -> None:
        batch = data.draw(st.lists(st.tuples(PRIORITIES, self.offsets), min_size=1, max_size=4))
        now = self.now()
        messages = []
        for priority, offset in batch:
            message_id = self.fresh_id()
            messages.append(
                NewMessage(
                    id=message_id,
                    payload=message_id.encode() * 3,
                    priority=priority,
                    not_before=None if offset is None else now + offset,
                )
            )
        self.enqueued += [m.id for m in messages]
        self.both(
            lambda: self.queue.enqueue(messages), lambda: self.model.enqueue(messages, now=now)
        )

    @precondition(lambda self: self.model.ids())
    @rule(data=st.data(), priority=PRIORITIES)
    def enqueue_duplicate(self, data: st.DataObject, priority: int) -> None:
        existing = data.draw(st.sampled_from(sorted(self.model.ids())))
        fresh = self.fresh_id()
        self.enqueued.append(fresh)
        batch = [NewMessage(id=fresh, payload=b"f", priority=priority)]
        batch.insert(data.draw(st.integers(0, 1)), NewMessage(id=existing, payload=b"d"))
        now = self.now()
        # The model refuses it (the id is in it); the backend must refuse it the same way.
        self.both(lambda: self.queue.enqueue(batch), lambda: self.model.enqueue(batch, now=now))

    @rule(max_items=st.integers(1, 5), data=st.data())
    def lease(self, max_items: int, data: st.DataObject) -> None:
        timeout = data.draw(self.visibility)
        now = self.now()
        visible = self.model.visible(now=now)
        got = self.call(self.queue.lease, "machine", max_items, timeout)
        chosen = [lease.message.id for lease in got]
        if self.fake_time:
            expected = self.model.lease("machine", max_items, timeout, now=now)
            assert chosen == [lease.message.id for lease in expected]
            for b, m in zip(got, expected, strict=True):
                assert b.message == m.message
                assert b.deadline == m.deadline
        else:
            self.check_admissible(chosen, visible, max_items)
            expected = self.model.lease_ids(chosen, timeout, now=now)
            for b, m in zip(got, expected, strict=True):
                assert attrs.evolve(b.message, enqueued_at=0) == attrs.evolve(
                    m.message, enqueued_at=0
                )
        self.leases = (self.leases + [Held(b, m) for b, m in zip(got, expected, strict=True)])[-20:]

    def check_admissible(
        self, chosen: Sequence[str], visible: Sequence[QueuedMessage], max_items: int
    ) -> None:
        by_id = {m.id: m for m in visible}
        assert len(chosen) == len(set(chosen)) == min(max_items, len(visible))
        assert all(i in by_id for i in chosen), "leased a message that is held, delayed or gone"
        priorities = [by_id[i].priority for i in chosen]
        assert priorities == sorted(priorities, reverse=True), "not highest priority first"
        left = [m for m in visible if m.id not in set(chosen)]
        if chosen and left:
            assert max(m.priority for m in left) <= min(priorities), "priority not strict"

        # FIFO among first-attempt messages that were due at enqueue time: their due time is
        # their enqueue time on any backend, so their order is enqueue order everywhere.
        def first_attempt(message_id: str) -> bool:
            m = by_id[message_id]
            return m.attempts == 0 and self.model.service_key(message_id)[1] == m.enqueued_at

        for priority in set(priorities):
            fresh = sorted(
                (i for i in by_id if by_id[i].priority == priority and first_attempt(i)),
                key=self.model.service_key,
            )
            fresh_chosen = [i for i in chosen if i in set(fresh)]
            assert fresh_chosen == fresh[: len(fresh_chosen)], "not FIFO within a priority"

    def pick(self, data: st.DataObject) -> Held:
        return data.draw(st.sampled_from(self.leases))

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        chosen = data.draw(st.lists(st.sampled_from(self.leases), min_size=1, max_size=4))
        now = self.now()
        self.both(
            lambda: self.queue.ack([h.backend for h in chosen]),
            lambda: self.model.ack([h.model for h in chosen], now=now),
        )

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), reason=REASONS)
    def nack(self, data: st.DataObject, reason: str) -> None:
        held, delay, now = self.pick(data), data.draw(self.delays), self.now()
        self.both(
            lambda: self.queue.nack(held.backend, delay=delay, reason=reason),
            lambda: self.model.nack(held.model, delay=delay, reason=reason, now=now),
        )

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def extend(self, data: st.DataObject) -> None:
        held, timeout, now = self.pick(data), data.draw(self.visibility), self.now()
        try:
            expected = self.model.extend(held.model, timeout, now=now)
        except LeaseLost:
            expected = None
        try:
            got = self.call(self.queue.extend, held.backend, timeout)
        except LeaseLost:
            got = None
        assert (got is None) == (expected is None)
        if got is not None and expected is not None:
            if self.fake_time:
                assert got.deadline == expected.deadline
            self.leases.append(Held(got, expected))

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), reason=REASONS)
    def dead_letter(self, data: st.DataObject, reason: str) -> None:
        held, now = self.pick(data), self.now()
        self.both(
            lambda: self.queue.dead_letter(held.backend, reason=reason),
            lambda: self.model.dead_letter(held.model, reason=reason, now=now),
        )

    @precondition(lambda self: self.enqueued)
    @rule(data=st.data(), priority=st.none() | PRIORITIES)
    def replay(self, data: st.DataObject, priority: int | None) -> None:
        dead = [d.message.id for d in self.model.dead_letters(limit=1000)]
        ids = data.draw(st.lists(st.sampled_from(self.enqueued + dead), max_size=4))
        expected = self.model.replay(ids, priority=priority, now=self.now())
        assert self.call(self.queue.replay, ids, priority=priority) == expected

    @precondition(lambda self: self.enqueued)
    @rule(data=st.data())
    def purge(self, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from(self.enqueued), max_size=3))
        expected = self.model.purge(ids)
        assert self.call(self.queue.purge, ids) == expected

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def same_depth_and_dead_letters(self) -> None:
        assert self.call(self.queue.depth) == self.model.depth(now=self.now())
        got = self.call(self.queue.dead_letters, limit=1000)
        expected = self.model.dead_letters(limit=1000)

        def summary(dead: Sequence[DeadLetter]) -> list[tuple[object, ...]]:
            return [
                (d.message.id, d.reason, d.message.attempts, d.message.last_error) for d in dead
            ]

        assert summary(got) == summary(expected)
        if self.fake_time:
            assert got == expected  # times too

    def teardown(self) -> None:
        try:
            if self.fake_time:
                self.drain()
        finally:
            # Always clean up, so the next example starts from an empty queue.
            purged = self.call(self.queue.purge, self.enqueued)
        assert purged == len(self.model.ids()), "purge count differs from the model's queue"

    def drain(self) -> None:
        """Nothing lost: everything the model holds comes out of the backend, once."""
        assert self.env.fake_clock is not None
        self.env.fake_clock.advance(10**6)  # every lease expired, every delay due
        dead = [d.message.id for d in self.model.dead_letters(limit=1000)]
        now = self.now()
        assert self.call(self.queue.replay, dead) == self.model.replay(dead, now=now)
        got = self.call(self.queue.lease, "drain", 10_000, 60.0)
        assert sorted(lease.message.id for lease in got) == sorted(self.model.ids())


class SqliteMachine(QueueMachine):
    fake_time = True
    delays = st.sampled_from([0.0, 5.0, 50.0])
    visibility = st.sampled_from([10.0, 60.0])
    offsets = st.sampled_from([None, -10.0, 0.0, 5.0, 100.0])

    @rule(seconds=st.sampled_from([1.0, 7.0, 30.0, 100.0]))
    def advance(self, seconds: float) -> None:
        assert self.env.fake_clock is not None
        self.env.fake_clock.advance(seconds)


class RedisMachine(QueueMachine):
    fake_time = False
    # Nothing may expire or come due while the test runs, except at once: real time moves.
    delays = st.sampled_from([0.0, 10_000.0])
    visibility = st.just(10_000.0)
    offsets = st.sampled_from([None, -10.0, 10_000.0])


def _run(machine: type[QueueMachine], env: QueueEnv, queue: Queue, steps: int) -> None:
    machine.env, machine.queue = env, queue
    current = settings()
    run_state_machine_as_test(machine, settings=settings(current, stateful_step_count=steps))


async def test_any_sequence_of_operations_agrees_with_the_model(
    queue_env: QueueEnv, queue: Queue
) -> None:
    if queue_env.name == "sqlite":
        machine: type[QueueMachine] = SqliteMachine
        steps = 40
    else:
        machine, steps = RedisMachine, 20
    # Hypothesis runs in this worker thread; the rules call back into this Trio run.
    await trio.to_thread.run_sync(_run, machine, queue_env, queue, steps)
