"""One gateway per file: an exclusive lock beside each SQLite file a gateway owns.

Two gateways on the same files (a second ``smsgw run`` started by hand beside the service, a
new version started before the old one stopped) both run without an error from SQLite, but
each keeps in memory what the other cannot see: receipts that reach the other process's
connections find no part and end as orphans, and their messages stay ``submitted`` for good.
So the gateway takes a lock on ``<file>.lock`` before it opens ``<file>``, and a second one
stops at start with an error naming the file and the process that holds it.

The lock is ``flock(2)``: the kernel releases it when its holder exits, however it exits
(SIGKILL too), so a crash never leaves a stale lock behind. The file stays (removing it would
race with the next holder); it holds the pid of the last process that took it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from smsgw.errors import SetupError

__all__ = ["hold_lock", "lock_path"]


def lock_path(path: Path) -> Path:
    """The lock file of ``path``: beside it, its name with ``.lock`` added."""
    return path.with_name(path.name + ".lock")


@contextmanager
def hold_lock(path: Path, key: str) -> Iterator[None]:
    """Hold the lock of ``path`` for the ``with`` block, or raise :class:`SetupError` naming
    ``path``, its configuration ``key`` and the holder's pid when another process (or another
    gateway in this one) holds it. Never waits."""
    lock = lock_path(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SetupError(f"cannot open {lock} ({key}): {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            raise SetupError(
                f"{path} is in use by another gateway{f' (pid {holder})' if holder else ''}:"
                f" stop it first, or give this one its own {key}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> int | None:
    """The pid the holder wrote, if it wrote one (it may be between taking and writing)."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
