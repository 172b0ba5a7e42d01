"""API keys' rate limits counted together by the instances of a Redis queue
(smsgw/api/ratelimit_redis.py): on a real Redis, two limiters as two instances, and two gateways
with their APIs behind a "load balancer" that alternates between them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import attrs
import trio

from smsgw.adapters.redis import open_redis
from smsgw.api.ratelimit_redis import LEASE_TTL, SharedKeyLimiter
from smsgw.config import ApiKeyConfig, ApiScope, QueueBackend, RedisQueueConfig
from smsgw.testing.ports import free_port

from .harness import LIMITED_KEY, gateway_config, provider, start_api

KEY = ApiKeyConfig(
    name="shop", sha256="0" * 64, scopes=(ApiScope.SEND,), rate_per_second=10, burst=10
)


def prefix() -> str:
    return f"l{uuid.uuid4().hex[:10]}"


async def test_two_instances_allow_a_key_its_rate_together(redis_server: Any) -> None:
    shared = prefix()
    async with open_redis(redis_server.url) as a_redis, open_redis(redis_server.url) as b_redis:
        instances = [SharedKeyLimiter(a_redis, shared), SharedKeyLimiter(b_redis, shared)]
        start = trio.current_time()
        waits = [await instances[n % 2].wait_time(KEY, 0.0) for n in range(40)]
        elapsed = trio.current_time() - start
    allowed = waits.count(0.0)
    # The burst (10), what the rate earned meanwhile, and what each instance may hold (1 each:
    # 0.1 s of 10/s). Counted apart, the two would have allowed 20.
    assert 10 <= allowed <= 10 + 10 * elapsed + 2
    refused = [w for w in waits if w > 0]
    assert refused and all(w <= 0.1 + 1e-3 for w in refused)  # one token comes every 0.1 s


async def test_tokens_taken_and_left_unspent_are_dropped(redis_server: Any) -> None:
    """An instance takes 0.1 s of the rate at once (10 tokens at 100/s); those it has not spent
    within LEASE_TTL are dropped, and the next request takes tokens from Redis again."""
    key = attrs.evolve(KEY, rate_per_second=100, burst=100)
    bucket = prefix()
    async with open_redis(redis_server.url) as redis:
        limiter = SharedKeyLimiter(redis, bucket)
        name = f"{{{bucket}}}:apirate:shop"
        assert await limiter.wait_time(key, 0.0) == 0.0
        first = float(await redis.command("GET", name))
        assert await limiter.wait_time(key, 0.0) == 0.0  # one of the 9 held: no round trip
        assert float(await redis.command("GET", name)) == first
        await trio.sleep(LEASE_TTL + 0.1)
        assert await limiter.wait_time(key, 0.0) == 0.0
        assert float(await redis.command("GET", name)) > first  # taken from Redis again


async def test_without_redis_each_instance_counts_alone_and_is_not_held_up() -> None:
    key = attrs.evolve(KEY, rate_per_second=0.001, burst=2)
    async with open_redis(f"redis://127.0.0.1:{free_port()}", timeout=0.5) as down:
        limiter = SharedKeyLimiter(down, prefix())
        with trio.fail_after(2):  # Redis is asked once, then left alone for a while
            waits = [await limiter.wait_time(key, float(n)) for n in range(20)]
    assert waits[:2] == [0.0, 0.0] and all(w > 0 for w in waits[2:])


async def test_a_limited_key_behind_a_load_balancer_gets_its_limit_once(
    nursery: trio.Nursery, tmp_path: Path, redis_server: Any
) -> None:
    """The "limited" key may make 2 requests (and one per 1,000 s): its requests alternate
    between two instances, and 2 pass in all, not 2 at each."""
    queue = {
        "backend": QueueBackend.REDIS,
        "redis": RedisQueueConfig(url=redis_server.url, prefix=prefix()),
    }
    apis = []
    for name in ("a", "b"):
        config = gateway_config(tmp_path / name, [provider("down", 1)], queue=queue)
        config = attrs.evolve(config, gateway=attrs.evolve(config.gateway, instance_id=name))
        apis.append(await start_api(nursery, config))
    statuses = []
    with trio.fail_after(30):
        for n in range(6):
            async with apis[n % 2].client(LIMITED_KEY) as client:
                response = await client.get("/messages")
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert float(response.headers["retry-after"]) > 0
    assert statuses == [200, 200, 429, 429, 429, 429]
    for api in apis:
        await api.stop()
