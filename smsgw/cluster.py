"""The instances of one Redis queue and the connection slots they lease (Redis keys and scripts).

Several gateway instances that share a Redis queue bind to the same SMSC accounts, and an
account allows only so many binds (a provider's ``connections``). This module keeps, under the
queue's prefix:

- **who is alive**: each instance writes itself, with an expiry time, into a sorted set of all
  instances and one per provider it runs (:meth:`Cluster.heartbeat`); entries whose time passed
  are removed by the next heartbeat of anyone. Expiry times come from the Redis server's clock,
  so the instances' clocks do not matter.
- **who holds which connection slot**: slot ``i`` of provider ``p`` is a key holding the id of
  the instance that leased it, with a time to live (:meth:`Cluster.acquire`,
  :meth:`Cluster.renew`, :meth:`Cluster.release`). A key is only ever set when it is free
  (``SET NX``) or already the caller's, so at most ``connections`` slots of a provider are held
  at once. An instance keeps one bound connection per slot it holds.

An instance that stops releases its slots and leaves the sets (:meth:`Cluster.leave`); one
that dies loses them when they expire. Restarted with the same ``instance_id``, an instance
takes back the slots still recorded under its id.

Each method is one round trip and raises :class:`~smsgw.queue.base.QueueUnavailable` (Redis down
or too slow) or :class:`~smsgw.queue.base.QueueError`, as the queue does. What to hold is
decided in :mod:`smsgw.shares`, and done by :mod:`smsgw.sharing`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from smsgw.adapters.lua import LuaScript, reply_text

if TYPE_CHECKING:
    from smsgw.adapters.redis import RedisClient

__all__ = ["Cluster", "Membership"]

# KEYS: the instance's run key, then member sets; ARGV: instance, timeout (ms), run token.
# Drops the expired entries of every set, writes the token to the run key (returning the one it
# held), refreshes the caller's entry in every set, and returns each set's members after the
# old token. The drop comes first: Redis refuses only a script's first write when it is out of
# memory (maxmemory, noeviction) and lets the rest run, so the heartbeat, which grows nothing
# once the instance is listed, goes on while Redis is full (else every instance would close its
# connections after instance_timeout, and stop draining the queue that fills Redis).
_HEARTBEAT = LuaScript(
    "cluster heartbeat",
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local timeout = tonumber(ARGV[2])
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
end
local out = {redis.call('GET', KEYS[1])}
redis.call('SET', KEYS[1], ARGV[3], 'PX', timeout)
for i = 2, #KEYS do
  local key = KEYS[i]
  redis.call('ZADD', key, now + timeout, ARGV[1])
  redis.call('PEXPIRE', key, 2 * timeout)
  out[i] = redis.call('ZRANGE', key, 0, -1)
end
return out
""",
)

# KEYS: free-looking slot keys, in order; ARGV: instance, ttl (ms), wanted. Takes up to
# ``wanted`` of them that are free (or already the caller's); returns their positions (1-based).
_ACQUIRE = LuaScript(
    "cluster acquire",
    """
local got = {}
local wanted = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  if #got >= wanted then break end
  if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
    got[#got + 1] = i
  elseif redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    got[#got + 1] = i
  end
end
return got
""",
)

# KEYS: slot keys held; ARGV: instance, ttl (ms). Extends the caller's leases; takes back a
# slot whose lease expired meanwhile if nobody took it. Returns per key 1 (held) or 0 (lost).
_RENEW = LuaScript(
    "cluster renew",
    """
local out = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    out[i] = 1
  elseif not owner then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
""",
)

# KEYS: slot keys; ARGV: instance. Deletes those that are the caller's.
_RELEASE = LuaScript(
    "cluster release",
    """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
  end
end
return 1
""",
)


@attrs.frozen
class Membership:
    """The live instances (ids, sorted), of the whole queue and per provider."""

    instances: tuple[str, ...]
    by_provider: Mapping[str, tuple[str, ...]]
    #: Another run of this ``instance_id`` heartbeat since this one last did (or, at its first
    #: heartbeat, within the timeout before it): another process with the same id, or this
    #: instance's previous run.
    same_id: bool = False


class Cluster:
    """The instances and slot leases of the queue under ``prefix``, as seen by ``instance``."""

    def __init__(self, redis: RedisClient, prefix: str, instance: str) -> None:
        self._redis = redis
        self._tag = "{" + prefix + "}"  # a hash tag, as the queue's keys
        self.instance = instance
        #: This run's token, written at each heartbeat: another token found there means
        #: another process heartbeats under the same ``instance_id`` (:attr:`Membership.same_id`).
        self.run = secrets.token_hex(8)
        self._run_key = f"{self._tag}:cluster:run:{instance}"

    def _members_key(self, provider: str | None = None) -> str:
        base = f"{self._tag}:cluster:instances"
        return base if provider is None else f"{base}:{provider}"

    def _slot_key(self, provider: str, index: int) -> str:
        return f"{self._tag}:cluster:slot:{provider}:{index}"

    async def heartbeat(self, providers: Sequence[str], *, timeout: float) -> Membership:
        """Say this instance is alive (and runs ``providers``) for ``timeout`` seconds more;
        the live instances."""
        keys = [
            self._run_key,
            self._members_key(),
            *(self._members_key(p) for p in providers),
        ]
        previous, *reply = await self._redis.run_script(
            _HEARTBEAT, keys, [self.instance, _ms(timeout), self.run]
        )
        lists = [tuple(sorted(reply_text(m) for m in members)) for members in reply]
        same_id = previous is not None and reply_text(previous) != self.run
        return Membership(lists[0], dict(zip(providers, lists[1:], strict=True)), same_id)

    async def acquire(
        self, provider: str, candidates: Sequence[int], wanted: int, *, ttl: float
    ) -> list[int]:
        """Lease up to ``wanted`` of the slots ``candidates`` (tried in order) for ``ttl``
        seconds: those free, or already recorded as this instance's. The slots leased."""
        if wanted <= 0 or not candidates:
            return []
        keys = [self._slot_key(provider, i) for i in candidates]
        reply = await self._redis.run_script(_ACQUIRE, keys, [self.instance, _ms(ttl), wanted])
        return [candidates[int(position) - 1] for position in reply]

    async def renew(self, provider: str, held: Iterable[int], *, ttl: float) -> set[int]:
        """Extend the leases of ``held`` by ``ttl`` seconds; those still this instance's (the
        others were taken by another instance after they expired)."""
        slots = sorted(held)
        if not slots:
            return set()
        keys = [self._slot_key(provider, i) for i in slots]
        reply = await self._redis.run_script(_RENEW, keys, [self.instance, _ms(ttl)])
        return {i for i, ok in zip(slots, reply, strict=True) if int(ok)}

    async def release(self, provider: str, slots: Iterable[int]) -> None:
        """Give ``slots`` back (those still this instance's)."""
        keys = [self._slot_key(provider, i) for i in slots]
        if keys:
            await self._redis.run_script(_RELEASE, keys, [self.instance])

    async def leave(self, providers: Iterable[str], *, everything: bool) -> None:
        """Leave the member sets of ``providers`` (and, when ``everything``, the set of all
        instances, and this run's token)."""
        keys = [self._members_key(p) for p in providers]
        if everything:
            keys.append(self._members_key())
        commands: list[tuple[str, ...]] = [("ZREM", key, self.instance) for key in keys]
        if everything:
            commands.append(("DEL", self._run_key))
        if commands:
            await self._redis.pipeline(commands)

    async def holders(self, provider: str, total: int) -> list[str | None]:
        """Who holds each of the slots ``0 .. total - 1`` of ``provider`` (None: free)."""
        reply = await self._redis.command(
            "MGET", *(self._slot_key(provider, i) for i in range(total))
        )
        return [None if value is None else reply_text(value) for value in reply]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
