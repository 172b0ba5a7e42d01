"""The one writer task: every write of the store, group-committed.

Why. Each round trip to aiosqlite's worker thread costs the Trio thread 100-250 microseconds of
CPU here (whatever the statement does), and each commit an fsync. A transaction per write would
cap the gateway at a few hundred writes per second. So every write is a request on one bounded
channel, and one task turns whatever is waiting into ONE transaction in which same-kind writes
share their statements (``executemany``), run as one synchronous function on the database thread
(:meth:`SqliteDatabase.run_transaction`): a batch costs one round trip and one fsync whether it
holds one write or five hundred.

Batching. The writer takes the first request, then everything already waiting, then keeps
collecting until the batch holds ``max_batch`` requests or the oldest one has waited
``commit_interval`` seconds. When nothing came while the previous batch was committed (light
load) it stops at the first scheduling round that brings nothing, so a lone write does not wait.
When writes queued up meanwhile (many tasks writing: the gateway under load), it also waits up to
:data:`QUIET_GAP` for each next write: requests that trickle in one by one (each consumer's
submit_sm_resp, each receipt) then share a transaction instead of paying for one each.
``commit_interval=0`` commits what is waiting at once.

Durability. A caller's ``await`` returns only after the COMMIT of the transaction that holds its
write (with ``synchronous=FULL``, durable against power loss; with ``NORMAL``, against a crash
of the process). A write handed to the writer is committed or failed whether or not its caller
still waits: cancelling the caller does not withdraw it.

Order. The requests of a batch are all in flight at once, so any order of them is a valid one;
the writer runs them grouped by kind in a fixed order (creations before events, for example),
and in arrival order within a kind.

Failures, per request or per batch:

- A request that is wrong in a way the code can tell before writing (an event for an unknown
  message) fails alone; the kind leaves it out of its statements.
- If the batch fails because the database is unavailable (locked beyond the busy timeout, disk
  full, I/O error), every request of the batch fails with :class:`StoreUnavailable`.
- If it fails in any other way (a constraint, such as a duplicate id, or an error in a kind's
  code), the transaction is rolled back and the batch run again one request at a time, each in
  its own SAVEPOINT, in one transaction: a request that fails again fails alone (with the
  kind's typed error, e.g. :class:`DuplicateId`), the others are committed.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from smsgw.adapters.sqlite import (
    DatabaseError,
    DatabaseUnavailable,
    SqliteDatabase,
    translate_error,
)
from smsgw.storage.errors import StoreClosed, StoreError, StoreUnavailable

__all__ = ["QUIET_GAP", "Failure", "OpKind", "Writer", "WriterStats"]

#: Under load, a batch keeps collecting until no write came for this long (or it is full, or
#: its oldest write has waited ``commit_interval``).
QUIET_GAP = 0.0005


@attrs.frozen
class Failure:
    """The outcome of a request that fails alone (returned by an :class:`OpKind`'s ``apply``)."""

    error: Exception


@attrs.frozen(eq=False)
class OpKind:
    """One kind of write.

    ``apply(db, payloads)`` runs the payloads of every request of this kind in a batch, in the
    transaction, on the database thread (plain synchronous code on the ``sqlite3`` connection:
    it must touch nothing but the connection and the payloads), and returns one outcome per
    payload, in order: a result, or a :class:`Failure` for a request it left out (it must have
    written nothing for it). It may raise: the batch is
    then run again one request at a time, and ``explain(error, payload)`` turns an error of a
    lone request into the error its caller sees (by default, the error itself).
    ``phase`` orders the kinds within a batch.
    """

    name: str
    phase: int
    apply: Callable[[sqlite3.Connection, Sequence[Any]], Sequence[Any]]
    explain: Callable[[Exception, Any], Exception] | None = None


@attrs.frozen
class WriterStats:
    """Counters since the writer started."""

    transactions: int  # committed
    batches: int  # collected (a batch retried one by one is still one batch)
    requests: int  # settled, successfully or not
    failed_requests: int
    retried_batches: int  # run again one request at a time
    largest_batch: int


@attrs.define(eq=False)
class _Request:
    kind: OpKind
    payload: Any
    sent_at: float
    done: trio.Event = attrs.Factory(trio.Event)
    result: Any = None
    error: Exception | None = None


def _apply_together(
    db: sqlite3.Connection, groups: Sequence[tuple[OpKind, list[Any]]]
) -> list[Any]:
    """On the database thread, in the batch's transaction: every kind's ``apply``."""
    outcomes: list[Any] = []
    for kind, payloads in groups:
        results = kind.apply(db, payloads)
        if len(results) != len(payloads):
            raise StoreError(f"{kind.name}: {len(results)} outcomes for {len(payloads)}")
        outcomes.extend(results)
    return outcomes


def _apply_one_by_one(db: sqlite3.Connection, requests: Sequence[tuple[OpKind, Any]]) -> list[Any]:
    """On the database thread, in one transaction: each request in its own SAVEPOINT, so one
    that fails is rolled back alone. The database being unavailable still fails them all."""
    outcomes: list[Any] = []
    for kind, payload in requests:
        db.execute("SAVEPOINT request")
        try:
            (outcome,) = kind.apply(db, [payload])
        except Exception as exc:  # it fails this request only
            error = translate_error(exc) if isinstance(exc, sqlite3.Error) else exc
            if isinstance(error, DatabaseUnavailable):
                raise
            outcome = Failure(kind.explain(error, payload) if kind.explain else error)
        if isinstance(outcome, Failure):
            db.execute("ROLLBACK TO request")
        db.execute("RELEASE request")
        outcomes.append(outcome)
    return outcomes


def _chained(error: Exception, cause: BaseException) -> Exception:
    error.__cause__ = cause
    return error


class Writer:
    """The writer task and the door to it. Run :meth:`run` in a nursery; :meth:`close` ends it
    once every request sent before is settled."""

    def __init__(
        self,
        db: SqliteDatabase,
        *,
        commit_interval: float,
        max_batch: int,
        queue_size: int | None = None,
    ) -> None:
        if not commit_interval >= 0:  # also refuses NaN
            raise ValueError(f"commit_interval must be >= 0 seconds, got {commit_interval!r}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
        self._db = db
        self.commit_interval = float(commit_interval)
        self.max_batch = max_batch
        # Bounded: when the writer falls behind, callers wait to hand their writes over.
        self._send, self._receive = trio.open_memory_channel[_Request](
            queue_size if queue_size is not None else 2 * max_batch
        )
        self._closed = False
        self._transactions = 0
        self._batches = 0
        self._requests = 0
        self._failed = 0
        self._retried = 0
        self._largest = 0
        #: Trio time the database began refusing writes (unavailable: locked beyond the busy
        #: timeout, disk full); None while the last transaction committed.
        self.failing_since: float | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> WriterStats:
        return WriterStats(
            transactions=self._transactions,
            batches=self._batches,
            requests=self._requests,
            failed_requests=self._failed,
            retried_batches=self._retried,
            largest_batch=self._largest,
        )

    async def submit(self, kind: OpKind, payload: Any) -> Any:
        """Hand one write to the writer; return its result once committed, or raise its error."""
        if self._closed:
            raise StoreClosed("the store is closed")
        request = _Request(kind, payload, trio.current_time())
        try:
            await self._send.send(request)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise StoreClosed("the store is closed") from None
        await request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    async def submit_many(
        self, items: Sequence[tuple[OpKind, Any]], *, handed_over: Callable[[], None] | None = None
    ) -> list[Any]:
        """Hand several writes over at once (so they share a batch, unless it fills up between
        them) and return their results once all are settled; the first error is raised then.
        Cheaper than a task per write: one caller, no nursery.

        ``handed_over`` is called once every write is in the writer's queue, before they are
        committed: any write handed over after that is committed after them (or fails with
        them). The processor uses it to tell the DLR handler a mapping early (dlr.py)."""
        if self._closed:
            raise StoreClosed("the store is closed")
        requests = []
        now = trio.current_time()
        for kind, payload in items:
            request = _Request(kind, payload, now)
            try:
                await self._send.send(request)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise StoreClosed("the store is closed") from None
            requests.append(request)
        if handed_over is not None:
            handed_over()
        for request in requests:
            if not request.done.is_set():
                await request.done.wait()
        for request in requests:
            if request.error is not None:
                raise request.error
        return [request.result for request in requests]

    def close(self) -> None:
        """Refuse new writes; the writer commits those already sent, then returns."""
        self._closed = True
        self._send.close()

    async def run(self) -> None:
        """The writer task (see the module docstring). Returns after :meth:`close`."""
        batch: list[_Request] = []
        try:
            async with self._receive:
                while True:
                    # Writes that came while the last batch was committed: the store is busy.
                    busy = self._receive.statistics().current_buffer_used > 0
                    try:
                        batch = [await self._receive.receive()]
                    except trio.EndOfChannel:
                        return
                    await self._collect(batch, busy=busy)
                    await self._commit(batch)
                    batch = []
        finally:
            # Cancelled (or a bug): whatever was not settled may not have been committed.
            for request in itertools.chain(batch, self._drain()):
                if not request.done.is_set():
                    self._settle(request, StoreClosed("the store closed before this write ended"))

    def _drain(self) -> list[_Request]:
        left = []
        while True:
            try:
                left.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return left

    def _take_waiting(self, batch: list[_Request]) -> bool:
        """Move waiting requests into ``batch`` up to ``max_batch``; False if the channel ended."""
        while len(batch) < self.max_batch:
            try:
                batch.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                return True
            except trio.EndOfChannel:
                return False
        return True

    async def _collect(self, batch: list[_Request], *, busy: bool) -> None:
        if not self._take_waiting(batch):
            return
        deadline = batch[0].sent_at + self.commit_interval
        while len(batch) < self.max_batch and trio.current_time() < deadline:
            # Let the tasks that are ready to run hand their writes over (those woken by the
            # last commit, typically), then take them.
            before = len(batch)
            await trio.sleep(0)
            if not self._take_waiting(batch):
                return
            if len(batch) > before:
                continue
            # A round brought nothing. Idle (nothing came during the last commit): commit now,
            # a lone write does not wait. Busy: writes are streaming in from many tasks, so
            # wait a little for the next one; the batch ends at the first quiet gap.
            if not busy:
                return
            with trio.move_on_at(min(deadline, trio.current_time() + QUIET_GAP)) as scope:
                try:
                    batch.append(await self._receive.receive())
                except trio.EndOfChannel:
                    return
            if scope.cancelled_caught:
                return

    async def _commit(self, batch: list[_Request]) -> None:
        self._batches += 1
        self._largest = max(self._largest, len(batch))
        ordered = sorted(batch, key=lambda request: request.kind.phase)  # stable
        try:
            outcomes = await self._together(ordered)
        except DatabaseUnavailable as exc:
            self._unavailable()
            self._fail_all(ordered, exc)
            return
        except Exception:  # noqa: BLE001 -- any other failure: find the request(s) causing it
            self._retried += 1
            try:
                outcomes = await self._one_by_one(ordered)
            except DatabaseError as exc:
                if isinstance(exc, DatabaseUnavailable):
                    self._unavailable()
                self._fail_all(ordered, exc)
                return
        self.failing_since = None
        for request, outcome in zip(ordered, outcomes, strict=True):
            self._settle(request, outcome)

    def _unavailable(self) -> None:
        if self.failing_since is None:
            self.failing_since = trio.current_time()

    async def _together(self, ordered: list[_Request]) -> list[Any]:
        groups = [
            (kind, [request.payload for request in group])
            for kind, group in itertools.groupby(ordered, key=lambda request: request.kind)
        ]
        outcomes: list[Any] = await self._db.run_transaction(_apply_together, groups)
        self._transactions += 1
        return outcomes

    async def _one_by_one(self, ordered: list[_Request]) -> list[Any]:
        requests = [(request.kind, request.payload) for request in ordered]
        outcomes: list[Any] = await self._db.run_transaction(_apply_one_by_one, requests)
        self._transactions += 1
        return outcomes

    def _fail_all(self, requests: list[_Request], exc: DatabaseError) -> None:
        for request in requests:
            error: Exception
            if isinstance(exc, DatabaseUnavailable):
                error = StoreUnavailable(f"write not committed, database unavailable: {exc}")
            else:
                error = StoreError(f"write not committed: {exc}")
            self._settle(request, _chained(error, exc))

    def _settle(self, request: _Request, outcome: Any) -> None:
        self._requests += 1
        if isinstance(outcome, Failure):
            outcome = outcome.error
        if isinstance(outcome, Exception):
            self._failed += 1
            request.error = outcome
        else:
            request.result = outcome
        request.done.set()
