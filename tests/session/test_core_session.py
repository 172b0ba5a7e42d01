"""The sans-IO session: two cores talking to each other, the error model, the window, timers."""

from __future__ import annotations

import struct

import pytest

from smpp_codec import (
    AlertNotification,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    CommandId,
    CommandStatus,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    GenericNack,
    QuerySm,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    encode,
)
from smpp_codec.session import (
    NEED_DATA,
    BindState,
    ConnectionClosed,
    InvalidInput,
    LocalProtocolError,
    NotificationReceived,
    RequestReceived,
    ResponseReceived,
    Role,
    SequenceAllocator,
    Session,
    UnexpectedResponse,
    WindowFull,
)

S = CommandStatus
BIND = BindTransceiver(sequence_number=0, system_id="esme", password="pw")


def events(session: Session) -> list[object]:
    out = []
    while (event := session.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def bound_pair(window: int = 10) -> tuple[Session, Session]:
    """An ESME and an SMSC core, bound as transceiver through each other's bytes."""
    esme, smsc = Session(Role.ESME, window=window), Session(Role.SMSC)
    data, _ = esme.send_request(BIND, now=0.0, timeout=5.0)
    smsc.receive_data(data)
    [request] = events(smsc)
    assert isinstance(request, RequestReceived)
    assert smsc.state is BindState.OPEN  # not bound until the answer leaves
    esme.receive_data(smsc.send(request.pdu.response(system_id="smsc")))
    assert smsc.state is BindState.BOUND_TRX
    [answer] = events(esme)
    assert isinstance(answer, ResponseReceived)
    assert esme.state is BindState.BOUND_TRX
    return esme, smsc


def submit(n: int = 0) -> SubmitSm:
    return SubmitSm(sequence_number=0, destination_addr=f"4670{n:06d}", short_message=b"hi")


def test_bind_refused_leaves_both_open() -> None:
    esme, smsc = Session(Role.ESME), Session(Role.SMSC)
    data, _ = esme.send_request(BindTransmitter(sequence_number=0, system_id="x"), now=0)
    smsc.receive_data(data)
    [request] = events(smsc)
    esme.receive_data(smsc.send(request.pdu.response(S.ESME_RINVPASWD)))
    [answer] = events(esme)
    assert isinstance(answer, ResponseReceived)
    assert answer.response.command_status == S.ESME_RINVPASWD
    assert esme.state is smsc.state is BindState.OPEN


def test_submit_and_response_round_trip() -> None:
    esme, smsc = bound_pair()
    data, item = esme.send_request(submit(), now=1.0, timeout=2.0, token="t")
    assert item.sequence_number == 2  # the bind took 1
    assert item.deadline == 3.0 and item.token == "t"
    smsc.receive_data(data)
    [request] = events(smsc)
    assert isinstance(request.pdu, SubmitSm)
    esme.receive_data(smsc.send(request.pdu.response(message_id="abc")))
    [answer] = events(esme)
    assert isinstance(answer, ResponseReceived)
    assert answer.outstanding is item
    assert answer.response == SubmitSmResp(sequence_number=2, message_id="abc")
    assert len(esme.window) == 0


def test_responses_in_any_order_complete_their_own_requests() -> None:
    esme, _smsc = bound_pair()
    items = [esme.send_request(submit(i), now=0, timeout=9)[1] for i in range(5)]
    wire = b"".join(
        encode(SubmitSmResp(sequence_number=it.sequence_number, message_id=str(i)))
        for i, it in reversed(list(enumerate(items)))
    )
    esme.receive_data(wire)
    got = events(esme)
    assert [e.outstanding for e in got] == list(reversed(items))
    assert [e.response.message_id for e in got] == ["4", "3", "2", "1", "0"]


def test_input_in_any_chunking_gives_the_same_events() -> None:
    esme, _ = bound_pair()
    items = [esme.send_request(submit(i), now=0)[1] for i in range(3)]
    wire = b"".join(
        encode(SubmitSmResp(sequence_number=it.sequence_number, message_id="m")) for it in items
    )
    for byte in wire:
        esme.receive_data(bytes([byte]))
    assert [e.outstanding for e in events(esme)] == items


def test_generic_nack_completes_the_request() -> None:
    esme, _ = bound_pair()
    _, item = esme.send_request(submit(), now=0)
    esme.receive_data(
        encode(GenericNack(sequence_number=item.sequence_number, command_status=S.ESME_RSYSERR))
    )
    [answer] = events(esme)
    assert isinstance(answer, ResponseReceived) and isinstance(answer.response, GenericNack)


def test_unknown_or_mismatched_response_is_unexpected_and_keeps_the_request() -> None:
    esme, _ = bound_pair()
    _, item = esme.send_request(submit(), now=0)
    esme.receive_data(encode(SubmitSmResp(sequence_number=999, message_id="x")))
    esme.receive_data(encode(DeliverSmResp(sequence_number=item.sequence_number)))
    got = events(esme)
    assert [type(e) for e in got] == [UnexpectedResponse, UnexpectedResponse]
    assert "999" in got[0].reason
    assert item.sequence_number in esme.window


def test_window_capacity_counts_application_requests_only() -> None:
    esme, _ = bound_pair(window=2)
    esme.send_request(submit(1), now=0)
    esme.send_request(submit(2), now=0)
    with pytest.raises(WindowFull):
        esme.send_request(submit(3), now=0)
    # The heartbeat still goes out on a full window.
    _, probe = esme.send_request(EnquireLink(sequence_number=0), now=0)
    assert not probe.windowed
    assert esme.window.in_use == 2 and len(esme.window) == 3


def test_sequence_numbers_skip_those_still_outstanding_after_a_wrap() -> None:
    esme = Session(Role.ESME, sequence=SequenceAllocator(0x7FFFFFFF))
    _, first = esme.send_request(BIND, now=0)
    assert first.sequence_number == 0x7FFFFFFF
    esme.receive_data(encode(BindTransceiverResp(sequence_number=0x7FFFFFFF)))
    events(esme)
    _, a = esme.send_request(submit(), now=0)  # 1
    esme.sequence = SequenceAllocator(1)  # as if the counter had gone all the way round
    _, b = esme.send_request(submit(), now=0)
    assert (a.sequence_number, b.sequence_number) == (1, 2)


def test_timers_expire_in_deadline_order_with_now_passed_in() -> None:
    esme, _ = bound_pair()
    _, slow = esme.send_request(submit(1), now=0, timeout=10)
    _, fast = esme.send_request(submit(2), now=0, timeout=3)
    _, forever = esme.send_request(submit(3), now=0, timeout=None)
    assert esme.next_deadline() == 3
    assert esme.handle_timeout(2.9) == []
    assert esme.handle_timeout(3.0) == [fast]
    assert esme.next_deadline() == 10
    # A request answered before its deadline never expires.
    esme.receive_data(encode(SubmitSmResp(sequence_number=slow.sequence_number)))
    events(esme)
    assert esme.next_deadline() is None
    assert esme.handle_timeout(100) == []
    assert esme.window.items() == [forever]


def test_many_answered_requests_do_not_grow_the_timer_heap_forever() -> None:
    esme, _ = bound_pair(window=1)
    for _ in range(1000):
        _, item = esme.send_request(submit(), now=0, timeout=5)
        esme.receive_data(encode(SubmitSmResp(sequence_number=item.sequence_number)))
        events(esme)
    assert len(esme.window._deadlines) < 100


def test_peer_requests_and_notifications() -> None:
    esme, smsc = bound_pair()
    data, _ = smsc.send_request(DeliverSm(sequence_number=0, short_message=b"mo"), now=0, timeout=5)
    esme.receive_data(data)
    esme.receive_data(encode(AlertNotification(sequence_number=7, source_addr="1")))
    deliver, alert = events(esme)
    assert isinstance(deliver, RequestReceived) and deliver.pdu.short_message == b"mo"
    assert isinstance(alert, NotificationReceived)
    smsc.receive_data(esme.send(deliver.pdu.response()))
    [answer] = events(smsc)
    assert isinstance(answer, ResponseReceived)


def test_unbind_from_the_peer_closes_both_sides() -> None:
    esme, smsc = bound_pair()
    data, _ = smsc.send_request(Unbind(sequence_number=0), now=0)
    assert smsc.unbinding
    with pytest.raises(LocalProtocolError, match="after unbind"):
        smsc.send_request(DeliverSm(sequence_number=0), now=0)
    esme.receive_data(data)
    [request] = events(esme)
    assert isinstance(request.pdu, Unbind) and esme.peer_unbinding
    smsc.receive_data(esme.send(request.pdu.response()))
    assert esme.state is BindState.CLOSED
    events(smsc)
    assert smsc.state is BindState.CLOSED


def test_local_mistakes_raise() -> None:
    esme = Session(Role.ESME)
    with pytest.raises(LocalProtocolError, match="OPEN"):
        esme.send_request(submit(), now=0)
    with pytest.raises(LocalProtocolError, match="use send_request"):
        esme.send(EnquireLink(sequence_number=1))
    smsc = Session(Role.SMSC)
    with pytest.raises(LocalProtocolError):
        smsc.send_request(BIND, now=0)


def test_end_of_stream_reports_closed_once_and_close_returns_outstanding() -> None:
    esme, _ = bound_pair()
    _, item = esme.send_request(submit(), now=0, timeout=5)
    esme.receive_data(b"\x00\x00")
    esme.receive_data(b"")
    [closed] = events(esme)
    assert closed == ConnectionClosed(partial=2)
    assert esme.state is BindState.CLOSED
    assert events(esme) == []
    assert esme.close() == [item]
    assert esme.close() == []


# --- the error model: one test per row of the table in the module docstring ---------------------


def test_bad_command_length_is_fatal_and_nacked() -> None:
    esme, _ = bound_pair()
    esme.receive_data(struct.pack(">IIII", 8, 4, 0, 42))
    [bad] = events(esme)
    assert isinstance(bad, InvalidInput) and bad.fatal
    assert bad.reply == GenericNack(sequence_number=42, command_status=S.ESME_RINVCMDLEN)
    assert esme.state is BindState.CLOSED
    assert events(esme) == []


def test_unknown_command_is_nacked_and_the_link_goes_on() -> None:
    esme, _ = bound_pair()
    esme.receive_data(struct.pack(">IIII", 16, 0x99, 0, 5) + encode(EnquireLink(sequence_number=6)))
    bad, nxt = events(esme)
    assert isinstance(bad, InvalidInput) and not bad.fatal
    assert bad.reply == GenericNack(sequence_number=5, command_status=S.ESME_RINVCMDID)
    assert isinstance(nxt, RequestReceived) and nxt.pdu.sequence_number == 6


def test_malformed_request_is_answered_with_its_own_response() -> None:
    esme, _smsc = bound_pair()
    good = encode(DeliverSm(sequence_number=9, source_addr="123"))
    # Drop the NUL of source_addr's C-string region by corrupting the body to run past 21 octets.
    body = good[16:]
    bad_body = body[:1] + b"\x00\x00" + b"7" * 30 + b"\x00" + body[1 + 2 + 4 :]
    bad = struct.pack(">IIII", 16 + len(bad_body), CommandId.DELIVER_SM, 0, 9) + bad_body
    esme.receive_data(bad)
    [event] = events(esme)
    assert isinstance(event, InvalidInput) and not event.fatal
    assert isinstance(event.reply, DeliverSmResp)
    assert event.reply.sequence_number == 9
    assert event.reply.command_status == S.ESME_RINVSRCADR


def test_malformed_response_fails_its_request_and_is_not_answered() -> None:
    esme, _ = bound_pair()
    _, item = esme.send_request(submit(), now=0, timeout=5)
    # submit_sm_resp whose message_id has no terminating NUL.
    body = b"x" * 5
    esme.receive_data(
        struct.pack(">IIII", 16 + len(body), CommandId.SUBMIT_SM_RESP, 0, item.sequence_number)
        + body
    )
    [event] = events(esme)
    assert isinstance(event, InvalidInput)
    assert event.reply is None and not event.fatal
    assert event.outstanding is item
    assert len(esme.window) == 0


@pytest.mark.parametrize(
    ("pdu", "status", "reply_type"),
    [
        (SubmitSm(sequence_number=3), S.ESME_RINVBNDSTS, "SubmitSmResp"),
        (BindTransmitter(sequence_number=3), S.ESME_RALYBND, "BindTransmitterResp"),
        (DeliverSm(sequence_number=3), S.ESME_RINVCMDID, "GenericNack"),
    ],
)
def test_smsc_refuses_what_the_bind_state_forbids(
    pdu: object, status: int, reply_type: str
) -> None:
    smsc = Session(Role.SMSC)
    # Bind it as a receiver first.
    from smpp_codec import BindReceiver

    smsc.receive_data(encode(BindReceiver(sequence_number=1, system_id="r")))
    [bind] = events(smsc)
    smsc.send(bind.pdu.response())
    assert smsc.state is BindState.BOUND_RX
    smsc.receive_data(encode(pdu))  # type: ignore[arg-type]
    [event] = events(smsc)
    assert isinstance(event, InvalidInput) and not event.fatal
    assert event.command_status == status
    assert type(event.reply).__name__ == reply_type
    assert event.reply.command_status == status


def test_a_query_sm_from_the_smsc_is_refused_by_the_esme() -> None:
    esme, _ = bound_pair()
    esme.receive_data(encode(QuerySm(sequence_number=4)))
    [event] = events(esme)
    assert isinstance(event, InvalidInput)
    assert event.reply.command_status == S.ESME_RINVCMDID


def test_unbind_resp_with_an_error_still_closes() -> None:
    esme, _ = bound_pair()
    _, item = esme.send_request(Unbind(sequence_number=0), now=0)
    esme.receive_data(
        encode(UnbindResp(sequence_number=item.sequence_number, command_status=S.ESME_RSYSERR))
    )
    events(esme)
    assert esme.state is BindState.CLOSED


def test_the_sequence_number_is_written_into_the_bytes_and_the_request() -> None:
    from smpp_codec import decode

    esme, _ = bound_pair()
    pdu = submit(3)
    data, item = esme.send_request(pdu, now=0)
    wire = decode(data)
    assert wire.sequence_number == item.sequence_number == item.request.sequence_number == 2
    assert wire == item.request
    assert item.pdu is pdu and pdu.sequence_number == 0  # the caller's PDU is left alone
