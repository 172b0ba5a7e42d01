"""The webhook deliverer: POSTs the outbox's due notifications, at least once.

The outbox (the store's ``notifications`` table) is written in the same transaction as the
status change or inbound message it reports, so nothing is lost if the gateway stops. This
task reads due rows, POSTs each one's JSON to its target, and records the outcome:

- a 2xx answer, and only that, marks the row delivered (``complete_notifications``). A crash
  between the answer and that write sends the row again later: receivers de-duplicate on the
  event id, which is the same on every attempt;
- anything else (another status, a refused connection, a timeout) reschedules it with
  exponential backoff and jitter (``retry_notification``), until ``retry_period`` after the
  row was created or ``max_attempts``; then it is given up: state ``dead``, kept for inspection.

Each request carries ``X-Smsgw-Event-Id``, ``X-Smsgw-Timestamp`` and (with a secret)
``X-Smsgw-Signature`` (:mod:`smsgw.signing`); the event id is also the body's first key. A
target that takes batches (``[[webhooks.batching]]``) gets up to ``max_events`` due
notifications per request, ``{"events": [...]}`` with ``X-Smsgw-Event-Count`` instead of the
event id header; the answer applies to every event of the request.

Two clocks: ``clock`` is wall-clock epoch seconds, the store's time (``next_attempt_at``, the
timestamp header), injectable for tests; waits use Trio's clock. ``deliver_due`` is one pass
(tests, draining); ``run`` is the long-running task: a poller feeding a bounded channel to
``concurrency`` workers, woken early by :meth:`WebhookDeliverer.wake`, and a recorder that writes
the workers' outcomes in batches (one store call for all the rows delivered meanwhile).

HTTP goes through :mod:`smsgw.webhook_http` (keep-alive connections, h11), or any object with
the :class:`WebhookClient` methods given as ``client``.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Protocol

import attrs
import trio

from .config import WebhooksConfig
from .model import Notification
from .outage import Outage
from .signing import sign
from .storage.errors import StoreError, StoreUnavailable
from .webhook_http import DeliveryFailed, HttpPool

__all__ = [
    "EVENT_COUNT_HEADER",
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Outcome",
    "PassResult",
    "WebhookClient",
    "WebhookDeliverer",
    "WebhookStats",
    "batch_body",
    "event_id",
    "next_attempt_at",
    "request_body",
    "requests_for",
]

log = logging.getLogger("smsgw.webhooks")

EVENT_ID_HEADER = "X-Smsgw-Event-Id"
EVENT_COUNT_HEADER = "X-Smsgw-Event-Count"
TIMESTAMP_HEADER = "X-Smsgw-Timestamp"
SIGNATURE_HEADER = "X-Smsgw-Signature"

USER_AGENT = "smsgw-webhooks/1"

# The request headers as h11 takes them (bytes), built once.
_USER_AGENT = (b"User-Agent", USER_AGENT.encode("ascii"))
_CONTENT_TYPE = (b"Content-Type", b"application/json")
_EVENT_ID = EVENT_ID_HEADER.encode("ascii")
_EVENT_COUNT = EVENT_COUNT_HEADER.encode("ascii")
_TIMESTAMP = TIMESTAMP_HEADER.encode("ascii")
_SIGNATURE = SIGNATURE_HEADER.encode("ascii")


class OutboxStore(Protocol):
    """What the deliverer needs of :class:`smsgw.storage.Store`."""

    async def pending_notifications(
        self, limit: int = 100, *, now: float | None = None, excluding: Collection[int] = ()
    ) -> list[Notification]: ...

    async def complete_notifications(
        self, seqs: Sequence[int], *, at: float | None = None
    ) -> None: ...

    async def retry_notification(
        self, seq: int, *, error: str, next_attempt_at: float | None, at: float | None = None
    ) -> None: ...

    async def defer_notifications(self, seqs: Sequence[int], *, until: float) -> None: ...


class WebhookClient(Protocol):
    """How the deliverer POSTs (:class:`smsgw.webhook_http.HttpPool`; tests and the benchmark
    pass others). ``post`` returns the answer's status, or raises
    :class:`~smsgw.webhook_http.DeliveryFailed` with a short reason when there was none; it
    follows no redirect and keeps no deadline of its own (the deliverer cancels it)."""

    async def post(self, url: str, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> int: ...

    async def aclose(self) -> None: ...


class WebhookMetrics(Protocol):
    """What the deliverer reports (:class:`smsgw.metrics.Metrics` has these)."""

    def webhook_result(self, ok: bool) -> None: ...

    def webhook_gave_up(self) -> None: ...


# --- pure parts -------------------------------------------------------------------------------


def event_id(notification: Notification) -> str:
    """The notification's event id: the same on every attempt, different for every row.

    Derived from the row (its seq, creation time, kind and body) rather than stored, so the
    outbox schema needs no column: a retry after a crash carries the same id.
    """
    n = notification
    text = f"{n.seq}\x00{n.created_at!r}\x00{n.kind.value}\x00{n.subject or ''}\x00{n.body}"
    return "evt_" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def request_body(notification: Notification, event: str) -> bytes:
    """The bytes POSTed: the stored JSON object with ``event_id`` as its first key (so the id is
    covered by the signature too). A body that is not a JSON object is sent as stored."""
    try:
        document = json.loads(notification.body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return notification.body.encode("utf-8")
    document.pop("event_id", None)
    return json.dumps(
        {"event_id": event, **document}, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def batch_body(bodies: Sequence[bytes]) -> bytes:
    """The bytes POSTed to a target that takes batches: ``{"events": [...]}`` around the
    events' own bodies (:func:`request_body`), in order."""
    return b'{"events":[' + b",".join(bodies) + b"]}"


#: One request: due notifications to one target (one, or several for a target that takes
#: batches), POSTed together; the answer applies to each.
Request = tuple[Notification, ...]


def requests_for(notifications: Sequence[Notification], config: WebhooksConfig) -> list[Request]:
    """The requests that carry ``notifications`` (due ones, in the order read): each alone,
    except to a target that takes batches, whose notifications go together in that order, up
    to its ``max_events`` per request. A request stands where its first notification stood,
    so the oldest due go first."""
    requests: list[list[Notification]] = []
    open_: dict[str, list[Notification]] = {}  # per batched target: its request with room
    for notification in notifications:
        target = notification.target
        batching = config.batching_for(target)
        if batching is None:
            requests.append([notification])
            continue
        request = open_.get(target)
        if request is None:
            request = open_[target] = []
            requests.append(request)
        request.append(notification)
        if len(request) >= batching.max_events:
            del open_[target]
    return [tuple(request) for request in requests]


#: First and longest pause before outcomes the database did not take are written again, while
#: no new outcome comes to be written with them (seconds).
RECORD_RETRY = (0.1, 5.0)
#: The shortest wait before a notification is tried again (seconds).
MIN_RETRY_DELAY = 0.1


#: Longest the due rows of a failing target at its cap are held back.
DEFER_MAX = 60.0
#: Failing target URLs remembered at most.
FAILING_TARGETS = 10_000


def defer_for(failing: int) -> float:
    """Seconds to hold back the due rows of a target at its cap after ``failing`` (>= 1)
    failed attempts in a row: 2 s, doubling with each failure, up to :data:`DEFER_MAX`."""
    return min(DEFER_MAX, 2.0 ** min(max(failing, 1), 16))


def next_attempt_at(
    config: WebhooksConfig,
    *,
    attempts: int,
    created_at: float,
    now: float,
    rand: float,
) -> float | None:
    """When to try again after ``attempts`` failed attempts (this one included), or None to
    give up. ``rand`` in [0, 1) picks the jitter.

    The delay is ``backoff_initial * backoff_multiplier**(attempts - 1)``, capped at
    ``backoff_max``, minus up to ``jitter`` of itself, and never under :data:`MIN_RETRY_DELAY`
    (a jitter of 1 could otherwise make it nothing). A retry that would fall after the end of
    the retry period is moved to that end, so the last attempt happens at the deadline.
    """
    if attempts >= config.max_attempts:
        return None
    deadline = created_at + config.retry_period
    if now >= deadline:
        return None
    exponent = min(attempts - 1, 64)  # a long outage must not overflow the float
    base = min(config.backoff_max, config.backoff_initial * config.backoff_multiplier**exponent)
    delay = max(MIN_RETRY_DELAY, base * (1.0 - config.jitter * rand))
    return min(now + delay, deadline)


# --- results ----------------------------------------------------------------------------------


@attrs.frozen
class Outcome:
    """One attempt: ``error`` None means delivered; ``retry_at`` None after an error: gave up."""

    seq: int
    event_id: str
    error: str | None
    retry_at: float | None = None

    @property
    def delivered(self) -> bool:
        return self.error is None


@attrs.frozen
class Attempt:
    """One POST done, its outcome not yet written: ``error`` None means a 2xx."""

    notification: Notification
    event_id: str
    error: str | None


@attrs.define
class _Unwritten:
    """The outcomes of one write that the database was unavailable for (to try again), and
    its error. Those refused for another reason are logged and dropped: their rows stay
    pending and are sent again (at least once)."""

    attempts: list[Attempt] = attrs.Factory(list)
    error: StoreUnavailable | None = None

    def add(self, attempts: Sequence[Attempt], error: StoreError) -> None:
        if isinstance(error, StoreUnavailable):
            self.attempts.extend(attempts)
            self.error = error
        else:
            log.warning("webhooks: %d outcome(s) not recorded: %s", len(attempts), error)


@attrs.frozen
class PassResult:
    """What one :meth:`WebhookDeliverer.deliver_due` pass did."""

    outcomes: tuple[Outcome, ...]

    @property
    def delivered(self) -> int:
        return sum(1 for o in self.outcomes if o.delivered)

    @property
    def retried(self) -> int:
        return sum(1 for o in self.outcomes if not o.delivered and o.retry_at is not None)

    @property
    def gave_up(self) -> int:
        return sum(1 for o in self.outcomes if not o.delivered and o.retry_at is None)


@attrs.frozen
class WebhookStats:
    """Counters since the deliverer was created (attempts = delivered + failed)."""

    delivered: int
    failed: int
    gave_up: int
    in_flight: int


# --- the deliverer ----------------------------------------------------------------------------


class WebhookDeliverer:
    """Delivers the outbox (see the module docstring).

    ``client``: the HTTP client to POST with (its owner closes it), anything with the
    :class:`WebhookClient` methods; None: an :class:`~smsgw.webhook_http.HttpPool` of
    ``concurrency`` connections, blocking ``blocked_networks``, is made per :meth:`run` /
    :meth:`deliver_due`. ``clock``: wall-clock epoch seconds; ``rand``: floats in [0, 1) for
    the jitter.
    """

    def __init__(
        self,
        store: OutboxStore,
        config: WebhooksConfig,
        *,
        client: WebhookClient | None = None,
        metrics: WebhookMetrics | None = None,
        clock: Callable[[], float] = time.time,  # wall-clock
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._config = config
        self._client = client
        self._metrics = metrics
        self._clock = clock
        self._rand = rand
        self._wake = trio.Event()
        self._pools: set[HttpPool] = set()  # made by this deliverer and in use now
        self._in_flight: set[int] = set()
        #: Requests under way per target URL (at most ``per_target_concurrency`` for one
        #: whose last attempt failed).
        self._busy: collections.Counter[str] = collections.Counter()
        #: Failed attempts in a row per target URL (a success forgets it): how long the due
        #: rows of a target at its cap are held back (:func:`defer_for`). Bounded: clients
        #: choose the URLs, so the targets failed the longest ago are forgotten first.
        self._failing: collections.OrderedDict[str, int] = collections.OrderedDict()
        #: Outcomes the database did not take: logged once with reminders while it lasts.
        self._not_recorded = Outage(log, "recording webhook outcomes (kept and tried again)")
        self._delivered = 0
        self._failed = 0
        self._gave_up = 0

    def stats(self) -> WebhookStats:
        return WebhookStats(self._delivered, self._failed, self._gave_up, len(self._in_flight))

    @property
    def failing_targets(self) -> tuple[str, ...]:
        """The target URLs whose last attempt failed (limited to ``per_target_concurrency``
        requests at once), the longest failing first; at most :data:`FAILING_TARGETS`."""
        return tuple(self._failing)

    def reconfigure(self, config: WebhooksConfig) -> None:
        """Take a reloaded ``[webhooks]``: secrets, timeout and retry schedule apply to the next
        attempt, ``blocked_networks`` to the next connection opened (its own pools; a
        ``client`` given is its owner's); ``concurrency`` only when :meth:`run` starts again
        (its workers are running)."""
        self._config = config
        for pool in self._pools:
            pool.set_blocked(config.blocked_networks)

    def wake(self) -> None:
        """Look at the outbox now (new notifications were enqueued). Safe from any Trio task."""
        self._wake.set()

    async def deliver_due(self) -> PassResult:
        """One pass: every notification due now (up to ``batch_size``), ``concurrency`` at a
        time; returns when each has been delivered or rescheduled. The outcomes are written
        together at the end of the pass; one that could not be written is logged and missing
        from the result (its row is still pending)."""
        due = await self._store.pending_notifications(self._config.batch_size, now=self._clock())
        attempts: list[Attempt] = []
        limiter = trio.CapacityLimiter(self._config.concurrency)

        async def one(client: WebhookClient, request: Request) -> None:
            async with limiter:
                attempts.extend(await self._attempt(client, request))

        async with self._client_in_use() as client, trio.open_nursery() as nursery:
            for request in requests_for(due, self._config):
                nursery.start_soon(one, client, request)
        outcomes = await self._record(attempts)
        return PassResult(tuple(sorted(outcomes, key=lambda o: o.seq)))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver until cancelled: a poller hands due rows to ``concurrency`` workers, whose
        outcomes a recorder writes to the store in batches."""
        concurrency = self._config.concurrency
        send, receive = trio.open_memory_channel[Request](0)
        # Room for about one batch of outcomes while the previous batch is being written; when
        # it is full the workers wait, so a slow store slows the deliveries down.
        done_send, done_receive = trio.open_memory_channel[Attempt](
            max(concurrency, self._config.batch_size)
        )
        try:
            async with self._client_in_use() as client, trio.open_nursery() as nursery:
                nursery.start_soon(self._recorder, done_receive)
                async with done_send:
                    for _ in range(concurrency):
                        nursery.start_soon(self._worker, client, receive.clone(), done_send.clone())
                receive.close()
                task_status.started()
                async with send:
                    await self._poll(send)
        finally:
            # Every task of this run has ended: nothing is in flight any more. Rows whose
            # outcome was not written are still pending; a restarted run must send them again.
            self._in_flight.clear()
            self._busy.clear()

    async def _poll(self, send: trio.MemorySendChannel[Request]) -> None:
        while True:
            self._wake = trio.Event()
            # Rows in flight are still pending (so due): the read leaves them out.
            now = self._clock()
            due = await self._store.pending_notifications(
                self._config.batch_size, now=now, excluding=self._in_flight
            )
            cap = self._config.per_target_concurrency
            held: dict[str, list[int]] = collections.defaultdict(list)
            for request in requests_for(due, self._config):
                target = request[0].target
                # A target whose last attempt failed gets no more than its cap of requests at
                # once: one that hangs cannot take every worker, so the others' webhooks go on.
                # One that answers may use them all (a single client's webhooks are not slowed
                # down).
                if self._failing.get(target) and self._busy[target] >= cap:
                    held[target].extend(notification.seq for notification in request)
                    continue
                self._in_flight.update(notification.seq for notification in request)
                self._busy[target] += 1
                await send.send(request)  # waits while every worker is busy
            if held and await self._hold_back(held, now):
                continue  # the rows behind them are due too: look at once
            if not due or held:
                with trio.move_on_after(self._config.poll_interval):
                    await self._wake.wait()

    async def _hold_back(self, held: Mapping[str, Sequence[int]], now: float) -> bool:
        """Make the due rows of failing targets at their cap due later (no attempt counted),
        so that the poller sees the rows behind them. False if the store did not take it."""
        try:
            for target, seqs in held.items():
                until = now + defer_for(self._failing.get(target, 0))
                await self._store.defer_notifications(seqs, until=until)
        except StoreError as exc:
            log.debug("webhooks: due rows of busy targets not held back: %s", exc)
            return False
        return True

    async def _worker(
        self,
        client: WebhookClient,
        receive: trio.MemoryReceiveChannel[Request],
        done: trio.MemorySendChannel[Attempt],
    ) -> None:
        async with receive, done:
            async for request in receive:
                target = request[0].target
                try:
                    attempts = await self._attempt(client, request)
                finally:
                    self._busy[target] -= 1
                    if self._busy[target] <= 0:
                        del self._busy[target]
                if attempts[0].error is None:
                    self._failing.pop(target, None)
                else:
                    self._failing[target] = self._failing.get(target, 0) + 1
                    self._failing.move_to_end(target)
                    if len(self._failing) > FAILING_TARGETS:
                        self._failing.popitem(last=False)
                for attempt in attempts:
                    await done.send(attempt)

    async def _recorder(self, done: trio.MemoryReceiveChannel[Attempt]) -> None:
        """Write the outcomes that arrived while the previous write was under way, together.

        An outcome the store does not take (the database is unavailable: locked, disk full) is
        kept and written with the next ones, or after a pause (doubling, up to
        :data:`RECORD_RETRY`'s longest) if none come. Its row stays in flight meanwhile, so the
        poller, which still reads it as due, does not POST it again and again while the
        database is down. If the gateway stops first, the row is sent again after the restart
        (at least once)."""
        unwritten: list[Attempt] = []
        pause = RECORD_RETRY[0]
        async with done:
            while True:
                batch, unwritten = unwritten, []
                if batch:
                    with trio.move_on_after(pause), contextlib.suppress(trio.EndOfChannel):
                        batch.append(await done.receive())
                else:
                    try:
                        batch.append(await done.receive())
                    except trio.EndOfChannel:
                        return
                while True:
                    try:
                        batch.append(done.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                written = False
                try:
                    written = bool(await self._record(batch, kept=unwritten))
                finally:
                    kept = {attempt.notification.seq for attempt in unwritten}
                    for attempt in batch:
                        if attempt.notification.seq not in kept:
                            self._in_flight.discard(attempt.notification.seq)
                pause = RECORD_RETRY[0] if written else min(RECORD_RETRY[1], pause * 2)

    @contextlib.asynccontextmanager
    async def _client_in_use(self) -> AsyncIterator[WebhookClient]:
        """The client given (its owner closes it), else a pool made for this run."""
        if self._client is not None:
            yield self._client
            return
        pool = HttpPool(self._config.concurrency, blocked=self._config.blocked_networks)
        self._pools.add(pool)
        try:
            yield pool
        finally:
            self._pools.discard(pool)
            await pool.aclose()

    async def _attempt(self, client: WebhookClient, request: Request) -> list[Attempt]:
        """POST once; the outcome (the same for each notification of the request) is not
        written yet."""
        events = [event_id(notification) for notification in request]
        error = await self._post(client, request, events)
        return [Attempt(n, event, error) for n, event in zip(request, events, strict=True)]

    async def _record(
        self, attempts: Sequence[Attempt], *, kept: list[Attempt] | None = None
    ) -> list[Outcome]:
        """Write the outcomes of ``attempts``, concurrently so that the store commits them
        together: the delivered rows (only those that got a 2xx) in one call, each failed one
        with its next attempt (or none: given up); the outcomes written. One that cannot be
        written is left out (its row stays pending and is sent again: at least once), and
        added to ``kept`` if the database was unavailable (to try writing it again)."""
        now = self._clock()
        outcomes: list[Outcome] = []
        unwritten = _Unwritten()
        delivered = [a for a in attempts if a.error is None]
        async with trio.open_nursery() as nursery:
            if delivered:
                nursery.start_soon(self._record_delivered, delivered, now, outcomes, unwritten)
            for attempt in attempts:
                if attempt.error is not None:
                    nursery.start_soon(self._record_failure, attempt, now, outcomes, unwritten)
        if unwritten.error is not None:
            self._not_recorded.failed(unwritten.error)
            if kept is not None:
                kept.extend(unwritten.attempts)
        elif outcomes:
            self._not_recorded.succeeded()
        return outcomes

    async def _record_delivered(
        self,
        attempts: list[Attempt],
        now: float,
        outcomes: list[Outcome],
        unwritten: _Unwritten,
    ) -> None:
        try:
            await self._store.complete_notifications([a.notification.seq for a in attempts], at=now)
        except StoreError as exc:
            unwritten.add(attempts, exc)
            return
        self._delivered += len(attempts)
        for attempt in attempts:
            outcomes.append(Outcome(attempt.notification.seq, attempt.event_id, None))
            if self._metrics is not None:
                self._metrics.webhook_result(True)

    async def _record_failure(
        self, attempt: Attempt, now: float, outcomes: list[Outcome], unwritten: _Unwritten
    ) -> None:
        notification, error = attempt.notification, attempt.error
        assert error is not None
        retry_at = next_attempt_at(
            self._config,
            attempts=notification.attempts + 1,
            created_at=notification.created_at,
            now=now,
            rand=self._rand(),
        )
        try:
            await self._store.retry_notification(
                notification.seq, error=error, next_attempt_at=retry_at, at=now
            )
        except StoreError as exc:
            unwritten.add([attempt], exc)
            return
        outcomes.append(Outcome(notification.seq, attempt.event_id, error, retry_at))
        self._failed += 1
        if self._metrics is not None:
            self._metrics.webhook_result(False)
        if retry_at is None:
            self._gave_up += 1
            if self._metrics is not None:
                self._metrics.webhook_gave_up()
            log.warning(
                "webhook %s to %s given up after %d attempts: %s",
                attempt.event_id,
                notification.target,
                notification.attempts + 1,
                error,
            )

    async def _post(self, client: WebhookClient, request: Request, events: list[str]) -> str | None:
        """POST once; None on a 2xx, else why not."""
        target = request[0].target
        bodies = [request_body(n, event) for n, event in zip(request, events, strict=True)]
        timestamp = int(self._clock())
        if len(request) > 1 or self._config.batching_for(target) is not None:
            body = batch_body(bodies)
            identity = (_EVENT_COUNT, b"%d" % len(request))
        else:
            body = bodies[0]
            identity = (_EVENT_ID, events[0].encode("ascii"))
        headers = [_USER_AGENT, _CONTENT_TYPE, identity, (_TIMESTAMP, b"%d" % timestamp)]
        secret = self._config.secret_for(target)
        if secret is not None:
            headers.append((_SIGNATURE, sign(secret, timestamp, body).encode("ascii")))
        timeout = self._config.timeout
        with trio.move_on_after(timeout):
            try:
                status = await client.post(target, headers, body)
            except DeliveryFailed as exc:
                return str(exc)[:500]
            if 200 <= status < 300:
                return None
            return f"HTTP {status}"
        return f"timed out after {timeout:g}s"
