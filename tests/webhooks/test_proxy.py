"""Webhooks through a forward proxy: the pool (smsgw.webhook_http) against the test proxy
(tests/webhooks/proxy.py) and real receivers on 127.0.0.1, and the pure parts
(smsgw.webhook_proxy: the environment's variables, NO_PROXY) against urllib, whose meaning
they keep. Proxies are always passed explicitly: nothing here reads the test's environment."""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from fakeclock import FakeClock
from hypothesis import given
from hypothesis import strategies as st

from smsgw.model import NotificationState
from smsgw.storage import Store, open_store
from smsgw.webhook_http import DeliveryFailed, HttpPool
from smsgw.webhook_proxy import Proxies, Proxy, environment_proxies
from smsgw.webhooks import WebhookDeliverer

from .conftest import Certificate
from .h11server import Server
from .proxy import ForwardProxy, Seen
from .support import notifications, settings

HEADERS = [(b"Content-Type", b"application/json")]
CREDENTIALS = "us%40er:s3cr%3At"  # us@er / s3cr:t
BASIC = b"Basic " + base64.b64encode(b"us@er:s3cr:t")


async def post(pool: HttpPool, url: str, body: bytes = b"{}") -> int:
    with trio.fail_after(20):
        return await pool.post(url, HEADERS, body)


# --- http targets: absolute-form through the proxy ---------------------------------------------


async def test_http_target_goes_through_the_proxy_in_absolute_form(
    server: Server, proxy: ForwardProxy
) -> None:
    """A name only the proxy can resolve: the pool never connects to the target itself. The
    proxy sees the URL in the request line and the credentials on every request; the keep-alive
    connection to it carries them all."""
    url = f"http://hooks.test:{server.port}/hook?x=1"
    pool = HttpPool(2, proxies={"http": proxy.url(CREDENTIALS)})
    for i in range(5):
        assert await post(pool, url, b'{"n":%d}' % i) == 204
    absolute = f"http://hooks.test:{server.port}/hook?x=1".encode()
    assert proxy.seen == [Seen(0, b"POST", absolute, BASIC)] * 5
    assert proxy.connections == 1 and pool.opened == 1
    assert [r.body for r in server.requests] == [b'{"n":%d}' % i for i in range(5)]
    assert {r.target for r in server.requests} == {b"/hook?x=1"}
    assert {r.header("Host") for r in server.requests} == {f"hooks.test:{server.port}"}
    await pool.aclose()


async def test_the_receiver_gets_the_same_request_through_the_proxy(
    server: Server, proxy: ForwardProxy
) -> None:
    """Only the request line and Proxy-Authorization (which the proxy takes) differ from a
    direct request: the receiver sees the same headers, in the same order."""
    url = f"http://user:pw@127.0.0.1:{server.port}/hook"
    direct, proxied = HttpPool(1, proxies={}), HttpPool(1, proxies={"http": proxy.url("a:b")})
    assert await post(direct, url) == 204
    assert await post(proxied, url) == 204
    first, second = server.requests
    assert (first.target, first.headers, first.body) == (second.target, second.headers, b"{}")
    assert proxy.seen[0].target == f"http://127.0.0.1:{server.port}/hook".encode()
    await direct.aclose()
    await proxied.aclose()


async def test_no_credentials_no_proxy_authorization(server: Server, proxy: ForwardProxy) -> None:
    pool = HttpPool(1, proxies={"http": proxy.address})  # no scheme: http://
    assert await post(pool, server.url) == 204
    assert [s.proxy_authorization for s in proxy.seen] == [None]
    await pool.aclose()


async def test_https_proxy_setting_is_not_used_for_http_targets(
    server: Server, proxy: ForwardProxy
) -> None:
    pool = HttpPool(1, proxies={"https": proxy.url()})
    assert await post(pool, server.url) == 204
    assert proxy.seen == [] and len(server.requests) == 1
    await pool.aclose()


# --- https targets: CONNECT, then TLS inside the tunnel -----------------------------------------


async def test_https_target_goes_through_a_connect_tunnel(
    tls_server: Server, proxy: ForwardProxy, certificate: Certificate
) -> None:
    """One CONNECT (with the credentials), then TLS with the receiver itself (its certificate
    checked against 127.0.0.1) and keep-alive requests in origin-form inside the tunnel."""
    pool = HttpPool(
        2, ssl_context=certificate.client_context(), proxies={"https": proxy.url(CREDENTIALS)}
    )
    for i in range(3):
        assert await post(pool, tls_server.url, b'{"n":%d}' % i) == 204
    assert proxy.seen == [Seen(0, b"CONNECT", f"127.0.0.1:{tls_server.port}".encode(), BASIC)]
    assert tls_server.connections == 1 and pool.opened == 1
    assert [r.body for r in tls_server.requests] == [b'{"n":%d}' % i for i in range(3)]
    assert {r.target for r in tls_server.requests} == {b"/hook"}
    # The credentials are the proxy's: they never go through the tunnel.
    names = {k.lower() for r in tls_server.requests for k, _ in r.headers}
    assert b"proxy-authorization" not in names
    await pool.aclose()


async def test_the_tunnel_checks_the_receivers_certificate(
    tls_server: Server, proxy: ForwardProxy
) -> None:
    pool = HttpPool(1, proxies={"https": proxy.url()})  # the system's authorities
    with pytest.raises(DeliveryFailed) as caught:
        await post(pool, tls_server.url)
    assert str(caught.value).startswith(f"TLS with 127.0.0.1:{tls_server.port} failed:")
    assert [s.method for s in proxy.seen] == [b"CONNECT"]
    assert tls_server.requests == [] and pool.connections == 0


@pytest.mark.parametrize("status", [403, 407, 502])
async def test_a_refused_connect_names_the_proxy_and_not_the_credentials(
    tls_server: Server, proxy: ForwardProxy, certificate: Certificate, status: int
) -> None:
    proxy.refuse = status
    pool = HttpPool(
        1, ssl_context=certificate.client_context(), proxies={"https": proxy.url("alice:s3cret")}
    )
    with pytest.raises(DeliveryFailed) as caught:
        await post(pool, tls_server.url)
    assert str(caught.value) == (
        f"proxy {proxy.address} refused CONNECT 127.0.0.1:{tls_server.port}: HTTP {status}"
    )
    assert tls_server.connections == 0 and pool.connections == 0
    # The next attempt asks again (a refused tunnel is not kept).
    proxy.refuse = None
    assert await post(pool, tls_server.url) == 204
    assert [s.method for s in proxy.seen] == [b"CONNECT", b"CONNECT"]
    await pool.aclose()


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_proxy_down_is_a_failure_naming_the_proxy(
    proxy: ForwardProxy, server: Server, tls_server: Server, scheme: str
) -> None:
    proxy.stop()
    url = server.url if scheme == "http" else tls_server.url
    pool = HttpPool(1, proxies={scheme: proxy.url("alice:s3cret")})
    with pytest.raises(DeliveryFailed) as caught:
        await post(pool, url)
    assert str(caught.value) == f"connect to proxy {proxy.address} failed: Connection refused"
    assert server.connections == tls_server.connections == 0 and pool.connections == 0


async def test_a_cancelled_connect_closes_its_connection(
    tls_server: Server, nursery: trio.Nursery, certificate: Certificate
) -> None:
    """A proxy that accepts and never answers the CONNECT: the caller's deadline ends the
    attempt and the half-made tunnel is closed, not pooled."""
    silent: list[trio.SocketStream] = []
    scope = trio.CancelScope()

    async def never_answer(stream: trio.SocketStream) -> None:
        silent.append(stream)
        assert (await stream.receive_some(1000)).startswith(b"CONNECT 127.0.0.1:")
        scope.cancel()  # the caller's deadline, once the CONNECT has been sent
        await trio.sleep_forever()

    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, host="127.0.0.1"), never_answer, 0
    )
    port = listeners[0].socket.getsockname()[1]
    pool = HttpPool(
        1, ssl_context=certificate.client_context(), proxies={"https": f"127.0.0.1:{port}"}
    )
    with trio.fail_after(20):
        with scope:
            await pool.post(tls_server.url, HEADERS, b"{}")
        assert scope.cancelled_caught
        assert pool.connections == 0
        # The proxy's end sees the connection closed.
        assert await silent[0].receive_some(100) == b""
    assert tls_server.connections == 0


# --- NO_PROXY ---------------------------------------------------------------------------------


async def test_no_proxy_hosts_go_direct_and_others_through_the_proxy(
    nursery: trio.Nursery, proxy: ForwardProxy, certificate: Certificate
) -> None:
    """``127.0.0.1:<a's port>`` in NO_PROXY: ``a`` is reached direct; ``b``, the same address on
    another port, and ``hooks.test`` (which only the proxy resolves) go through the proxy."""
    a, b = Server(), Server()
    await a.start(nursery)
    await b.start(nursery)
    no_proxy = f"example.org, .example.net, 127.0.0.1:{a.port}"
    pool = HttpPool(4, proxies={"http": proxy.url(), "no": no_proxy})
    named = f"http://hooks.test:{b.port}/hook"
    for url in (a.url, b.url, named, a.url):
        assert await post(pool, url) == 204
    assert [s.target for s in proxy.seen] == [b.url.encode(), named.encode()]
    assert (len(a.requests), len(b.requests)) == (2, 2)
    assert a.connections == 1  # direct, kept alive
    await pool.aclose()


async def test_no_proxy_applies_to_https_too(
    tls_server: Server, proxy: ForwardProxy, certificate: Certificate
) -> None:
    pool = HttpPool(
        1,
        ssl_context=certificate.client_context(),
        proxies={"https": proxy.url(), "no": "localhost,127.0.0.0/8"},
    )
    assert await post(pool, tls_server.url) == 204
    assert proxy.seen == [] and len(tls_server.requests) == 1
    await pool.aclose()


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("", "example.com", 80, False),
        ("*", "example.com", 80, True),
        ("other.org, *", "example.com", 80, True),  # curl and httpx: "*" anywhere in the list
        ("example.com", "example.com", 80, True),
        ("example.com", "api.example.com", 443, True),
        ("example.com", "badexample.com", 80, False),
        (".example.com", "example.com", 80, True),  # urllib: a leading dot is ignored
        ("*.example.com", "a.b.example.com", 80, True),
        ("Example.COM ", "example.com", 80, True),
        ("example.com:8080", "example.com", 8080, True),
        ("example.com:8080", "example.com", 80, False),
        ("example.com:443", "example.com", 443, True),  # the default port counts
        ("10.1.2.3", "10.1.2.3", 80, True),
        ("10.1.2.3", "10.1.2.30", 80, False),
        ("10.0.0.0/8", "10.200.0.1", 80, True),
        ("10.0.0.0/8", "11.0.0.1", 80, False),
        ("10.1.2.3:8080", "10.1.2.3", 8080, True),
        ("10.1.2.3:8080", "10.1.2.3", 80, False),
        ("::1", "::1", 80, True),
        ("[::1]", "::1", 80, True),
        ("[::1]:8443", "::1", 8443, True),
        ("[::1]:8443", "::1", 443, False),
        ("fd00::/8", "fd12::5", 443, True),
        ("10.0.0.0/8", "10.example.com", 80, False),  # names are not resolved
        ("1.2.3", "10.1.2.3", 80, False),  # no string suffix for addresses
    ],
)
def test_no_proxy_matching(no_proxy: str, host: str, port: int, bypassed: bool) -> None:
    proxies = Proxies.parse({"http": "proxy:3128", "no": no_proxy})
    assert proxies.bypasses(host, port) is bypassed
    expected = None if bypassed else Proxy("proxy", 3128)
    assert proxies.proxy_for("http", host, port) == expected


LABELS = st.sampled_from(["a", "b", "example", "com", "net", "ex-ample", "c0m"])
NAMES = st.lists(LABELS, min_size=1, max_size=4).map(".".join)


@given(
    host=NAMES,
    entries=st.lists(
        st.tuples(
            st.one_of(NAMES, st.just("")),
            st.sampled_from(["", ".", " ", "  ."]),
            st.booleans(),
        ).filter(lambda entry: entry[0] or "." not in entry[1]),  # "." alone: refused by us
        max_size=4,
    ),
)
def test_no_proxy_names_match_as_urllib_does(
    host: str, entries: list[tuple[str, str, bool]]
) -> None:
    """For names (no ports, addresses or wildcards, which urllib does not know), the bypass
    decision is urllib's ``proxy_bypass_environment``: suffixes on label boundaries, a leading
    dot ignored, case and blanks around entries ignored."""
    no_proxy = ",".join(
        prefix + (name.upper() if upper else name) for name, prefix, upper in entries
    )
    ours = Proxies.parse({"no": no_proxy}).bypasses(host, 443)
    urllibs = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    assert ours is urllibs(host, {"no": no_proxy})


@pytest.mark.parametrize(
    ("entry", "reason"),
    [("example.com:http", "bad port"), ("example.com:0", "bad port"), ("[::1", "bad IPv6"),
     ("[::1]x", "bad IPv6"), (".", "no host"), ("*.", "no host")],
)  # fmt: skip
def test_a_bad_no_proxy_entry_is_refused(entry: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        HttpPool(1, proxies={"http": "proxy:3128", "no": f"ok.example, {entry}"})


# --- the proxy settings -----------------------------------------------------------------------


def test_proxy_urls() -> None:
    proxies = Proxies.parse(
        {"http": "proxy.local", "https": "http://u%3Ax:p%40ss@[fd00::1]:8080", "ftp": "x"}
    )
    assert proxies.http == Proxy("proxy.local", 80)
    assert proxies.https == Proxy("fd00::1", 8080, b"Basic " + base64.b64encode(b"u:x:p@ss"))
    assert proxies.https.address == "[fd00::1]:8080"
    assert "p@ss" not in repr(proxies) and "Basic" not in repr(proxies)
    # all_proxy is the fallback of both (httpx's rule); an empty value is unset.
    both = Proxies.parse({"all": "proxy:1", "https": "proxy:2", "http": ""})
    assert (both.http, both.https) == (Proxy("proxy", 1), Proxy("proxy", 2))
    assert Proxies.parse({}) == Proxies()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://alice:s3cret@proxy:3128", "only http:// proxies are supported"),
        ("socks5://alice:s3cret@proxy:1080", "only http:// proxies are supported"),
        ("http://alice:s3cret@proxy:99999", "bad port"),
        ("http://alice:s3cret@:3128", "no host"),
    ],
)
def test_an_unusable_proxy_is_refused_when_the_pool_is_made(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        HttpPool(1, proxies={"https": url})
    assert "s3cret" not in str(caught.value) and "alice" not in str(caught.value)


ENVIRONMENTS = [
    {},
    {"http_proxy": "http://p:1", "HTTPS_PROXY": "http://p:2", "NO_PROXY": "a.example"},
    {"HTTP_PROXY": "http://upper:1", "http_proxy": "http://lower:1"},
    {"http_proxy": "http://lower:1", "HTTP_PROXY": "http://upper:1"},
    {"HTTP_PROXY": "http://upper:1", "http_proxy": ""},  # empty lower case unsets
    {"HTTP_PROXY": "", "https_proxy": "p:2", "ALL_PROXY": "p:3", "no_proxy": "*"},
    {"HTTP_PROXY": "http://cgi:1", "REQUEST_METHOD": "GET"},  # CVE-2016-1000110
    {"http_proxy": "http://cgi:1", "REQUEST_METHOD": "GET"},
    {"Http_Proxy": "http://mixed:1", "PATH": "/bin", "_proxy": "x"},
]


@pytest.mark.parametrize("environ", ENVIRONMENTS)
def test_environment_proxies_are_urllibs(environ: dict[str, str]) -> None:
    """The same mapping as ``urllib.request.getproxies_environment()`` in a process whose
    environment is exactly ``environ`` (a child process: the test's own is left alone)."""
    script = "import json, urllib.request as u; print(json.dumps(u.getproxies_environment()))"
    child = subprocess.run(
        [sys.executable, "-I", "-c", script],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert environment_proxies(environ) == json.loads(child.stdout)


def test_environment_proxies_by_hand() -> None:
    env = {
        "HTTP_PROXY": "http://upper:1",
        "http_proxy": "http://lower:1",
        "HTTPS_PROXY": "http://s:2",
        "no_proxy": "localhost",
        "REQUEST_METHOD": "POST",
    }
    assert environment_proxies(env) == {
        "http": "http://lower:1",
        "https": "http://s:2",
        "no": "localhost",
    }
    del env["http_proxy"]
    assert environment_proxies(env) == {"https": "http://s:2", "no": "localhost"}


# --- the deliverer ----------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "gw.sqlite3", clock=FakeClock(), synchronous="NORMAL") as s:
        yield s


async def test_the_deliverer_delivers_through_the_proxy(
    store: Store, server: Server, proxy: ForwardProxy
) -> None:
    target = f"http://hooks.test:{server.port}/hook"
    await store.enqueue_notifications(notifications(target, 3))
    pool = HttpPool(2, proxies={"http": proxy.url(CREDENTIALS), "no": "localhost"})
    deliverer = WebhookDeliverer(store, settings(), client=pool, clock=FakeClock())
    with trio.fail_after(30):
        result = await deliverer.deliver_due()
    assert result.delivered == 3
    assert (await store.notification_counts())[NotificationState.DELIVERED] == 3
    assert len(proxy.seen) == 3
    assert {(s.target, s.proxy_authorization) for s in proxy.seen} == {(target.encode(), BASIC)}
    ids = {r.header("X-Smsgw-Event-Id") for r in server.requests}
    assert len(ids) == 3 and all(i.startswith("evt_") for i in ids)
    await pool.aclose()
