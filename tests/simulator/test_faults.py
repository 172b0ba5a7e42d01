"""Every fault the simulator injects, each asserted on the wire and in the stats."""

from __future__ import annotations

import pytest
import trio

from smpp_codec import (
    BindReceiver,
    BindReceiverResp,
    BindTransmitter,
    CommandStatus,
    EnquireLink,
    GenericNack,
    InvalidCommandLength,
    SmeAddress,
    SubmitMulti,
    SubmitSm,
    SubmitSmResp,
    UnknownCommandId,
    encode,
)
from smsgw.simulator import Faults, GarbageMode, SimulatorConfig

from .esme import Closed, RawEsme, serve

S = CommandStatus


def submit(seq: int, **fields: object) -> SubmitSm:
    fields.setdefault("source_addr", "4915112345")
    fields.setdefault("destination_addr", "4917612345")
    fields.setdefault("short_message", b"hello")
    return SubmitSm(sequence_number=seq, **fields)  # type: ignore[arg-type]


async def statuses(esme: RawEsme, count: int) -> list[int]:
    """Submit ``count`` messages one by one; their response statuses."""
    out = []
    for _ in range(count):
        resp = await esme.request(submit(esme.seq()))
        assert isinstance(resp, SubmitSmResp)
        out.append(resp.command_status)
    return out


def with_faults(**faults: object) -> SimulatorConfig:
    return SimulatorConfig(seed=4, faults=Faults(**faults))  # type: ignore[arg-type]


async def test_latency_delays_every_response(nursery, autojump_clock):
    run = await serve(nursery, with_faults(latency="2s"))
    esme = await run.esme()
    start = trio.current_time()
    await esme.bind()
    assert trio.current_time() - start == pytest.approx(2)
    start = trio.current_time()
    assert await statuses(esme, 1) == [0]
    await esme.request(EnquireLink(sequence_number=esme.seq()))
    assert trio.current_time() - start == pytest.approx(4)
    assert run.sim.stats.faults["latency"] == 3


async def test_with_latency_nothing_goes_before_the_bind_response(nursery, autojump_clock):
    """Receipts waiting for the account, a receiver binding with 2 s of latency: the first
    PDU it reads is its bind_resp (an ESME is bound only once it has read it), then the
    receipts."""
    run = await serve(nursery, with_faults(latency="2s"))
    sender = await run.bound(BindTransmitter)
    for _ in range(3):
        resp = await sender.request(submit(sender.seq(), registered_delivery=1))
        assert resp.command_status == 0
    receiver = await run.esme()
    await receiver.send(BindReceiver(sequence_number=receiver.seq(), system_id="esme"))
    first = await receiver.recv()
    assert isinstance(first, BindReceiverResp) and first.command_status == 0, first
    for _ in range(3):
        await receiver.ack(await receiver.deliver())


async def test_with_latency_a_bind_counts_against_max_binds_once_accepted(nursery, autojump_clock):
    """The first bind's response is still held back by latency when the second bind comes:
    the account's one session is taken all the same, and the second bind is refused."""
    config = SimulatorConfig(seed=4, max_binds=1, faults=Faults(latency="2s"))
    run = await serve(nursery, config)
    first, second = await run.esme(), await run.esme()
    await first.send(BindTransmitter(sequence_number=first.seq(), system_id="esme"))
    await trio.sleep(0.5)
    refused = await second.bind(BindTransmitter)
    assert refused.command_status == S.ESME_RBINDFAIL
    assert (await first.recv()).command_status == 0
    assert run.sim.stats.binds_over_limit == 1 and run.sim.stats.peak_sessions == {"esme": 1}


async def test_latency_jitter_spreads_responses_and_may_reorder_them(nursery, autojump_clock):
    run = await serve(nursery, with_faults(latency=1, latency_jitter=2))
    esme = await run.bound(BindTransmitter)
    start = trio.current_time()
    pdus = [submit(100 + i) for i in range(20)]
    await esme.send_raw(b"".join(encode(p) for p in pdus))
    arrivals = []
    order = []
    for _ in pdus:
        resp = await esme.recv()
        arrivals.append(trio.current_time() - start)
        order.append(resp.sequence_number)
    assert all(1 <= t <= 3 for t in arrivals), arrivals
    assert sorted(order) == [p.sequence_number for p in pdus]
    assert order != sorted(order)  # out of order, as an SMSC may answer


async def test_throttle_fraction_one_throttles_every_submission(nursery):
    run = await serve(nursery, with_faults(throttle_fraction=1))
    esme = await run.bound()
    assert await statuses(esme, 5) == [S.ESME_RTHROTTLED] * 5
    stats = run.sim.stats
    assert stats.faults["throttle"] == 5
    assert (stats.submits_accepted, stats.submits_rejected) == (0, 5)


async def test_throttle_status_can_be_message_queue_full(nursery):
    run = await serve(nursery, with_faults(throttle_fraction=1, throttle_status="ESME_RMSGQFUL"))
    esme = await run.bound()
    assert await statuses(esme, 2) == [S.ESME_RMSGQFUL] * 2


async def test_a_throttle_fraction_throttles_some_and_counts_exactly_those(nursery):
    run = await serve(nursery, with_faults(throttle_fraction=0.3))
    esme = await run.bound()
    got = await statuses(esme, 100)
    throttled = got.count(S.ESME_RTHROTTLED)
    assert 0 < throttled < 100
    assert set(got) == {0, S.ESME_RTHROTTLED}
    assert run.sim.stats.faults["throttle"] == throttled
    assert run.sim.stats.submits_accepted == 100 - throttled


async def test_temporary_errors_use_the_configured_statuses(nursery):
    config = with_faults(temporary_error_fraction=1,
                         temporary_error_statuses="ESME_RSYSERR,ESME_RX_T_APPN")
    run = await serve(nursery, config)
    esme = await run.bound()
    got = await statuses(esme, 30)
    assert set(got) == {S.ESME_RSYSERR, S.ESME_RX_T_APPN}
    assert run.sim.stats.faults["temporary_error"] == 30


async def test_permanent_errors_use_the_configured_statuses(nursery):
    run = await serve(nursery, with_faults(permanent_error_fraction=1))
    esme = await run.bound()
    assert await statuses(esme, 3) == [S.ESME_RINVDSTADR] * 3
    assert run.sim.stats.faults["permanent_error"] == 3


async def test_permanent_errors_hit_submit_multi_destinations_one_by_one(nursery):
    run = await serve(nursery, with_faults(permanent_error_fraction=0.5))
    esme = await run.bound()
    dests = tuple(SmeAddress(f"49170{i:04}") for i in range(40))
    resp = await esme.request(SubmitMulti(sequence_number=esme.seq(), source_addr="1",
                                          dest_address=dests, short_message=b"x"))
    assert resp.command_status == 0
    failed = len(resp.unsuccess_sme)
    assert 0 < failed < 40
    assert {u.error_status_code for u in resp.unsuccess_sme} == {S.ESME_RINVDSTADR}
    assert run.sim.stats.faults["permanent_error"] == failed


async def test_error_fractions_share_one_draw(nursery):
    config = with_faults(throttle_fraction=0.25, temporary_error_fraction=0.25,
                         permanent_error_fraction=0.5)
    run = await serve(nursery, config)
    esme = await run.bound()
    got = await statuses(esme, 60)
    assert 0 not in got  # the fractions add up to 1
    assert set(got) == {S.ESME_RTHROTTLED, S.ESME_RSYSERR, S.ESME_RINVDSTADR}


async def test_max_window_throttles_beyond_the_held_answers(nursery, autojump_clock):
    run = await serve(nursery, with_faults(latency=1, max_window=3))
    esme = await run.bound(BindTransmitter)
    start = trio.current_time()
    await esme.send_raw(b"".join(encode(submit(100 + i)) for i in range(5)))
    got = {}
    for _ in range(5):
        resp = await esme.recv()
        got[resp.sequence_number] = resp.command_status
    assert trio.current_time() - start == pytest.approx(1)  # every response has the latency
    assert got == {100: 0, 101: 0, 102: 0, 103: S.ESME_RTHROTTLED, 104: S.ESME_RTHROTTLED}
    assert run.sim.stats.faults["max_window"] == 2
    # once answered, the window has room again
    await esme.send_raw(b"".join(encode(submit(200 + i)) for i in range(3)))
    assert [(await esme.recv()).command_status for _ in range(3)] == [0, 0, 0]


async def test_tps_limit_throttles_the_excess_per_system_id(nursery, autojump_clock):
    run = await serve(nursery, with_faults(tps_limit=5))
    esme = await run.bound(BindTransmitter, system_id="a")
    other = await run.bound(BindTransmitter, system_id="b")

    async def burst(client: RawEsme, count: int) -> list[int]:
        first = client.seq()
        for _ in range(count - 1):
            client.seq()
        await client.send_raw(b"".join(encode(submit(first + i)) for i in range(count)))
        return [(await client.recv()).command_status for _ in range(count)]

    assert sorted(await burst(esme, 8)) == [0] * 5 + [S.ESME_RTHROTTLED] * 3
    assert sorted(await burst(other, 5)) == [0] * 5  # a separate bucket
    await trio.sleep(1)
    assert sorted(await burst(esme, 6)) == [0] * 5 + [S.ESME_RTHROTTLED]
    assert run.sim.stats.faults["tps_limit"] == 4


async def test_dropped_responses_never_come_and_the_link_lives_on(nursery, autojump_clock):
    run = await serve(nursery, with_faults(drop_response_fraction=1))
    esme = await run.bound()
    await esme.send(submit(esme.seq()))
    await esme.recv_nothing(60)
    assert (await esme.request(EnquireLink(sequence_number=esme.seq()))).command_status == 0
    stats = run.sim.stats
    assert stats.faults["drop_response"] == 1
    assert stats.messages_stored == 0
    assert "submit_sm_resp" not in stats.pdus_sent


async def test_disconnect_after_pdus_drops_the_connection_on_that_pdu(nursery):
    run = await serve(nursery, with_faults(disconnect_after_pdus=3))
    esme = await run.bound()  # PDU 1
    assert await statuses(esme, 1) == [0]  # PDU 2
    await esme.send(submit(esme.seq()))  # PDU 3: not answered
    assert await esme.until_closed() == []
    assert run.sim.stats.faults["disconnect_after_pdus"] == 1
    # a new connection gets its own count
    again = await run.bound()
    assert await statuses(again, 1) == [0]


async def test_disconnect_fraction_drops_bound_connections(nursery):
    run = await serve(nursery, with_faults(disconnect_fraction=1))
    esme = await run.bound()  # binding is not affected
    await esme.send(EnquireLink(sequence_number=esme.seq()))
    assert await esme.until_closed() == []
    assert run.sim.stats.faults["disconnect"] == 1
    with trio.fail_after(5):
        while run.sim.stats.sessions:
            await trio.sleep(0.01)


async def test_refuse_binds_refuses_the_next_n_binds(nursery):
    run = await serve(nursery, with_faults(refuse_binds=2, refuse_bind_status="ESME_RSYSERR"))
    esme = await run.esme()
    assert (await esme.bind()).command_status == S.ESME_RSYSERR
    assert (await esme.bind()).command_status == S.ESME_RSYSERR
    assert (await esme.bind()).command_status == 0
    stats = run.sim.stats
    assert (stats.bind_failures, stats.binds, stats.faults["refuse_bind"]) == (2, 1, 2)


async def test_refuse_binds_for_a_while(nursery, autojump_clock):
    run = await serve(nursery, with_faults(refuse_binds_for="10s"))
    esme = await run.esme()
    start = trio.current_time()
    while (await esme.bind()).command_status == S.ESME_RBINDFAIL:
        await trio.sleep(1)
    assert trio.current_time() - start == pytest.approx(10)
    assert run.sim.stats.faults["refuse_bind"] == 10


async def test_stream_garbage_breaks_the_framing_then_the_connection_closes(nursery):
    run = await serve(nursery, with_faults(garbage_fraction=1))
    esme = await run.bound()
    await esme.send(submit(esme.seq()))
    with pytest.raises(InvalidCommandLength) as caught:
        await esme.recv()
    assert not caught.value.framing_ok
    with pytest.raises(Closed), trio.fail_after(5):
        while True:
            data = await esme.stream.receive_some(1000)
            if not data:
                raise Closed
    assert run.sim.stats.faults["garbage"] == 1


async def test_pdu_garbage_is_a_well_framed_unknown_command_before_the_answer(nursery):
    run = await serve(nursery, with_faults(garbage_fraction=1, garbage_mode=GarbageMode.PDU))
    esme = await run.bound()
    seq = esme.seq()
    await esme.send(submit(seq))
    with pytest.raises(UnknownCommandId) as caught:
        await esme.recv()
    assert caught.value.framing_ok
    await esme.send(GenericNack(sequence_number=caught.value.sequence_number,
                                command_status=S.ESME_RINVCMDID))
    resp = await esme.recv()
    assert isinstance(resp, SubmitSmResp)
    assert (resp.sequence_number, resp.command_status) == (seq, 0)
    # a round trip, so the simulator has read the nack
    assert (await esme.request(EnquireLink(sequence_number=esme.seq()))).command_status == 0
    assert run.sim.stats.unexpected_responses == 1
    run.sim.set_faults(Faults())
    assert await statuses(esme, 1) == [0]  # the link is fine


async def test_faults_change_live(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    assert await statuses(esme, 1) == [0]
    run.sim.set_faults(Faults(throttle_fraction=1))
    assert run.sim.faults.throttle_fraction == 1
    assert await statuses(esme, 1) == [S.ESME_RTHROTTLED]
    run.sim.set_faults(Faults(refuse_binds=1))
    assert await statuses(esme, 1) == [0]
    other = await run.esme()
    assert (await other.bind()).command_status == S.ESME_RBINDFAIL
    assert (await other.bind()).command_status == 0
    with pytest.raises(TypeError):
        run.sim.set_faults({"throttle_fraction": 1})  # type: ignore[arg-type]


async def test_the_same_seed_injects_the_same_faults(nursery):
    async def pattern(seed: int) -> list[int]:
        config = SimulatorConfig(seed=seed, faults=Faults(throttle_fraction=0.2,
                                                          temporary_error_fraction=0.2))
        run = await serve(nursery, config)
        return await statuses(await run.bound(), 40)

    first = await pattern(9)
    assert await pattern(9) == first
    assert await pattern(10) != first
