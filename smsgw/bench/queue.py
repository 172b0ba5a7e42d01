"""``smsgw bench --queue``: throughput and latency of the queue backends.

For each backend: enqueue, and lease+ack, in batches of 1 and of 100 (messages per second), a
full enqueue+lease+ack cycle in batches of 100 (the figure the targets are about), and the median
latency of one single-message enqueue. Each figure is the median of ``--repeats`` runs; each run
is bounded by a message count and by a time budget, so the whole bench stays well under a minute.

Backends are measured in their durable configuration: SQLite with ``synchronous=FULL`` in a
temporary directory; Redis from ``smsgw.testing.redis.RedisServer`` with AOF and ``appendfsync
always`` (and, for comparison, ``everysec``), over loopback.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import attrs
import trio
import trio_asyncio

from smsgw.queue.base import NewMessage, Queue
from smsgw.testing.redis import FsyncPolicy, RedisServer

from .report import fmt_rate, print_table

PAYLOAD = b"x" * 160  # an SMS worth of bytes
VISIBILITY = 60.0
BUDGET = 0.5  # seconds: a single run stops early when it takes longer than this
CONCURRENCY = 4  # producer/consumer loops sharing one queue object, as the gateway's consumers

TARGET_SQLITE_CYCLE = 10_000  # msg/s, enqueue+lease+ack in batches of 100
TARGET_REDIS_CYCLE = 20_000
TARGET_REDIS_LATENCY = 0.001  # s, one enqueue


@attrs.frozen
class Backend:
    name: str
    open: Callable[[], AbstractAsyncContextManager[Queue]]
    cycle_target: int
    latency_target: float | None


@attrs.define
class Figures:
    enqueue_1: float = 0.0
    enqueue_100: float = 0.0
    lease_ack_1: float = 0.0
    lease_ack_100: float = 0.0
    cycle_100: float = 0.0
    cycle_100_concurrent: float = 0.0
    latency: float = 0.0


class Ids:
    """Unique message ids across every run of one backend."""

    def __init__(self) -> None:
        self._n = 0

    def take(self, n: int) -> list[NewMessage]:
        start, self._n = self._n, self._n + n
        return [NewMessage(f"b{i}", PAYLOAD) for i in range(start, start + n)]


def _elapsed(start: float) -> float:
    return time.perf_counter() - start  # wall-clock: measuring, not a timer


async def _enqueue_rate(q: Queue, ids: Ids, batch: int, total: int) -> float:
    done, start = 0, time.perf_counter()  # wall-clock
    while done < total and _elapsed(start) < BUDGET:
        await q.enqueue(ids.take(batch))
        done += batch
    return done / _elapsed(start)


async def _lease_ack_rate(q: Queue, ids: Ids, batch: int, total: int) -> float:
    await q.enqueue(ids.take(total))  # not timed
    done, start = 0, time.perf_counter()  # wall-clock
    while done < total and _elapsed(start) < BUDGET:
        leases = await q.lease("bench", batch, VISIBILITY)
        await q.ack(leases)
        done += len(leases)
    rate = done / _elapsed(start)
    await _empty(q)
    return rate


async def _cycle_rate(q: Queue, ids: Ids, batch: int, total: int, loops: int = 1) -> float:
    """Messages/s through enqueue, lease and ack, with ``loops`` such cycles running at once."""
    done, start = 0, time.perf_counter()  # wall-clock

    async def cycle(consumer: str) -> None:
        nonlocal done
        while done < total and _elapsed(start) < BUDGET:
            await q.enqueue(ids.take(batch))
            leases = await q.lease(consumer, batch, VISIBILITY)
            await q.ack(leases)
            done += len(leases)

    async with trio.open_nursery() as nursery:
        for n in range(loops):
            nursery.start_soon(cycle, f"bench{n}")
    rate = done / _elapsed(start)
    await _empty(q)
    return rate


async def _enqueue_latency(q: Queue, ids: Ids, samples: int) -> float:
    times = []
    for _ in range(samples):
        message = ids.take(1)
        start = time.perf_counter()  # wall-clock
        await q.enqueue(message)
        times.append(_elapsed(start))
    return statistics.median(times)


async def _empty(q: Queue) -> None:
    for _ in range(10_000):  # bounded
        leases = await q.lease("bench-drain", 500, VISIBILITY)
        if not leases:
            return
        await q.ack(leases)


async def _median(measure: Callable[[], Awaitable[float]], repeats: int) -> float:
    return statistics.median([await measure() for _ in range(repeats)])


async def measure(backend: Backend, repeats: int) -> Figures:
    ids = Ids()
    async with backend.open() as q:
        await _cycle_rate(q, ids, 100, 1000)  # warm up: connections, scripts, caches
        figures = Figures(
            enqueue_1=await _median(lambda: _enqueue_rate(q, ids, 1, 300), repeats),
            enqueue_100=await _median(lambda: _enqueue_rate(q, ids, 100, 5000), repeats),
        )
        await _empty(q)
        figures.lease_ack_1 = await _median(lambda: _lease_ack_rate(q, ids, 1, 300), repeats)
        figures.lease_ack_100 = await _median(lambda: _lease_ack_rate(q, ids, 100, 5000), repeats)
        figures.cycle_100 = await _median(lambda: _cycle_rate(q, ids, 100, 10_000), repeats)
        figures.cycle_100_concurrent = await _median(
            lambda: _cycle_rate(q, ids, 100, 20_000, CONCURRENCY), repeats
        )
        figures.latency = await _median(lambda: _enqueue_latency(q, ids, 100), repeats)
        await _empty(q)
    return figures


def _sqlite(directory: Path) -> Backend:
    from smsgw.queue.sqlite import open_sqlite_queue

    return Backend(
        "sqlite (FULL)",
        lambda: open_sqlite_queue(directory / "bench.db"),
        TARGET_SQLITE_CYCLE,
        None,
    )


def _redis(url: str, fsync: FsyncPolicy) -> Backend:
    from smsgw.queue.redis import open_redis_queue

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    return Backend(
        f"redis (AOF {fsync})",
        lambda: open_redis_queue(url, prefix=prefix),
        TARGET_REDIS_CYCLE,
        TARGET_REDIS_LATENCY,
    )


@asynccontextmanager
async def _redis_server(directory: Path, fsync: FsyncPolicy) -> AsyncIterator[str]:
    server = RedisServer.start(directory, appendonly=True, appendfsync=fsync)
    running = await trio.to_thread.run_sync(server.__enter__)
    try:
        yield running.url
    finally:
        await trio.to_thread.run_sync(server.__exit__, None, None, None)


def _mark(value: float, target: float, *, at_most: bool = False) -> str:
    met = value <= target if at_most else value >= target
    return " (met)" if met else " (missed)"


def _table(results: dict[str, tuple[Backend, Figures]], repeats: int) -> None:
    names = list(results)
    rows: list[tuple[str, ...]] = [(f"msg/s, median of {repeats} runs", *names, "target")]

    def row(label: str, pick: Callable[[Figures], float], target: str = "") -> None:
        rows.append((label, *(fmt_rate(pick(results[n][1])).strip() for n in names), target))

    row("enqueue, batch 1", lambda f: f.enqueue_1)
    row("enqueue, batch 100", lambda f: f.enqueue_100)
    row("lease+ack, batch 1", lambda f: f.lease_ack_1)
    row("lease+ack, batch 100", lambda f: f.lease_ack_100)
    cycle = ["enqueue+lease+ack, batch 100"]
    for n in names:
        backend, figures = results[n]
        cycle.append(
            fmt_rate(figures.cycle_100).strip() + _mark(figures.cycle_100, backend.cycle_target)
        )
    rows.append((*cycle, f"sqlite >= {TARGET_SQLITE_CYCLE:,}/s, redis >= {TARGET_REDIS_CYCLE:,}/s"))
    row(
        f"  the same, {CONCURRENCY} loops at once",
        lambda f: f.cycle_100_concurrent,
        "(as above)",
    )
    latency = ["one enqueue, median latency"]
    for n in names:
        backend, figures = results[n]
        text = f"{figures.latency * 1e3:.3f} ms"
        if backend.latency_target is not None:
            text += _mark(figures.latency, backend.latency_target, at_most=True)
        latency.append(text)
    rows.append((*latency, f"redis < {TARGET_REDIS_LATENCY * 1e3:g} ms"))
    print_table("Queue backends (durable settings; loopback Redis)", rows)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  (load average {load} on {os.cpu_count()} cores: other work slows every figure)")


async def _run(backends: list[str], repeats: int) -> None:
    results: dict[str, tuple[Backend, Figures]] = {}
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-queue-") as tmp:
        directory = Path(tmp)
        # One asyncio loop for every backend, as the gateway has one in its root nursery.
        async with trio_asyncio.open_loop():
            if "sqlite" in backends:
                backend = _sqlite(directory)
                results[backend.name] = (backend, await measure(backend, repeats))
            for fsync in ("always", "everysec"):
                if f"redis-{fsync}" not in backends:
                    continue
                async with _redis_server(directory, fsync) as url:
                    backend = _redis(url, fsync)
                    results[backend.name] = (backend, await measure(backend, repeats))
    _table(results, repeats)


CHOICES = ["sqlite", "redis-always", "redis-everysec"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smsgw bench --queue", description=__doc__)
    parser.add_argument(
        "--backend", action="append", choices=CHOICES, help="repeatable; default: all"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (default 3)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    trio.run(_run, args.backend or CHOICES, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
