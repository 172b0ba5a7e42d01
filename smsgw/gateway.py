"""The gateway: storage, queue, provider pools, consumers, DLR and MO handlers in one nursery tree.

::

    gateway = Gateway(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)          # storage and queue open: submit() works
        accepted = await gateway.submit([SubmitRequest(to="+4912345", source="ACME", text="hi")])
        view = await gateway.message(accepted[0].id)
        await gateway.drain(grace=10)             # run() returns after this

The tree :meth:`Gateway.run` builds (docs/architecture.md has the whole picture)::

    Gateway.run
    ├── queue          embedded SQLite | Redis (opened first, closed last)
    ├── store          SQLite, its group-commit writer task
    └── services nursery
        ├── provider manager           pools of SMPP clients (their own tree)
        ├── inbound dispatcher         manager.inbound -> DLR handler | MO handler  (supervised)
        ├── receipt expiry             parked receipts -> orphans                   (supervised)
        ├── MO reassembly expiry       incomplete multipart MOs -> stored           (supervised)
        ├── provider statistics flush                                               (supervised)
        ├── retention                  prune old rows                               (supervised)
        ├── webhooks                   the outbox -> HTTP POSTs                     (supervised)
        └── workers nursery
            └── N queue consumers      lease -> route -> limit -> submit -> decide  (supervised)

**Durability at submit.** A message is accepted once it is in the queue (with its whole payload)
AND has its database row, in that order. A crash between the two leaves a queued message
without a row; the processor writes the row from the payload at the message's first status
write. The other order could strand a row whose message never reached the queue, and with
several instances sharing Redis no instance could tell which rows to re-enqueue.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from smpp_codec.segment import SplitMode
from smsgw.config import GatewayConfig, ProviderConfig, QueueBackend
from smsgw.dlr import DlrHandler, Notifier
from smsgw.errors import SetupError
from smsgw.file_lock import hold_lock
from smsgw.messages import (
    Accepted,
    Counters,
    GatewayStats,
    MessageView,
    Prepared,
    Rejected,
    SubmitRequest,
    new_message_ids,
    validate,
)
from smsgw.metrics import Metrics
from smsgw.mo import MoHandler
from smsgw.model import MessageStatus, StatusEvent
from smsgw.outage import Outage
from smsgw.payload import MessagePayload, encode_payload
from smsgw.processor import Processor, ProviderStatsBuffer, Settings, new_message
from smsgw.providers import ProviderManager
from smsgw.queue.base import DeadLetter, Queue, QueueDepth, QueueError
from smsgw.queue.base import NewMessage as QueueEntry
from smsgw.queue.sqlite import SqliteQueue, open_sqlite_queue
from smsgw.routing import MessageAttrs, NoRoute, Router
from smsgw.smpp.inbound import Inbound
from smsgw.storage import (
    DuplicateId,
    Store,
    StoreError,
    StoreUnavailable,
    UnknownMessage,
    open_store,
)
from smsgw.supervise import Supervisor
from smsgw.webhooks import WebhookDeliverer

if TYPE_CHECKING:
    from pathlib import Path

    from smsgw.mo_shared import SharedParts
    from smsgw.receipt_relay import ReceiptRelay
    from smsgw.sharing import SharedLimits

__all__ = [
    "Gateway",
    "GatewayBusy",
    "GatewayError",
    "GatewayNotRunning",
    "GatewayStats",
    "GatewayUnavailable",
]

log = logging.getLogger("smsgw.gateway")

#: How often the per-provider statistics are written to the database.
STATS_INTERVAL = 10.0
#: How long a queue depth reading is reused by the backpressure check.
DEPTH_CACHE = 1.0
#: Inbound handlers running at once (a batch of receipts, or one MO each).
INBOUND_CONCURRENCY = 128
#: Receipts handled (and recorded) together at most.
RECEIPT_BATCH = 256
#: Seconds the receipt relay's reader waits for an entry before asking again.
RELAY_BLOCK = 1.0


class GatewayError(Exception):
    """Base of the errors :class:`Gateway` raises itself."""


class GatewayNotRunning(GatewayError):
    """The gateway is not running (not started yet, draining, or stopped)."""


class GatewayUnavailable(GatewayError):
    """The queue or the database cannot take the messages now; nothing of the call was
    accepted. Retrying later may succeed (HTTP 503)."""


class GatewayBusy(GatewayUnavailable):
    """The queue holds ``queue.max_depth`` messages or more: new submissions wait (HTTP 503)."""


class Gateway:
    """See the module docstring. ``clock`` is wall-clock epoch seconds (acceptance times,
    validity, the database and the embedded queue); ``rand`` draws every jitter (retries,
    reconnects, restarts). Webhook targets are set on :attr:`notifier`; :attr:`metrics` holds
    the Prometheus metrics, :attr:`webhooks` the outbox's deliverer (once running).
    ``deliver_webhooks`` False leaves the outbox undelivered (tests that inspect it)."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        clock: Callable[[], float] = time.time,  # wall-clock
        rand: random.Random | None = None,
        deliver_webhooks: bool = True,
    ) -> None:
        self.config = config
        self._deliver_webhooks = deliver_webhooks
        self._clock = clock
        self._rng = rand if rand is not None else random.Random()
        self.counters = Counters()
        self.notifier = Notifier(
            inbound=config.webhooks.inbound_url, statuses=config.webhooks.statuses
        )
        self.metrics = Metrics([p.name for p in config.providers])
        self.webhooks: WebhookDeliverer | None = None
        self.supervisor = Supervisor(rand=self._rng.random, on_failure=self._task_failed)
        self._settings = Settings.from_config(config)
        self._count_router = Router(config.routes, config.providers)
        self._store: Store | None = None
        self._queue: Queue | None = None
        self._manager: ProviderManager | None = None
        #: This instance's share of the providers' limits (a Redis queue shared by instances).
        self._shared: SharedLimits | None = None
        self._processor: Processor | None = None
        self._dlr: DlrHandler | None = None
        self._mo: MoHandler | None = None
        self._stats_buffer = ProviderStatsBuffer(clock)
        self._started = False
        self._accepting = False
        self._drain_requested = trio.Event()
        self._drain_grace = config.gateway.drain_grace
        self._stopped = trio.Event()
        self._depth: tuple[float, int] | None = None
        #: Ids of the messages queued by submit() whose rows it is writing now.
        self._storing: set[str] = set()
        #: Messages refused (the database did not take their rows) that could not be taken out
        #: of the queue either: the processor drops them when it leases them (not sent).
        self._refused: set[str] = set()

    # -- running ---------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[Gateway] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Open storage and queue, start the provider manager, consumers, DLR and MO handlers;
        ``task_status.started(self)`` once :meth:`submit` works (providers may still be
        binding). Returns after :meth:`drain` completes."""
        if self._started:
            raise RuntimeError("a Gateway runs once; make a new one")
        self._started = True
        config = self.config
        try:
            keys = {
                config.queue_path: "[queue.embedded] path",
                config.database_path: "[database] path",
            }
            for path, key in keys.items():
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise SetupError(
                        f"cannot create {path.parent} for {path.name} ([gateway] state_dir,"
                        f" or {key}): {exc.strerror or exc}"
                    ) from exc
            owned = {config.database_path: "[database] path"}
            if config.queue.backend is not QueueBackend.REDIS:
                owned[config.queue_path] = "[queue.embedded] path"
            async with (
                self._hold_locks(owned),
                self._open_queue(config) as queue,
                self._open_relay(config) as relay,
                self._open_mo_parts(config) as mo_parts,
                self._open_sharing(config) as shared,
                open_store(
                    config.database_path,
                    commit_interval=config.database.commit_interval,
                    max_batch=config.database.batch_size,
                    clock=self._clock,
                    busy_timeout=config.database.busy_timeout,
                ) as store,
            ):
                await self._serve(config, queue, store, relay, mo_parts, shared, task_status)
        finally:
            self._accepting = False
            self._queue = self._store = self._manager = self._processor = None
            self._shared = None
            self._stopped.set()

    @asynccontextmanager
    async def _hold_locks(self, owned: dict[Path, str]) -> AsyncIterator[None]:
        """Hold the lock of each file this gateway owns (:mod:`smsgw.file_lock`): a second
        gateway on the same files stops here, before it opens them."""
        with contextlib.ExitStack() as locks:
            for path, key in owned.items():
                locks.enter_context(hold_lock(path, key))
            yield

    @asynccontextmanager
    async def _open_queue(self, config: GatewayConfig) -> AsyncIterator[Queue]:
        if config.queue.backend is QueueBackend.REDIS:
            from smsgw.queue.redis import open_redis_queue

            assert config.queue.redis is not None
            async with open_redis_queue(
                config.queue.redis.url, prefix=config.queue.redis.prefix
            ) as redis_queue:
                yield redis_queue
        else:
            embedded = config.queue.embedded
            async with open_sqlite_queue(
                config.queue_path,
                clock=self._clock,
                busy_timeout=embedded.busy_timeout if embedded is not None else 5.0,
            ) as sqlite_queue:
                yield sqlite_queue

    @asynccontextmanager
    async def _open_relay(self, config: GatewayConfig) -> AsyncIterator[ReceiptRelay | None]:
        """The receipt relay of the instances sharing a Redis queue (its own connections: its
        reader waits on one); None with the embedded queue."""
        redis_config = config.queue.redis
        if config.queue.backend is not QueueBackend.REDIS or redis_config is None:
            yield None
            return
        from smsgw.adapters.redis import open_redis
        from smsgw.receipt_relay import ReceiptRelay

        # A little longer than the reader's wait, and at most 2 connections: the reader's and
        # one for publishing and deleting.
        async with open_redis(
            redis_config.url, timeout=RELAY_BLOCK + 5.0, max_connections=2
        ) as client:
            # At start, the receipts relayed during the longest park time before the cursor are
            # read again: one parked here when the last process ended was not recorded.
            rewind = max((p.early_receipt_park for p in config.providers), default=0.0)
            yield ReceiptRelay(
                client, redis_config.prefix, config.gateway.resolved_instance_id(), rewind=rewind
            )

    @asynccontextmanager
    async def _open_mo_parts(self, config: GatewayConfig) -> AsyncIterator[SharedParts | None]:
        """The parts of multipart MOs, collected in Redis for every instance of a Redis queue
        (its own connections); None with the embedded queue (collected in the database)."""
        redis_config = config.queue.redis
        if config.queue.backend is not QueueBackend.REDIS or redis_config is None:
            yield None
            return
        from smsgw.adapters.redis import open_redis
        from smsgw.mo_shared import SharedParts

        async with open_redis(redis_config.url, max_connections=4) as client:
            yield SharedParts(client, redis_config.prefix, config.gateway.resolved_instance_id())

    @asynccontextmanager
    async def _open_sharing(self, config: GatewayConfig) -> AsyncIterator[SharedLimits | None]:
        """This instance's share of the providers' limits among the instances of a Redis
        queue (its own connection); None with the embedded queue or ``share_limits`` off."""
        redis_config = config.queue.redis
        if (
            config.queue.backend is not QueueBackend.REDIS
            or redis_config is None
            or not redis_config.share_limits
        ):
            yield None
            return
        from smsgw.adapters.redis import open_redis
        from smsgw.cluster import Cluster
        from smsgw.sharing import SharedLimits

        async with open_redis(
            redis_config.url, timeout=max(1.0, redis_config.heartbeat), max_connections=1
        ) as client:
            cluster = Cluster(client, redis_config.prefix, config.gateway.resolved_instance_id())
            yield SharedLimits(
                cluster,
                config.providers,
                limiter=lambda: self._settings.limiter,
                heartbeat=redis_config.heartbeat,
                timeout=redis_config.instance_timeout,
            )

    async def _serve(
        self,
        config: GatewayConfig,
        queue: Queue,
        store: Store,
        relay: ReceiptRelay | None,
        mo_parts: SharedParts | None,
        shared: SharedLimits | None,
        task_status: trio.TaskStatus[Gateway],
    ) -> None:
        manager = ProviderManager(
            config.providers,
            rand=self._rng.random,
            metrics=self.metrics,
            connections=None if shared is None else shared.connections,
        )
        dlr = DlrHandler(
            store=store,
            counters=self.counters,
            notifier=self.notifier,
            providers=self._provider,
            count_receipt=lambda provider: self._stats_buffer.add(provider, receipts=1),
            metrics=self.metrics,
            webhooks_due=self._webhooks_due,
            relay=relay,
        )
        mo = MoHandler(
            store=store,
            counters=self.counters,
            notifier=self.notifier,
            clock=self._clock,
            reassembly_timeout=config.inbound.reassembly_timeout,
            max_pending=config.inbound.max_pending,
            webhooks_due=self._webhooks_due,
            metrics=self.metrics,
            shared=mo_parts,
        )
        processor = Processor(
            settings=self._settings,
            store=store,
            queue=queue,
            manager=manager,
            dlr=dlr,
            notifier=self.notifier,
            counters=self.counters,
            stats=self._stats_buffer,
            clock=self._clock,
            rng=self._rng,
            instance=config.gateway.resolved_instance_id(),
            metrics=self.metrics,
            webhooks_due=self._webhooks_due,
            storing=self._storing,
            refused=self._refused,
        )
        self.metrics.watch(
            providers=manager,
            rates=self,
            queue=queue,
            outbox=store,
            cluster=shared,
            inbound=mo,
            database=store,
            queue_file=queue if isinstance(queue, SqliteQueue) else None,
        )
        self.webhooks = WebhookDeliverer(
            store, config.webhooks, metrics=self.metrics, clock=self._clock, rand=self._rng.random
        )
        self._queue, self._store, self._manager, self._shared = queue, store, manager, shared
        self._dlr, self._mo, self._processor = dlr, mo, processor
        # What was stored before a restart, before anything new comes: the receipts that were
        # waiting for their mapping, and the parts of multipart MOs.
        await dlr.recover()
        await mo.recover()
        run = self.supervisor.run
        async with trio.open_nursery() as services:
            await services.start(manager.run)
            if shared is not None:
                services.start_soon(run, "shared-limits", functools.partial(shared.run, manager))
            services.start_soon(run, "inbound", functools.partial(self._dispatch_inbound, manager))
            services.start_soon(run, "receipt-expiry", dlr.run_expiry)
            if relay is not None:
                services.start_soon(
                    run, "receipt-relay", functools.partial(dlr.run_relay, block=RELAY_BLOCK)
                )
            services.start_soon(run, "mo-expiry", mo.run_expiry)
            services.start_soon(run, "provider-stats", self._flush_stats_forever)
            services.start_soon(run, "retention", self._prune_forever)
            if self._deliver_webhooks:
                services.start_soon(run, "webhooks", self.webhooks.run)
            async with trio.open_nursery() as workers:
                for number in range(config.queue.consumers):
                    workers.start_soon(
                        functools.partial(
                            run,
                            f"consumer-{number}",
                            functools.partial(processor.consume, number),
                            context={"consumer": number},
                        )
                    )
                self._accepting = True
                log.info(
                    "gateway running: %d provider(s), %d consumer(s), %s queue",
                    len(config.providers),
                    config.queue.consumers,
                    config.queue.backend.value,
                )
                task_status.started(self)
                await self._drain_requested.wait()
                self._accepting = False
                processor.stop()
                manager.stop_waiting()
                # In-flight messages finish within the grace; then they are cancelled and go
                # back to the queue (Processor._settle).
                workers.cancel_scope.deadline = trio.current_time() + self._drain_grace
            await manager.aclose(grace=max(1.0, self._drain_grace))
            if shared is not None:
                with trio.move_on_after(5.0, shield=True):
                    await shared.aclose()
            with trio.move_on_after(5.0, shield=True):
                with contextlib.suppress(StoreError):
                    await self._stats_buffer.flush(store)
            services.cancel_scope.cancel()
        log.info("gateway stopped: %s", self.counters.snapshot())

    @property
    def accepting(self) -> bool:
        """Whether :meth:`submit` takes messages now: from :meth:`run` being ready until
        :meth:`drain` is asked for."""
        return self._accepting

    async def drain(self, grace: float) -> None:
        """Stop leasing, let in-flight messages finish within ``grace`` seconds (then cancel
        them: they go back to the queue), unbind every connection, flush the database. Returns
        once :meth:`run` has finished; new submissions are refused from the start."""
        self._accepting = False
        self._drain_grace = grace
        self._drain_requested.set()
        if self._started:
            await self._stopped.wait()

    async def reload(self, config: GatewayConfig) -> None:
        """Take new providers, routes, limits, retry policy and ``[inbound]
        reassembly_timeout`` live. The queue, database and ``[gateway]`` settings (and the
        number of consumers, and ``[inbound] max_pending``) take effect only at the next start.
        """
        if self._manager is None or not self._accepting:
            raise GatewayNotRunning("the gateway is not running")
        for section in ("queue", "database", "gateway"):
            if getattr(config, section) != getattr(self.config, section):
                log.warning("[%s] changed: it takes effect at the next start", section)
        if config.inbound.max_pending != self.config.inbound.max_pending:
            log.warning("[inbound] max_pending changed: it takes effect at the next start")
        if self._mo is not None:
            self._mo.reassembly_timeout = config.inbound.reassembly_timeout
        # The connections to replace or retire are the manager's work from here on: the rest
        # is taken over at once, and only then does this wait for them (a caller that stops
        # waiting leaves no half-applied reload).
        await self._manager.reload(config.providers, wait=False)
        settings = Settings.from_config(config, previous=self._settings)
        self._settings = settings
        self._count_router = Router(config.routes, config.providers)
        if self._processor is not None:
            self._processor.update(settings)
        if self._shared is not None:
            # The new limiter takes this instance's shares at once, then the slots follow.
            self._shared.apply_rates()
            await self._shared.reconfigure(config.providers)
        self.config = config
        await self._manager.settled()

    def stats(self) -> GatewayStats:
        """A frozen snapshot of the counters."""
        return self.counters.snapshot()

    @property
    def store(self) -> Store:
        """The database, while running (the HTTP API lists inbound messages and the webhook
        outbox delivers notifications from it)."""
        if self._store is None:
            raise GatewayNotRunning("the gateway is not running")
        return self._store

    @property
    def providers(self) -> ProviderManager:
        """The provider manager, while running (health and connection states for the API)."""
        if self._manager is None:
            raise GatewayNotRunning("the gateway is not running")
        return self._manager

    def instances(self) -> tuple[str, ...] | None:
        """The instances sharing the providers' limits with this one (its own id included),
        alive at the last heartbeat; None when the limits are not shared (the embedded queue,
        or ``share_limits`` off) or the gateway is not running."""
        if self._shared is None:
            return None
        return self._shared.membership.instances

    def sent_by_others(self) -> bool:
        """Whether the instances sharing the providers' limits left this one no connection of
        any provider at the last heartbeat, so the others send what it accepts (False when
        the limits are not shared). ``/readyz`` counts such an instance ready unbound."""
        return self._shared is not None and self._shared.keeps_none

    def current_rate(self, provider: str) -> float:
        """The rate the limiter allows ``provider`` now (AIMD), a metric; ``KeyError`` if there
        is no such provider."""
        return self._settings.limiter.current_rate(provider)

    def _task_failed(self, name: str, _exc: Exception) -> None:
        self.counters.task_failures += 1
        self.metrics.task_restart(name)

    def _webhooks_due(self) -> None:
        if self.webhooks is not None:
            self.webhooks.wake()

    def _provider(self, name: str) -> ProviderConfig | None:
        return self._settings.providers.get(name)

    # -- submitting ------------------------------------------------------------------------

    async def submit(self, requests: Sequence[SubmitRequest]) -> list[Accepted | Rejected]:
        """Validate each request; store the valid ones durably (queue, then database rows)
        before returning. One answer per request, in order.

        Raises :class:`GatewayNotRunning`, :class:`GatewayBusy` (the queue is full) or
        :class:`GatewayUnavailable` (queue or database down): then nothing was accepted.
        """
        if not self._accepting or self._queue is None or self._store is None:
            raise GatewayNotRunning("the gateway is not accepting messages")
        queue, store = self._queue, self._store
        now = self._clock()
        settings = self._settings
        results: list[Accepted | Rejected | None] = [None] * len(requests)
        prepared: list[tuple[int, Prepared]] = []
        ids = new_message_ids(len(requests))
        for index, request in enumerate(requests):
            if not isinstance(request, SubmitRequest):
                results[index] = Rejected(index, {"request": f"not a SubmitRequest: {request!r}"})
                continue
            checked = validate(
                request,
                now=now,
                providers=tuple(settings.providers),
                split_mode=self._split_mode(request),
                message_id=ids[index],
            )
            if isinstance(checked, Prepared):
                prepared.append((index, checked))
            else:
                results[index] = Rejected(index, checked)
        self.counters.rejected += len(requests) - len(prepared)
        if prepared:
            await self._check_depth(queue, len(prepared))
            await self._store_accepted(queue, store, [p for _, p in prepared])
            for index, message in prepared:
                results[index] = Accepted(
                    id=message.id,
                    status=message.status,
                    parts=message.parts,
                    encoding=message.encoding.value,
                )
            self.counters.accepted += len(prepared)
            if self._processor is not None:
                self._processor.wake()
        return [r for r in results if r is not None]

    def _split_mode(self, request: SubmitRequest) -> SplitMode:
        """The split mode of the provider the message will most likely go to first (for the
        part count given back at acceptance)."""
        if not isinstance(request.to, str) or not isinstance(request.source, str):
            return SplitMode.UDH8
        if all(p.split_mode is SplitMode.UDH8 for p in self._settings.providers.values()):
            return SplitMode.UDH8  # whatever the route (the common case): no routing needed
        try:
            decision = self._count_router.route(
                MessageAttrs(
                    destination=request.to,
                    source=request.source,
                    tags=request.tags,  # type: ignore[arg-type]  # attrs converts to frozenset
                    client=request.client_id,
                    provider=request.provider,
                )
            )
        except TypeError:
            return SplitMode.UDH8
        if isinstance(decision, NoRoute):
            return SplitMode.UDH8
        provider = self._settings.providers.get(decision.candidates[0])
        return provider.split_mode if provider is not None else SplitMode.UDH8

    async def _check_depth(self, queue: Queue, adding: int) -> None:
        now = trio.current_time()
        if self._depth is None or now - self._depth[0] > DEPTH_CACHE:
            try:
                depth = await queue.depth()
            except QueueError as exc:
                raise GatewayUnavailable(f"the queue is unavailable: {exc}") from exc
            self._depth = (now, depth.ready + depth.delayed + depth.leased)
        limit = self.config.queue.max_depth
        if self._depth[1] >= limit:
            raise GatewayBusy(f"the queue holds {self._depth[1]} messages (max_depth {limit})")
        self._depth = (self._depth[0], self._depth[1] + adding)

    async def _store_accepted(
        self, queue: Queue, store: Store, messages: Sequence[Prepared]
    ) -> None:
        payloads = [_payload(m) for m in messages]
        ids = [p.id for p in payloads]
        self._storing.update(ids)
        try:
            await self._enqueue_and_write(queue, store, payloads)
        finally:
            self._storing.difference_update(ids)

    async def _enqueue_and_write(
        self, queue: Queue, store: Store, payloads: Sequence[MessagePayload]
    ) -> None:
        try:
            await queue.enqueue(
                [
                    QueueEntry(
                        id=p.id,
                        payload=encode_payload(p),
                        priority=p.priority,
                        not_before=p.not_before,
                    )
                    for p in payloads
                ]
            )
        except QueueError as exc:
            raise GatewayUnavailable(f"the queue did not take the messages: {exc}") from exc
        rows = [new_message(p, p.parts) for p in payloads]
        try:
            try:
                await store.create_messages(rows)
            except DuplicateId:
                # A consumer leased one already and wrote its row from the payload: write the
                # others one by one.
                for row in rows:
                    with contextlib.suppress(DuplicateId):
                        await store.create_messages([row])
        except StoreError as exc:
            # Not accepted after all (the client is told so, and may send them again): take
            # the messages back out of the queue. If the queue cannot do that now either (the
            # same full disk), the processor drops them when it leases them.
            ids = [p.id for p in payloads]
            try:
                await queue.purge(ids)
            except QueueError as purge_error:
                self._refused.update(ids)
                log.warning(
                    "%d refused message(s) left in the queue (%s): dropped when leased",
                    len(ids),
                    purge_error,
                )
            raise GatewayUnavailable(f"the database did not take the messages: {exc}") from exc

    # -- reading ---------------------------------------------------------------------------

    async def message(self, id: str) -> MessageView | None:
        """The message's status, parts and history, or None if there is no such message."""
        if self._store is None:
            raise GatewayNotRunning("the gateway is not running")
        detail = await self._store.get_message(id)
        return MessageView.from_detail(detail) if detail is not None else None

    async def dead_letters(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """The dead-letter queue, oldest first: what :meth:`replay_dead_letters` can replay."""
        if self._queue is None:
            raise GatewayNotRunning("the gateway is not running")
        return await self._queue.dead_letters(limit=limit, offset=offset)

    @property
    def queue_writes_failing(self) -> bool:
        """The embedded queue's file refused its last write as unavailable (its disk is full),
        and none has committed since; always False with Redis. Reads (the depth) still work
        then: :meth:`probe_queue` tells whether a write would."""
        return isinstance(self._queue, SqliteQueue) and self._queue.writes_failing

    async def probe_queue(self) -> None:
        """A write to the embedded queue's file that changes nothing: raises
        :class:`~smsgw.queue.base.QueueError` if the file cannot take writes now (nothing to do
        with Redis)."""
        if self._queue is None:
            raise GatewayNotRunning("the gateway is not running")
        if isinstance(self._queue, SqliteQueue):
            await self._queue.probe_write()

    async def queue_depth(self) -> QueueDepth:
        """How many messages are ready, delayed, leased and dead in the queue (a metric)."""
        if self._queue is None:
            raise GatewayNotRunning("the gateway is not running")
        return await self._queue.depth()

    async def replay_dead_letters(self, ids: Sequence[str]) -> int:
        """Put dead-lettered messages back in the queue; returns how many moved. Their failed
        parts go back to ``queued`` (parts delivered meanwhile keep their status and are not
        sent again)."""
        if self._queue is None or self._store is None:
            raise GatewayNotRunning("the gateway is not running")
        moved = 0
        for message_id in dict.fromkeys(ids):
            failed = await self._failed_parts(message_id)
            # Recorded before the replay: a consumer may lease the message at once.
            await self._mark(
                message_id, failed, MessageStatus.QUEUED, "replayed from the dead-letter queue"
            )
            if await self._queue.replay([message_id]):
                moved += 1
            else:
                await self._mark(
                    message_id, failed, MessageStatus.FAILED, "replay: not in the dead-letter queue"
                )
        self.counters.replayed += moved
        if moved and self._processor is not None:
            self._processor.wake()
        return moved

    async def _failed_parts(self, message_id: str) -> list[int]:
        assert self._store is not None
        detail = await self._store.get_message(message_id)
        if detail is None:
            return []
        return [p.part_number for p in detail.parts if p.status is MessageStatus.FAILED]

    async def _mark(
        self, message_id: str, parts: Sequence[int], status: MessageStatus, reason: str
    ) -> None:
        assert self._store is not None
        if not parts:
            return
        events = [StatusEvent(message_id, status, reason, part_number=n) for n in parts]
        with contextlib.suppress(UnknownMessage):
            await self._store.record_events(events, notify=self.notifier.status)

    # -- services --------------------------------------------------------------------------

    async def _dispatch_inbound(self, manager: ProviderManager) -> None:
        """Hand inbound PDUs to the DLR handler (receipts) and the MO handler, several at once
        (at most :data:`INBOUND_CONCURRENCY` handlers). The receipts waiting together (up to
        :data:`RECEIPT_BATCH`) go to one handler, which records them in one store call."""
        limiter = trio.CapacityLimiter(INBOUND_CONCURRENCY)
        async with trio.open_nursery() as nursery:
            async for first in manager.inbound:
                waiting = [first]
                while len(waiting) < RECEIPT_BATCH:
                    try:
                        waiting.append(manager.inbound.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                receipts: list[tuple[str, Inbound]] = []
                for provider, inbound in waiting:
                    if not inbound.needs_answer:
                        continue  # alert_notification: nothing to store or answer
                    if inbound.is_receipt:
                        receipts.append((provider, inbound))
                        continue
                    await limiter.acquire_on_behalf_of(inbound)
                    nursery.start_soon(self._handle_mo, provider, inbound, limiter)
                if receipts:
                    borrower = object()  # the batch, in the limiter's eyes
                    await limiter.acquire_on_behalf_of(borrower)
                    nursery.start_soon(self._handle_receipts, receipts, limiter, borrower)

    async def _handle_receipts(
        self,
        receipts: list[tuple[str, Inbound]],
        limiter: trio.CapacityLimiter,
        borrower: object,
    ) -> None:
        try:
            assert self._dlr is not None
            await self._dlr.handle_many(receipts)
        finally:
            limiter.release_on_behalf_of(borrower)

    async def _handle_mo(
        self, provider: str, inbound: Inbound, limiter: trio.CapacityLimiter
    ) -> None:
        try:
            assert self._mo is not None
            await self._mo.handle(provider, inbound)
        finally:
            limiter.release_on_behalf_of(inbound)

    async def _flush_stats_forever(self) -> None:
        assert self._store is not None
        outage = Outage(log, "writing provider statistics (kept for the next try)")
        while True:
            await trio.sleep(STATS_INTERVAL)
            try:
                await self._stats_buffer.flush(self._store)
            except StoreUnavailable as exc:
                outage.failed(exc)
            else:
                outage.succeeded()

    async def _prune_forever(self) -> None:
        assert self._store is not None
        while True:
            await trio.sleep(self.config.database.prune_interval)
            cutoff = self._clock() - self.config.database.retention_days * 86400.0
            try:
                report = await self._store.prune(cutoff)
            except StoreUnavailable as exc:
                log.warning("retention: pruning failed, trying at the next interval: %s", exc)
                continue
            log.info("retention: %s", report)


def _payload(message: Prepared) -> MessagePayload:
    request = message.request
    return MessagePayload(
        id=message.id,
        to=request.to,
        source=request.source,
        encoding=message.encoding,
        created_at=message.created_at,
        text=request.text,
        binary=request.binary,
        data_coding=request.data_coding,
        not_before=message.not_before,
        expires_at=message.expires_at,
        client_ref=request.client_ref,
        tags=tuple(request.tags),
        provider=request.provider,
        receipt=request.receipt,
        client_id=request.client_id,
        callback_url=request.callback_url,
        priority=request.priority,
        parts=message.parts,
    )
