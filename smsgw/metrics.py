"""Prometheus metrics: counters the pipeline bumps, gauges read from snapshots at scrape time.

:class:`Metrics` owns its own ``CollectorRegistry`` (never the process-global one, so tests and
several gateways in one process do not collide). The pipeline calls plain methods
(``message_final``, ``submit_result``, ...); the gauges that describe the present (queue depth,
DLQ size, connections, window occupancy, adaptive rate, the webhook outbox) are not kept up to
date by anyone: a collector reads them from the sources given to :meth:`Metrics.watch` when
Prometheus scrapes. Sources that need I/O (the queue, the store) are read by the async
:meth:`Metrics.refresh`, which the HTTP handlers await before :meth:`Metrics.render`.

Labels are bounded: provider names (from the configuration), status names (fixed enums),
task names (from the code), API route templates (from the code: ``/api/v1/messages/{id}``,
never the raw path). Never a message id, an address or a free-form error text.
Names and units are listed in ``docs/metrics.md``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import (
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from typing import Any, Protocol

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from smpp_codec import CommandStatus

from .asgi import ASGIApp, Receive, Scope, Send, lifespan
from .asgi_server import serve
from .model import MessageStatus, NotificationState

__all__ = [
    "FINAL_STATUSES",
    "HTTP_METHODS",
    "UNMATCHED_ROUTE",
    "Metrics",
    "bucket_quantile",
    "command_status_label",
    "metrics_app",
    "serve_metrics",
]

log = logging.getLogger("smsgw.metrics")

#: The statuses ``smsgw_messages_total`` counts (a message ends in exactly one).
FINAL_STATUSES = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.EXPIRED,
        MessageStatus.REJECTED,
        MessageStatus.FAILED,
    }
)

#: Seconds from enqueue to submit_sm_resp: normally milliseconds, minutes under backpressure.
ENQUEUE_TO_SUBMIT_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    1800,
)
#: Seconds from submit to receipt: seconds for a phone that is on, hours or days for one off.
SUBMIT_TO_RECEIPT_BUCKETS = (
    0.5,
    1,
    2,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
    4 * 3600,
    12 * 3600,
    86_400,
    3 * 86_400,
)
ENQUIRE_LINK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: Seconds from an SMSC's deliver_sm to the gateway's answer: a commit, milliseconds; more when
#: the gateway is near its capacity (the SMSC's window then limits receipts, docs/operations.md).
INBOUND_ANSWER_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
)  # fmt: skip
#: The ``kind`` label of ``smsgw_inbound_answer_seconds``.
INBOUND_KINDS = ("receipt", "mo")
#: Seconds an API request takes: a millisecond or two for a single message, up to seconds for a
#: full batch or a database under load.
API_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: The ``route`` label of a request that matched no route (any path: the label stays bounded).
UNMATCHED_ROUTE = "unmatched"
#: The HTTP methods counted under their own name; any other is counted as ``other``.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: The label for a message that never reached a provider (failed before routing).
NO_PROVIDER = "none"
#: The ``event`` label of ``smsgw_receipts_relayed_total``.
RELAY_EVENTS = ("published", "matched")


def command_status_label(command_status: int) -> str:
    """A bounded label for a ``command_status``: its SMPP name, ``0x000004NN`` for the
    vendor-specific range (0x400-0x4FF, where SMSCs put throttling and billing errors), else
    ``other``."""
    try:
        return CommandStatus(command_status).name
    except ValueError:
        if 0x400 <= command_status <= 0x4FF:
            return f"0x{command_status:08X}"
        return "other"


def _status_label(status: MessageStatus | str) -> str:
    value = status.value if isinstance(status, MessageStatus) else status
    if value not in {s.value for s in FINAL_STATUSES}:
        raise ValueError(f"not a final message status: {status!r}")
    return value


def bucket_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float:
    """The upper bound of the histogram bucket that holds quantile ``q`` (0..1) of the
    observations, from (upper bound, cumulative count) pairs in order: "at most this". NaN when
    nothing was observed."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return math.nan
    for bound, cumulative in buckets:
        if cumulative >= q * total:
            return bound
    return buckets[-1][0]


def _check_seconds(seconds: float) -> float:
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(f"a duration must be >= 0 seconds, got {seconds!r}")
    return seconds


# --- snapshot sources -------------------------------------------------------------------------


class ProviderView(Protocol):
    """What the collector reads of a provider (``smsgw.providers.ProviderHealth`` has it)."""

    @property
    def configured(self) -> int: ...
    @property
    def kept(self) -> int: ...
    @property
    def bound(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def capacity(self) -> int: ...


class ProviderSource(Protocol):
    def snapshot(self) -> Mapping[str, ProviderView]: ...


class RateSource(Protocol):
    def current_rate(self, provider: str) -> float: ...


class ClusterSource(Protocol):
    """``smsgw.sharing.SharedLimits``."""

    @property
    def instance_count(self) -> int: ...


class DepthView(Protocol):
    """``smsgw.queue.QueueDepth``."""

    @property
    def ready(self) -> int: ...
    @property
    def delayed(self) -> int: ...
    @property
    def leased(self) -> int: ...
    @property
    def dead(self) -> int: ...
    @property
    def ready_by_priority(self) -> Mapping[int, int]: ...


class QueueSource(Protocol):
    async def depth(self) -> DepthView: ...


class OutboxSource(Protocol):
    """``smsgw.storage.Store`` (its ``notification_counts()``)."""

    async def notification_counts(self) -> Mapping[NotificationState, int]: ...


class InboundSource(Protocol):
    """``smsgw.mo.MoHandler`` (its ``multipart_pending()``)."""

    async def multipart_pending(self) -> int: ...


class DatabaseSource(Protocol):
    """``smsgw.storage.Store`` or ``smsgw.queue.sqlite.SqliteQueue`` (their
    ``writes_failing`` and ``probe_write()``)."""

    @property
    def writes_failing(self) -> bool: ...
    async def probe_write(self) -> None: ...


class _Sources:
    def __init__(self) -> None:
        self.providers: ProviderSource | None = None
        self.rates: RateSource | None = None
        self.cluster: ClusterSource | None = None
        self.queue: QueueSource | None = None
        self.outbox: OutboxSource | None = None
        self.inbound: InboundSource | None = None
        self.database: DatabaseSource | None = None
        self.queue_file: DatabaseSource | None = None
        # Filled by refresh(): the latest answers of the async sources (None: never read).
        self.depth: DepthView | None = None
        self.outbox_counts: Mapping[NotificationState, int] | None = None
        self.multipart_pending: int | None = None
        self.up: MutableMapping[str, bool] = {}


class _SnapshotCollector(Collector):
    """Gauges made at scrape time from the sources (nothing is stored between scrapes)."""

    def __init__(self, sources: _Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        yield from self._provider_gauges()
        yield from self._queue_gauges()
        yield from self._outbox_gauges()
        if self._sources.multipart_pending is not None:
            yield GaugeMetricFamily(
                "smsgw_inbound_multipart_pending",
                "Multipart inbound messages (MO) waiting for parts: this instance's, or with a "
                "Redis queue all instances' (kept in Redis)",
                value=float(self._sources.multipart_pending),
            )
        writable = (
            ("smsgw_database_writable", "the database", self._sources.database),
            ("smsgw_queue_writable", "the embedded queue's file", self._sources.queue_file),
        )
        for name, what, file in writable:
            if file is not None:
                yield GaugeMetricFamily(
                    name,
                    f"0 from a write {what} refused as unavailable (disk full, locked) until "
                    "one commits again, else 1",
                    value=0.0 if file.writes_failing else 1.0,
                )
        if self._sources.cluster is not None:
            yield GaugeMetricFamily(
                "smsgw_cluster_instances",
                "Gateway instances sharing the Redis queue and its providers' limits, alive at "
                "the last heartbeat",
                value=float(self._sources.cluster.instance_count),
            )
        up = GaugeMetricFamily(
            "smsgw_metrics_source_up",
            "1 if the last read of this source for metrics succeeded, else 0",
            labels=["source"],
        )
        for source, ok in sorted(self._sources.up.items()):
            up.add_metric([source], 1.0 if ok else 0.0)
        yield up

    def _provider_gauges(self) -> Iterable[Metric]:
        providers = self._sources.providers
        if providers is None:
            return
        try:
            snapshot = providers.snapshot()
        except Exception:  # a scrape must not fail on one source
            log.exception("metrics: provider snapshot failed")
            self._sources.up["providers"] = False
            return
        self._sources.up["providers"] = True
        gauges = {
            "configured": GaugeMetricFamily(
                "smsgw_provider_connections_configured",
                "Connections configured per provider",
                labels=["provider"],
            ),
            "kept": GaugeMetricFamily(
                "smsgw_provider_connections_kept",
                "Connections this instance keeps per provider: those configured, or its share "
                "of them when instances share the limits",
                labels=["provider"],
            ),
            "bound": GaugeMetricFamily(
                "smsgw_provider_connections_bound",
                "Connections bound now per provider",
                labels=["provider"],
            ),
            "in_flight": GaugeMetricFamily(
                "smsgw_provider_window_in_flight",
                "Submits outstanding (window occupancy) over a provider's connections",
                labels=["provider"],
            ),
            "capacity": GaugeMetricFamily(
                "smsgw_provider_window_capacity",
                "Window size summed over a provider's bound connections",
                labels=["provider"],
            ),
        }
        rate = GaugeMetricFamily(
            "smsgw_provider_rate_per_second",
            "Submit rate the limiter allows now (adaptive, lowered on throttling)",
            labels=["provider"],
        )
        for name, view in sorted(snapshot.items()):
            for attribute, gauge in gauges.items():
                gauge.add_metric([name], float(getattr(view, attribute)))
            if self._sources.rates is not None:
                # KeyError: a provider without a limiter (being added or removed).
                with contextlib.suppress(KeyError):
                    rate.add_metric([name], float(self._sources.rates.current_rate(name)))
        yield from gauges.values()
        if self._sources.rates is not None:
            yield rate

    def _queue_gauges(self) -> Iterable[Metric]:
        depth = self._sources.depth
        if depth is None:
            return
        by_state = GaugeMetricFamily(
            "smsgw_queue_messages",
            "Messages in the queue by state (ready, delayed, leased, dead)",
            labels=["state"],
        )
        for state in ("ready", "delayed", "leased", "dead"):
            by_state.add_metric([state], float(getattr(depth, state)))
        yield by_state
        by_priority = GaugeMetricFamily(
            "smsgw_queue_ready_messages",
            "Ready messages in the queue by priority",
            labels=["priority"],
        )
        for priority, count in sorted(depth.ready_by_priority.items()):
            by_priority.add_metric([str(priority)], float(count))
        yield by_priority
        yield GaugeMetricFamily(
            "smsgw_dead_letters", "Messages in the dead-letter queue", value=float(depth.dead)
        )

    def _outbox_gauges(self) -> Iterable[Metric]:
        counts = self._sources.outbox_counts
        if counts is None:
            return
        outbox = GaugeMetricFamily(
            "smsgw_webhook_outbox_notifications",
            "Webhook notifications in the outbox by state (pending, delivered, dead)",
            labels=["state"],
        )
        for state in NotificationState:
            outbox.add_metric([state.value], float(counts.get(state, 0)))
        yield outbox


# --- the metrics ------------------------------------------------------------------------------


class Metrics:
    """Every metric of the gateway, in a registry of its own.

    ``providers``: the configured provider names; their per-provider counters start at 0 so that
    ``rate()`` and alerts see them before the first event. ``process``: add the standard
    ``process_*`` metrics (CPU, memory, open files).
    """

    def __init__(self, providers: Sequence[str] = (), *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._messages = Counter(
            "smsgw_messages",
            "Messages that reached a final status, by provider and status",
            ["provider", "status"],
            registry=r,
        )
        self._submits = Counter(
            "smsgw_submit_results",
            "submit_sm answers by provider and command_status",
            ["provider", "command_status"],
            registry=r,
        )
        self._enqueue_to_submit = Histogram(
            "smsgw_enqueue_to_submit_seconds",
            "Time from enqueue to the SMSC's submit_sm_resp",
            buckets=ENQUEUE_TO_SUBMIT_BUCKETS,
            registry=r,
        )
        self._submit_to_receipt = Histogram(
            "smsgw_submit_to_receipt_seconds",
            "Time from the SMSC's submit_sm_resp to its delivery receipt",
            buckets=SUBMIT_TO_RECEIPT_BUCKETS,
            registry=r,
        )
        self._reconnects = Counter(
            "smsgw_provider_reconnects", "Connections re-established", ["provider"], registry=r
        )
        self._enquire_link = Histogram(
            "smsgw_enquire_link_rtt_seconds",
            "enquire_link round-trip time",
            ["provider"],
            buckets=ENQUIRE_LINK_BUCKETS,
            registry=r,
        )
        self._inbound_answer = Histogram(
            "smsgw_inbound_answer_seconds",
            "Time from an SMSC's deliver_sm or data_sm to the gateway's answer, by provider and"
            " kind (receipt, mo)",
            ["provider", "kind"],
            buckets=INBOUND_ANSWER_BUCKETS,
            registry=r,
        )
        self._inbound = Counter(
            "smsgw_inbound_messages",
            "Inbound messages (MO) stored, by provider and whether every part came",
            ["provider", "complete"],
            registry=r,
        )
        self._orphaned = Counter(
            "smsgw_receipts_orphaned",
            "Delivery receipts matching no message (after the early-receipt park)",
            ["provider"],
            registry=r,
        )
        self._relayed = Counter(
            "smsgw_receipts_relayed",
            "Receipts shared with the other instances of a Redis queue (published here) and"
            " relayed receipts recorded here (matched)",
            ["provider", "event"],
            registry=r,
        )
        self._webhook_delivered = Counter(
            "smsgw_webhook_deliveries", "Webhook requests answered with a 2xx", registry=r
        )
        self._webhook_failed = Counter(
            "smsgw_webhook_failures",
            "Webhook attempts that failed (non-2xx, refused, timed out); retried later",
            registry=r,
        )
        self._webhook_gave_up = Counter(
            "smsgw_webhook_given_up",
            "Webhook notifications given up after the retry period (state dead)",
            registry=r,
        )
        self._restarts = Counter(
            "smsgw_task_restarts",
            "Supervised tasks restarted after a failure",
            ["task"],
            registry=r,
        )
        self._api_requests = Counter(
            "smsgw_api_requests",
            "HTTP API requests answered, by route template, method and status code",
            ["route", "method", "code"],
            registry=r,
        )
        self._api_duration = Histogram(
            "smsgw_api_request_duration_seconds",
            "Time from a request's arrival at the API app to its answer being sent, by route",
            ["route"],
            buckets=API_DURATION_BUCKETS,
            registry=r,
        )
        # The labelled children, found once: labels() costs a lock and a tuple per call, and
        # the API counts every request.
        self._api_counted: dict[tuple[str, str, int], Any] = {}
        self._api_timed: dict[str, Any] = {}
        self._answer_timed: dict[tuple[str, str], Any] = {}  # every receipt is timed too
        if process:
            ProcessCollector(registry=r)
        self._sources = _Sources()
        r.register(_SnapshotCollector(self._sources))
        for provider in providers:
            self.add_provider(provider)

    def add_provider(self, provider: str) -> None:
        """Start a provider's counters at 0 (also after a reload added it)."""
        self._reconnects.labels(provider)
        for kind in INBOUND_KINDS:
            self._inbound_answer.labels(provider, kind)
        for complete in ("true", "false"):
            self._inbound.labels(provider, complete)
        self._orphaned.labels(provider)
        for event in RELAY_EVENTS:
            self._relayed.labels(provider, event)
        for status in FINAL_STATUSES:
            self._messages.labels(provider, status.value)
        self._submits.labels(provider, CommandStatus.ESME_ROK.name)

    # -- events the pipeline reports -------------------------------------------------------------

    def message_final(self, provider: str | None, status: MessageStatus | str) -> None:
        """A message reached a final status (``provider`` None: it never reached one)."""
        self._messages.labels(provider or NO_PROVIDER, _status_label(status)).inc()

    def submit_result(self, provider: str, command_status: int) -> None:
        """A submit_sm_resp arrived with ``command_status``."""
        self._submits.labels(provider, command_status_label(int(command_status))).inc()

    def observe_enqueue_to_submit(self, seconds: float) -> None:
        self._enqueue_to_submit.observe(_check_seconds(seconds))

    def observe_submit_to_receipt(self, seconds: float) -> None:
        self._submit_to_receipt.observe(_check_seconds(seconds))

    def reconnect(self, provider: str) -> None:
        self._reconnects.labels(provider).inc()

    def enquire_link_rtt(self, provider: str, seconds: float) -> None:
        self._enquire_link.labels(provider).observe(_check_seconds(seconds))

    def inbound_answered(self, provider: str, kind: str, seconds: float) -> None:
        """The gateway answered an SMSC's inbound PDU ``seconds`` after it came (``kind``: one
        of :data:`INBOUND_KINDS`)."""
        timer = self._answer_timed.get((provider, kind))
        if timer is None:
            if kind not in INBOUND_KINDS:
                raise ValueError(f"inbound kind must be one of {INBOUND_KINDS}, got {kind!r}")
            timer = self._answer_timed[provider, kind] = self._inbound_answer.labels(provider, kind)
        timer.observe(_check_seconds(seconds))

    def inbound_stored(self, provider: str, complete: bool) -> None:
        """An inbound message was stored (``complete`` False: parts were missing)."""
        self._inbound.labels(provider, "true" if complete else "false").inc()

    def inbound_answer_buckets(self, kind: str) -> list[tuple[float, float]]:
        """``smsgw_inbound_answer_seconds`` of ``kind`` over every provider: (upper bound,
        cumulative count) per bucket, ``+Inf`` last (for :func:`bucket_quantile`)."""
        counts: dict[float, float] = {}
        for family in self._inbound_answer.collect():
            for sample in family.samples:
                if sample.name.endswith("_bucket") and sample.labels.get("kind") == kind:
                    bound = float(sample.labels["le"])
                    counts[bound] = counts.get(bound, 0.0) + sample.value
        return sorted(counts.items())

    def receipt_orphaned(self, provider: str) -> None:
        self._orphaned.labels(provider).inc()

    def receipt_relayed(self, provider: str, event: str) -> None:
        """A receipt was published to the relay, or a relayed one was matched here
        (``event``: one of :data:`RELAY_EVENTS`)."""
        if event not in RELAY_EVENTS:
            raise ValueError(f"relay event must be one of {RELAY_EVENTS}, got {event!r}")
        self._relayed.labels(provider, event).inc()

    def webhook_result(self, ok: bool) -> None:
        """One webhook attempt: delivered (2xx) or failed."""
        (self._webhook_delivered if ok else self._webhook_failed).inc()

    def webhook_gave_up(self) -> None:
        self._webhook_gave_up.inc()

    def task_restart(self, task: str) -> None:
        """A supervised task failed and is restarted (``task``: its name in the code)."""
        self._restarts.labels(task).inc()

    def api_request(self, route: str, method: str, code: int, seconds: float) -> None:
        """An API request was answered. ``route`` must be a route *template*
        (``/api/v1/messages/{id}``) or :data:`UNMATCHED_ROUTE`, never a raw path: the caller
        keeps the label set bounded. A method outside :data:`HTTP_METHODS` counts as ``other``.
        """
        if not 100 <= code <= 599:
            raise ValueError(f"not an HTTP status code: {code!r}")
        if method not in HTTP_METHODS:
            method = "other"
        key = (route, method, code)
        counter = self._api_counted.get(key)
        if counter is None:
            counter = self._api_counted[key] = self._api_requests.labels(route, method, str(code))
        counter.inc()
        timer = self._api_timed.get(route)
        if timer is None:
            timer = self._api_timed[route] = self._api_duration.labels(route)
        timer.observe(_check_seconds(seconds))

    # -- snapshots ---------------------------------------------------------------------------

    def watch(
        self,
        *,
        providers: ProviderSource | None = None,
        rates: RateSource | None = None,
        queue: QueueSource | None = None,
        outbox: OutboxSource | None = None,
        cluster: ClusterSource | None = None,
        inbound: InboundSource | None = None,
        database: DatabaseSource | None = None,
        queue_file: DatabaseSource | None = None,
    ) -> None:
        """Read these at scrape time: ``providers.snapshot()`` (connections, window),
        ``rates.current_rate(name)`` (the gateway), ``await queue.depth()`` (queue and DLQ),
        ``await outbox.notification_counts()`` (the store), ``cluster.instance_count`` (shared
        limits), ``await inbound.multipart_pending()`` (the MO handler),
        ``database.writes_failing`` (the store: while true, a scrape tries ``probe_write()``,
        so an idle gateway does not stay "not writable" once the database is back),
        ``queue_file`` likewise (the embedded queue). Sources left None keep the one set
        before."""
        s = self._sources
        if providers is not None:
            s.providers = providers
        if rates is not None:
            s.rates = rates
        if queue is not None:
            s.queue = queue
        if outbox is not None:
            s.outbox = outbox
        if cluster is not None:
            s.cluster = cluster
        if inbound is not None:
            s.inbound = inbound
        if database is not None:
            s.database = database
        if queue_file is not None:
            s.queue_file = queue_file

    async def refresh(self) -> None:
        """Read the async sources (the caller bounds the time: a slow source must not hold a
        scrape forever). A source that fails keeps its previous reading and is reported by
        ``smsgw_metrics_source_up``."""
        s = self._sources
        if s.queue is not None:
            s.depth = await self._read("queue", s.queue.depth, s.depth)
        if s.outbox is not None:
            s.outbox_counts = await self._read(
                "outbox", s.outbox.notification_counts, s.outbox_counts
            )
        if s.inbound is not None:
            s.multipart_pending = await self._read(
                "inbound", s.inbound.multipart_pending, s.multipart_pending
            )
        for file in (s.database, s.queue_file):
            if file is not None and file.writes_failing:
                # Still failing: the gauge says so (the gateway's own log says why).
                with contextlib.suppress(Exception):
                    await file.probe_write()

    async def _read(self, name: str, read: Callable[[], Awaitable[Any]], previous: Any) -> Any:
        try:
            value = await read()
        except Exception:  # a scrape must not fail on one source
            log.exception("metrics: reading %s failed", name)
            self._sources.up[name] = False
            return previous
        self._sources.up[name] = True
        return value

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(_WithoutCreated(self.registry)), CONTENT_TYPE_LATEST


class _WithoutCreated(Collector):
    """A registry's metrics without the ``_created`` samples prometheus-client adds to every
    counter and histogram. In the text format they are series of their own, named like
    counts (``smsgw_messages_created`` is a timestamp, not a number of messages), and double
    the series scraped."""

    _TYPES = frozenset({"counter", "histogram", "summary"})

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():  # fresh objects at every scrape
            if metric.type in self._TYPES:
                metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


# --- HTTP -------------------------------------------------------------------------------------


#: How long a scrape waits for the async sources before answering with what it has.
REFRESH_TIMEOUT = 5.0


def metrics_app(
    metrics: Metrics, *, path: str | None = "/metrics", refresh_timeout: float = REFRESH_TIMEOUT
) -> ASGIApp:
    """An ASGI app answering ``GET``/``HEAD`` ``path`` (None: any path) with the metrics.

    Mount it on the API listener, or serve it alone (:func:`serve_metrics`). It runs under
    Trio (the gateway's :mod:`smsgw.asgi_server`, or any ASGI server on Trio).
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if path is not None and scope["path"] != path:
            await _plain(send, 404, b"not found\n")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _plain(send, 405, b"method not allowed\n", [(b"allow", b"GET, HEAD")])
            return
        with trio.move_on_after(refresh_timeout):
            await metrics.refresh()
        body, content_type = metrics.render()
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode("ascii")),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    return app


async def _plain(
    send: Send, status: int, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_metrics(
    metrics: Metrics,
    host: str,
    port: int,
    *,
    path: str = "/metrics",
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the metrics on a listener of their own until cancelled (:mod:`smsgw.asgi_server`).

    ``task_status.started`` gets the bound addresses (``["http://127.0.0.1:9108"]``), so a
    ``port`` of 0 can be used and discovered.
    """
    await serve(metrics_app(metrics, path=path), host, port, task_status=task_status)
