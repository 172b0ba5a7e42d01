"""``smsgw bench --raw``: one SMPP client session blasting submit_sm at the simulator.

The simulator runs in a child process (so client and server each get a core, as they would in
production) on 127.0.0.1; one :class:`~smsgw.smpp.SmppConnection` keeps ``window`` requests in
flight from as many tasks. Each run submits ``count`` messages or stops at ``time_limit``; the
figure is the median submit_sm/s of ``runs`` runs, with receipts off and on (with receipts, the
simulator answers each submit with a receipt the client acknowledges on the same link).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import attrs
import trio

from smpp_codec import RegisteredDelivery, SubmitSm

from .report import print_table

TARGET = 15_000


@attrs.frozen
class RunResult:
    submitted: int
    seconds: float
    receipts: int
    errors: int
    #: CPU seconds the client process spent in the run (all of it, receipts included).
    client_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.submitted / self.seconds if self.seconds else 0.0


async def _read_port(stdout: trio.abc.ReceiveStream) -> int:
    buf = b""
    with trio.fail_after(30):
        while b"\n" not in buf:
            chunk = await stdout.receive_some(100)
            if not chunk:
                raise RuntimeError("the child process exited before reporting its port")
            buf += chunk
    return int(buf.split(b"\n", 1)[0])


async def one_run(
    port: int, *, count: int, window: int, receipts: bool, time_limit: float
) -> RunResult:
    from smsgw.smpp import ClientConfig, Inbound, SmppClientError, SmppConnection

    config = ClientConfig(
        system_id="bench",
        password="bench",
        port=port,
        window=window,
        inbound_buffer=window * 4,
        request_timeout=30.0,
    )
    pdu = SubmitSm(
        sequence_number=0,
        source_addr="smsgw",
        destination_addr="46700000000",
        short_message=b"benchmark message, 40 characters long...",
        registered_delivery=(
            RegisteredDelivery.SMSC_RECEIPT_ON_SUCCESS_OR_FAILURE if receipts else 0
        ),
    )
    left = count
    done = 0
    errors = 0
    got_receipts = 0
    inbound_send, inbound_recv = trio.open_memory_channel[Inbound](config.inbound_buffer)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = SmppConnection(stream, config, inbound=inbound_send, name="bench")

    async def worker() -> None:
        nonlocal left, done, errors
        submit = conn.submit
        while left > 0:
            left -= 1
            try:
                await submit(pdu)
                done += 1
            except SmppClientError:
                errors += 1

    async def consume() -> None:
        nonlocal got_receipts
        async for inbound in inbound_recv:
            got_receipts += 1
            await inbound.reply()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        nursery.start_soon(consume)
        with trio.fail_after(10):
            await conn.wait_bound()
        if conn.bind_error is not None:
            raise conn.bind_error
        start = trio.current_time()
        cpu_start = time.process_time()  # CPU time, a measurement: not a timer
        with trio.move_on_after(time_limit):
            async with trio.open_nursery() as workers:
                for _ in range(window):
                    workers.start_soon(worker)
        elapsed = trio.current_time() - start
        if receipts:
            # Let the receipts of the last submits arrive (bounded).
            with trio.move_on_after(5):
                while got_receipts < done:
                    await trio.sleep(0.01)
        cpu = time.process_time() - cpu_start
        with trio.move_on_after(10):
            await conn.aclose()
        nursery.cancel_scope.cancel()
    return RunResult(done, elapsed, got_receipts, errors, cpu)


def _process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a process, from /proc (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


async def _bench(args: argparse.Namespace) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        (
            "mode",
            "submit_sm/s (median)",
            "runs",
            "receipts acked",
            "errors",
            "client CPU µs/msg",
            "simulator CPU µs/msg",
            "target",
        )
    ]
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "smsgw.bench.raw", "--serve-simulator"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        port = await _read_port(proc.stdout)
        for receipts in (False, True):
            results = []
            server_cpu: list[float] = []
            for _ in range(args.runs):
                before = _process_cpu(proc.pid)
                result = await one_run(
                    port,
                    count=args.count,
                    window=args.window,
                    receipts=receipts,
                    time_limit=args.time_limit,
                )
                after = _process_cpu(proc.pid)
                results.append(result)
                if before is not None and after is not None and result.submitted:
                    server_cpu.append((after - before) / result.submitted * 1e6)
            rate = statistics.median(r.rate for r in results)
            client_us = statistics.median(
                r.client_cpu / r.submitted * 1e6 for r in results if r.submitted
            )
            rows.append(
                (
                    "with receipts" if receipts else "no receipts",
                    f"{rate:,.0f}",
                    " ".join(f"{r.rate:,.0f}" for r in results),
                    f"{sum(r.receipts for r in results):,}",
                    str(sum(r.errors for r in results)),
                    f"{client_us:.1f}",
                    f"{statistics.median(server_cpu):.1f}" if server_cpu else "?",
                    f">= {TARGET:,} {'ok' if rate >= TARGET else 'MISSED'}",
                )
            )
    finally:
        if proc.stdin is not None:
            await proc.stdin.aclose()
        with trio.move_on_after(5):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return rows


async def _serve_simulator() -> None:
    """Child process: run a simulator, print its port, stop when stdin closes."""
    from smsgw.simulator import ReceiptConfig, Simulator, SimulatorConfig

    sim = Simulator(SimulatorConfig(seed=1, receipts=ReceiptConfig(delay=0.0)))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        print(port, flush=True)
        await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smsgw bench --raw", description=__doc__)
    parser.add_argument("--count", type=int, default=30_000, help="submits per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per mode (median)")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds per run, at most")
    parser.add_argument("--serve-simulator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_simulator:
        trio.run(_serve_simulator)
        return 0
    load = _loadavg()
    rows = trio.run(_bench, args)
    print_table(
        f"raw SMPP session: one client, window {args.window}, {args.count:,} submits per run, "
        f"simulator in a child process over 127.0.0.1 (load average before: {load})",
        rows,
    )
    print(
        "  CPU µs/msg is the CPU each process spent per submit_sm (its receipt included): with\n"
        "  two free cores the rate is bounded by about 1e6 / max(client, simulator); a busy\n"
        "  machine (high load average) shows in the rate, not in the CPU figures."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
