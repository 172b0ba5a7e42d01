"""A forward proxy for the tests: trio + h11 on 127.0.0.1, and a record of what it was asked.

- An absolute-form request (``POST http://host:port/path``) is forwarded to its origin in
  origin-form with the same headers less ``Proxy-Authorization`` (as a real proxy does), on a
  new upstream connection each time; the answer goes back as it came. The client's connection
  is kept for its next request.
- ``CONNECT host:port`` opens a TCP connection to the target, answers 200 and then relays the
  bytes both ways until either side closes; or, with :attr:`ForwardProxy.refuse` set, answers
  that status instead.

``hosts`` names that only the proxy can resolve (``{"hooks.test": "127.0.0.1"}``): a target
the client could not have connected to itself. Only loopback targets are reached (others get
a 502), so that a test can never send traffic elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import h11
import trio

LOOPBACK = ("127.0.0.1", "::1", "localhost")
_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, OSError)


@attrs.frozen
class Seen:
    """One request the proxy received."""

    connection: int  # the client connection's number, from 0 in the order accepted
    method: bytes
    target: bytes
    proxy_authorization: bytes | None


class ForwardProxy:
    def __init__(self, hosts: Mapping[str, str] | None = None) -> None:
        self.hosts = dict(hosts or {})
        self.refuse: int | None = None  # answer every CONNECT with this status
        self.seen: list[Seen] = []
        self.connections = 0
        self.port = 0
        self._scope = trio.CancelScope()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, credentials: str = "") -> str:
        """The proxy's URL, with ``user:password`` if given."""
        return f"http://{credentials}@{self.address}" if credentials else f"http://{self.address}"

    async def start(self, nursery: trio.Nursery) -> None:
        listeners: list[trio.SocketListener] = await nursery.start(self._serve)
        self.port = listeners[0].socket.getsockname()[1]

    def stop(self) -> None:
        """Stop listening: a connection to the port is refused."""
        self._scope.cancel()

    async def _serve(self, *, task_status: trio.TaskStatus[Any]) -> None:
        with self._scope:
            await trio.serve_tcp(self._handle, 0, host="127.0.0.1", task_status=task_status)

    async def _handle(self, client: trio.SocketStream) -> None:
        number = self.connections
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while (received := await _receive_message(conn, client)) is not None:
                request, body = received
                assert isinstance(request, h11.Request)
                authorization = [v for k, v in request.headers.raw_items() if _is_proxy_auth(k)]
                first = authorization[0] if authorization else None
                self.seen.append(Seen(number, request.method, request.target, first))
                if request.method == b"CONNECT":
                    await self._tunnel(conn, client, request.target)
                    return
                await self._forward(conn, client, request, body)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except _ERRORS:
            return
        finally:
            await trio.aclose_forcefully(client)

    def _resolve(self, host: str) -> str | None:
        host = self.hosts.get(host, host)
        return host if host in LOOPBACK else None

    async def _forward(
        self, conn: h11.Connection, client: trio.SocketStream, request: h11.Request, body: bytes
    ) -> None:
        authority, _, path = request.target.partition(b"://")[2].partition(b"/")
        host, _, port = authority.decode("ascii").rpartition(":")
        address = self._resolve(host.strip("[]"))
        if address is None:
            await _answer(conn, client, _refusal(502), b"")
            return
        headers = [(k, v) for k, v in request.headers.raw_items() if not _is_proxy_auth(k)]
        async with await trio.open_tcp_stream(address, int(port)) as upstream:
            up = h11.Connection(h11.CLIENT)
            outgoing = h11.Request(method=request.method, target=b"/" + path, headers=headers)
            await upstream.send_all(
                b"".join(up.send(e) or b"" for e in (outgoing, h11.Data(data=body)))
                + (up.send(h11.EndOfMessage()) or b"")
            )
            received = await _receive_message(up, upstream)
        if received is None:
            raise trio.BrokenResourceError("upstream closed")
        answer, answer_body = received
        assert isinstance(answer, h11.Response)
        relayed = h11.Response(status_code=answer.status_code, headers=answer.headers.raw_items())
        await _answer(conn, client, relayed, answer_body)

    async def _tunnel(self, conn: h11.Connection, client: trio.SocketStream, target: bytes) -> None:
        host, _, port = target.decode("ascii").rpartition(":")
        address = self._resolve(host.strip("[]"))
        if self.refuse is not None or address is None:
            await _answer(conn, client, _refusal(self.refuse or 502), b"")
            return
        async with await trio.open_tcp_stream(address, int(port)) as upstream:
            await client.send_all(conn.send(h11.Response(status_code=200, headers=[])) or b"")
            early, _ = conn.trailing_data  # sent by the client right after its CONNECT
            if early:
                await upstream.send_all(early)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pipe, client, upstream, nursery.cancel_scope)
                nursery.start_soon(_pipe, upstream, client, nursery.cancel_scope)


async def _receive_message(
    conn: h11.Connection, stream: trio.SocketStream
) -> tuple[h11.Request | h11.Response, bytes] | None:
    """The next request (or answer, on a client connection) and its body; None when the other
    side has closed the connection."""
    head: h11.Request | h11.Response | None = None
    body = b""
    while not isinstance(event := conn.next_event(), h11.EndOfMessage):
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Request | h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.ConnectionClosed):
            return None
    assert head is not None
    return head, body


async def _answer(
    conn: h11.Connection, stream: trio.SocketStream, response: h11.Response, body: bytes
) -> None:
    data = (conn.send(response) or b"") + (conn.send(h11.Data(data=body)) or b"")
    await stream.send_all(data + (conn.send(h11.EndOfMessage()) or b""))


def _refusal(status: int) -> h11.Response:
    return h11.Response(status_code=status, headers=[(b"Content-Length", b"0")])


async def _pipe(
    source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
) -> None:
    """Copy until either side is done, then end the whole tunnel."""
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except _ERRORS:
        pass
    scope.cancel()


def _is_proxy_auth(name: bytes) -> bool:
    return name.lower() == b"proxy-authorization"
