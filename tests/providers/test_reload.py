"""Live reconfiguration: providers added, removed, restarted and resized while traffic runs on
another provider, which must see no error at all."""

from __future__ import annotations

import attrs
import pytest
import trio
from simulators import Sim

from smpp_codec.segment import SplitMode
from smsgw.config import ProviderRate
from smsgw.providers import ProviderManager, ProviderUnavailable, ReloadResult
from smsgw.simulator import Faults, SimulatorConfig
from smsgw.smpp import ClientState

from .conftest import Setup
from .harness import Traffic, message_id, provider, sm, until


async def start_traffic(setup: Setup, manager: ProviderManager, name: str) -> Traffic:
    """Traffic to provider ``name`` in the background, once it is flowing."""
    traffic = Traffic(manager, name)
    setup.nursery.start_soon(traffic.run)
    await until(lambda: traffic.ok >= 5)
    return traffic


async def start_two(
    setup: Setup, *, b_latency: float = 0.0, b_connections: int = 1
) -> tuple[ProviderManager, Sim, Sim, Traffic]:
    """Providers a (3 connections, with traffic running) and b, each on its own simulator."""
    sim_a = await setup.simulator()
    sim_b = await setup.simulator(SimulatorConfig(seed=2, faults=Faults(latency=b_latency)))
    manager = await setup.manager(
        [
            provider("a", sim_a.port, connections=3),
            provider("b", sim_b.port, connections=b_connections),
        ]
    )
    await until(
        lambda: manager.health("a").bound == 3 and manager.health("b").bound == b_connections
    )
    traffic = await start_traffic(setup, manager, "a")
    return manager, sim_a, sim_b, traffic


async def check_traffic(traffic: Traffic, sim_a: Sim) -> None:
    """Traffic on a went on through the reload, untouched."""
    before = traffic.ok
    await until(lambda: traffic.ok >= before + 5)
    await traffic.stop()
    assert traffic.errors == []
    assert sim_a.sim.stats.binds == 3 and sim_a.sim.stats.sessions == 3
    assert sim_a.sim.stats.submits_accepted == traffic.ok


async def test_reload_adds_a_provider(setup: Setup) -> None:
    with trio.fail_after(30):
        sim_a = await setup.simulator()
        sim_c = await setup.simulator()
        a = provider("a", sim_a.port, connections=3)
        manager = await setup.manager([a])
        await until(lambda: manager.health("a").bound == 3)
        traffic = await start_traffic(setup, manager, "a")

        result = await manager.reload([a, provider("c", sim_c.port, connections=2)])
        assert result == ReloadResult(added=("c",))
        assert manager.names == ("a", "c")
        response = await manager.submit("c", sm(), timeout=5)  # waits for c's bind
        assert message_id(response)
        await until(lambda: sim_c.sim.stats.sessions == 2)
        await check_traffic(traffic, sim_a)


async def test_reload_removes_a_provider_gracefully(setup: Setup) -> None:
    """b's answers take 0.5 s: a submit in flight when b is removed still gets its answer,
    then b's connections unbind; new submits to b fail at once."""
    with trio.fail_after(30):
        manager, sim_a, sim_b, traffic = await start_two(setup, b_latency=0.5, b_connections=2)
        results: list[str] = []

        async def in_flight() -> None:
            results.append(message_id(await manager.submit("b", sm(), timeout=10)))

        setup.nursery.start_soon(in_flight)
        await until(lambda: manager.health("b").in_flight == 1)
        result = await manager.reload([provider("a", sim_a.port, connections=3)])
        assert result == ReloadResult(removed=("b",))
        assert len(results) == 1 and results[0]
        assert sim_b.sim.stats.pdus_received["unbind"] == 2
        assert sim_b.sim.stats.sessions == 0
        assert manager.names == ("a",)
        assert not manager.healthy("b")
        with pytest.raises(ProviderUnavailable, match="no such provider"):
            await manager.submit("b", sm(), timeout=5)
        await check_traffic(traffic, sim_a)


async def test_reload_replaces_changed_connections_one_at_a_time_within_the_bind_limit(
    setup: Setup,
) -> None:
    """New connection settings for b, whose SMSC allows 2 binds: b's two connections are
    replaced one after the other, each draining and unbinding before its replacement binds.
    The limit is never exceeded, a submit in flight gets its answer, and traffic on b itself
    goes on without an error (the other connection carries it meanwhile)."""
    with trio.fail_after(30):
        sim_a = await setup.simulator()
        sim_b = await setup.simulator(
            SimulatorConfig(seed=2, max_binds=2, faults=Faults(latency=0.05))
        )
        a = provider("a", sim_a.port, connections=3)
        b = provider("b", sim_b.port, connections=2)
        manager = await setup.manager([a, b])
        await until(lambda: manager.health("a").bound == 3 and manager.health("b").bound == 2)
        traffic_a = await start_traffic(setup, manager, "a")
        traffic_b = await start_traffic(setup, manager, "b")
        in_flight: list[str] = []

        async def submit() -> None:
            in_flight.append(message_id(await manager.submit("b", sm(), timeout=10)))

        setup.nursery.start_soon(submit)
        await until(lambda: manager.health("b").in_flight >= 1)

        result = await manager.reload([a, attrs.evolve(b, window=5)])
        assert result == ReloadResult(restarted=("b",))
        # reload() returned once both replacements were bound.
        health = manager.health("b")
        assert health.bound == 2 and health.capacity == 10
        assert [c.window for c in health.connections] == [5, 5]
        assert all(c.stats.binds == 1 for c in health.connections)  # new clients
        stats = sim_b.sim.stats
        assert stats.binds == 4 and stats.pdus_received["unbind"] == 2
        assert stats.binds_over_limit == 0 and stats.peak_sessions == {"b": 2}
        await until(lambda: len(in_flight) == 1)
        before = traffic_b.ok
        await until(lambda: traffic_b.ok >= before + 5)
        await traffic_b.stop()
        assert traffic_b.errors == []
        assert sim_b.sim.stats.submits_accepted == traffic_b.ok + 1
        await check_traffic(traffic_a, sim_a)


async def test_a_replacement_that_cannot_bind_stops_the_roll(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """The new password is wrong: the first connection's replacement is refused; the roll
    stops there, and the other connection keeps the old settings and the traffic. A reload
    with the right password then replaces both."""
    with trio.fail_after(30):
        sim = await setup.simulator(SimulatorConfig(accounts=("b:secret",)))
        b = provider("b", sim.port, connections=2)
        manager = await setup.manager([b])
        await until(lambda: manager.health("b").bound == 2)
        traffic = await start_traffic(setup, manager, "b")

        result = await manager.reload([attrs.evolve(b, password="wrong")])
        assert result == ReloadResult(restarted=("b",))
        health = manager.health("b")
        assert [c.bound for c in health.connections] == [False, True]
        assert sim.sim.stats.bind_failures >= 2
        assert "b#0: the new settings did not bind (2 attempts" in caplog.text
        before = traffic.ok
        await until(lambda: traffic.ok >= before + 5)  # on connection 1, unchanged

        result = await manager.reload([attrs.evolve(b, window=5)])
        assert result == ReloadResult(restarted=("b",))
        health = manager.health("b")
        assert health.bound == 2 and [c.window for c in health.connections] == [5, 5]
        assert sim.sim.stats.sessions == 2
        before = traffic.ok
        await until(lambda: traffic.ok >= before + 5)
        await traffic.stop()
        assert traffic.errors == []


async def test_a_reload_during_an_outage_replaces_every_connection(setup: Setup) -> None:
    """The SMSC is down, so no connection carries traffic: a reload replaces them all at once
    (there is no roll to stop), and when the SMSC is back each binds with the new settings."""
    with trio.fail_after(30):
        sim = await setup.simulator()
        b = provider("b", sim.port, connections=3)
        manager = await setup.manager([b])
        await until(lambda: manager.health("b").bound == 3)
        sim.kill()
        await until(lambda: manager.health("b").bound == 0)
        result = await manager.reload([attrs.evolve(b, window=5)])
        assert result == ReloadResult(restarted=("b",))
        assert [c.window for c in manager.health("b").connections] == [5, 5, 5]
        back = await setup.simulator(SimulatorConfig(seed=1, port=sim.port))
        await until(lambda: manager.health("b").bound == 3)
    assert [c.window for c in manager.health("b").connections] == [5, 5, 5]
    assert back.sim.stats.binds == 3


async def test_a_roll_is_the_managers_work_and_a_later_reload_takes_it_over(
    setup: Setup,
) -> None:
    """b's answers take 0.3 s, so each connection drains for a while. ``wait=False`` returns
    before any connection is replaced; a caller that stops waiting stops nothing; a reload
    while a roll runs takes it over with the newest settings. Throughout, the SMSC's bind
    limit holds and traffic on b goes on without an error."""
    with trio.fail_after(30):
        sim = await setup.simulator(
            SimulatorConfig(seed=2, max_binds=2, faults=Faults(latency=0.3))
        )
        b = provider("b", sim.port, connections=2)
        manager = await setup.manager([b])
        await until(lambda: manager.health("b").bound == 2)
        traffic = await start_traffic(setup, manager, "b")

        result = await manager.reload([attrs.evolve(b, window=5)], wait=False)
        assert result == ReloadResult(restarted=("b",))
        assert [c.window for c in manager.health("b").connections] == [10, 10]
        await manager.settled()
        assert [c.window for c in manager.health("b").connections] == [5, 5]

        with trio.move_on_after(0.1):  # the caller gives up at once: the roll goes on
            await manager.reload([attrs.evolve(b, window=6)])
        await manager.settled()
        assert [c.window for c in manager.health("b").connections] == [6, 6]

        await manager.reload([attrs.evolve(b, window=7)], wait=False)
        await trio.sleep(0.1)  # the first connection is draining for window 7
        await manager.reload([attrs.evolve(b, window=8)])
        health = manager.health("b")
        assert [c.window for c in health.connections] == [8, 8] and health.bound == 2
        await traffic.stop()
        assert traffic.errors == []
        assert sim.sim.stats.binds_over_limit == 0 and sim.sim.stats.peak_sessions == {"b": 2}


async def test_reload_resizes_a_pool(setup: Setup) -> None:
    with trio.fail_after(30):
        manager, sim_a, sim_b, traffic = await start_two(setup)
        a = provider("a", sim_a.port, connections=3)

        result = await manager.reload([a, provider("b", sim_b.port, connections=3)])
        assert result == ReloadResult(resized=("b",))
        await until(lambda: manager.health("b").bound == 3)
        assert sim_b.sim.stats.sessions == 3 and sim_b.sim.stats.binds == 3
        assert [c.index for c in manager.health("b").connections] == [0, 1, 2]
        for _ in range(3):
            await manager.submit("b", sm(), timeout=5)

        result = await manager.reload([a, provider("b", sim_b.port, connections=1)])
        assert result == ReloadResult(resized=("b",))
        health = manager.health("b")
        assert health.configured == 1 and len(health.connections) == 1
        assert health.connections[0].state is ClientState.BOUND
        assert sim_b.sim.stats.sessions == 1
        assert sim_b.sim.stats.pdus_received["unbind"] == 2
        assert sim_b.sim.stats.binds == 3  # the one kept was not rebound
        await manager.submit("b", sm(), timeout=5)
        await check_traffic(traffic, sim_a)


async def test_reload_takes_other_settings_without_touching_connections(setup: Setup) -> None:
    with trio.fail_after(30):
        manager, sim_a, sim_b, traffic = await start_two(setup)
        a = provider("a", sim_a.port, connections=3)
        b = provider("b", sim_b.port)
        assert await manager.reload([a, b]) == ReloadResult()
        changed = attrs.evolve(b, split_mode=SplitMode.SAR, rate=ProviderRate(per_second=5))
        result = await manager.reload([a, changed])
        assert result == ReloadResult(updated=("b",))
        assert sim_b.sim.stats.binds == 1 and sim_b.sim.stats.pdus_received.get("unbind") is None
        await manager.submit("b", sm(), timeout=5)
        await check_traffic(traffic, sim_a)


async def test_reload_refuses_duplicate_names_and_changes_nothing(setup: Setup) -> None:
    with trio.fail_after(30):
        sim = await setup.simulator()
        a = provider("a", sim.port)
        manager = await setup.manager([a])
        with pytest.raises(ValueError, match="given twice"):
            await manager.reload([a, provider("x", sim.port), provider("x", sim.port)])
        assert manager.names == ("a",)


async def test_pools_sized_by_their_owner_start_at_its_size_and_resize_only_on_request(
    setup: Setup,
) -> None:
    """With ``connections=`` (instances sharing an account): a pool starts with the owner's
    size, ``resize`` grows it or drains the surplus, and a reload leaves the size alone."""
    sizes = {"b": 1}
    with trio.fail_after(30):
        sim_b = await setup.simulator()
        b = provider("b", sim_b.port, connections=4)
        manager = await setup.manager([b], connections=lambda name: sizes[name])
        await until(lambda: manager.health("b").bound == 1)
        assert manager.size("b") == 1 and manager.health("b").configured == 4
        await manager.resize("b", 3)
        await until(lambda: manager.health("b").bound == 3)
        # A reload changing connections is an update: the owner divides the new number.
        assert await manager.reload([attrs.evolve(b, connections=2)]) == ReloadResult(
            updated=("b",)
        )
        assert manager.size("b") == 3
        await manager.resize("b", 1)  # returns once the surplus has unbound
        assert manager.size("b") == 1 and manager.health("b").kept == 1
        assert sim_b.sim.stats.sessions == 1
        assert sim_b.sim.stats.pdus_received["unbind"] == 2
        await manager.resize("gone", 2)  # an unknown provider: nothing
        assert manager.size("gone") == 0
        # New connection settings replace the connection the owner gave it, keeping its size.
        binds = sim_b.sim.stats.binds
        restarted = attrs.evolve(b, connections=2, window=5)
        assert await manager.reload([restarted]) == ReloadResult(restarted=("b",))
        health = manager.health("b")
        assert manager.size("b") == 1 and [c.window for c in health.connections] == [5]
        assert health.bound == 1 and sim_b.sim.stats.binds == binds + 1
        assert sim_b.sim.stats.peak_sessions == {"b": 3}  # the resize's, never more
        await manager.submit("b", sm(), timeout=5)
