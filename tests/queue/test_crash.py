"""Crashes and rivals in other processes (crash_worker.py), on real files and a real Redis.

- A consumer killed with SIGKILL while it holds leases: this process reclaims its messages after
  the visibility timeout and completes every one; the only duplicates are the dead worker's.
- Two processes draining one queue never both get a message.
- SQLite: a process killed in the middle of enqueueing batches leaves each batch whole or absent,
  and every batch whose enqueue returned is there.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest
import trio

from smsgw.adapters.sqlite import open_sqlite
from smsgw.queue.base import NewMessage, Queue

if TYPE_CHECKING:
    from conftest import QueueEnv

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("crash_worker.py")
LONG = 600.0


@attrs.define
class Worker:
    process: trio.Process
    _buffer: bytes = b""

    async def readline(self) -> str | None:
        """The worker's next stdout line, or None at end of output."""
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    async def expect(self, prefix: str) -> str:
        """Read lines until one starts with ``prefix``; returns the rest of it."""
        for _ in range(100_000):
            line = await self.readline()
            assert line is not None, f"worker ended before printing {prefix!r}"
            if line.startswith(prefix):
                return line.removeprefix(prefix)
        raise AssertionError(f"no {prefix!r} line")

    async def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        assert self.process.returncode == -signal.SIGKILL


@asynccontextmanager
async def worker(args: tuple[str, ...], *mode: str) -> AsyncIterator[Worker]:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(WORKER), *args, *mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        yield Worker(process)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    await stream.aclose()


async def test_killed_consumer_is_reclaimed_and_nothing_is_lost(
    queue: Queue, queue_env: QueueEnv
) -> None:
    all_ids = [f"m{i:02}" for i in range(40)]
    fake = queue_env.fake_clock
    # Under a fake clock nothing is waited for; on Redis the worker's leases really expire.
    timeout = 30.0 if fake else 1.0
    completed: Counter[str] = Counter()
    attempts: dict[str, int] = {}

    async def complete(max_items: int) -> None:
        leases = await queue.lease("survivor", max_items, LONG)
        await queue.ack(leases)
        completed.update(lease.message.id for lease in leases)
        attempts.update((lease.message.id, lease.message.attempts) for lease in leases)

    with trio.fail_after(60):
        await queue.enqueue([NewMessage(id=i, payload=i.encode()) for i in all_ids])
        async with worker(
            queue_env.worker_args, "hold", "--count", "15", "--visibility-timeout", str(timeout)
        ) as doomed:
            held = (await doomed.expect("LEASED ")).split(",")
            assert held == all_ids[:15]
            await doomed.kill()
        if fake:
            # The worker ran on the wall clock; so does this process from now on.
            fake.now = time.time()  # wall-clock
            # The dead worker's messages stay invisible until their deadline: the rest is served.
            await complete(100)
            assert sorted(completed) == all_ids[15:]
        await queue_env.advance(timeout + (1.0 if fake else 0.3))
        await complete(100)
        assert await queue.lease("survivor", 100, LONG) == []

    assert sorted(completed) == all_ids, "lost messages"
    redelivered = sorted(i for i, n in attempts.items() if n > 1)
    assert redelivered == held, "duplicates beyond the dead worker's leases"
    assert set(completed.values()) == {1}
    assert {attempts[i] for i in held} == {2}


async def test_two_processes_draining_one_queue_never_share_a_message(
    queue: Queue, queue_env: QueueEnv
) -> None:
    all_ids = [f"m{i:04}" for i in range(1000)]
    acked: dict[str, Counter[str]] = {"one": Counter(), "two": Counter()}

    first_leases: dict[str, set[str]] = {}

    async def run(name: str, ready: trio.Event, go: trio.Event,
                  holding: trio.Event, race: trio.Event) -> None:
        async with worker(queue_env.worker_args, "drain", "--name", name) as w:
            assert await w.readline() == "READY"
            ready.set()
            await go.wait()
            assert w.process.stdin is not None
            await w.process.stdin.send_all(b"go\n")
            line = await w.readline()
            assert line is not None and line.startswith("LEASED "), line
            first_leases[name] = set(line.removeprefix("LEASED ").split(","))
            holding.set()
            await race.wait()  # both processes hold leases now; then they race to the end
            await w.process.stdin.send_all(b"go\n")
            for _ in range(10_000):
                line = await w.readline()
                if line is None:
                    break
                acked[name].update(line.removeprefix("ACKED ").split(","))
            assert await w.process.wait() == 0

    with trio.fail_after(60):
        await queue.enqueue([NewMessage(id=i, payload=b"x") for i in all_ids])
        go, race = trio.Event(), trio.Event()
        async with trio.open_nursery() as nursery:
            ready = [trio.Event(), trio.Event()]
            holding = [trio.Event(), trio.Event()]
            nursery.start_soon(run, "one", ready[0], go, holding[0], race)
            nursery.start_soon(run, "two", ready[1], go, holding[1], race)
            for event in ready:
                await event.wait()
            go.set()
            for event in holding:
                await event.wait()
            assert not first_leases["one"] & first_leases["two"], "one message leased twice"
            race.set()
        assert (await queue.depth()).ready == 0
    both = acked["one"] + acked["two"]
    assert sorted(both) == all_ids
    assert set(both.values()) == {1}, "a message was acked twice"
    assert acked["one"] and acked["two"], "one process did all the work: nothing was raced"


async def test_sqlite_enqueue_killed_mid_batch_is_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    args = ("--backend", "sqlite", "--path", str(path))
    batch_size = 2000  # big enough that a kill right after "BATCH k" lands inside the batch
    done: set[int] = set()
    started: set[int] = set()
    with trio.fail_after(60):
        for first, kill_at in [(0, 1), (100, 103), (200, 202)]:
            async with worker(
                args, "enqueue", "--batches", "50", "--batch-size", str(batch_size),
                "--first", str(first),
            ) as w:  # fmt: skip
                for _ in range(100):
                    line = await w.readline()
                    assert line is not None
                    event, k = line.split()
                    (started if event == "BATCH" else done).add(int(k))
                    if event == "BATCH" and int(k) == kill_at:
                        await w.kill()
                        break

        async with open_sqlite(path) as db:
            assert await db.fetch("PRAGMA integrity_check") == [("ok",)]
            rows = await db.fetch("SELECT id FROM queue_messages")
    per_batch = Counter(int(row[0][1:6]) for row in rows)
    assert set(per_batch) <= started
    assert done <= set(per_batch), "a batch whose enqueue returned was lost"
    assert set(per_batch.values()) <= {batch_size}, f"partial batch stored: {per_batch}"
