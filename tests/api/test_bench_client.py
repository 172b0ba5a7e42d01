"""The benchmark's load generator against real servers on 127.0.0.1: hypercorn, and raw TCP
servers that answer in awkward ways (split into pieces, closing, chunked)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from smsgw.api.bench_client import ClientError, build_request, load
from smsgw.asgi import Receive, Scope, Send, lifespan

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def _echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 201 with the request body's length, or 404 for any path but /ok."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    status = 201 if scope["path"] == "/ok" else 404
    answer = str(len(body)).encode()
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


async def _hypercorn(nursery: trio.Nursery, **settings: Any) -> int:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    for name, value in settings.items():
        setattr(config, name, value)
    app: Any = _echo_length
    binds: list[str] = await nursery.start(functools.partial(serve, app, config))
    return int(binds[0].rsplit(":", 1)[1])


async def _raw_server(nursery: trio.Nursery, handler: Handler) -> int:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def _read_request(stream: trio.SocketStream, buffer: bytearray) -> bool:
    """Reads one request (head and Content-Length body) into nothing; False at EOF."""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(4096)
        if not data:
            return False
        buffer += data
    end = buffer.index(b"\r\n\r\n") + 4
    length = next(
        int(line.split(b":")[1])
        for line in bytes(buffer[:end]).split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(buffer) < end + length:
        buffer += await stream.receive_some(4096)
    del buffer[: end + length]
    return True


def test_build_request_is_http_with_a_content_length() -> None:
    raw = build_request("127.0.0.1", 8080, "/api/v1/messages", {"X-Api-Key": "k"}, b'{"a":1}')
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/v1/messages HTTP/1.1"
    assert set(lines[1:]) == {b"Host: 127.0.0.1:8080", b"Content-Length: 7", b"X-Api-Key: k"}
    assert body == b'{"a":1}'


async def test_counts_answers_from_hypercorn_over_keep_alive(nursery: trio.Nursery) -> None:
    # keep_alive_max_requests=7: hypercorn closes each connection after 7 answers, and the
    # client opens another (every request is still answered).
    port = await _hypercorn(nursery, keep_alive_max_requests=7)
    body = b"x" * 3000
    ok = build_request("127.0.0.1", port, "/ok", {}, body)
    with trio.fail_after(30):
        figures = await load("127.0.0.1", port, ok, count=100, concurrency=3)
        missing = await load(
            "127.0.0.1", port, build_request("127.0.0.1", port, "/x", {}, b""), count=5,
            concurrency=2,
        )  # fmt: skip
    assert figures["statuses"] == {"201": 100}
    assert figures["requests_per_second"] > 0
    assert 0 < figures["p50"] <= figures["p99"]
    assert missing["statuses"] == {"404": 5}
    assert missing["requests_per_second"] == 0  # only 2xx answers count


async def test_reads_answers_split_into_pieces(nursery: trio.Nursery) -> None:
    answer = (
        b"HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n"
        b"hello world"
    )

    async def dribble(stream: trio.SocketStream) -> None:
        buffer = bytearray()
        while await _read_request(stream, buffer):
            for i in range(0, len(answer), 5):  # 5 bytes at a time
                await stream.send_all(answer[i : i + 5])
                await trio.sleep(0.001)

    port = await _raw_server(nursery, dribble)
    with trio.fail_after(30):
        figures = await load("127.0.0.1", port, build_request("h", port, "/", {}, b"{}"), count=20,
                             concurrency=2)  # fmt: skip
    assert figures["statuses"] == {"202": 20}


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "unsupported"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", "without Content-Length"),
        (b"SMTP ready\r\n\r\n", "not an HTTP/1.x status line"),
        (b"", "closed the connection"),
    ],
)
async def test_refuses_answers_it_cannot_read(
    nursery: trio.Nursery, answer: bytes, problem: str
) -> None:
    async def answer_once(stream: trio.SocketStream) -> None:
        if await _read_request(stream, bytearray()):
            await stream.send_all(answer)

    port = await _raw_server(nursery, answer_once)
    request = build_request("127.0.0.1", port, "/", {}, b"")
    with trio.fail_after(10), pytest.RaisesGroup(pytest.RaisesExc(ClientError, match=problem)):
        await load("127.0.0.1", port, request, count=1, concurrency=1)
