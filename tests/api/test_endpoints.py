"""Every endpoint over real HTTP against a gateway in front of the simulator."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from sqlite_lock import write_locked

from smsgw.config import EmbeddedQueueConfig, GatewayConfig, QueueBackend, RedisQueueConfig
from smsgw.simulator import Faults

from .harness import (
    ADMIN_KEY,
    OTHER_KEY,
    READ_KEY,
    SEND_KEY,
    Api,
    gateway_config,
    provider,
    start_api,
    start_simulator,
    wait_bound,
    wait_status,
)

TO = "+4915112345678"


def ready_checks(**changed: bool) -> dict[str, bool]:
    """The ``/readyz`` checks of a ready instance bound to its provider, ``changed`` apart."""
    checks = {
        "accepting": True,
        "storage": True,
        "queue": True,
        "provider_bound": True,
        "sent_by_others": False,
    }
    return {**checks, **changed}


async def test_post_message_is_delivered_with_full_history(api: Api) -> None:
    async with api.client(SEND_KEY) as client:
        response = await client.post(
            "/messages", json={"to": TO, "from": "ACME", "text": "hello", "client_ref": "o-1"}
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["status"] == "queued"
        assert accepted["parts"] == 1
        assert accepted["encoding"] == "gsm7"
        view = await wait_status(client, accepted["id"], "delivered")
    assert view["to"] == TO and view["from"] == "ACME"
    assert view["client"] == "sender" and view["client_ref"] == "o-1"
    assert view["provider"] == "sim"
    assert [p["status"] for p in view["parts"]] == ["delivered"]
    assert view["parts"][0]["smsc_id"]
    statuses = [e["status"] for e in view["events"] if e["part_number"] is None]
    assert statuses[0] == "queued" and statuses[-1] == "delivered"
    assert "submitted" in statuses


async def test_unicode_binary_and_scheduled_messages(api: Api) -> None:
    async with api.client(SEND_KEY) as client:
        text = "Привет мир " * 10  # 110 UCS-2 characters: 2 parts
        response = await client.post("/messages", json={"to": TO, "from": "ACME", "text": text})
        assert response.status_code == 202, response.text
        assert response.json()["encoding"] == "ucs2"
        assert response.json()["parts"] == 2
        data = base64.b64encode(b"\x01\x02\x03").decode()
        response = await client.post(
            "/messages", json={"to": TO, "from": "12345", "binary": data, "data_coding": 4}
        )
        assert response.status_code == 202, response.text
        assert response.json()["encoding"] == "binary"
        response = await client.post(
            "/messages",
            json={
                "to": TO,
                "from": "ACME",
                "text": "later",
                "schedule_at": "2999-01-01T00:00:00Z",
            },
        )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "scheduled"
        view = (await client.get(f"/messages/{response.json()['id']}")).json()
        assert view["schedule_at"] == 32472144000.0


async def test_batch_queues_the_valid_and_names_the_invalid(api: Api) -> None:
    messages = [
        {"to": TO, "from": "ACME", "text": "one"},
        {"to": "not-a-number", "from": "ACME", "text": "two"},
        {"to": TO, "from": "ACME", "text": "three", "client_ref": "b-3"},
        {"to": TO, "from": "ACME", "text": "four", "provider": "nope"},
    ]
    async with api.client(SEND_KEY) as client:
        response = await client.post("/messages/batch", json={"messages": messages})
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["accepted"] == 2 and body["rejected"] == 2
        results = body["results"]
        assert [r["index"] for r in results] == [0, 1, 2, 3]
        assert [r["result"] for r in results] == ["accepted", "rejected", "accepted", "rejected"]
        assert results[0]["status"] == "queued"
        assert set(results[1]["errors"]) == {"to"}
        assert set(results[3]["errors"]) == {"provider"}
        for result in (results[0], results[2]):
            await wait_status(client, result["id"], "delivered")


async def test_batch_over_the_maximum_is_refused(nursery: trio.Nursery, tmp_path: Path) -> None:
    api = await start_api(
        nursery, gateway_config(tmp_path, [provider("sim", 1)], api={"max_batch": 3})
    )
    async with api.client(SEND_KEY) as client:
        one = {"to": TO, "from": "ACME", "text": "x"}
        response = await client.post("/messages/batch", json={"messages": [one] * 4})
        assert response.status_code == 422
        assert "messages" in response.json()["fields"]
        response = await client.post("/messages/batch", json={"messages": []})
        assert response.status_code == 422
    await api.stop()


async def test_list_messages_filters_and_pages(api: Api) -> None:
    async with api.client(SEND_KEY) as client:
        ids = []
        for n in range(5):
            response = await client.post(
                "/messages", json={"to": TO, "from": "ACME", "text": f"m{n}", "client_ref": f"r{n}"}
            )
            ids.append(response.json()["id"])
        seen: list[str] = []
        cursor = None
        for _ in range(10):  # bounded: 5 messages in pages of 2
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/messages", params=params)).json()
            assert len(page["items"]) <= 2
            seen += [m["id"] for m in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids) and len(seen) == 5
        only = (await client.get("/messages", params={"client_ref": "r3"})).json()["items"]
        assert [m["id"] for m in only] == [ids[3]]
        future = (await client.get("/messages", params={"since": "2999-01-01T00:00:00Z"})).json()
        assert future["items"] == []
        past = (await client.get("/messages", params={"until": "2000-01-01T00:00:00+02:00"})).json()
        assert past["items"] == []
        await wait_status(client, ids[0], "delivered")
        delivered = (await client.get("/messages", params={"status": "delivered"})).json()
        assert ids[0] in [m["id"] for m in delivered["items"]]
        bad = await client.get("/messages", params={"status": "nope", "since": "yesterday"})
        assert bad.status_code == 422
        assert set(bad.json()["fields"]) == {"status", "since"}
        bad = await client.get("/messages", params={"cursor": "garbage"})
        assert bad.status_code == 422 and "cursor" in bad.json()["fields"]


async def test_a_client_sees_only_its_own_messages_unless_admin(api: Api) -> None:
    async with api.client(SEND_KEY) as sender, api.client(OTHER_KEY) as other:
        response = await sender.post("/messages", json={"to": TO, "from": "ACME", "text": "x"})
        message_id = response.json()["id"]
        assert (await other.get(f"/messages/{message_id}")).status_code == 404
        listed = (await other.get("/messages")).json()["items"]
        assert message_id not in [m["id"] for m in listed]
    async with api.client(ADMIN_KEY) as admin:
        assert (await admin.get(f"/messages/{message_id}")).status_code == 200
        listed = (await admin.get("/messages")).json()["items"]
        assert message_id in [m["id"] for m in listed]


async def test_get_unknown_message_is_404(api: Api) -> None:
    async with api.client(READ_KEY) as client:
        response = await client.get("/messages/0123456789abcdef")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


async def test_preview_counts_without_sending(api: Api) -> None:
    async with api.client(SEND_KEY) as client:
        response = await client.post("/messages/preview", json={"text": "x" * 161})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["encoding"] == "gsm7" and body["unit"] == "septets"
        assert body["units"] == 161 and body["parts"] == 2 and body["per_part"] == 153
        assert body["sendable"] is True
        response = await client.post("/messages/preview", json={"text": "€"})
        assert response.json()["units"] == 2  # an extension character: two septets
        response = await client.post("/messages/preview", json={"text": "日本", "encoding": "gsm7"})
        assert response.status_code == 422 and "text" in response.json()["fields"]
        response = await client.post("/messages/preview", json={"text": "x" * 2000})
        assert response.json()["sendable"] is False
    assert api.gateway.stats().accepted == 0


async def test_inbound_messages_are_listed(api: Api) -> None:
    assert api.sim is not None
    await api.sim.send_mo(source_addr="4915100000001", destination_addr="12345", text="hi there")
    await api.sim.send_mo(source_addr="4915100000002", destination_addr="12345", text=b"\x00\xff")
    async with api.client(READ_KEY) as client:
        items: list[dict[str, object]] = []
        with trio.fail_after(10):
            while len(items) < 2:
                items = (await client.get("/inbound")).json()["items"]
                await trio.sleep(0.02)
        page = (await client.get("/inbound", params={"limit": "1"})).json()
        assert len(page["items"]) == 1 and page["next_cursor"] is not None
        rest = (await client.get("/inbound", params={"cursor": page["next_cursor"]})).json()
        assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    by_source = {m["from"]: m for m in items}
    assert by_source["4915100000001"]["text"] == "hi there"
    assert by_source["4915100000001"]["complete"] is True
    assert by_source["4915100000002"]["payload"] == base64.b64encode(b"\x00\xff").decode()


async def test_dead_letters_listed_with_history_and_replayed(api: Api) -> None:
    assert api.sim is not None
    api.sim.set_faults(Faults(permanent_error_fraction=1.0))
    async with api.client(SEND_KEY) as sender, api.client(ADMIN_KEY) as admin:
        response = await sender.post("/messages", json={"to": TO, "from": "ACME", "text": "x"})
        message_id = response.json()["id"]
        await wait_status(sender, message_id, "failed")
        letters: list[dict[str, object]] = []
        with trio.fail_after(10):
            while not letters:
                letters = (await admin.get("/dead-letters")).json()["items"]
                await trio.sleep(0.02)
        (letter,) = letters
        assert letter["id"] == message_id and letter["reason"]
        assert letter["message"]["status"] == "failed"  # type: ignore[index]
        assert letter["message"]["events"]  # type: ignore[index]
        api.sim.set_faults(Faults())
        response = await admin.post(f"/dead-letters/{message_id}/replay")
        assert response.status_code == 202, response.text
        await wait_status(sender, message_id, "delivered")
        assert (await admin.get("/dead-letters")).json()["items"] == []
        response = await admin.post(f"/dead-letters/{message_id}/replay")
        assert response.status_code == 404


async def test_providers_shows_connections_rates_and_queue(api: Api) -> None:
    async with api.client(READ_KEY) as client:
        response = await client.get("/providers")
    assert response.status_code == 200
    body = response.json()
    (sim,) = body["providers"]
    assert sim["name"] == "sim" and sim["healthy"] is True
    assert sim["bound_connections"] >= 1
    assert sim["configured_rate"] == api.config.provider("sim").rate.per_second
    assert sim["current_rate"] > 0
    assert sim["connections"][0]["state"] == "bound"
    assert set(body["queue"]) == {"ready", "delayed", "leased", "dead", "ready_by_priority"}
    assert body["max_queue_depth"] == api.config.queue.max_depth
    assert body["instances"] is None  # the embedded queue: nothing shared


async def test_health_and_readiness(api: Api) -> None:
    async with api.client() as client:  # no key needed
        assert (await client.get("/healthz")).json() == {"alive": True}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "ready": True,
            "checks": ready_checks(),
        }


async def test_answers_close_their_connection_once_the_gateway_drains(api: Api) -> None:
    async with api.client(SEND_KEY) as client:
        before = await client.get("/healthz")
        assert "close" not in before.headers.get("connection", "")
        with trio.fail_after(20):
            await api.gateway.drain(1.0)
        refused = await client.post(
            "/messages", json={"to": "+4915112345678", "from": "ACME", "text": "hi"}
        )
        assert refused.status_code == 503
        assert refused.headers["connection"] == "close"
        after = await client.get("/healthz")
        assert after.status_code == 200
        assert after.headers["connection"] == "close"
        # A draining gateway takes no submissions: not ready, so load balancers move on.
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["accepting"] is False


async def test_not_ready_without_a_bound_provider(nursery: trio.Nursery, tmp_path: Path) -> None:
    # Port 1 on loopback: nothing listens, the provider never binds.
    api = await start_api(nursery, gateway_config(tmp_path, [provider("down", 1)]))
    async with api.client() as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == ready_checks(provider_bound=False)
    await api.stop()


@pytest.mark.parametrize("check", ["storage", "queue"])
async def test_not_ready_while_the_database_or_the_queue_refuses_writes(
    nursery: trio.Nursery, tmp_path: Path, check: str
) -> None:
    """Reads work on a full disk: once a write failed (here: another process holds the write
    lock beyond the busy timeout), ``storage`` (the database) or ``queue`` (the embedded
    queue's file, which may be on another disk) is false until a probe write commits again,
    so a load balancer stops sending submissions that could only get 503."""
    _, port = await start_simulator(nursery)
    config = gateway_config(tmp_path, [provider("sim", port)])
    config = attrs.evolve(
        config,
        database=attrs.evolve(config.database, busy_timeout=0.3),
        queue=attrs.evolve(config.queue, embedded=EmbeddedQueueConfig(busy_timeout=0.3)),
    )
    api = await start_api(nursery, config)
    await wait_bound(api)
    body = {"to": TO, "from": "ACME", "text": "hi"}
    locked = config.database_path if check == "storage" else config.queue_path
    async with api.client() as probe, api.client(SEND_KEY) as client:
        assert (await probe.get("/readyz")).status_code == 200
        with write_locked(locked):
            refused = await client.post("/messages", json=body)
            assert refused.status_code == 503, refused.text
            ready = await probe.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"] == ready_checks(**{check: False})
        ready = await probe.get("/readyz")
        assert ready.status_code == 200, ready.json()
        assert (await client.post("/messages", json=body)).status_code == 202
    await api.stop()


async def test_an_instance_the_shared_limits_leave_without_connections_is_ready(
    nursery: trio.Nursery, tmp_path: Path, redis_server: Any
) -> None:
    """Two instances on one Redis share an account of one connection: b keeps none and is
    ready unbound (the submissions it takes are sent by a); when a stops, b takes the
    connection and is ready bound."""
    _, port = await start_simulator(nursery)
    redis = RedisQueueConfig(
        url=redis_server.url,
        prefix=f"t{uuid.uuid4().hex[:10]}",
        heartbeat=0.2,
        instance_timeout=1.0,
    )

    def instance(name: str) -> GatewayConfig:
        config = gateway_config(
            tmp_path / name,
            [provider("sim", port)],
            queue={"backend": QueueBackend.REDIS, "redis": redis},
        )
        section = attrs.evolve(config.gateway, instance_id=name)
        return attrs.evolve(config, gateway=section)

    with trio.fail_after(30):
        a = await start_api(nursery, instance("a"))
        await wait_bound(a)
        b = await start_api(nursery, instance("b"))
        while a.gateway.instances() != ("a", "b") or b.gateway.instances() != ("a", "b"):
            await trio.sleep(0.05)
        async with b.client() as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == ready_checks(provider_bound=False, sent_by_others=True)
        async with b.client(SEND_KEY) as client:
            accepted = (
                await client.post("/messages", json={"to": TO, "from": "ACME", "text": "hi"})
            ).json()
        assert accepted["status"] == "queued"
        while a.gateway.stats().submitted < 1:  # a sends it
            await trio.sleep(0.02)
        await a.stop()
        await wait_bound(b)
        async with b.client() as client:
            checks = (await client.get("/readyz")).json()["checks"]
        assert checks["provider_bound"] and not checks["sent_by_others"]
        await b.stop()


async def test_unknown_endpoint_and_method(api: Api) -> None:
    async with api.client(READ_KEY) as client:
        assert (await client.get("/nothing")).status_code == 404
        response = await client.delete("/messages")
        assert response.status_code == 405
        assert (await client.get("/api/v2/messages", params={})).status_code == 404


async def test_concurrent_single_submissions_each_get_their_own_answer(api: Api) -> None:
    # Concurrent requests are stored together (smsgw.api.coalesce): each still gets its own
    # id, and an invalid one among them is refused alone.
    answers: dict[int, tuple[int, dict[str, Any]]] = {}

    async def post(client: httpx.AsyncClient, n: int) -> None:
        body = {"to": TO if n % 5 else "bad", "from": "ACME", "text": f"n{n}"}
        response = await client.post("/messages", json=body)
        answers[n] = (response.status_code, response.json())

    async with api.client(SEND_KEY) as client:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for n in range(50):
                    nursery.start_soon(post, client, n)
        for n, (status, body) in answers.items():
            if n % 5:
                assert status == 202
                view = (await client.get(f"/messages/{body['id']}")).json()
                assert view["to"] == TO
            else:
                assert status == 422 and set(body["fields"]) == {"to"}
    ids = {body["id"] for status, body in answers.values() if status == 202}
    assert len(ids) == 40
    assert api.gateway.stats().accepted == 40
