"""``api``: a gateway and its HTTP API on 127.0.0.1 in front of one simulator (embedded queue,
database under the test's tmp_path), stopped after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from .harness import Api, gateway_config, provider, start_api, start_simulator, wait_bound


@pytest.fixture
async def api(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Api]:
    sim, port = await start_simulator(nursery)
    running = await start_api(nursery, gateway_config(tmp_path, [provider("sim", port)]))
    running.sim = sim
    await wait_bound(running)
    yield running
    await running.stop()
