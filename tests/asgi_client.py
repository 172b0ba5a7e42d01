"""A raw HTTP/1.1 test client for ``smsgw.asgi_server``, over real TCP on loopback.

Requests go out as hand-written bytes, so a test controls framing exactly (pipelining, chunk
sizes, malformed heads). Answers are parsed by h11 acting as the client: h11 only parses a
response after it has "sent" a request, so each answer is read with a fresh client connection
that is told about a request it never puts on the wire; the bytes h11 leaves unread stay
buffered for the next answer (pipelining).

No timeouts here: each test owns its own ``trio.fail_after``.
"""

from __future__ import annotations

import functools
import select
from typing import Any

import attrs
import h11
import trio

from smsgw.asgi import ASGIApp
from smsgw.asgi_server import ServerSettings, serve

Header = tuple[bytes, bytes]


@attrs.frozen
class Server:
    """A running server: the URLs it reported through ``task_status.started`` and its port."""

    urls: list[str]
    port: int


async def start_server(
    nursery: trio.Nursery,
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    settings: ServerSettings | None = None,
) -> Server:
    """Start ``serve(app, host, 0)`` in ``nursery``; it runs until the nursery is cancelled."""
    kwargs: dict[str, Any] = {} if settings is None else {"settings": settings}
    urls = await nursery.start(functools.partial(serve, app, host, 0, **kwargs))
    port = int(urls[0].rsplit(":", 1)[1])
    return Server(urls=list(urls), port=port)


@attrs.frozen
class Response:
    """One parsed answer. ``informational`` lists the status of each 1xx before it."""

    status: int
    http_version: bytes
    headers: list[Header]
    body: bytes
    informational: list[int]

    def header(self, name: bytes) -> bytes | None:
        """The value of the header ``name`` (lower case), or None; several values are joined."""
        values = [value for key, value in self.headers if key == name]
        return b", ".join(values) if values else None

    @property
    def header_names(self) -> list[bytes]:
        return [key for key, _ in self.headers]


class Connection:
    """One client connection. ``response()`` parses the next answer, ``read_to_end()`` reads
    everything until the server closes (an orderly EOF and a reset both count as closed)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()
        self._eof = False

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> Connection:
        return cls(await trio.open_tcp_stream(host, port))

    @property
    def local_address(self) -> tuple[str, int]:
        host, port, *_ = self.stream.socket.getsockname()
        return host, port

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _receive(self) -> bytes:
        """The next bytes from the server; b"" once it has closed or reset the connection."""
        if self._eof:
            return b""
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            self._eof = True
        return data

    async def response(self, method: bytes = b"GET") -> Response:
        """Read and parse the next answer (to a request with ``method``: HEAD has no body)."""
        parser = h11.Connection(h11.CLIENT)
        parser.send(h11.Request(method=method, target="/", headers=[("host", "test")]))
        parser.send(h11.EndOfMessage())
        if self._buffer:  # (receive_data(b"") would tell h11 the server has closed)
            parser.receive_data(bytes(self._buffer))
            self._buffer.clear()
        informational: list[int] = []
        head: h11.Response | None = None
        body = bytearray()
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                parser.receive_data(await self._receive())
            elif isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected event before the end of an answer: {event!r}")
        leftover, _ = parser.trailing_data
        self._buffer[:] = leftover
        assert head is not None
        return Response(
            status=head.status_code,
            http_version=head.http_version,
            headers=[(name, value) for name, value in head.headers.raw_items()],
            body=bytes(body),
            informational=informational,
        )

    async def read_until(self, marker: bytes) -> bytes:
        """Raw bytes up to and including ``marker``; what follows stays buffered."""
        while marker not in self._buffer:
            data = await self._receive()
            if not data:
                raise AssertionError(f"closed before {marker!r}; got {bytes(self._buffer)!r}")
            self._buffer += data
        end = self._buffer.index(marker) + len(marker)
        taken = bytes(self._buffer[:end])
        del self._buffer[:end]
        return taken

    async def read_to_end(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        while data := await self._receive():
            self._buffer += data
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest

    async def at_eof(self) -> bool:
        """Wait until there is something to read or the server has closed; whether it closed
        with nothing left to read."""
        while not self._buffer:
            data = await self._receive()
            if not data:
                return True
            self._buffer += data
        return False

    async def expect_closed(self) -> None:
        """The server closes the connection without sending anything more."""
        rest = await self.read_to_end()
        assert rest == b"", f"expected the connection to close, got {rest!r}"

    def has_unread_bytes(self) -> bool:
        """Whether anything has arrived that was not read yet (without waiting)."""
        if self._buffer:
            return True
        readable, _, _ = select.select([self.stream.socket.fileno()], [], [], 0)
        return bool(readable)

    async def aclose(self) -> None:
        await self.stream.aclose()


def request(
    method: str = "GET",
    target: str = "/",
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "1.1",
) -> bytes:
    """A request's bytes: a Host header, then ``headers``, then a Content-Length when there is a
    body and ``headers`` declares no framing of its own."""
    lines = [f"{method} {target} HTTP/{version}", "Host: test"]
    extra = headers or []
    lines += [f"{name}: {value}" for name, value in extra]
    framed = {name.lower() for name, _ in extra} & {"content-length", "transfer-encoding"}
    if body and not framed:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(pieces: list[bytes]) -> bytes:
    """``pieces`` in chunked transfer-encoding, with the terminating zero chunk."""
    out = bytearray()
    for piece in pieces:
        if not piece:
            raise ValueError("an empty chunk would end the body")
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return bytes(out + b"0\r\n\r\n")
