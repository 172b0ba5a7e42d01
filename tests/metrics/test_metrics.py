"""Metrics: drive the methods and the snapshot sources, scrape, parse with prometheus-client."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from smpp_codec import CommandStatus
from smsgw.config import parse_config
from smsgw.metrics import (
    Metrics,
    bucket_quantile,
    command_status_label,
    metrics_app,
    serve_metrics,
)
from smsgw.model import MessageStatus, NewNotification, NotificationKind
from smsgw.pool import RecentCounts
from smsgw.providers import ProviderHealth
from smsgw.queue.base import NewMessage
from smsgw.queue.sqlite import open_sqlite_queue
from smsgw.ratelimit import RateLimiter
from smsgw.storage import open_store

NOW = 1_700_000_000.0

CONFIG = parse_config(
    """
[[providers]]
name = "alpha"
host = "127.0.0.1"
system_id = "a"
password = "pw"
rate = { per_second = 50.0 }

[[providers]]
name = "beta"
host = "127.0.0.1"
system_id = "b"
password = "pw"
rate = { per_second = 20.0 }
""",
    source="test.toml",
    environ={},
)


def samples(metrics: Metrics) -> list[Sample]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    return [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = [s.value for s in samples(metrics) if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def names(metrics: Metrics) -> set[str]:
    return {s.name for s in samples(metrics)}


def test_counters_and_histograms_after_driving_the_methods() -> None:
    m = Metrics(["alpha", "beta"], process=False)
    m.message_final("alpha", MessageStatus.DELIVERED)
    m.message_final("alpha", "delivered")
    m.message_final("beta", MessageStatus.UNDELIVERED)
    m.message_final(None, MessageStatus.FAILED)
    m.submit_result("alpha", CommandStatus.ESME_ROK)
    m.submit_result("alpha", int(CommandStatus.ESME_RTHROTTLED))
    m.submit_result("alpha", 0x401)
    m.submit_result("alpha", 0xDEAD)
    m.observe_enqueue_to_submit(0.02)
    m.observe_enqueue_to_submit(3.0)
    m.observe_submit_to_receipt(7.0)
    m.reconnect("beta")
    m.enquire_link_rtt("alpha", 0.004)
    m.inbound_answered("alpha", "receipt", 0.003)
    m.inbound_answered("alpha", "receipt", 0.2)
    m.inbound_answered("beta", "mo", 0.004)
    m.inbound_stored("beta", True)
    m.inbound_stored("beta", False)
    m.inbound_stored("beta", True)
    m.receipt_orphaned("beta")
    m.webhook_result(True)
    m.webhook_result(False)
    m.webhook_result(False)
    m.webhook_gave_up()
    m.task_restart("processor")

    assert value(m, "smsgw_messages_total", provider="alpha", status="delivered") == 2
    assert value(m, "smsgw_messages_total", provider="beta", status="undelivered") == 1
    assert value(m, "smsgw_messages_total", provider="none", status="failed") == 1
    assert value(m, "smsgw_messages_total", provider="beta", status="expired") == 0  # pre-set
    assert value(m, "smsgw_submit_results_total", provider="alpha", command_status="ESME_ROK") == 1
    throttled = {"provider": "alpha", "command_status": "ESME_RTHROTTLED"}
    assert value(m, "smsgw_submit_results_total", **throttled) == 1
    vendor = {"provider": "alpha", "command_status": "0x00000401"}
    assert value(m, "smsgw_submit_results_total", **vendor) == 1
    other = {"provider": "alpha", "command_status": "other"}
    assert value(m, "smsgw_submit_results_total", **other) == 1
    assert value(m, "smsgw_enqueue_to_submit_seconds_count") == 2
    assert value(m, "smsgw_enqueue_to_submit_seconds_sum") == pytest.approx(3.02)
    assert value(m, "smsgw_enqueue_to_submit_seconds_bucket", le="0.025") == 1
    assert value(m, "smsgw_enqueue_to_submit_seconds_bucket", le="+Inf") == 2
    assert value(m, "smsgw_submit_to_receipt_seconds_bucket", le="5.0") == 0
    assert value(m, "smsgw_submit_to_receipt_seconds_bucket", le="10.0") == 1
    assert value(m, "smsgw_provider_reconnects_total", provider="beta") == 1
    assert value(m, "smsgw_provider_reconnects_total", provider="alpha") == 0
    assert value(m, "smsgw_enquire_link_rtt_seconds_count", provider="alpha") == 1
    receipts = {"provider": "alpha", "kind": "receipt"}
    assert value(m, "smsgw_inbound_answer_seconds_count", **receipts) == 2
    assert value(m, "smsgw_inbound_answer_seconds_bucket", le="0.005", **receipts) == 1
    assert value(m, "smsgw_inbound_answer_seconds_count", provider="beta", kind="mo") == 1
    assert value(m, "smsgw_inbound_answer_seconds_count", provider="beta", kind="receipt") == 0
    assert value(m, "smsgw_inbound_messages_total", provider="beta", complete="true") == 2
    assert value(m, "smsgw_inbound_messages_total", provider="beta", complete="false") == 1
    assert value(m, "smsgw_inbound_messages_total", provider="alpha", complete="false") == 0
    assert value(m, "smsgw_receipts_orphaned_total", provider="beta") == 1
    assert value(m, "smsgw_webhook_deliveries_total") == 1
    assert value(m, "smsgw_webhook_failures_total") == 2
    assert value(m, "smsgw_webhook_given_up_total") == 1
    assert value(m, "smsgw_task_restarts_total", task="processor") == 1


def test_names_follow_the_conventions_and_labels_are_bounded() -> None:
    m = Metrics(["alpha"], process=False)
    for i in range(50):
        m.submit_result("alpha", 0x10000 + i)  # unknown statuses share one label
    m.observe_submit_to_receipt(1.0)
    for s in samples(m):
        assert s.name.startswith("smsgw_")
        # No "_created" series: prometheus-client's timestamps, named like counts.
        assert s.name.endswith(("_total", "_seconds", "_bucket", "_count", "_sum"))
    statuses = {
        s.labels["command_status"] for s in samples(m) if s.name == "smsgw_submit_results_total"
    }
    assert statuses == {"ESME_ROK", "other"}


def test_bucket_quantile_is_the_bound_of_the_bucket_holding_it() -> None:
    m = Metrics(["alpha", "beta"], process=False)
    assert math.isnan(bucket_quantile(m.inbound_answer_buckets("receipt"), 0.5))
    for seconds in (0.002, 0.003, 0.004, 0.2):
        m.inbound_answered("alpha", "receipt", seconds)
    m.inbound_answered("beta", "receipt", 0.02)
    m.inbound_answered("beta", "mo", 9.0)  # another kind: not counted
    buckets = m.inbound_answer_buckets("receipt")
    assert buckets[-1] == (math.inf, 5.0)  # both providers
    assert bucket_quantile(buckets, 0.5) == 0.005
    assert bucket_quantile(buckets, 0.8) == 0.025
    assert bucket_quantile(buckets, 0.99) == 0.25
    assert bucket_quantile([(1.0, 0.0), (math.inf, 2.0)], 0.99) == math.inf


def test_bad_values_are_refused() -> None:
    m = Metrics(process=False)
    with pytest.raises(ValueError, match="final"):
        m.message_final("alpha", MessageStatus.SUBMITTED)
    with pytest.raises(ValueError, match="final"):
        m.message_final("alpha", "bogus")
    with pytest.raises(ValueError, match=">= 0"):
        m.observe_enqueue_to_submit(-1.0)
    with pytest.raises(ValueError, match=">= 0"):
        m.enquire_link_rtt("alpha", float("nan"))
    with pytest.raises(ValueError, match="inbound kind"):
        m.inbound_answered("alpha", "alert", 0.1)


def test_command_status_label() -> None:
    assert command_status_label(0) == "ESME_ROK"
    assert command_status_label(0x58) == "ESME_RTHROTTLED"
    assert command_status_label(0x4FF) == "0x000004FF"
    assert command_status_label(0x500) == "other"


def health(
    name: str, *, configured: int, bound: int, in_flight: int, window: int
) -> ProviderHealth:
    return ProviderHealth(
        name=name,
        configured=configured,
        bound=bound,
        connections=(),
        in_flight=in_flight,
        capacity=window * bound,
        waiting=0,
        recent=RecentCounts(),
        recent_seconds=60.0,
        last_error=None,
        last_error_at=None,
        last_throttle_at=None,
        last_throttle_status=None,
        healthy=bound > 0,
    )


class Providers:
    """Stands for the provider manager: its ``snapshot()`` of real ``ProviderHealth`` values."""

    def __init__(self) -> None:
        self.health = {
            "alpha": health("alpha", configured=2, bound=2, in_flight=7, window=10),
            "beta": health("beta", configured=1, bound=0, in_flight=0, window=10),
        }

    def snapshot(self) -> Mapping[str, ProviderHealth]:
        return dict(self.health)


async def test_snapshot_gauges_are_read_at_scrape_time(tmp_path: Path) -> None:
    """Providers, adaptive rate (a real RateLimiter), queue depth and DLQ (a real SQLite queue),
    the webhook outbox (a real store): each scrape shows the sources' state at that moment."""
    m = Metrics(process=False)
    providers = Providers()
    limiter = RateLimiter.from_config(CONFIG)
    clock = [NOW]
    with trio.fail_after(30):
        async with (
            open_sqlite_queue(tmp_path / "q.sqlite3", clock=lambda: clock[0]) as queue,
            open_store(tmp_path / "gw.sqlite3", clock=lambda: clock[0]) as store,
        ):
            m.watch(providers=providers, rates=limiter, queue=queue, outbox=store)
            await queue.enqueue(
                [NewMessage(f"m{i}", b"x", priority=i % 2) for i in range(5)]
                + [NewMessage("later", b"x", not_before=NOW + 60)]
            )
            (lease,) = await queue.lease("c1", 1, 30.0)
            await queue.dead_letter(lease, reason="test")
            (lease,) = await queue.lease("c1", 1, 30.0)
            await store.enqueue_notifications(
                [NewNotification(NotificationKind.STATUS, "http://127.0.0.1:1/", "{}")] * 3
            )
            await m.refresh()

            assert value(m, "smsgw_queue_messages", state="ready") == 3
            assert value(m, "smsgw_queue_messages", state="delayed") == 1
            assert value(m, "smsgw_queue_messages", state="leased") == 1
            assert value(m, "smsgw_queue_messages", state="dead") == 1
            ready = {
                s.labels["priority"]: s.value
                for s in samples(m)
                if s.name == "smsgw_queue_ready_messages"
            }
            assert sum(ready.values()) == 3
            assert value(m, "smsgw_dead_letters") == 1
            assert value(m, "smsgw_webhook_outbox_notifications", state="pending") == 3
            assert value(m, "smsgw_webhook_outbox_notifications", state="dead") == 0
            assert value(m, "smsgw_provider_connections_configured", provider="alpha") == 2
            assert value(m, "smsgw_provider_connections_bound", provider="beta") == 0
            assert value(m, "smsgw_provider_window_in_flight", provider="alpha") == 7
            assert value(m, "smsgw_provider_window_capacity", provider="alpha") == 20
            assert value(m, "smsgw_provider_rate_per_second", provider="alpha") == 50
            assert value(m, "smsgw_metrics_source_up", source="queue") == 1

            # The next scrape sees the sources as they are then.
            providers.health["beta"] = health("beta", configured=1, bound=1, in_flight=3, window=5)
            limiter.on_throttle("alpha", 100.0)
            await queue.ack([lease])
            assert value(m, "smsgw_provider_connections_bound", provider="beta") == 1
            assert value(m, "smsgw_provider_window_capacity", provider="beta") == 5
            assert value(m, "smsgw_provider_rate_per_second", provider="alpha") < 50
            await m.refresh()
            assert value(m, "smsgw_queue_messages", state="leased") == 0
        # Closed sources: the scrape still answers, keeps the last reading, and says so.
        await m.refresh()
    assert value(m, "smsgw_metrics_source_up", source="queue") == 0
    assert value(m, "smsgw_queue_messages", state="ready") == 3


async def test_process_metrics_are_included_by_default() -> None:
    assert "process_cpu_seconds_total" in names(Metrics())


async def test_separate_listener_serves_metrics_over_http(nursery: trio.Nursery) -> None:
    m = Metrics(["alpha"], process=False)
    m.reconnect("alpha")
    with trio.fail_after(30):
        (bound, *_) = await nursery.start(serve_metrics, m, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=bound) as client:
            response = await client.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain; version=")
            families = {f.name for f in text_string_to_metric_families(response.text)}
            assert "smsgw_provider_reconnects" in families
            head = await client.head("/metrics")
            assert head.status_code == 200 and head.content == b""
            assert (await client.get("/other")).status_code == 404
            post = await client.post("/metrics")
            assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"


async def test_asgi_app_refreshes_the_async_sources(tmp_path: Path) -> None:
    """The app for the API listener reads the queue at each scrape (called as ASGI directly)."""
    m = Metrics(process=False)
    app = metrics_app(m, path=None)
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Mapping[str, object]) -> None:
        sent.append(dict(message))

    with trio.fail_after(30):
        async with open_sqlite_queue(tmp_path / "q.sqlite3") as queue:
            m.watch(queue=queue)
            await queue.enqueue([NewMessage("m1", b"x")])
            scope = {"type": "http", "method": "GET", "path": "/anything", "headers": []}
            await app(scope, receive, send)
    assert sent[0]["status"] == 200
    body = sent[1]["body"]
    assert isinstance(body, bytes)
    assert 'smsgw_queue_messages{state="ready"} 1.0' in body.decode()
