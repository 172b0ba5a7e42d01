"""The bind-state rules of SMPP 3.4 sections 2.2-2.4, the transition table, sequence numbers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp_codec import CommandId, CommandStatus
from smpp_codec.session import (
    MAX_SEQUENCE,
    BindState,
    Role,
    SequenceAllocator,
    bind_state_error,
    may_receive,
    may_send,
)

C = CommandId
S = CommandStatus
E, M = Role.ESME, Role.SMSC
OPEN, TX, RX, TRX, CLOSED = (
    BindState.OPEN,
    BindState.BOUND_TX,
    BindState.BOUND_RX,
    BindState.BOUND_TRX,
    BindState.CLOSED,
)

# (command, issuer, states where the issuer may send it): written out by hand from table 2-1, so
# a change in the table in session.py has to agree with a second, independent statement of it.
SPEC = [
    (C.BIND_TRANSMITTER, E, {OPEN}),
    (C.BIND_TRANSMITTER_RESP, M, {OPEN}),
    (C.BIND_RECEIVER, E, {OPEN}),
    (C.BIND_RECEIVER_RESP, M, {OPEN}),
    (C.BIND_TRANSCEIVER, E, {OPEN}),
    (C.BIND_TRANSCEIVER_RESP, M, {OPEN}),
    (C.OUTBIND, M, {OPEN}),
    (C.SUBMIT_SM, E, {TX, TRX}),
    (C.SUBMIT_SM_RESP, M, {TX, TRX}),
    (C.SUBMIT_MULTI, E, {TX, TRX}),
    (C.SUBMIT_MULTI_RESP, M, {TX, TRX}),
    (C.QUERY_SM, E, {TX, TRX}),
    (C.QUERY_SM_RESP, M, {TX, TRX}),
    (C.CANCEL_SM, E, {TX, TRX}),
    (C.CANCEL_SM_RESP, M, {TX, TRX}),
    (C.REPLACE_SM, E, {TX, TRX}),
    (C.REPLACE_SM_RESP, M, {TX, TRX}),
    (C.DELIVER_SM, M, {RX, TRX}),
    (C.DELIVER_SM_RESP, E, {RX, TRX}),
    (C.ALERT_NOTIFICATION, M, {RX, TRX}),
    (C.DATA_SM, E, {TX, TRX}),
    (C.DATA_SM, M, {RX, TRX}),
    (C.DATA_SM_RESP, M, {TX, TRX}),
    (C.DATA_SM_RESP, E, {RX, TRX}),
    (C.UNBIND, E, {TX, RX, TRX}),
    (C.UNBIND, M, {TX, RX, TRX}),
    (C.UNBIND_RESP, E, {TX, RX, TRX}),
    (C.UNBIND_RESP, M, {TX, RX, TRX}),
    (C.ENQUIRE_LINK, E, {TX, RX, TRX}),
    (C.ENQUIRE_LINK, M, {TX, RX, TRX}),
    (C.ENQUIRE_LINK_RESP, E, {TX, RX, TRX}),
    (C.ENQUIRE_LINK_RESP, M, {TX, RX, TRX}),
    (C.GENERIC_NACK, E, {OPEN, TX, RX, TRX}),
    (C.GENERIC_NACK, M, {OPEN, TX, RX, TRX}),
]


def _allowed(command: int, issuer: Role) -> set[BindState]:
    states: set[BindState] = set()
    for cid, who, where in SPEC:
        if cid == command and who is issuer:
            states |= where
    return states


@pytest.mark.parametrize("command", sorted(set(CommandId)))
@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("state", list(BindState))
def test_send_and_receive_follow_table_2_1(command: int, role: Role, state: BindState) -> None:
    other = Role.SMSC if role is Role.ESME else Role.ESME
    assert may_send(role, state, command) == (state in _allowed(command, role))
    # What one side may send is exactly what the other may receive.
    assert may_receive(other, state, command) == may_send(role, state, command)


@pytest.mark.parametrize(
    ("role", "state", "command", "status"),
    [
        (M, RX, C.SUBMIT_SM, S.ESME_RINVBNDSTS),
        (M, OPEN, C.SUBMIT_SM, S.ESME_RINVBNDSTS),
        (M, TX, C.SUBMIT_SM, None),
        (M, TRX, C.BIND_TRANSCEIVER, S.ESME_RALYBND),
        (M, TX, C.BIND_RECEIVER, S.ESME_RALYBND),
        (M, OPEN, C.BIND_TRANSMITTER, None),
        (M, OPEN, C.ENQUIRE_LINK, S.ESME_RINVBNDSTS),
        (M, RX, C.ENQUIRE_LINK, None),
        (M, RX, C.UNBIND, None),
        (M, TX, C.DATA_SM, None),
        (M, RX, C.DATA_SM, S.ESME_RINVBNDSTS),
        (M, TRX, C.DELIVER_SM, S.ESME_RINVCMDID),  # only an SMSC sends deliver_sm
        (M, TRX, C.OUTBIND, S.ESME_RINVCMDID),
        (M, TRX, 0x00000099, S.ESME_RINVCMDID),  # no such command
        (M, TRX, C.SUBMIT_SM_RESP, None),  # responses are never answered
        (E, TX, C.DELIVER_SM, S.ESME_RINVBNDSTS),
        (E, TRX, C.DELIVER_SM, None),
        (E, RX, C.ALERT_NOTIFICATION, None),
        (E, TRX, C.SUBMIT_SM, S.ESME_RINVCMDID),
        (E, OPEN, C.OUTBIND, None),
        (E, CLOSED, C.ENQUIRE_LINK, S.ESME_RINVBNDSTS),
    ],
)
def test_bind_state_error(role: Role, state: BindState, command: int, status: int | None) -> None:
    assert bind_state_error(role, state, command) == status


def test_sequence_numbers_start_at_one_and_wrap_to_one() -> None:
    seq = SequenceAllocator()
    assert [seq.next() for _ in range(3)] == [1, 2, 3]
    near_end = SequenceAllocator(MAX_SEQUENCE - 1)
    assert [near_end.next() for _ in range(4)] == [MAX_SEQUENCE - 1, MAX_SEQUENCE, 1, 2]


@pytest.mark.parametrize("start", [0, -1, MAX_SEQUENCE + 1])
def test_sequence_start_out_of_range_is_refused(start: int) -> None:
    with pytest.raises(ValueError, match="start"):
        SequenceAllocator(start)


@given(st.integers(1, MAX_SEQUENCE), st.integers(1, 300))
def test_sequence_numbers_stay_in_range_and_never_zero(start: int, n: int) -> None:
    seq = SequenceAllocator(start)
    taken = [seq.next() for _ in range(n)]
    assert all(1 <= s <= MAX_SEQUENCE for s in taken)
    # Consecutive numbers differ by one, except at the wrap.
    for a, b in itertools.pairwise(taken):
        assert b == a + 1 or (a == MAX_SEQUENCE and b == 1)
