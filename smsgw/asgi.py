"""The few ASGI pieces the HTTP API and the metrics listener share: types and the lifespan
protocol (ASGI servers such as hypercorn ask every app for it; the gateway's own server,
:mod:`smsgw.asgi_server`, does not; neither app has start-up or shut-down work)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer the lifespan protocol: acknowledge start-up and shut-down, return on shut-down."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
