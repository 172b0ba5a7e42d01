"""The supervised client: reconnects with backoff, exposes its state, pairs TX and RX."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from smpp_codec import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    CommandStatus,
    DeliverSm,
    DeliverSmResp,
    SubmitSm,
    Unbind,
)
from smsgw.smpp import (
    BackoffPolicy,
    BindMode,
    ClientConfig,
    ClientState,
    RequestTimeout,
    SessionClosed,
    SmppClient,
)

from .fake_smsc import FakeSmsc, stream_pair

S = CommandStatus
POLICY = BackoffPolicy(initial=1.0, maximum=8.0, multiplier=2.0, jitter=0.5, reset_after=20.0)
CONFIG = ClientConfig(
    system_id="esme",
    password="pw",
    backoff=POLICY,
    response_timeout=2.0,
    request_timeout=5.0,
    enquire_link_interval=1000.0,
)


class Script:
    """A connector: each attempt either fails with OSError or hands a fresh fake SMSC over."""

    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes = outcomes
        self.attempts: list[float] = []
        self.send, self.smscs = trio.open_memory_channel[FakeSmsc](10)

    async def __call__(self, config: ClientConfig) -> trio.abc.Stream:
        self.attempts.append(trio.current_time())
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "fail":
            raise ConnectionRefusedError("refused")
        stream, smsc = stream_pair()
        self.send.send_nowait(smsc)
        return stream


async def _serve_bind(smsc: FakeSmsc, status: int = 0) -> None:
    bind = await smsc.expect(BindTransceiver)
    await smsc.send(bind.response(status))


async def test_reconnects_with_backoff_and_jitter_until_bound(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    script = Script(["fail", "fail", "fail", "ok"])
    states: list[ClientState] = []
    client = SmppClient(CONFIG, rand=lambda: 0.5, connector=script, on_state=states.append)
    await nursery.start(client.run)
    smsc = await script.smscs.receive()
    await _serve_bind(smsc)
    with trio.fail_after(5):
        await client.wait_bound()
    gaps = [b - a for a, b in zip(script.attempts, script.attempts[1:], strict=False)]
    # initial 1, doubling, each cut by jitter * 0.5 = 25 %.
    assert gaps == pytest.approx([0.75, 1.5, 3.0])
    C, B = ClientState.CONNECTING, ClientState.BACKOFF
    assert states == [C, B, C, B, C, B, C, ClientState.BINDING, ClientState.BOUND]
    assert isinstance(client.last_error, ConnectionRefusedError)
    assert client.stats.connects == 1 and client.stats.binds == 1
    client.stop()


async def test_a_lost_link_reconnects_and_a_healthy_period_resets_the_backoff(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    script = Script([])
    client = SmppClient(CONFIG, rand=lambda: 0.0, connector=script)
    await nursery.start(client.run)
    for lived in (1.0, 1.0, 30.0, 1.0):
        smsc = await script.smscs.receive()
        await _serve_bind(smsc)
        await client.wait_bound()
        await trio.sleep(lived)
        await smsc.stream.aclose()
    await _serve_bind(await script.smscs.receive())
    gaps = [b - a for a, b in zip(script.attempts, script.attempts[1:], strict=False)]
    # Lived 1 s: waits 1, then 2; lived 30 s (> reset_after): back to 1; then 2.
    assert gaps == pytest.approx([1 + 1, 1 + 2, 30 + 1, 1 + 2], abs=0.01)
    assert client.stats.disconnects == 4
    client.stop()


async def test_bad_credentials_wait_the_longest_delay(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    script = Script([])
    client = SmppClient(CONFIG, rand=lambda: 0.0, connector=script)
    await nursery.start(client.run)
    await _serve_bind(await script.smscs.receive(), S.ESME_RINVPASWD)
    await _serve_bind(await script.smscs.receive(), S.ESME_RBINDFAIL)
    await _serve_bind(await script.smscs.receive())
    await client.wait_bound()
    gaps = [b - a for a, b in zip(script.attempts, script.attempts[1:], strict=False)]
    assert gaps == pytest.approx([POLICY.maximum, 2.0])
    assert client.stats.bind_failures == 2
    client.stop()


async def test_submit_waits_for_the_bind_within_its_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    script = Script(["fail"])
    client = SmppClient(CONFIG, rand=lambda: 0.0, connector=script)
    await nursery.start(client.run)
    with pytest.raises(RequestTimeout) as info:
        await client.submit(SubmitSm(sequence_number=0), timeout=0.5)
    assert not info.value.sent

    async def serve() -> None:
        smsc = await script.smscs.receive()
        await _serve_bind(smsc)
        req = await smsc.expect(SubmitSm)
        await smsc.send(req.response(message_id="after-reconnect"))

    nursery.start_soon(serve)
    resp = await client.submit(SubmitSm(sequence_number=0), timeout=10)
    assert resp.message_id == "after-reconnect"  # type: ignore[attr-defined]
    client.stop()


async def test_stop_unbinds_and_closes_the_inbound_channel(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    script = Script([])
    client = SmppClient(CONFIG, connector=script)
    await nursery.start(client.run)
    smsc = await script.smscs.receive()
    await _serve_bind(smsc)
    await client.wait_bound()
    nursery.start_soon(client.aclose)
    unbind = await smsc.expect(Unbind)
    assert client.state is ClientState.UNBINDING
    await smsc.send(unbind.response())
    with trio.fail_after(10):
        await client._stopped.wait()
        assert [m async for m in client.inbound] == []
    assert client.state is ClientState.STOPPED
    with pytest.raises(SessionClosed):
        await client.submit(SubmitSm(sequence_number=0))


async def test_transmitter_receiver_pair(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    script = Script([])
    config = ClientConfig(
        system_id="esme", password="pw", bind_mode=BindMode.TRANSMITTER_RECEIVER, backoff=POLICY
    )
    client = SmppClient(config, rand=lambda: 0.0, connector=script)
    await nursery.start(client.run)
    tx, rx = await script.smscs.receive(), await script.smscs.receive()
    btx = await tx.expect(BindTransmitter)
    await tx.send(btx.response())
    brx = await rx.expect(BindReceiver)
    await rx.send(brx.response())
    await client.wait_bound()

    async def serve_tx() -> None:
        req = await tx.expect(SubmitSm)
        await tx.send(req.response(message_id="via-tx"))

    nursery.start_soon(serve_tx)
    assert (await client.submit(SubmitSm(sequence_number=0))).message_id == "via-tx"  # type: ignore[attr-defined]
    await rx.send(DeliverSm(sequence_number=3, short_message=b"mo"))
    inbound = await client.inbound.receive()
    await inbound.reply()
    assert (await rx.expect(DeliverSmResp)).sequence_number == 3
    # Losing the receiver takes the pair down; both reconnect.
    await rx.stream.aclose()
    assert await tx.at_eof()
    tx2, rx2 = await script.smscs.receive(), await script.smscs.receive()
    await tx2.expect(BindTransmitter)
    await rx2.expect(BindReceiver)
    client.stop()


async def test_open_client_raises_too_slow_when_never_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from smsgw.smpp import open_client

    with pytest.raises(trio.TooSlowError, match="not bound within 3"):
        async with open_client(CONFIG, bound_timeout=3, connector=Script(["fail"] * 100)):
            pytest.fail("the block must not run")


async def test_open_client_hands_the_bodys_exception_back_as_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Not in the exception group of the client's nursery; its cause kept. A group the body
    raised stays that group."""
    from smsgw.smpp import open_client

    cause = KeyError("why")
    with pytest.raises(ValueError, match="mine") as info:
        async with open_client(CONFIG, connector=Script(["fail"] * 100)):
            raise ValueError("mine") from cause
    assert info.value.__cause__ is cause
    with pytest.RaisesGroup(KeyError, match="callers"):
        async with open_client(CONFIG, connector=Script(["fail"] * 100)):
            raise ExceptionGroup("callers", [KeyError("k")])
