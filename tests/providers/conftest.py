"""Fixtures of the provider manager tests: a nursery whose managers are closed at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from simulators import Sim, start_simulator

from smsgw.providers import ProviderManager
from smsgw.simulator import SimulatorConfig

from .harness import start_manager


class Setup:
    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.managers: list[ProviderManager] = []

    async def simulator(self, config: SimulatorConfig | None = None) -> Sim:
        return await start_simulator(self.nursery, config)

    async def manager(self, *args: Any, **kwargs: Any) -> ProviderManager:
        manager = await start_manager(self.nursery, *args, **kwargs)
        self.managers.append(manager)
        return manager


@pytest.fixture
async def setup(nursery: trio.Nursery) -> AsyncIterator[Setup]:
    s = Setup(nursery)
    yield s
    # Close the managers while the simulators still run (then the nursery cancels those).
    with trio.fail_after(20):
        for manager in s.managers:
            await manager.aclose(grace=5.0)
