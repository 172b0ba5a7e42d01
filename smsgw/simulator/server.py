"""The simulator: a Trio SMPP 3.4 server (:class:`Simulator`) and its Python control surface.

::

    sim = Simulator(SimulatorConfig(seed=1))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        ...                                   # point an ESME at 127.0.0.1:port
        sim.set_faults(Faults(throttle_fraction=0.1))
        result = await sim.send_mo(source_addr="4912345", destination_addr="1234", text="hi")
        print(sim.stats)
"""

from __future__ import annotations

import contextlib
import math
import ssl
from datetime import UTC, datetime

import trio

from smpp_codec.segment import SplitMode
from smpp_codec.text import Encoding

from .config import SimulatorConfig
from .connection import Connection, MoPart, MoWaiter
from .faults import Faults
from .mo import MoResult, encoding_of, mo_pdus, split_mode_of
from .receipts import ReceiptJob, ReceiptQueues, ReceiptSchedule
from .smsc import Smsc
from .stats import Stats
from .values import ConfigError

#: Seconds a client has to complete the TLS handshake when ``bind_timeout`` is off.
TLS_HANDSHAKE_TIMEOUT = 30.0


def tls_context(config: SimulatorConfig) -> ssl.SSLContext | None:
    """The server's TLS context from ``tls_cert``/``tls_key``; None for plain TCP. A file that
    cannot be loaded is a :class:`ConfigError` naming it."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"tls_cert/tls_key: cannot load {config.tls_cert} and {config.tls_key}: {exc}"
        ) from exc
    return context


class NoReceiverError(LookupError):
    """No ESME is bound as receiver or transceiver (with the requested system_id)."""


class Simulator:
    """An SMSC simulator; see the module docstring and ``docs/simulator.md``."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.smsc = Smsc(self.config)
        self._schedule = ReceiptSchedule()
        self._queues = ReceiptQueues(self.config.receipts.queue_limit)
        self._schedule_wake = trio.Event()
        #: Connections bound as receiver/transceiver, by system_id, in bind order.
        self._receivers: dict[str, list[Connection]] = {}
        #: Bound connections, in bind order.
        self._bound: dict[Connection, None] = {}
        self._started = False
        self._stopping = False
        #: Every connection being served.
        self._connections: set[Connection] = set()
        self._tls: ssl.SSLContext | None = None
        self._references = 0
        #: The nursery of :meth:`serve` (MO parts waiting to be sent again sleep in it).
        self._nursery: trio.Nursery | None = None
        #: The port it listens on, once serving.
        self.port: int | None = None

    # -- control ------------------------------------------------------------------------------

    @property
    def stats(self) -> Stats:
        """A snapshot of the counters (see :class:`Stats`)."""
        return self.smsc.counters.snapshot(
            messages_stored=len(self.smsc.store),
            receipts_scheduled=len(self._schedule),
            receipts_queued=len(self._queues),
        )

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self.smsc.faults.faults

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults in force. Counts and durations (``refuse_binds``,
        ``refuse_binds_for``, TPS buckets) start again from now."""
        if not isinstance(faults, Faults):
            raise TypeError(f"set_faults takes a Faults, not {faults!r}")
        now = trio.current_time() if self._started else 0.0
        self.smsc.set_faults(faults, now)

    async def send_mo(
        self,
        *,
        source_addr: str,
        destination_addr: str,
        text: str | bytes,
        encoding: Encoding | str | None = None,
        multipart_mode: SplitMode | str = SplitMode.UDH8,
        system_id: str | None = None,
        timeout: float = 10.0,
        source_addr_ton: int = 1,
        source_addr_npi: int = 1,
        dest_addr_ton: int = 0,
        dest_addr_npi: int = 0,
        spread: bool = False,
    ) -> MoResult:
        """Send a mobile-originated message to a bound receiver/transceiver: the first one
        bound, or the first of ``system_id``. Long text is split as ``multipart_mode`` says
        (UDH 8/16-bit, SAR TLVs, or one message_payload); ``encoding`` None picks GSM 7-bit or
        UCS-2; ``text`` as bytes is sent as binary data. ``spread`` sends each part on the next
        receiver of that ``system_id`` in turn, as SMSCs that balance per PDU do (else all go on
        the one receiver).

        Returns when every part was answered, or after ``timeout`` seconds with None for the
        parts that were not (those not sent by then never are). With ``mo_attempts`` above 1
        a part not answered ESME_ROK is sent again (:meth:`mo_failed`), and its status is the
        last answer. Raises
        :class:`NoReceiverError` when no receiver is bound, and
        :class:`~smpp_codec.errors.TextError` when the text does not fit the encoding.
        """
        connection = self._receiver(system_id)
        mode = split_mode_of(multipart_mode)
        pdus = mo_pdus(
            source_addr=source_addr,
            destination_addr=destination_addr,
            content=text,
            encoding=encoding_of(encoding),
            mode=mode,
            reference=self._next_reference(mode),
            source_addr_ton=source_addr_ton,
            source_addr_npi=source_addr_npi,
            dest_addr_ton=dest_addr_ton,
            dest_addr_npi=dest_addr_npi,
        )
        waiter = MoWaiter(len(pdus))
        system_id = connection.system_id or ""
        parts = [MoPart(pdu, waiter, i, system_id) for i, pdu in enumerate(pdus)]
        if spread:
            receivers = [c for c in self._bound if c.receives and c.system_id == system_id]
            for i, part in enumerate(parts):
                receivers[i % len(receivers)].queue_mo([part])
        else:
            connection.queue_mo(parts)
        try:
            with trio.move_on_after(timeout):
                await waiter.done.wait()
        finally:
            waiter.abandoned = True  # parts not sent by now are not sent at all
        return MoResult(connection.system_id or "", tuple(waiter.statuses))

    def _receiver(self, system_id: str | None) -> Connection:
        for connection in self._bound:  # in bind order
            if connection.receives and system_id in (None, connection.system_id):
                return connection
        wanted = "" if system_id is None else f" with system_id {system_id!r}"
        raise NoReceiverError(f"no ESME is bound as receiver or transceiver{wanted}")

    def _next_reference(self, mode: SplitMode) -> int:
        self._references += 1
        return self._references % (256 if mode is SplitMode.UDH8 else 65536)

    async def stop(self, grace: float) -> bool:
        """Stop as an SMSC going down for maintenance: refuse new connections, send every
        bound session an unbind, and wait up to ``grace`` seconds for their connections to
        close (each closes once its unbind is answered, or after ``response_timeout``).
        Connections not bound are closed at once. True when all were closed in time; the
        caller then cancels :meth:`serve`."""
        self._stopping = True
        connections = list(self._connections)
        for connection in connections:
            connection.say_goodbye()
        with trio.move_on_after(grace):
            for connection in connections:
                await connection.finished.wait()
            return True
        return False

    # -- serving ------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``config.host``:``config.port`` and serve until cancelled; reports the
        port it listens on through ``task_status.started(port)`` (for ``nursery.start``)."""
        if self._started:
            raise RuntimeError("a Simulator serves once; make a new one")
        self._started = True
        self._tls = tls_context(self.config)
        listeners = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
        self.smsc.start(trio.current_time(), datetime.now(UTC))  # wall-clock: receipt dates
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._scheduler)
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started(self.port)

    async def _handle(self, tcp: trio.SocketStream) -> None:
        if self._stopping:
            await trio.aclose_forcefully(tcp)
            return
        self.smsc.counters.connections += 1
        stream: trio.abc.Stream = tcp
        if self._tls is not None:
            tls = trio.SSLStream(tcp, self._tls, server_side=True)
            # The handshake is bounded like a bind (a client that never speaks TLS).
            established = False
            with trio.move_on_after(self.config.bind_timeout or TLS_HANDSHAKE_TIMEOUT):
                # Broken: the client refused our certificate, or spoke something else.
                with contextlib.suppress(trio.BrokenResourceError):
                    await tls.do_handshake()
                    established = True
            if not established:
                self.smsc.counters.tls_failures += 1
                await trio.aclose_forcefully(tcp)
                return
            stream = tls
        connection = Connection(self, stream)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)

    # -- called by connections ----------------------------------------------------------------

    def connection_bound(self, connection: Connection, *, receiving: bool = True) -> None:
        """A bind was accepted: the session counts from now (``max_binds``). ``receiving``:
        its bind response is written, so receipts may go to it; else :meth:`receiving` says
        when it is."""
        self._bound[connection] = None
        self.smsc.counters.session_started(connection.system_id or "")
        if receiving:
            self.receiving(connection)

    def receiving(self, connection: Connection) -> None:
        """The bind response of ``connection`` is written: receipts and MOs may go to it."""
        if connection.receives and connection.system_id is not None and connection in self._bound:
            self._receivers.setdefault(connection.system_id, []).append(connection)
            connection.wake()  # receipts may be waiting for it

    def connection_unbound(self, connection: Connection) -> None:
        """The session ended (unbind, or the connection is gone); idempotent."""
        if connection not in self._bound:
            return
        del self._bound[connection]
        self.smsc.counters.session_ended(connection.system_id or "")
        receivers = self._receivers.get(connection.system_id or "")
        if receivers and connection in receivers:
            receivers.remove(connection)

    def connection_ended(self, connection: Connection) -> None:
        self.connection_unbound(connection)

    def schedule_receipts(self, jobs: list[ReceiptJob], hold: object = None) -> None:
        """Queue receipts for their due time. With ``hold`` (a callable), the first receipt
        writes the held answer once it is written itself, or at once when no receiver of its
        system_id is bound (then it cannot go first)."""
        if hold is not None and jobs:
            assert callable(hold)
            jobs[0].on_written = hold
        now = trio.current_time()
        wake = False
        for job in jobs:
            if job.ready_at <= now:
                self._make_ready(job)
            else:
                next_due = self._schedule.next_due()
                self._schedule.push(job)
                wake = wake or next_due is None or job.ready_at < next_due
        if wake:
            self._schedule_wake.set()
        if hold is not None and jobs and not self._has_receiver(jobs[0].system_id):
            jobs[0].release()

    def take_receipt(self, system_id: str) -> ReceiptJob | None:
        return self._queues.pop(system_id)

    def receipt_failed(self, job: ReceiptJob) -> None:
        """A sent receipt failed: scheduled again after ``retry_delay`` while it has sends left
        (``ReceiptConfig.attempts``), else given up."""
        config = self.config.receipts
        if job.sends >= config.attempts:
            return
        job.retry_at = trio.current_time() + config.retry_delay
        self.smsc.counters.receipts_retried += 1
        self.schedule_receipts([job])

    def mo_failed(self, part: MoPart) -> bool:
        """A sent MO part was not answered ESME_ROK: True if it will be sent again
        (``mo_attempts``), ``mo_retry_delay`` from now."""
        if part.sends >= self.config.mo_attempts or part.waiter.abandoned:
            return False
        self._send_mo_again([part], self.config.mo_retry_delay)
        return True

    def mo_unsent(self, parts: list[MoPart]) -> None:
        """The connection of these MO parts, not sent yet, is gone: sent in order on another
        receiver at once if MOs are sent again (``mo_attempts`` above 1), else given up."""
        again = [p for p in parts if self.config.mo_attempts > 1 and not p.waiter.abandoned]
        for part in parts:
            if part not in again:
                part.waiter.complete(part.index, None)
        if again:
            self._send_mo_again(again, 0.0)

    def _send_mo_again(self, parts: list[MoPart], delay: float) -> None:
        assert self._nursery is not None
        self.smsc.counters.mos_retried += len(parts)
        self._nursery.start_soon(self._redeliver, parts, delay)

    async def _redeliver(self, parts: list[MoPart], delay: float) -> None:
        """After ``delay``, queue ``parts`` on the first receiver of their system_id (they
        share it: one connection's), waiting for one to bind; given up (None) once their
        ``send_mo`` gave up."""
        await trio.sleep(delay)
        while True:
            live = []
            for part in parts:
                if part.waiter.abandoned:
                    part.waiter.complete(part.index, None)
                else:
                    live.append(part)
            parts = live
            if not parts:
                return
            receivers = self._receivers.get(parts[0].system_id)
            if receivers:
                receivers[0].queue_mo(parts)
                return
            await trio.sleep(0.1)

    def _has_receiver(self, system_id: str) -> bool:
        return any(c.receives for c in self._receivers.get(system_id, ()))

    def _make_ready(self, job: ReceiptJob) -> None:
        if not job.wanted():
            job.release()
            return
        dropped = self._queues.push(job)
        if dropped is not None:
            self.smsc.counters.receipts_dropped += 1
            dropped.release()
        for connection in self._receivers.get(job.system_id, ()):
            connection.wake()

    async def _scheduler(self) -> None:
        schedule = self._schedule
        while True:
            self._schedule_wake = trio.Event()
            for job in schedule.pop_due(trio.current_time()):
                self._make_ready(job)
            next_due = schedule.next_due()
            with trio.move_on_at(math.inf if next_due is None else next_due):
                await self._schedule_wake.wait()
