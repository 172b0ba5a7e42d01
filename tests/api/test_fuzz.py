"""Property-based fuzz of the API: request bodies generated from docs/openapi.yaml's schemas,
arbitrary JSON and arbitrary bytes, random query strings and paths. The API must answer every
one (no hang: each request has a timeout) and never with a 500.

Hypothesis drives synchronous requests (``httpx.Client``), so the gateway and its API run in a
Trio loop of their own in a thread, shared by the module's tests.
"""

from __future__ import annotations

import json
import queue
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from .harness import (
    ADMIN_KEY,
    SEND_KEY,
    assert_documented,
    auth,
    gateway_config,
    provider,
    start_api,
    start_simulator,
)

SPEC = json.loads((Path(__file__).parents[2] / "docs" / "openapi.yaml").read_text())
TIMEOUT = 10.0


def resolve(node: Any) -> Any:
    """The schema with every ``$ref`` to ``#/components/schemas/...`` inlined (no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            return resolve(SPEC["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]])
        return {k: resolve(v) for k, v in node.items() if k not in ("examples", "description")}
    if isinstance(node, list):
        return [resolve(v) for v in node]
    return node


def schema(name: str) -> dict[str, Any]:
    resolved: dict[str, Any] = resolve(SPEC["components"]["schemas"][name])
    return resolved


def values(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values matching ``node``. Objects (and arrays of objects) are built here from their
    properties: hypothesis-jsonschema 0.23's object strategy uses a Hypothesis internal that
    Hypothesis 6.170 no longer has; every other schema goes to ``from_schema``."""
    if node.get("type") == "object":
        required = set(node.get("required", ()))
        properties = node["properties"]
        return st.fixed_dictionaries(
            {k: values(v) for k, v in properties.items() if k in required},
            optional={k: values(v) for k, v in properties.items() if k not in required},
        )
    if node.get("type") == "array" and node["items"].get("type") == "object":
        return st.lists(
            values(node["items"]),
            min_size=node.get("minItems", 0),
            max_size=min(node.get("maxItems", 5), 5),  # small batches: the fuzz is per request
        )
    return from_schema(node)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("fuzz")
    started: queue.Queue[tuple[int, trio.lowlevel.TrioToken, trio.Event]] = queue.Queue()

    async def serve() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            _, sim_port = await start_simulator(nursery)
            api = await start_api(nursery, gateway_config(state, [provider("sim", sim_port)]))
            started.put((api.port, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()
            await api.stop()
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    port, token, stop = started.get(timeout=30)
    yield f"http://127.0.0.1:{port}/api/v1"
    trio.from_thread.run_sync(stop.set, trio_token=token)
    thread.join(timeout=30)
    assert not thread.is_alive()


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=auth(ADMIN_KEY), timeout=TIMEOUT) as c:
        yield c


@pytest.fixture(scope="module")
def anonymous(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=TIMEOUT) as c:
        yield c


def check(response: httpx.Response) -> None:
    assert_documented(response)
    assert response.status_code < 600
    body = response.json()  # every answer is JSON
    if response.status_code >= 400 and "results" not in body:
        assert set(body) <= {"error", "message", "fields"}, body
    if "results" in body:  # a batch: 422 when no message of it was accepted
        assert response.status_code == (202 if body["accepted"] else 422)
        assert set(body) == {"accepted", "rejected", "results"}


FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
POSTS = ["/messages", "/messages/batch", "/messages/preview"]


@FUZZ
@given(body=values(schema("SubmitRequest")))
def test_submit_bodies_from_the_schema(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post("/messages", json=body)
    check(response)
    assert response.status_code in (202, 422), response.text


@FUZZ
@given(body=values(schema("BatchRequest")))
def test_batch_bodies_from_the_schema(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post("/messages/batch", json=body)
    check(response)
    assert response.status_code in (202, 422), response.text
    if response.status_code == 202 or "results" in response.json():
        assert len(response.json()["results"]) == len(body["messages"])


@FUZZ
@given(body=values(schema("PreviewRequest")))
def test_preview_bodies_from_the_schema(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post("/messages/preview", json=body)
    check(response)
    assert response.status_code in (200, 422), response.text


@FUZZ
@given(path=st.sampled_from(POSTS), body=JSON)
def test_arbitrary_json(client: httpx.Client, path: str, body: Any) -> None:
    check(client.post(path, json=body))


@FUZZ
@given(path=st.sampled_from(POSTS), body=st.binary(max_size=2000))
def test_arbitrary_bytes(client: httpx.Client, path: str, body: bytes) -> None:
    check(client.post(path, content=body, headers={"content-type": "application/json"}))


@FUZZ
@given(
    path=st.sampled_from(["/messages", "/inbound", "/dead-letters", "/providers"]),
    params=st.dictionaries(
        st.sampled_from(
            ["status", "client_ref", "since", "until", "cursor", "limit", "offset", "x"]
        ),
        st.text(max_size=30),
        max_size=4,
    ),
)
def test_arbitrary_queries(client: httpx.Client, path: str, params: dict[str, str]) -> None:
    check(client.get(path, params=params))


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    segment=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
    where=st.sampled_from(["/messages/{}", "/dead-letters/{}/replay", "/{}"]),
)
def test_arbitrary_paths(client: httpx.Client, method: str, segment: str, where: str) -> None:
    path = where.format(urllib.parse.quote(segment, safe=""))
    check(client.request(method, path))


@FUZZ
# Printable ASCII without surrounding spaces: what an HTTP header value can carry.
@given(key=st.from_regex(r"[!-~]([ -~]{0,58}[!-~])?", fullmatch=True), body=JSON)
def test_arbitrary_keys_never_get_data(anonymous: httpx.Client, key: str, body: Any) -> None:
    response = anonymous.post("/messages", json=body, headers={"X-API-Key": key})
    assert response.status_code == 401
    assert set(response.json()) == {"error", "message"}


def test_every_route_is_in_the_spec() -> None:
    from smsgw.api.app import PREFIX, ApiApp

    app = ApiApp.__new__(ApiApp)
    ApiApp.__init__(app, None, None, None)  # type: ignore[arg-type]
    routes = {(r.method.lower(), r.pattern.removeprefix(PREFIX)) for r in app.routes}
    spec = {(m, p) for p, ops in SPEC["paths"].items() for m in ops}
    assert routes == spec
    assert SEND_KEY  # the fuzz runs with the admin key: every scope
