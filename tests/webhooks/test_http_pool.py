"""The deliverer's HTTP client (smsgw.webhook_http) against real servers on 127.0.0.1: keep-alive
reuse and its limits, a server closing idle connections, slow and odd answers, refused
connections, bad URLs, and https against a local TLS server (a certificate made by the openssl
command line). No assertion depends on timing: delays are far apart from the deadlines."""

from __future__ import annotations

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from smsgw.webhook_http import MAX_DRAIN, DeliveryFailed, HttpPool, parse_target

from .conftest import Certificate
from .h11server import Answer, Server

HEADERS = [(b"Content-Type", b"application/json")]


def bodies(n: int) -> list[bytes]:
    return sorted(b'{"n":%d}' % i for i in range(n))


async def post_many(pool: HttpPool, url: str, n: int, *, at_once: int = 1) -> list[int]:
    """``n`` POSTs, ``at_once`` of them concurrently; their statuses in order of completion."""
    statuses: list[int] = []
    limiter = trio.CapacityLimiter(at_once)

    async def one(i: int) -> None:
        async with limiter:
            statuses.append(await pool.post(url, HEADERS, b'{"n":%d}' % i))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
    return statuses


async def test_sequential_posts_reuse_one_connection(server: Server) -> None:
    pool = HttpPool(4, proxies={})
    assert await post_many(pool, server.url, 20) == [204] * 20
    assert server.connections == 1 and pool.opened == 1
    assert sorted(r.body for r in server.requests) == bodies(20)
    await pool.aclose()


async def test_a_connection_idle_too_long_is_not_reused(server: Server) -> None:
    pool = HttpPool(4, keepalive_expiry=0.0, proxies={})  # every idle connection has expired
    assert await post_many(pool, server.url, 3) == [204] * 3
    assert server.connections == 3 and pool.connections == 1
    await pool.aclose()
    assert pool.connections == 0


async def test_concurrent_posts_use_at_most_max_connections(server: Server) -> None:
    server.answer = Answer(delay=0.01)  # so that requests overlap
    pool = HttpPool(3, proxies={})
    assert await post_many(pool, server.url, 30, at_once=10) == [204] * 30
    assert 1 <= server.connections <= 3
    assert len(server.requests) == 30
    await pool.aclose()


async def test_the_limit_counts_idle_connections_to_other_origins(nursery: trio.Nursery) -> None:
    """One connection in all: going to B closes A's idle one, and back again."""
    a, b = Server(), Server()
    await a.start(nursery)
    await b.start(nursery)
    pool = HttpPool(1, proxies={})
    with trio.fail_after(20):
        for url in (a.url, b.url, a.url, b.url):
            assert await pool.post(url, HEADERS, b"{}") == 204
            assert pool.connections == 1
    assert (a.connections, b.connections) == (2, 2)
    await pool.aclose()
    assert pool.connections == 0


async def test_a_connection_closed_while_idle_is_retried_on_a_fresh_one(server: Server) -> None:
    """The server closes each connection after its answer (as an idle timeout would): the next
    request finds it dead and goes once more on a new one. Nothing fails, nothing is lost,
    and no request reaches the server twice."""
    server.answer = Answer(close_after=True)
    pool = HttpPool(2, proxies={})
    assert await post_many(pool, server.url, 10) == [204] * 10
    assert sorted(r.body for r in server.requests) == bodies(10)
    assert server.connections == 10 and pool.opened == 10
    await pool.aclose()


async def test_connection_close_and_a_long_body_are_not_reused(server: Server) -> None:
    pool = HttpPool(2, proxies={})
    server.answer = Answer(status=200, headers=((b"Connection", b"close"),))
    assert await post_many(pool, server.url, 3) == [200] * 3
    assert server.connections == 3
    # A short body is read to its end and the connection kept ...
    server.answer = Answer(status=200, body=b'{"ok":true}' * 100)
    assert await post_many(pool, server.url, 3) == [200] * 3
    assert server.connections == 4
    # ... a long one is not read: the connection is closed instead.
    server.answer = Answer(status=200, body=b"x" * (MAX_DRAIN * 4))
    assert await post_many(pool, server.url, 3) == [200] * 3
    assert server.connections == 6  # the kept one, then two new ones
    await pool.aclose()


@pytest.mark.parametrize("status", [500, 404, 302, 301, 429])
async def test_other_statuses_are_returned_and_redirects_not_followed(
    server: Server, status: int
) -> None:
    server.answer = Answer(status=status, headers=((b"Location", b"http://127.0.0.1:1/x"),))
    pool = HttpPool(1, proxies={})
    assert await post_many(pool, server.url, 2) == [status] * 2
    assert len(server.requests) == 2 and server.connections == 1
    await pool.aclose()


async def test_a_cancelled_attempt_closes_its_connection(server: Server) -> None:
    """The late answer of a timed-out request must not be read as the next one's."""
    pool = HttpPool(1, proxies={})
    server.answer = Answer(status=500, delay=1.0)
    with trio.fail_after(20):
        with trio.move_on_after(0.1) as scope:
            await pool.post(server.url, HEADERS, b"first")
        assert scope.cancelled_caught
        server.answer = Answer(status=201)
        assert await pool.post(server.url, HEADERS, b"second") == 201
    assert server.connections == 2 and pool.connections == 1
    await pool.aclose()


async def test_refused_connection(server: Server) -> None:
    server.stop()
    pool = HttpPool(1, proxies={})
    with trio.fail_after(20), pytest.raises(DeliveryFailed) as caught:
        await pool.post(server.url, HEADERS, b"{}")
    assert str(caught.value) == f"connect to 127.0.0.1:{server.port} failed: Connection refused"
    assert pool.connections == 0


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Answer(raw=b"hello\r\n\r\n"), "bad HTTP answer"),
        (Answer(raw=b"HTTP/1.1 200 OK\r\nContent-Len"), "bad HTTP answer"),
        (Answer(raw=b""), "bad HTTP answer"),  # closed before answering, on a fresh connection
    ],
)
async def test_a_broken_answer_is_a_failure(server: Server, answer: Answer, reason: str) -> None:
    server.answer = answer
    pool = HttpPool(1, proxies={})
    with trio.fail_after(20), pytest.raises(DeliveryFailed, match=reason):
        await pool.post(server.url, HEADERS, b"{}")
    assert len(server.requests) == 1  # a fresh connection is not retried
    assert pool.connections == 0


async def test_the_status_counts_even_if_the_rest_of_the_answer_is_cut(server: Server) -> None:
    """As before (httpx, status line only): a 2xx is a 2xx, the connection is not kept."""
    server.answer = Answer(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    pool = HttpPool(1, proxies={})
    with trio.fail_after(20):
        assert await pool.post(server.url, HEADERS, b"{}") == 200
    assert pool.connections == 0


@pytest.mark.parametrize(
    "url",
    [
        "gopher://127.0.0.1/hook",
        "http://127.0.0.1:99999/hook",
        "http:///hook",
        "http://[::1/hook",
        "mailto:ops@example.com",
    ],
)
async def test_an_unusable_url_is_a_failure(url: str) -> None:
    with pytest.raises(DeliveryFailed, match="bad target URL"):
        await HttpPool(1, proxies={}).post(url, HEADERS, b"{}")


@given(
    path=st.text(
        st.characters(codec="utf-8", exclude_characters="%#?./\\"),
        max_size=20,
    ),
    query=st.text(
        st.characters(codec="utf-8", exclude_characters="%#"),
        max_size=20,
    ),
    port=st.sampled_from([None, 80, 8080]),
)
def test_the_request_line_and_host_are_those_httpx_sent(
    path: str, query: str, port: int | None
) -> None:
    """What the deliverer sent before (httpx): percent-encoding of path and query, Host."""
    url = f"http://Example.com{'' if port is None else f':{port}'}/hook/{path}"
    url += f"?{query}" if query else ""
    try:
        expected = httpx.Request("POST", url)
    except httpx.InvalidURL:
        return  # (control characters): httpx refused to send it at all
    target = parse_target(url)
    assert target.path == expected.url.raw_path
    assert target.host_header.decode() == expected.headers["Host"]


def test_user_and_password_in_the_url_become_basic_auth() -> None:
    target = parse_target("https://us%40er:p%3Ass@hooks.example/x")
    request = httpx.Client().build_request("POST", "https://hooks.example/x")
    auth = httpx.BasicAuth("us@er", "p:ss").auth_flow(request)
    assert target.authorization == next(auth).headers["Authorization"].encode()
    assert target.host_header == b"hooks.example" and target.port == 443


# --- https ------------------------------------------------------------------------------------


async def test_https_with_keep_alive(tls_server: Server, certificate: Certificate) -> None:
    pool = HttpPool(2, ssl_context=certificate.client_context(), proxies={})
    assert tls_server.url.startswith("https://")
    assert await post_many(pool, tls_server.url, 5) == [204] * 5
    assert tls_server.connections == 1
    assert sorted(r.body for r in tls_server.requests) == bodies(5)
    await pool.aclose()


async def test_https_checks_the_certificate(tls_server: Server) -> None:
    """With the default context (the system's authorities) a self-signed server is refused."""
    pool = HttpPool(1, proxies={})
    with trio.fail_after(20), pytest.raises(DeliveryFailed) as caught:
        await pool.post(tls_server.url, HEADERS, b"{}")
    assert str(caught.value).startswith(f"TLS with 127.0.0.1:{tls_server.port} failed:")
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert tls_server.requests == [] and pool.connections == 0
