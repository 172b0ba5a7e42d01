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
``X-Smsgw-Signature`` (:mod:`smsgw.signing`); the event id is also the body's first key.

Two clocks: ``clock`` is wall-clock epoch seconds, the store's time (``next_attempt_at``, the
timestamp header), injectable for tests; waits use Trio's clock. ``deliver_due`` is one pass
(tests, draining); ``run`` is the long-running task: a poller feeding a bounded channel to
``concurrency`` workers, woken early by :meth:`WebhookDeliverer.wake`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
import httpx
import trio

from .config import WebhooksConfig
from .model import Notification
from .signing import sign
from .storage.errors import StoreError

__all__ = [
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Outcome",
    "PassResult",
    "WebhookDeliverer",
    "WebhookStats",
    "event_id",
    "next_attempt_at",
    "request_body",
]

log = logging.getLogger("smsgw.webhooks")

EVENT_ID_HEADER = "X-Smsgw-Event-Id"
TIMESTAMP_HEADER = "X-Smsgw-Timestamp"
SIGNATURE_HEADER = "X-Smsgw-Signature"

USER_AGENT = "smsgw-webhooks/1"


class OutboxStore(Protocol):
    """What the deliverer needs of :class:`smsgw.storage.Store`."""

    async def pending_notifications(
        self, limit: int = 100, *, now: float | None = None
    ) -> list[Notification]: ...

    async def complete_notifications(
        self, seqs: Sequence[int], *, at: float | None = None
    ) -> None: ...

    async def retry_notification(
        self, seq: int, *, error: str, next_attempt_at: float | None, at: float | None = None
    ) -> None: ...


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


#: The shortest wait before a notification is tried again (seconds).
MIN_RETRY_DELAY = 0.1


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

    ``client``: an ``httpx.AsyncClient`` to use (its owner closes it); None: one is made per
    :meth:`run` / :meth:`deliver_due`. ``clock``: wall-clock epoch seconds; ``rand``: floats in
    [0, 1) for the jitter.
    """

    def __init__(
        self,
        store: OutboxStore,
        config: WebhooksConfig,
        *,
        client: httpx.AsyncClient | None = None,
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
        self._in_flight: set[int] = set()
        self._delivered = 0
        self._failed = 0
        self._gave_up = 0

    def stats(self) -> WebhookStats:
        return WebhookStats(self._delivered, self._failed, self._gave_up, len(self._in_flight))

    def reconfigure(self, config: WebhooksConfig) -> None:
        """Take a reloaded ``[webhooks]``: secrets, timeout and retry schedule apply to the next
        attempt; ``concurrency`` only when :meth:`run` starts again (its workers are running)."""
        self._config = config

    def wake(self) -> None:
        """Look at the outbox now (new notifications were enqueued). Safe from any Trio task."""
        self._wake.set()

    def _new_client(self) -> httpx.AsyncClient:
        # Our own total deadline (move_on_after) owns the timeout; httpx's is a backstop.
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self._config.timeout),
            limits=httpx.Limits(max_connections=self._config.concurrency),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )

    async def deliver_due(self) -> PassResult:
        """One pass: every notification due now (up to ``batch_size``), ``concurrency`` at a
        time; returns when each has been delivered or rescheduled."""
        due = await self._store.pending_notifications(self._config.batch_size, now=self._clock())
        outcomes: list[Outcome] = []
        limiter = trio.CapacityLimiter(self._config.concurrency)

        async def one(client: httpx.AsyncClient, notification: Notification) -> None:
            async with limiter:
                outcomes.append(await self._deliver(client, notification))

        async with self._client_in_use() as client, trio.open_nursery() as nursery:
            for notification in due:
                nursery.start_soon(one, client, notification)
        return PassResult(tuple(sorted(outcomes, key=lambda o: o.seq)))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver until cancelled: a poller hands due rows to ``concurrency`` workers."""
        send, receive = trio.open_memory_channel[Notification](0)
        async with self._client_in_use() as client, trio.open_nursery() as nursery:
            for _ in range(self._config.concurrency):
                nursery.start_soon(self._worker, client, receive.clone())
            receive.close()
            task_status.started()
            async with send:
                await self._poll(send)

    async def _poll(self, send: trio.MemorySendChannel[Notification]) -> None:
        while True:
            self._wake = trio.Event()
            # Rows in flight are still pending (so due): ask for enough to see new ones past them.
            limit = self._config.batch_size + len(self._in_flight)
            due = await self._store.pending_notifications(limit, now=self._clock())
            fresh = [n for n in due if n.seq not in self._in_flight]
            for notification in fresh:
                self._in_flight.add(notification.seq)
                await send.send(notification)  # waits while every worker is busy
            if not fresh:
                with trio.move_on_after(self._config.poll_interval):
                    await self._wake.wait()

    async def _worker(
        self, client: httpx.AsyncClient, receive: trio.MemoryReceiveChannel[Notification]
    ) -> None:
        async with receive:
            async for notification in receive:
                try:
                    await self._deliver(client, notification)
                except StoreError as exc:
                    # The row stays pending and is sent again: at-least-once holds.
                    log.warning("webhook %s: outcome not recorded: %s", notification.seq, exc)
                finally:
                    self._in_flight.discard(notification.seq)

    def _client_in_use(self) -> httpx.AsyncClient | _Borrowed:
        return self._new_client() if self._client is None else _Borrowed(self._client)

    async def _deliver(self, client: httpx.AsyncClient, notification: Notification) -> Outcome:
        """One attempt, and its outcome written to the store."""
        event = event_id(notification)
        error = await self._post(client, notification, event)
        now = self._clock()
        if error is None:
            await self._store.complete_notifications([notification.seq], at=now)
            self._delivered += 1
            if self._metrics is not None:
                self._metrics.webhook_result(True)
            return Outcome(notification.seq, event, None)
        retry_at = next_attempt_at(
            self._config,
            attempts=notification.attempts + 1,
            created_at=notification.created_at,
            now=now,
            rand=self._rand(),
        )
        await self._store.retry_notification(
            notification.seq, error=error, next_attempt_at=retry_at, at=now
        )
        self._failed += 1
        if self._metrics is not None:
            self._metrics.webhook_result(False)
        if retry_at is None:
            self._gave_up += 1
            if self._metrics is not None:
                self._metrics.webhook_gave_up()
            log.warning(
                "webhook %s to %s given up after %d attempts: %s",
                event,
                notification.target,
                notification.attempts + 1,
                error,
            )
        return Outcome(notification.seq, event, error, retry_at)

    async def _post(
        self, client: httpx.AsyncClient, notification: Notification, event: str
    ) -> str | None:
        """POST once; None on a 2xx, else why not. Only the status line is read: a receiver's
        answer body is of no use and must not cost memory."""
        body = request_body(notification, event)
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: event,
            TIMESTAMP_HEADER: str(timestamp),
        }
        secret = self._config.secret_for(notification.target)
        if secret is not None:
            headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
        timeout = self._config.timeout
        with trio.move_on_after(timeout):
            try:
                async with client.stream(
                    "POST", notification.target, content=body, headers=headers
                ) as response:
                    status = response.status_code
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return f"{type(exc).__name__}: {exc}"[:500]
            if 200 <= status < 300:
                return None
            return f"HTTP {status}"
        return f"timed out after {timeout:g}s"


class _Borrowed:
    """A client someone else owns, used as a context manager that does not close it."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def __aenter__(self) -> httpx.AsyncClient:
        return self._client

    async def __aexit__(self, *exc_info: object) -> None:
        return None
