"""The provider manager against simulators over real TCP on 127.0.0.1.

Real sockets, real clock, short timers: every wait is bounded by ``trio.fail_after`` and the
assertions are about outcomes (who got what, which error), never about how long things took.
"""

from __future__ import annotations

import functools
import logging

import pytest
import trio

from smpp_codec import CommandStatus, DeliverSm, SubmitSm
from smsgw.config import BindType
from smsgw.pool import HealthPolicy
from smsgw.providers import ProviderManager, ProviderUnavailable
from smsgw.retry import Outcome, classify_exception
from smsgw.simulator import Faults, ReceiptConfig, SimulatorConfig
from smsgw.smpp import (
    ClientConfig,
    ClientState,
    ConnectionLost,
    RequestTimeout,
    SubmitRejected,
    ThrottledError,
    open_stream,
)

from .conftest import Setup
from .harness import Gate, message_id, provider, sm, until

S = CommandStatus


async def test_two_providers_bind_their_pools(setup: Setup) -> None:
    with trio.fail_after(30):
        sim_a = await setup.simulator()
        sim_b = await setup.simulator()
        manager = await setup.manager(
            [provider("a", sim_a.port, connections=3), provider("b", sim_b.port, connections=2)]
        )
        assert manager.names == ("a", "b")
        await until(lambda: manager.health("a").bound == 3 and manager.health("b").bound == 2)
        assert sim_a.sim.stats.sessions == 3 and sim_a.sim.stats.binds == 3
        assert sim_b.sim.stats.sessions == 2 and sim_b.sim.stats.binds == 2

        response = await manager.submit("a", sm(), timeout=5)
        assert message_id(response)
        await manager.submit("b", sm(), timeout=5)
        await manager.submit("b", sm(), timeout=5)
        assert sim_a.sim.stats.submits_accepted == 1
        assert sim_b.sim.stats.submits_accepted == 2

        health = manager.health("a")
        assert health.configured == 3 and health.healthy
        assert [c.state for c in health.connections] == [ClientState.BOUND] * 3
        assert [c.index for c in health.connections] == [0, 1, 2]
        assert health.capacity == 30 and health.in_flight == 0
        assert health.recent.ok == 1 and health.last_error is None
        assert set(manager.snapshot()) == {"a", "b"}


async def test_sequential_submits_take_turns_on_the_connections(setup: Setup) -> None:
    with trio.fail_after(30):
        sim = await setup.simulator()
        manager = await setup.manager([provider("a", sim.port, connections=3)])
        await until(lambda: manager.health("a").bound == 3)
        for _ in range(30):
            await manager.submit("a", sm(), timeout=5)
        per_connection = [c.stats.requests_ok for c in manager.health("a").connections]
        assert per_connection == [10, 10, 10]
        assert sim.sim.stats.submits_accepted == 30


async def test_concurrent_submits_fill_the_freest_windows_then_wait(setup: Setup) -> None:
    """Answers held back: 6 submits spread 2 per connection (window 2); a 7th waits for a
    window to come free instead of failing, and every one succeeds."""
    with trio.fail_after(30):
        sim = await setup.simulator(SimulatorConfig(seed=1, faults=Faults(latency=0.5)))
        manager = await setup.manager([provider("a", sim.port, connections=3, window=2)])
        await until(lambda: manager.health("a").bound == 3)
        results: list[str] = []

        async def one() -> None:
            response = await manager.submit("a", sm(), timeout=10)
            results.append(message_id(response))

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(one)
            await until(lambda: manager.health("a").in_flight == 6)
            health = manager.health("a")
            assert [c.in_flight for c in health.connections] == [2, 2, 2]
            nursery.start_soon(one)
            await until(lambda: manager.health("a").waiting == 1)
        assert len(results) == 7
        assert sum(c.stats.requests_ok for c in manager.health("a").connections) == 7
        assert sim.sim.stats.submits_accepted == 7
        assert manager.health("a").in_flight == 0


async def test_full_windows_past_the_timeout_fail_without_sending(setup: Setup) -> None:
    with trio.fail_after(30):
        sim = await setup.simulator(SimulatorConfig(seed=1, faults=Faults(latency=1.0)))
        manager = await setup.manager([provider("a", sim.port, window=1)])
        await until(lambda: manager.health("a").bound == 1)
        async with trio.open_nursery() as nursery:

            async def first() -> None:
                await manager.submit("a", sm(), timeout=10)

            nursery.start_soon(first)
            await until(lambda: manager.health("a").in_flight == 1)
            with pytest.raises(RequestTimeout) as caught:
                await manager.submit("a", sm(), timeout=0.2)
            assert caught.value.sent is False
            assert classify_exception(caught.value) is Outcome.FAILOVER
        assert sim.sim.stats.submits_accepted == 1


async def test_a_dropped_connection_reconnects_while_the_others_serve(setup: Setup) -> None:
    with trio.fail_after(30):
        sim = await setup.simulator()
        gate = Gate()
        manager = await setup.manager([provider("a", sim.port, connections=3)], connector=gate)
        await until(lambda: manager.health("a").bound == 3)
        # Hold reconnections, then let the simulator drop the connection that receives the
        # next PDU (each has received only its bind so far): the submit's own connection.
        gate.close()
        sim.sim.set_faults(Faults(disconnect_after_pdus=2))
        with pytest.raises(ConnectionLost) as caught:
            await manager.submit("a", sm(), timeout=5)
        assert caught.value.sent is True
        sim.sim.set_faults(Faults())
        await until(lambda: manager.health("a").bound == 2)
        health = manager.health("a")
        dropped = next(c for c in health.connections if not c.bound)
        assert dropped.index == 0  # the first pick of a fresh pool
        assert health.recent.link_errors == 1
        assert health.last_error is not None and health.last_error.startswith("connection 0:")
        assert health.healthy

        for _ in range(20):
            await manager.submit("a", sm(), timeout=5)
        after = manager.health("a").connections
        assert [c.stats.requests_ok for c in after] == [0, 10, 10]
        assert sim.sim.stats.faults["disconnect_after_pdus"] == 1

        gate.open()
        await until(lambda: manager.health("a").bound == 3)
        assert sim.sim.stats.sessions == 3
        assert manager.health("a").connections[0].stats.connects == 2
        for _ in range(3):
            await manager.submit("a", sm(), timeout=5)
        assert [c.stats.requests_ok for c in manager.health("a").connections] == [1, 11, 11]


async def test_submit_waits_for_the_first_bind(setup: Setup) -> None:
    """Started at once, binding in the background: a submit made right away waits for the
    bind (here two binds are refused first, then the client's backoff retries)."""
    with trio.fail_after(30):
        sim = await setup.simulator(SimulatorConfig(seed=1, faults=Faults(refuse_binds=2)))
        manager = await setup.manager([provider("a", sim.port)])
        response = await manager.submit("a", sm(), timeout=10)
        assert message_id(response)
        assert sim.sim.stats.bind_failures == 2
        health = manager.health("a")
        assert health.recent.link_errors == 2
        assert health.connections[0].stats.bind_failures == 2


async def test_no_bind_within_the_timeout_is_provider_unavailable(setup: Setup) -> None:
    with trio.fail_after(30):
        sim = await setup.simulator(SimulatorConfig(seed=1, faults=Faults(refuse_binds_for=600)))
        manager = await setup.manager([provider("a", sim.port, connections=2)])
        with pytest.raises(ProviderUnavailable) as caught:
            await manager.submit("a", sm(), timeout=0.5)
        exc = caught.value
        assert exc.provider == "a" and exc.sent is False
        assert "no connection bound within 0.5s" in str(exc)
        assert "ESME_RBINDFAIL" in str(exc)
        assert classify_exception(exc) is Outcome.FAILOVER
        health = manager.health("a")
        assert health.bound == 0 and not health.healthy and not manager.healthy("a")
        assert health.recent.link_errors >= 1
        assert sim.sim.stats.submits_accepted == 0


async def test_a_submit_waits_for_a_connection_no_later_than_send_by(setup: Setup) -> None:
    """``send_by`` (a message's validity) ends the wait for a connection before ``timeout``:
    not sent, the reason says why."""
    with trio.fail_after(30):
        sim = await setup.simulator(SimulatorConfig(seed=1, faults=Faults(refuse_binds_for=600)))
        manager = await setup.manager([provider("a", sim.port)])
        send_by = trio.current_time() + 0.3
        # Well within the 30 s of the timeout.
        with pytest.raises(ProviderUnavailable) as caught, trio.fail_after(10):
            await manager.submit("a", sm(), timeout=30, send_by=send_by)
        assert caught.value.sent is False
        assert "no connection bound within the time it had to be sent" in str(caught.value)
        assert sim.sim.stats.submits_accepted == 0


async def test_a_pdu_given_as_a_function_is_made_when_a_connection_takes_it(
    setup: Setup,
) -> None:
    """Binds are refused for 0.5 s: the PDU is made once a connection is bound, not when the
    submit began (a relative validity in it then counts from when it goes out)."""
    with trio.fail_after(30):
        sim = await setup.simulator(SimulatorConfig(seed=1, faults=Faults(refuse_binds_for=0.5)))
        manager = await setup.manager([provider("a", sim.port)])
        made: list[int] = []

        def make() -> SubmitSm:
            made.append(manager.health("a").bound)
            return sm()

        assert manager.health("a").bound == 0
        response = await manager.submit("a", make, timeout=10)
        assert message_id(response) and made == [1]


async def test_unknown_provider(setup: Setup) -> None:
    with trio.fail_after(30):
        sim = await setup.simulator()
        manager = await setup.manager([provider("a", sim.port)])
        with pytest.raises(ProviderUnavailable, match="no such provider"):
            await manager.submit("nope", sm(), timeout=5)
        assert manager.healthy("nope") is False
        with pytest.raises(KeyError):
            manager.health("nope")


def test_duplicate_provider_names_are_refused() -> None:
    with pytest.raises(ValueError, match="given twice"):
        ProviderManager([provider("a", 2775), provider("a", 2776)])


async def test_inbound_from_every_connection_is_merged(setup: Setup) -> None:
    """Receipts over three connections of one provider and MOs from a second provider arrive
    on one channel, tagged with the provider. The simulator keeps at most one deliver_sm
    unanswered per connection, so three receipts held unanswered at once prove that three
    connections carry them."""
    with trio.fail_after(30):
        sim_a = await setup.simulator(
            SimulatorConfig(seed=1, deliver_window=1, receipts=ReceiptConfig(delay=0))
        )
        sim_b = await setup.simulator()
        manager = await setup.manager(
            [provider("a", sim_a.port, connections=3), provider("b", sim_b.port)]
        )
        await until(lambda: manager.health("a").bound == 3 and manager.health("b").bound == 1)
        for _ in range(3):
            await manager.submit("a", sm(receipt=True), timeout=5)

        held = []
        for _ in range(3):
            name, inbound = await manager.inbound.receive()
            assert name == "a" and inbound.is_receipt
            held.append(inbound)
        assert [c.stats.inbound for c in manager.health("a").connections] == [1, 1, 1]
        for inbound in held:
            assert await inbound.reply() is True

        async def mo() -> None:
            result = await sim_b.sim.send_mo(
                source_addr="46700000009", destination_addr="1234", text="hi", timeout=5
            )
            assert result.ok

        async with trio.open_nursery() as nursery:
            nursery.start_soon(mo)
            name, inbound = await manager.inbound.receive()
            assert name == "b" and not inbound.is_receipt
            assert isinstance(inbound.pdu, DeliverSm) and inbound.pdu.short_message == b"hi"
            await inbound.reply()
        await until(lambda: sim_a.sim.stats.receipts_acked == 3)
        assert sim_b.sim.stats.mos_acked == 1


async def test_health_reflects_a_dead_simulator(setup: Setup) -> None:
    with trio.fail_after(30):
        sim_a = await setup.simulator()
        sim_b = await setup.simulator()
        manager = await setup.manager(
            [provider("a", sim_a.port, connections=2), provider("b", sim_b.port)]
        )
        await until(lambda: manager.health("a").bound == 2 and manager.health("b").bound == 1)
        assert manager.healthy("a") and manager.healthy("b")

        sim_a.kill()
        await until(lambda: not manager.healthy("a"))
        health = manager.health("a")
        assert health.bound == 0 and health.capacity == 0
        assert all(c.state is not ClientState.BOUND for c in health.connections)
        assert health.recent.link_errors >= 2
        assert health.last_error is not None and health.last_error_at is not None
        assert manager.healthy("b")
        with pytest.raises(ProviderUnavailable):
            await manager.submit("a", sm(), timeout=0.2)
        await manager.submit("b", sm(), timeout=5)


async def test_errors_make_a_bound_provider_unhealthy(setup: Setup) -> None:
    """Rejections for temporary SMSC trouble count as errors; once ``min_samples`` submits
    say so, the provider is unhealthy although bound."""
    with trio.fail_after(30):
        sim = await setup.simulator(
            SimulatorConfig(seed=1, faults=Faults(temporary_error_fraction=1.0))
        )
        policy = HealthPolicy(window=60, max_error_rate=0.5, min_samples=4)
        manager = await setup.manager([provider("a", sim.port)], health=policy)
        for i in range(4):
            assert manager.healthy("a") or i == 0  # unbound only before the first bind
            with pytest.raises(SubmitRejected) as caught:
                await manager.submit("a", sm(), timeout=5)
            assert caught.value.command_status == S.ESME_RSYSERR
        health = manager.health("a")
        assert health.bound == 1 and not health.healthy
        assert health.recent.errors == 4 and health.error_rate == 1.0
        assert health.last_error is not None and "ESME_RSYSERR" in health.last_error


async def test_rejections_and_throttling_do_not_make_a_provider_unhealthy(setup: Setup) -> None:
    with trio.fail_after(30):
        sim = await setup.simulator(
            SimulatorConfig(seed=1, faults=Faults(permanent_error_fraction=1.0))
        )
        policy = HealthPolicy(window=60, max_error_rate=0.5, min_samples=4)
        manager = await setup.manager([provider("a", sim.port)], health=policy)
        for _ in range(4):
            with pytest.raises(SubmitRejected):
                await manager.submit("a", sm(), timeout=5)
        sim.sim.set_faults(Faults(throttle_fraction=1.0))
        for _ in range(4):
            with pytest.raises(ThrottledError):
                await manager.submit("a", sm(), timeout=5)
        health = manager.health("a")
        assert health.healthy
        assert health.recent.rejected == 4 and health.recent.throttled == 4
        assert health.recent.errors == 0 and health.last_error is None
        assert health.last_throttle_status == S.ESME_RTHROTTLED
        assert health.last_throttle_at is not None


async def test_a_failing_client_is_replaced(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    """A client that fails outright (here its connector raises what no client expects) is
    logged, counted and replaced after a backoff delay; the manager keeps running."""
    calls = 0

    async def flaky(config: ClientConfig) -> trio.abc.Stream:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the connector")
        return await open_stream(config)

    with trio.fail_after(30):
        sim = await setup.simulator()
        with caplog.at_level(logging.ERROR, logger="smsgw.providers"):
            manager = await setup.manager([provider("a", sim.port)], connector=flaky)
            await manager.submit("a", sm(), timeout=10)
        assert manager.health("a").connections[0].crashes == 1
        assert any("a bug in the connector" in r.getMessage() or r.exc_info for r in caplog.records)


async def test_aclose_drains_in_flight_and_unbinds(setup: Setup) -> None:
    with trio.fail_after(30):
        sim = await setup.simulator(SimulatorConfig(seed=1, faults=Faults(latency=0.3)))
        manager = await setup.manager([provider("a", sim.port, connections=2)])
        await until(lambda: manager.health("a").bound == 2)
        results: list[str] = []

        async def one() -> None:
            results.append(message_id(await manager.submit("a", sm(), timeout=10)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one)
            nursery.start_soon(one)
            await until(lambda: manager.health("a").in_flight == 2)
            await manager.aclose(grace=10)
        assert len(results) == 2
        assert sim.sim.stats.pdus_received["unbind"] == 2
        assert sim.sim.stats.sessions == 0
        with pytest.raises(ProviderUnavailable, match="shutting down"):
            await manager.submit("a", sm(), timeout=1)
        with pytest.raises(trio.EndOfChannel):
            await manager.inbound.receive()
        assert manager.names == ()


async def test_aclose_past_the_grace_cancels_what_is_left(setup: Setup) -> None:
    """Answers held back 20 s, grace 0.3 s: the outstanding submit fails with ConnectionLost
    (sent: the SMSC may have it) and aclose returns."""
    with trio.fail_after(30):
        sim = await setup.simulator()
        manager = await setup.manager([provider("a", sim.port, request_timeout=25)])
        await until(lambda: manager.health("a").bound == 1)
        sim.sim.set_faults(Faults(latency=20))  # after the bind: its answer is not held
        errors: list[ConnectionLost] = []

        async def one() -> None:
            try:
                await manager.submit("a", sm(), timeout=25)
            except ConnectionLost as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one)
            await until(lambda: manager.health("a").in_flight == 1)
            await manager.aclose(grace=0.3)
        assert len(errors) == 1 and errors[0].sent is True
        await until(lambda: sim.sim.stats.sessions == 0)


async def test_transmitter_receiver_pairs(setup: Setup) -> None:
    """``connections`` counts pairs: two pairs are four sessions; MOs come in on a receiver."""
    with trio.fail_after(30):
        sim = await setup.simulator()
        manager = await setup.manager(
            [provider("a", sim.port, connections=2, bind=BindType.TRANSMITTER_RECEIVER)]
        )
        await until(lambda: manager.health("a").bound == 2)
        assert sim.sim.stats.sessions == 4
        await manager.submit("a", sm(), timeout=5)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(
                    sim.sim.send_mo, source_addr="4670", destination_addr="1", text="x", timeout=5
                )
            )
            name, inbound = await manager.inbound.receive()
            assert name == "a"
            await inbound.reply()
        assert sim.sim.stats.mos_acked == 1


async def test_an_smsc_that_unbinds_is_answered_and_reconnected_to(setup: Setup) -> None:
    """An SMSC going down for maintenance unbinds each session: every connection of the pool
    answers unbind_resp (the simulator's stop finishes in time), then reconnects with its
    backoff, here to a simulator that has stopped taking connections."""
    with trio.fail_after(30):
        sim = await setup.simulator()
        manager = await setup.manager([provider("a", sim.port, connections=2)])
        await until(lambda: manager.health("a").bound == 2)
        assert await sim.sim.stop(grace=5) is True
        await until(lambda: manager.health("a").bound == 0)
        stats = sim.sim.stats
        assert (stats.pdus_sent["unbind"], stats.pdus_received["unbind_resp"]) == (2, 2)
        await until(lambda: all(c.stats.binds == 1 for c in manager.health("a").connections))
        assert all(c.last_error for c in manager.health("a").connections)
