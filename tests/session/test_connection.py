"""The Trio connection against a scripted SMSC, in virtual time (``autojump_clock``)."""

from __future__ import annotations

import contextlib
import functools
import struct

import pytest
import trio
import trio.testing

from smpp_codec import (
    AlertNotification,
    BindTransceiver,
    BindTransceiverResp,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from smsgw.smpp import (
    BindError,
    ClientConfig,
    ConnectionLost,
    Inbound,
    RequestTimeout,
    SessionClosed,
    SmppConnection,
    SubmitRejected,
    ThrottledError,
)

from .fake_smsc import FakeSmsc, stream_pair

S = CommandStatus
CONFIG = ClientConfig(
    system_id="esme",
    password="secret",
    window=3,
    request_timeout=5.0,
    response_timeout=2.0,
    enquire_link_interval=30.0,
    drain_timeout=4.0,
    inbound_buffer=1,
    inbound_answer_timeout=10.0,
)


def sm(n: int = 0) -> SubmitSm:
    return SubmitSm(sequence_number=0, destination_addr=f"4670{n:06d}", short_message=b"hello")


class Harness:
    """A connection running in the test's nursery, bound to a fake SMSC."""

    def __init__(self, config: ClientConfig = CONFIG) -> None:
        stream, self.smsc = stream_pair()
        self.inbound_send, self.inbound = trio.open_memory_channel[Inbound](config.inbound_buffer)
        self.conn = SmppConnection(stream, config, inbound=self.inbound_send)
        self.result: list[str | None] = []

    async def run(self) -> None:
        self.result.append(await self.conn.run())

    async def start(self, nursery: trio.Nursery) -> BindTransceiver:
        nursery.start_soon(self.run)
        bind = await self.smsc.expect(BindTransceiver)
        await self.smsc.send(bind.response(system_id="fake"))
        await self.conn.wait_bound()
        assert self.conn.accepting
        return bind


async def test_bind_sends_credentials_and_submit_returns_the_response(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    bind = await h.start(nursery)
    assert (bind.system_id, bind.password) == ("esme", "secret")
    assert h.conn.bind_response == BindTransceiverResp(sequence_number=1, system_id="fake")

    async def answer() -> None:
        req = await h.smsc.expect(SubmitSm)
        assert req.destination_addr == "4670000007"
        await h.smsc.send(req.response(message_id="MSG1"))

    nursery.start_soon(answer)
    resp = await h.conn.submit(sm(7))
    assert isinstance(resp, SubmitSmResp) and resp.message_id == "MSG1"
    assert h.conn.counters.requests_ok == 1


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(S.ESME_RINVPASWD, True), (S.ESME_RINVSYSID, True), (S.ESME_RBINDFAIL, False)],
)
async def test_refused_bind_is_classified(
    status: int, permanent: bool, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    nursery.start_soon(h.run)
    bind = await h.smsc.expect(BindTransceiver)
    await h.smsc.send(bind.response(status))
    await h.conn.finished.wait()
    err = h.conn.bind_error
    assert isinstance(err, BindError)
    assert err.command_status == status
    assert err.permanent is permanent and err.retryable is not permanent
    assert h.conn.counters.bind_failures == 1


async def test_unanswered_bind_fails_after_response_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    start = trio.current_time()
    nursery.start_soon(h.run)
    await h.smsc.expect(BindTransceiver)
    await h.conn.finished.wait()
    assert h.conn.bind_error is not None and h.conn.bind_error.command_status is None
    assert trio.current_time() - start == pytest.approx(CONFIG.response_timeout)


@pytest.mark.parametrize(
    ("answer", "error", "retryable"),
    [
        (lambda r: r.response(S.ESME_RTHROTTLED), ThrottledError, True),
        (lambda r: r.response(S.ESME_RMSGQFUL), ThrottledError, True),
        (lambda r: r.response(S.ESME_RSYSERR), SubmitRejected, True),
        (lambda r: r.response(S.ESME_RINVDSTADR), SubmitRejected, False),
        (
            lambda r: GenericNack(
                sequence_number=r.sequence_number, command_status=S.ESME_RINVCMDID
            ),
            SubmitRejected,
            False,
        ),
    ],
)
async def test_error_answers_raise_typed_errors(
    answer: object,
    error: type[Exception],
    retryable: bool,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness()
    await h.start(nursery)

    async def reply() -> None:
        req = await h.smsc.expect(SubmitSm)
        await h.smsc.send(answer(req))  # type: ignore[operator]

    nursery.start_soon(reply)
    with pytest.raises(error) as info:
        await h.conn.submit(sm())
    assert info.value.retryable is retryable  # type: ignore[attr-defined]
    assert info.value.sent
    assert h.conn.accepting  # an error answer is no reason to drop the link


async def test_unanswered_request_times_out_and_a_late_answer_is_counted(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    start = trio.current_time()
    with pytest.raises(RequestTimeout) as info:
        await h.conn.submit(sm(), timeout=1.5)
    assert info.value.sent
    assert trio.current_time() - start == pytest.approx(1.5)
    req = await h.smsc.expect(SubmitSm)
    await h.smsc.send(req.response(message_id="late"))
    # The late answer is counted, and the link lives on: the next submit works.
    nursery.start_soon(_answer_submits, h.smsc, 1)
    assert (await h.conn.submit(sm())).message_id == "ok"
    assert h.conn.counters.unexpected_responses == 1
    assert h.conn.counters.requests_timed_out == 1


async def _answer_submits(smsc: FakeSmsc, n: int) -> None:
    for _ in range(n):
        req = await smsc.expect(SubmitSm)
        await smsc.send(req.response(message_id="ok"))


async def test_the_window_holds_back_requests_beyond_its_size(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    done: list[str] = []

    async def one(n: int) -> None:
        resp = await h.conn.submit(sm(n), timeout=60)
        done.append(resp.message_id)  # type: ignore[attr-defined]

    for n in range(5):
        nursery.start_soon(one, n)
    first = [await h.smsc.expect(SubmitSm) for _ in range(3)]
    await trio.sleep(1)  # everything settles: the other two must still be waiting
    assert h.conn.outstanding == 3
    assert h.smsc.framer.buffered == 0
    # Answer out of order; each answer lets one more request out.
    await h.smsc.send(first[2].response(message_id="c"), first[0].response(message_id="a"))
    more = [await h.smsc.expect(SubmitSm) for _ in range(2)]
    await h.smsc.send(first[1].response(message_id="b"))
    await h.smsc.send(*(r.response(message_id=f"x{i}") for i, r in enumerate(more)))
    with trio.fail_after(10):
        while len(done) < 5:
            await trio.sleep(0.1)
    assert sorted(done) == ["a", "b", "c", "x0", "x1"]
    assert h.conn.outstanding == 0


async def test_a_window_slot_wait_is_bounded_by_the_callers_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    for n in range(3):
        nursery.start_soon(_ignore, h.conn.submit(sm(n), timeout=100))
    await trio.sleep(0.1)
    with pytest.raises(RequestTimeout) as info:
        await h.conn.submit(sm(9), timeout=1)
    assert not info.value.sent


async def _ignore(coro: object) -> None:
    # These requests' outcomes are not what the test checks.
    with contextlib.suppress(Exception):
        await coro  # type: ignore[misc]


async def test_heartbeat_when_idle_and_dead_link_detection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    bound_at = trio.current_time()
    probe = await h.smsc.expect(EnquireLink)
    assert trio.current_time() - bound_at == pytest.approx(CONFIG.enquire_link_interval)
    await h.smsc.send(probe.response())
    # Traffic postpones the next probe: a deliver_sm at +10s moves it to +40s.
    await trio.sleep(10)
    await h.smsc.send(DeliverSm(sequence_number=h.smsc.next_seq(), short_message=b"x"))
    inbound = await h.inbound.receive()
    await inbound.reply()
    await h.smsc.expect(DeliverSmResp)
    second = await h.smsc.expect(EnquireLink)
    assert trio.current_time() - bound_at == pytest.approx(
        2 * CONFIG.enquire_link_interval + 10, abs=0.01
    )
    # This one is not answered: the link is dead after response_timeout; pending work fails.
    nursery.start_soon(_expect_lost, h.conn)
    await h.smsc.expect(SubmitSm)
    await h.conn.finished.wait()
    assert h.result == [f"dead link: no enquire_link_resp in {CONFIG.response_timeout:g}s"]
    assert trio.current_time() - bound_at == pytest.approx(
        2 * CONFIG.enquire_link_interval + 10 + CONFIG.response_timeout, abs=0.01
    )
    assert second.sequence_number != probe.sequence_number
    assert h.conn.counters.requests_lost == 1


async def _expect_lost(conn: SmppConnection) -> None:
    with pytest.raises(ConnectionLost) as info:
        await conn.submit(sm(), timeout=100)
    assert info.value.sent and info.value.retryable


async def test_the_smscs_enquire_link_is_answered(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    await h.smsc.send(EnquireLink(sequence_number=77))
    assert await h.smsc.expect(EnquireLinkResp) == EnquireLinkResp(sequence_number=77)


async def test_unbind_from_the_smsc_is_answered_and_ends_the_link(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    nursery.start_soon(_expect_lost, h.conn)
    await h.smsc.expect(SubmitSm)
    await h.smsc.send(Unbind(sequence_number=5))
    assert await h.smsc.expect(UnbindResp) == UnbindResp(sequence_number=5)
    assert await h.smsc.at_eof()
    await h.conn.finished.wait()
    assert h.result == ["unbound by the peer"]
    with pytest.raises(SessionClosed):
        await h.conn.submit(sm())


async def test_deliveries_reach_the_application_which_chooses_the_answer(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    receipt = DeliverSm(sequence_number=10, esm_class=0x04, short_message=b"id:1 stat:DELIVRD")
    await h.smsc.send(receipt, DataSm(sequence_number=11), AlertNotification(sequence_number=12))
    first = await h.inbound.receive()
    assert first.pdu == receipt and first.is_receipt
    # Nothing is answered before the application decides.
    await trio.sleep(1)
    assert h.smsc.framer.buffered == 0
    assert await first.reply(S.ESME_RX_P_APPN)
    assert await h.smsc.expect(DeliverSmResp) == DeliverSmResp(
        sequence_number=10, command_status=S.ESME_RX_P_APPN
    )
    assert not await first.reply()  # once only
    second = await h.inbound.receive()
    assert isinstance(second.pdu, DataSm) and not second.is_receipt
    await second.reply()
    assert await h.smsc.expect(DataSmResp) == DataSmResp(sequence_number=11)
    alert = await h.inbound.receive()
    assert isinstance(alert.pdu, AlertNotification) and not alert.needs_answer
    assert not await alert.reply()
    assert h.conn.counters.inbound == 3


async def test_an_unanswered_delivery_gets_the_default_answer(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    await h.smsc.send(DeliverSm(sequence_number=20, short_message=b"mo"))
    inbound = await h.inbound.receive()
    sent_at = trio.current_time()
    resp = await h.smsc.expect(DeliverSmResp)
    assert resp.command_status == CONFIG.inbound_default_status == S.ESME_RX_T_APPN
    assert trio.current_time() - sent_at == pytest.approx(CONFIG.inbound_answer_timeout)
    assert not await inbound.reply()  # too late: the SMSC will deliver it again
    assert h.conn.counters.inbound_defaulted == 1


async def test_a_slow_consumer_stops_the_reader(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()  # inbound_buffer=1
    await h.start(nursery)
    await h.smsc.send(
        DeliverSm(sequence_number=30),
        DeliverSm(sequence_number=31),  # the reader blocks on this one
        EnquireLink(sequence_number=32),
    )
    await trio.sleep(1)
    # The enquire_link behind the blocked delivery is not read, so not answered.
    assert h.smsc.framer.buffered == 0
    with pytest.raises(trio.TooSlowError):
        await h.smsc.read(timeout=0.5)
    first = await h.inbound.receive()  # the consumer catches up: the reader moves on
    assert await h.smsc.expect(EnquireLinkResp) == EnquireLinkResp(sequence_number=32)
    await first.reply()
    second = await h.inbound.receive()
    await second.reply()
    assert [(await h.smsc.expect(DeliverSmResp)).sequence_number for _ in range(2)] == [30, 31]


async def test_malformed_input_is_answered_and_the_link_survives(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    await h.smsc.send_raw(struct.pack(">IIII", 16, 0x0000_0099, 0, 41))  # unknown command
    assert await h.smsc.expect(GenericNack) == GenericNack(
        sequence_number=41, command_status=S.ESME_RINVCMDID
    )
    await h.smsc.send(SubmitSm(sequence_number=42))  # only an ESME may send submit_sm
    assert (await h.smsc.expect(GenericNack)).command_status == S.ESME_RINVCMDID
    nursery.start_soon(_answer_submits, h.smsc, 1)
    assert (await h.conn.submit(sm())).message_id == "ok"
    assert h.conn.counters.invalid_input == 2


async def test_lost_framing_is_nacked_and_ends_the_link(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    await h.smsc.send_raw(struct.pack(">IIII", 5, 0x0000_0005, 0, 43) + b"garbage")
    assert await h.smsc.expect(GenericNack) == GenericNack(
        sequence_number=43, command_status=S.ESME_RINVCMDLEN
    )
    assert await h.smsc.at_eof()
    await h.conn.finished.wait()
    assert h.result[0] is not None and h.result[0].startswith("framing lost")


async def test_a_malformed_response_fails_its_request(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    from smsgw.smpp import InvalidResponse

    h = Harness()
    await h.start(nursery)

    async def bad_answer() -> None:
        req = await h.smsc.expect(SubmitSm)
        body = b"no-nul"
        await h.smsc.send_raw(
            struct.pack(">IIII", 16 + len(body), 0x8000_0004, 0, req.sequence_number) + body
        )

    nursery.start_soon(bad_answer)
    with pytest.raises(InvalidResponse):
        await h.conn.submit(sm())
    assert h.conn.accepting


async def test_the_peer_closing_the_stream_fails_pending_requests(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    nursery.start_soon(_expect_lost, h.conn)
    await h.smsc.expect(SubmitSm)
    await h.smsc.stream.aclose()
    await h.conn.finished.wait()
    assert h.result == ["closed by the peer"]


async def test_graceful_close_drains_the_window_then_unbinds(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    outcome: list[str] = []

    async def one() -> None:
        outcome.append((await h.conn.submit(sm())).message_id)  # type: ignore[attr-defined]

    nursery.start_soon(one)
    req = await h.smsc.expect(SubmitSm)
    nursery.start_soon(h.conn.aclose)
    await trio.sleep(1)
    assert not h.conn.accepting
    with pytest.raises(SessionClosed):
        await h.conn.submit(sm())
    await h.smsc.send(req.response(message_id="drained"))
    unbind = await h.smsc.expect(Unbind)
    await h.smsc.send(unbind.response())
    assert await h.smsc.at_eof()
    await h.conn.finished.wait()
    assert outcome == ["drained"]
    assert h.result == ["closed by us"]


async def test_graceful_close_answers_what_the_smsc_sent_before_it_unbinds(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A receipt the application is still storing when the close starts is answered before
    the unbind: an SMSC that does not deliver it again would otherwise lose it."""
    h = Harness()
    await h.start(nursery)
    await h.smsc.send(DeliverSm(sequence_number=30, esm_class=0x04, short_message=b"id:1"))
    receipt = await h.inbound.receive()
    nursery.start_soon(h.conn.aclose)
    await trio.sleep(1)  # storing it takes a while
    await receipt.reply()
    # The answer first, then the unbind (the next PDU after it).
    assert await h.smsc.expect(DeliverSmResp) == DeliverSmResp(sequence_number=30)
    unbind = await h.smsc.expect(Unbind)
    await h.smsc.send(unbind.response())
    await h.conn.finished.wait()
    assert h.result == ["closed by us"]


async def test_graceful_close_waits_for_unanswered_deliveries_within_the_drain_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    await h.smsc.send(DeliverSm(sequence_number=31, short_message=b"mo"))
    await h.inbound.receive()  # and never answered
    start = trio.current_time()
    nursery.start_soon(h.conn.aclose)
    unbind = await h.smsc.expect(Unbind)
    assert trio.current_time() - start == pytest.approx(CONFIG.drain_timeout)
    await h.smsc.send(unbind.response())
    await h.conn.finished.wait()


async def test_graceful_close_gives_up_on_the_window_after_drain_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness()
    await h.start(nursery)
    nursery.start_soon(_expect_lost, h.conn)
    await h.smsc.expect(SubmitSm)
    start = trio.current_time()
    nursery.start_soon(h.conn.aclose)
    await h.smsc.expect(Unbind)  # never answered either
    assert trio.current_time() - start == pytest.approx(CONFIG.drain_timeout)
    await h.conn.finished.wait()
    assert trio.current_time() - start == pytest.approx(
        CONFIG.drain_timeout + CONFIG.response_timeout
    )
    assert h.result == ["closed by us"]


async def one_session(smsc: FakeSmsc, *, submits: int) -> None:
    """The SMSC's side of one session: accept the bind, answer ``submits`` submit_sm (message
    id ``m``), answer the unbind."""
    bind = await smsc.expect(BindTransceiver)
    await smsc.send(bind.response())
    for _ in range(submits):
        req = await smsc.expect(SubmitSm)
        await smsc.send(req.response(message_id="m"))
    unbind = await smsc.expect(Unbind)
    await smsc.send(unbind.response())


async def test_open_connection_binds_and_closes_gracefully(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    from smsgw.smpp import open_connection

    stream, smsc = stream_pair()
    nursery.start_soon(functools.partial(one_session, smsc, submits=1))
    async with open_connection(stream, CONFIG) as conn:
        assert (await conn.submit(sm())).message_id == "m"  # type: ignore[attr-defined]
    assert conn.finished.is_set() and conn.end_reason == "closed by us"


async def test_open_connection_raises_the_bind_error(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    from smsgw.smpp import open_connection

    stream, smsc = stream_pair()

    async def refuse() -> None:
        bind = await smsc.expect(BindTransceiver)
        await smsc.send(bind.response(S.ESME_RINVPASWD))

    nursery.start_soon(refuse)
    with pytest.raises(BindError) as info:
        async with open_connection(stream, CONFIG):
            pytest.fail("the block must not run")
    assert info.value.permanent


async def test_open_connection_hands_the_bodys_exception_back_as_itself(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    from smsgw.smpp import open_connection

    stream, smsc = stream_pair()
    nursery.start_soon(functools.partial(one_session, smsc, submits=0))
    with pytest.raises(ValueError, match="mine"):
        async with open_connection(stream, CONFIG) as conn:
            raise ValueError("mine")
    assert conn.finished.is_set()
