"""Running the API: hypercorn's Trio worker on ``[api] listen:port``, in the caller's nursery.

::

    async with trio.open_nursery() as nursery:
        gateway = await nursery.start(Gateway(config).run)
        port = await nursery.start(functools.partial(serve_api, gateway, config))

The remembered idempotent answers live in the gateway's database file (table
``api_idempotency``), through a connection of the API's own. The server stops when its
nursery is cancelled (the daemon does so after the gateway has drained).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from smsgw.adapters.sqlite import open_sqlite
from smsgw.config import GatewayConfig
from smsgw.gateway import Gateway

from .app import ApiApp
from .coalesce import Coalescer
from .http import ASGIApp
from .idempotency import Idempotency

__all__ = ["bound_port", "serve_api"]

log = logging.getLogger("smsgw.api")

#: Seconds an idle keep-alive connection is kept, and a request's headers may take to arrive.
KEEP_ALIVE = 30
#: Seconds in-flight requests get to finish when the server is told to stop gracefully.
GRACEFUL = 5
#: The listening socket's backlog (the kernel caps it at net.core.somaxconn).
BACKLOG = 1024


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bound_port(binds: list[str]) -> int:
    """The port hypercorn bound (``http://127.0.0.1:12345`` -> 12345)."""
    return int(binds[0].rsplit(":", 1)[1])


def hypercorn_config(config: GatewayConfig) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [_bind(config.api.listen, config.api.port)]
    hc.accesslog = None
    # Hypercorn's own messages go through logging (the daemon's format), not to stderr.
    hc.errorlog = logging.getLogger("smsgw.api.server")
    hc.keep_alive_timeout = KEEP_ALIVE
    hc.read_timeout = KEEP_ALIVE
    hc.graceful_timeout = GRACEFUL
    hc.include_server_header = False
    # Headers beyond 64 KiB are refused by hypercorn itself; bodies are limited by the app.
    hc.h11_max_incomplete_size = 64 * 1024
    # Connections not yet accepted that the kernel keeps: hypercorn's 100 drops a burst of
    # clients connecting at once (they then wait for a SYN retry, a second or more).
    hc.backlog = BACKLOG
    return hc


async def serve_api(
    gateway: Gateway,
    config: GatewayConfig,
    *,
    extra_routes: Mapping[str, ASGIApp] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the API for ``gateway`` (running: its database is open) until cancelled;
    ``task_status.started(port)`` once it accepts connections. ``extra_routes`` mounts other
    ASGI apps at exact paths (``{"/metrics": prometheus_app}``)."""
    async with open_sqlite(gateway.store.path) as db:
        idempotency = Idempotency(db, window=config.api.idempotency_window)
        await idempotency.create_schema()
        coalescer = Coalescer(gateway)
        app = ApiApp(gateway, config.api, idempotency, coalescer, extra_routes=extra_routes)
        async with trio.open_nursery() as nursery:
            await nursery.start(coalescer.run)
            binds: list[str] = await nursery.start(serve, app, hypercorn_config(config))
            port = bound_port(binds)
            log.info("API listening on %s", ", ".join(binds))
            task_status.started(port)
