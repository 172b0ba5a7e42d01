"""Running the API: :mod:`smsgw.asgi_server` on ``[api] listen:port``, in the caller's nursery.

::

    async with trio.open_nursery() as nursery:
        gateway = await nursery.start(Gateway(config).run)
        port = await nursery.start(functools.partial(serve_api, gateway, config))

The remembered idempotent answers live in the gateway's database file (table
``api_idempotency``), through a connection of the API's own; with a Redis queue, in Redis,
shared by the instances (:mod:`smsgw.api.idempotency_redis`). The server stops when its nursery
is cancelled (the daemon does so after the gateway has drained).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import trio

from smsgw.adapters.sqlite import open_sqlite
from smsgw.asgi_server import ServerSettings, serve
from smsgw.config import GatewayConfig, QueueBackend
from smsgw.gateway import Gateway

from .app import ApiApp
from .coalesce import Coalescer
from .http import ASGIApp
from .idempotency import Answers, Idempotency, SqliteAnswers
from .ratelimit import Limiter

__all__ = ["bound_port", "serve_api"]

log = logging.getLogger("smsgw.api")


def bound_port(binds: list[str]) -> int:
    """The port of the first bound address (``http://127.0.0.1:12345`` -> 12345)."""
    return int(binds[0].rsplit(":", 1)[1])


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
    async with _open_shared_state(gateway, config) as (answers, limiter):
        idempotency = Idempotency(answers)
        coalescer = Coalescer(gateway)
        app = ApiApp(
            gateway,
            idempotency,
            coalescer,
            extra_routes=extra_routes,
            limiter=limiter,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(coalescer.run)
            settings = ServerSettings(max_connections=config.api.max_connections)
            binds: list[str] = await nursery.start(
                functools.partial(serve, app, config.api.listen, config.api.port, settings=settings)
            )
            port = bound_port(binds)
            log.info("API listening on %s", ", ".join(binds))
            task_status.started(port)


@asynccontextmanager
async def _open_shared_state(
    gateway: Gateway, config: GatewayConfig
) -> AsyncIterator[tuple[Answers, Limiter | None]]:
    """Where remembered answers are kept and keys' requests counted: with a Redis queue, in
    Redis (shared by the instances); else the gateway's database file, and this process."""
    window = config.api.idempotency_window
    redis_config = config.queue.redis
    if config.queue.backend is QueueBackend.REDIS and redis_config is not None:
        from smsgw.adapters.redis import open_redis

        from .idempotency_redis import RedisAnswers
        from .ratelimit_redis import SharedKeyLimiter

        async with open_redis(redis_config.url, max_connections=16) as client:
            yield (
                RedisAnswers(client, redis_config.prefix, window=window),
                SharedKeyLimiter(client, redis_config.prefix),
            )
        return
    async with open_sqlite(gateway.store.path) as db:
        answers = SqliteAnswers(db, window=window)
        await answers.create_schema()
        yield answers, None
