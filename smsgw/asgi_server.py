"""HTTP/1.1 for the API and the metrics listener: a small ASGI server on h11, for Trio.

Why not hypercorn. Hypercorn served the API until its cost was measured: 0.40-0.55 ms of CPU per
request for a hello-world app on this machine (a task per request, an event layer over h11, a
task group per connection), more than the whole API handler and its durable write together.
The same app on this server costs 0.09-0.18 ms, and a single-message request to the API
0.42-0.62 ms in all instead of 0.76-0.90 (``smsgw bench --api`` runs both servers side by
side). HTTP parsing stays h11's (the webhook client uses it too); what is here is the
connection loop.

What it serves: HTTP/1.1 and 1.0, keep-alive, pipelined requests (answered in order), request
bodies streamed to the app (``Content-Length`` or chunked, with ``100-continue``), ASGI 3 ``http``
scopes. What it does not: TLS (put a reverse proxy in front for that), HTTP/2, websockets,
the lifespan protocol (the gateway sets its apps up before serving them).

One task per connection runs its requests one after the other, calling the app in that task:
a request costs no task of its own. At most :attr:`ServerSettings.max_connections` are served at
once: beyond that the server accepts no more until one closes (the kernel's backlog holds the
newcomers, as a busy server's would), and logs a warning. Every wait on the client is bounded by
:attr:`ServerSettings.timeout`; when it expires the connection is closed without an answer.
A malformed request gets h11's status for it (400, or 431 for an oversized head) and the
connection closes. An app that fails before answering gives the client a 500; after, a
truncated answer (the connection closes). Either way the error is logged with the request.

ASGI notes: ``receive()`` after the end of the body (or once the client has gone) returns
``http.disconnect`` at once; the apps served here never wait for a disconnect.
"""

from __future__ import annotations

import email.utils
import errno
import http
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import unquote

import attrs
import h11
import trio

from smsgw.asgi import ASGIApp, Message

__all__ = ["ServerSettings", "serve"]

log = logging.getLogger("smsgw.http")

#: Bytes asked of the socket at a time.
RECEIVE_SIZE = 64 * 1024

_REASONS = {status.value: status.phrase.encode("ascii") for status in http.HTTPStatus}


@attrs.frozen
class ServerSettings:
    """How the server treats its clients (the API and metrics listeners use the defaults)."""

    #: Seconds any one wait on a client may take: the next request on an idle keep-alive
    #: connection, the rest of a request's head, each piece of its body, each send of an answer.
    timeout: float = 30.0
    #: Longest request head (request line and headers); longer is answered 431.
    max_head: int = 64 * 1024
    #: Request body an app left unread that is read and dropped to keep the connection; beyond
    #: it, the connection closes after the answer.
    max_drain: int = 64 * 1024
    #: Connections the kernel keeps waiting to be accepted (capped by net.core.somaxconn): a
    #: small backlog drops a burst of clients connecting at once, who then wait for a SYN retry.
    backlog: int = 1024
    #: Connections served at once; beyond, no more are accepted until one closes (each holds a
    #: file descriptor and a task: the cap keeps a flood of idle clients from taking them all).
    max_connections: int = 1024


def _url(sockname: tuple[Any, ...]) -> str:
    host, port = sockname[0], sockname[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    settings: ServerSettings = ServerSettings(),
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled. ``task_status.started`` gets the URL of
    each listening socket (``["http://127.0.0.1:8080"]``), so ``port`` 0 can be discovered."""
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=settings.backlog)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            connection = _Connection(app, settings, stream)
        except OSError:  # reset before it was served: getpeername() fails
            await trio.aclose_forcefully(stream)
            return
        try:
            await connection.serve()
        except Exception:  # a bug here must not take the listener down
            log.exception("HTTP connection from %s failed", connection.client)

    urls = [_url(listener.socket.getsockname()) for listener in listeners]
    capacity = trio.CapacityLimiter(settings.max_connections)
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept, listener, handle, capacity, nursery)
        task_status.started(urls)


#: accept() errors that mean "out of resources": wait and try again, as trio.serve_listeners.
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
#: Seconds to wait after such an error.
_ACCEPT_RETRY = 0.1


async def _accept(
    listener: trio.SocketListener,
    handle: Callable[[trio.SocketStream], Awaitable[None]],
    capacity: trio.CapacityLimiter,
    nursery: trio.Nursery,
) -> None:
    """Accept connections on ``listener`` while ``capacity`` has room; serve each in
    ``nursery``, which gives its place back when the connection ends. Reaching the limit is
    logged once, not again until a place was free before the next accept."""
    at_limit = False
    while True:
        place = object()
        if capacity.available_tokens == 0 and not at_limit:
            log.warning(
                "HTTP connections at the limit (%d): no more accepted until one closes",
                capacity.total_tokens,
            )
        at_limit = capacity.available_tokens == 0
        await capacity.acquire_on_behalf_of(place)
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                raise  # the server stops (and its limiter with it)
            capacity.release_on_behalf_of(place)
            log.error("accept() failed (%s): trying again in %.1fs", exc, _ACCEPT_RETRY)
            await trio.sleep(_ACCEPT_RETRY)
            continue
        nursery.start_soon(_serve_one, stream, handle, capacity, place)


async def _serve_one(
    stream: trio.SocketStream,
    handle: Callable[[trio.SocketStream], Awaitable[None]],
    capacity: trio.CapacityLimiter,
    place: object,
) -> None:
    try:
        await handle(stream)
    finally:
        capacity.release_on_behalf_of(place)


class _Closed(OSError):
    """The connection is over: the client went away or timed out. An app's ``send()`` raises it
    once the client is gone (ASGI: an ``OSError``)."""


class _Date:
    """The ``date`` header, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())  # wall-clock: a timestamp for the header, not a timer
        if now != self._second:
            self._second = now
            self._value = email.utils.formatdate(now, usegmt=True).encode("ascii")
        return self._value


_date = _Date()


def _head_size(request: h11.Request) -> int:
    """About the bytes of ``request``'s head (request line, headers and their separators)."""
    size = len(request.method) + len(request.target) + 12
    for name, value in request.headers:
        size += len(name) + len(value) + 4
    return size


def _response(status: int, headers: Iterable[tuple[bytes, bytes]]) -> h11.Response:
    """The head of an answer, with its reason phrase and a ``date``."""
    return h11.Response(
        status_code=status,
        headers=[(b"date", _date()), *headers],
        reason=_REASONS.get(status, b""),
    )


class _Connection:
    def __init__(self, app: ASGIApp, settings: ServerSettings, stream: trio.SocketStream) -> None:
        self._app = app
        self._settings = settings
        self._stream = stream
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=settings.max_head)
        sock = stream.socket
        self.client = tuple(sock.getpeername()[:2])
        self._server = tuple(sock.getsockname()[:2])

    async def serve(self) -> None:
        try:
            while await self._cycle():
                self._h11.start_next_cycle()
        except _Closed:
            pass
        finally:
            await trio.aclose_forcefully(self._stream)

    # -- the socket --------------------------------------------------------------------------

    async def _receive(self, deadline: float) -> None:
        """More bytes for h11 (``b""``: the client closed its side), by ``deadline``."""
        with trio.move_on_at(deadline):
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except trio.BrokenResourceError:
                raise _Closed from None
            self._h11.receive_data(data)
            return
        raise _Closed

    async def _send(self, data: bytes) -> None:
        with trio.move_on_after(self._settings.timeout):
            try:
                await self._stream.send_all(data)
            except trio.BrokenResourceError:
                raise _Closed from None
            return
        raise _Closed

    async def _next_event(self, deadline: float | None = None) -> Any:
        """h11's next event, reading as needed: by ``deadline`` (None: each read within the
        timeout)."""
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            await self._receive(
                deadline if deadline is not None else trio.current_time() + self._settings.timeout
            )

    # -- one request -------------------------------------------------------------------------

    async def _cycle(self) -> bool:
        """Serve one request; whether the connection may carry another."""
        settings = self._settings
        try:
            # The whole head, idle time before it included, within one timeout: a client
            # sending it a byte at a time cannot hold the connection longer.
            event = await self._next_event(trio.current_time() + settings.timeout)
        except h11.RemoteProtocolError as exc:
            await self._refuse(exc.error_status_hint)
            return False
        if not isinstance(event, h11.Request):  # ConnectionClosed: the client is done
            return False
        # h11 bounds only a head still arriving; one that came whole is measured here.
        if _head_size(event) > settings.max_head:
            await self._refuse(431)
            return False
        exchange = _Exchange(self, event)
        try:
            await self._app(exchange.scope(), exchange.receive, exchange.send)
        except _Closed:
            raise
        except Exception:
            if exchange.gone:
                raise _Closed from None
            log.exception("HTTP %s %s: the app failed", exchange.method, exchange.path)
            if exchange.started:
                raise _Closed from None
            await self._refuse(500)
            return False
        if not exchange.finished:
            if exchange.gone:
                raise _Closed
            if exchange.broken is not None and not exchange.started:
                # A malformed body: the client's fault, answered as h11 advises (400).
                await self._refuse(exchange.broken.error_status_hint)
                return False
            log.error("HTTP %s %s: the app returned without answering", exchange.method,
                      exchange.path)  # fmt: skip
            if exchange.started:
                raise _Closed
            await self._refuse(500)
            return False
        if exchange.unasked_body:
            # The client waited for "100 Continue" and got the answer instead: it may send the
            # body or not, so the next bytes cannot be told apart from a next request.
            return False
        return await self._drain()

    async def _refuse(self, status: int) -> None:
        """Answer ``status`` with no body and close, if an answer can still be sent."""
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        headers = [(b"content-length", b"0"), (b"connection", b"close")]
        head = self._h11.send(_response(status, headers))
        await self._send(head + self._h11.send(h11.EndOfMessage()))

    async def _drain(self) -> bool:
        """After an answer: read what is left of the request (at most ``max_drain`` bytes of
        body), so the next request can be read; whether the connection may go on."""
        if self._h11.our_state is not h11.DONE:
            return False  # the answer ended the connection (``connection: close``, HTTP/1.0)
        left = self._settings.max_drain
        while self._h11.their_state is h11.SEND_BODY:
            try:
                event = await self._next_event()
            except h11.RemoteProtocolError:
                return False
            if isinstance(event, h11.Data):
                left -= len(event.data)
                if left < 0:
                    return False
        return self._h11.their_state is h11.DONE


@attrs.define(eq=False)
class _Exchange:
    """One request and its answer: the ASGI ``receive`` and ``send`` of an app call."""

    connection: _Connection
    request: h11.Request
    started: bool = False
    finished: bool = False
    unasked_body: bool = False  # answered while the client still waited for 100 Continue
    gone: bool = False  # the client went away (or timed out) during the exchange
    broken: h11.RemoteProtocolError | None = None  # the body was malformed
    _body_done: bool = False
    _pending: bytes = b""  # the response head, sent with the first piece of body

    @property
    def method(self) -> str:
        return self.request.method.decode("ascii")

    @property
    def path(self) -> str:
        return unquote(self.request.target.partition(b"?")[0].decode("latin-1"))

    def scope(self) -> dict[str, Any]:
        raw_path, _, query = self.request.target.partition(b"?")
        c = self.connection
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.request.http_version.decode("ascii"),
            "method": self.method,
            "scheme": "http",
            "path": self.path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": list(self.request.headers),
            "client": c.client,
            "server": c._server,
        }

    async def receive(self) -> Message:
        c = self.connection
        if self._body_done or self.finished:
            return {"type": "http.disconnect"}
        h = c._h11
        try:
            if h.they_are_waiting_for_100_continue:
                await c._send(h.send(h11.InformationalResponse(status_code=100, headers=[])))
            event = await c._next_event()
        except _Closed:
            self._body_done = self.gone = True
            return {"type": "http.disconnect"}
        except h11.RemoteProtocolError as exc:
            self._body_done = True
            self.broken = exc
            return {"type": "http.disconnect"}
        if isinstance(event, h11.Data):
            return {"type": "http.request", "body": bytes(event.data), "more_body": True}
        self._body_done = True  # EndOfMessage
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: Message) -> None:
        if self.gone:
            raise _Closed("the client has gone")
        h = self.connection._h11
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            response = _response(message["status"], message.get("headers", ()))
            self.unasked_body = h.they_are_waiting_for_100_continue
            self._pending = h.send(response)
            self.started = True
        elif kind == "http.response.body":
            if not self.started or self.finished:
                raise RuntimeError(
                    "http.response.body " + ("after the end" if self.finished else "before start")
                )
            data = self._pending
            self._pending = b""
            body = message.get("body", b"")
            if body and self.request.method != b"HEAD":
                data += h.send(h11.Data(data=body))
            if not message.get("more_body", False):
                data += h.send(h11.EndOfMessage())
                self.finished = True
            if data:
                try:
                    await self.connection._send(data)
                except _Closed:
                    self.gone = True
                    raise
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
