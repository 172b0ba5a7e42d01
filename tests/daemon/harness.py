"""Running ``smsgw run`` as a child process in tests, and preparing its state.

:class:`DaemonProcess` starts ``python -m smsgw.daemon -c CONFIG --log-format json``, reads its
JSON log lines from stderr as they come (a reader task), and lets a test wait for a record,
signal the process and collect its exit code, each under a timeout.

:func:`enqueue` is the test-only way in (the daemon has no HTTP API yet): a short-lived
in-process :class:`~smsgw.gateway.Gateway` on the same configuration (so the same queue and
database files) accepts the messages with :meth:`Gateway.submit` and drains. Messages it
accepts are exactly those a client would have been told are accepted: committed to the queue
and the database. It must never send them itself, so they are scheduled a little in the future
(``schedule_at``): it drains long before they are due and the daemon started afterwards sends
them.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio
import trio_asyncio

from smsgw.config import load_config
from smsgw.gateway import Gateway
from smsgw.messages import Accepted, SubmitRequest
from smsgw.model import MessageStatus
from smsgw.simulator import Simulator
from smsgw.storage import open_store

LogRecord = dict[str, Any]

#: Starting Python and opening the gateway; generous for a loaded 2-core machine.
START_TIMEOUT = 30.0


class DaemonProcess:
    """One ``smsgw run`` child process. Use inside a nursery: ``await nursery.start(d.run)``."""

    def __init__(self, config: Path, *args: str, file_size_limit: int | None = None) -> None:
        #: RLIMIT_FSIZE of the process, in bytes: a file it writes cannot grow past this (the
        #: write fails with EFBIG: a full disk, for that process alone). None: unlimited.
        self.file_size_limit = file_size_limit
        self.argv = [
            sys.executable,
            "-m",
            "smsgw.daemon",
            "-c",
            str(config),
            "--log-format",
            "json",
            *args,
        ]
        self.cwd = config.parent
        self.records: list[LogRecord] = []
        #: stderr lines that are not JSON (there should be none).
        self.other_lines: list[str] = []
        self.returncode: int | None = None
        self._process: trio.Process | None = None
        self._changed = trio.Event()
        self._exited = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[DaemonProcess]) -> None:
        """Start the process, read its stderr until it closes, then reap it."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = await trio.lowlevel.open_process(
            self.argv,
            cwd=self.cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=self._limit if self.file_size_limit is not None else None,
        )
        self._process = process
        task_status.started(self)
        assert process.stderr is not None
        buffer = b""
        try:
            while True:
                chunk = await process.stderr.receive_some(65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._take(line.decode("utf-8", "replace"))
            if buffer:
                self._take(buffer.decode("utf-8", "replace"))
            self.returncode = await process.wait()
        finally:
            if process.returncode is None:  # the test ended first: do not leave it running
                process.kill()
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await process.wait()
            self._exited.set()
            self._wake()

    def _limit(self) -> None:
        """In the child, before exec: Python ignores SIGXFSZ, so a write past the limit fails
        with EFBIG instead of killing the process."""
        assert self.file_size_limit is not None
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_size_limit, self.file_size_limit))

    def _take(self, line: str) -> None:
        if not line.strip():
            return
        try:
            record = json.loads(line)
        except ValueError:
            self.other_lines.append(line)
        else:
            self.records.append(record)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def signal(self, signum: int) -> None:
        assert self._process is not None
        self._process.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def logged(self, message: str, **fields: Any) -> list[LogRecord]:
        """Records whose message starts with ``message`` and which have ``fields``."""
        return [
            r
            for r in self.records
            if str(r.get("message", "")).startswith(message)
            and all(r.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``predicate()`` holds (checked after every log line), or fail."""
        with trio.move_on_after(timeout):
            while not predicate():
                if self._exited.is_set():
                    raise AssertionError(f"the daemon exited ({self.returncode}) before {what}")
                await self._changed.wait()
            return
        raise AssertionError(f"no {what} within {timeout}s; log: {self.tail()}")

    async def wait_logged(self, message: str, timeout: float = START_TIMEOUT) -> LogRecord:
        await self.wait_for(lambda: bool(self.logged(message)), timeout, repr(message))
        return self.logged(message)[-1]

    async def wait_exit(self, timeout: float) -> int:
        with trio.move_on_after(timeout):
            await self._exited.wait()
        if self.returncode is None:
            raise AssertionError(f"the daemon did not exit within {timeout}s: {self.tail()}")
        return self.returncode

    def tail(self, n: int = 15) -> str:
        lines = [json.dumps(r) for r in self.records[-n:]] + self.other_lines[-n:]
        return "\n".join(lines)


async def poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait (checking every 20 ms) until ``predicate()`` holds, or fail saying ``what``."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"no {what} within {timeout}s")


def receipts_settled(sim: Simulator) -> bool:
    """Every receipt the simulator had to send is sent and answered (or failed: a dead
    connection's, which it sends again while ``receipts.attempts`` allow)."""
    stats = sim.stats
    return (
        stats.receipts_queued + stats.receipts_scheduled == 0
        and stats.receipts_sent == stats.receipts_acked + stats.receipts_failed
    )


async def enqueue(
    config_path: Path, requests: Sequence[SubmitRequest], *, due_in: float
) -> list[str]:
    """Accept ``requests`` durably into the state of ``config_path`` (module docstring); they
    are due ``due_in`` seconds from now. Returns the accepted ids, in order."""
    config = load_config(config_path)
    schedule_at = time.time() + due_in  # wall-clock: schedule_at is epoch seconds
    scheduled = [_scheduled(r, schedule_at) for r in requests]
    gateway = Gateway(config)
    ids: list[str] = []
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        for start in range(0, len(scheduled), 200):
            for answer in await gateway.submit(scheduled[start : start + 200]):
                assert isinstance(answer, Accepted), answer
                assert answer.status is MessageStatus.SCHEDULED
                ids.append(answer.id)
        await gateway.drain(0.0)
    remaining = schedule_at - time.time()  # wall-clock
    assert remaining > 0, "the short-lived gateway ran past the schedule: raise due_in"
    return ids


def _scheduled(request: SubmitRequest, schedule_at: float) -> SubmitRequest:
    import attrs

    return attrs.evolve(request, schedule_at=schedule_at)


async def statuses(config_path: Path, ids: Sequence[str]) -> dict[str, MessageStatus]:
    """Each message's status, read from the database (with no gateway running)."""
    config = load_config(config_path)
    out: dict[str, MessageStatus] = {}
    async with trio_asyncio.open_loop(), open_store(config.database_path) as store:
        for message_id in ids:
            detail = await store.get_message(message_id)
            assert detail is not None, f"message {message_id} is not in the database"
            out[message_id] = detail.message.status
    return out


def count_with_status(config_path: Path, status: MessageStatus) -> int:
    """How many messages have ``status`` in the database, read while a gateway may be running
    (a plain read-only connection: WAL lets it read beside the gateway's writer)."""
    config = load_config(config_path)
    uri = f"{config.database_path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5.0)
    except sqlite3.OperationalError:
        return 0  # not created yet
    try:
        (count,) = conn.execute(
            "SELECT count(*) FROM messages WHERE status = ?", (status.value,)
        ).fetchone()
    except sqlite3.OperationalError:
        return 0  # no table yet
    finally:
        conn.close()
    return int(count)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def gateway_toml(tmp_path: Path, *, drain_grace: str = "10s", **queue: str | int) -> str:
    """A test daemon's ``[gateway]`` (state in ``tmp_path/state``), ``[api]`` (a free port)
    and ``[queue]`` (the keys given) sections."""
    lines = [
        "[gateway]",
        f'state_dir = "{(tmp_path / "state").as_posix()}"',
        f'drain_grace = "{drain_grace}"',
        "",
        "[api]",
        "port = 0",
        "",
        "[queue]",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in queue.items()]
    return "\n".join(lines) + "\n"


def provider_toml(name: str, port: int, **extra: object) -> str:
    lines = [
        "[[providers]]",
        f'name = "{name}"',
        'host = "127.0.0.1"',
        f"port = {port}",
        f'system_id = "{name}"',
        'password = "pw"',
        'reconnect = { initial = "100ms", max = "500ms" }',
    ]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"
