"""One ESME connection to the simulator: the Trio tasks that carry out the SMSC logic.

Per connection, under one nursery owned by :meth:`Connection.run`:

- the **reader** reads bytes, feeds the sans-IO :class:`~smpp_codec.session.Session`, asks
  :class:`~.smsc.Smsc` what to answer, and passes the answers on;
- the **writer** is the only task that writes to the socket; the others hand it bytes through a
  bounded channel, so a peer that stops reading stops the reader too (backpressure);
- the **delayer** writes answers held back by latency (or by a receipt that must go first);
- the **deliverer** sends this connection's own requests (receipts, MO parts, enquire_link)
  within the ``deliver_window`` and fails those unanswered within ``response_timeout``;
- optional **heartbeat** (``enquire_link_interval``) and **bind timer** (``bind_timeout``).

The connection ends when the peer closes, after an unbind or a framing error (once the answer
is written), or at once when a fault or a timeout drops it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs
import trio

from smpp_codec.codec import encode
from smpp_codec.constants import CommandStatus
from smpp_codec.framer import NEED_DATA
from smpp_codec.pdu import DeliverSm, EnquireLink, GenericNack, Request, Unbind
from smpp_codec.session import (
    BindState,
    ConnectionClosed,
    InvalidInput,
    RequestReceived,
    ResponseReceived,
    Role,
    Session,
    UnexpectedResponse,
)

from .receipts import ReceiptJob, receipt_pdu
from .smsc import Link, Reply

if TYPE_CHECKING:
    from .server import Simulator

#: Bytes asked of the socket per read.
RECEIVE_SIZE = 65536
#: Chunks of bytes waiting for the writer.
WRITE_QUEUE = 64
#: Answers held back by latency at most; beyond, the reader waits (backpressure on the peer).
MAX_HELD = 10_000

_RECEIVING_STATES = frozenset({BindState.BOUND_RX, BindState.BOUND_TRX})


class MoWaiter:
    """Collects the answers to the deliver_sm PDUs of one MO."""

    def __init__(self, parts: int) -> None:
        self.statuses: list[int | None] = [None] * parts
        self.remaining = parts
        self.done = trio.Event()
        #: Set when the caller gave up: parts not sent yet are not sent at all.
        self.abandoned = False

    def complete(self, index: int, status: int | None) -> None:
        self.statuses[index] = status
        self.remaining -= 1
        if self.remaining <= 0:
            self.done.set()


@attrs.define(eq=False)
class MoPart:
    """Part ``index`` of an MO (``waiter``'s), for the receivers of ``system_id``."""

    pdu: DeliverSm
    waiter: MoWaiter
    index: int
    system_id: str
    #: Times it was written.
    sends: int = 0


@attrs.define(eq=False)
class Probe:
    """An enquire_link of the heartbeat; ``status`` None means it went unanswered."""

    done: trio.Event = attrs.field(factory=trio.Event)
    status: int | None = None


class Farewell:
    """The token of our unbind, the simulator stopping."""


Outbound = ReceiptJob | MoPart | Probe | Farewell


class Connection:
    """One TCP connection from an ESME (see the module docstring)."""

    _ids = itertools.count(1)

    def __init__(self, sim: Simulator, stream: trio.abc.Stream) -> None:
        self.number = next(self._ids)
        self._sim = sim
        self._smsc = sim.smsc
        self._counters = sim.smsc.counters
        self._config = sim.config
        self._stream = stream
        self.session = Session(Role.SMSC, window=self._config.deliver_window)
        self.link = Link(self.session)
        self._out_send, self._out_receive = trio.open_memory_channel[bytes | None](WRITE_QUEUE)
        self._held: list[tuple[float, int, bytes, bool]] = []
        self._held_tie = itertools.count()
        #: A bind response held back by latency: until it is written the ESME is not bound,
        #: so nothing else goes to it and the connection takes no receipts.
        self._bind_resp: bytes | None = None
        self._held_wake = trio.Event()
        self._deliver_wake = trio.Event()
        self._private: deque[MoPart | Probe | Farewell] = deque()
        self._cancel_scope: trio.CancelScope | None = None
        self.closed = False
        #: Set once the connection is closed and its stream too.
        self.finished = trio.Event()
        #: Why the connection ended, when the simulator ended it ("unbind", a fault name...).
        self.end_reason: str | None = None

    # -- for the simulator --------------------------------------------------------------------

    @property
    def system_id(self) -> str | None:
        return self.link.system_id

    @property
    def receives(self) -> bool:
        """Bound as a receiver or transceiver, and not unbinding."""
        return self.session.state in _RECEIVING_STATES and not self.session.peer_unbinding

    def wake(self) -> None:
        """Something to deliver (a receipt is due, an MO was queued)."""
        self._deliver_wake.set()

    def queue_mo(self, parts: Iterable[MoPart]) -> None:
        """Deliver these parts of MOs, in order."""
        self._private.extend(parts)
        self._deliver_wake.set()

    def send_later(self, data: bytes, due: float, submission: bool) -> None:
        """Write ``data`` at ``due`` (a held answer; ``submission`` ones count in the window)."""
        if self.closed:
            return
        heapq.heappush(self._held, (due, next(self._held_tie), data, submission))
        self._held_wake.set()

    def say_goodbye(self) -> None:
        """Unbind from the SMSC's side: an unbind goes out (before anything else queued), and
        the connection closes once the ESME answers it or after ``response_timeout``
        (:attr:`finished` is set then). A connection not bound is closed at once."""
        session = self.session
        if self.closed or not session.bound or session.unbinding or session.peer_unbinding:
            self.abort("stopping")
            return
        self._private.appendleft(Farewell())
        self._deliver_wake.set()

    def abort(self, reason: str) -> None:
        """Drop the connection now, without another byte."""
        if self.end_reason is None:
            self.end_reason = reason
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    # -- lifetime -----------------------------------------------------------------------------

    async def run(self) -> None:
        config = self._config
        try:
            async with trio.open_nursery() as nursery:
                self._cancel_scope = nursery.cancel_scope
                nursery.start_soon(self._writer)
                nursery.start_soon(self._delayer)
                nursery.start_soon(self._deliverer)
                if config.bind_timeout is not None:
                    nursery.start_soon(self._bind_timer, config.bind_timeout)
                if config.enquire_link_interval is not None:
                    nursery.start_soon(self._heartbeat, config.enquire_link_interval)
                await self._reader()
        finally:
            self._cleanup()
            with trio.move_on_after(1, shield=True):
                await self._stream.aclose()
            self.finished.set()

    def _cleanup(self) -> None:
        self.closed = True
        self._sim.connection_ended(self)
        for item in self.session.close():
            self._complete(item.token, None)
        unsent: list[MoPart] = []
        while self._private:
            job = self._private.popleft()
            if isinstance(job, Probe):
                job.done.set()
            elif isinstance(job, MoPart):
                unsent.append(job)
        self._sim.mo_unsent(unsent)  # to another receiver, if MOs are sent again
        self._held.clear()

    async def _write(self, data: bytes) -> None:
        await self._out_send.send(data)

    async def _finish(self, data: bytes = b"") -> None:
        """Write ``data``, then what is queued, then close: the reader stops reading."""
        if data:
            await self._write(data)
        await self._out_send.send(None)

    # -- tasks --------------------------------------------------------------------------------

    async def _writer(self) -> None:
        receive = self._out_receive
        stream = self._stream
        try:
            while True:
                data = await receive.receive()
                if data is None:
                    break
                chunks = [data]
                size = len(data)
                end = False
                while size < RECEIVE_SIZE:
                    try:
                        more = receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    if more is None:
                        end = True
                        break
                    chunks.append(more)
                    size += len(more)
                await stream.send_all(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                if end:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.abort("peer_gone")
            return
        # Everything written: the connection is over (unbind, framing lost, stream garbage).
        self.abort(self.end_reason or "closed")

    async def _reader(self) -> None:
        session = self.session
        idle = self._config.idle_timeout
        while True:
            try:
                with trio.move_on_after(math.inf if idle is None else idle) as idle_scope:
                    data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.abort("peer_gone")
                return
            if idle_scope.cancelled_caught:
                self.abort("idle_timeout")
                return
            session.receive_data(data)
            out: list[bytes] = []
            if not await self._process(out):
                return
            if out:
                await self._write(b"".join(out) if len(out) > 1 else out[0])
            while len(self._held) >= MAX_HELD:
                await trio.sleep_until(self._held[0][0])

    async def _process(self, out: list[bytes]) -> bool:
        """Handle every event the bytes read so far make; False when reading must stop."""
        session = self.session
        smsc = self._smsc
        counters = self._counters
        link = self.link
        now = trio.current_time()
        while True:
            event = session.next_event()
            if event is NEED_DATA:
                return True
            if isinstance(event, RequestReceived):
                pdu = event.pdu
                reason = smsc.received(link, pdu.command_id)
                if reason is not None:
                    self.abort(reason)
                    return False
                reply = smsc.handle(link, pdu, now)
                if not self._carry_out(reply, out, now):
                    await self._close_after(out, reply)
                    return False
            elif isinstance(event, ResponseReceived):
                response = event.response
                reason = smsc.received(link, response.command_id)
                if reason is not None:
                    self.abort(reason)
                    return False
                status = response.command_status
                if isinstance(response, GenericNack):
                    status = status or int(CommandStatus.ESME_RUNKNOWNERR)
                token = event.outstanding.token
                self._complete(token, status)
                self._deliver_wake.set()
                if isinstance(token, Farewell):
                    # Our unbind answered: the session is over (SMPP 3.4 section 4.2).
                    self.end_reason = "unbound_by_smsc"
                    await self._finish(b"".join(out))
                    return False
            elif isinstance(event, InvalidInput):
                reason = smsc.received(link, event.command_id)
                if reason is not None:
                    self.abort(reason)
                    return False
                counters.invalid_pdus += 1
                if event.outstanding is not None:
                    self._complete(event.outstanding.token, int(CommandStatus.ESME_RUNKNOWNERR))
                    self._deliver_wake.set()
                reply_data = b""
                if event.reply is not None:
                    smsc.sent(event.reply.command_id)
                    reply_data = encode(event.reply)
                if event.fatal:
                    # The stream is out of step: answer, then close.
                    out.append(reply_data)
                    self.end_reason = "framing_lost"
                    await self._finish(b"".join(out))
                    return False
                if reply_data:
                    out.append(reply_data)
            elif isinstance(event, UnexpectedResponse):
                reason = smsc.received(link, event.response.command_id)
                if reason is not None:
                    self.abort(reason)
                    return False
                counters.unexpected_responses += 1
            elif isinstance(event, ConnectionClosed):
                self.abort("peer_closed")
                return False
            else:  # NotificationReceived: an ESME never issues those, the session refuses them
                raise AssertionError(f"unexpected session event {event!r}")

    def _carry_out(self, reply: Reply, out: list[bytes], now: float) -> bool:
        """Act on one reply; False when the connection must close after it."""
        if reply.bound:
            held = reply.delay > 0 and bool(reply.data)
            if held:
                self._bind_resp = reply.data  # the ESME is bound once it is written (_delayer)
            self._sim.connection_bound(self, receiving=not held)
        if reply.close:
            return False
        data = reply.data
        if reply.hold:
            due = now + reply.delay
            submission = reply.submission
            if submission:
                self.link.held += 1
            self._sim.schedule_receipts(
                reply.receipts, hold=lambda: self.send_later(data, due, submission)
            )
            return True
        if reply.receipts:
            self._sim.schedule_receipts(reply.receipts)
        if not data:
            return True
        if reply.delay > 0:
            if reply.submission:
                self.link.held += 1
            self.send_later(data, now + reply.delay, reply.submission)
        else:
            out.append(data)
        return True

    async def _close_after(self, out: list[bytes], reply: Reply) -> None:
        """Write what is pending, then ``reply`` (after its delay), then close."""
        self._sim.connection_unbound(self)
        self.end_reason = reply.close
        if out:
            await self._write(b"".join(out))
        if reply.delay > 0:
            await trio.sleep(reply.delay)
        await self._finish(reply.data)

    async def _delayer(self) -> None:
        held = self._held
        link = self.link
        while True:
            self._held_wake = trio.Event()
            now = trio.current_time()
            batch = []
            while held and held[0][0] <= now:
                _, _, data, submission = heapq.heappop(held)
                batch.append(data)
                if submission:
                    link.held -= 1
            if batch:
                await self._write(b"".join(batch))
                bind_resp = self._bind_resp
                if bind_resp is not None and any(data is bind_resp for data in batch):
                    self._bind_resp = None
                    self._sim.receiving(self)
                    self._deliver_wake.set()
                continue
            with trio.move_on_at(held[0][0] if held else math.inf):
                await self._held_wake.wait()

    async def _deliverer(self) -> None:
        session = self.session
        window = session.window
        smsc = self._smsc
        counters = self._counters
        receipts_config = self._config.receipts
        timeout = self._config.response_timeout
        while True:
            self._deliver_wake = trio.Event()
            now = trio.current_time()
            for item in session.handle_timeout(now):
                self._complete(item.token, None)  # an unanswered Probe: the heartbeat aborts
            batch: list[bytes] = []
            written: list[ReceiptJob] = []
            if (
                session.bound
                and self._bind_resp is None
                and not session.peer_unbinding
                and not session.unbinding
            ):
                private = self._private
                while private and (isinstance(private[0], Probe | Farewell) or window.free > 0):
                    job = private.popleft()
                    if isinstance(job, Farewell):
                        batch.append(self._request(Unbind(sequence_number=0), job, now, timeout))
                        break  # nothing more after an unbind
                    if isinstance(job, Probe):
                        data, _ = session.send_request(
                            EnquireLink(sequence_number=0), now=now, timeout=timeout, token=job
                        )
                        smsc.sent(EnquireLink.command_id)
                        batch.append(data)
                    elif not self.receives or job.waiter.abandoned:
                        job.waiter.complete(job.index, None)
                    else:
                        batch.append(self._request(job.pdu, job, now, timeout))
                        job.sends += 1
                        counters.mos_sent += 1
                system_id = self.link.system_id
                while (
                    self.receives
                    and not session.unbinding
                    and window.free > 0
                    and system_id is not None
                ):
                    receipt = self._sim.take_receipt(system_id)
                    if receipt is None:
                        break
                    if not receipt.wanted():
                        receipt.release()
                        continue
                    message = receipt.message
                    pdu = receipt_pdu(
                        receipt,
                        receipts_config,
                        smsc.wall(message.submitted_at).replace(tzinfo=None),
                        smsc.wall(message.final_at).replace(tzinfo=None),
                    )
                    batch.append(self._request(pdu, receipt, now, timeout))
                    written.append(receipt)
                    receipt.sends += 1
                    counters.receipts_sent += 1
            if batch:
                await self._write(b"".join(batch))
                for receipt in written:
                    receipt.release()
                continue
            deadline = session.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._deliver_wake.wait()

    def _request(self, pdu: Request, token: Outbound, now: float, timeout: float) -> bytes:
        data, _ = self.session.send_request(pdu, now=now, timeout=timeout, token=token)
        self._smsc.sent(pdu.command_id)
        return data

    def _complete(self, token: object, status: int | None) -> None:
        """One of our requests was answered (``status``) or never will be (None)."""
        counters = self._counters
        if isinstance(token, ReceiptJob):
            token.release()
            if status == 0:
                counters.receipts_acked += 1
            else:
                counters.receipts_failed += 1
                self._sim.receipt_failed(token)
        elif isinstance(token, MoPart):
            if status == 0:
                counters.mos_acked += 1
            else:
                counters.mos_failed += 1
                if self._sim.mo_failed(token):
                    return  # sent again later: its waiter waits for that answer
            token.waiter.complete(token.index, status)
        elif isinstance(token, Probe):
            token.status = status
            token.done.set()
        elif isinstance(token, Farewell) and status is None:
            self.abort("unbind_unanswered")

    async def _heartbeat(self, interval: float) -> None:
        timeout = self._config.response_timeout
        while True:
            await trio.sleep(interval)
            if not self.session.bound or self.session.peer_unbinding:
                continue
            probe = Probe()
            self._private.append(probe)
            self._deliver_wake.set()
            # The deliverer completes the probe within response_timeout; the margin only
            # guards against a bug leaving it waiting forever.
            with trio.move_on_after(2 * timeout + 1):
                await probe.done.wait()
            if probe.status is None:
                self._counters.faults["dead_link"] += 1
                self.abort("dead_link")
                return

    async def _bind_timer(self, timeout: float) -> None:
        await trio.sleep(timeout)
        if self.link.system_id is None:
            self.abort("bind_timeout")
