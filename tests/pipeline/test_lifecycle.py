"""The gateway's life: reload, graceful drain (in time and cut off), and recovery of what a
crash leaves behind (a queued message without its row; a message sent but not acked)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
import trio

from smpp_codec.text import Encoding
from smsgw.config import ProviderRate
from smsgw.errors import SetupError
from smsgw.gateway import GatewayNotRunning
from smsgw.messages import Accepted, Rejected, SubmitRequest
from smsgw.model import MessageStatus, SmscIdMapping, StatusEvent
from smsgw.payload import MessagePayload, encode_payload
from smsgw.processor import new_message
from smsgw.queue.base import NewMessage as QueueEntry
from smsgw.queue.sqlite import SqliteQueue, open_sqlite_queue
from smsgw.simulator import Faults
from smsgw.storage import open_store

from .harness import (
    FakeClock,
    Harness,
    message_history,
    provider,
    wait_dead_letters,
    wait_status,
    wait_until,
)

S = MessageStatus


def request(**fields: object) -> SubmitRequest:
    values: dict[str, object] = {"to": "4915112345", "source": "ACME", "text": "hello"}
    values.update(fields)
    return SubmitRequest(**values)  # type: ignore[arg-type]


def submit_count(sim: object) -> int:
    return int(sim.sim.stats.pdus_received.get("submit_sm", 0))  # type: ignore[attr-defined]


async def test_a_reload_adds_a_provider_without_a_restart(harness: Harness) -> None:
    a = await harness.simulator()
    b = await harness.simulator()
    config = harness.config([provider("a", a.port)])
    gateway = await harness.gateway(config)
    with trio.fail_after(20):
        (refused,) = await gateway.submit([request(provider="b")])
        assert isinstance(refused, Rejected) and "provider" in refused.errors
        await gateway.reload(harness.config([provider("a", a.port), provider("b", b.port)]))
        (accepted,) = await gateway.submit([request(provider="b")])
        assert isinstance(accepted, Accepted)
        view = await wait_status(gateway, accepted.id, S.DELIVERED)
    assert view.provider == "b" and submit_count(b) == 1 and submit_count(a) == 0


async def test_a_second_gateway_on_the_same_files_does_not_start(any_harness: Harness) -> None:
    # Both would run, and receipts reaching one's connections for the other's submits would be
    # orphaned (their messages left "submitted"): the second stops before opening anything.
    sim = await any_harness.simulator()
    config = any_harness.config([provider("a", sim.port)])
    first = await any_harness.gateway(config)
    with pytest.raises(SetupError) as refused:
        await any_harness.gateway(config)
    assert str(refused.value).startswith(
        f"{config.database_path} is in use by another gateway (pid {os.getpid()})"
    )
    with trio.fail_after(20):
        (accepted,) = await first.submit([request()])
        assert isinstance(accepted, Accepted)
        await wait_status(first, accepted.id, S.DELIVERED)
    assert submit_count(sim) == 1


async def test_a_drain_lets_in_flight_messages_finish(harness: Harness) -> None:
    sim = await harness.simulator()
    config = harness.config([provider("a", sim.port)])
    gateway = await harness.gateway(config)
    with trio.fail_after(20):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        sim.sim.set_faults(Faults(latency=0.5))
        results = await gateway.submit([request(text=f"m{i}") for i in range(5)])
        await wait_until(lambda: submit_count(sim) == 5, what="5 submits in flight")
        assert gateway.stats().in_flight == 5
        await gateway.drain(5.0)  # returns once run() has finished
        try:
            await gateway.submit([request()])
        except GatewayNotRunning:
            pass
        else:
            raise AssertionError("a drained gateway accepted a message")
    stats = gateway.stats()
    assert (stats.segments_submitted, stats.in_flight_abandoned, stats.in_flight) == (5, 0, 0)
    harness.gateways.remove(gateway)
    again = await harness.gateway(config)
    for result in results:
        assert isinstance(result, Accepted)
        view = await again.message(result.id)
        assert view is not None and view.status in (S.SUBMITTED, S.DELIVERED)
    assert submit_count(sim) == 5  # nothing sent twice


async def test_a_drain_past_its_grace_gives_in_flight_messages_back(harness: Harness) -> None:
    sim = await harness.simulator()
    config = harness.config([provider("a", sim.port, request_timeout=60)])
    gateway = await harness.gateway(config)
    with trio.fail_after(30):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        sim.sim.set_faults(Faults(latency=30))  # from now on nothing is answered in time
        results = await gateway.submit([request(text=f"m{i}") for i in range(3)])
        await wait_until(lambda: submit_count(sim) == 3, what="3 submits in flight")
        await gateway.drain(0.2)
        assert gateway.stats().in_flight_abandoned == 3
        harness.gateways.remove(gateway)
        sim.sim.set_faults(Faults())
        again = await harness.gateway(config)
        for result in results:
            assert isinstance(result, Accepted)
            view = await wait_status(again, result.id, S.DELIVERED)
            assert message_history(view)[-2:] == [S.SUBMITTED, S.DELIVERED]
    # At-least-once: each cut-off message reached the SMSC at most twice.
    assert submit_count(sim) == 6


async def test_a_message_cut_off_by_a_drain_keeps_its_attempts(harness: Harness) -> None:
    """A message that failed once (a temporary error, counted), then was cut off in flight by
    a drain past its grace, goes back to the queue with its retry state: attempts counted
    before a stop still count towards ``max_attempts``."""
    sim = await harness.simulator()
    config = harness.config([provider("a", sim.port, request_timeout=60)])
    gateway = await harness.gateway(config)
    with trio.fail_after(30):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        sim.sim.set_faults(Faults(temporary_error_fraction=1.0))
        (accepted,) = await gateway.submit([request()])
        await wait_until(lambda: gateway.stats().retried == 1, what="the first attempt failed")
        sim.sim.set_faults(Faults(latency=30))  # the retry is never answered in time
        await wait_until(lambda: submit_count(sim) == 2, what="the retry in flight")
        await gateway.drain(0.2)
        harness.gateways.remove(gateway)
        assert gateway.stats().in_flight_abandoned == 1
        async with open_sqlite_queue(config.queue_path) as queue:
            (lease,) = await queue.lease("test", 1, 30.0)
    assert isinstance(accepted, Accepted) and lease.message.id == accepted.id
    assert lease.message.last_error is not None
    assert lease.message.last_error.startswith("cut off while in flight [smsgw a=1 t=0 l=")


async def test_a_queued_message_whose_row_was_never_written_gets_it_rebuilt(
    harness: Harness,
) -> None:
    """The crash window between the queue (first) and the database (second) at submit."""
    sim = await harness.simulator()
    config = harness.config([provider("a", sim.port)])
    config.queue_path.parent.mkdir(parents=True)
    payload = MessagePayload(
        id="m-crash",
        to="4915112345",
        source="ACME",
        encoding=Encoding.GSM7,
        created_at=1_700_000_000.0,
        text="survivor",
        client_ref="c-1",
    )
    with trio.fail_after(20):
        async with open_sqlite_queue(config.queue_path) as queue:
            await queue.enqueue([QueueEntry(id=payload.id, payload=encode_payload(payload))])
        gateway = await harness.gateway(config)
        view = await wait_status(gateway, payload.id, S.DELIVERED)
    assert view.client_ref == "c-1" and view.created_at == 1_700_000_000.0
    assert view.events[0].reason == "accepted (row rebuilt from the queue)"
    assert gateway.stats().rows_rebuilt == 1


async def test_a_message_sent_but_not_acked_is_not_sent_again(harness: Harness) -> None:
    """A crash after the submit_sm_resp was recorded, before the ack: the lease expires and
    the message comes back; its part is found accepted (a duplicate detected, not sent)."""
    sim = await harness.simulator()
    clock = FakeClock()
    config = harness.config([provider("a", sim.port)])
    config.queue_path.parent.mkdir(parents=True)
    payload = MessagePayload(
        id="m-sent",
        to="4915112345",
        source="ACME",
        encoding=Encoding.GSM7,
        created_at=clock(),
        text="once",
    )
    with trio.fail_after(20):
        async with (
            open_sqlite_queue(config.queue_path, clock=clock) as queue,
            open_store(config.database_path, clock=clock) as store,
        ):
            await queue.enqueue([QueueEntry(id=payload.id, payload=encode_payload(payload))])
            await store.create_messages([new_message(payload, 1)])
            (lease,) = await queue.lease("crashed", 1, 30.0)
            await store.map_smsc_ids([SmscIdMapping("a", "1F", payload.id, 1)])
            await store.record_events(
                [
                    StatusEvent(payload.id, S.SUBMITTING, "submitting to a", 1, "a"),
                    StatusEvent(payload.id, S.SUBMITTED, "accepted by a as 1F", 1, "a"),
                ]
            )
        clock.advance(31)  # the crashed consumer's lease runs out
        gateway = await harness.gateway(config, clock=clock)
        await wait_until(lambda: gateway.stats().duplicates_detected == 1, what="the duplicate")
        await wait_until(lambda: gateway.stats().in_flight == 0, what="the ack")
        depth = await gateway.queue_depth()
        view = await gateway.message(payload.id)
    assert submit_count(sim) == 0
    assert view is not None and view.status is S.SUBMITTED
    assert (depth.ready, depth.leased, depth.delayed, depth.dead) == (0, 0, 0, 0)
    assert lease.message.attempts == 1


async def test_an_unreadable_payload_is_dead_lettered(harness: Harness) -> None:
    sim = await harness.simulator()
    config = harness.config([provider("a", sim.port)])
    config.queue_path.parent.mkdir(parents=True)
    with trio.fail_after(20):
        async with open_sqlite_queue(config.queue_path) as queue:
            await queue.enqueue([QueueEntry(id="junk", payload=b"\x07garbage")])
        gateway = await harness.gateway(config)
        (dead,) = await wait_dead_letters(gateway, "junk")
    assert dead.message.id == "junk" and "payload version 7" in dead.reason


async def test_leases_are_extended_while_a_message_takes_long(harness: Harness) -> None:
    sim = await harness.simulator()
    config = harness.config(
        [provider("a", sim.port, request_timeout=30)], queue={"visibility_timeout": 0.9}
    )
    gateway = await harness.gateway(config)
    with trio.fail_after(20):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        sim.sim.set_faults(Faults(latency=2.5))  # well past the visibility timeout
        (accepted,) = await gateway.submit([request()])
        assert isinstance(accepted, Accepted)
        await wait_status(gateway, accepted.id, S.SUBMITTED, S.DELIVERED)
        sim.sim.set_faults(Faults())
    # Without the extensions another consumer would have leased it again and sent it twice.
    assert submit_count(sim) == 1
    assert gateway.stats().leases_lost == 0


async def test_a_message_leased_again_while_in_flight_here_is_sent_once(
    harness: Harness,
) -> None:
    """The wall clock steps forward (NTP after a suspend, a migrated VM) past the lease of a
    message waiting for the SMSC's answer: the queue hands it out again, to another consumer
    of this process. That one waits for the first to finish, finds the part accepted, and does
    not send it again."""
    sim = await harness.simulator()
    clock = FakeClock()
    config = harness.config(
        [provider("a", sim.port, request_timeout=30)], queue={"visibility_timeout": 30.0}
    )
    gateway = await harness.gateway(config, clock=clock)
    with trio.fail_after(20):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        sim.sim.set_faults(Faults(latency=1.5))
        (accepted,) = await gateway.submit([request()])
        assert isinstance(accepted, Accepted)
        await wait_until(lambda: submit_count(sim) == 1, what="the submit in flight")
        clock.advance(60)  # its lease has expired: the other consumer leases it
        await wait_until(lambda: gateway.stats().duplicates_detected == 1, what="the 2nd lease")
        await wait_until(lambda: gateway.stats().in_flight == 0, what="the ack")
        sim.sim.set_faults(Faults())
        view = await wait_status(gateway, accepted.id, S.SUBMITTED, S.DELIVERED)
        depth = await gateway.queue_depth()
    assert submit_count(sim) == 1
    assert view.parts[0].provider == "a"
    assert (depth.ready, depth.leased, depth.delayed) == (0, 0, 0)


async def test_a_stop_during_an_smsc_outage_gives_the_unsent_messages_back_at_once(
    harness: Harness,
) -> None:
    """The SMSC is down and the messages wait for a connection (up to their request timeout,
    a minute here): a drain gives them back to the queue as they were, at once, instead of
    holding the stop for its whole grace. Nothing is counted as an attempt; after a restart
    with the SMSC back, each is sent once."""
    sim = await harness.simulator()
    config = harness.config([provider("a", sim.port, request_timeout=60)])
    gateway = await harness.gateway(config)
    with trio.fail_after(20):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        sim.kill()
        await wait_until(lambda: not gateway.providers.healthy("a"), what="a down")
        results = await gateway.submit([request(text=f"m{i}") for i in range(5)])
        await wait_until(lambda: gateway.stats().in_flight == 5, what="5 waiting")
        harness.gateways.remove(gateway)
        await gateway.drain(60.0)  # returns once run() has finished
    stats = gateway.stats()
    assert (stats.retried, stats.in_flight_abandoned, stats.segments_submitted) == (0, 0, 0)
    again_sim = await harness.simulator()
    again = await harness.gateway(harness.config([provider("a", again_sim.port)]))
    with trio.fail_after(20):
        for result in results:
            assert isinstance(result, Accepted)
            view = await wait_status(again, result.id, S.SUBMITTED, S.DELIVERED)
            assert any("the gateway stopped" in (e.reason or "") for e in view.events)
    assert submit_count(again_sim) == 5


async def test_a_stop_does_not_wait_for_the_rate_limit(harness: Harness) -> None:
    """At 1 message/s, 6 messages leased together would hold a stop for 5 s of tokens: the
    drain sends none of those still waiting for their token (the first went out at once)."""
    sim = await harness.simulator()
    config = harness.config([provider("a", sim.port, rate=ProviderRate(per_second=1))])
    gateway = await harness.gateway(config)
    with trio.fail_after(20):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        await gateway.submit([request(text=f"m{i}") for i in range(6)])
        await wait_until(lambda: gateway.stats().segments_submitted >= 1, what="the first")
        harness.gateways.remove(gateway)
        await gateway.drain(60.0)
        async with open_sqlite_queue(config.queue_path) as queue:
            depth = await queue.depth()
    sent = submit_count(sim)
    assert 1 <= sent < 6
    assert gateway.stats().retried == 0
    assert (depth.ready, depth.delayed, depth.leased) == (6 - sent, 0, 0)  # back at once


async def test_one_idle_consumer_polls_for_all(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle gateway does not have every consumer poll the queue: one does, and wakes the
    others when it finds work. Messages queued then are all sent, by more than one consumer."""
    leases: Counter[str] = Counter()
    leased: Counter[str] = Counter()
    lease = SqliteQueue.lease

    async def counted(self: SqliteQueue, consumer: str, *args: Any) -> Any:
        found = await lease(self, consumer, *args)
        leases[consumer] += 1
        leased[consumer] += len(found)
        return found

    monkeypatch.setattr(SqliteQueue, "lease", counted)
    sim = await harness.simulator(faults=Faults(latency=0.05))
    config = harness.config([provider("a", sim.port)], queue={"consumers": 4, "lease_batch": 2})
    gateway = await harness.gateway(config)
    with trio.fail_after(20):
        await wait_until(lambda: gateway.providers.healthy("a"), what="a bound")
        await trio.sleep(1.5)  # idle
        polls = sorted(leases.values())
        assert len(polls) == 4 and polls[-2] <= 2 < polls[-1], leases  # one poller
        results = await gateway.submit([request(text=f"m{i}") for i in range(20)])
        for result in results:
            assert isinstance(result, Accepted)
            await wait_status(gateway, result.id, S.SUBMITTED, S.DELIVERED)
    assert submit_count(sim) == 20
    assert sum(1 for n in leased.values() if n) >= 2, leased  # the others were woken
