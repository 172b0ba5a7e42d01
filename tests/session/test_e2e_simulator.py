"""The client against the simulator over real TCP on 127.0.0.1: every fault, and the recovery.

Real sockets, real clock: every wait is bounded by ``trio.fail_after``, and no assertion is
about how long something took.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest
import trio

from smpp_codec import DeliverSm, RegisteredDelivery, SubmitSm
from smsgw.simulator import (
    Account,
    Faults,
    GarbageMode,
    ReceiptConfig,
    Simulator,
    SimulatorConfig,
)
from smsgw.smpp import (
    BackoffPolicy,
    BindMode,
    ClientConfig,
    ClientState,
    ConnectionLost,
    RequestTimeout,
    SmppClient,
    SmppClientError,
    SubmitRejected,
    ThrottledError,
)

FAST_BACKOFF = BackoffPolicy(initial=0.02, maximum=0.2, jitter=0.5, reset_after=5.0)


def sm(receipt: bool = False) -> SubmitSm:
    return SubmitSm(
        sequence_number=0,
        source_addr="smsgw",
        destination_addr="46700000001",
        short_message=b"hello",
        registered_delivery=RegisteredDelivery.SMSC_RECEIPT_ON_SUCCESS_OR_FAILURE if receipt else 0,
    )


class Setup:
    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery

    async def start(self, sim_config: SimulatorConfig | None = None, **client: object) -> None:
        self.sim = Simulator(sim_config or SimulatorConfig(seed=7))
        port = await self.nursery.start(self.sim.serve)
        options: dict[str, object] = {
            "system_id": "esme",
            "password": "secret",
            "port": port,
            "backoff": FAST_BACKOFF,
            "request_timeout": 5.0,
            "response_timeout": 2.0,
            "window": 10,
        }
        options.update(client)
        self.client = SmppClient(ClientConfig(**options))  # type: ignore[arg-type]
        await self.nursery.start(self.client.run)
        with trio.fail_after(10):
            await self.client.wait_bound()


@pytest.fixture
async def setup(nursery: trio.Nursery) -> AsyncIterator[Setup]:
    s = Setup(nursery)
    with trio.fail_after(60):
        yield s
    if hasattr(s, "client"):
        with trio.fail_after(10):
            await s.client.aclose()


async def _submit_all(client: SmppClient, n: int, **kw: object) -> list[object]:
    """Submit n messages concurrently; the outcome (response or error) of each."""
    out: list[object] = [None] * n

    async def one(i: int) -> None:
        try:
            out[i] = await client.submit(sm(), **kw)  # type: ignore[arg-type]
        except SmppClientError as exc:
            out[i] = exc

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return out


async def test_submit_and_receipt(setup: Setup) -> None:
    await setup.start()
    resp = await setup.client.submit(sm(receipt=True))
    with trio.fail_after(10):
        inbound = await setup.client.inbound.receive()
    assert isinstance(inbound.pdu, DeliverSm) and inbound.is_receipt
    assert inbound.pdu.tlv("receipted_message_id") == resp.message_id  # type: ignore[attr-defined]
    assert await inbound.reply()
    with trio.fail_after(10):
        while setup.sim.stats.receipts_acked < 1:
            await trio.sleep(0.01)


async def test_receipts_sent_before_the_response_reach_the_application(setup: Setup) -> None:
    await setup.start(SimulatorConfig(seed=3, receipts=ReceiptConfig(before_response=1.0)))
    responses = [await setup.client.submit(sm(receipt=True)) for _ in range(5)]
    ids = []
    with trio.fail_after(10):
        for _ in range(5):
            inbound = await setup.client.inbound.receive()
            ids.append(inbound.pdu.tlv("receipted_message_id"))
            await inbound.reply()
    assert sorted(ids) == sorted(r.message_id for r in responses)  # type: ignore[attr-defined]


async def test_throttling_fraction_raises_throttled_and_recovers(setup: Setup) -> None:
    await setup.start()
    setup.sim.set_faults(Faults(throttle_fraction=0.5))
    outcomes = await _submit_all(setup.client, 40)
    throttled = [o for o in outcomes if isinstance(o, ThrottledError)]
    accepted = [o for o in outcomes if not isinstance(o, Exception)]
    assert throttled and accepted and len(throttled) + len(accepted) == 40
    assert all(t.retryable for t in throttled)
    assert setup.client.stats.requests_throttled == len(throttled)
    setup.sim.set_faults(Faults())
    assert all(not isinstance(o, Exception) for o in await _submit_all(setup.client, 10))


async def test_temporary_and_permanent_errors_are_classified(setup: Setup) -> None:
    await setup.start()
    setup.sim.set_faults(Faults(temporary_error_fraction=1.0))
    with pytest.raises(SubmitRejected) as temporary:
        await setup.client.submit(sm())
    assert temporary.value.retryable
    setup.sim.set_faults(Faults(permanent_error_fraction=1.0))
    with pytest.raises(SubmitRejected) as permanent:
        await setup.client.submit(sm())
    assert not permanent.value.retryable
    assert setup.client.state is ClientState.BOUND


async def test_latency_against_the_callers_timeout(setup: Setup) -> None:
    await setup.start()
    setup.sim.set_faults(Faults(latency=0.3))
    assert (await setup.client.submit(sm(), timeout=5)).message_id  # type: ignore[attr-defined]
    with pytest.raises(RequestTimeout) as info:
        await setup.client.submit(sm(), timeout=0.05)
    assert info.value.sent
    # The late answer is logged and counted, not fatal.
    with trio.fail_after(10):
        while setup.client.stats.unexpected_responses < 1:
            await trio.sleep(0.01)
    assert setup.client.state is ClientState.BOUND


async def test_max_window_throttles_beyond_it(setup: Setup) -> None:
    await setup.start()
    setup.sim.set_faults(Faults(latency=0.3, max_window=2))
    outcomes = await _submit_all(setup.client, 5)
    assert sum(isinstance(o, ThrottledError) for o in outcomes) == 3
    assert sum(not isinstance(o, Exception) for o in outcomes) == 2


async def test_dropped_responses_time_out_and_the_link_survives(setup: Setup) -> None:
    await setup.start()
    setup.sim.set_faults(Faults(drop_response_fraction=1.0))
    with pytest.raises(RequestTimeout) as info:
        await setup.client.submit(sm(), timeout=0.2)
    assert info.value.sent and info.value.retryable
    setup.sim.set_faults(Faults())
    assert (await setup.client.submit(sm())).message_id  # type: ignore[attr-defined]
    assert setup.client.stats.disconnects == 0


async def test_disconnect_after_n_pdus_reconnects(setup: Setup) -> None:
    await setup.start()
    setup.sim.set_faults(Faults(disconnect_after_pdus=3))  # bind counts: the 3rd PDU cuts
    outcomes = []
    for _ in range(6):
        try:
            outcomes.append(await setup.client.submit(sm(), timeout=5))
        except ConnectionLost as exc:
            assert exc.retryable
            outcomes.append(exc)
    assert any(isinstance(o, ConnectionLost) for o in outcomes)
    assert setup.client.stats.disconnects >= 1
    assert setup.client.stats.binds >= 2
    setup.sim.set_faults(Faults())
    assert (await setup.client.submit(sm(), timeout=5)).message_id  # type: ignore[attr-defined]


async def test_refused_binds_back_off_then_bind(setup: Setup) -> None:
    await setup.start()
    setup.sim.set_faults(Faults(refuse_binds=3))
    await _cut(setup)
    with trio.fail_after(10):
        while setup.client.stats.binds < 2:
            await trio.sleep(0.01)
    assert setup.client.stats.bind_failures == 3
    assert setup.sim.stats.bind_failures == 3
    assert (await setup.client.submit(sm())).message_id  # type: ignore[attr-defined]


async def _cut(setup: Setup) -> None:
    """Make the simulator drop the link (the next PDU it receives) and wait until it is down."""
    setup.sim.set_faults(attrs_evolve(setup.sim.faults, disconnect_fraction=1.0))
    with pytest.raises(ConnectionLost):
        await setup.client.submit(sm(), timeout=5)
    setup.sim.set_faults(attrs_evolve(setup.sim.faults, disconnect_fraction=0.0))


def attrs_evolve(faults: Faults, **changes: object) -> Faults:
    import attrs

    return attrs.evolve(faults, **changes)


async def test_wrong_credentials_are_permanent(setup: Setup) -> None:
    sim = SimulatorConfig(seed=1, accounts=[Account("esme", "secret")])
    setup.sim = Simulator(sim)
    port = await setup.nursery.start(setup.sim.serve)
    setup.client = SmppClient(
        ClientConfig(system_id="esme", password="wrong", port=port, backoff=FAST_BACKOFF)
    )
    await setup.nursery.start(setup.client.run)
    with trio.fail_after(10):
        while setup.client.stats.bind_failures < 1:
            await trio.sleep(0.01)
    err = setup.client.last_error
    assert err is not None and getattr(err, "permanent", False)
    assert setup.client.state is not ClientState.BOUND


async def test_garbage_pdu_is_nacked_and_the_link_goes_on(setup: Setup) -> None:
    await setup.start()
    setup.sim.set_faults(Faults(garbage_fraction=1.0, garbage_mode=GarbageMode.PDU))
    assert (await setup.client.submit(sm())).message_id  # type: ignore[attr-defined]
    with trio.fail_after(10):
        while setup.sim.stats.pdus_received.get("generic_nack", 0) < 1:
            await trio.sleep(0.01)
    assert setup.client.stats.invalid_input >= 1
    assert setup.client.stats.disconnects == 0


async def test_garbage_stream_ends_the_link_and_the_client_reconnects(setup: Setup) -> None:
    await setup.start()
    setup.sim.set_faults(Faults(garbage_fraction=1.0, garbage_mode=GarbageMode.STREAM))
    with pytest.raises((ConnectionLost, RequestTimeout)):
        await setup.client.submit(sm(), timeout=2)
    setup.sim.set_faults(Faults())
    with trio.fail_after(10):
        while setup.client.stats.binds < 2:
            await trio.sleep(0.01)
    assert setup.client.stats.disconnects >= 1
    assert (await setup.client.submit(sm(), timeout=5)).message_id  # type: ignore[attr-defined]


async def test_mobile_originated_message_reaches_the_application(setup: Setup) -> None:
    await setup.start()

    async def app() -> None:
        inbound = await setup.client.inbound.receive()
        assert not inbound.is_receipt
        assert inbound.pdu.source_addr == "46709999999"  # type: ignore[union-attr]
        await inbound.reply()

    setup.nursery.start_soon(app)
    result = await setup.sim.send_mo(
        source_addr="46709999999", destination_addr="smsgw", text="hej"
    )
    assert result.ok


async def test_transmitter_receiver_pair_gets_receipts_on_the_receiver(setup: Setup) -> None:
    await setup.start(bind_mode=BindMode.TRANSMITTER_RECEIVER)
    resp = await setup.client.submit(sm(receipt=True))
    with trio.fail_after(10):
        inbound = await setup.client.inbound.receive()
    assert inbound.pdu.tlv("receipted_message_id") == resp.message_id  # type: ignore[attr-defined]
    await inbound.reply()
    assert setup.sim.stats.binds == 2


async def test_heartbeat_keeps_an_idle_link(setup: Setup) -> None:
    await setup.start(enquire_link_interval=0.05)
    with trio.fail_after(10):
        while setup.client.stats.enquire_links_answered < 3:
            await trio.sleep(0.02)
    assert setup.client.stats.disconnects == 0
    assert setup.sim.stats.pdus_received.get("enquire_link", 0) >= 3


async def test_a_closed_port_is_retried_with_backoff(nursery: trio.Nursery) -> None:
    # Take a free port and close it again: connecting is refused.
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    client = SmppClient(ClientConfig(system_id="e", password="p", port=port, backoff=FAST_BACKOFF))
    nursery.start_soon(client.run)
    with trio.fail_after(10):
        while client.backoff.attempt < 3:
            await trio.sleep(0.01)
    assert isinstance(client.last_error, OSError)
    assert client.stats.connects == 0
    assert math.isfinite(client.next_attempt_at or 0.0)
    client.stop()
