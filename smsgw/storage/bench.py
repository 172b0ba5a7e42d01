"""Benchmark of the group-commit writer: small writes per second from many concurrent tasks.

``python -m smsgw.storage.bench [--tasks 100] [--writes 20] [--runs 5] [--synchronous FULL]``

Each task creates messages one at a time (one message per ``create_messages`` call, awaiting
each), then records a ``submitting`` event for each (``--think``: a random pause before each
write, as a consumer waiting for the network would): the shape of the gateway's traffic, where
many consumers each wait for their own write. Prints the median of the runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import trio

from smsgw.model import MessageStatus, NewMessage, StatusEvent
from smsgw.storage.store import Store, open_store


async def _task(store: Store, prefix: str, writes: int, think: float) -> None:
    rng = random.Random(prefix)
    for i in range(writes):
        await trio.sleep(rng.uniform(0, 2 * think))
        await store.create_messages([NewMessage(id=f"{prefix}-{i}", source="a", destination="1")])
    for i in range(writes):
        await trio.sleep(rng.uniform(0, 2 * think))
        await store.record_events(
            [StatusEvent(f"{prefix}-{i}", MessageStatus.SUBMITTING, "bench", provider="p")]
        )


async def _run(
    path: Path, tasks: int, writes: int, synchronous: str, interval: float, think: float
) -> float:
    async with open_store(
        path,
        synchronous=synchronous,  # type: ignore[arg-type]
        commit_interval=interval,
    ) as store:
        start = time.perf_counter()  # wall-clock: measuring, not a timer
        async with trio.open_nursery() as nursery:
            for t in range(tasks):
                nursery.start_soon(_task, store, f"{path.stem}-{t}", writes, think)
        elapsed = time.perf_counter() - start  # wall-clock
        stats = store.writer_stats()
    rate = 2 * tasks * writes / elapsed
    print(
        f"  {rate:9.0f} writes/s  ({stats.transactions} transactions,"
        f" largest batch {stats.largest_batch})"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--writes", type=int, default=20, help="messages per task")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--synchronous", default="FULL", choices=["OFF", "NORMAL", "FULL"])
    parser.add_argument("--commit-interval", type=float, default=0.005)
    parser.add_argument(
        "--think", type=float, default=0.0, help="mean seconds a task waits before each write"
    )
    args = parser.parse_args()
    print(
        f"{args.tasks} tasks x {args.writes} messages x 2 writes, synchronous={args.synchronous},"
        f" commit_interval={args.commit_interval}, think={args.think}"
    )
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            path = Path(tmp) / f"bench{run}.sqlite3"
            rates.append(
                trio.run(
                    _run,
                    path,
                    args.tasks,
                    args.writes,
                    args.synchronous,
                    args.commit_interval,
                    args.think,
                )
            )
    print(f"median: {statistics.median(rates):.0f} writes/s")


if __name__ == "__main__":
    main()
