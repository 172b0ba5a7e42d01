"""Instances on one Redis queue share their SMSC account's limits (smsgw.sharing): together they
never bind more connections than the account allows, each sends at its share of the rate, and
the connections of an instance that stops, dies or loses Redis go to the others. A real Redis,
a real simulator enforcing the account's bind limit, real gateways."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from simulators import Sim

from smpp_codec import SubmitSm
from smsgw.adapters.redis import open_redis
from smsgw.cluster import Cluster
from smsgw.config import GatewayConfig, GatewaySection, ProviderRate, QueueConfig
from smsgw.gateway import Gateway
from smsgw.messages import Accepted, SubmitRequest
from smsgw.model import MessageStatus
from smsgw.providers import ProviderUnavailable
from smsgw.simulator import Faults, ReceiptConfig, SimulatorConfig
from smsgw.testing.redis import RedisServer

from .harness import Backend, Harness, provider, wait_status, wait_until

#: Short enough for tests: a dead instance's slots are free after TIMEOUT.
HEARTBEAT = 0.2
TIMEOUT = 2.0
ACCOUNT = "smsc"


@pytest.fixture
def redis_harness(nursery: trio.Nursery, tmp_path: Path, redis_server: Any) -> Harness:
    return Harness(nursery, tmp_path, Backend("redis", redis_server.url))


def shared_queue(harness: Harness, url: str | None = None) -> QueueConfig:
    queue = harness.backend.queue()
    assert queue.redis is not None
    redis = attrs.evolve(
        queue.redis, url=url or queue.redis.url, heartbeat=HEARTBEAT, instance_timeout=TIMEOUT
    )
    return attrs.evolve(queue, redis=redis)


def instance(
    harness: Harness, name: str, queue: QueueConfig, port: int, **kw: Any
) -> GatewayConfig:
    """Instance ``name``: its own state, the shared queue, the account on the simulator."""
    config = harness.config([provider(ACCOUNT, port, **{"connections": 4, **kw})])
    section = GatewaySection(state_dir=harness.tmp_path / name, drain_grace=2.0, instance_id=name)
    return attrs.evolve(config, gateway=section, queue=queue)


async def account_simulator(harness: Harness) -> Sim:
    """An SMSC whose account allows 4 sessions bound at once."""
    return await harness.simulator(SimulatorConfig(seed=1, max_binds=4))


def kept(gateway: Gateway) -> tuple[int, int]:
    """(connections kept, connections bound) of the account in ``gateway``."""
    health = gateway.providers.health(ACCOUNT)
    return health.kept, health.bound


def never_over_the_account(sim: Sim) -> None:
    stats = sim.sim.stats
    assert stats.binds_over_limit == 0
    assert stats.peak_sessions[ACCOUNT] <= 4


async def start_crashable(
    nursery: trio.Nursery, config: GatewayConfig
) -> tuple[Gateway, trio.CancelScope]:
    """A running gateway (not the harness's: it is not drained at the end) and the scope
    whose cancellation is its crash: its connections close, it says nothing to Redis."""
    gateway = Gateway(config, rand=random.Random(config.gateway.instance_id))
    crash = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[None]) -> None:
        with crash:
            await gateway.run(task_status=task_status)

    await nursery.start(run)
    return gateway, crash


def metric(gateway: Gateway, line_start: str) -> float:
    text = gateway.metrics.render()[0].decode()
    (line,) = [line for line in text.splitlines() if line.startswith(line_start + " ")]
    return float(line.rsplit(" ", 1)[1])


async def test_two_instances_divide_the_accounts_connections_and_rate(
    redis_harness: Harness,
) -> None:
    sim = await account_simulator(redis_harness)
    queue = shared_queue(redis_harness)
    rate = ProviderRate(per_second=100)
    with trio.fail_after(30):
        a = await redis_harness.gateway(instance(redis_harness, "a", queue, sim.port, rate=rate))
        await wait_until(lambda: kept(a) == (4, 4), what="a alone binds the account's 4")
        assert a.current_rate(ACCOUNT) == 100
        b = await redis_harness.gateway(instance(redis_harness, "b", queue, sim.port, rate=rate))
        await wait_until(lambda: kept(a) == (2, 2) and kept(b) == (2, 2), what="2 and 2")
        # Each sends at the share of the rate its connections are of the account's.
        assert a.current_rate(ACCOUNT) == b.current_rate(ACCOUNT) == 50
        assert metric(b, 'smsgw_provider_connections_kept{provider="smsc"}') == 2
        assert metric(b, 'smsgw_provider_connections_configured{provider="smsc"}') == 4
        assert metric(b, "smsgw_cluster_instances") == 2
        assert a.instances() == b.instances() == ("a", "b")
        results = await a.submit(
            [SubmitRequest(to=f"4915112{n:04d}", source="ACME", text=f"n{n}") for n in range(20)]
        )
        ids = [r.id for r in results if isinstance(r, Accepted)]
        await wait_until(
            lambda: a.stats().submitted + b.stats().submitted == 20, what="20 submitted"
        )
    never_over_the_account(sim)
    assert sim.sim.stats.sessions_by_account == {ACCOUNT: 4}
    assert len(ids) == 20


async def test_the_connections_of_an_instance_that_stops_go_to_the_other(
    redis_harness: Harness,
) -> None:
    sim = await account_simulator(redis_harness)
    queue = shared_queue(redis_harness)
    with trio.fail_after(30):
        a = await redis_harness.gateway(instance(redis_harness, "a", queue, sim.port))
        b = await redis_harness.gateway(instance(redis_harness, "b", queue, sim.port))
        await wait_until(lambda: kept(a) == (2, 2) and kept(b) == (2, 2), what="2 and 2")
        await a.drain(1.0)
        # a gave its slots back and left on the way out: b need not wait for them to expire.
        assert queue.redis is not None
        async with open_redis(queue.redis.url) as redis:
            observer = Cluster(redis, queue.redis.prefix, "observer")
            assert "a" not in await observer.holders(ACCOUNT, 4)
            assert "a" not in (await observer.heartbeat([], timeout=0.001)).instances
        await wait_until(lambda: kept(b) == (4, 4), what="b binds all 4")
    never_over_the_account(sim)


async def test_the_connections_of_an_instance_that_died_are_taken_once_it_times_out(
    redis_harness: Harness, nursery: trio.Nursery
) -> None:
    sim = await account_simulator(redis_harness)
    queue = shared_queue(redis_harness)
    with trio.fail_after(30):
        a, crash = await start_crashable(nursery, instance(redis_harness, "a", queue, sim.port))
        b = await redis_harness.gateway(instance(redis_harness, "b", queue, sim.port))
        await wait_until(lambda: kept(a) == (2, 2) and kept(b) == (2, 2), what="2 and 2")
        # Cancelled outright: its TCP connections close, but it says nothing to Redis.
        crash.cancel()
        await wait_until(lambda: sim.sim.stats.sessions_by_account == {ACCOUNT: 2}, what="a gone")
        assert kept(b) == (2, 2)
        await wait_until(lambda: kept(b) == (4, 4), timeout=TIMEOUT + 5, what="b binds all 4")
    never_over_the_account(sim)


async def test_a_reload_divides_the_new_number_of_connections(redis_harness: Harness) -> None:
    sim = await account_simulator(redis_harness)
    queue = shared_queue(redis_harness)
    config_a = instance(redis_harness, "a", queue, sim.port, rate=ProviderRate(per_second=100))
    config_b = instance(redis_harness, "b", queue, sim.port, rate=ProviderRate(per_second=100))
    with trio.fail_after(30):
        a = await redis_harness.gateway(config_a)
        b = await redis_harness.gateway(config_b)
        await wait_until(lambda: kept(a) == (2, 2) and kept(b) == (2, 2), what="2 and 2")
        for gateway, config in ((a, config_a), (b, config_b)):
            smaller = attrs.evolve(config.providers[0], connections=2)
            await gateway.reload(attrs.evolve(config, providers=(smaller,)))
        await wait_until(lambda: kept(a) == (1, 1) and kept(b) == (1, 1), what="1 and 1")
        await wait_until(lambda: sim.sim.stats.sessions_by_account == {ACCOUNT: 2}, what="2 bound")
        assert a.current_rate(ACCOUNT) == b.current_rate(ACCOUNT) == 50
    never_over_the_account(sim)


async def test_new_connection_settings_replace_an_instances_connections_within_the_account(
    redis_harness: Harness,
) -> None:
    """A reload changing the window of a, which holds 2 of the account's 4: a's connections
    are replaced one at a time, so the account never has more than 4 sessions, and the
    messages accepted meanwhile are sent (by a or b: the queue is shared)."""
    # Answers take 0.2 s: a's connections have submits in flight to drain at the reload.
    sim = await redis_harness.simulator(
        SimulatorConfig(seed=1, max_binds=4, faults=Faults(latency=0.2))
    )
    queue = shared_queue(redis_harness)
    config_a = instance(redis_harness, "a", queue, sim.port)
    with trio.fail_after(30):
        a = await redis_harness.gateway(config_a)
        b = await redis_harness.gateway(instance(redis_harness, "b", queue, sim.port))
        await wait_until(lambda: kept(a) == (2, 2) and kept(b) == (2, 2), what="2 and 2")
        binds = sim.sim.stats.binds
        requests = [
            SubmitRequest(to=f"4915112{n:04d}", source="ACME", text="hi") for n in range(40)
        ]
        results = await a.submit(requests)
        assert all(isinstance(result, Accepted) for result in results)
        await wait_until(lambda: a.providers.health(ACCOUNT).in_flight > 0, what="a sends")
        wider = attrs.evolve(config_a.providers[0], window=7)
        await a.reload(attrs.evolve(config_a, providers=(wider,)))
        health = a.providers.health(ACCOUNT)
        assert [c.window for c in health.connections] == [7, 7] and health.bound == 2
        assert sim.sim.stats.binds == binds + 2
        await wait_until(
            lambda: a.stats().receipts + b.stats().receipts >= 40, what="40 sent and receipted"
        )
    never_over_the_account(sim)


async def test_an_instance_without_redis_closes_its_connections_and_binds_when_it_is_back(
    redis_harness: Harness, tmp_path: Path
) -> None:
    sim = await account_simulator(redis_harness)
    with RedisServer.start(tmp_path, appendonly=True) as server:
        queue = shared_queue(redis_harness, url=server.url)
        with trio.fail_after(40):
            a = await redis_harness.gateway(instance(redis_harness, "a", queue, sim.port))
            await wait_until(lambda: kept(a) == (4, 4), what="a binds 4")
            await trio.to_thread.run_sync(lambda: server.stop(kill=True))
            # Its leases may expire: it must not keep binds other instances could be given.
            await wait_until(lambda: kept(a) == (0, 0), timeout=TIMEOUT + 5, what="a unbinds")
            await trio.to_thread.run_sync(server.resume)
            await wait_until(lambda: kept(a) == (4, 4), timeout=15, what="a binds again")
            results = await a.submit([SubmitRequest(to="491511234", source="ACME", text="hi")])
            (accepted,) = results
            assert isinstance(accepted, Accepted)
            await wait_status(a, accepted.id, MessageStatus.DELIVERED, timeout=15)
    never_over_the_account(sim)


async def test_an_instance_holding_no_connection_leases_nothing_and_others_send(
    redis_harness: Harness,
) -> None:
    """Three instances, an account of 2 connections: the last instance in id order keeps none,
    so it leases no message (it would only hold them): the two others send all, at once."""
    sim = await account_simulator(redis_harness)
    queue = shared_queue(redis_harness)
    gateways = [
        await redis_harness.gateway(instance(redis_harness, name, queue, sim.port, connections=2))
        for name in "abc"
    ]
    a, b, c = gateways
    with trio.fail_after(30):
        await wait_until(
            lambda: [kept(g) for g in gateways] == [(1, 1), (1, 1), (0, 0)], what="1, 1, 0"
        )
        results = await c.submit(
            [SubmitRequest(to=f"4915112{n:04d}", source="ACME", text=f"n{n}") for n in range(30)]
        )
        assert all(isinstance(r, Accepted) for r in results)
        await wait_until(
            lambda: a.stats().submitted + b.stats().submitted == 30, what="30 sent by a and b"
        )
    assert c.stats().submitted == 0
    assert sum(g.stats().retried for g in gateways) == 0
    with pytest.raises(ProviderUnavailable, match="keeps none of its connections"):
        pdu = SubmitSm(sequence_number=0, destination_addr="49151")
        await c.providers.submit(ACCOUNT, pdu, timeout=5)


async def test_a_provider_removed_by_a_reload_gives_its_slots_back(
    redis_harness: Harness,
) -> None:
    sim = await account_simulator(redis_harness)
    queue = shared_queue(redis_harness)
    config = instance(redis_harness, "a", queue, sim.port)
    other = provider("other", sim.port, connections=2)
    config = attrs.evolve(config, providers=(*config.providers, other))
    assert queue.redis is not None
    with trio.fail_after(30):
        a = await redis_harness.gateway(config)
        await wait_until(
            lambda: a.providers.health("other").bound == 2 and kept(a) == (4, 4), what="bound"
        )
        async with open_redis(queue.redis.url) as redis:
            observer = Cluster(redis, queue.redis.prefix, "observer")
            assert await observer.holders("other", 2) == ["a", "a"]
            await a.reload(attrs.evolve(config, providers=config.providers[:1]))
            assert await observer.holders("other", 2) == [None, None]
            seen = await observer.heartbeat(["smsc", "other"], timeout=0.001)
    assert seen.by_provider["other"] == ("observer",)
    assert "a" in seen.by_provider["smsc"]
    assert kept(a) == (4, 4)


async def test_instances_coming_and_going_never_bind_more_than_the_account(
    redis_harness: Harness, nursery: trio.Nursery
) -> None:
    """Three instances start, drain, crash and come back (a seeded order) while messages are
    submitted: at no moment does the account have more than its 4 sessions bound, and every
    message accepted is delivered. A crash can cut a receipt off unanswered: the SMSC sends
    it again, as real ones do (the simulator's default sends each receipt once)."""
    resend = ReceiptConfig(attempts=10, retry_delay=0.5)
    sim = await redis_harness.simulator(SimulatorConfig(seed=1, max_binds=4, receipts=resend))
    queue = attrs.evolve(shared_queue(redis_harness), visibility_timeout=3.0)
    rng = random.Random(6)
    running: dict[str, tuple[Gateway, trio.CancelScope]] = {}
    ids: list[str] = []

    async def start(name: str) -> None:
        config = instance(redis_harness, name, queue, sim.port)
        running[name] = await start_crashable(nursery, config)

    async def submit_some(gateway: Gateway, n: int) -> None:
        results = await gateway.submit(
            [
                SubmitRequest(to=f"4915112{len(ids) + k:04d}", source="ACME", text="x")
                for k in range(n)
            ]
        )
        ids.extend(r.id for r in results if isinstance(r, Accepted))

    with trio.fail_after(60):
        for name in "abc":
            await start(name)
        for _ in range(8):
            await submit_some(rng.choice(list(running.values()))[0], 10)
            await trio.sleep(rng.uniform(0.1, 0.6))
            down = [n for n in "abc" if n not in running]
            if down and (len(running) == 1 or rng.random() < 0.5):
                await start(rng.choice(down))
                continue
            name = rng.choice(sorted(running))
            gateway, scope = running.pop(name)
            if rng.random() < 0.5:
                await gateway.drain(1.0)
            else:
                scope.cancel()  # a crash: nothing said to Redis
        for name in "abc":
            if name not in running:
                await start(name)
        gateways = [g for g, _ in running.values()]
        await wait_until(
            lambda: sum(kept(g)[1] for g in gateways) == 4, timeout=TIMEOUT + 10, what="4 bound"
        )
        for message_id in ids:
            await wait_status_anywhere(gateways, message_id)
        for gateway, _scope in running.values():
            await gateway.drain(1.0)
    assert len(ids) == 80
    never_over_the_account(sim)


async def wait_status_anywhere(gateways: list[Gateway], message_id: str) -> None:
    """Until some instance's database says ``message_id`` was delivered."""
    while True:
        for gateway in gateways:
            view = await gateway.message(message_id)
            if view is not None and view.status is MessageStatus.DELIVERED:
                return
        await trio.sleep(0.05)


async def test_a_connection_given_back_unbinds_before_its_slot_goes_to_another_instance(
    redis_harness: Harness,
) -> None:
    """Answers take 0.3 s, so a's connections are busy when b starts: those a gives back
    drain their window and unbind first, and only then can b bind in their place."""
    sim = await redis_harness.simulator(
        SimulatorConfig(seed=1, max_binds=4, faults=Faults(latency=0.3))
    )
    queue = shared_queue(redis_harness)
    with trio.fail_after(30):
        a = await redis_harness.gateway(instance(redis_harness, "a", queue, sim.port))
        await wait_until(lambda: kept(a) == (4, 4), what="a binds 4")
        await a.submit(
            [SubmitRequest(to=f"4915112{n:04d}", source="ACME", text="x") for n in range(300)]
        )
        await wait_until(lambda: a.providers.health(ACCOUNT).in_flight > 10, what="busy")
        b = await redis_harness.gateway(instance(redis_harness, "b", queue, sim.port))
        await wait_until(lambda: kept(a) == (2, 2) and kept(b) == (2, 2), what="2 and 2")
    never_over_the_account(sim)


async def test_two_processes_with_one_instance_id_are_reported(
    redis_harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await account_simulator(redis_harness)
    queue = shared_queue(redis_harness)
    with trio.fail_after(30):
        await redis_harness.gateway(instance(redis_harness, "a", queue, sim.port))
        twin = instance(redis_harness, "a2", queue, sim.port)  # its own state directory
        twin = attrs.evolve(twin, gateway=attrs.evolve(twin.gateway, instance_id="a"))
        await redis_harness.gateway(twin)
        await wait_until(
            lambda: any(
                "instance_id a is in use by another running process" in r.getMessage()
                for r in caplog.records
                if r.levelname == "ERROR"
            ),
            what="the error about a shared instance_id",
        )
