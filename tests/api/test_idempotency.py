"""Idempotency-Key and client_ref: repeats (concurrent, or after a restart) get the original
answer and never make a second message."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from smsgw.adapters.redis import open_redis
from smsgw.adapters.sqlite import open_sqlite
from smsgw.api.idempotency import ABANDONED_AFTER, Idempotency, KeyReused, SqliteAnswers
from smsgw.api.idempotency_redis import RedisAnswers
from smsgw.config import QueueBackend, RedisQueueConfig

from .harness import OTHER_KEY, SEND_KEY, Api, gateway_config, provider, start_api

BODY = {"to": "+4915112345678", "from": "ACME", "text": "once"}
REPEATS = 20


async def _concurrently(
    client: httpx.AsyncClient, path: str, body: object, headers: dict[str, str]
) -> list[httpx.Response]:
    responses: list[httpx.Response] = []

    async def post() -> None:
        responses.append(await client.post(path, json=body, headers=headers))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(REPEATS):
                nursery.start_soon(post)
    return responses


async def test_concurrent_repeats_of_a_key_make_one_message(api: Api) -> None:
    async with api.client(SEND_KEY) as client:
        responses = await _concurrently(client, "/messages", BODY, {"Idempotency-Key": "k-1"})
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    replayed = [r.headers.get("idempotent-replayed") for r in responses]
    assert replayed.count(None) == 1 and replayed.count("true") == REPEATS - 1
    assert api.gateway.stats().accepted == 1


async def test_concurrent_repeats_of_a_client_ref_make_one_message(api: Api) -> None:
    async with api.client(SEND_KEY) as client:
        responses = await _concurrently(client, "/messages", {**BODY, "client_ref": "ref-9"}, {})
        assert len({r.json()["id"] for r in responses}) == 1
        # The same client_ref in a batch, later, is the same message too.
        batch = await client.post(
            "/messages/batch",
            json={"messages": [{**BODY, "client_ref": "ref-9"}, {**BODY, "client_ref": "ref-9"}]},
        )
        ids = {r["id"] for r in batch.json()["results"]}
        assert ids == {responses[0].json()["id"]}
    assert api.gateway.stats().accepted == 1


async def test_concurrent_repeats_of_a_batch(api: Api) -> None:
    body = {"messages": [BODY, {**BODY, "text": "two"}]}
    async with api.client(SEND_KEY) as client:
        responses = await _concurrently(client, "/messages/batch", body, {"Idempotency-Key": "b"})
    assert {r.status_code for r in responses} == {202}
    assert len({r.text for r in responses}) == 1
    assert api.gateway.stats().accepted == 2


async def test_key_reused_for_another_body_is_refused(api: Api) -> None:
    async with api.client(SEND_KEY) as client:
        first = await client.post("/messages", json=BODY, headers={"Idempotency-Key": "k"})
        assert first.status_code == 202
        other = await client.post(
            "/messages", json={**BODY, "text": "else"}, headers={"Idempotency-Key": "k"}
        )
        assert other.status_code == 422
        assert other.json()["error"] == "idempotency_key_reused"
    assert api.gateway.stats().accepted == 1


async def test_keys_are_per_client(api: Api) -> None:
    headers = {"Idempotency-Key": "shared"}
    async with api.client(SEND_KEY) as one, api.client(OTHER_KEY) as two:
        a = await one.post("/messages", json=BODY, headers=headers)
        b = await two.post("/messages", json=BODY, headers=headers)
    assert a.json()["id"] != b.json()["id"]
    assert api.gateway.stats().accepted == 2


async def test_invalid_requests_are_remembered_too(api: Api) -> None:
    async with api.client(SEND_KEY) as client:
        bad = {**BODY, "to": "nope"}
        first = await client.post("/messages", json=bad, headers={"Idempotency-Key": "bad"})
        again = await client.post("/messages", json=bad, headers={"Idempotency-Key": "bad"})
    assert first.status_code == again.status_code == 422
    assert again.headers["idempotent-replayed"] == "true"
    assert first.json() == again.json()


async def test_remembered_across_a_restart(nursery: trio.Nursery, tmp_path: Path) -> None:
    config = gateway_config(tmp_path, [provider("down", 1)])
    api = await start_api(nursery, config)
    async with api.client(SEND_KEY) as client:
        first = await client.post("/messages", json=BODY, headers={"Idempotency-Key": "r"})
        by_ref = await client.post("/messages", json={**BODY, "client_ref": "keep"})
    await api.stop()
    api = await start_api(nursery, config)
    async with api.client(SEND_KEY) as client:
        again = await client.post("/messages", json=BODY, headers={"Idempotency-Key": "r"})
        ref_again = await client.post("/messages", json={**BODY, "client_ref": "keep"})
    assert again.json()["id"] == first.json()["id"]
    assert ref_again.json()["id"] == by_ref.json()["id"]
    assert api.gateway.stats().accepted == 0
    await api.stop()


# --- the Idempotency store on its own -------------------------------------------------------


@attrs.define
class Clock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    """The database's answers, on a fake wall clock."""
    async with open_sqlite(tmp_path / "idem.sqlite3") as db:
        clock = Clock()
        answers = SqliteAnswers(db, window=100.0, clock=clock)
        await answers.create_schema()
        yield Idempotency(answers), clock, db


@pytest.fixture(params=["sqlite", "redis"])
async def two_processes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Idempotency, Idempotency]]:
    """Two processes' Idempotency on one store: two connections to one database file, or two
    Redis clients on one prefix (two instances of a Redis queue)."""
    if request.param == "sqlite":
        path = tmp_path / "shared.sqlite3"
        async with open_sqlite(path) as db_a, open_sqlite(path) as db_b:
            a = SqliteAnswers(db_a, window=100.0)
            await a.create_schema()
            yield Idempotency(a), Idempotency(SqliteAnswers(db_b, window=100.0))
        return
    url = request.getfixturevalue("redis_server").url
    prefix = f"i{uuid.uuid4().hex[:10]}"
    async with open_redis(url) as redis_a, open_redis(url) as redis_b:
        yield (
            Idempotency(RedisAnswers(redis_a, prefix, window=100.0)),
            Idempotency(RedisAnswers(redis_b, prefix, window=100.0)),
        )


class Work:
    def __init__(self, status: int = 202) -> None:
        self.calls = 0
        self.status = status

    async def __call__(self) -> tuple[int, str]:
        self.calls += 1
        return self.status, json.dumps({"call": self.calls})


async def test_window_expiry(store: Any) -> None:
    idem, clock, _ = store
    work = Work()
    first = await idem.run("c", "k", "fp", work)
    clock.now += 99
    second = await idem.run("c", "k", "fp", work)
    assert (first.replayed, second.replayed, second.body) == (False, True, first.body)
    clock.now += 2  # 101 s after the first: forgotten
    third = await idem.run("c", "k", "fp", work)
    assert not third.replayed and work.calls == 2


async def test_window_expiry_in_redis(redis_server: Any) -> None:
    async with open_redis(redis_server.url) as redis:
        idem = Idempotency(RedisAnswers(redis, f"i{uuid.uuid4().hex[:10]}", window=0.5))
        work = Work()
        first = await idem.run("c", "k", "fp", work)
        second = await idem.run("c", "k", "fp", work)
        assert (first.replayed, second.replayed, second.body) == (False, True, first.body)
        await trio.sleep(0.7)  # Redis forgot it
        third = await idem.run("c", "k", "fp", work)
    assert not third.replayed and work.calls == 2


async def test_retryable_answers_and_failures_are_not_remembered(
    two_processes: tuple[Idempotency, Idempotency],
) -> None:
    idem, other = two_processes
    busy = Work(503)
    await idem.run("c", "k", None, busy)
    await other.run("c", "k", None, busy)
    assert busy.calls == 2

    async def boom() -> tuple[int, str]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await idem.run("c", "x", None, boom)
    work = Work()
    assert not (await other.run("c", "x", None, work)).replayed


async def test_fingerprint_mismatch(two_processes: tuple[Idempotency, Idempotency]) -> None:
    idem, other = two_processes
    await idem.run("c", "k", "fp1", Work())
    with pytest.raises(KeyReused):
        await other.run("c", "k", "fp2", Work())
    # None (client_ref) does not compare bodies.
    assert (await other.run("c", "k", None, Work())).replayed
    # Keys are per client.
    assert not (await other.run("d", "k", "fp2", Work())).replayed


async def test_abandoned_claim_of_a_dead_process_is_taken_over(store: Any) -> None:
    idem, clock, db = store
    await db.execute(
        "INSERT INTO api_idempotency (client, key, fingerprint, created_at) VALUES (?, ?, ?, ?)",
        ("c", "k", None, clock.now),
    )
    clock.now += ABANDONED_AFTER + 1
    work = Work()
    outcome = await idem.run("c", "k", None, work)
    assert not outcome.replayed and work.calls == 1


async def test_abandoned_claim_in_redis_is_taken_over(redis_server: Any) -> None:
    prefix = f"i{uuid.uuid4().hex[:10]}"
    async with open_redis(redis_server.url) as redis:
        dead = RedisAnswers(redis, prefix, window=100.0, abandoned_after=0.3)
        assert await dead.claim_or_find("c", "k", None) is None  # then the process died
        assert await dead.claim_or_find("c", "k", None) is True  # pending, for now
        await trio.sleep(0.4)
        work = Work()
        idem = Idempotency(RedisAnswers(redis, prefix, window=100.0, abandoned_after=0.3))
        outcome = await idem.run("c", "k", None, work)
    assert not outcome.replayed and work.calls == 1


async def test_a_claim_pending_in_another_process_is_waited_for(
    two_processes: tuple[Idempotency, Idempotency],
) -> None:
    a, b = two_processes
    release = trio.Event()
    claimed = trio.Event()
    calls = 0

    async def slow() -> tuple[int, str]:
        nonlocal calls
        calls += 1
        claimed.set()
        await release.wait()
        return 202, '{"id": "one"}'

    outcomes: list[Any] = []

    async def run(idem: Idempotency) -> None:
        outcomes.append(await idem.run("c", "k", None, slow))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, a)
            await claimed.wait()
            nursery.start_soon(run, b)
            await trio.sleep(0.2)  # b polls the pending claim meanwhile
            assert len(outcomes) == 0
            release.set()
    assert calls == 1
    assert sorted(o.replayed for o in outcomes) == [False, True]
    assert {o.body for o in outcomes} == {'{"id": "one"}'}


# --- several instances on one Redis queue ----------------------------------------------------


async def test_repeats_spread_over_two_instances_make_one_message(
    nursery: trio.Nursery, tmp_path: Path, redis_server: Any
) -> None:
    """A client repeating through a load balancer: its repeats of one Idempotency-Key, and of
    one client_ref, reach two instances of the gateway at once."""
    queue = {
        "backend": QueueBackend.REDIS,
        "redis": RedisQueueConfig(url=redis_server.url, prefix=f"i{uuid.uuid4().hex[:10]}"),
    }
    apis = []
    for name in ("a", "b"):
        config = gateway_config(tmp_path / name, [provider("down", 1)], queue=queue)
        config = attrs.evolve(config, gateway=attrs.evolve(config.gateway, instance_id=name))
        apis.append(await start_api(nursery, config))
    responses: dict[str, list[httpx.Response]] = {"key": [], "ref": []}

    async def post(api: Api, kind: str, body: object, headers: dict[str, str]) -> None:
        async with api.client(SEND_KEY) as client:
            responses[kind].append(await client.post("/messages", json=body, headers=headers))

    with trio.fail_after(30):
        async with trio.open_nursery() as senders:
            for n in range(REPEATS):
                api = apis[n % 2]
                senders.start_soon(post, api, "key", BODY, {"Idempotency-Key": "lb-1"})
                senders.start_soon(post, api, "ref", {**BODY, "client_ref": "lb-ref"}, {})
    for kind in ("key", "ref"):
        assert {r.status_code for r in responses[kind]} == {202}
        assert len({r.json()["id"] for r in responses[kind]}) == 1, kind
    assert sum(api.gateway.stats().accepted for api in apis) == 2
    for api in apis:
        await api.stop()
