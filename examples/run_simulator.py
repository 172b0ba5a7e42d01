"""Run the SMSC simulator from Python: receipts, a schedule of faults, and MOs.

    python examples/run_simulator.py [PORT]      # default 2775; Ctrl-C stops it

Any system_id/password binds. Receipts come 1-3 s after each submission (90% DELIVRD). Every
20 s the simulator sends an MO (a long UCS-2 text, so in two parts) to the first bound receiver,
and it alternates 20 s of normal service with 20 s of trouble (10% throttling, 200 ms latency).
The same can be done without code: ``smsgw simulator --help``.
"""

from __future__ import annotations

import signal
import sys

import trio

from smsgw.simulator import (
    Faults,
    NoReceiverError,
    ReceiptConfig,
    Simulator,
    SimulatorConfig,
    SplitMode,
)

TROUBLE = Faults(throttle_fraction=0.1, latency="200ms", latency_jitter="100ms")


async def scenario(sim: Simulator) -> None:
    troubled = False
    while True:
        await trio.sleep(20)
        troubled = not troubled
        sim.set_faults(TROUBLE if troubled else Faults())
        print("faults:", "throttling + latency" if troubled else "none", flush=True)
        try:
            result = await sim.send_mo(
                source_addr="4917600000",
                destination_addr="1234",
                text="Привет! " * 12,
                multipart_mode=SplitMode.UDH8,
                timeout=5,
            )
            print(f"MO to {result.system_id}: statuses {result.statuses}", flush=True)
        except NoReceiverError:
            print("MO skipped: no receiver bound", flush=True)
        print("stats:", sim.stats.line(), flush=True)


async def main(port: int) -> None:
    config = SimulatorConfig(
        port=port,
        seed=1,
        receipts=ReceiptConfig(delay="1s", jitter="2s", outcomes="DELIVRD=90,UNDELIV=10"),
    )
    sim = Simulator(config)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            real_port = await nursery.start(sim.serve)
            print(f"SMSC simulator on 127.0.0.1:{real_port}; Ctrl-C stops it", flush=True)
            nursery.start_soon(scenario, sim)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()
    print("final stats:", sim.stats.line())


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 2775)
