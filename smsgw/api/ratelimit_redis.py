"""Per-key request rate limits shared by the gateway instances of one Redis queue.

Each API key with a ``rate_per_second`` has one bucket in Redis (GCRA: its "theoretical arrival
time", ``{P}:apirate:<key name>``, on the Redis server's clock), so the instances together
allow the key its rate, not each of them. A round trip per request would cost about 0.3 ms of
CPU; instead an instance takes tokens from Redis :data:`LEASE_SECONDS` worth at a time
(at least 1, at most the burst) and spends them on its next requests, within :data:`LEASE_TTL`
(then the rest are dropped, so that tokens taken long ago do not make a burst). A key is so
allowed at most its rate and burst plus what the instances hold: at most
``instances * LEASE_SECONDS`` of its rate.

If Redis cannot be reached, each instance falls back to a bucket of its own (the key's whole
rate), logs it (:class:`~smsgw.outage.Outage`), and asks Redis again :data:`RETRY_SECONDS` later:
a request is not refused, nor held up, because the limiter's store is down.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import attrs
import trio

from smsgw.adapters.lua import LuaScript
from smsgw.config import ApiKeyConfig
from smsgw.outage import Outage
from smsgw.queue.base import QueueError

from .ratelimit import KeyLimiter

if TYPE_CHECKING:
    from smsgw.adapters.redis import RedisClient

__all__ = ["LEASE_SECONDS", "LEASE_TTL", "RETRY_SECONDS", "SharedKeyLimiter"]

log = logging.getLogger("smsgw.api")

#: Tokens taken from Redis at once: this many seconds of the key's rate.
LEASE_SECONDS = 0.1
#: Tokens taken but not spent within this many (Trio) seconds are dropped.
LEASE_TTL = 1.0
#: After Redis failed, the instance's own count is used this long before Redis is asked again.
RETRY_SECONDS = 5.0

# KEYS[1]: the key's bucket. ARGV: ms per token, burst (tokens), tokens wanted.
# Returns {tokens granted, ms to wait for one when none was}.
_TAKE = LuaScript(
    "api_rate.take",
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now)
local room = math.floor((now + burst * interval - tat) / interval)
local granted = math.min(want, room)
if granted <= 0 then
  return {0, math.ceil(tat + interval - burst * interval - now)}
end
tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
return {granted, 0}
""",
)


@attrs.define
class _Lease:
    """The tokens an instance took for one key, and when."""

    tokens: int = 0
    taken_at: float = -math.inf
    lock: trio.Lock = attrs.Factory(trio.Lock)

    def spend(self) -> bool:
        """Use one token, if one is left and not older than :data:`LEASE_TTL`."""
        if self.tokens > 0 and trio.current_time() - self.taken_at <= LEASE_TTL:
            self.tokens -= 1
            return True
        self.tokens = 0
        return False


class SharedKeyLimiter:
    """Per-key limits counted in Redis under the queue's ``prefix`` (module docstring)."""

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self._redis = redis
        self._tag = "{" + prefix + "}"  # a hash tag, as the queue's keys (no braces in prefix)
        self._leases: dict[str, _Lease] = {}
        #: Used while Redis cannot be reached, until Trio time ``_retry_at``.
        self._fallback = KeyLimiter()
        self._retry_at = -math.inf
        self._outage = Outage(log, "counting API rate limits in Redis (each instance alone now)")

    async def wait_time(self, key: ApiKeyConfig, now: float) -> float:
        """0 and one request counted, or the seconds until the key may make one."""
        if key.rate_per_second is None:
            return 0.0
        if trio.current_time() < self._retry_at:
            return await self._fallback.wait_time(key, now)
        lease = self._leases.setdefault(key.name, _Lease())
        if lease.spend():
            return 0.0
        async with lease.lock:  # one round trip at a time per key; the others use its tokens
            if lease.spend():  # taken while this request waited for the lock
                return 0.0
            try:
                granted, wait = await self._take(key)
            except QueueError as exc:
                self._outage.failed(exc)
                self._retry_at = trio.current_time() + RETRY_SECONDS
                return await self._fallback.wait_time(key, now)
            self._outage.succeeded()
            if granted == 0:
                return wait
            lease.tokens, lease.taken_at = granted - 1, trio.current_time()
            return 0.0

    async def _take(self, key: ApiKeyConfig) -> tuple[int, float]:
        assert key.rate_per_second is not None
        burst = key.effective_burst
        assert burst is not None
        want = max(1, min(burst, math.floor(key.rate_per_second * LEASE_SECONDS)))
        granted, wait_ms = await self._redis.run_script(
            _TAKE,
            [f"{self._tag}:apirate:{key.name}"],
            [1000.0 / key.rate_per_second, burst, want],
        )
        return int(granted), max(0.0, int(wait_ms) / 1000)
