"""End to end over real TCP: a message from submit() to its receipt, on both queue backends."""

from __future__ import annotations

from pathlib import Path

import trio

from smsgw.config import ProviderTls
from smsgw.messages import Accepted, Rejected, SubmitRequest
from smsgw.model import MessageStatus
from smsgw.simulator import SimulatorConfig

from .harness import Harness, message_history, provider, wait_status

S = MessageStatus


async def test_a_message_goes_queued_submitting_submitted_delivered(any_harness: Harness) -> None:
    h = any_harness
    sim = await h.simulator()
    gateway = await h.gateway(h.config([provider("a", sim.port)]))
    with trio.fail_after(20):
        (accepted,) = await gateway.submit(
            [SubmitRequest(to="+4915112345", source="ACME", text="hi")]
        )
        assert isinstance(accepted, Accepted)
        assert accepted.status is S.QUEUED
        assert (accepted.parts, accepted.encoding) == (1, "gsm7")
        view = await wait_status(gateway, accepted.id, S.DELIVERED)
    assert message_history(view) == [S.QUEUED, S.SUBMITTING, S.SUBMITTED, S.DELIVERED]
    assert view.provider == "a"
    (part,) = view.parts
    assert part.status is S.DELIVERED and part.smsc_id
    assert all(e.at > 0 and e.reason for e in view.events)
    assert sim.sim.stats.submits_accepted == 1
    stats = gateway.stats()
    assert (stats.accepted, stats.submitted, stats.segments_submitted, stats.receipts) == (
        1,
        1,
        1,
        1,
    )


async def test_invalid_requests_are_rejected_by_field_and_the_valid_ones_accepted(
    harness: Harness,
) -> None:
    sim = await harness.simulator()
    gateway = await harness.gateway(harness.config([provider("a", sim.port)]))
    with trio.fail_after(20):
        results = await gateway.submit(
            [
                SubmitRequest(to="not a number", source="ACME", text="x"),
                SubmitRequest(to="4915112345", source="ACME", text="fine"),
                SubmitRequest(
                    to="4915112345", source="ACME", text="x", provider="nope", priority=12
                ),
            ]
        )
        bad1, good, bad2 = results
        assert isinstance(bad1, Rejected) and bad1.index == 0 and set(bad1.errors) == {"to"}
        assert isinstance(bad2, Rejected) and set(bad2.errors) == {"provider", "priority"}
        assert isinstance(good, Accepted)
        await wait_status(gateway, good.id, S.DELIVERED)
    assert sim.sim.stats.submits_accepted == 1
    assert gateway.stats().rejected == 2


async def test_many_messages_through_several_consumers_are_each_sent_once(
    harness: Harness,
) -> None:
    sim = await harness.simulator()
    config = harness.config(
        [provider("a", sim.port, connections=2, window=20)],
        queue={"consumers": 3, "lease_batch": 25},
    )
    gateway = await harness.gateway(config)
    with trio.fail_after(60):
        requests = [
            SubmitRequest(to=f"49151{i:06d}", source="ACME", text=f"n{i}", priority=i % 10)
            for i in range(300)
        ]
        results = await gateway.submit(requests)
        ids = [r.id for r in results if isinstance(r, Accepted)]
        assert len(ids) == 300
        for message_id in ids:
            await wait_status(gateway, message_id, S.DELIVERED)
    assert sim.sim.stats.submits_accepted == 300
    stats = gateway.stats()
    assert (stats.submitted, stats.receipts, stats.duplicates_detected) == (300, 300, 0)
    depth = await gateway.queue_depth()
    assert (depth.ready, depth.leased, depth.delayed, depth.dead) == (0, 0, 0, 0)


async def test_a_message_and_its_receipt_over_tls(harness: Harness, certs: Path) -> None:
    """``[providers.tls]`` against the simulator serving TLS, trusting the test CA."""
    sim = await harness.simulator(
        SimulatorConfig(seed=1, tls_cert=certs / "server.pem", tls_key=certs / "server.key")
    )
    tls = ProviderTls(enabled=True, ca_file=certs / "ca.pem")
    gateway = await harness.gateway(harness.config([provider("a", sim.port, tls=tls)]))
    with trio.fail_after(20):
        (accepted,) = await gateway.submit(
            [SubmitRequest(to="+4915112345", source="ACME", text="hi")]
        )
        assert isinstance(accepted, Accepted)
        await wait_status(gateway, accepted.id, S.DELIVERED)
    assert sim.sim.stats.tls_failures == 0
