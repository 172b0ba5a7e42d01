"""The metrics and the webhook deliverer wired into a running gateway, against the simulator.

A real gateway (embedded queue, SQLite) sends through the SMSC simulator; its metrics are
scraped over HTTP from their own listener and parsed with prometheus-client's parser; status
webhooks reach a real HTTP receiver on 127.0.0.1.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from daemon.harness import DaemonProcess, provider_toml, write_config
from pipeline.harness import Backend, gateway_config, provider, wait_status
from prometheus_client.parser import text_string_to_metric_families
from simulators import start_simulator
from sqlite_lock import write_locked
from webhooks.receiver import Receiver

from smpp_codec.constants import EsmClass
from smpp_codec.pdu import DeliverSm
from smsgw.config import DatabaseConfig, EmbeddedQueueConfig, GatewayConfig, WebhooksConfig
from smsgw.gateway import Gateway, GatewayUnavailable
from smsgw.messages import Accepted, SubmitRequest
from smsgw.metrics import serve_metrics
from smsgw.model import MessageStatus
from smsgw.signing import verify
from smsgw.simulator import Faults, SimulatorConfig
from smsgw.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

SECRET = "wiring-test-secret"


class Running:
    """A gateway in the test's nursery and its metrics listener."""

    def __init__(self, gateway: Gateway, metrics_url: str) -> None:
        self.gateway = gateway
        self.metrics_url = metrics_url

    async def scrape(self) -> Samples:
        async with httpx.AsyncClient() as client:
            response = await client.get(self.metrics_url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }

    async def submit(self, text: str, **fields: object) -> str:
        request = SubmitRequest(to="4915112345", source="ACME", text=text, **fields)  # type: ignore[arg-type]
        (answer,) = await self.gateway.submit([request])
        assert isinstance(answer, Accepted), answer
        return answer.id


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


Start = Callable[[GatewayConfig], Awaitable[Running]]


@pytest.fixture
async def start(nursery: trio.Nursery) -> AsyncIterator[Start]:
    """Starts gateways (webhook delivery on) with a metrics listener; drains them at the end."""
    gateways: list[Gateway] = []

    async def starter(config: GatewayConfig) -> Running:
        gateway = Gateway(config, rand=random.Random(3))
        with trio.fail_after(10):
            await nursery.start(gateway.run)
            binds = await nursery.start(serve_metrics, gateway.metrics, "127.0.0.1", 0)
        gateways.append(gateway)
        return Running(gateway, binds[0] + "/metrics")

    yield starter
    with trio.fail_after(30):
        for gateway in gateways:
            await gateway.drain(2.0)


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"no {what} within {timeout}s")


async def test_traffic_moves_the_counters_histograms_and_gauges(
    start: Start, nursery: trio.Nursery, tmp_path: Path
) -> None:
    sim = await start_simulator(nursery, SimulatorConfig(seed=1))
    config = gateway_config(
        tmp_path / "state", [provider("a", sim.port, enquire_link_interval=0.1)]
    )
    running = await start(config)
    with trio.fail_after(30):
        before = await running.scrape()
        # Started at zero for the configured provider, before any traffic.
        assert (
            "smsgw_messages_total",
            frozenset({("provider", "a"), ("status", "delivered")}),
        ) in before
        assert value(before, "smsgw_messages_total", provider="a", status="delivered") == 0
        assert value(before, "smsgw_provider_connections_configured", provider="a") == 1

        ids = [await running.submit(f"hello {n}") for n in range(4)]
        for message_id in ids:
            await wait_status(running.gateway, message_id, MessageStatus.DELIVERED)
        mo = await sim.sim.send_mo(source_addr="4915112345", destination_addr="12345", text="Hej")
        assert mo.ok
        # A permanent error: the message fails (dead-lettered) and its command_status counts.
        sim.sim.set_faults(Faults(permanent_error_fraction=1.0))
        failed = await running.submit("doomed")
        await wait_status(running.gateway, failed, MessageStatus.FAILED)
        sim.sim.set_faults(Faults())

        await wait_for(lambda: running.gateway.providers.health("a").bound == 1, "bound connection")
        after = await running.scrape()

    delivered = value(after, "smsgw_messages_total", provider="a", status="delivered")
    assert delivered == 4
    assert value(after, "smsgw_messages_total", provider="a", status="failed") == 1
    ok = {("provider", "a"), ("command_status", "ESME_ROK")}
    assert after[("smsgw_submit_results_total", frozenset(ok))] == 4
    assert (
        value(after, "smsgw_submit_results_total", provider="a", command_status="ESME_RINVDSTADR")
        == 1
    )
    assert value(after, "smsgw_enqueue_to_submit_seconds_count") == 4
    assert value(after, "smsgw_enqueue_to_submit_seconds_bucket", le="+Inf") == 4
    assert value(after, "smsgw_submit_to_receipt_seconds_count") == 4
    # Each receipt and the MO was answered once, after it was stored.
    assert value(after, "smsgw_inbound_answer_seconds_count", provider="a", kind="receipt") == 4
    assert value(after, "smsgw_inbound_answer_seconds_count", provider="a", kind="mo") == 1
    assert value(after, "smsgw_inbound_messages_total", provider="a", complete="true") == 1
    # The queue and DLQ gauges are read at scrape time: the failed message is dead-lettered.
    assert value(after, "smsgw_dead_letters") == 1
    assert value(after, "smsgw_queue_messages", state="dead") == 1
    assert value(after, "smsgw_provider_connections_bound", provider="a") == 1
    assert value(after, "smsgw_provider_rate_per_second", provider="a") > 0
    assert value(after, "smsgw_metrics_source_up", source="queue") == 1
    assert value(after, "smsgw_metrics_source_up", source="outbox") == 1


async def test_enquire_link_round_trips_and_reconnects_are_measured(
    start: Start, nursery: trio.Nursery, tmp_path: Path
) -> None:
    sim = await start_simulator(nursery, SimulatorConfig(seed=1))
    config = gateway_config(
        tmp_path / "state", [provider("a", sim.port, enquire_link_interval=0.05)]
    )
    running = await start(config)
    manager = running.gateway.providers
    with trio.fail_after(30):
        await wait_for(lambda: manager.health("a").bound == 1, "first bind")
        samples = await running.scrape()
        await wait_for(
            lambda: (
                running.gateway.metrics.registry.get_sample_value(
                    "smsgw_enquire_link_rtt_seconds_count", {"provider": "a"}
                )
                not in (None, 0.0)
            ),
            "an enquire_link round trip",
        )
        assert value(samples, "smsgw_provider_reconnects_total", provider="a") == 0
        # The next PDU on the bound link (an enquire_link) makes the simulator drop it.
        sim.sim.set_faults(Faults(disconnect_after_pdus=1))
        await wait_for(lambda: manager.health("a").bound == 0, "the link to drop")
        sim.sim.set_faults(Faults())
        await wait_for(lambda: manager.health("a").bound == 1, "the rebind")
        samples = await running.scrape()
    assert value(samples, "smsgw_provider_reconnects_total", provider="a") >= 1
    assert value(samples, "smsgw_enquire_link_rtt_seconds_count", provider="a") >= 1


async def test_status_webhooks_reach_the_receiver_signed_and_counted(
    start: Start, nursery: trio.Nursery, tmp_path: Path
) -> None:
    receiver = Receiver()
    await receiver.start(nursery)
    sim = await start_simulator(nursery, SimulatorConfig(seed=1))
    webhooks = WebhooksConfig(
        secret=SECRET, backoff_initial=0.05, backoff_max=0.2, poll_interval=0.1, timeout=2.0
    )
    config = gateway_config(tmp_path / "state", [provider("a", sim.port)], webhooks=webhooks)
    running = await start(config)
    # The receiver is down at first: the first attempts fail and are retried later.
    receiver.mode = "fail"
    with trio.fail_after(30):
        message_id = await running.submit("hook me", callback_url=receiver.url, client_ref="c1")
        await wait_status(running.gateway, message_id, MessageStatus.DELIVERED)
        await wait_for(lambda: len(receiver.received) >= 1, "a failed attempt")
        receiver.mode = "accept"

        def accepted_statuses() -> list[str]:
            return [json.loads(r.body)["status"] for r in receiver.received if r.answered == 204]

        await wait_for(
            lambda: {"submitted", "delivered"} <= set(accepted_statuses()), "the webhooks"
        )
        # Every notification delivered (none pending): the counts are final.
        while True:
            samples = await running.scrape()
            if value(samples, "smsgw_webhook_outbox_notifications", state="pending") == 0:
                break
            await trio.sleep(0.05)

    accepted = [r for r in receiver.received if r.answered == 204]
    bodies = [json.loads(r.body) for r in accepted]
    assert {b["message_id"] for b in bodies} == {message_id}
    assert {b["client_ref"] for b in bodies} == {"c1"}
    assert {"submitted", "delivered"} <= {b["status"] for b in bodies}
    for request in accepted:
        verify(
            SECRET,
            timestamp=request.headers[TIMESTAMP_HEADER.lower()],
            body=request.body,
            signature=request.headers[SIGNATURE_HEADER.lower()],
            now=time.time(),  # wall-clock: the signature's timestamp is epoch seconds
        )
    assert value(samples, "smsgw_webhook_deliveries_total") == len(accepted)
    failures = sum(1 for r in receiver.received if r.answered == 500)
    assert failures >= 1
    assert value(samples, "smsgw_webhook_failures_total") == failures
    assert value(samples, "smsgw_webhook_outbox_notifications", state="delivered") == len(accepted)


async def test_status_changes_wake_the_deliverer(
    start: Start, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """With a poll interval far beyond the test's bound, only the wake-up the processor and
    the DLR handler give after writing a notification can deliver the webhooks in time."""
    receiver = Receiver()
    await receiver.start(nursery)
    sim = await start_simulator(nursery, SimulatorConfig(seed=1))
    webhooks = WebhooksConfig(poll_interval=3600.0, timeout=2.0)
    config = gateway_config(tmp_path / "state", [provider("a", sim.port)], webhooks=webhooks)
    running = await start(config)
    with trio.fail_after(20):
        message_id = await running.submit("wake up", callback_url=receiver.url)
        await wait_status(running.gateway, message_id, MessageStatus.DELIVERED)
        await wait_for(
            lambda: "delivered" in {json.loads(r.body)["status"] for r in receiver.received},
            "the delivered webhook",
        )
    assert all(r.answered == 204 for r in receiver.received)


async def test_inbound_messages_are_pushed_to_inbound_url_at_once(
    start: Start, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """An MO is stored, then POSTed to ``[webhooks] inbound_url``; the poll interval is far
    beyond the test's bound, so only the MO handler's wake-up can deliver it in time."""
    receiver = Receiver()
    await receiver.start(nursery)
    sim = await start_simulator(nursery, SimulatorConfig(seed=1))
    webhooks = WebhooksConfig(poll_interval=3600.0, timeout=2.0, inbound_url=receiver.url)
    config = gateway_config(tmp_path / "state", [provider("a", sim.port)], webhooks=webhooks)
    running = await start(config)
    with trio.fail_after(20):
        await wait_for(lambda: running.gateway.providers.health("a").bound == 1, "a bind")
        await sim.sim.send_mo(
            source_addr="4917600000001", destination_addr="ACME", text="ping from a phone"
        )
        await wait_for(lambda: bool(receiver.received), "the inbound webhook")
    body = json.loads(receiver.received[0].body)
    assert (body["event"], body["from"], body["text"]) == (
        "inbound",
        "4917600000001",
        "ping from a phone",
    )


async def test_the_daemon_serves_metrics_on_their_own_listener_when_configured(
    tmp_path: Path,
) -> None:
    text = f"""
[gateway]
state_dir = "{(tmp_path / "state").as_posix()}"
drain_grace = "1s"

[api]
port = 0

[metrics]
port = 0
""" + provider_toml("a", 1)
    config = write_config(tmp_path / "gw.toml", text)
    async with trio.open_nursery() as nursery:
        daemon = await nursery.start(DaemonProcess(config).run)
        record = await daemon.wait_logged("gateway ready")
        with trio.fail_after(10):
            async with httpx.AsyncClient() as client:
                own = await client.get(record["metrics"])
                on_api = await client.get(record["api"] + "/metrics")
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(60) == 0
    assert not record["metrics"].startswith(record["api"])
    assert own.status_code == 200 and "smsgw_queue_messages" in own.text
    assert on_api.status_code == 404


@pytest.mark.parametrize("backend", ["embedded", "redis"])
async def test_multipart_mos_waiting_for_parts_are_a_gauge(
    start: Start,
    nursery: trio.Nursery,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    backend: str,
) -> None:
    """Counted in this instance's reassembler, or with a Redis queue in Redis."""
    url = request.getfixturevalue("redis_server").url if backend == "redis" else None
    sim = await start_simulator(nursery, SimulatorConfig(seed=1))
    config = gateway_config(
        tmp_path / "state", [provider("a", sim.port)], backend=Backend(backend, url)
    )
    running = await start(config)

    async def deliver(number: int, text: bytes) -> None:
        pdu = DeliverSm(
            sequence_number=0,
            source_addr="4915112345",
            destination_addr="12345",
            esm_class=EsmClass.UDHI,
            short_message=bytes([5, 0, 3, 9, 2, number]) + text,
        )
        assert await sim.deliver(pdu) == [0]

    with trio.fail_after(20):
        await wait_for(lambda: running.gateway.providers.health("a").bound == 1, "bound")
        await deliver(1, b"first half")
        waiting = await running.scrape()
        await deliver(2, b", second half")
        done = await running.scrape()
    assert value(waiting, "smsgw_inbound_multipart_pending") == 1
    assert value(waiting, "smsgw_metrics_source_up", source="inbound") == 1
    assert value(done, "smsgw_inbound_multipart_pending") == 0
    assert value(done, "smsgw_inbound_messages_total", provider="a", complete="true") == 1


@pytest.mark.parametrize("gauge", ["smsgw_database_writable", "smsgw_queue_writable"])
async def test_writable_falls_while_writes_fail_and_rises_after(
    start: Start, nursery: trio.Nursery, tmp_path: Path, gauge: str
) -> None:
    """0 from a write the database (or the embedded queue's file) refused (here: another
    process holds its write lock beyond the busy timeout) until one commits; an idle
    gateway's scrape probes for that. The other file's gauge stays 1."""
    sim = await start_simulator(nursery, SimulatorConfig(seed=1))
    config = gateway_config(
        tmp_path / "state",
        [provider("a", sim.port)],
        database=DatabaseConfig(commit_interval=0.002, busy_timeout=0.2),
    )
    config = attrs.evolve(
        config, queue=attrs.evolve(config.queue, embedded=EmbeddedQueueConfig(busy_timeout=0.2))
    )
    locked, other = (
        (config.database_path, "smsgw_queue_writable")
        if gauge == "smsgw_database_writable"
        else (config.queue_path, "smsgw_database_writable")
    )
    running = await start(config)
    with trio.fail_after(20):
        assert value(await running.scrape(), gauge) == 1
        with write_locked(locked):
            with pytest.raises(GatewayUnavailable):
                await running.submit("refused")
            assert value(await running.scrape(), gauge) == 0
            scraped = await running.scrape()
            assert value(scraped, gauge) == 0  # the probe fails
            assert value(scraped, other) == 1
        assert value(await running.scrape(), gauge) == 1  # the probe works
