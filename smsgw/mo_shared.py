"""The parts of multipart MOs, shared between the gateway instances of one Redis queue.

An SMSC may send the parts of one message on different sessions of the account, and several
instances bind with that account: many SMSCs balance per PDU. An instance that reassembled only
the parts it received would store each message split over instances as several incomplete
ones. With a Redis queue the parts are collected in Redis instead, under the queue's prefix,
and exactly one instance stores each message:

- :meth:`SharedParts.add` puts a part in its message's hash, in one script, and answers what
  happened: the message is still pending; the part completed it, and the caller **claimed** it
  (the script returns all its parts); the part is a copy of one of a message stored already
  (the SMSC did not get our answer), to drop; or its message is being stored by an instance
  now, and the SMSC should send the part again later. The gateway answers the SMSC once the
  script returned: the part is then in Redis, as durable as the queue's messages.
- The instance that claimed a message stores it in its own database, then calls
  :meth:`SharedParts.done`, which deletes the parts and keeps a digest of each for
  :data:`RECENT_SECONDS`, to recognise copies.
- :meth:`SharedParts.sweep`, run every second by every instance, claims the messages still
  incomplete ``timeout`` seconds after their first part (stored as they are), the oldest beyond
  ``max_pending``, and the claims not done within ``claim_timeout`` (:data:`CLAIM_TIMEOUT` by
  default; their instance died between claiming and storing): any live instance stores those.
  At start, ``mine=True`` also takes back the claims of this ``instance_id`` at once.

A claim keeps the inbound message id its first claimer chose, so a message claimed again by the
same instance after a crash is found in its database (:class:`~smsgw.storage.DuplicateId`) and
not stored twice. Claimed again by another instance (the first died, or took longer than
:data:`CLAIM_TIMEOUT`), it may be stored in both databases, under one id.

Time is the Redis server's (``TIME``), so the instances' clocks never meet. The keys, all under
the queue's hash tag (docs/queue.md):

- ``{P}:mo:pending`` sorted set: the messages with parts missing, by their first part's time (ms);
- ``{P}:mo:claimed`` sorted set: the messages claimed, by the claim's time (ms);
- ``{P}:mo:msg:<member>`` hash, one per message: ``first``, ``total``, ``count``, ``p:<n>`` (part
  n's payload), ``d:<n>`` (its data_coding); once claimed ``claim`` (the instance), ``id``,
  ``complete``;
- ``{P}:mo:done:<member>`` hash, expiring: ``<n>`` -> the first 16 hex digits of the SHA1 of
  part n's payload.

``<member>`` is the message's key (provider, source, destination, reference, total) as JSON.
This is the only module that knows these keys; Redis itself is reached through
:mod:`smsgw.adapters.redis`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from smsgw.adapters.lua import LuaScript, reply_text
from smsgw.messages import new_message_ids
from smsgw.model import InboundPart

if TYPE_CHECKING:
    from smsgw.adapters.redis import RedisClient

__all__ = [
    "CLAIM_TIMEOUT",
    "RECENT_SECONDS",
    "Added",
    "Claim",
    "SharedParts",
    "member",
]

#: Seconds a claimed message may take to be stored before any instance claims it again.
CLAIM_TIMEOUT = 60.0
#: Seconds a stored message's part digests are kept, to recognise copies the SMSC sends again.
RECENT_SECONDS = 3600
#: Messages one :meth:`SharedParts.sweep` claims at most (the next sweep takes the rest).
SWEEP_LIMIT = 100

MessageKey = tuple[str, str, str, int, int]


def member(key: MessageKey) -> str:
    """A message's key as its member of the sorted sets (and the end of its hashes' names)."""
    return json.dumps(list(key), separators=(",", ":"))


def _key(text: str) -> MessageKey:
    provider, source, destination, reference, total = json.loads(text)
    return (str(provider), str(source), str(destination), int(reference), int(total))


class Added(enum.Enum):
    """What :meth:`SharedParts.add` did with a part (besides :class:`Claim`)."""

    PENDING = "pending"  #: kept; its message has parts missing (or had this one already)
    DUPLICATE = "duplicate"  #: a copy of a part of a message stored or being stored: dropped
    BUSY = "busy"  #: its message is being stored by an instance: send the part again later


@attrs.frozen
class Claim:
    """A message this instance claimed: store it under ``id``, then :meth:`SharedParts.done`.

    ``parts`` maps each part number that arrived to (payload, data_coding); ``complete`` is
    False for one claimed with parts missing (timed out, or beyond ``max_pending``)."""

    key: MessageKey
    id: str
    complete: bool
    parts: dict[int, tuple[bytes, int]]

    @property
    def payload(self) -> bytes:
        """The parts that arrived, joined in order."""
        return b"".join(self.parts[n][0] for n in sorted(self.parts))

    @property
    def data_coding(self) -> int:
        """Its first part's (the lowest numbered that arrived)."""
        return self.parts[min(self.parts)][1]


# Shared by the scripts. ARGV[1] is the tag ("{P}"); KEYS[1] the pending set, KEYS[2] the
# claimed set. A claim's reply: member, id, complete, then number, data_coding, payload per part.
_PRELUDE = """
local TAG = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function msg_key(member) return TAG .. ':mo:msg:' .. member end
local function digest(payload) return string.sub(redis.sha1hex(payload), 1, 16) end
local function claim(member, instance, id, complete, now)
  local msg = msg_key(member)
  local known = redis.call('HGET', msg, 'id')
  if known then id = known end
  redis.call('HSET', msg, 'claim', instance, 'id', id, 'complete', complete)
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZADD', KEYS[2], now, member)
  local out = {member, id, tonumber(redis.call('HGET', msg, 'complete'))}
  for n = 1, tonumber(redis.call('HGET', msg, 'total')) do
    local payload = redis.call('HGET', msg, 'p:' .. n)
    if payload then
      out[#out + 1] = n
      out[#out + 1] = tonumber(redis.call('HGET', msg, 'd:' .. n))
      out[#out + 1] = payload
    end
  end
  return out
end
"""

# ARGV: tag, member, number, payload, data_coding, total, instance, id (if it completes it).
_ADD = """
local member, n, payload = ARGV[2], ARGV[3], ARGV[4]
local msg = msg_key(member)
if redis.call('EXISTS', msg) == 0 then
  if redis.call('HGET', TAG .. ':mo:done:' .. member, n) == digest(payload) then
    return {'duplicate'}
  end
  local now = now_ms()
  redis.call('HSET', msg, 'first', now, 'total', ARGV[6], 'count', 0)
  redis.call('ZADD', KEYS[1], now, member)
elseif redis.call('HEXISTS', msg, 'claim') == 1 then
  if redis.call('HGET', msg, 'p:' .. n) == payload then return {'duplicate'} end
  return {'busy'}
end
if redis.call('HSETNX', msg, 'p:' .. n, payload) == 0 then return {'pending'} end
redis.call('HSET', msg, 'd:' .. n, ARGV[5])
if redis.call('HINCRBY', msg, 'count', 1) < tonumber(ARGV[6]) then return {'pending'} end
return {'claimed', claim(member, ARGV[7], ARGV[8], 1, now_ms())}
"""

# ARGV: tag, member, id, seconds the digests are kept. Deletes a claimed message's parts,
# keeping their digests.
_DONE = """
local member = ARGV[2]
local msg = msg_key(member)
if redis.call('HGET', msg, 'id') ~= ARGV[3] then return 0 end
local done = TAG .. ':mo:done:' .. member
for n = 1, tonumber(redis.call('HGET', msg, 'total')) do
  local payload = redis.call('HGET', msg, 'p:' .. n)
  if payload then redis.call('HSET', done, n, digest(payload)) end
end
redis.call('EXPIRE', done, ARGV[4])
redis.call('DEL', msg)
redis.call('ZREM', KEYS[2], member)
return 1
"""

# ARGV: tag, instance, timeout_ms, claim_timeout_ms, max_pending, mine (0/1), ids...
# Claims (at most one per id given): the stale claims, this instance's own (mine=1), the
# pending messages past their timeout, and the oldest pending beyond max_pending.
_SWEEP = """
local instance = ARGV[2]
local now = now_ms()
local ids, used, out = #ARGV - 6, 0, {}
local function take(member, complete)
  if used >= ids then return end
  if redis.call('EXISTS', msg_key(member)) == 0 then  -- evicted, or deleted by hand
    redis.call('ZREM', KEYS[1], member)
    redis.call('ZREM', KEYS[2], member)
    return
  end
  used = used + 1
  out[#out + 1] = claim(member, instance, ARGV[6 + used], complete, now)
end
local stale = now - tonumber(ARGV[4])
if ARGV[6] == '1' then  -- at start: this instance's claims, whatever their age
  for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if redis.call('HGET', msg_key(member), 'claim') == instance then
      take(member, redis.call('HGET', msg_key(member), 'complete'))
    end
  end
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', stale, 'LIMIT', 0, ids)) do
  take(member, redis.call('HGET', msg_key(member), 'complete') or 0)
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]),
                                   'LIMIT', 0, ids)) do
  take(member, 0)
end
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if over > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, math.min(over, ids) - 1)
  for _, member in ipairs(oldest) do take(member, 0) end
end
return out
"""

# ARGV: tag. Returns {pending, claimed}.
_COUNT = """
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])}
"""


def _script(name: str, body: str) -> LuaScript:
    return LuaScript(f"mo_parts.{name}", _PRELUDE + body)


ADD = _script("add", _ADD)
DONE = _script("done", _DONE)
SWEEP = _script("sweep", _SWEEP)
COUNT = _script("count", _COUNT)


def _claim(reply: Sequence[Any]) -> Claim:
    parts: dict[int, tuple[bytes, int]] = {}
    for i in range(3, len(reply), 3):
        parts[int(reply[i])] = (bytes(reply[i + 2]), int(reply[i + 1]))
    return Claim(_key(reply_text(reply[0])), reply_text(reply[1]), int(reply[2]) == 1, parts)


class SharedParts:
    """The parts of multipart MOs of the queue under ``prefix`` in one Redis, as seen by
    ``instance``. Each method is one script, and raises
    :class:`~smsgw.queue.base.QueueUnavailable` (Redis down or too slow) or
    :class:`~smsgw.queue.base.QueueError` as the queue does. A script whose reply was lost may
    have run: every one of them is safe to repeat (module docstring)."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        instance: str,
        *,
        claim_timeout: float = CLAIM_TIMEOUT,
    ) -> None:
        self._redis = redis
        #: Seconds a claim may wait for :meth:`done` before any instance's sweep takes it.
        self.claim_timeout = claim_timeout
        self._tag = "{" + prefix + "}"  # a hash tag, as the queue's keys (no braces in prefix)
        self._keys = [f"{self._tag}:mo:pending", f"{self._tag}:mo:claimed"]
        self.instance = instance

    async def add(self, part: InboundPart) -> Claim | Added:
        """Keep ``part`` with the others of its message; a :class:`Claim` when it completes it."""
        reply = await self._redis.run_script(
            ADD,
            self._keys,
            [
                self._tag, member(part.key), part.number, part.payload, part.data_coding,
                part.total, self.instance, new_message_ids(1)[0],
            ],
        )  # fmt: skip
        if reply_text(reply[0]) == "claimed":
            return _claim(reply[1])
        return Added(reply_text(reply[0]))

    async def done(self, claim: Claim) -> bool:
        """``claim`` is stored: delete its parts (keeping their digests). False if it was not
        (or no longer) claimed under its id: done already."""
        reply = await self._redis.run_script(
            DONE, self._keys, [self._tag, member(claim.key), claim.id, RECENT_SECONDS]
        )
        return bool(reply)

    async def sweep(
        self, *, timeout: float, max_pending: int, mine: bool = False, limit: int = SWEEP_LIMIT
    ) -> list[Claim]:
        """Claim what is due (module docstring): at most ``limit`` messages."""
        reply = await self._redis.run_script(
            SWEEP,
            self._keys,
            [
                self._tag, self.instance, round(timeout * 1000), round(self.claim_timeout * 1000),
                max_pending, int(mine), *new_message_ids(limit),
            ],
        )  # fmt: skip
        return [_claim(item) for item in reply]

    async def count(self) -> tuple[int, int]:
        """(messages pending, messages claimed and not done)."""
        pending, claimed = await self._redis.run_script(COUNT, self._keys, [self._tag])
        return int(pending), int(claimed)
