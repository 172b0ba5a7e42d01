"""``[webhooks] blocked_networks``: no webhook reaches an address in a blocked network.

The pool (smsgw.webhook_http) against real servers and the test proxy on 127.0.0.1; "blocked"
cases block loopback and check that the server never saw a connection. Cases that involve a
real link-local address (the default list, 169.254.169.254) are checked on the pure helpers
only: nothing here may ever connect there, even if the code under test were wrong. A name with
several addresses comes from the pool's ``resolve`` seam, so the case does not depend on what
this machine's resolver says about ``localhost``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
from fakeclock import START, FakeClock
from hypothesis import given
from hypothesis import strategies as st

from smsgw.config import WebhooksConfig, parse_config
from smsgw.model import NotificationState
from smsgw.storage import Store
from smsgw.webhook_http import (
    AddressInfo,
    DeliveryFailed,
    HttpPool,
    Resolver,
    is_blocked,
    other_family_second,
    unblocked,
)
from smsgw.webhooks import WebhookDeliverer

from .h11server import Answer, Server
from .proxy import ForwardProxy
from .receiver import Receiver
from .support import notifications, settings

HEADERS = [(b"Content-Type", b"application/json")]
LOOPBACK_V4 = (ipaddress.ip_network("127.0.0.0/8"),)
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
DEFAULT = WebhooksConfig().blocked_networks
DOC = Path(__file__).parent.parent.parent / "docs" / "webhooks.md"


def info(address: str, port: int = 80) -> AddressInfo:
    """One getaddrinfo answer for ``address``, as the resolver gives it."""
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


def fixed_resolver(answers: dict[str, list[str]]) -> tuple[list[str], Resolver]:
    """A resolver that knows only ``answers`` (name -> addresses, in order), and the names it
    was asked, in order."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> Sequence[AddressInfo]:
        asked.append(host)
        await trio.lowlevel.checkpoint()
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [info(address, port) for address in answers[host]]

    return asked, resolve


def blocked_message(host: str, *addresses: str) -> str:
    return (
        f"{host} resolves only to blocked addresses "
        f"({', '.join(addresses)}; [webhooks] blocked_networks)"
    )


async def post(pool: HttpPool, url: str) -> int:
    with trio.fail_after(20):
        return await pool.post(url, HEADERS, b"{}")


# --- the pure check ---------------------------------------------------------------------------


def test_the_default_list_blocks_cloud_metadata_before_any_connection() -> None:
    """What the pool does with 169.254.169.254 (its connect step only gets what this returns):
    nothing is left to connect to, and the reason names the host, the address and the key."""
    with pytest.raises(DeliveryFailed) as failed:
        unblocked("hooks.example.com", [info("169.254.169.254")], DEFAULT)
    assert str(failed.value) == (
        "hooks.example.com resolves only to blocked addresses "
        "(169.254.169.254; [webhooks] blocked_networks)"
    )
    for address in ("169.254.169.254", "169.254.0.1", "fe80::1", "fe80::a9fe:a9fe%eth0"):
        assert is_blocked(address, DEFAULT), address
    for address in ("127.0.0.1", "::1", "10.0.0.1", "8.8.8.8", "2001:db8::1", "169.255.0.1"):
        assert not is_blocked(address, DEFAULT), address


@pytest.mark.parametrize(
    ("address", "networks", "blocked"),
    [
        ("::ffff:169.254.169.254", DEFAULT, True),  # reaches 169.254.169.254
        ("::ffff:127.0.0.1", LOOPBACK_V4, True),
        ("::ffff:127.0.0.1", (ipaddress.ip_network("::ffff:0:0/96"),), True),  # as written too
        ("127.0.0.1", (ipaddress.ip_network("::ffff:0:0/96"),), False),
        ("::127.0.0.1", LOOPBACK_V4, False),  # IPv4-compatible: not mapped, another address
        ("::1", LOOPBACK_V4, False),
        ("127.0.0.1", (ipaddress.ip_network("::/0"),), False),  # families never mix
        ("10.1.2.3", (), False),  # nothing blocked
    ],
)
def test_is_blocked(
    address: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network], blocked: bool
) -> None:
    assert is_blocked(address, networks) is blocked


@given(
    address=st.ip_addresses(v=4),
    network=st.ip_addresses(v=4).flatmap(
        lambda a: st.integers(0, 32).map(lambda n: ipaddress.ip_network(f"{a}/{n}", strict=False))
    ),
)
def test_an_ipv4_address_and_its_mapped_form_are_blocked_alike(
    address: ipaddress.IPv4Address, network: ipaddress.IPv4Network
) -> None:
    expected = address in network
    assert is_blocked(str(address), [network]) is expected
    assert is_blocked(f"::ffff:{address}", [network]) is expected


@given(
    addresses=st.lists(st.ip_addresses().map(str), min_size=1, max_size=6),
    networks=st.lists(
        st.ip_addresses().flatmap(
            lambda a: st.integers(0, a.max_prefixlen).map(
                lambda n: ipaddress.ip_network(f"{a}/{n}", strict=False)
            )
        ),
        max_size=3,
    ),
)
def test_unblocked_keeps_the_allowed_addresses_in_order_or_says_why_none(
    addresses: list[str], networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> None:
    answers = [info(a) for a in addresses]
    allowed = [a for a in answers if not is_blocked(a[4][0], networks)]
    if allowed:
        assert unblocked("h.example", answers, networks) == allowed
    else:
        with pytest.raises(DeliveryFailed) as failed:
            unblocked("h.example", answers, networks)
        assert str(failed.value) == blocked_message("h.example", *dict.fromkeys(addresses))


def test_the_documented_multi_tenant_list_parses_and_blocks_what_it_says() -> None:
    section = DOC.read_text(encoding="utf-8").partition("## Blocked networks")[2]
    match = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the example list is missing from docs/webhooks.md"
    provider = '[[providers]]\nname = "p"\nhost = "h"\nsystem_id = "u"\npassword = "pw"\n'
    config = parse_config(match.group(1) + provider, source="doc", environ={})
    blocked = config.webhooks.blocked_networks
    assert set(DEFAULT) <= set(blocked)
    internal = ("169.254.169.254", "127.0.0.1", "::1", "10.1.1.1", "172.31.0.1", "192.168.1.1")
    for address in (*internal, "fd00::1", "::ffff:192.168.1.1"):
        assert is_blocked(address, blocked), address
    for address in ("8.8.8.8", "172.32.0.1", "2001:4860:4860::8888"):
        assert not is_blocked(address, blocked), address


# --- direct connections -----------------------------------------------------------------------


async def test_a_blocked_literal_ip_fails_without_a_connection(server: Server) -> None:
    pool = HttpPool(1, proxies={}, blocked=LOOPBACK_V4)
    with pytest.raises(DeliveryFailed) as failed:
        await post(pool, server.url)
    assert str(failed.value) == blocked_message("127.0.0.1", "127.0.0.1")
    assert server.connections == 0 and pool.connections == 0 and pool.opened == 0


async def test_a_blocked_ipv4_mapped_literal_fails_without_a_connection(server: Server) -> None:
    pool = HttpPool(1, proxies={}, blocked=LOOPBACK_V4)
    with pytest.raises(DeliveryFailed) as failed:
        await post(pool, f"http://[::ffff:127.0.0.1]:{server.port}/hook")
    assert str(failed.value) == blocked_message("::ffff:127.0.0.1", "::ffff:127.0.0.1")
    assert server.connections == 0


async def test_a_literal_ip_in_another_form_is_read_as_the_resolver_reads_it(
    server: Server,
) -> None:
    """2130706433 is 127.0.0.1 to the resolver (and so to connect): it is checked as that."""
    pool = HttpPool(1, proxies={}, blocked=LOOPBACK_V4)
    with pytest.raises(DeliveryFailed) as failed:
        await post(pool, f"http://2130706433:{server.port}/hook")
    assert str(failed.value) == blocked_message("2130706433", "127.0.0.1")
    assert server.connections == 0


async def test_a_name_resolving_only_to_blocked_addresses_fails_without_a_connection(
    server: Server,
) -> None:
    """``localhost`` through the system's resolver: loopback, whatever addresses it lists."""
    pool = HttpPool(1, proxies={}, blocked=LOOPBACK)
    with pytest.raises(DeliveryFailed) as failed:
        await post(pool, f"http://localhost:{server.port}/hook")
    message = str(failed.value)
    assert message.startswith("localhost resolves only to blocked addresses (")
    assert message.endswith("; [webhooks] blocked_networks)")
    shown = message.partition("(")[2].partition(";")[0].split(", ")
    assert shown and all(ipaddress.ip_address(a).is_loopback for a in shown)
    assert server.connections == 0


async def test_a_name_with_a_blocked_and_an_allowed_address_uses_the_allowed_one(
    server: Server,
) -> None:
    """The blocked address comes first in the answer: it is skipped, the request goes to the
    other one (connected to by address), and names the host as in the URL."""
    asked, resolve = fixed_resolver({"hooks.test": ["::1", "127.0.0.1"]})
    pool = HttpPool(1, proxies={}, blocked=[ipaddress.ip_network("::1/128")], resolve=resolve)
    assert await post(pool, f"http://hooks.test:{server.port}/hook") == 204
    assert await post(pool, f"http://hooks.test:{server.port}/hook") == 204
    assert asked == ["hooks.test"]  # one lookup per connection opened, none per request
    assert server.connections == 1
    assert [r.header("Host") for r in server.requests] == [f"hooks.test:{server.port}"] * 2
    await pool.aclose()


async def test_a_blocked_address_is_never_tried_even_when_the_allowed_one_fails(
    server: Server,
) -> None:
    """The mirror case: the server listens on the blocked address (127.0.0.1), the allowed one
    (::1) has no listener. The attempt fails connecting to ::1, not to the blocked address."""
    _, resolve = fixed_resolver({"hooks.test": ["127.0.0.1", "::1"]})
    pool = HttpPool(1, proxies={}, blocked=LOOPBACK_V4, resolve=resolve)
    with pytest.raises(DeliveryFailed, match=rf"^connect to hooks\.test:{server.port} failed: "):
        await post(pool, f"http://hooks.test:{server.port}/hook")
    assert server.connections == 0


async def test_an_address_that_refuses_is_followed_by_the_next(server: Server) -> None:
    """Connecting by address keeps trio's fallback: nothing listens on [::1] at the server's
    port (or there is no IPv6 at all), so the next address, 127.0.0.1, gets the request."""
    _, resolve = fixed_resolver({"hooks.test": ["::1", "127.0.0.1"]})
    pool = HttpPool(1, proxies={}, resolve=resolve)
    assert await post(pool, f"http://hooks.test:{server.port}/hook") == 204
    assert server.connections == 1 and pool.connections == 1
    await pool.aclose()


async def test_a_name_that_does_not_resolve_is_a_failure_naming_it() -> None:
    _, resolve = fixed_resolver({})
    pool = HttpPool(1, proxies={}, resolve=resolve)
    with pytest.raises(DeliveryFailed, match=r"^connect to nowhere\.test:80 failed: Name or"):
        await post(pool, "http://nowhere.test/hook")


async def test_nothing_blocked_by_default_in_the_pool(server: Server) -> None:
    """An HttpPool made without ``blocked`` (the benchmark, tools) blocks nothing."""
    pool = HttpPool(1, proxies={})
    assert pool.blocked == ()
    assert await post(pool, server.url) == 204
    await pool.aclose()


# --- replacing the list -----------------------------------------------------------------------


async def test_set_blocked_applies_to_the_next_connection_and_drops_idle_ones(
    server: Server,
) -> None:
    pool = HttpPool(2, proxies={})
    assert await post(pool, server.url) == 204
    assert pool.connections == 1  # idle, kept alive
    pool.set_blocked(LOOPBACK_V4)
    assert pool.blocked == LOOPBACK_V4
    assert pool.connections == 0  # opened unchecked: not reused
    with pytest.raises(DeliveryFailed, match="resolves only to blocked addresses"):
        await post(pool, server.url)
    assert server.connections == 1
    pool.set_blocked([])
    assert await post(pool, server.url) == 204
    assert server.connections == 2
    await pool.aclose()


async def test_set_blocked_with_the_same_list_keeps_the_connections(server: Server) -> None:
    pool = HttpPool(2, proxies={}, blocked=DEFAULT)
    assert await post(pool, server.url) == 204
    pool.set_blocked(list(DEFAULT))
    assert await post(pool, server.url) == 204
    assert server.connections == 1
    await pool.aclose()


async def test_a_connection_in_use_when_the_list_changes_is_not_reused(server: Server) -> None:
    """Changed while a request is on its way: that request ends normally, its connection is
    closed after it instead of going back to the pool."""
    pool = HttpPool(2, proxies={})
    server.answer = Answer(delay=0.3)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            statuses: list[int] = []

            async def first() -> None:
                statuses.append(await pool.post(server.url, HEADERS, b"{}"))

            nursery.start_soon(first)
            while not server.requests:  # bounded by fail_after
                await trio.sleep(0.01)
            pool.set_blocked([ipaddress.ip_network("10.0.0.0/8")])
    assert statuses == [204] and pool.connections == 0
    server.answer = Answer()
    assert await post(pool, server.url) == 204
    assert server.connections == 2
    await pool.aclose()


# --- through a proxy --------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_through_a_proxy_a_blocked_literal_ip_is_refused_before_the_proxy(
    server: Server, proxy: ForwardProxy, scheme: str
) -> None:
    pool = HttpPool(1, proxies={scheme: proxy.url()}, blocked=LOOPBACK_V4)
    with pytest.raises(DeliveryFailed) as failed:
        await post(pool, f"{scheme}://127.0.0.1:{server.port}/hook")
    assert str(failed.value) == blocked_message("127.0.0.1", "127.0.0.1")
    assert proxy.connections == 0 and server.connections == 0


async def test_through_a_proxy_the_default_list_reads_literals_as_the_resolver_does(
    proxy: ForwardProxy,
) -> None:
    """2852039166 is 169.254.169.254: refused here, never handed to the proxy. (Were it handed
    over, the test proxy would answer 502 itself: it reaches only loopback.)"""
    pool = HttpPool(1, proxies={"http": proxy.url()}, blocked=DEFAULT)
    with pytest.raises(DeliveryFailed) as failed:
        await post(pool, "http://2852039166/latest/meta-data/")
    assert str(failed.value) == blocked_message("2852039166", "169.254.169.254")
    assert proxy.connections == 0


async def test_through_a_proxy_a_name_is_passed_on(server: Server, proxy: ForwardProxy) -> None:
    """The proxy resolves names (hooks.test is 127.0.0.1 to it, blocked here): its own rules
    apply, and the pool does no lookup of its own."""
    asked, resolve = fixed_resolver({"hooks.test": ["127.0.0.1"]})
    pool = HttpPool(1, proxies={"http": proxy.url()}, blocked=LOOPBACK_V4, resolve=resolve)
    url = f"http://hooks.test:{server.port}/hook"
    assert await post(pool, url) == 204
    assert [s.target for s in proxy.seen] == [url.encode()]
    assert asked == [] and len(server.requests) == 1
    await pool.aclose()


# --- the deliverer ----------------------------------------------------------------------------


async def test_a_blocked_target_is_a_failed_attempt_with_the_reason(
    store: Store, server: Server, clock: FakeClock
) -> None:
    await store.enqueue_notifications(notifications(server.url, 1))
    deliverer = WebhookDeliverer(store, settings(blocked_networks=LOOPBACK_V4), clock=clock)
    with trio.fail_after(30):
        (outcome,) = (await deliverer.deliver_due()).outcomes
    reason = blocked_message("127.0.0.1", "127.0.0.1")
    assert outcome.error == reason and outcome.retry_at == START + 10  # retried with backoff
    (row,) = await store.pending_notifications(now=START + 100)
    assert (row.attempts, row.last_error) == (1, reason)
    assert server.connections == 0


async def test_a_blocked_target_is_given_up_like_any_failure(
    store: Store, server: Server, clock: FakeClock
) -> None:
    await store.enqueue_notifications(notifications(server.url, 1))
    config = settings(blocked_networks=LOOPBACK_V4, max_attempts=1)
    with trio.fail_after(30):
        result = await WebhookDeliverer(store, config, clock=clock).deliver_due()
    assert result.gave_up == 1
    assert (await store.notification_counts())[NotificationState.DEAD] == 1
    assert server.connections == 0


async def test_reconfigure_blocks_the_next_connection_of_a_running_deliverer(
    store: Store, receiver: Receiver, clock: FakeClock
) -> None:
    """A reload (SIGHUP) hands the new ``[webhooks]`` to ``reconfigure``: the running pool
    takes the new list, and the next request to the now-blocked receiver fails with it."""
    deliverer = WebhookDeliverer(store, settings(), clock=clock)
    assert settings().blocked_networks == DEFAULT
    await store.enqueue_notifications(notifications(receiver.url, 1))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(deliverer.run)
            while deliverer.stats().delivered < 1:  # bounded by fail_after
                await trio.sleep(0.01)
            deliverer.reconfigure(settings(blocked_networks=LOOPBACK_V4))
            await store.enqueue_notifications(notifications(receiver.url, 1))
            deliverer.wake()
            while deliverer.stats().delivered + deliverer.stats().failed < 2:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert (deliverer.stats().delivered, deliverer.stats().failed) == (1, 1)
    assert len(receiver.received) == 1
    (row,) = await store.pending_notifications(now=START + 100)
    assert row.last_error == blocked_message("127.0.0.1", "127.0.0.1")


@pytest.mark.parametrize(
    ("answers", "ordered"),
    [
        (["2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2"],
         ["2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2"]),
        (["192.0.2.1", "2001:db8::1"], ["192.0.2.1", "2001:db8::1"]),
        (["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1"],
         ["192.0.2.1", "2001:db8::1", "192.0.2.2", "192.0.2.3"]),
        (["2001:db8::1", "2001:db8::2"], ["2001:db8::1", "2001:db8::2"]),
        ([], []),
    ],
)  # fmt: skip
def test_the_first_address_of_the_other_family_is_tried_second(
    answers: list[str], ordered: list[str]
) -> None:
    """RFC 6555 section 5.4: with a broken IPv6 path, IPv4 is tried after one delay."""
    result = other_family_second([info(a) for a in answers])
    assert [address[4][0] for address in result] == ordered
