"""Bind state rules, accounts and the answer to every SMPP 3.4 PDU an SMSC receives."""

from __future__ import annotations

import struct

import pytest
import trio

from smpp_codec import (
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CommandStatus,
    DeliverSm,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    encode,
)
from smpp_codec.constants import Tag
from smsgw.simulator import Account, Faults, SimulatorConfig

from .esme import Closed, Running, serve

S = CommandStatus


def submit(seq: int, **fields: object) -> SubmitSm:
    fields.setdefault("source_addr", "4915112345")
    fields.setdefault("destination_addr", "4917612345")
    fields.setdefault("short_message", b"hello")
    return SubmitSm(sequence_number=seq, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cls", "resp_cls"),
    [
        (BindTransmitter, BindTransmitterResp),
        (BindReceiver, BindReceiverResp),
        (BindTransceiver, BindTransceiverResp),
    ],
)
async def test_each_bind_kind_is_accepted_with_the_smsc_system_id(nursery, cls, resp_cls):
    run = await serve(nursery, SimulatorConfig(system_id="test-smsc"))
    esme = await run.esme()
    resp = await esme.bind(cls)
    assert isinstance(resp, resp_cls)
    assert resp.command_status == 0
    assert resp.system_id == "test-smsc"
    assert resp.tlv(Tag.SC_INTERFACE_VERSION) == 0x34
    stats = run.sim.stats
    assert (stats.binds, stats.sessions, stats.connections) == (1, 1, 1)


async def test_bind_with_an_old_interface_version_gets_no_sc_interface_version(nursery):
    run = await serve(nursery)
    esme = await run.esme()
    resp = await esme.request(
        BindTransceiver(sequence_number=1, system_id="old", interface_version=0x33)
    )
    assert resp.command_status == 0
    assert resp.optional_parameters == ()


@pytest.mark.parametrize(
    ("system_id", "password", "status"),
    [
        ("alice", "secret", 0),
        ("alice", "wrong", S.ESME_RINVPASWD),
        ("mallory", "secret", S.ESME_RINVSYSID),
        ("bob", "", 0),
    ],
)
async def test_accounts_are_checked(nursery, system_id, password, status):
    config = SimulatorConfig(accounts=[Account("alice", "secret"), "bob:"])
    run = await serve(nursery, config)
    esme = await run.esme()
    resp = await esme.bind(BindTransceiver, system_id, password)
    assert resp.command_status == status
    stats = run.sim.stats
    assert (stats.binds, stats.bind_failures) == ((1, 0) if status == 0 else (0, 1))


async def test_a_refused_bind_can_be_retried_on_the_same_connection(nursery):
    run = await serve(nursery, SimulatorConfig(accounts=["alice:secret"]))
    esme = await run.esme()
    assert (await esme.bind(BindTransceiver, "alice", "nope")).command_status == S.ESME_RINVPASWD
    assert (await esme.bind(BindTransceiver, "alice", "secret")).command_status == 0


async def test_requests_before_bind_are_refused_with_invalid_bind_status(nursery):
    run = await serve(nursery)
    esme = await run.esme()
    resp = await esme.request(submit(esme.seq()))
    assert isinstance(resp, SubmitSmResp)
    assert resp.command_status == S.ESME_RINVBNDSTS
    resp = await esme.request(EnquireLink(sequence_number=esme.seq()))
    assert resp.command_status == S.ESME_RINVBNDSTS
    # the connection is still usable
    assert (await esme.bind()).command_status == 0
    assert run.sim.stats.invalid_pdus == 2


async def test_a_second_bind_is_answered_already_bound(nursery):
    run = await serve(nursery)
    esme = await run.bound(BindTransmitter)
    resp = await esme.bind(BindReceiver)
    assert isinstance(resp, BindReceiverResp)
    assert resp.command_status == S.ESME_RALYBND


async def test_a_receiver_may_not_submit(nursery):
    run = await serve(nursery)
    esme = await run.bound(BindReceiver)
    resp = await esme.request(submit(esme.seq()))
    assert resp.command_status == S.ESME_RINVBNDSTS
    assert run.sim.stats.submits_accepted == 0


async def test_pdus_only_an_smsc_issues_are_refused_as_invalid_commands(nursery):
    run = await serve(nursery)
    esme = await run.bound(BindTransceiver)
    # smpp_codec.session answers a command the SMSC never takes like an unknown one.
    seq = esme.seq()
    await esme.send(DeliverSm(sequence_number=seq, short_message=b"x"))
    nack = await esme.recv()
    assert isinstance(nack, GenericNack)
    assert (nack.sequence_number, nack.command_status) == (seq, S.ESME_RINVCMDID)
    await esme.send(AlertNotification(sequence_number=77, source_addr="1", esme_addr="2"))
    nack = await esme.recv()
    assert isinstance(nack, GenericNack)
    assert (nack.sequence_number, nack.command_status) == (77, S.ESME_RINVCMDID)
    await esme.send(Outbind(sequence_number=78, system_id="x"))
    nack = await esme.recv()
    assert isinstance(nack, GenericNack)
    assert nack.sequence_number == 78


async def test_enquire_link_is_answered_in_every_bound_state(nursery):
    run = await serve(nursery)
    for cls in (BindTransmitter, BindReceiver, BindTransceiver):
        esme = await run.bound(cls)
        seq = esme.seq()
        resp = await esme.request(EnquireLink(sequence_number=seq))
        assert isinstance(resp, EnquireLinkResp)
        assert (resp.sequence_number, resp.command_status) == (seq, 0)


async def test_unbind_is_answered_then_the_connection_closed(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    seq = esme.seq()
    resp = await esme.request(Unbind(sequence_number=seq))
    assert isinstance(resp, UnbindResp)
    assert (resp.sequence_number, resp.command_status) == (seq, 0)
    assert await esme.until_closed() == []
    with trio.fail_after(5):
        while run.sim.stats.sessions:
            await trio.sleep(0.01)
    assert run.sim.stats.pdus_received["unbind"] == 1


async def test_an_unknown_command_is_nacked_and_the_link_kept(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    await esme.send_raw(struct.pack(">IIII", 16, 0x00000042, 0, 9))
    nack = await esme.recv()
    assert isinstance(nack, GenericNack)
    assert (nack.sequence_number, nack.command_status) == (9, S.ESME_RINVCMDID)
    resp = await esme.request(submit(esme.seq()))
    assert resp.command_status == 0


async def test_a_malformed_body_is_answered_with_its_response_and_the_fields_status(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    good = encode(submit(50, source_addr=""))
    # A source_addr of 30 characters where SMPP allows 20.
    body = good[16:19] + b"A" * 30 + good[19:]
    bad = struct.pack(">IIII", 16 + len(body), 0x00000004, 0, 50) + body
    await esme.send_raw(bad)
    resp = await esme.recv()
    assert isinstance(resp, SubmitSmResp)
    assert resp.sequence_number == 50
    assert resp.command_status == S.ESME_RINVSRCADR
    assert (await esme.request(submit(esme.seq()))).command_status == 0
    assert run.sim.stats.invalid_pdus == 1


async def test_a_bad_command_length_is_nacked_and_the_connection_closed(nursery):
    run = await serve(nursery)
    esme = await run.bound()
    await esme.send_raw(struct.pack(">IIII", 8, 0x00000004, 0, 3))
    nack = await esme.recv()
    assert isinstance(nack, GenericNack)
    assert nack.command_status == S.ESME_RINVCMDLEN
    assert await esme.until_closed() == []


async def test_a_generic_nack_matching_nothing_is_counted_not_answered(nursery, autojump_clock):
    run = await serve(nursery)
    esme = await run.bound()
    await esme.send(GenericNack(sequence_number=12345, command_status=S.ESME_RINVCMDID))
    await esme.recv_nothing(30)
    assert run.sim.stats.unexpected_responses == 1
    assert (await esme.request(EnquireLink(sequence_number=esme.seq()))).command_status == 0


async def test_pipelined_requests_in_one_write_are_all_answered_in_order(nursery):
    run = await serve(nursery)
    esme = await run.bound(BindTransmitter)
    pdus = [submit(100 + i) for i in range(50)]
    await esme.send_raw(b"".join(encode(p) for p in pdus))
    seen = [await esme.recv() for _ in pdus]
    assert [p.sequence_number for p in seen] == [p.sequence_number for p in pdus]
    assert all(p.command_status == 0 for p in seen)
    stats = run.sim.stats
    assert stats.pdus_received["submit_sm"] == 50
    assert stats.pdus_sent["submit_sm_resp"] == 50


async def test_the_bind_timeout_closes_idle_unbound_connections(nursery, autojump_clock):
    run = await serve(nursery, SimulatorConfig(bind_timeout=5))
    esme = await run.esme()
    start = trio.current_time()
    with pytest.raises(Closed):
        await esme.recv(timeout=60)
    assert trio.current_time() - start == pytest.approx(5)


async def test_the_idle_timeout_closes_silent_connections(nursery, autojump_clock):
    run = await serve(nursery, SimulatorConfig(idle_timeout="3s"))
    esme = await run.bound()
    await trio.sleep(2)
    assert (await esme.request(EnquireLink(sequence_number=esme.seq()))).command_status == 0
    start = trio.current_time()
    with pytest.raises(Closed):
        await esme.recv(timeout=60)
    assert trio.current_time() - start == pytest.approx(3)


async def test_its_own_enquire_link_is_sent_and_a_silent_esme_dropped(nursery, autojump_clock):
    config = SimulatorConfig(enquire_link_interval=30, response_timeout=5)
    run = await serve(nursery, config)
    esme = await run.bound()
    start = trio.current_time()
    probe = await esme.recv(timeout=60)
    assert isinstance(probe, EnquireLink)
    assert trio.current_time() - start == pytest.approx(30)
    await esme.ack(probe)
    second = await esme.recv(timeout=60)
    assert isinstance(second, EnquireLink)
    assert second.sequence_number != probe.sequence_number
    # not answered: the link is declared dead after response_timeout
    before = trio.current_time()
    with pytest.raises(Closed):
        await esme.recv(timeout=60)
    assert trio.current_time() - before == pytest.approx(5)
    assert run.sim.stats.faults["dead_link"] == 1


# --- max_binds: sessions per system_id ------------------------------------------------------


async def wait_for_bound(run: Running, system_id: str, count: int) -> None:
    """Poll (bounded) until the simulator counts ``count`` sessions bound for ``system_id``."""
    with trio.fail_after(5):
        while run.sim.stats.sessions_by_account.get(system_id, 0) != count:
            await trio.sleep(0.01)


async def test_max_binds_refuses_the_bind_beyond_the_limit(nursery):
    run = await serve(nursery, SimulatorConfig(max_binds=2))
    bound = [await run.bound(BindTransmitter, "alice"), await run.bound(BindReceiver, "alice")]
    third = await run.esme()
    resp = await third.bind(BindTransceiver, "alice")
    assert isinstance(resp, BindTransceiverResp)
    assert resp.command_status == S.ESME_RBINDFAIL
    stats = run.sim.stats
    assert (stats.binds, stats.bind_failures, stats.binds_over_limit) == (2, 1, 1)
    assert stats.sessions == 2
    assert stats.sessions_by_account == {"alice": 2}
    assert stats.peak_sessions == {"alice": 2}
    # the refused connection may still send requests: they need a bind
    assert (await third.request(EnquireLink(sequence_number=third.seq()))).command_status == (
        S.ESME_RINVBNDSTS
    )
    assert len(bound) == 2  # kept open (and referenced) until here


async def test_max_binds_counts_each_system_id_separately(nursery):
    run = await serve(nursery, SimulatorConfig(max_binds=2))
    alice = [await run.bound(system_id="alice"), await run.bound(system_id="alice")]
    refused = await run.esme()
    assert (await refused.bind(system_id="alice")).command_status == S.ESME_RBINDFAIL
    bob = [await run.bound(system_id="bob"), await run.bound(system_id="bob")]
    stats = run.sim.stats
    assert stats.sessions_by_account == {"alice": 2, "bob": 2}
    assert stats.peak_sessions == {"alice": 2, "bob": 2}
    assert (stats.binds, stats.binds_over_limit) == (4, 1)
    assert len(alice + bob) == 4  # all kept open until here


async def test_an_unbound_session_frees_its_place(nursery):
    run = await serve(nursery, SimulatorConfig(max_binds=2))
    first, second = await run.bound(system_id="alice"), await run.bound(system_id="alice")
    refused = await run.esme()
    assert (await refused.bind(system_id="alice")).command_status == S.ESME_RBINDFAIL
    assert (await first.request(Unbind(sequence_number=first.seq()))).command_status == 0
    assert await first.until_closed() == []
    await wait_for_bound(run, "alice", 1)
    # A refused bind may be retried on its connection: now there is room.
    assert (await refused.bind(system_id="alice")).command_status == 0
    late = await run.esme()
    assert (await late.bind(system_id="alice")).command_status == S.ESME_RBINDFAIL
    stats = run.sim.stats
    assert (stats.binds, stats.bind_failures, stats.binds_over_limit) == (3, 2, 2)
    assert stats.sessions_by_account == {"alice": 2}
    assert stats.peak_sessions == {"alice": 2}
    assert (await second.request(EnquireLink(sequence_number=second.seq()))).command_status == 0


async def test_a_session_closed_without_unbind_frees_its_place(nursery):
    run = await serve(nursery, SimulatorConfig(max_binds=2))
    first, second = await run.bound(system_id="alice"), await run.bound(system_id="alice")
    refused = await run.esme()
    assert (await refused.bind(system_id="alice")).command_status == S.ESME_RBINDFAIL
    await first.aclose()  # no unbind: the TCP stream just ends
    await wait_for_bound(run, "alice", 1)
    again = await run.esme()
    assert (await again.bind(system_id="alice")).command_status == 0
    stats = run.sim.stats
    assert stats.sessions_by_account == {"alice": 2}
    assert (stats.binds, stats.binds_over_limit) == (3, 1)
    assert (await second.request(EnquireLink(sequence_number=second.seq()))).command_status == 0


async def test_a_session_dropped_by_a_fault_frees_its_place_once(nursery):
    config = SimulatorConfig(max_binds=1, faults=Faults(disconnect_after_pdus=2))
    run = await serve(nursery, config)
    esme = await run.bound(system_id="alice")
    await esme.send(EnquireLink(sequence_number=esme.seq()))  # its 2nd PDU: dropped
    assert await esme.until_closed() == []
    await wait_for_bound(run, "alice", 0)
    assert run.sim.stats.sessions == 0
    again = await run.esme()
    assert (await again.bind(system_id="alice")).command_status == 0
    stats = run.sim.stats
    assert (stats.sessions, stats.sessions_by_account) == (1, {"alice": 1})
    assert stats.binds_over_limit == 0


async def test_without_max_binds_peak_sessions_still_counts(nursery):
    run = await serve(nursery)
    alice = [await run.bound(system_id="alice") for _ in range(3)]
    bob = await run.bound(system_id="bob")
    for esme in alice[:2]:
        await esme.aclose()
    await wait_for_bound(run, "alice", 1)
    stats = run.sim.stats
    assert (stats.binds, stats.bind_failures, stats.binds_over_limit) == (4, 0, 0)
    assert stats.peak_sessions == {"alice": 3, "bob": 1}
    assert stats.sessions_by_account == {"alice": 1, "bob": 1}
    assert (await bob.request(EnquireLink(sequence_number=bob.seq()))).command_status == 0


# -- stopping -------------------------------------------------------------------------------


async def test_stop_unbinds_every_session_and_refuses_new_connections(nursery):
    run = await serve(nursery)
    transceiver = await run.bound()
    receiver = await run.bound(BindReceiver)
    unbound = await run.esme()  # connected, never bound: closed at once
    stopped: list[bool] = []

    async def stop() -> None:
        stopped.append(await run.sim.stop(grace=5))

    nursery.start_soon(stop)
    for esme in (transceiver, receiver):
        unbind = await esme.next()
        assert isinstance(unbind, Unbind)
        await esme.ack(unbind)
        assert await esme.until_closed() == []
    assert await unbound.until_closed() == []
    with trio.fail_after(5):
        while not stopped:
            await trio.sleep(0.01)
    assert stopped == [True]
    late = await run.esme()
    with pytest.raises(Closed):
        await late.bind()
    stats = run.sim.stats
    assert stats.sessions == 0
    assert (stats.pdus_sent["unbind"], stats.pdus_received["unbind_resp"]) == (2, 2)


async def test_stop_closes_a_session_whose_unbind_goes_unanswered(nursery, autojump_clock):
    run = await serve(nursery, SimulatorConfig(seed=1, response_timeout=10))
    esme = await run.bound()
    start = trio.current_time()
    assert await run.sim.stop(grace=5) is False  # still waiting for the answer
    assert isinstance(await esme.next(), Unbind)
    assert await esme.until_closed(timeout=30) == []  # never answered: closed after 10 s
    assert trio.current_time() - start == pytest.approx(10, abs=0.1)
    assert run.sim.stats.sessions == 0
