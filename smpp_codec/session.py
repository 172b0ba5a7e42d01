"""A sans-IO SMPP 3.4 session: bind state, sequence numbers, the window, timers, the error model.

Bytes in, events out, as h11 does it::

    session = Session(Role.ESME, window=100)
    out, bind = session.send_request(BindTransceiver(sequence_number=0, ...), now=now, timeout=10)
    sock.sendall(out)
    session.receive_data(sock.recv(65536))          # b"" at end of stream
    while (event := session.next_event()) is not NEED_DATA:
        ...                                         # ResponseReceived, RequestReceived, ...
    expired = session.handle_timeout(now)           # when now >= session.next_deadline()

Nothing here reads a clock: every time is a number the caller passes in (``now``), and the
session only says when it next needs to be woken (:meth:`Session.next_deadline`). Both roles use
the same class: an ESME (client) and an SMSC (server, e.g. a simulator).

Bind state rules (SMPP 3.4 sections 2.2-2.4) are a table, :data:`ISSUED_BY`: which side may issue
each request, in which states; a response travels the other way in the same states.
:func:`may_send`, :func:`may_receive` and :func:`bind_state_error` read it. State changes are a
second table, :data:`TRANSITIONS`, applied when a bind or unbind *response* crosses the wire
(sent by the SMSC, received by the ESME), so both ends change state on the same PDU.

The error model, for input from the peer (never raised: reported as :class:`InvalidInput` events,
each with the PDU to answer with, so the link survives whatever can be survived):

=====================================  ========================================  ===========
what arrived                           answer (``reply``)                        link
=====================================  ========================================  ===========
``command_length`` < 16 or too large   ``generic_nack`` / ``ESME_RINVCMDLEN``    fatal
unknown ``command_id``                 ``generic_nack`` / ``ESME_RINVCMDID``     kept
malformed body of a request            its ``*_resp`` with the field's status    kept
malformed body of a response           none (logged; its request fails)          kept
request not allowed in this state      its ``*_resp`` with ``ESME_RINVBNDSTS``   kept
  (bind while bound)                   its ``*_resp`` with ``ESME_RALYBND``
  (command only the other role sends)  ``generic_nack`` / ``ESME_RINVCMDID``
outbind / alert_notification refused   ``generic_nack`` with the status          kept
response matching no request           none (:class:`UnexpectedResponse`)        kept
=====================================  ========================================  ===========

Mistakes of the local side (sending what the state forbids, overfilling the window) raise
:class:`LocalProtocolError`: they are bugs in the caller, not events.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import struct
from typing import Final

import attrs

from .codec import encode, error_response
from .constants import RESPONSE_BIT, CommandId, CommandStatus
from .errors import DecodeError
from .framer import DEFAULT_MAX_COMMAND_LENGTH, NEED_DATA, Framer, NeedData
from .pdu import AlertNotification, GenericNack, Outbind, Pdu, Request, Response

C = CommandId
S = CommandStatus

#: Sequence numbers run 1..MAX_SEQUENCE (SMPP 3.4 section 3.2: 0x00000001 to 0x7FFFFFFF).
MAX_SEQUENCE: Final = 0x7FFFFFFF

_SEQ = struct.Struct(">I")


class Role(enum.Enum):
    """Which end of the link this session is."""

    ESME = "esme"
    SMSC = "smsc"


class BindState(enum.Enum):
    """The session states of SMPP 3.4 section 2.2."""

    OPEN = "open"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    CLOSED = "closed"


_OPEN = frozenset({BindState.OPEN})
_BOUND = frozenset({BindState.BOUND_TX, BindState.BOUND_RX, BindState.BOUND_TRX})
_TX = frozenset({BindState.BOUND_TX, BindState.BOUND_TRX})
_RX = frozenset({BindState.BOUND_RX, BindState.BOUND_TRX})
_ESME = frozenset({Role.ESME})
_SMSC = frozenset({Role.SMSC})
_BOTH = frozenset({Role.ESME, Role.SMSC})

#: command_id of a request (or of a PDU without response) -> (who may issue it, in which states).
#: The response of a request is issued by the other side, in the same states. This is SMPP 3.4
#: table 2-1 (section 2.3) read with the direction of each operation: submits and queries flow
#: ESME -> SMSC in a transmitter session, deliveries and alerts SMSC -> ESME in a receiver one;
#: data_sm flows both ways, each way in the session that carries that direction.
ISSUED_BY: Final[dict[int, tuple[frozenset[Role], frozenset[BindState]]]] = {
    C.BIND_TRANSMITTER: (_ESME, _OPEN),
    C.BIND_RECEIVER: (_ESME, _OPEN),
    C.BIND_TRANSCEIVER: (_ESME, _OPEN),
    C.OUTBIND: (_SMSC, _OPEN),
    C.UNBIND: (_BOTH, _BOUND),
    C.ENQUIRE_LINK: (_BOTH, _BOUND),
    C.SUBMIT_SM: (_ESME, _TX),
    C.SUBMIT_MULTI: (_ESME, _TX),
    C.QUERY_SM: (_ESME, _TX),
    C.CANCEL_SM: (_ESME, _TX),
    C.REPLACE_SM: (_ESME, _TX),
    C.DELIVER_SM: (_SMSC, _RX),
    C.ALERT_NOTIFICATION: (_SMSC, _RX),
}

#: data_sm travels ESME -> SMSC in TX/TRX sessions and SMSC -> ESME in RX/TRX sessions.
_DATA_SM_STATES: Final = {Role.ESME: _TX, Role.SMSC: _RX}

#: generic_nack may be sent by either side in any state but CLOSED: in OPEN too, because a
#: malformed bind can only be answered with one (section 2.3 lists bound states only; every real
#: SMSC nacks a garbled bind).
_NACK_STATES: Final = _OPEN | _BOUND

#: (state, command_id of a response) -> next state, applied when that response crosses the wire
#: (bind responses only when their command_status is ESME_ROK).
TRANSITIONS: Final[dict[tuple[BindState, int], BindState]] = {
    (BindState.OPEN, C.BIND_TRANSMITTER_RESP): BindState.BOUND_TX,
    (BindState.OPEN, C.BIND_RECEIVER_RESP): BindState.BOUND_RX,
    (BindState.OPEN, C.BIND_TRANSCEIVER_RESP): BindState.BOUND_TRX,
    **{(state, int(C.UNBIND_RESP)): BindState.CLOSED for state in _BOUND},
}

#: The responses that appear in TRANSITIONS.
_TRANSITION_IDS: Final = frozenset(cid for _, cid in TRANSITIONS)

_BIND_IDS: Final = frozenset({C.BIND_TRANSMITTER, C.BIND_RECEIVER, C.BIND_TRANSCEIVER})
#: Requests that are part of running the session rather than the application's traffic: they are
#: not counted in the window, so a window full of submits never blocks the heartbeat.
SESSION_REQUESTS: Final = _BIND_IDS | {C.ENQUIRE_LINK, C.UNBIND}


def _other(role: Role) -> Role:
    return Role.SMSC if role is Role.ESME else Role.ESME


def _issuable(issuer: Role, state: BindState, command_id: int) -> bool:
    """May ``issuer`` put this PDU on the wire in ``state``? (A set lookup: the rules below
    are expanded once, at import, for every defined command.)"""
    return (issuer, state, command_id) in _ISSUABLE


def _issuable_by_rule(issuer: Role, state: BindState, command_id: int) -> bool:
    if command_id == C.GENERIC_NACK:
        return state in _NACK_STATES
    if command_id & RESPONSE_BIT:
        request_id = command_id & ~RESPONSE_BIT
        if request_id == C.DATA_SM:
            return state in _DATA_SM_STATES[_other(issuer)]
        rule = ISSUED_BY.get(request_id)
        return rule is not None and _other(issuer) in rule[0] and state in rule[1]
    if command_id == C.DATA_SM:
        return state in _DATA_SM_STATES[issuer]
    rule = ISSUED_BY.get(command_id)
    return rule is not None and issuer in rule[0] and state in rule[1]


#: Every (issuer, state, command_id) that the rules allow.
_ISSUABLE: Final = frozenset(
    (issuer, state, int(cid))
    for issuer in Role
    for state in BindState
    for cid in CommandId
    if _issuable_by_rule(issuer, state, cid)
)


#: (issuer, state) -> the command ids it may send there.
_ISSUABLE_IDS: Final = {
    (issuer, state): frozenset(c for i, st, c in _ISSUABLE if i is issuer and st is state)
    for issuer in Role
    for state in BindState
}


def may_send(role: Role, state: BindState, command_id: int) -> bool:
    """Whether ``role`` may send a PDU with this ``command_id`` in bind state ``state``."""
    return _issuable(role, state, command_id)


def may_receive(role: Role, state: BindState, command_id: int) -> bool:
    """Whether ``role`` may accept a PDU with this ``command_id`` in bind state ``state``."""
    return _issuable(_other(role), state, command_id)


def bind_state_error(role: Role, state: BindState, command_id: int) -> int | None:
    """The ``command_status`` to answer a received PDU with, or None when it is acceptable.

    ``ESME_RALYBND`` for a bind while bound, ``ESME_RINVCMDID`` for a command the peer's role
    never issues (or that SMPP 3.4 does not define), ``ESME_RINVBNDSTS`` for one that is valid
    in another bind state. Responses are never answered: None for them too (the caller matches
    them against its window instead).
    """
    if command_id & RESPONSE_BIT or may_receive(role, state, command_id):
        return None
    if command_id in _BIND_IDS and state in _BOUND:
        return S.ESME_RALYBND
    if not any(may_receive(role, s, command_id) for s in BindState):
        return S.ESME_RINVCMDID
    return S.ESME_RINVBNDSTS


class SequenceAllocator:
    """Sequence numbers 1..0x7FFFFFFF, wrapping back to 1 (0 is never issued)."""

    __slots__ = ("_next",)

    def __init__(self, start: int = 1) -> None:
        if not 1 <= start <= MAX_SEQUENCE:
            raise ValueError(f"start must be in 1..{MAX_SEQUENCE}, got {start}")
        self._next = start

    def next(self) -> int:
        n = self._next
        self._next = 1 if n >= MAX_SEQUENCE else n + 1
        return n

    def peek(self) -> int:
        """The number :meth:`next` returns next, without taking it."""
        return self._next


# --- errors of the local side ------------------------------------------------------------------


class LocalProtocolError(Exception):
    """This side tried something SMPP forbids here: a bug in the caller, not a peer problem."""


class WindowFull(LocalProtocolError):
    """A request was sent while ``window`` application requests were already outstanding."""


# --- the window ----------------------------------------------------------------------------------


class Outstanding:
    """A request sent and not yet answered.

    ``deadline`` is an absolute time on the caller's clock (None: never times out); ``token`` is
    whatever the caller wants back when the request completes (a waiter, a message id...).
    The PDU is kept as the caller gave it (``pdu``, with its placeholder sequence number);
    :attr:`request` is it with the sequence number it went out with.
    """

    __slots__ = ("deadline", "pdu", "sent_at", "sequence_number", "token", "windowed")

    def __init__(
        self,
        pdu: Request,
        sequence_number: int,
        sent_at: float,
        deadline: float | None,
        windowed: bool,
        token: object = None,
    ) -> None:
        self.pdu = pdu
        self.sequence_number = sequence_number
        self.sent_at = sent_at
        self.deadline = deadline
        self.windowed = windowed
        self.token = token

    @property
    def request(self) -> Request:
        """The request as it went on the wire (built on demand: the hot path never needs it)."""
        if self.pdu.sequence_number == self.sequence_number:
            return self.pdu
        stamped: Request = attrs.evolve(self.pdu, sequence_number=self.sequence_number)
        return stamped

    @property
    def command_id(self) -> int:
        return self.pdu.command_id

    def __repr__(self) -> str:
        return (
            f"Outstanding({type(self.pdu).__name__} #{self.sequence_number}, "
            f"sent_at={self.sent_at}, deadline={self.deadline}, token={self.token!r})"
        )


class Window:
    """Outstanding requests by sequence number, with a capacity and deadlines.

    Only *windowed* requests count against ``capacity`` (see :data:`SESSION_REQUESTS`). Every
    outstanding request leaves exactly once: by :meth:`pop` (its answer came), :meth:`expire`
    (its deadline passed) or :meth:`clear` (the link ended).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"window capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: dict[int, Outstanding] = {}
        self._windowed = 0
        # (deadline, tie-breaker, item); entries of completed items stay until they surface.
        self._deadlines: list[tuple[float, int, Outstanding]] = []
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, sequence_number: int) -> bool:
        return sequence_number in self._items

    @property
    def in_use(self) -> int:
        """Windowed requests outstanding."""
        return self._windowed

    @property
    def free(self) -> int:
        return self.capacity - self._windowed

    def items(self) -> list[Outstanding]:
        return list(self._items.values())

    def add(self, item: Outstanding) -> None:
        seq = item.sequence_number
        if seq in self._items:
            raise LocalProtocolError(f"sequence_number {seq} is already outstanding")
        if item.windowed:
            if self._windowed >= self.capacity:
                raise WindowFull(f"window of {self.capacity} requests is full")
            self._windowed += 1
        self._items[seq] = item
        if item.deadline is not None:
            heapq.heappush(self._deadlines, (item.deadline, next(self._counter), item))
            if len(self._deadlines) > 2 * len(self._items) + 64:
                self._compact()

    def get(self, sequence_number: int) -> Outstanding | None:
        return self._items.get(sequence_number)

    def pop(self, sequence_number: int) -> Outstanding | None:
        item = self._items.pop(sequence_number, None)
        if item is not None and item.windowed:
            self._windowed -= 1
        return item

    def next_deadline(self) -> float | None:
        heap = self._deadlines
        items = self._items
        while heap:
            item = heap[0][2]
            if items.get(item.sequence_number) is item:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def expire(self, now: float) -> list[Outstanding]:
        """Remove and return every request whose deadline is at or before ``now``."""
        expired = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)[2]
            if self._items.get(item.sequence_number) is item:
                self.pop(item.sequence_number)
                expired.append(item)
        return expired

    def clear(self) -> list[Outstanding]:
        """Remove and return every outstanding request (the link is gone)."""
        items = list(self._items.values())
        self._items.clear()
        self._deadlines.clear()
        self._windowed = 0
        return items

    def _compact(self) -> None:
        items = self._items
        self._deadlines = [e for e in self._deadlines if items.get(e[2].sequence_number) is e[2]]
        heapq.heapify(self._deadlines)


# --- events --------------------------------------------------------------------------------------


@attrs.frozen
class ResponseReceived:
    """The answer to one of our requests: its ``*_resp`` or a ``generic_nack``."""

    response: Response
    outstanding: Outstanding


@attrs.frozen
class UnexpectedResponse:
    """A response that matches no outstanding request (late, duplicated, or wrong command)."""

    response: Response
    reason: str


@attrs.frozen
class RequestReceived:
    """A request of the peer, allowed in this state: answer it with ``send(pdu.response(...))``.

    An ``unbind`` is one too: answering it closes the session.
    """

    pdu: Request


@attrs.frozen
class NotificationReceived:
    """A PDU that has no response (``alert_notification``, ``outbind``)."""

    pdu: AlertNotification | Outbind


@attrs.frozen
class InvalidInput:
    """The peer sent something wrong. Send ``reply`` if it is not None; close if ``fatal``.

    ``outstanding`` is our request that a malformed response answered: it is out of the window
    and the caller fails it.
    """

    reason: str
    command_id: int | None
    sequence_number: int | None
    command_status: int
    reply: Pdu | None
    fatal: bool
    outstanding: Outstanding | None = None


@attrs.frozen
class ConnectionClosed:
    """The peer closed the stream (``receive_data(b"")``); ``partial`` octets of a PDU were lost."""

    partial: int = 0


Event = (
    ResponseReceived
    | UnexpectedResponse
    | RequestReceived
    | NotificationReceived
    | InvalidInput
    | ConnectionClosed
)


# --- the session ---------------------------------------------------------------------------------


class Session:
    """One SMPP session, either role; see the module docstring."""

    def __init__(
        self,
        role: Role,
        *,
        window: int = 10,
        max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH,
        sequence: SequenceAllocator | None = None,
    ) -> None:
        self.role = role
        self._other = _other(role)
        self.state = BindState.OPEN
        #: True once we sent unbind (no new requests) / received one (we owe unbind_resp).
        self.unbinding = False
        self.peer_unbinding = False
        self.window = Window(window)
        self.sequence = sequence or SequenceAllocator()
        self._framer = Framer(max_command_length)
        self._eof = False
        self._closed_reported = False

    @property
    def state(self) -> BindState:
        return self._state

    @state.setter
    def state(self, state: BindState) -> None:
        # What may be sent and received in the new state, as plain sets of command ids: the
        # per-PDU checks then hash ints, not enums.
        self._state = state
        self._can_send = _ISSUABLE_IDS[self.role, state]
        self._can_receive = _ISSUABLE_IDS[self._other, state]

    # -- output ----------------------------------------------------------------------------------

    def send_request(
        self,
        pdu: Request,
        *,
        now: float,
        timeout: float | None = None,
        token: object = None,
    ) -> tuple[bytes, Outstanding]:
        """Stamp a fresh sequence number on ``pdu``, track it, return its bytes and its entry.

        Raises :class:`WindowFull` when the window has no room for an application request and
        :class:`LocalProtocolError` when the state forbids it (or an unbind is under way).
        """
        cid = pdu.command_id
        if cid not in self._can_send:
            raise LocalProtocolError(
                f"{type(pdu).__name__} may not be sent by the {self.role.name} in {self.state.name}"
            )
        if self.unbinding and cid != C.UNBIND:
            raise LocalProtocolError(f"{type(pdu).__name__} after unbind")
        windowed = cid not in SESSION_REQUESTS
        window = self.window
        if windowed and window.in_use >= window.capacity:
            raise WindowFull(f"window of {window.capacity} requests is full")
        seq = self.sequence.next()
        # After a wrap a very old request may still hold a number: skip it (bounded by the
        # window size plus session requests, so this loop ends quickly).
        while seq in window:
            seq = self.sequence.next()
        # Stamp the number into the encoded header rather than building a new PDU: this is the
        # hot path of every submit, and attrs.evolve costs more than the encoding itself.
        data = encode(pdu)
        if pdu.sequence_number != seq:
            data = data[:12] + _SEQ.pack(seq) + data[16:]
        item = Outstanding(
            pdu, seq, now, None if timeout is None else now + timeout, windowed, token
        )
        window.add(item)
        if cid == C.UNBIND:
            self.unbinding = True
        return data, item

    def send(self, pdu: Pdu) -> bytes:
        """The bytes of a response or of a PDU without response (never a request: see
        :meth:`send_request`). Sending a bind or unbind response changes the state."""
        if isinstance(pdu, Request):
            raise LocalProtocolError(f"{type(pdu).__name__} is a request: use send_request()")
        cid = pdu.command_id
        if cid not in self._can_send:
            raise LocalProtocolError(
                f"{type(pdu).__name__} may not be sent by the {self.role.name} in {self.state.name}"
            )
        data = encode(pdu)
        self._transition(cid, pdu.command_status)
        return data

    # -- input -----------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Bytes from the peer; ``b""`` means the peer closed the stream."""
        if data:
            if self._eof:
                raise LocalProtocolError("data after end of stream")
            self._framer.feed(data if isinstance(data, bytes) else bytes(data))
        else:
            self._eof = True

    def next_event(self) -> Event | NeedData:
        """The next thing the peer did, or ``NEED_DATA``."""
        if self._framer.broken or self._closed_reported:
            return NEED_DATA
        try:
            pdu = self._framer.next_pdu()
        except DecodeError as exc:
            return self._invalid(exc)
        if pdu is NEED_DATA:
            if self._eof and not self._closed_reported:
                self._closed_reported = True
                self.state = BindState.CLOSED
                return ConnectionClosed(self._framer.buffered)
            return NEED_DATA
        if isinstance(pdu, Response):
            return self._response(pdu)
        cid = pdu.command_id
        status = None if cid in self._can_receive else bind_state_error(self.role, self.state, cid)
        if status is not None:
            # A command this side never takes is answered like an unknown one: generic_nack.
            reply = (
                pdu.response(status)
                if isinstance(pdu, Request) and status != S.ESME_RINVCMDID
                else GenericNack(sequence_number=pdu.sequence_number, command_status=status)
            )
            return InvalidInput(
                f"{type(pdu).__name__} not accepted by the {self.role.name} in {self.state.name}",
                cid,
                pdu.sequence_number,
                status,
                reply,
                fatal=False,
            )
        if isinstance(pdu, Request):
            if cid == C.UNBIND:
                self.peer_unbinding = True
            return RequestReceived(pdu)
        assert isinstance(pdu, AlertNotification | Outbind)
        return NotificationReceived(pdu)

    def _response(self, pdu: Response) -> Event:
        seq = pdu.sequence_number
        item = self.window.get(seq)
        if item is None:
            return UnexpectedResponse(pdu, f"no request with sequence_number {seq} outstanding")
        cid = pdu.command_id
        if cid != item.pdu.command_id | RESPONSE_BIT and cid != C.GENERIC_NACK:
            return UnexpectedResponse(
                pdu, f"{type(pdu).__name__} answers {type(item.pdu).__name__} #{seq}"
            )
        self.window.pop(seq)
        self._transition(cid, pdu.command_status)
        return ResponseReceived(pdu, item)

    def _invalid(self, exc: DecodeError) -> InvalidInput:
        cid = exc.command_id
        outstanding = None
        if cid is not None and cid & RESPONSE_BIT and exc.sequence_number is not None:
            item = self.window.get(exc.sequence_number)
            if item is not None and cid in (item.pdu.command_id | RESPONSE_BIT, C.GENERIC_NACK):
                outstanding = self.window.pop(exc.sequence_number)
        reply = error_response(exc)
        if not exc.framing_ok:
            self.state = BindState.CLOSED
            # The header is not to be trusted when its length is wrong: whatever the
            # command_id says, only generic_nack fits (the codec answers a known command
            # with its own *_resp).
            reply = GenericNack(
                sequence_number=exc.sequence_number or 0, command_status=exc.command_status
            )
        return InvalidInput(
            str(exc),
            cid,
            exc.sequence_number,
            exc.command_status,
            reply,
            fatal=not exc.framing_ok,
            outstanding=outstanding,
        )

    def _transition(self, response_id: int, status: int) -> None:
        if response_id not in _TRANSITION_IDS:  # the hot path: submit_sm_resp and the like
            return
        nxt = TRANSITIONS.get((self.state, response_id))
        if nxt is None:
            return
        if response_id == C.UNBIND_RESP or status == S.ESME_ROK:
            self.state = nxt

    # -- time and teardown -----------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` next has work, or None."""
        return self.window.next_deadline()

    def handle_timeout(self, now: float) -> list[Outstanding]:
        """Requests whose deadline passed by ``now``, removed from the window.

        An expired ``enquire_link`` means the link is dead: the caller closes it.
        """
        return self.window.expire(now)

    def close(self) -> list[Outstanding]:
        """The link is gone (or being dropped): CLOSED, and every request still outstanding,
        removed from the window, for the caller to fail."""
        self.state = BindState.CLOSED
        self._closed_reported = True
        return self.window.clear()

    @property
    def bound(self) -> bool:
        return self.state in _BOUND
