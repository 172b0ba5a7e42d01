"""Test helpers: simulators on 127.0.0.1 that can be killed, provider configs with short
timers, a started manager, a gate to hold reconnections, and a background sender."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from smpp_codec import RegisteredDelivery, Response, SubmitSm, SubmitSmResp
from smsgw.config import ProviderConfig, ReconnectConfig
from smsgw.providers import ProviderManager
from smsgw.smpp import ClientConfig, SmppClientError, open_stream

FAST_RECONNECT = ReconnectConfig(initial=0.05, max=0.2, reset_after=5.0)


def provider(name: str, port: int, **overrides: Any) -> ProviderConfig:
    """A provider on 127.0.0.1:port with timers short enough for tests."""
    fields: dict[str, Any] = {
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "system_id": name,
        "password": "secret",
        "connections": 1,
        "window": 10,
        "connect_timeout": 2.0,
        "request_timeout": 5.0,
        "response_timeout": 2.0,
        "enquire_link_interval": 60.0,
        "reconnect": FAST_RECONNECT,
    }
    fields.update(overrides)
    return ProviderConfig(**fields)


def sm(*, receipt: bool = False, to: str = "46700000001") -> SubmitSm:
    return SubmitSm(
        sequence_number=0,
        source_addr="smsgw",
        destination_addr=to,
        short_message=b"hello",
        registered_delivery=RegisteredDelivery.SMSC_RECEIPT_ON_SUCCESS_OR_FAILURE if receipt else 0,
    )


def message_id(response: Response) -> str:
    assert isinstance(response, SubmitSmResp)
    return response.message_id


async def start_manager(nursery: trio.Nursery, *args: Any, **kwargs: Any) -> ProviderManager:
    manager = ProviderManager(*args, **kwargs)
    await nursery.start(manager.run)
    return manager


async def until(predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Poll ``predicate`` (every 10 ms) until it holds; ``trio.TooSlowError`` after ``timeout``."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


class Gate:
    """A connector that opens TCP connections only while the gate is open (others wait, and
    then fail by the client's connect timeout): holds a dropped connection down on demand."""

    def __init__(self) -> None:
        self.is_open = True
        self._opened = trio.Event()

    def close(self) -> None:
        self.is_open = False
        self._opened = trio.Event()

    def open(self) -> None:
        self.is_open = True
        self._opened.set()

    async def __call__(self, config: ClientConfig) -> trio.abc.Stream:
        while not self.is_open:
            await self._opened.wait()
        return await open_stream(config)


class Traffic:
    """Submits to one provider in a loop (bounded in count) until stopped; records outcomes."""

    def __init__(self, manager: ProviderManager, provider: str, *, limit: int = 5000) -> None:
        self.manager = manager
        self.provider = provider
        self.limit = limit
        self.ok = 0
        self.errors: list[Exception] = []
        self._stop = trio.Event()
        self.done = trio.Event()

    async def run(self) -> None:
        try:
            for _ in range(self.limit):
                if self._stop.is_set():
                    return
                try:
                    await self.manager.submit(self.provider, sm(), timeout=5.0)
                    self.ok += 1
                except SmppClientError as exc:
                    self.errors.append(exc)
                # Leave the CPU to the rest of the test (a 2-core shared machine).
                await trio.sleep(0.002)
        finally:
            self.done.set()

    async def stop(self) -> None:
        self._stop.set()
        await self.done.wait()
