"""The message processor: queue consumers that take each message from lease to a final decision.

One consumer (:meth:`Processor.consume`) loops: lease a batch (highest priority first), work on
every message of it at once in its own nursery, keep the leases alive meanwhile, ack the batch
in one call. For one message (:meth:`Processor.process`)::

    decode payload ─ expired? ──────────────────────────────► expired (ack)
         │
    came back before? ─ read its parts: skip those already accepted (duplicates avoided)
         │
    route ─ no route ───────────────────────────────────────► failed + dead letter
         │
    per candidate provider:  split for it (re-split the row if the part count differs)
         │                   "submitting" per part
         │                   per part: rate limit ─ submit_sm ─ submit_sm_resp
         │                       accepted: map SMSC id, "submitted", release parked receipts
         │                       throttled: AIMD cut, wait the pause, same part again (3 times),
         │                                  then give the message back without an attempt
         │                       failover: next candidate (only while no part was accepted)
         │                       retry: back to the queue after the policy's delay ("queued")
         │                       fail: unsent parts "failed", dead letter (with its history)
         └─► every part accepted: ack

Decisions live in the pure modules: :mod:`smsgw.routing` (candidates), :mod:`smsgw.ratelimit`
(token waits, AIMD), :mod:`smsgw.retry` (classification, delays), :mod:`smsgw.payload` (what the
queue carries, the retry state). This module is the I/O around them; docs/architecture.md walks
through it.

Every status change is a store event written with its webhook (``Notifier``) in one transaction.
A message whose database row is missing (the gateway crashed between queueing it and writing
its row) gets its row rebuilt from the payload at its first status write.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import logging
import math
import random
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from typing import Any

import attrs
import trio

from smpp_codec.errors import MessageIdError, TextError
from smpp_codec.pdu import SubmitSm
from smpp_codec.segment import Segment, SplitMode, split
from smpp_codec.smpptime import format_relative
from smsgw.config import GatewayConfig, ProviderConfig, QueueBackend, RateUnit, ReceiptMode
from smsgw.correlation import Match
from smsgw.dlr import DlrHandler, Notifier
from smsgw.messages import Counters
from smsgw.metrics import Metrics
from smsgw.model import (
    FINAL_STATUSES,
    MessageStatus,
    NewMessage,
    NewNotification,
    PartRef,
    ProviderStatsDelta,
    SmscIdMapping,
    StatusChange,
    StatusEvent,
)
from smsgw.outage import Outage
from smsgw.payload import (
    MessagePayload,
    PayloadError,
    RetryState,
    decode_payload,
    reason_with_state,
    retry_state,
)
from smsgw.providers import ProviderManager, ProviderUnavailable
from smsgw.queue.base import REPLAYED, Lease, LeaseLost, Queue, QueueError
from smsgw.ratelimit import ProviderLimiter, RateLimiter
from smsgw.retry import Outcome, classify_exception
from smsgw.routing import (
    CachedHealth,
    MessageAttrs,
    NoRoute,
    RouteDecision,
    Router,
    next_provider,
)
from smsgw.status_batch import StatusBatcher
from smsgw.storage import (
    DuplicateId,
    MessageStateError,
    Store,
    StoreError,
    StoreUnavailable,
    UnknownMessage,
)
from smsgw.storage.writes import RecordResult

__all__ = ["MAX_INLINE_THROTTLES", "Processor", "ProviderStatsBuffer", "Settings", "reference_for"]

log = logging.getLogger("smsgw.processor")

#: Throttles of one part retried in place (after the AIMD pause) before the message is given
#: back to the queue.
MAX_INLINE_THROTTLES = 3
#: How long a provider's health answer is reused for routing (seconds).
HEALTH_TTL = 0.1
#: The longest an idle consumer that is not the one polling for the others waits before it
#: looks at the queue itself (seconds); it is woken at once when there is work.
IDLE_WAIT = 5.0
#: The first event of a row written from the queue for a message leased from a shared queue
#: (another instance accepted it, or this one crashed before writing its row).
SHARED_ROW = "accepted (row written here from the shared queue)"
#: Why a failed part of a replayed message goes back to "queued" when it is leased.
_REOPENED = "replayed from the dead-letter queue (on another instance)"
#: First and longest pause between two tries of recording a part the SMSC accepted while the
#: database is unavailable (:meth:`Processor._record_accepted`).
_RECORD_RETRY = (0.1, 2.0)
#: Longest time spent acking and giving back a batch's messages (shielded from cancellation).
_SETTLE_TIMEOUT = 5.0


def reference_for(message_id: str, mode: SplitMode) -> int:
    """The concatenation reference of a message: derived from its id, so every attempt of the
    same message (a resend of a missing part included) uses the same one."""
    digest = int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=4).digest(), "big")
    return digest % (256 if mode is SplitMode.UDH8 else 65536)


@attrs.frozen
class Settings:
    """What a reload replaces at once: the providers, the routes, the limits, the retry policy."""

    config: GatewayConfig
    providers: dict[str, ProviderConfig]
    router: Router
    limiter: RateLimiter

    @classmethod
    def from_config(cls, config: GatewayConfig, previous: Settings | None = None) -> Settings:
        """Settings for ``config``. Limiters of providers whose rate settings did not change are
        carried over from ``previous``, so a reload keeps their AIMD state."""
        fresh = RateLimiter.from_config(config)
        limiters: dict[str, ProviderLimiter] = dict(fresh.providers)
        if previous is not None and previous.config.rate_limit == config.rate_limit:
            for name, provider in ((p.name, p) for p in config.providers):
                old = previous.providers.get(name)
                if old is not None and old.rate == provider.rate:
                    limiters[name] = previous.limiter.providers[name]
            global_bucket = previous.limiter.global_bucket
        else:
            global_bucket = fresh.global_bucket
        return cls(
            config=config,
            providers={p.name: p for p in config.providers},
            router=Router(config.routes, config.providers),
            limiter=RateLimiter(global_bucket, limiters),
        )


class ProviderStatsBuffer:
    """Per-provider counters gathered in memory and written to the store's minute buckets by a
    periodic :meth:`flush` (one write per provider, not one per message)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._pending: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def add(self, provider: str, **counts: float) -> None:
        bucket = self._pending[provider]
        for name, value in counts.items():
            bucket[name] += value

    async def flush(self, store: Store) -> None:
        """Write the counts gathered since the last flush. If the store does not take them,
        they are kept (added to those of the next flush) and the store's error is raised."""
        pending, self._pending = self._pending, defaultdict(lambda: defaultdict(float))
        deltas = [
            ProviderStatsDelta(
                provider=provider,
                submitted=int(c["submitted"]),
                failed=int(c["failed"]),
                throttled=int(c["throttled"]),
                receipts=int(c["receipts"]),
                latency_sum=c["latency_sum"],
                latency_count=int(c["latency_count"]),
                at=self._clock(),
            )
            for provider, c in pending.items()
        ]
        if not deltas:
            return
        try:
            await store.record_provider_stats(deltas)
        except StoreError:
            for provider, counts in pending.items():
                self.add(provider, **counts)
            raise


class _Refused(Exception):
    """The message was refused to its client after it was queued (its row was not written,
    and the queue could not take it back): it is not to be sent."""


class _NotSent(Exception):
    """The gateway is stopping and the part about to go out has not: no bound connection took
    it, or it waits for its rate (the message goes back to the queue at once, no attempt
    counted)."""


class _Verdict(enum.Enum):
    ACK = "ack"  # done: ack with the batch
    HANDLED = "handled"  # nacked or dead-lettered already


@attrs.define
class _Job:
    """One leased message being worked on."""

    lease: Lease
    payload: MessagePayload
    state: RetryState
    #: The part count of its database row (as far as this job knows).
    parts: int
    #: Parts the SMSC took, and through which provider.
    accepted: dict[int, str] = attrs.Factory(dict)
    #: Parts already final without an SMSC id (failed, expired): not sent again.
    closed: set[int] = attrs.Factory(set)
    tried: list[str] = attrs.Factory(list)
    #: The row exists (it was read, or a write succeeded on it).
    row_known: bool = False
    #: Merges this job's status writes with those of the other jobs of its batch.
    batcher: StatusBatcher | None = None

    @property
    def id(self) -> str:
        return self.payload.id

    def open_parts(self, total: int) -> list[int]:
        return [n for n in range(1, total + 1) if n not in self.accepted and n not in self.closed]


@attrs.frozen
class _Attempt:
    """How sending through one provider ended: ``outcome`` None means every part was taken."""

    outcome: Outcome | None
    reason: str = ""


def _describe(exc: BaseException, provider: str) -> str:
    name = getattr(exc, "status_name", None)
    if isinstance(name, str):
        return f"{name} from {provider}"
    text = str(exc)
    return f"{type(exc).__name__} from {provider}" + (f": {text}" if text else "")


class Processor:
    """The queue consumers and the per-message pipeline (module docstring).

    ``settings`` is read at every step, so :meth:`update` (a reload) takes effect for the next
    message or part. ``rng`` draws the retry jitter; ``clock`` is wall-clock epoch seconds (for
    validity and the database), Trio's clock drives every wait. ``storing``: the ids of the
    messages this process has queued and is writing the rows of now (the gateway's submit).
    ``refused``: the ids of messages the gateway refused after queueing them, and could not
    take out of the queue: acked without being sent when leased (then forgotten).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        queue: Queue,
        manager: ProviderManager,
        dlr: DlrHandler,
        notifier: Notifier,
        counters: Counters,
        stats: ProviderStatsBuffer,
        clock: Callable[[], float],
        rng: random.Random,
        instance: str = "smsgw",
        metrics: Metrics | None = None,
        webhooks_due: Callable[[], None] = lambda: None,
        storing: Collection[str] = frozenset(),
        refused: set[str] | None = None,
    ) -> None:
        self.settings = settings
        self._storing = storing
        self._refused = refused if refused is not None else set()
        self._metrics = metrics if metrics is not None else Metrics(process=False)
        #: Called after a status write that made webhook notifications (wakes the deliverer).
        self._webhooks_due = webhooks_due
        self._store = store
        self._queue = queue
        self._manager = manager
        self._dlr = dlr
        self._notifier = notifier
        self._counters = counters
        self._stats = stats
        self._clock = clock
        self._rng = rng
        self._instance = instance
        #: Set by :meth:`stop`: consumers lease nothing more, unsent parts stop waiting.
        self._stopped = trio.Event()
        self._work = trio.Event()
        #: Provider health for routing, cached briefly (asked for every message).
        self._healthy = CachedHealth(manager.healthy, ttl=HEALTH_TTL, clock=trio.current_time)
        #: Idle polling: from this interval, doubling up to the maximum while the queue is empty.
        self.idle_poll = (0.005, 0.25)
        #: The idle consumer that polls for the others (None: none is idle).
        self._poller: int | None = None
        # Failures that every message meets while the database or the queue is unavailable:
        # logged once, with reminders, not a line per message (smsgw.outage).
        self._given_back = Outage(log, "processing messages (given back to the queue)")
        self._recording = Outage(log, "recording parts the SMSC accepted (trying again)")
        self._extending = Outage(log, "extending leases")
        #: The messages this process works on now, each with an event set when that ends.
        self._working: dict[str, trio.Event] = {}

    def update(self, settings: Settings) -> None:
        self.settings = settings

    def wake(self) -> None:
        """New messages were queued by this process: idle consumers look at once."""
        self._work.set()
        self._work = trio.Event()

    def stop(self) -> None:
        """Consumers lease nothing more; each returns once its batch is finished. A part not
        sent yet that waits for its rate (or, with :meth:`ProviderManager.stop_waiting`, for
        a connection) is not waited for: its message goes back to the queue."""
        self._stopped.set()
        self.wake()

    # -- consuming -------------------------------------------------------------------------

    async def consume(self, number: int) -> None:
        """One consumer; returns after :meth:`stop` (runs under the supervisor)."""
        name = f"{self._instance}/consumer-{number}"
        idle = self.idle_poll[0]
        outage = Outage(log, f"{name}: lease")
        while not self._stopped.is_set():
            queue_config = self.settings.config.queue
            # Taken before leasing: a wake() while the lease runs is not missed.
            work = self._work
            if not self._manager.has_connections:
                # The instances of a Redis queue share the connections, and this one holds
                # none now (starting, or not its share): another instance sends.
                with trio.move_on_after(self.idle_poll[1]):
                    await work.wait()
                continue
            try:
                leases = await self._queue.lease(
                    name, queue_config.lease_batch, queue_config.visibility_timeout
                )
            except QueueError as exc:
                outage.failed(exc)
                await trio.sleep(1.0)
                continue
            outage.succeeded()
            if not leases:
                if self._poller in (None, number):
                    # One idle consumer polls for all (messages coming due, another process's
                    # queueing); the others wait for its wake, or a submission's.
                    self._poller = number
                    with trio.move_on_after(idle):
                        await work.wait()
                    idle = min(self.idle_poll[1], idle * 2)
                else:
                    with trio.move_on_after(IDLE_WAIT):
                        await work.wait()
                continue
            if self._poller == number:
                self._poller = None
                self.wake()  # there may be more: the idle consumers look too
            idle = self.idle_poll[0]
            await self._run_batch(leases)

    async def _run_batch(self, leases: Sequence[Lease]) -> None:
        done: list[Lease] = []
        finished: set[str] = set()
        self._counters.in_flight += len(leases)
        batcher = StatusBatcher(self._store)
        try:
            await self._create_missing_rows(leases)
            async with trio.open_nursery() as batch:
                batch.start_soon(self._keep_alive, leases, finished)
                batch.start_soon(batcher.run)
                async with trio.open_nursery() as work:
                    for lease in leases:
                        work.start_soon(self._process_lease, lease, done, finished, batcher)
                batch.cancel_scope.cancel()
        finally:
            self._counters.in_flight -= len(leases)
            # Shielded and bounded: this also runs when a drain's grace cut the batch off.
            with trio.move_on_after(_SETTLE_TIMEOUT, shield=True):
                await self._settle(
                    done, [lease for lease in leases if lease.message.id not in finished]
                )

    async def _create_missing_rows(self, leases: Sequence[Lease]) -> None:
        """With a shared (Redis) queue: write, in one call, the database rows of the leased
        messages that have none here (those another instance accepted). Without this, each such
        message's first status write would fail and be made again alone after its row, and its
        whole batch with it. Messages this process is queueing right now are left out (their
        rows are on their way). Any trouble is left to the per-message path (:meth:`_record`).
        With the embedded queue a row is missing only after a crash: that path rebuilds it."""
        if self.settings.config.queue.backend is not QueueBackend.REDIS:
            return
        ids = {lease.message.id for lease in leases if lease.message.id not in self._storing}
        try:
            missing = ids - await self._store.existing(list(ids))
        except StoreError:
            return
        rows = []
        for lease in leases:
            if lease.message.id not in missing:
                continue
            try:
                payload = decode_payload(lease.message.payload)
            except PayloadError:
                continue  # dead-lettered by process()
            rows.append(new_message(payload, payload.parts, reason=SHARED_ROW))
        if rows:
            with contextlib.suppress(StoreError):  # e.g. its own instance wrote one meanwhile
                await self._store.create_messages(rows)

    async def _settle(self, done: Sequence[Lease], unfinished: Sequence[Lease]) -> None:
        """Ack the finished messages in one call; give the unfinished ones (cut off by a drain
        or a failure) back at once: whatever was sent of them may be sent again."""
        if done:
            try:
                await self._queue.ack(done)
                self._refused.difference_update(lease.message.id for lease in done)
            except LeaseLost as exc:
                self._counters.leases_lost += 1
                log.warning("ack after the lease expired: %s", exc)
            except QueueError as exc:
                # The messages are done; they come back when their leases expire and are then
                # found already accepted (counted as duplicates detected, not sent again).
                log.warning("ack failed: %s", exc)
        self._counters.in_flight_abandoned += len(unfinished)
        for lease in unfinished:
            # Its retry state goes with it: the attempts counted so far still count.
            found = retry_state(lease.message)
            state = RetryState(found.attempts, found.throttled, lease.message.attempts)
            try:
                await self._nack(
                    lease, delay=0.0, reason=reason_with_state("cut off while in flight", state)
                )
            except QueueError as exc:
                log.info(
                    "could not give %s back (its lease will expire): %s", lease.message.id, exc
                )

    async def _keep_alive(self, leases: Sequence[Lease], finished: set[str]) -> None:
        """Extend the leases of unfinished messages before they expire (long work)."""
        timeout = self.settings.config.queue.visibility_timeout
        while True:
            await trio.sleep(timeout / 3)
            for lease in leases:
                if lease.message.id in finished:
                    continue
                try:
                    await self._queue.extend(lease, timeout)
                except LeaseLost:
                    self._counters.leases_lost += 1
                    log.warning("lease of %s expired while it was worked on", lease.message.id)
                except QueueError as exc:
                    self._extending.failed(exc)
                    log.debug("could not extend the lease of %s: %s", lease.message.id, exc)
                else:
                    self._extending.succeeded()

    async def _process_lease(
        self,
        lease: Lease,
        done: list[Lease],
        finished: set[str],
        batcher: StatusBatcher | None = None,
    ) -> None:
        message_id = lease.message.id
        earlier = self._working.get(message_id)
        if earlier is not None:
            # Its earlier lease here expired while it was still worked on (the wall clock
            # stepped forward, the process stalled) and the queue handed it out again. Sent
            # now, what is in flight would be sent twice: once that work ends, the message's
            # history says what is left (bounded: that work gives up within a lease).
            log.info(
                "message %s leased again while this process still works on it (its lease"
                " expired): waiting for that work to end",
                message_id,
            )
            with trio.move_on_after(self.settings.config.queue.visibility_timeout):
                await earlier.wait()
        working = self._working[message_id] = trio.Event()
        try:
            await self._process_leased(lease, done, finished, batcher)
        finally:
            working.set()
            if self._working.get(message_id) is working:
                del self._working[message_id]

    async def _process_leased(
        self,
        lease: Lease,
        done: list[Lease],
        finished: set[str],
        batcher: StatusBatcher | None,
    ) -> None:
        try:
            verdict = await self.process(lease, batcher)
        except _Refused:
            log.info("message %s was refused to its client: dropped, not sent", lease.message.id)
            verdict = _Verdict.ACK
        except (StoreError, QueueError) as exc:
            # Storage or queue trouble: give the message back for later (best effort; if that
            # fails too, its lease expires).
            self._counters.processing_errors += 1
            self._given_back.failed(exc)
            log.debug("message %s given back after an error: %s", lease.message.id, exc)
            finished.add(lease.message.id)
            with contextlib.suppress(QueueError):
                await self._nack(lease, delay=1.0, reason=f"gateway error: {exc}")
            return
        finished.add(lease.message.id)
        if verdict is _Verdict.ACK:
            done.append(lease)

    # -- one message -----------------------------------------------------------------------

    async def process(self, lease: Lease, batcher: StatusBatcher | None = None) -> _Verdict:
        """Take one leased message as far as it goes now (module docstring). Its status writes
        go through ``batcher`` if given (merged with those of the other messages of its
        batch), else straight to the store."""
        queued = lease.message
        if queued.id in self._refused:
            raise _Refused(queued.id)
        try:
            payload = decode_payload(queued.payload)
        except PayloadError as exc:
            log.error("message %s has an unreadable payload: %s", queued.id, exc)
            self._counters.failed += 1
            self._counters.dead_lettered += 1
            await self._queue.dead_letter(lease, reason=f"unreadable payload: {exc}")
            return _Verdict.HANDLED
        job = _Job(lease, payload, retry_state(queued), parts=payload.parts, batcher=batcher)
        if queued.attempts > 1 or queued.last_error is not None:
            verdict = await self._load_history(job)
            if verdict is not None:
                return verdict
        now = self._clock()
        if payload.expires_at is not None and now >= payload.expires_at:
            return await self._expire(job, "validity ended before it could be sent")
        settings = self.settings
        decision = settings.router.route(
            MessageAttrs(
                destination=payload.to,
                source=payload.source,
                tags=payload.tags,  # type: ignore[arg-type]  # attrs converts to frozenset
                client=payload.client_id,
                provider=payload.provider,
            ),
            healthy=self._healthy,
        )
        if isinstance(decision, NoRoute):
            return await self._fail(job, decision.reason)
        sticky = next(iter(job.accepted.values()), None)
        provider = sticky if sticky is not None else decision.candidates[0]
        while True:
            job.tried.append(provider)
            try:
                attempt = await self._send(job, provider)
            except _NotSent as exc:
                return await self._give_back(job, str(exc))
            if attempt.outcome is None:
                self._counters.submitted += 1
                return _Verdict.ACK
            if attempt.outcome is Outcome.THROTTLE:
                return await self._requeue_throttled(job, attempt.reason)
            if attempt.outcome is Outcome.FAIL:
                return await self._fail(job, attempt.reason)
            if attempt.outcome is Outcome.FAILOVER and not job.accepted:
                following = self._next(decision, job)
                if following is not None:
                    self._counters.failovers += 1
                    log.info(
                        "message %s: failover from %s to %s (%s)",
                        job.id,
                        provider,
                        following,
                        attempt.reason,
                    )
                    provider = following
                    continue
            return await self._retry(job, attempt.reason)

    def _next(self, decision: RouteDecision, job: _Job) -> str | None:
        return next_provider(decision, job.tried, self._manager.healthy)

    async def _load_history(self, job: _Job) -> _Verdict | None:
        """A message that was leased before: which parts did the SMSC take already? Returns a
        verdict when nothing is left to send."""
        detail = await self._store.get_message(job.id)
        if detail is None:
            return None
        job.row_known = True
        job.parts = len(detail.parts)
        state, leases = job.state, job.lease.message.attempts
        # Replayed from the dead-letter queue (the mark stays through nacks, see _nack): its
        # accepted parts are expected too.
        replayed = (job.lease.message.last_error or "").startswith(REPLAYED)
        # Its failed parts are to be sent again. The replay set them back to "queued" in the
        # database of the instance it was asked of; with a shared queue that may be another
        # instance's, so a failed part of a replayed message is reopened here. (After a crash
        # between a replayed message's failure and its dead-lettering, that costs one more
        # attempt.)
        reopen = []
        for part in detail.parts:
            if part.smsc_id is not None:
                # Only a submit_sm_resp gives a part its SMSC id (whether or not its
                # "submitted" event was written too).
                job.accepted[part.part_number] = part.provider or ""
            elif part.status is MessageStatus.FAILED and replayed:
                reopen.append(part.part_number)
            elif part.status in FINAL_STATUSES:
                job.closed.add(part.part_number)
        if reopen:
            await self._record(
                job,
                [
                    StatusEvent(job.id, MessageStatus.QUEUED, _REOPENED, part_number=n)
                    for n in reopen
                ],
            )
        # Back from our own nack (a retry after some parts went through): expected. Back any
        # other way (a crash, a lost ack, an expired lease): those parts would have been sent
        # twice.
        resumed = state.lease > 0 and state.lease == leases - 1
        if job.accepted and not (resumed or replayed):
            self._counters.duplicates_detected += len(job.accepted)
            log.info(
                "message %s came back with part(s) %s already accepted: not sending them again",
                job.id,
                sorted(job.accepted),
            )
        if job.open_parts(job.parts):
            return None
        if any(p.status is MessageStatus.FAILED for p in detail.parts):
            # Failed before its dead-lettering could happen (a crash): finish that now.
            self._counters.dead_lettered += 1
            await self._queue.dead_letter(job.lease, reason=f"failed: {detail.message.reason}")
            return _Verdict.HANDLED
        return _Verdict.ACK

    # -- sending through one provider ------------------------------------------------------

    async def _send(self, job: _Job, provider: str) -> _Attempt:
        config = self.settings.providers.get(provider)
        if config is None:
            return _Attempt(Outcome.FAILOVER, f"provider {provider} is not configured any more")
        payload = job.payload
        try:
            segments = split(
                payload.content,
                encoding=payload.encoding,
                mode=config.split_mode,
                reference=reference_for(payload.id, config.split_mode),
            )
        except TextError as exc:
            return _Attempt(Outcome.FAIL, f"cannot be split for {provider}: {exc}")
        if len(segments) != job.parts:
            if job.accepted:
                return _Attempt(
                    Outcome.FAIL,
                    f"{provider} splits it in {len(segments)} parts, but {len(job.accepted)} of"
                    f" its {job.parts} parts were already accepted",
                )
            problem = await self._resplit(job, len(segments), provider)
            if problem is not None:
                return _Attempt(Outcome.FAIL, problem)
        sending = job.open_parts(len(segments))
        result = await self._record(
            job,
            [
                StatusEvent(
                    job.id,
                    MessageStatus.SUBMITTING,
                    f"submitting to {provider}",
                    part_number=n,
                    provider=provider,
                )
                for n in sending
            ],
        )
        for refused in result.refused:
            # Already final (a receipt came while it was away): not sent again.
            assert refused.part_number is not None
            job.closed.add(refused.part_number)
        for segment in segments:
            if segment.part_number not in job.open_parts(len(segments)):
                continue
            attempt = await self._submit_part(job, provider, config, segment)
            if attempt is not None:
                return attempt
        return _Attempt(None)

    async def _resplit(self, job: _Job, parts: int, provider: str) -> str | None:
        reason = f"split in {parts} parts for {provider}"
        try:
            await self._store.set_parts(job.id, parts, reason=reason)
        except UnknownMessage:
            job.parts = parts
            await self._rebuild_row(job)
        except MessageStateError as exc:
            return str(exc)
        job.parts = parts
        return None

    def _pdu(self, payload: MessagePayload, config: ProviderConfig, segment: Segment) -> SubmitSm:
        ton, npi = config.addressing.source_ton_npi(payload.source)
        wants_receipt = payload.receipt and (
            config.receipts is ReceiptMode.ALWAYS
            or (
                config.receipts is ReceiptMode.FINAL_PART
                and segment.part_number == segment.total_parts
            )
        )
        validity = ""
        if payload.expires_at is not None:
            remaining = math.ceil(payload.expires_at - self._clock())
            if 0 < remaining < 99 * 86400:
                validity = format_relative(timedelta(seconds=remaining))
        return SubmitSm(
            sequence_number=0,
            source_addr_ton=int(ton),
            source_addr_npi=int(npi),
            source_addr=payload.source,
            dest_addr_ton=int(config.addressing.dest_ton),
            dest_addr_npi=int(config.addressing.dest_npi),
            destination_addr=payload.to.removeprefix("+"),
            esm_class=segment.esm_class_flags,
            validity_period=validity,
            registered_delivery=1 if wants_receipt else 0,
            data_coding=payload.data_coding
            if payload.data_coding is not None
            else segment.data_coding,
            short_message=segment.short_message,
            optional_parameters=segment.tlvs,
        )

    async def _take_tokens(self, provider: str, config: ProviderConfig, segment: Segment) -> None:
        """Wait until the rate limits give this part its token (one per segment; per message,
        only the first part takes one)."""
        if config.rate.unit is RateUnit.MESSAGES and segment.part_number > 1:
            return
        while True:
            limiter = self.settings.limiter
            try:
                wait = limiter.try_acquire(provider, 1, trio.current_time())
            except KeyError:
                raise ProviderUnavailable(provider, "removed by a reload") from None
            if wait <= 0:
                return
            if self._stopped.is_set():
                raise _NotSent(f"not sent: the gateway stopped while it waited for {provider}")
            with trio.move_on_after(wait):
                await self._stopped.wait()

    async def _submit_part(
        self, job: _Job, provider: str, config: ProviderConfig, segment: Segment
    ) -> _Attempt | None:
        """Submit one part until it is accepted (None) or the provider's answer decides. The
        wait for the part to go out (for tokens, a connection, a window slot) ends with the
        message's validity: a part not sent by then is not sent (the retry path expires it).
        The answer, once it is sent, is waited for as long as the provider says."""
        throttles = 0
        while True:
            try:
                await self._take_tokens(provider, config, segment)
                send_by = None
                if job.payload.expires_at is not None:
                    remaining = job.payload.expires_at - self._clock()
                    if remaining <= 0:
                        return _Attempt(Outcome.RETRY, f"not sent to {provider} in time")
                    send_by = trio.current_time() + remaining
                # Made when a connection takes it: its relative validity counts from there.
                response = await self._manager.submit(
                    provider,
                    functools.partial(self._pdu, job.payload, config, segment),
                    timeout=config.request_timeout,
                    send_by=send_by,
                )
            except _NotSent:
                raise
            except Exception as exc:
                if self._stopped.is_set() and isinstance(exc, ProviderUnavailable):
                    raise _NotSent(f"not sent: the gateway stopped ({exc})") from exc
                outcome = classify_exception(exc, provider_overrides=config.status_map)
                if outcome is None:
                    raise  # not an SMPP or transport error: a bug, for the supervisor
                reason = _describe(exc, provider)
                status = getattr(exc, "command_status", None)
                if status is not None:  # an answer (not a timeout or a lost link)
                    self._metrics.submit_result(provider, status)
                if outcome is Outcome.THROTTLE:
                    self._counters.throttled += 1
                    self._stats.add(provider, throttled=1)
                    limiter = self.settings.limiter
                    if provider in limiter.providers:
                        limiter.on_throttle(provider, trio.current_time())
                    throttles += 1
                    if throttles <= MAX_INLINE_THROTTLES:
                        continue  # the limiter now holds the part for the AIMD pause
                elif outcome is not Outcome.FAIL:
                    self._stats.add(provider, failed=1)
                return _Attempt(outcome, reason)
            await self._accepted(job, provider, config, segment.part_number, response)
            return None

    async def _accepted(
        self, job: _Job, provider: str, config: ProviderConfig, part: int, response: object
    ) -> None:
        smsc_id = str(getattr(response, "message_id", ""))
        job.accepted[part] = provider
        limiter = self.settings.limiter
        if provider in limiter.providers:
            limiter.on_success(provider, trio.current_time())
        self._counters.segments_submitted += 1
        payload = job.payload
        started = payload.not_before if payload.not_before is not None else payload.created_at
        self._stats.add(
            provider,
            submitted=1,
            latency_sum=max(0.0, self._clock() - started),
            latency_count=1,
        )
        self._metrics.submit_result(provider, 0)
        self._metrics.observe_enqueue_to_submit(max(0.0, self._clock() - started))
        self._notifier.remember(payload.id, payload.callback_url)
        ref = PartRef(payload.id, part)
        mapping = SmscIdMapping(
            provider, smsc_id, payload.id, part, id_format=config.message_id_format
        )
        event = StatusEvent(
            payload.id,
            MessageStatus.SUBMITTED,
            f"accepted by {provider} as {smsc_id or '(no id)'}",
            part_number=part,
            provider=provider,
        )
        # Both writes handed over at once: they share a group commit. The DLR handler learns
        # the mapping as soon as it is queued for the writer (so receipts find it in memory;
        # their writes are committed after it), and gets the receipts that came earlier and
        # were parked, to record once the mapping is committed.
        parked: list[Match[Any]] = []

        def handed_over() -> None:
            parked.extend(self._dlr.expect(provider, smsc_id, config.message_id_format, ref))

        try:
            await self._record_accepted(job, mapping, event, handed_over)
        except StoreError:
            # Given up: the message goes back to the queue. The receipts that came before the
            # SMSC's answer still say what became of this part: recorded once the database
            # takes them, they close the part, so it is not sent again.
            self._dlr.keep_parked(parked)
            raise
        except MessageIdError as exc:
            # Refused before anything was written: record the event alone.
            log.warning(
                "%s accepted part %d of %s with an unusable message id %r: receipts cannot"
                " be matched (%s)",
                provider,
                part,
                payload.id,
                smsc_id,
                exc,
            )
            await self._record(job, [event])
            return
        job.row_known = True
        await self._dlr.apply_parked(parked)

    async def _record_accepted(
        self,
        job: _Job,
        mapping: SmscIdMapping,
        event: StatusEvent,
        handed_over: Callable[[], None],
    ) -> None:
        """Write the SMSC id of a part the SMSC accepted, with its "submitted" event.

        The SMSC has the part now: if this write is lost, the message comes back and the part
        is sent again, a second SMS on the handset. So while the database is unavailable
        (locked beyond its busy timeout, disk full), the write is tried again, for up to the
        queue's ``visibility_timeout`` (the batch keeps the lease alive meanwhile), and only
        then given up (the message is given back, as for any store error)."""
        give_up_at = trio.current_time() + self.settings.config.queue.visibility_timeout
        pause, longest = _RECORD_RETRY
        while True:
            try:
                await self._write(job, [mapping], [event], handed_over=handed_over)
            except StoreUnavailable as exc:
                if trio.current_time() + pause > give_up_at:
                    raise
                self._recording.failed(exc)
                await trio.sleep(pause)
                pause = min(longest, pause * 2)
                continue
            self._recording.succeeded()
            return

    # -- outcomes --------------------------------------------------------------------------

    def _unsent(self, job: _Job) -> list[int]:
        return job.open_parts(job.parts)

    async def _record_unsent(self, job: _Job, status: MessageStatus, reason: str) -> None:
        await self._record(
            job,
            [StatusEvent(job.id, status, reason, part_number=n) for n in self._unsent(job)],
        )

    async def _expire(self, job: _Job, reason: str) -> _Verdict:
        self._counters.expired += 1
        await self._record_unsent(job, MessageStatus.EXPIRED, reason)
        return _Verdict.ACK

    async def _fail(self, job: _Job, reason: str) -> _Verdict:
        self._counters.failed += 1
        self._counters.dead_lettered += 1
        await self._record_unsent(job, MessageStatus.FAILED, reason)
        state = job.state
        history = (
            f"{reason} [attempts: {state.attempts + 1}, throttled: {state.throttled},"
            f" providers tried: {', '.join(job.tried) or 'none'}]"
        )
        await self._queue.dead_letter(job.lease, reason=history)
        return _Verdict.HANDLED

    async def _retry(self, job: _Job, reason: str) -> _Verdict:
        policy = self.settings.config.retry
        attempt = job.state.attempts + 1
        remaining = None
        if job.payload.expires_at is not None:
            remaining = job.payload.expires_at - self._clock()
        delay = policy.next_delay(attempt, self._rng, remaining_validity=remaining)
        if remaining is not None and remaining <= 0:
            return await self._expire(job, f"validity ended (last: {reason})")
        if delay is None:
            if attempt >= policy.max_attempts:
                return await self._fail(job, f"{reason}; gave up after {attempt} attempt(s)")
            return await self._expire(
                job, f"validity ends before another attempt could be made (last: {reason})"
            )
        self._counters.retried += 1
        await self._record_unsent(
            job, MessageStatus.QUEUED, f"retry in {delay:.1f}s after attempt {attempt}: {reason}"
        )
        state = RetryState(attempt, job.state.throttled, job.lease.message.attempts)
        await self._nack(
            job.lease,
            delay=delay,
            reason=reason_with_state(
                f"{reason} (attempt {attempt} of {policy.max_attempts})", state
            ),
        )
        return _Verdict.HANDLED

    async def _give_back(self, job: _Job, reason: str) -> _Verdict:
        """Back to the queue at once, as it was: the gateway is stopping and the part about to
        go out has not (its parts accepted so far stay accepted)."""
        await self._record_unsent(job, MessageStatus.QUEUED, reason)
        state = RetryState(job.state.attempts, job.state.throttled, job.lease.message.attempts)
        await self._nack(job.lease, delay=0.0, reason=reason_with_state(reason, state))
        return _Verdict.HANDLED

    async def _requeue_throttled(self, job: _Job, reason: str) -> _Verdict:
        delay = max(0.1, self.settings.config.rate_limit.pause)
        await self._record_unsent(
            job, MessageStatus.QUEUED, f"throttled ({reason}); back in {delay:g}s"
        )
        state = RetryState(job.state.attempts, job.state.throttled + 1, job.lease.message.attempts)
        await self._nack(job.lease, delay=delay, reason=reason_with_state(reason, state))
        return _Verdict.HANDLED

    async def _nack(self, lease: Lease, *, delay: float, reason: str) -> None:
        """Give ``lease`` back to the queue. A replayed message keeps its mark
        (:data:`REPLAYED`) through its nacks, so that whichever instance leases it next still
        knows its failed parts are to be sent again (:meth:`_load_history`)."""
        if (lease.message.last_error or "").startswith(REPLAYED):
            reason = REPLAYED + reason
        await self._queue.nack(lease, delay=delay, reason=reason)

    # -- the database row ------------------------------------------------------------------

    async def _record(self, job: _Job, events: Sequence[StatusEvent]) -> RecordResult:
        """Record ``events`` with their webhooks; rebuild the row first if it is missing."""
        if not events:
            return RecordResult((), ())
        try:
            result = await self._write(job, (), events)
        except UnknownMessage:
            if job.row_known:
                raise
            if job.id in self._refused:  # its row failed while this consumer had it
                raise _Refused(job.id) from None
            await self._rebuild_row(job)
            result = await self._write(job, (), events)
        job.row_known = True
        provider = events[0].provider or (job.tried[-1] if job.tried else None)
        for change in result.changes:
            if change.new in FINAL_STATUSES:
                self._metrics.message_final(provider, change.new)
        return result

    async def _write(
        self,
        job: _Job,
        mappings: Sequence[SmscIdMapping],
        events: Sequence[StatusEvent],
        *,
        handed_over: Callable[[], None] | None = None,
    ) -> RecordResult:
        """The job's status write with its webhooks (to the message's ``callback_url``, else
        its client's default): through its batch's batcher, else straight to the store."""
        callback_url = job.payload.callback_url
        notified = False

        def notify(change: StatusChange) -> list[NewNotification]:
            nonlocal notified
            notifications = self._notifier.status(change, callback_url)
            notified = notified or bool(notifications)
            return notifications

        if job.batcher is not None:
            result = await job.batcher.write(
                mappings, events, notify=notify, handed_over=handed_over
            )
        else:
            result = await self._store.map_and_record(
                mappings, events, notify=notify, handed_over=handed_over
            )
        if notified:
            self._webhooks_due()
        return result

    async def _rebuild_row(self, job: _Job) -> None:
        """The row of a queued message is missing: the gateway stopped between queueing it and
        writing its row (docs/architecture.md, "Durability"). Write it from the payload."""
        payload = job.payload
        try:
            await self._store.create_messages([new_message(payload, job.parts, rebuilt=True)])
        except DuplicateId:
            pass  # written meanwhile by the submit that queued it
        else:
            self._counters.rows_rebuilt += 1
            log.warning("message %s had no database row: rebuilt from the queue", payload.id)
        job.row_known = True


def new_message(
    payload: MessagePayload, parts: int, *, rebuilt: bool = False, reason: str | None = None
) -> NewMessage:
    """The database row of a queued message (``reason``: its first event's, if not the
    usual)."""
    if reason is None:
        reason = "accepted (row rebuilt from the queue)" if rebuilt else "accepted"
    return NewMessage(
        id=payload.id,
        source=payload.source,
        destination=payload.to,
        parts=parts,
        client=payload.client_id,
        client_ref=payload.client_ref,
        text=payload.text,
        schedule_at=payload.not_before,
        expires_at=payload.expires_at,
        created_at=payload.created_at,
        reason=reason,
        callback_url=payload.callback_url,
    )
