"""The Redis queue backend: several gateway instances sharing one queue.

Every state change is one Lua script, so it is atomic however many instances race; time inside
the scripts is the Redis server's (``TIME``), so lease deadlines mean the same to every machine.
``docs/queue-redis.md`` describes the keys and the scripts; in short, for a prefix ``P``:

- ``{P}:ready:<0..9>``: one sorted set per priority, of messages not leased: score = due time
  (µs), member = 16 hex digits of an enqueue sequence number followed by the id, so equal due
  times keep enqueue order. A member due in the future is a *delayed* message; no promotion step
  is needed, a lease simply reads members with score <= now.
- ``{P}:leased``: sorted set of leased ids, score = lease deadline (µs).
- ``{P}:dead``: sorted set of dead-lettered ids, score = a sequence number (oldest first).
- ``{P}:seq``: the sequence counter.
- ``{P}:msg:<id>``: a hash per message (payload, priority, attempts, times, state, lease token).

The braces make ``P`` a hash tag: all of one queue's keys live in one Redis Cluster slot, so the
scripts stay legal there. Fixed keys are passed as KEYS; message hashes are derived inside the
scripts from the same tag (the practice of BullMQ and others), which Redis Cluster accepts
because they share the slot.
"""

from __future__ import annotations

import math
import re
import secrets
import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from smsgw.adapters.redis import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT,
    LuaScript,
    RedisClient,
    ScriptCall,
    open_redis,
)
from smsgw.queue.base import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    REPLAYED,
    DeadLetter,
    DuplicateId,
    Lease,
    LeaseLost,
    NewMessage,
    QueueDepth,
    QueuedMessage,
    QueueError,
)

# A script works on at most this many ids when a call is split (ack, purge, replay): each
# script blocks Redis while it runs, so long lists go as several scripts in one pipeline.
CHUNK = 500
# At most this many expired leases are returned to the ready sets per lease/depth call, so a
# backlog after an outage is worked off over several calls instead of one long script.
RECLAIM_LIMIT = 1000
T = TypeVar("T")
Arg = str | bytes | int
_PREFIX_RE = re.compile(r"[^{}\s]+")
_US = 1_000_000
_U32 = struct.Struct(">I")
_RECORD = struct.Struct(">BIdB")  # priority, attempts, enqueued µs, has-last-error flag

# ---------------------------------------------------------------------------------------------
# Lua. KEYS = [leased, dead, seq, ready:0 .. ready:9]; ARGV[1] = '{P}:msg:' (hash key prefix).
# Numbers go to redis.call as Lua numbers (Redis formats them with full precision); never
# concatenate a number into a string (Lua would round it to 14 digits).

_PRELUDE = """
redis.replicate_commands()
local LEASED, DEAD, SEQ = KEYS[1], KEYS[2], KEYS[3]
local MSG = ARGV[1]
local function ready_key(priority) return KEYS[4 + tonumber(priority)] end
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- redis.call(command, [key,] items...) in slices: unpack() is limited to a few thousand values.
local function batched(items, command, key)
  for i = 1, #items, 1000 do
    local j = math.min(i + 999, #items)
    if key then redis.call(command, key, unpack(items, i, j))
    else redis.call(command, unpack(items, i, j)) end
  end
end
-- The message's hash key, priority and ready-set member if `token` holds an unexpired lease on
-- it, else nil.
local function held(id, token, now)
  local key = MSG .. id
  local v = redis.call('HMGET', key, 'token', 'deadline', 'priority', 'member')
  if v[1] ~= token or tonumber(v[2]) <= now then return nil end
  return key, v[3], v[4]
end
local function end_lease(key, id)
  redis.call('ZREM', LEASED, id)
  redis.call('HDEL', key, 'token', 'owner', 'deadline')
end
-- Expired leases go back to their ready set, due at their deadline (so behind everything that
-- was due before), oldest deadline first, at most `limit` of them.
local function reclaim(now, limit)
  local expired = redis.call('ZRANGEBYSCORE', LEASED, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #expired, 2 do
    local id, deadline = expired[i], tonumber(expired[i + 1])
    local key = MSG .. id
    local v = redis.call('HMGET', key, 'priority', 'member')
    end_lease(key, id)
    if v[1] then
      redis.call('ZADD', ready_key(v[1]), deadline, v[2])
      redis.call('HSET', key, 'state', 'ready')
    end
  end
end
"""

# ARGV: msg prefix, then (id, payload, priority, not_before_us or '') per message.
# Returns {1, now} or {0, duplicate_id}: all or nothing.
_ENQUEUE = """
local now = now_us()
local n = (#ARGV - 1) / 4
local keys, seen = {}, {}
for i = 1, n do
  local id = ARGV[4 * i - 2]
  if seen[id] then return {0, id} end
  seen[id] = true
  keys[i] = MSG .. id
end
for i = 1, n, 1000 do
  local j = math.min(i + 999, n)
  if redis.call('EXISTS', unpack(keys, i, j)) > 0 then
    for k = i, j do
      if redis.call('EXISTS', keys[k]) == 1 then return {0, ARGV[4 * k - 2]} end
    end
  end
end
local first = redis.call('INCRBY', SEQ, n) - n
local ready = {}  -- priority -> {due, member, due, member, ...}
for i = 1, n do
  local id, payload, priority, not_before = ARGV[4 * i - 2], ARGV[4 * i - 1], ARGV[4 * i],
    ARGV[4 * i + 1]
  local due = now
  if not_before ~= '' then due = math.max(now, tonumber(not_before)) end
  local member = string.format('%016x', first + i) .. id
  redis.call('HSET', keys[i], 'payload', payload, 'priority', priority, 'attempts', 0,
    'enqueued', now, 'member', member, 'state', 'ready')
  local items = ready[priority] or {}
  ready[priority] = items
  items[#items + 1], items[#items + 2] = due, member
end
for priority, items in pairs(ready) do batched(items, 'ZADD', ready_key(priority)) end
return {1, now}
"""

# ARGV: msg prefix, consumer, max_items, visibility_us, token, reclaim_limit.
# Returns {deadline, records}: records is one string, per message (big-endian)
# u32 len, id, u32 len, payload, u8 priority, u32 attempts, f64 enqueued_us, then 0, or 1 and
# u32 len, last_error. One bulk string parses far faster than six RESP values per message.
_LEASE = """
local function sized(s) return struct.pack('>I4', #s) .. s end
local consumer, want, token = ARGV[2], tonumber(ARGV[3]), ARGV[5]
local now = now_us()
reclaim(now, tonumber(ARGV[6]))
local deadline = now + tonumber(ARGV[4])
local records, leased = {}, {}
for priority = 9, 0, -1 do
  if want <= 0 then break end
  local rkey = KEYS[4 + priority]
  local members = redis.call('ZRANGEBYSCORE', rkey, '-inf', now, 'LIMIT', 0, want)
  want = want - #members
  -- Remove before adding anything: a full Redis (maxmemory) refuses only a script's first
  -- write, and only if it may grow memory, so leasing keeps working and can drain it.
  batched(members, 'ZREM', rkey)
  for _, member in ipairs(members) do
    local id = string.sub(member, 17)
    local key = MSG .. id
    local v = redis.call('HMGET', key, 'payload', 'enqueued', 'attempts', 'error')
    local attempts = tonumber(v[3]) + 1
    redis.call('HSET', key, 'state', 'leased', 'attempts', attempts, 'token', token,
      'owner', consumer, 'deadline', deadline)
    leased[#leased + 1], leased[#leased + 2] = deadline, id
    local last_error = '\\0'
    if v[4] then last_error = '\\1' .. sized(v[4]) end
    records[#records + 1] = sized(id) .. sized(v[1])
      .. struct.pack('>BI4d', priority, attempts, tonumber(v[2])) .. last_error
  end
end
batched(leased, 'ZADD', LEASED)
return {deadline, table.concat(records)}
"""

# ARGV: msg prefix, then (id, token) pairs. Returns the ids whose lease was not held.
_ACK = """
local now = now_us()
local lost, ids, keys = {}, {}, {}
for i = 2, #ARGV, 2 do
  local key = held(ARGV[i], ARGV[i + 1], now)
  if key then
    ids[#ids + 1], keys[#keys + 1] = ARGV[i], key
  else
    lost[#lost + 1] = ARGV[i]
  end
end
batched(ids, 'ZREM', LEASED)
batched(keys, 'DEL')
return lost
"""

# ARGV: msg prefix, id, token, delay_us, reason. Returns 1, or 0 if the lease was not held.
_NACK = """
local id = ARGV[2]
local now = now_us()
local key, priority, member = held(id, ARGV[3], now)
if not key then return 0 end
local due = now + tonumber(ARGV[4])
end_lease(key, id)
redis.call('HSET', key, 'state', 'ready', 'error', ARGV[5])
redis.call('ZADD', ready_key(priority), due, member)
return 1
"""

# ARGV: msg prefix, id, token, visibility_us. Returns the new deadline, or 0 if not held.
_EXTEND = """
local id = ARGV[2]
local now = now_us()
local key = held(id, ARGV[3], now)
if not key then return 0 end
local deadline = now + tonumber(ARGV[4])
redis.call('HSET', key, 'deadline', deadline)
redis.call('ZADD', LEASED, deadline, id)
return deadline
"""

# ARGV: msg prefix, id, token, reason. Returns 1, or 0 if the lease was not held.
_DEAD_LETTER = """
local id = ARGV[2]
local now = now_us()
local key = held(id, ARGV[3], now)
if not key then return 0 end
end_lease(key, id)
redis.call('HSET', key, 'state', 'dead', 'reason', ARGV[4], 'dead_at', now)
redis.call('ZADD', DEAD, redis.call('INCR', SEQ), id)
return 1
"""

# ARGV: msg prefix, offset, limit (> 0).
# Returns {id, payload, priority, attempts, enqueued, last_error, reason, dead_at, id, ...}.
_DEAD_LETTERS = """
local offset = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', DEAD, offset, offset + tonumber(ARGV[3]) - 1)
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('HMGET', MSG .. id, 'payload', 'priority', 'attempts', 'enqueued',
    'error', 'reason', 'dead_at')
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, v[1], tonumber(v[2]), tonumber(v[3])
  out[n + 5], out[n + 6], out[n + 7], out[n + 8] = tonumber(v[4]), v[5], v[6], tonumber(v[7])
end
return out
"""

# ARGV: msg prefix, priority or '', ids... Returns how many dead letters moved back.
_REPLAY = f"""
local REPLAYED = '{REPLAYED}'
local now = now_us()
local moved = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', DEAD, id) == 1 then
    local key = MSG .. id
    local v = redis.call('HMGET', key, 'priority', 'member', 'reason')
    local priority = v[1]
    if ARGV[2] ~= '' then priority = ARGV[2] end
    redis.call('HDEL', key, 'reason', 'dead_at')
    redis.call('HSET', key, 'state', 'ready', 'priority', priority, 'attempts', 0,
      'error', REPLAYED .. (v[3] or ''))
    redis.call('ZADD', ready_key(priority), now, v[2])
    moved = moved + 1
  end
end
return moved
"""

# ARGV: msg prefix, ids... Returns how many messages were deleted.
_PURGE = """
local deleted = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local key = MSG .. id
  local v = redis.call('HMGET', key, 'priority', 'member')
  if v[1] then
    redis.call('ZREM', ready_key(v[1]), v[2])
    redis.call('ZREM', LEASED, id)
    redis.call('ZREM', DEAD, id)
    redis.call('DEL', key)
    deleted = deleted + 1
  end
end
return deleted
"""

# ARGV: msg prefix, reclaim_limit. Returns {ready, delayed, leased, dead, ready_0 .. ready_9}.
_DEPTH = """
local now = now_us()
reclaim(now, tonumber(ARGV[2]))
local out = {0, 0, redis.call('ZCARD', LEASED), redis.call('ZCARD', DEAD)}
for priority = 0, 9 do
  local ready = redis.call('ZCOUNT', KEYS[4 + priority], '-inf', now)
  out[1] = out[1] + ready
  out[2] = out[2] + redis.call('ZCOUNT', KEYS[4 + priority], string.format('(%d', now), '+inf')
  out[5 + priority] = ready
end
return out
"""


def _script(name: str, body: str) -> LuaScript:
    return LuaScript(f"queue.{name}", _PRELUDE + body)


ENQUEUE = _script("enqueue", _ENQUEUE)
LEASE = _script("lease", _LEASE)
ACK = _script("ack", _ACK)
NACK = _script("nack", _NACK)
EXTEND = _script("extend", _EXTEND)
DEAD_LETTER = _script("dead_letter", _DEAD_LETTER)
DEAD_LETTERS = _script("dead_letters", _DEAD_LETTERS)
REPLAY = _script("replay", _REPLAY)
PURGE = _script("purge", _PURGE)
DEPTH = _script("depth", _DEPTH)

# ---------------------------------------------------------------------------------------------


def key_names(prefix: str) -> list[str]:
    """KEYS for every script: leased, dead, seq, ready:0 .. ready:9 (all hash-tagged)."""
    tag = "{" + prefix + "}"
    fixed = [f"{tag}:leased", f"{tag}:dead", f"{tag}:seq"]
    return fixed + [f"{tag}:ready:{p}" for p in range(MIN_PRIORITY, MAX_PRIORITY + 1)]


def check_prefix(prefix: str) -> str:
    """A prefix becomes a hash tag, so it may not contain braces (or whitespace)."""
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            f"Redis key prefix must be non-empty, without braces or spaces: {prefix!r}"
        )
    return prefix


def _us(seconds: float) -> int:
    return round(seconds * _US)


def _timeout_us(seconds: float) -> int:
    """A positive timeout in µs, at least 1 (a tiny one must not round to "already expired")."""
    if not seconds > 0:  # also refuses NaN
        raise ValueError(f"visibility_timeout must be > 0, got {seconds}")
    return max(1, math.ceil(seconds * _US))


def _seconds(us: int) -> float:
    return us / _US


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _check_id(message_id: str) -> bytes:
    if not message_id:
        raise ValueError("message id must be a non-empty string")
    return message_id.encode()


def parse_lease_reply(reply: Sequence[Any], token: str) -> list[Lease]:
    """Decode the LEASE script's reply (its comment gives the record layout)."""
    deadline = _seconds(int(reply[0]))
    data: bytes = reply[1]
    leases, pos = [], 0
    while pos < len(data):
        message_id, pos = _sized(data, pos)
        payload, pos = _sized(data, pos)
        priority, attempts, enqueued, has_error = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        error = None
        if has_error:
            error, pos = _sized(data, pos)
        message = QueuedMessage(
            id=message_id.decode(),
            payload=payload,
            priority=priority,
            attempts=attempts,
            enqueued_at=_seconds(int(enqueued)),
            last_error=_text(error),
        )
        leases.append(Lease(message=message, token=token, deadline=deadline))
    return leases


def _sized(data: bytes, pos: int) -> tuple[bytes, int]:
    (size,) = _U32.unpack_from(data, pos)
    start = pos + _U32.size
    if start + size > len(data):
        raise QueueError("malformed lease reply from Redis (truncated record)")
    return data[start : start + size], start + size


def parse_dead_letters_reply(reply: Sequence[Any]) -> list[DeadLetter]:
    """Decode the DEAD_LETTERS script's reply: eight values per dead letter."""
    letters = []
    for i in range(0, len(reply), 8):
        message_id, payload, priority, attempts, enqueued, error, reason, dead_at = reply[i : i + 8]
        message = QueuedMessage(
            id=message_id.decode(),
            payload=payload,
            priority=int(priority),
            attempts=int(attempts),
            enqueued_at=_seconds(int(enqueued)),
            last_error=_text(error),
        )
        letters.append(
            DeadLetter(message=message, reason=reason.decode(), dead_at=_seconds(int(dead_at)))
        )
    return letters


def _chunks(items: Sequence[T], size: int = CHUNK) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class RedisQueue:
    """The ``Queue`` contract on Redis; open it with ``open_redis_queue``.

    Any number of ``RedisQueue`` objects (in any number of processes and machines) may share one
    prefix: every operation is one atomic script, and leases are checked by token and by the
    server's clock.
    """

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self._redis = redis
        self.prefix = check_prefix(prefix)
        self._keys = key_names(prefix)
        self._msg = f"{{{prefix}}}:msg:"
        self._closed = False

    async def _call(self, script: LuaScript, *args: Arg) -> Any:
        if self._closed:
            raise QueueError("the queue is closed")
        return await self._redis.run_script(script, self._keys, [self._msg, *args])

    async def _call_chunked(
        self, script: LuaScript, head: Sequence[Arg], items: Sequence[Sequence[Arg]]
    ) -> list[Any]:
        """One script per CHUNK items (each item a few arguments), all in one pipeline."""
        if self._closed:
            raise QueueError("the queue is closed")
        args = [[self._msg, *head, *(a for it in chunk for a in it)] for chunk in _chunks(items)]
        if len(args) == 1:  # the common case: a plain call is cheaper than a pipeline
            return [await self._redis.run_script(script, self._keys, args[0])]
        return await self._redis.run_scripts([ScriptCall(script, self._keys, a) for a in args])

    async def enqueue(self, messages: Sequence[NewMessage]) -> None:
        """One script for the whole batch, so it is all or nothing. It returns once Redis has
        executed it, which with AOF ``appendfsync always`` means once it is on disk."""
        if not messages:
            return
        args: list[Arg] = []
        for m in messages:
            if not isinstance(m.payload, bytes):
                raise TypeError(
                    f"payload of {m.id!r} must be bytes, got {type(m.payload).__name__}"
                )
            if m.not_before is not None and not math.isfinite(m.not_before):
                raise ValueError(
                    f"not_before of {m.id!r} must be a finite time, got {m.not_before}"
                )
            not_before = "" if m.not_before is None else _us(m.not_before)
            args += [_check_id(m.id), m.payload, m.priority, not_before]
        reply = await self._call(ENQUEUE, *args)
        if int(reply[0]) == 0:
            raise DuplicateId(f"duplicate message id {reply[1].decode()!r}: nothing enqueued")

    async def lease(self, consumer: str, max_items: int, visibility_timeout: float) -> list[Lease]:
        if not consumer:
            raise ValueError("consumer must be a non-empty string")
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        timeout_us = _timeout_us(visibility_timeout)
        # One token per call: unguessable, and new for every lease of a message.
        token = secrets.token_hex(16)
        reply = await self._call(LEASE, consumer, max_items, timeout_us, token, RECLAIM_LIMIT)
        return parse_lease_reply(reply, token)

    async def ack(self, leases: Sequence[Lease]) -> None:
        pairs = [(lease.message.id, lease.token) for lease in leases]
        replies = await self._call_chunked(ACK, [], pairs)
        lost = [message_id.decode() for reply in replies for message_id in reply]
        if lost:
            raise LeaseLost(f"lease no longer held, not acked: {', '.join(lost)}")

    async def nack(self, lease: Lease, *, delay: float, reason: str) -> None:
        if not delay >= 0:  # also refuses NaN
            raise ValueError(f"delay must be >= 0, got {delay}")
        if not await self._call(NACK, lease.message.id, lease.token, _us(delay), reason):
            raise LeaseLost(f"lease on {lease.message.id!r} no longer held, not nacked")

    async def extend(self, lease: Lease, visibility_timeout: float) -> Lease:
        timeout_us = _timeout_us(visibility_timeout)
        deadline = await self._call(EXTEND, lease.message.id, lease.token, timeout_us)
        if not deadline:
            raise LeaseLost(f"lease on {lease.message.id!r} no longer held, not extended")
        return Lease(message=lease.message, token=lease.token, deadline=_seconds(int(deadline)))

    async def dead_letter(self, lease: Lease, *, reason: str) -> None:
        if not await self._call(DEAD_LETTER, lease.message.id, lease.token, reason):
            raise LeaseLost(f"lease on {lease.message.id!r} no longer held, not dead-lettered")

    async def dead_letters(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got {limit}, {offset}")
        if limit == 0:
            return []
        return parse_dead_letters_reply(await self._call(DEAD_LETTERS, offset, limit))

    async def replay(self, ids: Sequence[str], *, priority: int | None = None) -> int:
        if priority is not None and not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be {MIN_PRIORITY}..{MAX_PRIORITY}, got {priority}")
        head = ["" if priority is None else str(priority)]
        replies = await self._call_chunked(REPLAY, head, [(_check_id(i),) for i in ids])
        return sum(int(r) for r in replies)

    async def purge(self, ids: Sequence[str]) -> int:
        replies = await self._call_chunked(PURGE, [], [(_check_id(i),) for i in ids])
        return sum(int(r) for r in replies)

    async def depth(self) -> QueueDepth:
        reply = [int(x) for x in await self._call(DEPTH, RECLAIM_LIMIT)]
        ready, delayed, leased, dead = reply[:4]
        by_priority = {p: n for p, n in enumerate(reply[4:]) if n}
        return QueueDepth(
            ready=ready, delayed=delayed, leased=leased, dead=dead, ready_by_priority=by_priority
        )

    async def aclose(self) -> None:
        """Stop using the queue; the connections close when ``open_redis_queue`` exits."""
        self._closed = True


@asynccontextmanager
async def open_redis_queue(
    url: str,
    *,
    prefix: str = "smsgw",
    timeout: float = DEFAULT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> AsyncIterator[RedisQueue]:
    """The queue stored under ``prefix`` in the Redis at ``url``.

    Opening sends nothing (it succeeds while Redis is down). Every operation is bounded by
    ``timeout`` seconds and raises ``QueueUnavailable`` when Redis cannot be reached, is
    loading its data after a restart, or does not answer in time; the next call reconnects.
    """
    check_prefix(prefix)
    async with open_redis(url, timeout=timeout, max_connections=max_connections) as client:
        queue = RedisQueue(client, prefix)
        try:
            yield queue
        finally:
            await queue.aclose()
