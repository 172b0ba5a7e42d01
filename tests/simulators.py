"""Simulated SMSCs for tests: start one in the test's nursery, kill it when the test says."""

from __future__ import annotations

import attrs
import trio

from smpp_codec.pdu import DeliverSm
from smsgw.simulator import Simulator, SimulatorConfig
from smsgw.simulator.connection import MoPart, MoWaiter


@attrs.define
class Sim:
    """A running simulator and the scope that kills it (listener and connections)."""

    sim: Simulator
    port: int
    scope: trio.CancelScope

    def kill(self) -> None:
        self.scope.cancel()

    async def deliver(self, pdu: DeliverSm) -> list[int | None]:
        """``pdu`` as it is (say one part of a multipart MO) from the first bound receiver;
        its answer's command_status (None: no answer)."""
        receiver = self.sim._receiver(None)
        waiter = MoWaiter(1)
        receiver.queue_mo([MoPart(pdu, waiter, 0, receiver.system_id or "")])
        await waiter.done.wait()
        return waiter.statuses


async def start_simulator(nursery: trio.Nursery, config: SimulatorConfig | None = None) -> Sim:
    sim = Simulator(config or SimulatorConfig(seed=1))
    scope = trio.CancelScope()

    async def serve(task_status: trio.TaskStatus[int]) -> None:
        with scope:
            await sim.serve(task_status=task_status)

    port: int = await nursery.start(serve)
    return Sim(sim, port, scope)
