"""Redis from Trio: redis-py's asyncio client, bridged with trio-asyncio.

This is the one module where redis-py, asyncio and trio-asyncio appear. The rest of smsgw sees
a small Trio-flavoured surface: ``open_redis(url)`` yields a ``RedisClient`` with ``command``,
``run_script`` (EVALSHA, falling back to EVAL after a server restart flushed the script cache),
``pipeline`` and ``run_scripts`` (several script calls in one round trip).

Failure policy, chosen so callers can reason about it:

- Every call is bounded by ``timeout`` seconds (connect + send + reply). Connection refused,
  reset, timeouts, "LOADING" (Redis replaying its AOF after a restart), a read-only replica or an
  out-of-memory server all raise ``QueueUnavailable``: retryable, the caller decides when.
- redis-py's own retries are switched off. A command whose reply was lost may or may not have
  run; retrying it blindly could, for instance, ack twice or enqueue twice. The caller knows
  whether its operation is safe to repeat; this module does not guess.
- Reconnection needs no code here: the pool checks a connection before lending it and opens a
  new one when the old socket died, so the first call after Redis comes back just works.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs
import redis.asyncio
import redis.exceptions
import trio
import trio_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from smsgw.adapters.lua import LuaScript
from smsgw.queue.base import QueueError, QueueUnavailable

T = TypeVar("T")
Arg = str | bytes | int | float
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 32

# Connection-level failures: the server is down, restarting, unreachable or too slow.
_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica, or a primary demoted by a failover
    redis.exceptions.OutOfMemoryError,  # maxmemory reached: retry once consumers drained it
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    OSError,
    TimeoutError,
)
# The same conditions met by a command *inside* a Lua script arrive as a generic script error
# quoting the inner reply ("... @user_script:12: -OOM command not allowed ..."). Redis refuses
# only a script's first write that way, so such a script wrote nothing.
_UNAVAILABLE_IN_SCRIPT = re.compile(r"-(OOM|READONLY|LOADING|MASTERDOWN|TRYAGAIN|BUSY)\b")
_CONFIG_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthorizationError,
    redis.exceptions.NoPermissionError,
)


@attrs.frozen
class ScriptCall:
    """One invocation of a script, for ``RedisClient.run_scripts``."""

    script: LuaScript
    keys: Sequence[Arg]
    args: Sequence[Arg]

    def evalsha(self) -> tuple[Arg, ...]:
        return ("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args)

    def eval(self) -> tuple[Arg, ...]:
        return ("EVAL", self.script.source, len(self.keys), *self.keys, *self.args)


def describe_url(url: str) -> str:
    """``host:port/db`` of a Redis URL, without credentials (for error messages and logs)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or ''}"


def _check_url(url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"not a Redis URL (redis://, rediss:// or unix://): {url!r}")


class RedisClient:
    """A pool of connections to one Redis server, for Trio code.

    Safe to share between Trio tasks: concurrent calls use separate pooled connections.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        loop: trio_asyncio.TrioEventLoop,
        *,
        where: str,
        timeout: float,
        max_connections: int,
    ) -> None:
        self._client = client
        self._loop = loop
        self._where = where
        self.timeout = timeout
        # Callers beyond max_connections wait here, in Trio, within their timeout; the pool
        # behind it therefore never runs out (and never needs asyncio-side waiting).
        self._slots = trio.CapacityLimiter(max_connections)

    async def command(self, *args: Arg) -> Any:
        """Run one command; returns redis-py's parsed reply (bytes, not decoded)."""
        return await self._run(str(args[0]), lambda: self._client.execute_command(*args))

    async def run_script(self, script: LuaScript, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """EVALSHA, or EVAL when the server does not know the script (first use, or the script
        cache was flushed by a restart). Either way the script ran exactly once."""
        call = ScriptCall(script, keys, args)

        async def run() -> Any:
            try:
                return await self._client.execute_command(*call.evalsha())
            except redis.exceptions.NoScriptError:
                # NOSCRIPT means nothing ran, so running the source now is safe. EVAL also
                # caches the script, so the next EVALSHA finds it.
                return await self._client.execute_command(*call.eval())

        return await self._run(script.name, run)

    async def run_scripts(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Several script calls in one pipeline (one round trip, not one transaction: each
        script is atomic on its own). Replies in order; a script's error is raised after all
        ran. Calls refused with NOSCRIPT did not run and are sent again as EVAL."""
        if not calls:
            return []

        async def run() -> list[Any]:
            replies = await self._pipeline([c.evalsha() for c in calls])
            missing = [
                i for i, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)
            ]
            if missing:
                again = await self._pipeline([calls[i].eval() for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return replies

        return await self._run(calls[0].script.name, run)

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands in one round trip (no MULTI); the first error is raised after all
        ran."""

        async def run() -> list[Any]:
            replies = await self._pipeline(commands)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return replies

        return await self._run("pipeline", run)

    async def _pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    async def aclose(self) -> None:
        """Close every pooled connection (bounded, and done even when cancelled)."""
        with trio.CancelScope(shield=True), trio.move_on_after(self.timeout):
            await self._loop.run_aio_coroutine(self._client.aclose())

    async def _run(self, what: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run an asyncio coroutine on our loop with a deadline; map redis-py's errors."""
        try:
            with trio.fail_after(self.timeout):
                async with self._slots:
                    # The coroutine object is only created here; it runs inside asyncio.
                    result: T = await self._loop.run_aio_coroutine(make())
                    return result
        except trio.TooSlowError:
            raise QueueUnavailable(
                f"Redis at {self._where} gave no answer to {what} within {self.timeout} s"
            ) from None
        except _CONFIG_ERRORS as exc:
            raise QueueError(f"Redis at {self._where} refused {what}: {exc}") from exc
        except redis.exceptions.BusyLoadingError as exc:
            raise QueueUnavailable(
                f"Redis at {self._where} is loading its data after a restart: {exc}"
            ) from exc
        except _UNAVAILABLE_ERRORS as exc:
            raise QueueUnavailable(f"Redis at {self._where} unavailable ({what}): {exc}") from exc
        except redis.exceptions.RedisError as exc:
            if _UNAVAILABLE_IN_SCRIPT.search(str(exc)):
                raise QueueUnavailable(
                    f"Redis at {self._where} unavailable ({what}): {exc}"
                ) from exc
            raise QueueError(f"Redis at {self._where} failed {what}: {exc}") from exc


@asynccontextmanager
async def open_redis(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> AsyncIterator[RedisClient]:
    """Connect lazily to the Redis at ``url`` (``redis://[:password@]host:port/db``).

    Works inside an open trio-asyncio loop (the gateway opens one in its root nursery) and
    without one (then this opens its own for the duration). Nothing is sent until the first
    call, so opening succeeds while Redis is down; calls raise ``QueueUnavailable`` until it
    is back. ``timeout`` bounds every call, including waiting for a free pooled connection
    when ``max_connections`` are busy.
    """
    _check_url(url)
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0, got {timeout}")
    if max_connections < 1:
        raise ValueError(f"max_connections must be >= 1, got {max_connections}")
    async with AsyncExitStack() as stack:
        loop = trio_asyncio.current_loop.get()
        if loop is None:
            loop = await stack.enter_async_context(trio_asyncio.open_loop())

        async def make_client() -> redis.asyncio.Redis:
            # Created inside asyncio so that its locks and conditions belong to this loop.
            pool = redis.asyncio.ConnectionPool.from_url(
                url,
                max_connections=max_connections,
                # Trio's deadline (``timeout``) is what bounds a call; the socket timeouts only
                # back it up, so they are a little longer and never the one that fires.
                socket_connect_timeout=timeout + 1.0,
                socket_timeout=timeout + 1.0,
                retry=Retry(NoBackoff(), 0),
                # RESP2, and no "maintenance notifications": with those on (redis-py's default
                # for RESP3), the pool stops checking lent connections for a closed socket, so
                # the first call after a Redis restart would fail instead of reconnecting.
                protocol=2,
                maint_notifications_config=MaintNotificationsConfig(enabled=False),
            )
            return redis.asyncio.Redis.from_pool(pool)  # the client owns (and closes) the pool

        client = RedisClient(
            await loop.run_aio_coroutine(make_client()),
            loop,
            where=describe_url(url),
            timeout=timeout,
            max_connections=max_connections,
        )
        try:
            yield client
        finally:
            await client.aclose()


__all__ = [
    "DEFAULT_TIMEOUT",
    "LuaScript",
    "RedisClient",
    "ScriptCall",
    "describe_url",
    "open_redis",
]
