"""The coalescer in front of a real gateway (embedded queue and SQLite under tmp_path): single
submissions made at once are stored in few ``Gateway.submit`` calls, each still gets its own
answer, and a group's failure reaches every request in it."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from smsgw.api.coalesce import MAX_GROUP, Coalescer
from smsgw.config import GatewayConfig
from smsgw.gateway import Gateway, GatewayNotRunning
from smsgw.messages import Accepted, Rejected, SubmitRequest

from .harness import gateway_config, provider


class RecordingGateway(Gateway):
    """The real gateway, noting the size of each ``submit`` call."""

    def __init__(self, config: GatewayConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.calls: list[int] = []

    async def submit(self, requests: Sequence[SubmitRequest]) -> list[Accepted | Rejected]:
        self.calls.append(len(requests))
        return await super().submit(requests)


def request(n: int) -> SubmitRequest:
    to = "+4915112345678" if n % 7 else "not a number"
    return SubmitRequest(to=to, source="ACME", text=f"message {n}", client_id="tests")


async def test_concurrent_submissions_are_grouped_and_answered_one_by_one(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # Nothing listens on port 1: the gateway accepts and stores, and sends nothing.
    gateway = RecordingGateway(
        gateway_config(tmp_path, [provider("none", 1)]), rand=random.Random(3)
    )
    await nursery.start(gateway.run)
    coalescer = Coalescer(gateway)
    await nursery.start(coalescer.run)
    answers: dict[int, Accepted | Rejected] = {}

    async def submit(n: int) -> None:
        answers[n] = await coalescer.submit(request(n))

    with trio.fail_after(30):
        async with trio.open_nursery() as inner:
            for n in range(60):
                inner.start_soon(submit, n)
    assert sum(gateway.calls) == 60
    assert len(gateway.calls) < 60 and max(gateway.calls) <= MAX_GROUP
    assert max(gateway.calls) > 1
    for n, answer in answers.items():
        # Each answer is its own request's: the invalid ones (every 7th) alone are rejected.
        assert isinstance(answer, Rejected) == (n % 7 == 0), (n, answer)
    ids = {a.id for a in answers.values() if isinstance(a, Accepted)}
    assert len(ids) == 60 - len(range(0, 60, 7))
    assert gateway.stats().accepted == len(ids)
    with trio.fail_after(20):
        await gateway.drain(1.0)


async def test_a_failed_group_fails_every_request_in_it(tmp_path: Path) -> None:
    gateway = Gateway(gateway_config(tmp_path, [provider("none", 1)]))  # never started
    coalescer = Coalescer(gateway)
    failures: list[Exception] = []

    async def submit(n: int) -> None:
        try:
            await coalescer.submit(request(n))
        except GatewayNotRunning as exc:
            failures.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(coalescer.run)
            async with trio.open_nursery() as inner:
                for n in range(10):
                    inner.start_soon(submit, n)
            nursery.cancel_scope.cancel()
    assert len(failures) == 10
