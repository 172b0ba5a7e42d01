"""The load generator of ``smsgw bench --api``: a lean HTTP/1.1 keep-alive client.

A benchmark client must cost far less CPU than the server it measures: on a 2-core machine
it shares the cores with the server, and a heavy client (httpx costs more per request than
hypercorn does) measures itself. So each connection sends one pre-built request, byte for
byte the same every time, and reads the answer with a minimal reader: status line, then
``Content-Length`` bytes of body. That is enough for the server under test, which always
answers with a ``Content-Length`` (anything else is refused with :class:`ClientError`, not
guessed at). It is a measuring tool, not an HTTP client: the product sends HTTP with httpx.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import trio

__all__ = ["ClientError", "build_request", "load"]

#: Longest response head accepted (status line and headers).
MAX_HEAD = 16 * 1024
#: Bytes asked of the socket at a time.
RECEIVE_SIZE = 64 * 1024


class ClientError(Exception):
    """The server's answer is not one this client reads (or the connection ended)."""


def build_request(
    host: str, port: int, path: str, headers: dict[str, str], body: bytes, method: str = "POST"
) -> bytes:
    """``POST path`` with ``body`` (or another ``method``), as the bytes sent on the wire."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Responses:
    """Reads answers one after the other off a keep-alive connection."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def _fill(self) -> None:
        data = await self._stream.receive_some(RECEIVE_SIZE)
        if not data:
            raise ClientError("the server closed the connection")
        self._buffer += data

    async def status(self) -> tuple[int, bool]:
        """The next answer's status code (its body read and dropped), and whether the server
        closes the connection after it (hypercorn does after ``keep_alive_max_requests``)."""
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > MAX_HEAD:
                raise ClientError(f"response head over {MAX_HEAD} bytes")
            await self._fill()
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        version, _, rest = head[0].partition(" ")
        code = rest[:3]
        if not (version.startswith("HTTP/1.") and code.isdigit()):
            raise ClientError(f"not an HTTP/1.x status line: {head[0]!r}")
        length: int | None = None
        close = False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection":
                close = value.strip().lower() == "close"
            elif name == "transfer-encoding":
                raise ClientError(f"unsupported response header: {line!r}")
        if length is None:
            raise ClientError("response without Content-Length")
        total = end + 4 + length
        while len(self._buffer) < total:
            await self._fill()
        del self._buffer[:total]
        return int(code), close


async def load(
    host: str, port: int, request: bytes, *, count: int, concurrency: int
) -> dict[str, Any]:
    """Send ``request`` ``count`` times over ``concurrency`` keep-alive connections, each
    waiting for its answer before the next request. The figures as a dict: ``seconds``,
    ``requests_per_second`` (answered 2xx), ``p50``/``p99`` latency, ``statuses``."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    todo: Iterator[int] = iter(range(count))

    async def connection() -> None:
        stream: trio.SocketStream | None = None
        try:
            for _ in todo:
                if stream is None:
                    stream = await trio.open_tcp_stream(host, port)
                    responses = _Responses(stream)
                sent = time.perf_counter()  # wall-clock: measuring elapsed time
                await stream.send_all(request)
                status, close = await responses.status()
                latencies.append(time.perf_counter() - sent)  # wall-clock
                statuses[status] = statuses.get(status, 0) + 1
                if close:
                    await stream.aclose()
                    stream = None
        finally:
            if stream is not None:
                await stream.aclose()

    start = time.perf_counter()  # wall-clock
    async with trio.open_nursery() as nursery:
        for _ in range(min(concurrency, count)):
            nursery.start_soon(connection)
    elapsed = time.perf_counter() - start  # wall-clock
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    ordered = sorted(latencies)
    return {
        "seconds": elapsed,
        "requests_per_second": ok / elapsed,
        "p50": statistics.median(ordered) if ordered else 0.0,
        "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }
