"""Remembered idempotent answers in Redis, shared by the gateway instances of one Redis queue:
a client that repeats a request through a load balancer reaches any instance, and each must
find the first one's claim or answer (:mod:`smsgw.api.idempotency`).

One hash per (client, key), ``{P}:idem:<["client","key"] as JSON>``, under the queue's hash
tag: ``fp`` (the request's fingerprint, empty for a ``client_ref``), ``created`` (ms, the Redis
server's clock), and once answered ``status`` and ``body``. It expires ``window`` seconds after
its claim, so Redis forgets it when the database would have pruned it. Each step is one script
(atomic however many instances race); time is the Redis server's, so the instances' clocks never
meet.

Memory, for ``window``: about 700 bytes per single message remembered, about 100 per item of
a batch (measured on Redis 6.2; docs/operations.md, "Scaling out with Redis").
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from smsgw.adapters.lua import LuaScript, reply_text

from .idempotency import ABANDONED_AFTER, KeyReused, Outcome

if TYPE_CHECKING:
    from smsgw.adapters.redis import RedisClient

__all__ = ["RedisAnswers"]

# KEYS[1]: the hash. ARGV: fingerprint ("" for none), window (ms), abandoned after (ms).
# Returns {"claimed"}, {"pending"}, {"reused"} or {"done", status, body}.
_CLAIM = LuaScript(
    "idempotency.claim",
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local row = redis.call('HMGET', KEYS[1], 'fp', 'created', 'status', 'body')
if row[2] and (row[3] or tonumber(row[2]) >= now - tonumber(ARGV[3])) then
  if ARGV[1] ~= '' and row[1] and row[1] ~= '' and row[1] ~= ARGV[1] then
    return {'reused'}
  end
  if not row[3] then return {'pending'} end
  return {'done', row[3], row[4]}
end
redis.call('DEL', KEYS[1])  -- a claim abandoned by a process that died mid-request
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'created', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'claimed'}
""",
)

# KEYS[1]: the hash. ARGV: status, body. Kept only if the claim still exists.
_REMEMBER = LuaScript(
    "idempotency.remember",
    """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'body', ARGV[2])
end
return 0
""",
)

# KEYS[1]: the hash. Deleted if it holds no answer.
_RELEASE = LuaScript(
    "idempotency.release",
    """
if redis.call('HEXISTS', KEYS[1], 'status') == 0 then redis.call('DEL', KEYS[1]) end
return 0
""",
)


class RedisAnswers:
    """The :class:`~smsgw.api.idempotency.Answers` of the queue under ``prefix`` in one Redis,
    kept ``window`` seconds. Raises :class:`~smsgw.queue.base.QueueUnavailable` (Redis down or
    too slow; the API answers 503) or :class:`~smsgw.queue.base.QueueError`."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        *,
        window: float,
        abandoned_after: float = ABANDONED_AFTER,
    ) -> None:
        self._redis = redis
        self._tag = "{" + prefix + "}"  # a hash tag, as the queue's keys (no braces in prefix)
        self._window_ms = max(1, round(window * 1000))
        self._window = window
        self._abandoned_ms = round(abandoned_after * 1000)

    def _key(self, client: str, key: str) -> str:
        return f"{self._tag}:idem:" + json.dumps([client, key], separators=(",", ":"))

    async def claim_or_find(self, client: str, key: str, fp: str | None) -> Outcome | bool | None:
        reply = await self._redis.run_script(
            _CLAIM, [self._key(client, key)], [fp or "", self._window_ms, self._abandoned_ms]
        )
        what = reply_text(reply[0])
        if what == "claimed":
            return None
        if what == "pending":
            return True
        if what == "reused":
            raise KeyReused(
                "this Idempotency-Key was used for a different request "
                f"in the last {self._window:g}s"
            )
        return Outcome(int(reply[1]), reply_text(reply[2]), replayed=True)

    async def remember(self, client: str, key: str, status: int, body: str) -> None:
        await self._redis.run_script(_REMEMBER, [self._key(client, key)], [status, body])

    async def release(self, client: str, key: str) -> None:
        await self._redis.run_script(_RELEASE, [self._key(client, key)], [])
