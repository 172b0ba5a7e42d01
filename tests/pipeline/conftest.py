"""Fixtures of the pipeline tests: ``harness`` (simulators and gateways in the test's nursery,
embedded queue) and ``any_harness`` (the same, parametrised over the embedded queue and a real
Redis: one ``redis-server`` for the session, a fresh key prefix per test)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from smsgw.adapters.redis import RedisClient, open_redis

from .harness import EMBEDDED, Backend, Harness


@pytest.fixture
async def redis(redis_server: Any) -> AsyncIterator[RedisClient]:
    """A client of the session's Redis."""
    async with open_redis(redis_server.url) as client:
        yield client


@pytest.fixture
def prefix() -> str:
    """A fresh key prefix: a test's own queue, relay and cluster keys in the shared Redis."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def harness(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(nursery, tmp_path, EMBEDDED)
    yield h
    await h.close()


@pytest.fixture(params=["embedded", "redis"])
async def any_harness(
    request: pytest.FixtureRequest, nursery: trio.Nursery, tmp_path: Path
) -> AsyncIterator[Harness]:
    backend = EMBEDDED
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        backend = Backend("redis", server.url)
    h = Harness(nursery, tmp_path, backend)
    yield h
    await h.close()
