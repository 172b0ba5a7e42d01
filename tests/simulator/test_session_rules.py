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
from smsgw.simulator import Account, SimulatorConfig

from .esme import Closed, serve

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
