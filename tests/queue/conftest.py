"""Fixtures that run one queue test suite on every backend.

``queue_env`` (parametrised ``sqlite`` / ``redis``) describes a backend under test: how to open a
queue on it (again: another connection or client to the *same* queue), what time it is for the
backend, how to let time pass, and which timeout is short enough to wait out. ``queue`` is an
open queue of that backend.

Time: SQLite takes its clock as an argument, so its tests drive a :class:`FakeClock` and never
sleep (not Trio's ``MockClock``: aiosqlite's worker thread makes an autojumping clock leap to
the next deadline, see smsgw/adapters/sqlite.py). Redis uses the server's clock, so its tests wait
out short real timeouts.

The Redis branch imports ``smsgw.queue.redis`` and ``smsgw.testing.redis`` lazily and fails
loudly (never skips) when they are missing. One ``redis-server`` serves the whole session; each
test gets a fresh key prefix.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import attrs
import pytest
import trio
from fakeclock import FakeClock

from smsgw.queue.base import Queue
from smsgw.queue.sqlite import open_sqlite_queue


@attrs.frozen
class QueueEnv:
    """One backend under test (see the module docstring)."""

    name: str
    open: Callable[[], AbstractAsyncContextManager[Queue]]  # a new connection to the same queue
    now: Callable[[], float]  # the backend's current time, epoch seconds
    advance: Callable[[float], Awaitable[None]]  # let this many seconds pass for the backend
    short: float  # a visibility timeout or delay that tests can afford to wait out
    worker_args: tuple[str, ...]  # crash_worker.py's arguments to open this same queue
    fake_clock: FakeClock | None = None  # set when time is fake (advance() never sleeps)


def sqlite_env(path: Path) -> QueueEnv:
    clock = FakeClock()

    async def advance(seconds: float) -> None:
        clock.advance(seconds)

    return QueueEnv(
        name="sqlite",
        # NORMAL: the contract does not depend on fsync, and a loaded machine makes fsync slow.
        # FULL, the default, is what test_sqlite.py and the crash tests run.
        open=lambda: open_sqlite_queue(path, clock=clock, synchronous="NORMAL"),
        now=clock,
        advance=advance,
        short=30.0,
        worker_args=("--backend", "sqlite", "--path", str(path)),
        fake_clock=clock,
    )


def redis_env(url: str) -> QueueEnv:
    from smsgw.queue.redis import open_redis_queue

    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    return QueueEnv(
        name="redis",
        open=lambda: open_redis_queue(url, prefix=prefix),
        # The server runs on this machine, so its clock is ours.
        now=time.time,  # wall-clock
        advance=trio.sleep,
        short=0.5,
        worker_args=("--backend", "redis", "--url", url, "--prefix", prefix),
    )


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "redis"])
def queue_env(request: pytest.FixtureRequest, tmp_path: Path) -> QueueEnv:
    if request.param == "sqlite":
        return sqlite_env(tmp_path / "queue.db")
    server = request.getfixturevalue("redis_server")
    return redis_env(server.url)


@pytest.fixture
async def queue(queue_env: QueueEnv) -> AsyncIterator[Queue]:
    async with queue_env.open() as q:
        yield q
