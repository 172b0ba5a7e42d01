"""A webhook receiver for the tests: a real HTTP server (hypercorn, Trio worker) on 127.0.0.1.

Its ``mode`` decides the answer: ``accept`` (204), ``fail`` (500, the request is recorded:
the receiver processed it but said no, so it must come again), ``hang`` (no answer, until
the deliverer gives up waiting). :meth:`Receiver.stop` closes the port (connection refused)
and :meth:`Receiver.start` opens it again on the same port.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

#: How long ``hang`` holds a request: far longer than the deliverer's timeout in the tests.
HANG_SECONDS = 30.0


@attrs.frozen
class Received:
    """One request as the receiver saw it, and what it answered."""

    headers: Mapping[str, str]
    body: bytes
    answered: int | None  # None: never answered (hang)


class Receiver:
    def __init__(self) -> None:
        self.mode = "accept"
        self.received: list[Received] = []
        self.active = 0
        self.max_active = 0
        self.port = 0
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self, nursery: trio.Nursery) -> None:
        """Listen (on the previous port, if there was one) and return once serving."""
        binds: list[str] = await nursery.start(self._serve, self.port)
        self.port = int(binds[0].rsplit(":", 1)[1])

    async def stop(self) -> None:
        assert self._scope is not None
        self._scope.cancel()
        with trio.fail_after(10):
            await self._stopped.wait()

    async def _serve(self, port: int, *, task_status: trio.TaskStatus[list[str]]) -> None:
        self._stopped = trio.Event()
        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        config.graceful_timeout = 0.1
        try:
            with trio.CancelScope() as self._scope:
                await serve(self._app, config, task_status=task_status)  # type: ignore[arg-type]
        finally:
            self._stopped.set()

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.mode == "hang":
                self.received.append(Received(headers, body, None))
                await trio.sleep(HANG_SECONDS)
                return
            status = 500 if self.mode == "fail" else 204
            # Yield once so that concurrent requests overlap and max_active means something.
            await trio.sleep(0.005)
            self.received.append(Received(headers, body, status))
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        finally:
            self.active -= 1
