"""Retention: pruning old rows in bounded batches.

What goes, once older than the cutoff (wall-clock epoch seconds):

- final messages (delivered, undelivered, expired, rejected, failed) whose status last changed
  before the cutoff, with their parts, events and SMSC id mappings (``ON DELETE CASCADE``).
  Messages still pending are kept whatever their age: the processor ends them (a receipt that
  never comes is its to time out);
- inbound messages received before it;
- webhook notifications delivered before it, and given-up (``dead``) ones created before it;
- provider statistics of the minutes before it.

Each step deletes at most ``batch_size`` rows of one table (plus the cascade) as one write of the
group-commit writer, and :func:`prune` repeats steps until a table has nothing left to prune.
So pruning never holds the write lock for long: other writes interleave between steps.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import attrs

from smsgw.storage.schema import FINAL_SQL
from smsgw.storage.writer import OpKind, Writer

__all__ = ["PRUNE", "PruneReport", "prune"]


@attrs.frozen
class PruneReport:
    """Rows deleted, per table (a message's parts, events and mappings go with it)."""

    messages: int = 0
    inbound: int = 0
    notifications: int = 0
    provider_stats: int = 0


_STEPS: dict[str, str] = {
    "messages": f"""
        DELETE FROM messages WHERE seq IN (
            SELECT seq FROM messages INDEXED BY messages_final
             WHERE status IN ({FINAL_SQL}) AND updated_at < :cutoff
             ORDER BY updated_at LIMIT :limit)
    """,
    "inbound": """
        DELETE FROM inbound WHERE seq IN (
            SELECT seq FROM inbound WHERE received_at < :cutoff
             ORDER BY received_at LIMIT :limit)
    """,
    "delivered_notifications": """
        DELETE FROM notifications WHERE seq IN (
            SELECT seq FROM notifications WHERE state = 'delivered' AND delivered_at < :cutoff
             ORDER BY delivered_at LIMIT :limit)
    """,
    "dead_notifications": """
        DELETE FROM notifications WHERE seq IN (
            SELECT seq FROM notifications WHERE state = 'dead' AND created_at < :cutoff
             ORDER BY created_at LIMIT :limit)
    """,
    "provider_stats": """
        DELETE FROM provider_stats WHERE seq IN (
            SELECT seq FROM provider_stats WHERE minute < :cutoff
             ORDER BY minute LIMIT :limit)
    """,
}


@attrs.frozen
class _Step:
    name: str
    cutoff: float
    limit: int


def _prune_step(db: sqlite3.Connection, payloads: Sequence[_Step]) -> list[int]:
    # One statement per request; a prune request is rare and each deletes up to `limit` rows.
    return [
        db.execute(_STEPS[step.name], {"cutoff": step.cutoff, "limit": step.limit}).rowcount
        for step in payloads
    ]


PRUNE = OpKind("prune", 8, _prune_step)


async def prune(writer: Writer, older_than: float, *, batch_size: int) -> PruneReport:
    """Delete what is older than ``older_than`` (module docstring), ``batch_size`` rows a step.

    Each step is committed on its own; a prune interrupted half-way has done part of the work
    and the next one continues it.
    """
    deleted: dict[str, int] = {}
    for step in _STEPS:
        total = 0
        while True:
            count = await writer.submit(PRUNE, _Step(step, older_than, batch_size))
            total += count
            if count < batch_size:
                break
        deleted[step] = total
    return PruneReport(
        messages=deleted["messages"],
        inbound=deleted["inbound"],
        notifications=deleted["delivered_notifications"] + deleted["dead_notifications"],
        provider_stats=deleted["provider_stats"],
    )
