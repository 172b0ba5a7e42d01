"""Receipts shared between the gateway instances of one Redis queue.

An SMSC sends a delivery receipt on any receiver or transceiver session bound with the account
(``system_id``) that submitted the message, and several instances of the gateway bind with the
same account. So a receipt often reaches an instance that did not send its message, whose
database has no SMSC id mapping for it. Each instance keeps its own database (docs/operations.md,
"Scaling out with Redis"), so that instance cannot record the receipt; the instance that sent the
message can.

The relay is a Redis stream that every instance of the queue's prefix writes to and reads:

- An instance that finds no part for a receipt, neither in memory nor in its database,
  :meth:`ReceiptRelay.publish` es it (the provider's name and the PDU, encoded) and only then
  answers the SMSC, so a receipt is always somewhere durable (the stream lives in Redis,
  persisted like the queue) before the SMSC forgets it.
- Every instance reads the whole stream (:meth:`ReceiptRelay.read`, from its own cursor) and
  looks each receipt up in its own memory and database; the one that sent the message records
  it, then :meth:`ReceiptRelay.matched` deletes it from the stream. Instances that do not know
  it park it, as an early receipt, for the provider's ``early_receipt_park`` time: the sender
  may not have had its ``submit_sm_resp`` yet.
- The instance that published a receipt decides whether it was an orphan: once its own parked
  copy expires, :meth:`ReceiptRelay.unmatched` tells whether the entry is still in the stream
  (no instance matched it).

Each instance's cursor (the last entry it read) is kept in Redis under its ``instance_id``, so an
instance that restarts with the same ``instance_id`` reads the receipts relayed while it was
down. It also reads again, from ``rewind`` seconds before its cursor, the entries still in the
stream: an instance that crashed while a copy waited parked in its memory (its mapping on its
way) would otherwise never see that receipt again, and its message would stay ``submitted``.
Entries matched meanwhile are gone from the stream; reading one again records nothing twice.
The stream is capped at :data:`MAX_ENTRIES` entries (the oldest go first).

This is the only module that knows the relay's keys and entry format; Redis itself is reached
through :mod:`smsgw.adapters.redis`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from smpp_codec.codec import decode, encode
from smpp_codec.errors import SmppError
from smpp_codec.pdu import DataSm, DeliverSm, Pdu
from smsgw.adapters.lua import reply_text

if TYPE_CHECKING:
    from smsgw.adapters.redis import RedisClient

__all__ = ["MAX_ENTRIES", "READ_BATCH", "ReceiptRelay", "RelayedReceipt", "rewound"]

#: Entries kept in the stream at most (approximately: Redis trims whole nodes); a few hundred
#: bytes each.
MAX_ENTRIES = 100_000
#: Entries taken by one :meth:`ReceiptRelay.read`.
READ_BATCH = 500
#: Cursors of instances not seen for this long are forgotten (an instance without a fixed
#: ``instance_id`` gets a new one at every start).
CURSOR_TTL = 7 * 86_400
#: The cursor before the first entry of a stream.
START = "0-0"


@attrs.frozen
class RelayedReceipt:
    """One receipt read from the relay: its stream entry id, the instance that published it,
    the provider it came from and the PDU (a ``deliver_sm`` or ``data_sm``)."""

    entry: str
    origin: str
    provider: str
    pdu: DeliverSm | DataSm


def rewound(cursor: str, seconds: float) -> str:
    """The stream position ``seconds`` before entry id ``cursor`` (``<ms>-<n>``: the Redis
    server's clock, so no clock of ours is compared with it)."""
    if seconds <= 0:
        return cursor
    millis = int(cursor.partition("-")[0])
    return f"{max(0, millis - round(seconds * 1000))}-0"


def _position(entry: str) -> tuple[int, int]:
    millis, _, number = entry.partition("-")
    return int(millis), int(number or 0)


class ReceiptRelay:
    """The relay of the queue under ``prefix`` in one Redis, as seen by ``instance``.

    Every method is one round trip (the first :meth:`read` also reads, or sets, the cursor)
    and raises :class:`~smsgw.queue.base.QueueUnavailable`
    (Redis down or too slow) or :class:`~smsgw.queue.base.QueueError` like the queue does.
    """

    def __init__(
        self, redis: RedisClient, prefix: str, instance: str, *, rewind: float = 0.0
    ) -> None:
        tag = "{" + prefix + "}"  # a hash tag, as the queue's keys (the prefix has no braces)
        self._redis = redis
        self.instance = instance
        #: Seconds of the stream before a stored cursor read again at start (module docstring).
        self.rewind = rewind
        self.stream = f"{tag}:relay:receipts"
        self._cursor_key = f"{tag}:relay:cursor:{instance}"
        #: The last entry this instance handled (None: not read from Redis yet).
        self._cursor: str | None = None
        #: The last entry the last :meth:`read` returned or skipped.
        self._last_read: str | None = None
        #: The cursor stored before a restart: a rewound read never moves it back.
        self._floor = START
        #: The cursor as stored in Redis now (None: not known yet).
        self._saved: str | None = None
        #: Trio time the cursor was last written to Redis.
        self._written_at = -float("inf")

    async def publish(self, receipts: Sequence[tuple[str, Pdu]]) -> list[str]:
        """Append ``(provider, pdu)`` receipts (``deliver_sm`` or ``data_sm``) to the stream;
        their entry ids, in order."""
        if not receipts:
            return []
        replies = await self._redis.pipeline(
            [
                (
                    "XADD", self.stream, "MAXLEN", "~", MAX_ENTRIES, "*",
                    "origin", self.instance, "provider", provider, "pdu", encode(pdu),
                )
                for provider, pdu in receipts
            ]
        )  # fmt: skip
        return [reply_text(reply) for reply in replies]

    async def read(self, *, block: float) -> list[RelayedReceipt]:
        """The next entries after this instance's cursor, waiting up to ``block`` seconds for
        one (the Redis client's timeout must be longer). Does not move the cursor: call
        :meth:`advance` once they are handled. An entry that cannot be read (written by a
        newer version, or damaged) is skipped."""
        cursor = await self._load_cursor()
        reply = await self._redis.command(
            "XREAD", "COUNT", READ_BATCH, "BLOCK", max(1, round(block * 1000)),
            "STREAMS", self.stream, cursor,
        )  # fmt: skip
        entries: list[tuple[Any, Any]] = []
        for _stream, stream_entries in reply or ():
            entries.extend(stream_entries)
        out = []
        for entry_id, fields in entries:
            entry = reply_text(entry_id)
            self._last_read = entry
            try:
                out.append(self._entry(entry, fields))
            except (KeyError, ValueError, SmppError):
                continue
        return out

    async def advance(self) -> None:
        """Move this instance's cursor past everything :meth:`read` returned last (skipped
        entries included)."""
        last = self._last_read or self._cursor
        if last is None:
            return
        self._cursor = last
        # While the rewound part is read again, Redis keeps the cursor stored before.
        keep = last if _position(last) >= _position(self._floor) else self._floor
        stale = trio.current_time() - self._written_at > CURSOR_TTL / 2
        if keep != self._saved or stale:
            await self._save_cursor(keep)

    async def _save_cursor(self, cursor: str) -> None:
        # Written again now and then even when unchanged, so that it outlives CURSOR_TTL
        # while the instance runs.
        await self._redis.command("SET", self._cursor_key, cursor, "EX", CURSOR_TTL)
        self._saved = cursor
        self._written_at = trio.current_time()

    async def matched(self, entries: Iterable[str]) -> None:
        """The receipts of these entries were recorded here: delete them from the stream."""
        ids = list(entries)
        if ids:
            await self._redis.command("XDEL", self.stream, *ids)

    async def unmatched(self, entries: Iterable[str]) -> set[str]:
        """Those of ``entries`` still in the stream: no instance has matched them (or they are
        older than the stream's cap, and then nobody can tell)."""
        ids = list(entries)
        if not ids:
            return set()
        replies = await self._redis.pipeline([("XRANGE", self.stream, i, i) for i in ids])
        return {i for i, reply in zip(ids, replies, strict=True) if reply}

    def _entry(self, entry: str, fields: dict[Any, Any]) -> RelayedReceipt:
        values = {reply_text(k): v for k, v in fields.items()}  # redis-py parses an entry to a dict
        pdu = decode(bytes(values["pdu"]))
        if not isinstance(pdu, DeliverSm | DataSm):
            raise ValueError(f"relayed PDU is a {type(pdu).__name__}")
        origin, provider = reply_text(values["origin"]), reply_text(values["provider"])
        return RelayedReceipt(entry, origin, provider, pdu)

    async def _load_cursor(self) -> str:
        if self._cursor is None:
            stored = await self._redis.command("GET", self._cursor_key)
            if stored is not None:
                self._floor = self._saved = reply_text(stored)
                self._cursor = rewound(self._floor, self.rewind)
                self._written_at = trio.current_time()
            else:
                # A new instance: nothing relayed before now can be its own. Kept at once, so
                # that after a restart it reads what was relayed while it was down.
                last = await self._redis.command("XREVRANGE", self.stream, "+", "-", "COUNT", 1)
                self._cursor = reply_text(last[0][0]) if last else START
                await self._save_cursor(self._cursor)
        assert self._cursor is not None
        return self._cursor
