"""A queue client in its own process, for tests that kill it or race it (test_crash.py).

    crash_worker.py --backend sqlite --path FILE MODE ...
    crash_worker.py --backend redis --url URL --prefix PREFIX MODE ...

Modes (each reports on stdout, one line per event, flushed at once):

- ``hold --count N --visibility-timeout S``: lease up to N messages, print ``LEASED id,id,...``,
  then wait to be killed (exits 3 after 60 s if nobody does).
- ``enqueue --batches K --batch-size B --first F``: for each batch k, print ``BATCH k``, enqueue
  ids ``b{k:05}-{i:05}``, print ``DONE k``; exit 0 after the last.
- ``drain --name NAME``: print ``READY``, wait for a line on stdin, then lease and ack batches
  until a lease comes back empty, printing ``ACKED id,id,...`` after each ack; exit 0. After its
  first lease it prints ``LEASED id,id,...`` and waits for another line on stdin before acking,
  so a test can hold both drainers with leases at the same moment.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from smsgw.queue.base import NewMessage, Queue
from smsgw.queue.sqlite import open_sqlite_queue

LONG = 600.0


def say(line: str) -> None:
    print(line, flush=True)


@asynccontextmanager
async def open_queue(args: argparse.Namespace) -> AsyncIterator[Queue]:
    if args.backend == "sqlite":
        async with open_sqlite_queue(args.path) as q:
            yield q
    else:
        from smsgw.queue.redis import open_redis_queue

        async with open_redis_queue(args.url, prefix=args.prefix) as q:
            yield q


async def hold(queue: Queue, args: argparse.Namespace) -> int:
    leases = await queue.lease("doomed", args.count, args.visibility_timeout)
    say("LEASED " + ",".join(lease.message.id for lease in leases))
    await trio.sleep(60)
    return 3


async def enqueue(queue: Queue, args: argparse.Namespace) -> int:
    payload = b"x" * 400
    for k in range(args.first, args.first + args.batches):
        batch = [NewMessage(id=f"b{k:05}-{i:05}", payload=payload) for i in range(args.batch_size)]
        say(f"BATCH {k}")
        await queue.enqueue(batch)
        say(f"DONE {k}")
    return 0


async def drain(queue: Queue, args: argparse.Namespace) -> int:
    say("READY")
    await trio.to_thread.run_sync(sys.stdin.readline)  # the test starts all drainers at once
    for n in range(10_000):
        leases = await queue.lease(args.name, 5, LONG)
        if not leases:
            return 0
        if n == 0:
            say("LEASED " + ",".join(lease.message.id for lease in leases))
            await trio.to_thread.run_sync(sys.stdin.readline)
        await trio.sleep(0)
        await queue.ack(leases)
        say("ACKED " + ",".join(lease.message.id for lease in leases))
    return 4


async def main(args: argparse.Namespace) -> int:
    with trio.fail_after(120):
        async with open_queue(args) as queue:
            mode = {"hold": hold, "enqueue": enqueue, "drain": drain}[args.mode]
            return await mode(queue, args)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "redis"], required=True)
    parser.add_argument("--path")
    parser.add_argument("--url")
    parser.add_argument("--prefix")
    modes = parser.add_subparsers(dest="mode", required=True)
    hold_mode = modes.add_parser("hold")
    hold_mode.add_argument("--count", type=int, required=True)
    hold_mode.add_argument("--visibility-timeout", type=float, required=True)
    enqueue_mode = modes.add_parser("enqueue")
    enqueue_mode.add_argument("--batches", type=int, required=True)
    enqueue_mode.add_argument("--batch-size", type=int, required=True)
    enqueue_mode.add_argument("--first", type=int, default=0)
    drain_mode = modes.add_parser("drain")
    drain_mode.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    if args.backend == "sqlite" and not args.path:
        parser.error("--backend sqlite needs --path")
    if args.backend == "redis" and not (args.url and args.prefix):
        parser.error("--backend redis needs --url and --prefix")
    return args


if __name__ == "__main__":
    sys.exit(trio.run(main, parse(sys.argv[1:])))
