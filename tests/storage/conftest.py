"""Fixtures: a store on a real SQLite file in ``tmp_path``, with a fake wall clock.

The store's times come from :class:`FakeClock`, never from Trio's clock: aiosqlite's worker
thread does not mix with ``MockClock(autojump_threshold=0)`` (smsgw/adapters/sqlite.py). The
writer's batching uses Trio's real clock, which no test asserts on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakeclock import FakeClock

from smsgw.storage import Store, open_store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "gateway.sqlite3"


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    # NORMAL: these tests do not depend on fsync, and fsync is slow on a loaded machine.
    # test_writer.py and test_schema.py run the default, FULL.
    async with open_store(db_path, clock=clock, synchronous="NORMAL") as opened:
        yield opened
