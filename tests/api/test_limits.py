"""Request validation (each bad field named), body size limit, backpressure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from .harness import SEND_KEY, Api, gateway_config, provider, start_api

OK: dict[str, Any] = {"to": "+4915112345678", "from": "ACME", "text": "hi"}


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"to": "12ab"}, {"to"}),
        ({"to": None}, {"to"}),
        ({"from": "+0123"}, {"from"}),  # E.164 cannot start with 0
        ({"from": "+1234567890123456"}, {"from"}),  # 16 digits
        ({"from": "TwelveChars1"}, {"from"}),  # alphanumeric: at most 11
        ({"from": "ACME!"}, {"from"}),
        ({"from": 12345}, {"from"}),
        ({"text": "x" * 1531}, {"text"}),  # 11 GSM parts of 153 > max_parts 10
        ({"text": "日" * 671}, {"text"}),  # 11 UCS-2 parts of 67
        ({"text": ""}, {"text"}),
        ({"encoding": "ebcdic"}, {"encoding"}),
        ({"encoding": "gsm7", "text": "日本"}, {"text"}),
        ({"schedule_at": "tomorrow"}, {"schedule_at"}),
        ({"schedule_at": "2026-13-45T00:00:00Z"}, {"schedule_at"}),
        ({"schedule_at": "2026-05-01T09:00:00"}, {"schedule_at"}),  # no offset
        ({"validity": -5}, {"validity"}),
        ({"priority": 10}, {"priority"}),
        ({"priority": True}, {"priority"}),
        ({"receipt": "yes"}, {"receipt"}),
        ({"tags": "vip"}, {"tags"}),
        ({"tags": ["ok", 3]}, {"tags[1]"}),
        ({"callback_url": "ftp://x"}, {"callback_url"}),
        ({"provider": "nope"}, {"provider"}),
        ({"data_coding": 300}, {"data_coding"}),
        ({"colour": "red"}, {"colour"}),
        ({"binary": "AAA="}, {"text"}),  # text and binary
        ({"text": None, "binary": "not base64!"}, {"binary"}),
        ({"text": None, "binary": "zz", "binary_format": "hex"}, {"binary"}),
        ({"text": None, "binary": "00", "binary_format": "octal"}, {"binary_format"}),
        (
            {"to": "x", "from": "+0", "encoding": "morse", "schedule_at": "soon"},
            {"to", "from", "encoding", "schedule_at"},
        ),
    ],
)
async def test_each_bad_field_is_named(api: Api, changes: dict[str, Any], fields: set[str]) -> None:
    body = {**OK, **changes}
    body = {k: v for k, v in body.items() if v is not None or k == "to"}
    async with api.client(SEND_KEY) as client:
        response = await client.post("/messages", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid"
    assert set(response.json()["fields"]) == fields
    assert api.gateway.stats().accepted == 0


@pytest.mark.parametrize("sender", ["+4915112345678", "12345", "ACME", "My Shop", "A-B_C.D&E", "X"])
async def test_good_senders(api: Api, sender: str) -> None:
    async with api.client(SEND_KEY) as client:
        response = await client.post("/messages", json={**OK, "from": sender})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "body", [b"", b"{", b"not json", b"[1,2]", b'"text"', b"NaN", b"\xff\xfe", b"[" * 100_000]
)
async def test_bodies_that_are_not_objects_are_400_or_422(api: Api, body: bytes) -> None:
    async with api.client(SEND_KEY) as client:
        response = await client.post(
            "/messages", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"] in ("bad_request", "invalid")


async def test_body_size_limit(nursery: trio.Nursery, tmp_path: Path) -> None:
    api = await start_api(
        nursery, gateway_config(tmp_path, [provider("sim", 1)], api={"max_body_size": 2048})
    )
    async with api.client(SEND_KEY) as client:
        response = await client.post("/messages", json={**OK, "text": "x" * 3000})
        assert response.status_code == 413
        assert response.json()["error"] == "too_large"

        async def chunks() -> Any:  # no Content-Length: the limit applies while reading
            for _ in range(10):
                yield b" " * 1000

        response = await client.post("/messages", content=chunks())
        assert response.status_code == 413
        response = await client.post("/messages", json={**OK, "text": "x" * 1000})
        assert response.status_code == 202
    await api.stop()


async def test_the_api_serves_at_most_max_connections_at_once(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    api = await start_api(
        nursery, gateway_config(tmp_path, [provider("sim", 1)], api={"max_connections": 1})
    )
    with trio.fail_after(20):
        async with api.client() as held, api.client() as waiting:
            assert (await held.get("/healthz")).status_code == 200  # kept alive: the one place
            answers: list[int] = []

            async def ask() -> None:
                answers.append((await waiting.get("/healthz")).status_code)

            async with trio.open_nursery() as asking:
                asking.start_soon(ask)
                await trio.sleep(0.3)
                assert answers == []  # not accepted while the other is open
                await held.aclose()
        assert answers == [200]
    await api.stop()


async def test_backpressure_when_the_queue_is_full(nursery: trio.Nursery, tmp_path: Path) -> None:
    # The provider never binds (nothing on port 1): messages stay in the queue.
    api = await start_api(
        nursery, gateway_config(tmp_path, [provider("down", 1)], queue={"max_depth": 3})
    )
    async with api.client(SEND_KEY) as client:
        for _ in range(3):
            assert (await client.post("/messages", json=OK)).status_code == 202
        with trio.fail_after(10):
            while True:  # the depth reading is cached for up to a second
                response = await client.post("/messages", json=OK)
                if response.status_code == 503:
                    break
                assert response.status_code == 202
                await trio.sleep(0.1)
        assert response.json()["error"] == "busy"
        assert int(response.headers["retry-after"]) >= 1
        batch = await client.post("/messages/batch", json={"messages": [OK, OK]})
        assert batch.status_code == 503
    accepted = api.gateway.stats().accepted
    assert 3 <= accepted < 3 + 15
    await api.stop()
