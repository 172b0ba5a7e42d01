"""One bound SMPP link over a Trio stream: the Trio adapter of :class:`smpp_codec.session.Session`.

Per connection, four tasks in the connection's own nursery:

- the *reader* feeds received bytes to the session and dispatches its events: responses complete
  the waiting :meth:`SmppConnection.request`, deliver_sm / data_sm go to the application through
  a bounded channel (a slow consumer stops the reader, so TCP pushes back on the SMSC);
- the *writer* sends what the other tasks queue on a bounded channel, coalescing whatever is
  queued into one ``send_all`` (one syscall for many PDUs under load);
- the *timer* wakes at the session's next deadline: expired requests fail with
  :class:`RequestTimeout`, unanswered inbound PDUs get the default answer;
- the *heartbeat* sends enquire_link after ``enquire_link_interval`` without input; an
  unanswered one within ``response_timeout`` ends the link as dead.

When the link ends, for whatever reason, every request still outstanding fails with
:class:`ConnectionLost` (``sent=True``, retryable) and :meth:`SmppConnection.run` returns the
reason; the supervisor (:mod:`smsgw.smpp.client`) decides whether to reconnect.
"""

from __future__ import annotations

import collections
import enum
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from smpp_codec import (
    AlertNotification,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DataSm,
    DeliverSm,
    EncodeError,
    EnquireLink,
    GenericNack,
    Pdu,
    Request,
    Response,
    Unbind,
    encode,
    status_name,
)
from smpp_codec.framer import NEED_DATA
from smpp_codec.session import (
    SESSION_REQUESTS,
    ConnectionClosed,
    InvalidInput,
    LocalProtocolError,
    NotificationReceived,
    Outstanding,
    RequestReceived,
    ResponseReceived,
    Role,
    Session,
    UnexpectedResponse,
)

from .config import ClientConfig
from .errors import (
    BindError,
    ConnectionLost,
    InvalidResponse,
    RequestTimeout,
    SessionClosed,
    SmppClientError,
    ThrottledError,
    error_for_status,
    ungrouped,
)
from .inbound import Inbound
from .stats import Counters

log = logging.getLogger("smsgw.smpp")

#: Octets asked of the stream per read.
RECEIVE_SIZE = 65536


class BindKind(enum.Enum):
    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"
    TRANSCEIVER = "transceiver"

    @property
    def receives(self) -> bool:
        return self is not BindKind.TRANSMITTER

    @property
    def transmits(self) -> bool:
        return self is not BindKind.RECEIVER


_BIND_PDU = {
    BindKind.TRANSMITTER: BindTransmitter,
    BindKind.RECEIVER: BindReceiver,
    BindKind.TRANSCEIVER: BindTransceiver,
}


class _Waiter:
    """Where a request's outcome lands; the requesting task sleeps on ``event``."""

    __slots__ = ("abandoned", "error", "event", "response")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.response: Response | None = None
        self.error: SmppClientError | None = None
        self.abandoned = False


class SmppConnection:
    """One SMPP session over ``stream``: bind, serve, close. See the module docstring.

    ``inbound`` receives deliver_sm / data_sm / alert_notification when ``kind`` receives; the
    connection never closes it (a client may share one channel between connections).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        config: ClientConfig,
        kind: BindKind = BindKind.TRANSCEIVER,
        *,
        inbound: trio.MemorySendChannel[Inbound] | None = None,
        counters: Counters | None = None,
        name: str = "smpp",
        on_enquire_link_rtt: Callable[[float], None] | None = None,
    ) -> None:
        self.stream = stream
        #: Told each enquire_link round trip in seconds (for metrics).
        self.on_enquire_link_rtt = on_enquire_link_rtt
        self.config = config
        self.kind = kind
        self.name = name
        self.counters = counters if counters is not None else Counters()
        self.session = Session(
            Role.ESME, window=config.window, max_command_length=config.max_command_length
        )
        self.bind_response: Response | None = None
        self.bind_error: BindError | None = None
        #: Why the link ended (None while it lives).
        self.end_reason: str | None = None
        #: Set once bound, or once the bind failed (then ``bind_error`` says why).
        self.bind_done = trio.Event()
        #: Set when :meth:`run` has finished: the stream is closed, every request failed.
        self.finished = trio.Event()
        self._inbound = inbound
        self._accepting = False
        self._closing = False
        #: Set the moment the link is given up (before the tasks are wound down).
        self.ending = trio.Event()
        self._ending = self.ending
        self._flushed = trio.Event()
        self._drained = trio.Event()
        self._out_send, self._out_recv = trio.open_memory_channel[bytes](config.window + 64)
        self._slots = trio.Semaphore(config.window)
        self._last_received = -math.inf
        self._reader_blocked = False
        self._unanswered: collections.deque[Inbound] = collections.deque()
        #: Set when no inbound PDU is left unanswered; waited on only by a graceful close.
        self._answered: trio.Event | None = None
        self._timer_wakeup = trio.Event()
        self._timer_at = math.inf

    # -- public API --------------------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """True while bound and taking new requests."""
        return self._accepting

    @property
    def outstanding(self) -> int:
        """Application requests waiting for their answer."""
        return self.session.window.in_use

    async def run(self) -> str | None:
        """Bind, serve the link until it ends, clean up. Returns why the link ended; a refused
        bind is in ``bind_error`` (and ``bind_done`` is set either way)."""
        self._last_received = trio.current_time()
        failure: Exception | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                nursery.start_soon(self._reader)
                nursery.start_soon(self._timers)
                try:
                    self.bind_response = await self._bind()
                except BindError as exc:
                    self.bind_error = exc
                    self.counters.bind_failures += 1
                    self._end(f"bind failed: {exc}")
                except EncodeError as exc:  # the configured credentials cannot be encoded
                    failure = exc
                    self._end(f"bind failed: {exc}")
                else:
                    self.counters.binds += 1
                    self._accepting = True
                    log.info("%s: bound as %s", self.name, self.kind.value)
                    nursery.start_soon(self._heartbeat)
                self.bind_done.set()
                await self._ending.wait()
                # Let the writer flush what is queued (an unbind_resp, a generic_nack) briefly.
                with trio.move_on_after(self.config.response_timeout):
                    await self._flushed.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._teardown()
            with trio.move_on_after(1.0, shield=True):
                await self.stream.aclose()
            self.bind_done.set()
            self.finished.set()
        if failure is not None:
            raise failure
        if self.bind_error is None:
            log.info("%s: link ended: %s", self.name, self.end_reason)
        return self.end_reason

    async def wait_bound(self) -> None:
        """Until bound or the bind failed (bounded by ``response_timeout`` inside :meth:`run`)."""
        await self.bind_done.wait()

    async def submit(self, pdu: Request, *, timeout: float | None = None) -> Response:
        """Send ``pdu`` (its sequence number is assigned here) and return its ``ESME_ROK``
        response; any other answer raises (:class:`ThrottledError`, :class:`SubmitRejected`)."""
        response = await self.request(pdu, timeout=timeout)
        status = response.command_status
        if status or isinstance(response, GenericNack):
            error = error_for_status(status or 0xFF, response)
            if isinstance(error, ThrottledError):
                self.counters.requests_throttled += 1
            else:
                self.counters.requests_rejected += 1
            raise error
        self.counters.requests_ok += 1
        return response

    async def request(self, pdu: Request, *, timeout: float | None = None) -> Response:
        """Send ``pdu`` and return its response whatever its status.

        ``timeout`` (default ``request_timeout``) bounds the whole call: waiting for a window
        slot, queueing, and the answer. Raises :class:`RequestTimeout`, :class:`ConnectionLost`,
        :class:`SessionClosed` or :class:`InvalidResponse`.
        """
        limit = self.config.request_timeout if timeout is None else timeout
        now = trio.current_time()
        deadline = now + limit
        windowed = pdu.command_id not in SESSION_REQUESTS
        if windowed:
            if not self._accepting:
                raise SessionClosed(f"{self.name}: not taking requests ({self._why()})")
            try:
                self._slots.acquire_nowait()
            except trio.WouldBlock:
                await self._wait_slot(deadline, limit)
                now = trio.current_time()
        elif self._ending.is_set():
            raise ConnectionLost(f"{self.name}: link ended ({self._why()})", sent=False)
        waiter = _Waiter()
        queued = False
        try:
            data, item = self.session.send_request(
                pdu, now=now, timeout=deadline - now, token=waiter
            )
            queued = True
        except LocalProtocolError as exc:
            raise SessionClosed(f"{self.name}: {exc}") from exc
        finally:
            if windowed and not queued:
                self._slots.release()
        if deadline < self._timer_at:
            self._timer_wakeup.set()
        await self._enqueue_request(data, item, deadline)
        try:
            await waiter.event.wait()
        finally:
            if not waiter.event.is_set():
                waiter.abandoned = True
        if waiter.error is not None:
            raise waiter.error
        assert waiter.response is not None
        return waiter.response

    async def _wait_slot(self, deadline: float, limit: float) -> None:
        got = False
        with trio.move_on_at(deadline):
            await self._slots.acquire()
            got = True
        if not got:
            self.counters.requests_timed_out += 1
            raise RequestTimeout(f"{self.name}: no window slot in {limit:g}s", sent=False)
        if not self._accepting:
            self._slots.release()
            raise SessionClosed(f"{self.name}: not taking requests ({self._why()})")

    async def aclose(self, *, drain_timeout: float | None = None) -> None:
        """Graceful close: stop taking requests, let the window drain (bounded), unbind, wait for
        unbind_resp (bounded), close. Returns once :meth:`run` has finished."""
        if self._closing or self._ending.is_set():
            await self.finished.wait()
            return
        self._closing = True
        self._accepting = False
        self._wake_slot_waiters()
        drain = self.config.drain_timeout if drain_timeout is None else drain_timeout
        with trio.move_on_after(drain):
            if self.session.window.in_use:
                await self._drained.wait()
            # What the SMSC sent us (receipts being stored...) is answered before the unbind:
            # else it delivers them again, or, if it does not retry, they are lost.
            while self._awaiting_answers() and not self._ending.is_set():
                self._answered = trio.Event()
                await self._answered.wait()
        if self.session.bound and not self.session.unbinding:
            try:
                await self.request(Unbind(sequence_number=0), timeout=self.config.response_timeout)
            except SmppClientError as exc:
                log.info("%s: unbind not answered: %s", self.name, exc)
        self._end("closed by us")
        await self.finished.wait()

    def _awaiting_answers(self) -> bool:
        return any(not inbound.answered for inbound in self._unanswered)

    def _answered_one(self) -> None:
        """An inbound PDU was answered: a graceful close may go on once none is left."""
        if self._answered is not None and not self._awaiting_answers():
            self._answered.set()

    def abort(self, reason: str) -> None:
        """End the link now, without unbinding (outstanding requests fail)."""
        self._end(reason)

    # -- tasks -----------------------------------------------------------------------------------

    async def _reader(self) -> None:
        session = self.session
        stream = self.stream
        try:
            while True:
                data = await stream.receive_some(RECEIVE_SIZE)
                self._last_received = trio.current_time()
                session.receive_data(data)
                while (event := session.next_event()) is not NEED_DATA:
                    if type(event) is ResponseReceived:
                        self._complete(event.outstanding, event.response, None)
                    else:
                        await self._dispatch(event)
                if not data or self._ending.is_set():
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._end(f"read failed: {exc!r}")

    async def _writer(self) -> None:
        recv = self._out_recv
        stream = self.stream
        try:
            async for data in recv:
                # Let the tasks woken with us queue their PDUs too, then send them all in one
                # write: under load this turns hundreds of syscalls into a few.
                await trio.lowlevel.cancel_shielded_checkpoint()
                chunks = [data]
                while True:
                    try:
                        chunks.append(recv.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await stream.send_all(data if len(chunks) == 1 else b"".join(chunks))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._end(f"write failed: {exc!r}")
        finally:
            self._flushed.set()

    async def _timers(self) -> None:
        session = self.session
        while True:
            now = trio.current_time()
            for item in session.handle_timeout(now):
                self.counters.requests_timed_out += 1
                self._complete(
                    item,
                    None,
                    RequestTimeout(
                        f"{self.name}: no answer to {type(item.pdu).__name__} "
                        f"#{item.sequence_number} in {now - item.sent_at:g}s",
                        sent=True,
                    ),
                )
            unanswered = self._unanswered
            while unanswered and (unanswered[0].answered or unanswered[0].deadline <= now):
                inbound = unanswered.popleft()
                if not inbound.answered:
                    self.counters.inbound_defaulted += 1
                    log.warning(
                        "%s: %r not answered by the application in time: answering %s",
                        self.name,
                        inbound,
                        status_name(self.config.inbound_default_status),
                    )
                    assert not isinstance(inbound.pdu, AlertNotification)
                    inbound.answered = True
                    self._answered_one()
                    try:
                        data = self.session.send(
                            inbound.pdu.response(self.config.inbound_default_status)
                        )
                    except LocalProtocolError:
                        continue
                    self._send_nowait(data)
            nxt = session.next_deadline()
            at = math.inf if nxt is None else nxt
            if unanswered:
                at = min(at, unanswered[0].deadline)
            self._timer_at = at
            self._timer_wakeup = trio.Event()
            with trio.move_on_at(at):
                await self._timer_wakeup.wait()

    async def _heartbeat(self) -> None:
        interval = self.config.enquire_link_interval
        while not self._ending.is_set():
            due = self._last_received + interval
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            self.counters.enquire_links_sent += 1
            sent_at = trio.current_time()
            try:
                await self.request(
                    EnquireLink(sequence_number=0), timeout=self.config.response_timeout
                )
            except RequestTimeout:
                if self._reader_blocked:
                    # Our own consumer holds the reader: the answer may be sitting unread.
                    continue
                self._end(f"dead link: no enquire_link_resp in {self.config.response_timeout:g}s")
                return
            except SmppClientError:
                return
            self.counters.enquire_links_answered += 1
            if self.on_enquire_link_rtt is not None:
                self.on_enquire_link_rtt(trio.current_time() - sent_at)

    # -- event handling ----------------------------------------------------------------------------

    async def _dispatch(self, event: object) -> None:
        if isinstance(event, RequestReceived):
            await self._on_request(event.pdu)
        elif isinstance(event, UnexpectedResponse):
            self.counters.unexpected_responses += 1
            log.warning("%s: unexpected response: %s", self.name, event.reason)
        elif isinstance(event, NotificationReceived):
            pdu = event.pdu
            if isinstance(pdu, AlertNotification):
                await self._deliver(pdu)
            else:
                log.warning("%s: ignoring %s on a connected session", self.name, pdu)
        elif isinstance(event, InvalidInput):
            self.counters.invalid_input += 1
            log.warning(
                "%s: invalid input (%s): %s",
                self.name,
                status_name(event.command_status),
                event.reason,
            )
            if event.outstanding is not None:
                self._complete(
                    event.outstanding,
                    None,
                    InvalidResponse(f"{self.name}: malformed response: {event.reason}"),
                )
            if event.reply is not None:
                # Error answers are outside the state rules (a deliver_sm_resp to a
                # transmitter): encode them directly.
                self._send_nowait(encode(event.reply))
            if event.fatal:
                self._end(f"framing lost: {event.reason}")
        elif isinstance(event, ConnectionClosed):
            self._end("closed by the peer")

    async def _on_request(self, pdu: Request) -> None:
        if isinstance(pdu, EnquireLink):
            self._send_nowait(self.session.send(pdu.response()))
        elif isinstance(pdu, Unbind):
            self._accepting = False
            self._send_nowait(self.session.send(pdu.response()))
            self._end("unbound by the peer")
        elif isinstance(pdu, DeliverSm | DataSm):
            await self._deliver(pdu)
        else:  # pragma: no cover - the session's state table lets nothing else through
            self._send_nowait(
                encode(GenericNack(sequence_number=pdu.sequence_number, command_status=0x03))
            )

    async def _deliver(self, pdu: DeliverSm | DataSm | AlertNotification) -> None:
        self.counters.inbound += 1
        now = trio.current_time()
        inbound = Inbound(
            pdu,
            received_at=now,
            deadline=now + self.config.inbound_answer_timeout,
            answerer=self._answer,
        )
        if inbound.needs_answer:
            self._unanswered.append(inbound)
            if len(self._unanswered) == 1 and inbound.deadline < self._timer_at:
                self._timer_wakeup.set()
        if self._inbound is None:
            log.warning("%s: no inbound channel; %r gets the default answer", self.name, inbound)
            return
        try:
            self._inbound.send_nowait(inbound)
        except trio.WouldBlock:
            # Backpressure: stop reading until the application catches up.
            self._reader_blocked = True
            try:
                await self._inbound.send(inbound)
            finally:
                self._reader_blocked = False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            log.warning(
                "%s: inbound channel closed; %r gets the default answer", self.name, inbound
            )

    async def _answer(self, inbound: Inbound, response: Pdu) -> bool:
        if inbound.answered:
            return False
        inbound.answered = True
        # Answers mostly come in arrival order: forget them here, not 30 s later in the timer.
        unanswered = self._unanswered
        while unanswered and unanswered[0].answered:
            unanswered.popleft()
        self._answered_one()
        try:
            data = self.session.send(response)
        except LocalProtocolError:
            return False  # the session is over: the SMSC will deliver it again
        try:
            self._out_send.send_nowait(data)
        except trio.WouldBlock:
            try:
                await self._out_send.send(data)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    # -- plumbing ----------------------------------------------------------------------------------

    async def _bind(self) -> Response:
        cfg = self.config
        pdu = _BIND_PDU[self.kind](
            sequence_number=0,
            system_id=cfg.system_id,
            password=cfg.password,
            system_type=cfg.system_type,
            addr_ton=cfg.addr_ton,
            addr_npi=cfg.addr_npi,
            address_range=cfg.address_range,
        )
        try:
            response = await self.request(pdu, timeout=cfg.response_timeout)
        except RequestTimeout as exc:
            raise BindError(f"{self.name}: bind not answered", command_status=None) from exc
        except (ConnectionLost, SessionClosed, InvalidResponse) as exc:
            raise BindError(f"{self.name}: bind failed: {exc}", command_status=None) from exc
        if response.command_status or isinstance(response, GenericNack):
            raise BindError(
                f"{self.name}: bind refused", command_status=response.command_status or 0xFF
            )
        return response

    async def _enqueue_request(self, data: bytes, item: Outstanding, deadline: float) -> None:
        try:
            self._out_send.send_nowait(data)
            return
        except trio.WouldBlock:
            pass
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._unsend(item)
            raise ConnectionLost(f"{self.name}: link ended ({self._why()})", sent=False) from None
        sent = False
        try:
            with trio.move_on_at(deadline):
                await self._out_send.send(data)
                sent = True
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._unsend(item)
            raise ConnectionLost(f"{self.name}: link ended ({self._why()})", sent=False) from None
        if not sent:
            self._unsend(item)
            self.counters.requests_timed_out += 1
            raise RequestTimeout(f"{self.name}: could not queue the request in time", sent=False)

    def _unsend(self, item: Outstanding) -> None:
        """Take back a request that never reached the writer."""
        window = self.session.window
        if window.get(item.sequence_number) is item:
            window.pop(item.sequence_number)
            if item.windowed:
                self._release_slot()

    def _send_nowait(self, data: bytes) -> None:
        """Queue an answer of ours; if the queue is full the link is hopelessly stuck."""
        try:
            self._out_send.send_nowait(data)
        except trio.WouldBlock:
            self._end("output queue full: the peer is not reading")
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _complete(
        self, item: Outstanding, response: Response | None, error: SmppClientError | None
    ) -> None:
        """Deliver the outcome of a request that has left the window (exactly once)."""
        if item.windowed:
            self._release_slot()
        waiter = item.token
        assert isinstance(waiter, _Waiter)
        if waiter.abandoned:
            if response is not None:
                self.counters.unexpected_responses += 1
                log.warning(
                    "%s: %s #%d answered after its caller gave up (status %s)",
                    self.name,
                    type(item.pdu).__name__,
                    item.sequence_number,
                    status_name(response.command_status),
                )
            return
        waiter.response = response
        waiter.error = error
        waiter.event.set()

    def _release_slot(self) -> None:
        self._slots.release()
        if not self._accepting and self.session.window.in_use == 0:
            self._drained.set()

    def _wake_slot_waiters(self) -> None:
        # Waiters re-check ``_accepting`` after acquiring and give the slot back.
        for _ in range(self._slots.statistics().tasks_waiting):
            self._slots.release()

    def _end(self, reason: str) -> None:
        if self._ending.is_set():
            return
        self.end_reason = reason
        self._accepting = False
        self._ending.set()
        self._out_send.close()
        self._fail_outstanding()
        self._wake_slot_waiters()
        if self._answered is not None:
            self._answered.set()  # nothing can be answered any more

    def _fail_outstanding(self) -> None:
        for item in self.session.close():
            if item.command_id not in SESSION_REQUESTS:
                self.counters.requests_lost += 1
            self._complete(
                item,
                None,
                ConnectionLost(f"{self.name}: link ended ({self.end_reason})", sent=True),
            )

    def _teardown(self) -> None:
        """After the tasks are gone: fail what is outstanding, forget what is unanswered."""
        if self.end_reason is None:
            self.end_reason = "cancelled"
        self._accepting = False
        self._out_send.close()
        self._fail_outstanding()
        self._wake_slot_waiters()
        self._drained.set()
        self._unanswered.clear()

    def _why(self) -> str:
        if self.end_reason is not None:
            return self.end_reason
        if self._closing:
            return "closing"
        return "not bound" if not self.bind_done.is_set() else "not accepting"


@asynccontextmanager
async def open_connection(
    stream: trio.abc.Stream,
    config: ClientConfig,
    kind: BindKind = BindKind.TRANSCEIVER,
    *,
    inbound: trio.MemorySendChannel[Inbound] | None = None,
    name: str = "smpp",
) -> AsyncIterator[SmppConnection]:
    """Bind over ``stream`` and yield the bound connection; close it gracefully on exit.

    Raises :class:`BindError` when the SMSC refuses. An exception from the body comes out as
    itself, though the connection's tasks run in a nursery around it (several at once come out
    as a group).
    """
    conn = SmppConnection(stream, config, kind, inbound=inbound, name=name)
    with ungrouped():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.run)
            await conn.wait_bound()
            if conn.bind_error is None and conn.end_reason is None:
                try:
                    yield conn
                finally:
                    with trio.CancelScope(shield=True):
                        bound = config.drain_timeout + 3 * config.response_timeout
                        with trio.move_on_after(bound):
                            await conn.aclose()
                        conn.abort("context exited")
                return
    # Not bound: raised outside the nursery, so the caller catches it without a group.
    if conn.bind_error is not None:
        raise conn.bind_error
    raise BindError(f"{name}: bind failed ({conn.end_reason})", command_status=None)
