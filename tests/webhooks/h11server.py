"""A scriptable HTTP/1.1 server for the pool's tests: h11 over real TCP on 127.0.0.1.

Unlike :mod:`receiver` (hypercorn, a real-world server), this one lets a test decide exactly
what happens on the connection: the status and body of the answer, a delay before it, a
``Connection: close``, closing the connection after the answer (as a server closing an idle
keep-alive connection does), or raw bytes instead of HTTP. It counts connections and records
every request with the connection it came on.
"""

from __future__ import annotations

import ssl
from typing import Any

import attrs
import h11
import trio


@attrs.frozen
class Answer:
    status: int = 204
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    delay: float = 0.0  # seconds before answering
    close_after: bool = False  # close the connection once answered (an idle-timeout close)
    raw: bytes | None = None  # send these bytes instead of an HTTP answer, then close


@attrs.frozen
class Request:
    connection: int  # the connection's number, from 0 in the order accepted
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]  # as received: names in their sent case
    body: bytes

    def header(self, name: str) -> str:
        wanted = name.lower().encode()
        (value,) = [v for k, v in self.headers if k.lower() == wanted]
        return value.decode("latin-1")


class Server:
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.answer = Answer()
        self.requests: list[Request] = []
        self.connections = 0
        self.port = 0
        self._ssl_context = ssl_context
        self._scope = trio.CancelScope()

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hook"

    async def start(self, nursery: trio.Nursery) -> None:
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = await nursery.start(self._serve)
        listener = listeners[0]
        if isinstance(listener, trio.SSLListener):
            listener = listener.transport_listener
        assert isinstance(listener, trio.SocketListener)
        self.port = listener.socket.getsockname()[1]

    def stop(self) -> None:
        self._scope.cancel()

    async def _serve(self, *, task_status: trio.TaskStatus[Any]) -> None:
        with self._scope:
            if self._ssl_context is None:
                await trio.serve_tcp(self._handle, 0, host="127.0.0.1", task_status=task_status)
            else:
                await trio.serve_ssl_over_tcp(
                    self._handle, 0, self._ssl_context, host="127.0.0.1", task_status=task_status
                )

    async def _handle(self, stream: trio.abc.Stream) -> None:
        number = self.connections
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        target, body = b"", b""
        headers: tuple[tuple[bytes, bytes], ...] = ()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(bytes(await stream.receive_some(65536)))
                elif isinstance(event, h11.Request):
                    target, headers, body = event.target, tuple(event.headers.raw_items()), b""
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    self.requests.append(Request(number, target, headers, body))
                    if not await self._answer(conn, stream):
                        return
                    conn.start_next_cycle()
                else:  # ConnectionClosed
                    return
        except (trio.BrokenResourceError, h11.RemoteProtocolError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    async def _answer(self, conn: h11.Connection, stream: trio.abc.Stream) -> bool:
        """Answer; whether the connection goes on."""
        answer = self.answer
        await trio.sleep(answer.delay)
        if answer.raw is not None:
            await stream.send_all(answer.raw)
            return False
        headers = list(answer.headers)
        if answer.status not in (204, 304):
            headers.append((b"Content-Length", b"%d" % len(answer.body)))
        data = conn.send(h11.Response(status_code=answer.status, headers=headers))
        assert data is not None
        data += conn.send(h11.Data(data=answer.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)
        return not answer.close_after and conn.our_state is h11.DONE
