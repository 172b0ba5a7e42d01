"""A gateway with its HTTP API on 127.0.0.1 (port 0), in front of the SMSC simulator, with
short timers, and the API keys the tests use."""

from __future__ import annotations

import functools
import json
import random
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import httpx
import jsonschema  # type: ignore[import-untyped]
import trio

from smsgw.api import hash_key, serve_api
from smsgw.config import (
    ApiConfig,
    ApiKeyConfig,
    ApiScope,
    DatabaseConfig,
    GatewayConfig,
    GatewaySection,
    ProviderConfig,
    QueueConfig,
    RateLimitConfig,
    ReconnectConfig,
    RetryPolicy,
)
from smsgw.gateway import Gateway
from smsgw.simulator import Simulator, SimulatorConfig

SEND_KEY = "send-key-0123456789abcdef"
READ_KEY = "read-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
OTHER_KEY = "other-sender-0123456789abcdef"
LIMITED_KEY = "limited-key-0123456789abcdef"

KEYS = (
    ApiKeyConfig(name="sender", sha256=hash_key(SEND_KEY), scopes=(ApiScope.SEND, ApiScope.READ)),
    ApiKeyConfig(name="reader", sha256=hash_key(READ_KEY), scopes=(ApiScope.READ,)),
    ApiKeyConfig(
        name="ops",
        sha256=hash_key(ADMIN_KEY),
        scopes=(ApiScope.SEND, ApiScope.READ, ApiScope.ADMIN),
    ),
    ApiKeyConfig(name="other", sha256=hash_key(OTHER_KEY), scopes=(ApiScope.SEND, ApiScope.READ)),
    # 2 requests at once, then one per 1000 s: the third request in a test is refused.
    ApiKeyConfig(
        name="limited",
        sha256=hash_key(LIMITED_KEY),
        scopes=(ApiScope.SEND, ApiScope.READ),
        rate_per_second=0.001,
        burst=2,
    ),
)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def provider(name: str, port: int, **overrides: Any) -> ProviderConfig:
    fields: dict[str, Any] = {
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "system_id": name,
        "password": "secret",
        "connect_timeout": 2.0,
        "request_timeout": 2.0,
        "response_timeout": 2.0,
        "enquire_link_interval": 60.0,
        "reconnect": ReconnectConfig(initial=0.05, max=0.2, reset_after=5.0),
    }
    fields.update(overrides)
    return ProviderConfig(**fields)


def gateway_config(
    state: Path,
    providers: Iterable[ProviderConfig],
    *,
    api: dict[str, Any] | None = None,
    queue: dict[str, Any] | None = None,
) -> GatewayConfig:
    return GatewayConfig(
        providers=tuple(providers),
        gateway=GatewaySection(state_dir=state, drain_grace=2.0),
        queue=QueueConfig(**{"visibility_timeout": 10.0, "consumers": 2, **(queue or {})}),
        database=DatabaseConfig(commit_interval=0.002),
        retry=RetryPolicy(
            max_attempts=2, initial_delay=0.05, multiplier=2.0, max_delay=0.1, jitter=0.0
        ),
        rate_limit=RateLimitConfig(pause=0.05),
        api=ApiConfig(**{"listen": "127.0.0.1", "port": 0, "keys": KEYS, **(api or {})}),
    )


@attrs.define
class Api:
    """A running gateway and API: ``url`` is the API's base (``http://127.0.0.1:PORT``)."""

    gateway: Gateway
    config: GatewayConfig
    port: int
    scope: trio.CancelScope
    sim: Simulator | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(
        self, key: str | None = None, *, headers: dict[str, str] | None = None
    ) -> httpx.AsyncClient:
        """An HTTP client on ``/api/v1`` sending ``key`` (or exactly ``headers``)."""
        if headers is None:
            headers = auth(key) if key is not None else {}
        return httpx.AsyncClient(
            base_url=self.url + "/api/v1",
            headers=headers,
            timeout=10.0,
            event_hooks={"response": [check_against_spec]},
        )

    async def stop(self) -> None:
        with trio.fail_after(20):
            await self.gateway.drain(1.0)
        self.scope.cancel()


async def start_simulator(
    nursery: trio.Nursery, config: SimulatorConfig | None = None
) -> tuple[Simulator, int]:
    sim = Simulator(config or SimulatorConfig(seed=1))
    port: int = await nursery.start(sim.serve)
    return sim, port


async def start_api(
    nursery: trio.Nursery,
    config: GatewayConfig,
    *,
    clock: Callable[[], float] = time.time,  # wall-clock
) -> Api:
    """Gateway, then API, each in a scope of their own (so a test can stop and restart)."""
    scope = trio.CancelScope()
    gateway = Gateway(config, clock=clock, rand=random.Random(7))

    async def run(task_status: trio.TaskStatus[int]) -> None:
        with scope:
            async with trio.open_nursery() as inner:
                await inner.start(gateway.run)
                port = await inner.start(functools.partial(serve_api, gateway, config))
                task_status.started(port)

    with trio.fail_after(15):
        port: int = await nursery.start(run)
    return Api(gateway, config, port, scope)


async def wait_status(
    client: httpx.AsyncClient, message_id: str, *statuses: str, timeout: float = 10.0
) -> dict[str, Any]:
    """The message (GET /messages/{id}) once its status is one of ``statuses``."""
    body: dict[str, Any] = {}
    with trio.move_on_after(timeout):
        while True:
            response = await client.get(f"/messages/{message_id}")
            assert response.status_code == 200, response.text
            body = response.json()
            if body["status"] in statuses:
                return body
            await trio.sleep(0.02)
    raise AssertionError(f"{message_id} not {statuses} within {timeout}s: {body.get('status')}")


async def wait_bound(api: Api, timeout: float = 10.0) -> None:
    """Until every provider has a bound connection (fails after ``timeout``)."""
    with trio.fail_after(timeout):
        while not all(h.bound for h in api.gateway.providers.snapshot().values()):
            await trio.sleep(0.02)


SPEC: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "docs" / "openapi.yaml").read_text(encoding="utf-8")
)


def conforms(value: object, schema: str | dict[str, Any]) -> None:
    """``value`` matches the named component schema of docs/openapi.yaml (or ``schema``,
    whose ``$ref`` s point into the spec)."""
    root = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
    jsonschema.Draft202012Validator({**root, "components": SPEC["components"]}).validate(value)


def answer_schema(path: str, method: str, status: int) -> dict[str, Any]:
    """The schema docs/openapi.yaml gives the ``status`` answer of ``method path``."""
    response = SPEC["paths"][path][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


_SPEC_PATHS = [
    (re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(p))), p) for p in SPEC["paths"]
]


def assert_documented(response: httpx.Response) -> None:
    """Every answer of a documented endpoint has a status documented for it and a body
    matching its schema; no answer is a 500."""
    assert response.status_code != 500, response.text
    path = response.request.url.path.removeprefix("/api/v1")
    method = response.request.method.lower()
    for regex, template in _SPEC_PATHS:
        if regex.fullmatch(path) and method in SPEC["paths"][template]:
            documented = SPEC["paths"][template][method]["responses"]
            assert str(response.status_code) in documented, (method, template, response.text)
            conforms(response.json(), answer_schema(template, method, response.status_code))
            return


async def check_against_spec(response: httpx.Response) -> None:
    """httpx response hook: :func:`assert_documented`."""
    await response.aread()
    assert_documented(response)
