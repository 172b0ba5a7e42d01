"""Per-endpoint API request metrics: ``smsgw_api_requests_total`` and
``smsgw_api_request_duration_seconds``, labelled by route *template*.

Unit level: :meth:`Metrics.api_request` keeps its labels bounded. End to end: a gateway with
its API on 127.0.0.1 (in front of the simulator), ``/metrics`` mounted on the API listener,
requests of every kind made over real HTTP, then ``/metrics`` scraped and parsed with
prometheus-client's parser.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from api.harness import SEND_KEY, auth, gateway_config, provider, start_simulator
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from smsgw.api import serve_api
from smsgw.gateway import Gateway
from smsgw.metrics import HTTP_METHODS, UNMATCHED_ROUTE, Metrics, metrics_app

BODY = {"to": "+4915112345678", "from": "ACME", "text": "hello"}


def parse(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def requests_by_labels(found: list[Sample]) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["route"], s.labels["method"], s.labels["code"]): s.value
        for s in found
        if s.name == "smsgw_api_requests_total"
    }


def duration(found: list[Sample], suffix: str, route: str, **labels: str) -> float:
    name = "smsgw_api_request_duration_seconds" + suffix
    values = [s.value for s in found if s.name == name and s.labels == {"route": route, **labels}]
    assert len(values) == 1, (name, route, labels, values)
    return values[0]


# --- Metrics.api_request ----------------------------------------------------------------------


def test_api_request_counts_and_times_by_route() -> None:
    m = Metrics(process=False)
    m.api_request("/api/v1/messages", "POST", 202, 0.002)
    m.api_request("/api/v1/messages", "POST", 202, 0.3)
    m.api_request("/api/v1/messages", "POST", 503, 0.004)
    found = parse(m.render()[0].decode())
    assert requests_by_labels(found) == {
        ("/api/v1/messages", "POST", "202"): 2,
        ("/api/v1/messages", "POST", "503"): 1,
    }
    assert duration(found, "_count", "/api/v1/messages") == 3
    assert duration(found, "_sum", "/api/v1/messages") == pytest.approx(0.306)
    assert duration(found, "_bucket", "/api/v1/messages", le="0.0025") == 1
    assert duration(found, "_bucket", "/api/v1/messages", le="0.005") == 2
    assert duration(found, "_bucket", "/api/v1/messages", le="0.5") == 3


def test_api_request_refuses_bad_values() -> None:
    m = Metrics(process=False)
    with pytest.raises(ValueError, match="HTTP status"):
        m.api_request("/x", "GET", 99, 0.1)
    with pytest.raises(ValueError, match="HTTP status"):
        m.api_request("/x", "GET", 600, 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        m.api_request("/x", "GET", 200, -0.001)


@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from(["/api/v1/messages", "/api/v1/messages/{id}", UNMATCHED_ROUTE]),
            st.one_of(st.sampled_from(sorted(HTTP_METHODS)), st.text(max_size=12)),
            st.integers(100, 599),
            st.floats(0, 100, allow_nan=False),
        ),
        max_size=30,
    )
)
def test_api_request_labels_stay_bounded_and_every_call_counts(
    calls: list[tuple[str, str, int, float]],
) -> None:
    m = Metrics(process=False)
    for route, method, code, seconds in calls:
        m.api_request(route, method, code, seconds)
    found = parse(m.render()[0].decode())
    counted = requests_by_labels(found)
    expected = Counter(
        (route, method if method in HTTP_METHODS else "other", str(code))
        for route, method, code, _ in calls
    )
    assert counted == dict(expected)
    per_route = Counter(route for route, *_ in calls)
    for route, n in per_route.items():
        assert duration(found, "_count", route) == n
        assert duration(found, "_bucket", route, le="+Inf") == n


# --- over HTTP ----------------------------------------------------------------------------------


@pytest.fixture
async def base_url(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[str]:
    """A gateway and its API with ``/metrics`` on the API listener; its base URL."""
    _, sim_port = await start_simulator(nursery)
    config = gateway_config(tmp_path, [provider("sim", sim_port)])
    gateway = Gateway(config, rand=random.Random(7))
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[int]) -> None:
        with scope:
            async with trio.open_nursery() as inner:
                await inner.start(gateway.run)
                routes = {"/metrics": metrics_app(gateway.metrics)}
                serve = functools.partial(serve_api, gateway, config, extra_routes=routes)
                task_status.started(await inner.start(serve))

    with trio.fail_after(15):
        port: int = await nursery.start(run)
    yield f"http://127.0.0.1:{port}"
    with trio.fail_after(20):
        await gateway.drain(1.0)
    scope.cancel()


async def test_requests_are_counted_by_route_template_over_http(base_url: str) -> None:
    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
            sent = []
            for _ in range(2):
                response = await client.post("/api/v1/messages", json=BODY, headers=auth(SEND_KEY))
                assert response.status_code == 202, response.text
                sent.append(response.json()["id"])
            unauthenticated = await client.post("/api/v1/messages", json=BODY)
            assert unauthenticated.status_code == 401
            for message_id in [*sent, "no-such-message"]:
                await client.get(f"/api/v1/messages/{message_id}", headers=auth(SEND_KEY))
            assert (await client.delete("/api/v1/messages")).status_code == 405
            for path in ("/nope", "/api/v1/nothing/here", "/api/v1/messages/a/b"):
                assert (await client.get(path, headers=auth(SEND_KEY))).status_code == 404
            first = await client.get("/metrics")
            assert first.status_code == 200
            second = await client.get("/metrics")

    counted = requests_by_labels(parse(first.text))
    assert counted == {
        ("/api/v1/messages", "POST", "202"): 2,
        ("/api/v1/messages", "POST", "401"): 1,
        ("/api/v1/messages/{id}", "GET", "200"): 2,
        ("/api/v1/messages/{id}", "GET", "404"): 1,
        ("/api/v1/messages", "DELETE", "405"): 1,
        (UNMATCHED_ROUTE, "GET", "404"): 3,
    }
    # No raw path (a message id, an unknown path) ever becomes a label value.
    routes = {route for route, _, _ in counted}
    assert not any(message_id in route for route in routes for message_id in sent)

    found = parse(second.text)
    # The first scrape is counted once it was answered.
    assert requests_by_labels(found)[("/metrics", "GET", "200")] == 1
    # The histogram is by route only: POST 202 (2), POST 401 and DELETE 405.
    assert duration(found, "_count", "/api/v1/messages") == 4
    assert duration(found, "_count", "/api/v1/messages/{id}") == 3
    assert duration(found, "_count", UNMATCHED_ROUTE) == 3
    assert duration(found, "_bucket", "/api/v1/messages", le="+Inf") == 4
    assert duration(found, "_sum", "/api/v1/messages") > 0
