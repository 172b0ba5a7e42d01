"""Idempotent submissions: a repeat of an ``Idempotency-Key`` (or of a ``client_ref``) within
the window gets the original answer, never a second message.

How a key is claimed, in the store of remembered answers (:class:`Answers`): with the embedded
queue the table ``api_idempotency`` in the gateway's database (:class:`SqliteAnswers`), so it
survives restarts and is shared by the processes using that file; with a Redis queue, Redis
(:class:`smsgw.api.idempotency_redis.RedisAnswers`), so a repeat that reaches another instance
of the gateway finds it too:

1. In this process, one task per (client, key) at a time: repeats sent at once queue on a lock
   and then find the first one's stored answer.
2. In the store, the first task writes a *pending* entry (the claim), runs the submission, and
   stores the HTTP status and body in it. A pending entry of another process is waited for
   (polled, bounded); one older than :data:`ABANDONED_AFTER` belongs to a process that died
   mid-request and is taken over.
3. Answers that may succeed on a retry (5xx, 429) are not remembered: the row is deleted, so the
   client's retry with the same key submits again (nothing was accepted the first time).

An ``Idempotency-Key`` repeated with a different body is refused (:class:`KeyReused`): that is a
client bug, and answering with the other request's result would hide it. A ``client_ref`` repeat
returns the original answer whatever the body: the reference names the message.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
import trio

from smsgw.adapters.sqlite import SqliteDatabase

__all__ = [
    "ABANDONED_AFTER",
    "Answers",
    "Idempotency",
    "KeyInProgress",
    "KeyReused",
    "Outcome",
    "SqliteAnswers",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_idempotency (
    client TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT,
    created_at REAL NOT NULL,
    status INTEGER,
    body TEXT,
    PRIMARY KEY (client, key)
) WITHOUT ROWID
"""
#: A pending claim older than this (seconds) was left by a process that died mid-request.
ABANDONED_AFTER = 60.0
#: How often a pending claim of another process is looked at again, and for how long at most.
POLL_INTERVAL = 0.05
WAIT_LIMIT = 30.0
#: How often expired rows are deleted (Trio seconds).
PRUNE_INTERVAL = 60.0

Work = Callable[[], Awaitable[tuple[int, str]]]


class KeyReused(Exception):
    """The ``Idempotency-Key`` was used for a different request within the window (HTTP 422)."""


class KeyInProgress(Exception):
    """Another process is still working on this key after :data:`WAIT_LIMIT` (HTTP 409)."""


@attrs.frozen
class Outcome:
    status: int
    body: str
    #: True: the stored answer of an earlier request, nothing was submitted now.
    replayed: bool


def fingerprint(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _remembered(status: int) -> bool:
    return status < 500 and status != 429


@attrs.define
class _Entry:
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    users: int = 0


class Answers(Protocol):
    """Where the claims and remembered answers are kept (module docstring)."""

    async def claim_or_find(self, client: str, key: str, fp: str | None) -> Outcome | bool | None:
        """None: claimed for the caller; an :class:`Outcome`: the stored answer (replayed);
        True: pending in another process. Raises :class:`KeyReused` when ``fp`` and the
        stored fingerprint (both given) differ."""
        ...

    async def remember(self, client: str, key: str, status: int, body: str) -> None:
        """Store the answer of the caller's claim."""
        ...

    async def release(self, client: str, key: str) -> None:
        """Drop the caller's claim, if no answer was stored in it."""
        ...


class Idempotency:
    """Runs each (client, key) once per window: see the module docstring."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self._entries: dict[tuple[str, str], _Entry] = {}

    async def run(self, client: str, key: str, fp: str | None, work: Work) -> Outcome:
        """The stored answer for (client, key), or ``work()``'s, remembered. ``fp`` None: the
        request body is not compared (client_ref)."""
        entry = self._entries.setdefault((client, key), _Entry())
        entry.users += 1
        try:
            async with entry.lock:
                return await self._run_locked(client, key, fp, work)
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[(client, key)]

    async def _run_locked(self, client: str, key: str, fp: str | None, work: Work) -> Outcome:
        answers = self.answers
        claimed = False
        with trio.move_on_after(WAIT_LIMIT):
            while True:
                found = await answers.claim_or_find(client, key, fp)
                if isinstance(found, Outcome):
                    return found
                if found is None:
                    claimed = True
                    break
                await trio.sleep(POLL_INTERVAL)  # pending in another process
        if not claimed:
            raise KeyInProgress(
                f"another request with this key is still running after {WAIT_LIMIT:g}s"
            )
        done = False
        try:
            status, body = await work()
            done = True
        finally:
            if not done:
                # Failed or cancelled: nothing is remembered, a retry may submit.
                with trio.CancelScope(shield=True), trio.move_on_after(5.0):
                    await answers.release(client, key)
        if _remembered(status):
            await answers.remember(client, key, status, body)
        else:
            await answers.release(client, key)
        return Outcome(status, body, replayed=False)


class SqliteAnswers:
    """Claims and answers in the table ``api_idempotency`` of ``db``, kept ``window`` seconds
    (wall-clock ``clock``); expired rows are deleted now and then."""

    def __init__(
        self,
        db: SqliteDatabase,
        *,
        window: float,
        clock: Callable[[], float] = time.time,  # wall-clock
    ) -> None:
        self._db = db
        self._window = window
        self._clock = clock
        self._pruned_at: float | None = None

    async def create_schema(self) -> None:
        await self._db.execute(SCHEMA)

    async def claim_or_find(self, client: str, key: str, fp: str | None) -> Outcome | bool | None:
        await self._maybe_prune()
        now = self._clock()
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                "SELECT fingerprint, created_at, status, body FROM api_idempotency "
                "WHERE client = ? AND key = ?",
                (client, key),
            )
            if row is not None:
                stored_fp, created_at, status, body = row
                expired = created_at < now - self._window
                abandoned = status is None and created_at < now - ABANDONED_AFTER
                if not (expired or abandoned):
                    if fp is not None and stored_fp is not None and stored_fp != fp:
                        raise KeyReused(
                            "this Idempotency-Key was used for a different request "
                            f"in the last {self._window:g}s"
                        )
                    if status is None:
                        return True
                    return Outcome(int(status), str(body), replayed=True)
            await tx.execute(
                "INSERT OR REPLACE INTO api_idempotency (client, key, fingerprint, created_at) "
                "VALUES (?, ?, ?, ?)",
                (client, key, fp, now),
            )
        return None

    async def remember(self, client: str, key: str, status: int, body: str) -> None:
        await self._db.execute(
            "UPDATE api_idempotency SET status = ?, body = ? WHERE client = ? AND key = ?",
            (status, body, client, key),
        )

    async def release(self, client: str, key: str) -> None:
        await self._db.execute(
            "DELETE FROM api_idempotency WHERE client = ? AND key = ? AND status IS NULL",
            (client, key),
        )

    async def _maybe_prune(self) -> None:
        now = trio.current_time()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_INTERVAL:
            return
        self._pruned_at = now
        await self._db.execute(
            "DELETE FROM api_idempotency WHERE created_at < ?", (self._clock() - self._window,)
        )
