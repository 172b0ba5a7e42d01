"""Simulated SMSCs for tests: start one in the test's nursery, kill it when the test says."""

from __future__ import annotations

import attrs
import trio

from smsgw.simulator import Simulator, SimulatorConfig


@attrs.define
class Sim:
    """A running simulator and the scope that kills it (listener and connections)."""

    sim: Simulator
    port: int
    scope: trio.CancelScope

    def kill(self) -> None:
        self.scope.cancel()


async def start_simulator(nursery: trio.Nursery, config: SimulatorConfig | None = None) -> Sim:
    sim = Simulator(config or SimulatorConfig(seed=1))
    scope = trio.CancelScope()

    async def serve(task_status: trio.TaskStatus[int]) -> None:
        with scope:
            await sim.serve(task_status=task_status)

    port: int = await nursery.start(serve)
    return Sim(sim, port, scope)
