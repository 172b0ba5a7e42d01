"""``smsgw bench --instances``: several gateway instances on one Redis queue, end to end.

Scaling out as the docs describe it (docs/operations.md, "Scaling out with Redis"), on this
machine: ``--processes`` gateway instances (2), each in its own process, on one Redis (a
``redis-server`` started for the run, AOF on, fsync every second) and one simulator (a child
process, receipts at once), all binding with the same account (2 connections per instance,
divided among them by ``[queue.redis] share_limits``; a run starts once each instance holds its
2). Each instance submits ``--count / --processes`` messages through :meth:`Gateway.submit`
(receipts on) while every instance sends whatever it leases. The SMSC sends each receipt on
any of the sessions, so about ``(N - 1) / N`` of them reach an instance that did not send the
message and go through the receipt relay.

A run ends when every accepted message is receipted and recorded (by the instance that sent it,
directly or through the relay) or failed. It reports, as medians of ``--runs`` runs:

- accepted/s and receipted/s (end to end) over all instances, from the start signal;
- the receipts that went through the relay, and the orphans (should be 0);
- CPU seconds per 1,000 messages of the instances together, of the simulator, and of Redis;
- the cores the instances kept busy together.

The issue's target (3,000 messages/s end to end) is for the embedded backend (``smsgw bench
--gateway``); it is printed here for comparison. Benchmarks report; they never fail on speed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from .gateway import (
    SUBMIT_BATCH,
    SUBMITTERS,
    TARGET_RATE,
    TEXT,
    Setup,
    SimulatorProcess,
    _cpu_seconds,
    median_of,
    print_incomplete,
)
from .gateway import config_text as gateway_config_text
from .raw import _loadavg, _process_cpu
from .report import print_table

#: How often an instance reports its counters to the benchmark.
REPORT_INTERVAL = 0.1


@attrs.frozen
class RunResult:
    instances: int
    count: int
    elapsed: float
    accepted_rate: float
    receipted_rate: float
    relayed: int
    orphaned: int
    failed: int
    instance_cpu_per_1000: float
    simulator_cpu_per_1000: float
    redis_cpu_per_1000: float
    cores: float
    timed_out: bool


# --- one instance (a child process) ---------------------------------------------------------


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def _serve_instance(args: argparse.Namespace) -> None:
    """Child process: one gateway instance. Prints ``{"ready": ...}`` once running, starts
    submitting at the first line on stdin, reports its counters every
    :data:`REPORT_INTERVAL`, and stops at the end of stdin (printing its CPU seconds)."""
    import trio_asyncio

    from smsgw.config import parse_config
    from smsgw.gateway import Gateway
    from smsgw.messages import Accepted, SubmitRequest

    setup = Setup(
        "127.0.0.1",
        args.smsc_port,
        redis_url=args.redis_url,
        redis_prefix=args.prefix,
        instance_id=args.instance_id,
        connections=args.connections,
    )
    request = SubmitRequest(to="46700000000", source="bench", text=TEXT, receipt=True)
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-") as tmp:
        config = parse_config(gateway_config_text(setup, Path(tmp)), source="bench", environ={})
        gateway = Gateway(config)
        async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            # Ready once the instances have divided the account's connections: 2 each, bound
            # (the first to start takes them all, then gives the others theirs).
            (name,) = gateway.providers.names

            def divided() -> bool:
                health = gateway.providers.health(name)
                return health.kept == health.bound == 2

            while not divided():
                await trio.sleep(0.05)
            _emit({"ready": args.instance_id})
            await stdin.receive_some()  # the start signal
            cpu_start = _cpu_seconds()
            accepted = 0
            left = args.count
            submitting = True

            async def submitter() -> None:
                nonlocal accepted, left
                while left > 0:
                    size = min(SUBMIT_BATCH, left)
                    left -= size
                    answers = await gateway.submit([request] * size)
                    accepted += sum(isinstance(a, Accepted) for a in answers)

            async def submit_all() -> None:
                nonlocal submitting
                async with trio.open_nursery() as submitters:
                    for _ in range(SUBMITTERS):
                        submitters.start_soon(submitter)
                submitting = False

            async def report() -> None:
                while True:
                    stats = gateway.stats()
                    _emit(
                        {
                            "accepted": accepted,
                            "submitting": submitting,
                            # Recorded here: received and matched here, or relayed to here.
                            "recorded": stats.receipts
                            - stats.receipts_relayed
                            + stats.receipts_relay_matched,
                            "relayed": stats.receipts_relayed,
                            "orphaned": stats.orphaned_receipts,
                            "failed": stats.failed,
                        }
                    )
                    await trio.sleep(REPORT_INTERVAL)

            nursery.start_soon(submit_all)
            nursery.start_soon(report)
            while await stdin.receive_some():  # until the benchmark closes stdin
                pass
            cpu = _cpu_seconds() - cpu_start
            with trio.move_on_after(30):
                await gateway.drain(5.0)
            nursery.cancel_scope.cancel()
    _emit({"cpu": cpu})


# --- the benchmark --------------------------------------------------------------------------


class _Instance:
    """The benchmark's view of one instance process: its latest report."""

    def __init__(self, proc: trio.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.latest: dict[str, Any] = {}
        #: Set once the instance is running, or has exited (then ``running`` stays False).
        self.ready = trio.Event()
        self.running = False
        self.cpu: float | None = None

    async def read_reports(self) -> None:
        assert self.proc.stdout is not None
        buffer = b""
        while True:
            chunk = await self.proc.stdout.receive_some()
            if not chunk:
                self.ready.set()  # exited (its error, if any, went to stderr)
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                record = json.loads(line)
                if "ready" in record:
                    self.running = True
                    self.ready.set()
                elif "cpu" in record:
                    self.cpu = float(record["cpu"])
                else:
                    self.latest = record

    def get(self, key: str) -> int:
        return int(self.latest.get(key, 0))


async def one_run(
    *, instances: int, count: int, time_limit: float, redis_url: str, smsc_port: int
) -> tuple[RunResult, int]:
    """``instances`` instance processes, ``count`` messages in all; returns the figures (CPU of
    the simulator and Redis filled in by the caller) and the messages receipted."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    share = [count // instances + (1 if n < count % instances else 0) for n in range(instances)]
    procs: list[_Instance] = []
    async with trio.open_nursery() as nursery:
        try:
            for n in range(instances):
                proc = await trio.lowlevel.open_process(
                    [
                        sys.executable, "-m", "smsgw.bench.instances", "--serve-instance",
                        "--redis-url", redis_url, "--prefix", prefix,
                        "--instance-id", f"gw{n + 1}", "--smsc-port", str(smsc_port),
                        "--count", str(share[n]),
                        # The account's connections: the instances share them, 2 each.
                        "--connections", str(2 * instances),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )  # fmt: skip
                instance = _Instance(proc, f"gw{n + 1}")
                procs.append(instance)
                nursery.start_soon(instance.read_reports)
            with trio.fail_after(60):
                for instance in procs:
                    await instance.ready.wait()
                    if not instance.running:
                        raise RuntimeError(f"instance {instance.name} exited before it ran")
            start = trio.current_time()
            for instance in procs:
                assert instance.proc.stdin is not None
                await instance.proc.stdin.send_all(b"go\n")
            accepted_at: float | None = None
            timed_out = True
            with trio.move_on_after(time_limit):
                while True:
                    await trio.sleep(REPORT_INTERVAL)
                    if accepted_at is None and all(
                        i.latest and not i.latest["submitting"] for i in procs
                    ):
                        accepted_at = trio.current_time()
                    accepted = sum(i.get("accepted") for i in procs)
                    settled = sum(i.get("recorded") + i.get("failed") for i in procs)
                    if accepted_at is not None and settled >= accepted:
                        timed_out = False
                        break
            elapsed = trio.current_time() - start
        finally:
            for instance in procs:
                if instance.proc.stdin is not None:
                    with trio.move_on_after(5, shield=True):
                        await instance.proc.stdin.aclose()
            with trio.move_on_after(60, shield=True):
                for instance in procs:
                    await instance.proc.wait()
            for instance in procs:
                if instance.proc.returncode is None:
                    instance.proc.kill()
    accepted = sum(i.get("accepted") for i in procs)
    recorded = sum(i.get("recorded") for i in procs)
    cpu = sum(i.cpu or math.nan for i in procs)
    per_1000 = 1000 / max(1, recorded)
    result = RunResult(
        instances=instances,
        count=accepted,
        elapsed=elapsed,
        accepted_rate=accepted / ((accepted_at or trio.current_time()) - start),
        receipted_rate=recorded / elapsed,
        relayed=sum(i.get("relayed") for i in procs),
        orphaned=sum(i.get("orphaned") for i in procs),
        failed=sum(i.get("failed") for i in procs),
        instance_cpu_per_1000=cpu * per_1000,
        simulator_cpu_per_1000=math.nan,
        redis_cpu_per_1000=math.nan,
        cores=cpu / elapsed,
        timed_out=timed_out,
    )
    return result, recorded


def _delta(pid: int | None, before: float | None) -> float:
    after = _process_cpu(pid) if pid is not None else None
    return after - before if after is not None and before is not None else math.nan


async def _bench(args: argparse.Namespace) -> list[RunResult]:
    from smsgw.testing.redis import RedisServer

    results = []
    with RedisServer.start(appendonly=True, appendfsync="everysec") as redis:
        simulator = SimulatorProcess()
        async with simulator as port:
            for n in range(args.runs):
                sim_before = _process_cpu(simulator.pid)
                redis_before = _process_cpu(redis.pid) if redis.pid is not None else None
                print(f"run {n + 1}: {args.processes} instances, {args.count:,} messages ...",
                      file=sys.stderr, flush=True)  # fmt: skip
                result, recorded = await one_run(
                    instances=args.processes,
                    count=args.count,
                    time_limit=args.time_limit,
                    redis_url=redis.url,
                    smsc_port=port,
                )
                per_1000 = 1000 / max(1, recorded)
                results.append(
                    attrs.evolve(
                        result,
                        simulator_cpu_per_1000=_delta(simulator.pid, sim_before) * per_1000,
                        redis_cpu_per_1000=_delta(redis.pid, redis_before) * per_1000,
                    )
                )
    return results


def report(args: argparse.Namespace, results: Sequence[RunResult]) -> None:
    def row(
        what: str, key: Callable[[RunResult], float], form: str, target: str = ""
    ) -> tuple[str, ...]:
        return (
            what,
            form.format(median_of(results, key)),
            " ".join(form.format(key(r)) for r in results),
            target,
        )

    e2e = median_of(results, lambda r: r.receipted_rate)
    cores = f"cores busy in the instances (of {os.cpu_count() or '?'})"
    rows: list[tuple[str, ...]] = [
        ("figure", "median", "runs", "target (embedded backend)"),
        row("accepted/s, all instances", lambda r: r.accepted_rate, "{:,.0f}"),
        row(
            "receipted/s (end to end), all instances",
            lambda r: r.receipted_rate,
            "{:,.0f}",
            f">= {TARGET_RATE:,} {'ok' if e2e >= TARGET_RATE else 'MISSED'}",
        ),
        row("receipts through the relay", lambda r: r.relayed, "{:,.0f}"),
        row("orphaned receipts", lambda r: r.orphaned, "{:,.0f}"),
        row("CPU s per 1,000 messages, instances", lambda r: r.instance_cpu_per_1000, "{:.3f}"),
        row("  the simulator", lambda r: r.simulator_cpu_per_1000, "{:.3f}"),
        row("  Redis", lambda r: r.redis_cpu_per_1000, "{:.3f}"),
        row(cores, lambda r: r.cores, "{:.2f}"),
    ]  # fmt: skip
    print_table(
        f"{args.processes} gateway instances on one Redis (AOF, fsync every second), "
        f"{args.count:,} messages per run, receipts on, against the simulator in a child process "
        f"(load average before: {args.load})",
        rows,
    )
    print_incomplete(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smsgw bench --instances",
        description=(
            "Several gateway instances (processes) on one Redis queue and one simulator, end "
            "to end with receipts; medians of --runs runs. Reports, never fails."
        ),
    )
    parser.add_argument(
        "--processes", type=int, default=2, help="gateway instances, each its own process (2)"
    )
    parser.add_argument(
        "--count", type=int, default=20_000, help="messages per run, in all (20000)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure, median (3)")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per run (120)")
    parser.add_argument("--serve-instance", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--instance-id", help=argparse.SUPPRESS)
    parser.add_argument("--smsc-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_instance:
        from smsgw import logs
        from smsgw.config import LogLevel

        logs.configure(level=LogLevel.ERROR)
        trio.run(_serve_instance, args)
        return 0
    if args.processes < 1 or args.count < args.processes:
        parser.error("--processes must be >= 1 and --count at least --processes")
    args.load = _loadavg()
    started = time.perf_counter()  # wall-clock: reporting the bench's own duration
    results = trio.run(_bench, args)
    report(args, results)
    print(f"  (the bench took {time.perf_counter() - started:.0f}s)")  # wall-clock
    return 0


if __name__ == "__main__":
    sys.exit(main())
