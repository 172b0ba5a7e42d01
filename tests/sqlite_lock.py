"""Another process holding an SQLite database's write lock, for the tests of what the gateway
does while its database cannot be written (a lock held beyond the busy timeout fails a write
the way a full disk does; readers still read: WAL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike


class WriteLock:
    """Another connection holds ``path``'s write lock until :meth:`release`."""

    def __init__(self, path: str | PathLike[str]) -> None:
        self._other = sqlite3.connect(path, isolation_level=None, timeout=10)
        self._other.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self._other.execute("ROLLBACK")
        self._other.close()


@contextmanager
def write_locked(path: str | PathLike[str]) -> Iterator[None]:
    """The write lock of ``path`` held by another connection for the ``with`` block."""
    lock = WriteLock(path)
    try:
        yield
    finally:
        lock.release()
