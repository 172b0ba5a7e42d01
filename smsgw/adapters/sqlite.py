"""SQLite for Trio: aiosqlite bridged with trio-asyncio, in this one module.

Everything else in smsgw talks to :class:`SqliteDatabase` and never sees asyncio. The queue uses it
now; the gateway's own tables (messages, status events, outbox) will share it later, in the same
file, which is why it is a small general adapter and not part of the queue.

The asyncio loop
    aiosqlite runs each connection's statements on a worker thread and reports back on an asyncio
    loop. :func:`open_sqlite` uses the trio-asyncio loop already open in the calling task's context
    (the gateway opens one in its root nursery with ``trio_asyncio.open_loop()``) and otherwise
    opens its own for the lifetime of the database, so it also works on its own (tests, tools).
    The loop is remembered, so the database may be used from any task while it is open.

Cancellation
    A statement already handed to the worker thread runs to completion whatever Trio does, so every
    call into the database is shielded: abandoning it would leave the caller not knowing whether a
    COMMIT happened. Cancellation therefore takes effect between statements (a transaction that is
    cancelled in its body is rolled back). A statement waits for another connection's write lock
    at most ``busy_timeout`` seconds, then fails with :class:`DatabaseUnavailable`; that, plus the
    disk, bounds how late a cancellation can be.

Not under ``MockClock(autojump_threshold=0)``
    While the worker thread runs, every Trio task looks blocked, so an autojumping clock leaps to
    the next deadline (a ``fail_after`` fires at once). Drive time-dependent code with an injected
    clock instead (the queue takes ``clock=``).
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar, get_args

import aiosqlite
import trio
import trio_asyncio

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
"""SQLite's ``PRAGMA synchronous`` levels (docs/queue.md: what each gives up in WAL mode)."""

Params = Sequence[Any] | Mapping[str, Any]
Row = tuple[Any, ...]

_T = TypeVar("_T")

# Error names (Python 3.11's ``sqlite_errorname``) after which the same operation may succeed
# later: another connection holds the lock, or the disk/file is (for now) not usable.
_UNAVAILABLE_PREFIXES = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_READONLY",
    "SQLITE_PROTOCOL",
)


class DatabaseError(Exception):
    """A database operation failed. ``code`` is SQLite's error name (``SQLITE_...``) if known."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class DatabaseUnavailable(DatabaseError):
    """The database is locked by another connection beyond the busy timeout, or the disk or file
    cannot be used right now. Retrying later may succeed; nothing of the failed transaction was
    kept."""


class ConstraintViolation(DatabaseError):
    """A UNIQUE, CHECK, NOT NULL or foreign-key constraint refused the statement."""


def translate_error(exc: sqlite3.Error) -> DatabaseError:
    """The adapter's error for a :mod:`sqlite3` error (for code that :meth:`SqliteDatabase.run`
    runs, which sees the plain errors)."""
    code: str | None = getattr(exc, "sqlite_errorname", None)
    if isinstance(exc, sqlite3.IntegrityError):
        return ConstraintViolation(str(exc), code)
    if code is not None and code.startswith(_UNAVAILABLE_PREFIXES):
        return DatabaseUnavailable(str(exc), code)
    return DatabaseError(str(exc), code)


# The asyncio side: small coroutines run on the trio-asyncio loop, one worker-thread hop each.


async def _aio_connect(path: str, busy_timeout: float) -> aiosqlite.Connection:
    # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE ... COMMIT),
    # never opened behind our back by the sqlite3 module.
    return await aiosqlite.connect(path, timeout=busy_timeout, isolation_level=None)


async def _aio_execute(conn: aiosqlite.Connection, sql: str, params: Params) -> int:
    cursor = await conn.execute(sql, params)
    # rowcount is a plain attribute set by the worker thread; the statement is already reset.
    return int(cursor.rowcount)


async def _aio_executemany(conn: aiosqlite.Connection, sql: str, params: Iterable[Params]) -> int:
    cursor = await conn.executemany(sql, params)
    return int(cursor.rowcount)


async def _aio_fetch(conn: aiosqlite.Connection, sql: str, params: Params) -> list[Row]:
    return [tuple(row) for row in await conn.execute_fetchall(sql, params)]


async def _aio_rollback(conn: aiosqlite.Connection) -> None:
    try:
        await conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        # SQLite already rolled the transaction back itself, as it does after some errors (a
        # full disk, an I/O error): nothing is left to undo.
        if "no transaction is active" not in str(exc):
            raise


async def _aio_close(conn: aiosqlite.Connection) -> None:
    await conn.close()


async def _aio_run(conn: aiosqlite.Connection, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
    # aiosqlite has no public "run this function on the connection's thread"; ``_execute`` is
    # what every one of its own methods uses (unchanged since 0.11; the pin in pyproject keeps
    # it). ``_conn`` is the sqlite3 connection, used only on that thread.
    result: _T = await conn._execute(fn, conn._conn, *args)  # type: ignore[no-untyped-call]
    return result


def _in_transaction(
    conn: sqlite3.Connection, fn: Callable[..., _T], args: tuple[Any, ...], immediate: bool
) -> _T:
    """On the database thread: BEGIN, ``fn(conn, *args)``, COMMIT; ROLLBACK if anything fails."""
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except Exception:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


class SqliteDatabase:
    """One connection to a SQLite file in WAL mode, shared by the Trio tasks of a process.

    Statements and transactions of different tasks are serialised by a lock (one connection can
    hold only one transaction); other processes and other connections to the same file are
    serialised by SQLite's own locking (``BEGIN IMMEDIATE`` waits up to ``busy_timeout``).
    Obtain one with :func:`open_sqlite`.
    """

    def __init__(
        self, conn: aiosqlite.Connection, loop: trio_asyncio.TrioEventLoop, path: str
    ) -> None:
        self._conn = conn
        self._loop = loop
        self._lock = trio.Lock()
        self._closed = False
        self.path = path

    async def _call(self, fn: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        """Run one asyncio coroutine (one statement) to completion, shielded (module docstring)."""
        if self._closed:
            raise DatabaseError(f"database {self.path!r} is closed")
        with trio.CancelScope(shield=True):
            try:
                # The loop's own entry point: aio_as_trio would inspect ``fn`` on every call.
                result: _T = await self._loop.run_aio_coroutine(fn(*args))
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc
        return result

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement on its own (autocommit); returns the number of rows it changed."""
        async with self._lock:
            return await self._call(_aio_execute, self._conn, sql, params)

    async def executemany(self, sql: str, params: Iterable[Params]) -> int:
        """Run one statement for each parameter set, atomically; returns rows changed."""
        async with self.transaction() as tx:
            return await tx.executemany(sql, params)

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        """Run one statement and return all its rows (also for ``... RETURNING``)."""
        async with self._lock:
            return await self._call(_aio_fetch, self._conn, sql, params)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of :meth:`fetch`, or None."""
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(connection, *args)`` on the database's thread, in ONE round trip, returning its
        result (``connection`` is the plain :class:`sqlite3.Connection`, in autocommit).

        A round trip costs the calling thread about as much CPU as running a dozen simple
        statements, so work of several statements that is done often (a group commit, a lease)
        belongs in one ``fn``. ``fn`` runs on another thread while Trio goes on: it must only
        touch the connection and its arguments, and must not block on anything but SQLite.
        SQLite errors come out translated (:class:`DatabaseError` and its kinds); anything
        else ``fn`` raises comes out as it is.
        """
        async with self._lock:
            return await self._call(_aio_run, self._conn, fn, args)

    async def run_transaction(
        self, fn: Callable[..., _T], *args: Any, immediate: bool = True
    ) -> _T:
        """:meth:`run` inside a transaction: committed if ``fn`` returns, rolled back if it
        raises (``immediate`` as for :meth:`transaction`)."""
        async with self._lock:
            return await self._call(_aio_run, self._conn, _in_transaction, (fn, args, immediate))

    @asynccontextmanager
    async def transaction(self, *, immediate: bool = True) -> AsyncIterator[Transaction]:
        """A transaction: committed when the block ends, rolled back if it raises.

        ``immediate=True`` (the default) takes SQLite's write lock at BEGIN, so the transaction
        cannot fail later with a lock upgrade conflict, and the times and rows it reads stay valid
        until COMMIT: use it for every read-then-write (leasing, for one). ``immediate=False`` is
        for read-only snapshots. Other tasks of this process wait for the block to end: keep it
        short and free of anything but database work.
        """
        async with self._lock:
            await self._call(
                _aio_execute, self._conn, "BEGIN IMMEDIATE" if immediate else "BEGIN", ()
            )
            tx = Transaction(self)
            done = False
            try:
                yield tx
                await self._call(_aio_execute, self._conn, "COMMIT", ())
                done = True
            finally:
                tx._finished = True
                if not done:
                    await self._call(_aio_rollback, self._conn)

    async def aclose(self) -> None:
        """Close the connection (idempotent). Waits for a running statement or transaction."""
        # Shielded as a whole: a close abandoned half-way would leak aiosqlite's worker thread,
        # which is not a daemon thread and would keep the process from exiting.
        with trio.CancelScope(shield=True):
            async with self._lock:
                if self._closed:
                    return
                await self._call(_aio_close, self._conn)
                self._closed = True


class Transaction:
    """Statements inside :meth:`SqliteDatabase.transaction`; only valid inside its block."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._finished = False

    def _check(self) -> None:
        if self._finished:
            raise DatabaseError("transaction already finished")

    async def execute(self, sql: str, params: Params = ()) -> int:
        self._check()
        return await self._db._call(_aio_execute, self._db._conn, sql, params)

    async def executemany(self, sql: str, params: Iterable[Params]) -> int:
        self._check()
        return await self._db._call(_aio_executemany, self._db._conn, sql, params)

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        self._check()
        return await self._db._call(_aio_fetch, self._db._conn, sql, params)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None


def _probe(path: str, busy_timeout: float) -> None:
    sqlite3.connect(path, timeout=busy_timeout).close()


@asynccontextmanager
async def _asyncio_loop() -> AsyncIterator[trio_asyncio.TrioEventLoop]:
    """The trio-asyncio loop of the calling context, or a new one for the block's lifetime."""
    loop = trio_asyncio.current_loop.get()
    if loop is not None:
        yield loop
        return
    try:
        async with trio_asyncio.open_loop() as new_loop:
            yield new_loop
    except ExceptionGroup as group:
        # open_loop runs nurseries, so anything raised in the block (ours or the caller's) comes
        # out grouped, once per nursery (two). A lone exception is the caller's to handle as
        # itself; peel those two layers only, so a group the caller raised stays a group.
        lone: BaseException = group
        for _ in range(2):
            if isinstance(lone, BaseExceptionGroup) and len(lone.exceptions) == 1:
                lone = lone.exceptions[0]
        if lone is group:
            raise
        raise lone from lone.__cause__


async def _enable_wal(db: SqliteDatabase, busy_timeout: float) -> str:
    """``PRAGMA journal_mode=WAL``; the journal mode it leaves. Two processes opening a new
    file at once: SQLite may answer "database is locked" at once, without waiting for the busy
    timeout (its busy handler is not called while the journal mode changes), so this retries
    for up to ``busy_timeout`` seconds."""
    deadline = trio.current_time() + busy_timeout
    delay = 0.005
    while True:
        try:
            (mode,) = await db.fetchone("PRAGMA journal_mode=WAL") or ("?",)
            return str(mode)
        except DatabaseUnavailable:
            if trio.current_time() + delay > deadline:
                raise
        await trio.sleep(delay)
        delay = min(2 * delay, 0.1)


@asynccontextmanager
async def open_sqlite(
    path: str | os.PathLike[str],
    *,
    synchronous: Synchronous = "FULL",
    busy_timeout: float = 5.0,
) -> AsyncIterator[SqliteDatabase]:
    """Open (creating if needed) a SQLite database in WAL mode; closed when the block ends.

    ``synchronous``: ``FULL`` (default) makes every committed transaction survive a power cut;
    ``NORMAL`` survives a crash of the process but may lose the last commits on power loss or an
    OS crash (the database stays consistent). ``busy_timeout``: seconds a statement waits for
    another connection's write lock before :class:`DatabaseUnavailable`.
    """
    if synchronous not in get_args(Synchronous):
        raise ValueError(f"synchronous must be one of {get_args(Synchronous)}, got {synchronous!r}")
    if not (math.isfinite(busy_timeout) and busy_timeout >= 0):
        raise ValueError(f"busy_timeout must be a finite number >= 0, got {busy_timeout!r}")
    path_str = os.fspath(path)
    # Open once without aiosqlite first: after a failed connect, aiosqlite's worker thread still
    # reports to the asyncio loop, and dies noisily if that loop has closed meanwhile. This turns
    # the usual failures (no such directory, no permission) into a clean error up front.
    try:
        await trio.to_thread.run_sync(_probe, path_str, busy_timeout)
    except sqlite3.Error as exc:
        raise translate_error(exc) from exc
    async with _asyncio_loop() as loop:
        with trio.CancelScope(shield=True):
            try:
                conn = await trio_asyncio.aio_as_trio(_aio_connect, loop=loop)(
                    path_str, busy_timeout
                )
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc
        db = SqliteDatabase(conn, loop, path_str)
        try:
            mode = await _enable_wal(db, busy_timeout)
            if mode != "wal" and path_str != ":memory:":
                raise DatabaseError(f"cannot put {path_str!r} in WAL mode (journal_mode={mode})")
            await db.execute(f"PRAGMA synchronous={synchronous}")
            await db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            await db.aclose()
