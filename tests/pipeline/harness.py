"""Helpers of the pipeline tests: simulators on 127.0.0.1, gateway configurations with short
timers, a running gateway, and waiting for a message's status (bounded)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import trio
from simulators import Sim, start_simulator

from smsgw.config import (
    DatabaseConfig,
    GatewayConfig,
    GatewaySection,
    ProviderConfig,
    QueueBackend,
    QueueConfig,
    RateLimitConfig,
    ReconnectConfig,
    RedisQueueConfig,
    RetryPolicy,
    RouteConfig,
)
from smsgw.gateway import Gateway
from smsgw.messages import MessageView
from smsgw.model import MessageStatus
from smsgw.queue.base import DeadLetter
from smsgw.simulator import SimulatorConfig

FAST_RECONNECT = ReconnectConfig(initial=0.05, max=0.2, reset_after=5.0)
FAST_RETRY = RetryPolicy(
    max_attempts=3, initial_delay=0.05, multiplier=2.0, max_delay=0.2, jitter=0.0
)


@attrs.define
class FakeClock:
    """Wall-clock epoch seconds that move only when told to (starts at the real time, so SMPP
    times and receipt dates stay plausible)."""

    now: float = attrs.field(factory=time.time)  # wall-clock

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def provider(name: str, port: int, **overrides: Any) -> ProviderConfig:
    """A provider on 127.0.0.1:port with timers short enough for tests."""
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
        "reconnect": FAST_RECONNECT,
        "early_receipt_park": 2.0,
    }
    fields.update(overrides)
    return ProviderConfig(**fields)


@attrs.frozen
class Backend:
    """Which queue a test runs on: the embedded one, or a Redis (url) under a fresh prefix."""

    name: str
    redis_url: str | None = None

    def queue(self, **overrides: Any) -> QueueConfig:
        fields: dict[str, Any] = {
            "visibility_timeout": 10.0,
            "consumers": 2,
            "lease_batch": 16,
        }
        if self.redis_url is not None:
            fields["backend"] = QueueBackend.REDIS
            fields["redis"] = RedisQueueConfig(
                url=self.redis_url, prefix=f"t{uuid.uuid4().hex[:10]}"
            )
        fields.update(overrides)
        return QueueConfig(**fields)


EMBEDDED = Backend("embedded")


def gateway_config(
    state: Path,
    providers: Iterable[ProviderConfig],
    *,
    backend: Backend = EMBEDDED,
    routes: Iterable[RouteConfig] = (),
    queue: dict[str, Any] | None = None,
    **sections: Any,
) -> GatewayConfig:
    fields: dict[str, Any] = {
        "providers": tuple(providers),
        "routes": tuple(routes),
        "gateway": GatewaySection(state_dir=state, drain_grace=5.0),
        "queue": backend.queue(**(queue or {})),
        "database": DatabaseConfig(commit_interval=0.002),
        "retry": FAST_RETRY,
        "rate_limit": RateLimitConfig(pause=0.05),
    }
    fields.update(sections)
    return GatewayConfig(**fields)


class Harness:
    """Starts simulators and gateways in one nursery; :meth:`close` drains the gateways."""

    def __init__(self, nursery: trio.Nursery, tmp_path: Path, backend: Backend) -> None:
        self.nursery = nursery
        self.tmp_path = tmp_path
        self.backend = backend
        self.gateways: list[Gateway] = []

    async def simulator(self, config: SimulatorConfig | None = None, **fields: Any) -> Sim:
        if config is None:
            config = SimulatorConfig(seed=1, **fields)
        return await start_simulator(self.nursery, config)

    def config(self, providers: Iterable[ProviderConfig], **kwargs: Any) -> GatewayConfig:
        kwargs.setdefault("backend", self.backend)
        return gateway_config(self.tmp_path / "state", providers, **kwargs)

    async def gateway(
        self, config: GatewayConfig, *, clock: Callable[[], float] | None = None
    ) -> Gateway:
        import random

        # The tests inspect the webhook outbox (and its targets are not real servers).
        gateway = Gateway(
            config, clock=clock or time.time, rand=random.Random(7), deliver_webhooks=False
        )  # wall-clock
        with trio.fail_after(10):
            await self.nursery.start(gateway.run)
        self.gateways.append(gateway)
        return gateway

    async def close(self) -> None:
        with trio.fail_after(30):
            for gateway in self.gateways:
                await gateway.drain(2.0)


async def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 10.0, what: str = ""
) -> None:
    """Poll ``predicate`` every 10 ms until it holds; fail after ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"not within {timeout}s: {what or predicate}")


async def wait_status(
    gateway: Gateway,
    message_id: str,
    *statuses: MessageStatus,
    timeout: float = 10.0,
) -> MessageView:
    """The message once its status is one of ``statuses`` (polled; fails after ``timeout``)."""
    view: MessageView | None = None
    with trio.move_on_after(timeout):
        while True:
            view = await gateway.message(message_id)
            if view is not None and view.status in statuses:
                return view
            await trio.sleep(0.02)
    last = "no row" if view is None else f"{view.status.value} ({view.reason})"
    raise AssertionError(
        f"message {message_id} not {[s.value for s in statuses]} within {timeout}s: {last}"
    )


async def wait_dead_letters(gateway: Gateway, *ids: str, timeout: float = 10.0) -> list[DeadLetter]:
    """The dead-letter queue once it holds exactly ``ids`` (polled: a message's status and
    counters say "failed" a moment before the queue has moved it)."""
    dead: list[DeadLetter] = []
    with trio.move_on_after(timeout):
        while True:
            dead = await gateway.dead_letters()
            if sorted(d.message.id for d in dead) == sorted(ids):
                return dead
            await trio.sleep(0.01)
    raise AssertionError(f"dead letters not {sorted(ids)} within {timeout}s: {dead}")


def message_history(view: MessageView) -> list[MessageStatus]:
    """The message's aggregated statuses, oldest first (its applied message-level events)."""
    return [e.status for e in view.events if e.part_number is None and e.applied]


def part_history(view: MessageView, part: int) -> list[MessageStatus]:
    return [e.status for e in view.events if e.part_number == part and e.applied]
