"""Per-key request rate limits: one :class:`~smsgw.ratelimit.TokenBucket` per API key, on
Trio's clock. A request that finds no token gets HTTP 429 with ``Retry-After``.

This is each process's own count; with a Redis queue the instances count together
(:class:`smsgw.api.ratelimit_redis.SharedKeyLimiter`, which falls back to this one)."""

from __future__ import annotations

from typing import Protocol

from smsgw.config import ApiKeyConfig
from smsgw.ratelimit import TokenBucket

__all__ = ["KeyLimiter", "Limiter"]


class Limiter(Protocol):
    async def wait_time(self, key: ApiKeyConfig, now: float) -> float:
        """0 and one request counted, or the seconds until the key may make one."""
        ...


class KeyLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    async def wait_time(self, key: ApiKeyConfig, now: float) -> float:
        """0 and one request counted, or the seconds until the key may make one."""
        if key.rate_per_second is None:
            return 0.0
        burst = key.effective_burst
        assert burst is not None
        bucket = self._buckets.get(key.name)
        if bucket is None or (bucket.full_rate, bucket.full_burst) != (key.rate_per_second, burst):
            # New, or its limit changed by a reload: a fresh bucket (full) at the new limit.
            bucket = self._buckets[key.name] = TokenBucket(key.rate_per_second, burst)
        return bucket.try_acquire(1, now)
