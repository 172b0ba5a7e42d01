"""The client HTTP API (``/api/v1``): submit messages, read their status, inbound messages, the
dead-letter queue and provider states. docs/api.md explains it; docs/openapi.yaml specifies it.

- :mod:`.server`: :func:`serve_api`, :mod:`smsgw.asgi_server` inside the caller's nursery.
- :mod:`.app`: the ASGI application (routing, auth, limits, handlers).
- :mod:`.auth`, :mod:`.ratelimit`, :mod:`.idempotency`, :mod:`.validation`: one concern each.
- :mod:`.bench`, :mod:`.bench_client`: ``smsgw bench --api`` and its lean load generator.
"""

from .app import PREFIX, ApiApp
from .auth import hash_key
from .server import serve_api

__all__ = ["PREFIX", "ApiApp", "hash_key", "serve_api"]
