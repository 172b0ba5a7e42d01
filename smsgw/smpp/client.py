"""The supervised SMPP client: connect, bind, serve, and reconnect with backoff, forever.

:class:`SmppClient` owns one transceiver connection or a transmitter + receiver pair. Its
:meth:`SmppClient.run` loop connects, binds, waits for the link to end, waits a backoff delay,
and starts again until :meth:`SmppClient.stop`; ``state`` says where it is (for metrics and for
the API). Submits go to the bound transmitting connection, waiting for a bind within their own
timeout; deliveries from the receiving connection arrive on :attr:`SmppClient.inbound`.

A pair lives and dies together: when either link ends, both are closed and reconnected.
"""

from __future__ import annotations

import enum
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from smpp_codec import Request, Response

from .backoff import Backoff
from .config import BindMode, ClientConfig
from .connection import BindKind, SmppConnection
from .errors import BindError, RequestTimeout, SessionClosed, TlsHandshakeError, ungrouped
from .inbound import Inbound
from .stats import ClientStats, Counters

log = logging.getLogger("smsgw.smpp")

Connector = Callable[[ClientConfig], Awaitable[trio.abc.Stream]]

_KINDS = {
    BindMode.TRANSCEIVER: (BindKind.TRANSCEIVER,),
    BindMode.TRANSMITTER_RECEIVER: (BindKind.TRANSMITTER, BindKind.RECEIVER),
    BindMode.TRANSMITTER: (BindKind.TRANSMITTER,),
    BindMode.RECEIVER: (BindKind.RECEIVER,),
}


class ClientState(enum.Enum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    BINDING = "binding"
    BOUND = "bound"
    UNBINDING = "unbinding"
    BACKOFF = "backoff"


async def open_stream(config: ClientConfig) -> trio.abc.Stream:
    """TCP to ``config.host:port``, wrapped in TLS when ``config.tls`` is set."""
    tcp = await trio.open_tcp_stream(config.host, config.port)
    if config.tls is None:
        return tcp
    stream = trio.SSLStream(
        tcp, config.tls.context(), server_hostname=config.tls.server_hostname or config.host
    )
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(tcp)
        reason = _tls_failure(exc.__cause__ or exc.__context__)
        raise TlsHandshakeError(
            f"TLS handshake with {config.host}:{config.port} failed: {reason}"
        ) from exc
    return stream


#: OpenSSL's reasons for a peer that answered, but not in TLS.
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}
)


def _tls_failure(cause: BaseException | None) -> str:
    """Why a handshake failed, in words (trio's BrokenResourceError carries the ssl error)."""
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        if cause.reason in _NOT_TLS:
            return f"{cause.reason}: the peer does not answer in TLS (a plain SMPP port?)"
        return cause.reason or str(cause)
    if cause is not None and str(cause):
        return str(cause)
    return "the connection closed during the handshake (is the SMSC port speaking TLS?)"


class SmppClient:
    """See the module docstring. ``rand`` (floats in [0, 1)) drives the backoff jitter and
    ``connector`` opens the streams (both are there for tests); ``on_state`` is called with
    every new state and ``on_enquire_link_rtt`` with each enquire_link round trip in seconds
    (for metrics)."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        rand: Callable[[], float] = random.random,
        connector: Connector = open_stream,
        on_state: Callable[[ClientState], None] | None = None,
        on_enquire_link_rtt: Callable[[float], None] | None = None,
        name: str = "smpp",
    ) -> None:
        self.config = config
        self.name = name
        self.state = ClientState.STOPPED
        #: The last reason a connection attempt or a link failed (for the API and logs).
        self.last_error: Exception | str | None = None
        #: When the next attempt starts, while in BACKOFF.
        self.next_attempt_at: float | None = None
        self.counters = Counters()
        self.backoff = Backoff(config.backoff, rand)
        self._connector = connector
        self._on_state = on_state
        self._on_enquire_link_rtt = on_enquire_link_rtt
        self._inbound_send, self.inbound = trio.open_memory_channel[Inbound](config.inbound_buffer)
        self._tx: SmppConnection | None = None
        self._conns: list[SmppConnection] = []
        self._changed = trio.Event()
        self._stop = trio.Event()
        self._stopped = trio.Event()

    @property
    def stats(self) -> ClientStats:
        return self.counters.snapshot()

    @property
    def last_error_text(self) -> str | None:
        """:attr:`last_error` for people: its message, or its type when it has none."""
        error = self.last_error
        return error if error is None or isinstance(error, str) else describe(error)

    @property
    def bound(self) -> bool:
        return self.state is ClientState.BOUND

    # -- running ---------------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[SmppClient] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, bind, reconnect on failure, until :meth:`stop`. Starts at once (use
        :meth:`wait_bound` to wait for the first bind); closes :attr:`inbound` when done."""
        task_status.started(self)
        try:
            async with self._inbound_send:
                while not self._stop.is_set():
                    permanent = await self._connect_and_serve()
                    if self._stop.is_set():
                        break
                    delay = self.backoff.next_delay(permanent=permanent)
                    self.next_attempt_at = trio.current_time() + delay
                    self._set_state(ClientState.BACKOFF)
                    log.info(
                        "%s: reconnecting in %.2fs (%s)", self.name, delay, self.last_error_text
                    )
                    with trio.move_on_after(delay):
                        await self._stop.wait()
                    self.next_attempt_at = None
        finally:
            self._set_state(ClientState.STOPPED)
            self._stopped.set()

    def stop(self) -> None:
        """Ask :meth:`run` to close gracefully (drain, unbind) and return."""
        self._stop.set()

    async def aclose(self) -> None:
        """:meth:`stop`, then wait until :meth:`run` has returned (bounded by the close
        timeouts of the configuration)."""
        self.stop()
        await self._stopped.wait()

    async def wait_bound(self) -> None:
        """Until the client is bound (the caller bounds the wait)."""
        while self.state is not ClientState.BOUND:
            await self._changed.wait()

    async def submit(self, pdu: Request, *, timeout: float | None = None) -> Response:
        """Send ``pdu`` on the bound transmitting connection and return its ESME_ROK response.

        ``timeout`` (default ``request_timeout``) bounds everything: waiting for a bind while
        reconnecting, for a window slot, and for the answer. Raises the errors of
        :mod:`smsgw.smpp.errors`.
        """
        limit = self.config.request_timeout if timeout is None else timeout
        deadline = trio.current_time() + limit
        while True:
            conn = self._tx
            if conn is not None and conn.accepting:
                return await conn.submit(pdu, timeout=deadline - trio.current_time())
            if self._stop.is_set():
                raise SessionClosed(f"{self.name}: client stopped")
            with trio.move_on_at(deadline):
                await self._changed.wait()
                continue
            self.counters.requests_timed_out += 1
            raise RequestTimeout(f"{self.name}: not bound within {limit:g}s", sent=False)

    # -- internals -------------------------------------------------------------------------------

    def _set_state(self, state: ClientState) -> None:
        self.state = state
        if self._on_state is not None:
            self._on_state(state)
        self._changed.set()
        self._changed = trio.Event()

    async def _connect_and_serve(self) -> bool:
        """One connection attempt and the life of its links. Returns True when the failure
        was permanent (bad credentials)."""
        cfg = self.config
        kinds = _KINDS[cfg.bind_mode]
        self._set_state(ClientState.CONNECTING)
        streams: list[trio.abc.Stream] = []
        try:
            for _ in kinds:
                with trio.fail_after(cfg.connect_timeout):
                    streams.append(await self._connector(cfg))
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            self.last_error = exc
            log.warning(
                "%s: connect to %s:%d failed: %s", self.name, cfg.host, cfg.port, describe(exc)
            )
            for stream in streams:
                await trio.aclose_forcefully(stream)
            return False
        self.counters.connects += 1
        self._set_state(ClientState.BINDING)
        conns = [
            SmppConnection(
                stream,
                cfg,
                kind,
                inbound=self._inbound_send if kind.receives else None,
                counters=self.counters,
                name=f"{self.name}/{kind.value}",
                on_enquire_link_rtt=self._on_enquire_link_rtt,
            )
            for stream, kind in zip(streams, kinds, strict=True)
        ]
        permanent = False
        bound_at: float | None = None
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(conn.run)
            for conn in conns:
                await conn.wait_bound()
                if conn.bind_error is not None or conn.end_reason is not None:
                    self.last_error = conn.bind_error or conn.end_reason
                    permanent = conn.bind_error is not None and conn.bind_error.permanent
                    break
            else:
                bound_at = trio.current_time()
                self._conns = conns
                self._tx = next((c for c in conns if c.kind.transmits), None)
                self._set_state(ClientState.BOUND)
                await self._until_any_ends(conns)
                self._tx = None
                self._conns = []
                if self._stop.is_set():
                    self._set_state(ClientState.UNBINDING)
                    async with trio.open_nursery() as closers:
                        for conn in conns:
                            closers.start_soon(self._close_one, conn)
                else:
                    self._set_state(ClientState.BACKOFF)
                    ended = next((c for c in conns if c.end_reason is not None), None)
                    self.last_error = ended.end_reason if ended else "link ended"
                    self.counters.disconnects += 1
            for conn in conns:
                conn.abort("connection set torn down")
        if bound_at is not None:
            self.backoff.connected_for(trio.current_time() - bound_at)
        if isinstance(self.last_error, BindError):
            log.warning("%s: %s", self.name, self.last_error)
        return permanent

    async def _close_one(self, conn: SmppConnection) -> None:
        cfg = self.config
        with trio.move_on_after(cfg.drain_timeout + 3 * cfg.response_timeout):
            await conn.aclose()

    async def _until_any_ends(self, conns: list[SmppConnection]) -> None:
        async with trio.open_nursery() as nursery:

            async def watch(event: trio.Event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()

            for conn in conns:
                nursery.start_soon(watch, conn.ending)
            nursery.start_soon(watch, self._stop)


@asynccontextmanager
async def open_client(
    config: ClientConfig, *, bound_timeout: float | None = None, **kwargs: object
) -> AsyncIterator[SmppClient]:
    """Run an :class:`SmppClient` for the duration of the block; close it gracefully on exit.

    With ``bound_timeout`` the block starts only once bound (``trio.TooSlowError`` otherwise).
    An exception from the body comes out as itself, though the client runs in a nursery
    around it (several at once come out as a group).
    """
    client = SmppClient(config, **kwargs)  # type: ignore[arg-type]
    in_time = True
    with ungrouped():
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            if bound_timeout is not None:
                with trio.move_on_after(bound_timeout):
                    await client.wait_bound()
                in_time = client.bound
            if in_time:
                try:
                    yield client
                finally:
                    client.stop()
            else:
                client.stop()
    if not in_time:
        # Raised outside the nursery, so the caller can catch it without an exception group.
        raise trio.TooSlowError(f"not bound within {bound_timeout}s: {client.last_error}")


def describe(exc: BaseException) -> str:
    """An error for people: its message, or its type when it has none (a bare
    ``TooSlowError`` or ``BrokenResourceError`` says nothing by its message)."""
    return str(exc) or type(exc).__name__
