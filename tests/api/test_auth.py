"""Authentication, scopes and per-key rate limits: refused requests never carry data."""

from __future__ import annotations

import hashlib

import attrs
import httpx
import pytest

from smsgw.api.auth import Authenticator, hash_key, key_from_headers
from smsgw.config import ApiKeyConfig, ApiScope

from .harness import KEYS, LIMITED_KEY, READ_KEY, SEND_KEY, Api

ENDPOINTS = [
    ("POST", "/messages"),
    ("POST", "/messages/batch"),
    ("POST", "/messages/preview"),
    ("GET", "/messages"),
    ("GET", "/messages/abc"),
    ("GET", "/inbound"),
    ("GET", "/dead-letters"),
    ("POST", "/dead-letters/abc/replay"),
    ("GET", "/providers"),
]
BODY = {"to": "+4915112345678", "from": "ACME", "text": "hi"}


def _no_data(response: httpx.Response) -> None:
    assert set(response.json()) == {"error", "message"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"X-API-Key": "wrong-key"},
        {"Authorization": f"Basic {SEND_KEY}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {SEND_KEY}x"},
    ],
)
async def test_every_endpoint_needs_a_valid_key(api: Api, headers: dict[str, str]) -> None:
    async with api.client(headers=headers) as client:
        for method, path in ENDPOINTS:
            response = await client.request(method, path, json=BODY)
            assert response.status_code == 401, (method, path)
            _no_data(response)
    assert api.gateway.stats().accepted == 0


async def test_both_header_forms_are_accepted(api: Api) -> None:
    async with api.client(headers={"X-API-Key": READ_KEY}) as client:
        assert (await client.get("/messages")).status_code == 200
    async with api.client(headers={"Authorization": f"bearer {READ_KEY}"}) as client:
        assert (await client.get("/messages")).status_code == 200


async def test_scopes(api: Api) -> None:
    async with api.client(READ_KEY) as reader:
        response = await reader.post("/messages", json=BODY)
        assert response.status_code == 403
        _no_data(response)
        assert (await reader.get("/dead-letters")).status_code == 403
        assert (await reader.post("/dead-letters/abc/replay")).status_code == 403
        assert (await reader.get("/providers")).status_code == 200
    async with api.client(SEND_KEY) as sender:
        assert (await sender.get("/dead-letters")).status_code == 403
    assert api.gateway.stats().accepted == 0


async def test_rate_limit_per_key_with_retry_after(api: Api) -> None:
    async with api.client(LIMITED_KEY) as limited, api.client(SEND_KEY) as other:
        assert (await limited.get("/messages")).status_code == 200
        assert (await limited.post("/messages", json=BODY)).status_code == 202
        refused = await limited.post("/messages", json=BODY)
        assert refused.status_code == 429
        _no_data(refused)
        # 1 token per 1000 s: the wait is (almost) the whole 1000 s.
        assert 900 <= int(refused.headers["retry-after"]) <= 1000
        # Other keys are not affected.
        assert (await other.post("/messages", json=BODY)).status_code == 202
    assert api.gateway.stats().accepted == 2


async def test_a_reload_changes_keys_scopes_and_limits_at_once(api: Api) -> None:
    """What ``[api]`` says about clients is taken live (SIGHUP: ``Gateway.reload``): a new key
    works, a removed one gets 401, a changed scope or rate limit applies to the next request,
    without restarting the listener."""
    new_key = "new-client-0123456789abcdef"
    keys = [k for k in KEYS if k.name not in ("sender", "reader", "limited")]
    keys += [
        ApiKeyConfig(name="newcomer", sha256=hash_key(new_key), scopes=(ApiScope.SEND,)),
        # was read-only: may send now
        ApiKeyConfig(name="reader", sha256=hash_key(READ_KEY), scopes=(ApiScope.SEND,)),
        # was one request per 1000 s after 2: unlimited now
        ApiKeyConfig(name="limited", sha256=hash_key(LIMITED_KEY), scopes=(ApiScope.SEND,)),
    ]
    async with (
        api.client(SEND_KEY) as removed,
        api.client(READ_KEY) as reader,
        api.client(LIMITED_KEY) as limited,
        api.client(new_key) as newcomer,
    ):
        assert (await newcomer.post("/messages", json=BODY)).status_code == 401
        assert (await reader.post("/messages", json=BODY)).status_code == 403
        for _ in range(2):
            assert (await limited.post("/messages", json=BODY)).status_code == 202
        assert (await limited.post("/messages", json=BODY)).status_code == 429
        config = api.gateway.config
        await api.gateway.reload(attrs.evolve(config, api=attrs.evolve(config.api, keys=keys)))
        assert (await newcomer.post("/messages", json=BODY)).status_code == 202
        assert (await removed.post("/messages", json=BODY)).status_code == 401
        assert (await reader.post("/messages", json=BODY)).status_code == 202
        assert (await reader.get("/messages")).status_code == 403  # READ taken away
        for _ in range(3):
            assert (await limited.post("/messages", json=BODY)).status_code == 202


def test_key_from_headers() -> None:
    assert key_from_headers({"authorization": "Bearer abc"}) == "abc"
    assert key_from_headers({"authorization": "  BEARER   abc "}) == "abc"
    assert key_from_headers({"x-api-key": "abc"}) == "abc"
    assert key_from_headers({"authorization": "Basic abc"}) is None
    assert key_from_headers({"x-api-key": "a\x00b"}) is None
    assert key_from_headers({"x-api-key": "a" * 1000}) is None
    assert key_from_headers({}) is None


def test_authenticator_matches_by_hash_only() -> None:
    auth = Authenticator(KEYS)
    found = auth.authenticate(SEND_KEY)
    assert found is not None and found.name == "sender"
    assert hash_key(SEND_KEY) == hashlib.sha256(SEND_KEY.encode()).hexdigest()
    assert auth.authenticate(hash_key(SEND_KEY)) is None  # the hash is not the key
    assert auth.authenticate(None) is None
    assert auth.authenticate("") is None
