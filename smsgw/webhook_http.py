"""The webhook deliverer's HTTP client: POST, read the answer's status, keep the connection.

Why not httpx: measured with ``smsgw bench --webhooks``, its request/response model cost about
1.2 CPU-ms per webhook, and because the deliverer reads only the status (not the body) httpcore
closed every connection after one request: a TCP connect per webhook. Here h11 does all of HTTP
(no parsing of our own) and this module only moves bytes and pools connections:

- at most ``max_connections`` connections in all (idle ones included), per origin (scheme, host,
  port) reused keep-alive, the most recently used first, if idle for less than
  :data:`KEEPALIVE_EXPIRY`; when the limit is reached, the oldest idle connection to another
  origin is closed to make room;
- a connection goes back to the pool only after a complete exchange (the answer's body read to
  its end, at most :data:`MAX_DRAIN` bytes, and neither side asked to close); anything else
  (an error, a cancelled attempt, a large body) closes it;
- a reused connection that fails before any byte of the answer arrives (the server closed it
  while it was idle) is retried once on a fresh connection: that is the usual keep-alive race,
  and the receiver de-duplicates if it did see the first request;
- no redirects (a 3xx is returned like any other status), no timeouts of its own: the caller
  owns the deadline (``trio.move_on_after``), and a cancelled attempt closes its connection.

Failures before a status raise :class:`DeliveryFailed` with a short reason for the outbox's
``last_error``. https uses ``ssl.create_default_context()`` unless given a context.

Forward proxies (which one, and which hosts bypass it: :mod:`smsgw.webhook_proxy`, from the
environment by default): an http:// target is POSTed to the proxy with its URL in the request
line (absolute-form); an https:// target gets a tunnel (``CONNECT host:port``), then TLS with
the target inside it, then the request as if direct. ``Proxy-Authorization`` goes on the
absolute-form requests and on CONNECT, never through a tunnel. Connections are pooled per
(origin, proxy): a tunnel can only ever reach its origin, and for plain http httpx did the same
(a proxy usually pairs a client connection with one upstream one), so the pool's accounting
and eviction are those of direct connections.

Blocked networks (``blocked``, ``[webhooks] blocked_networks``: no request to cloud metadata
endpoints, loopback or private services on behalf of whoever chose the URL): a direct
connection resolves the target's host (a literal IP needs no lookup), drops the addresses in a
blocked network (an IPv4-mapped IPv6 address counts as its IPv4 address too), and connects to
the others by address, in the resolver's order but with the first address of the other family
second (RFC 6555 section 5.4: a broken IPv6 path costs one delay, not one per IPv6 address),
each given :data:`HAPPY_EYEBALLS_DELAY` before the next is tried alongside (as
``trio.open_tcp_stream`` does). Connecting by address means
that a second DNS answer cannot differ from the one checked (no DNS rebinding); TLS still
checks the certificate against the target's name. Through a proxy the proxy resolves names,
so only a target whose URL host is an IP address (in any form the resolver reads as one, such
as ``2852039166``) is checked. The check costs nothing per request: it happens when a
connection is opened, and a keep-alive connection is reused without it.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import attrs
import h11
import trio

from .webhook_proxy import Proxies, Proxy, authority, environment_proxies

__all__ = [
    "HAPPY_EYEBALLS_DELAY",
    "KEEPALIVE_EXPIRY",
    "MAX_DRAIN",
    "AddressInfo",
    "DeliveryFailed",
    "HttpPool",
    "Resolver",
    "Target",
    "is_blocked",
    "other_family_second",
    "parse_target",
    "unblocked",
]

#: The most answer body read to keep a connection; a longer body closes it instead.
MAX_DRAIN = 65_536
#: Seconds an idle connection is kept for reuse (httpx's default too): past that, a firewall or
#: NAT may have dropped it without a word, and a request on it would wait for the timeout.
KEEPALIVE_EXPIRY = 5.0
#: Bytes asked of the socket per read.
RECEIVE_SIZE = 65_536
#: Distinct target URLs whose parse is remembered.
TARGET_CACHE = 1024
#: Seconds a connection attempt to one address has before the next address is tried alongside
#: it (trio's default, after RFC 6555): an address that swallows packets does not hold us up.
HAPPY_EYEBALLS_DELAY = 0.25

# Printable ASCII left as is in the request line (WHATWG's percent-encode sets, as httpx): the
# rest, and every non-ASCII character as UTF-8, is percent-encoded; existing escapes are kept.
_QUERY_SAFE = "".join(chr(i) for i in range(0x21, 0x7F) if chr(i) not in '"#<>')
_PATH_SAFE = "".join(c for c in _QUERY_SAFE if c not in "?`{}")

#: What a connection can raise while sending and receiving.
_IO_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError)

#: Where a pooled connection goes: the target's origin, through a proxy or direct (None).
_Route = tuple[tuple[str, str, int], Proxy | None]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: One answer of ``getaddrinfo``: (family, type, proto, canonname, sockaddr).
AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]
#: How the pool resolves a target's name: ``(host, port) -> getaddrinfo answers`` for TCP.
Resolver = Callable[[str, int], Awaitable[Sequence[AddressInfo]]]

#: Where the blocked networks come from, for error messages.
_BLOCKED_BY = "[webhooks] blocked_networks"


class DeliveryFailed(Exception):
    """An attempt failed before any HTTP status; the message is the reason to record."""


@attrs.frozen
class Target:
    """A webhook URL, parsed once: where to connect and what to put in the request line."""

    scheme: str
    host: str
    port: int
    path: bytes  # path and query, percent-encoded
    host_header: bytes
    authorization: bytes | None  # from user:password@ in the URL, as httpx did

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def absolute(self) -> bytes:
        """The URL in the request line to a proxy (absolute-form)."""
        return b"%s://%s%s" % (self.scheme.encode("ascii"), self.host_header, self.path)


@functools.lru_cache(maxsize=TARGET_CACHE)
def parse_target(url: str) -> Target:
    """Parse an http(s) URL; :class:`DeliveryFailed` if it cannot be POSTed to."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DeliveryFailed(f"bad target URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise DeliveryFailed(f"bad target URL: scheme {parts.scheme!r} is not http or https")
    host = parts.hostname
    if not host:
        raise DeliveryFailed("bad target URL: no host")
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:
        raise DeliveryFailed(f"bad target URL: host {host!r}: {exc}") from None
    default_port = 443 if scheme == "https" else 80
    shown = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
    if port is not None and port != default_port:
        shown += f":{port}"
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_QUERY_SAFE)
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = b"Basic " + base64.b64encode(credentials.encode("utf-8"))
    return Target(
        scheme=scheme,
        host=ascii_host,
        port=port if port is not None else default_port,
        path=path.encode("ascii"),
        host_header=shown.encode("ascii"),
        authorization=authorization,
    )


class _Stale(Exception):
    """A reused connection failed before any byte of the answer: try a fresh one."""


class _Connection:
    """One HTTP/1.1 connection: its stream, the socket under it, h11's state. ``forward``: the
    proxy it goes to for plain http (requests in absolute-form, with the proxy's credentials);
    None: to the target itself, or through a tunnel."""

    def __init__(
        self,
        route: _Route,
        stream: trio.abc.Stream,
        socket: trio.socket.SocketType,
        forward: Proxy | None = None,
    ) -> None:
        self.route = route
        self.stream = stream
        self.socket = socket
        self.forward = forward
        self.h11 = h11.Connection(h11.CLIENT)
        self.exchanges = 0  # complete request/answer exchanges so far
        self.answered = False  # some of the current answer has arrived
        self.idle_since = 0.0  # trio.current_time() when it was last put back in the pool
        self.checked_against: tuple[_Network, ...] = ()  # the blocked networks when opened

    def close(self) -> None:
        """Close at once, without a TLS goodbye: usable when the caller is being cancelled."""
        self.socket.close()

    async def post(
        self, target: Target, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, bool]:
        """One exchange: the status, and whether the connection can be reused."""
        conn = self.h11
        self.answered = False
        request_headers = [(b"Host", target.host_header), *headers]
        if target.authorization is not None:
            request_headers.append((b"Authorization", target.authorization))
        request_target = target.path
        if self.forward is not None:
            request_target = target.absolute
            if self.forward.authorization is not None:
                request_headers.append((b"Proxy-Authorization", self.forward.authorization))
        request_headers.append((b"Content-Length", b"%d" % len(body)))
        request = h11.Request(method=b"POST", target=request_target, headers=request_headers)
        data = b"".join(
            conn.send(event) or b""  # None only for ConnectionClosed
            for event in (request, h11.Data(data=body), h11.EndOfMessage())
        )
        await self.stream.send_all(data)
        status: int | None = None
        drained = 0
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    chunk = await self.stream.receive_some(RECEIVE_SIZE)
                    if chunk:
                        self.answered = True
                    conn.receive_data(bytes(chunk))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    drained += len(event.data)
                    if drained > MAX_DRAIN:
                        assert status is not None
                        return status, False
                elif isinstance(event, h11.EndOfMessage):
                    assert status is not None
                    self.exchanges += 1
                    reusable = conn.our_state is h11.DONE and conn.their_state is h11.DONE
                    if reusable:
                        conn.start_next_cycle()
                    return status, reusable
                elif isinstance(event, h11.ConnectionClosed):
                    raise trio.BrokenResourceError("the server closed the connection")
                # InformationalResponse (1xx): the real answer follows.
        except _IO_ERRORS:
            if status is None:
                raise
            return status, False  # the status came, the rest of the answer did not: it counts


class HttpPool:
    """POSTs over keep-alive connections, at most ``max_connections`` of them (module doc).

    ``ssl_context``: for https targets (default: ``ssl.create_default_context()``).
    ``keepalive_expiry``: seconds a connection may stay idle and still be used.
    ``proxies``: forward proxies in the shape of ``urllib.request.getproxies()``
    (``{"http": url, "https": url, "all": url, "no": "host,..."}``, :mod:`smsgw.webhook_proxy`;
    ``{}``: none); None: read from the environment now. :class:`ValueError` if one is unusable.
    ``blocked``: networks never connected to (module doc; :meth:`set_blocked` replaces them).
    ``resolve``: how names are resolved (default: ``trio.socket.getaddrinfo``; tests give a
    fixed answer); literal IP addresses never reach it.
    ``opened``: connections opened so far; :attr:`connections`: open now (idle or in use).
    """

    def __init__(
        self,
        max_connections: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
        proxies: Mapping[str, str] | None = None,
        blocked: Sequence[_Network] = (),
        resolve: Resolver | None = None,
    ) -> None:
        if proxies is None:
            proxies = environment_proxies(os.environ)
        self._proxies = Proxies.parse(proxies)
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if keepalive_expiry < 0:
            raise ValueError(f"keepalive_expiry must not be negative, got {keepalive_expiry}")
        self._expiry = keepalive_expiry
        self._slots = trio.Semaphore(max_connections)
        self._max = max_connections
        self._ssl_context = ssl_context
        self._idle: dict[_Route, list[_Connection]] = {}
        self._open = 0
        self._blocked = tuple(blocked)
        self._resolve = _getaddrinfo if resolve is None else resolve
        self.opened = 0

    @property
    def connections(self) -> int:
        return self._open

    @property
    def blocked(self) -> tuple[_Network, ...]:
        return self._blocked

    def set_blocked(self, networks: Sequence[_Network]) -> None:
        """Block ``networks`` instead, from the next connection opened (a reload). If they
        differ, the idle connections are closed, and those in use are closed when their
        request ends: every later request goes on a connection checked against them."""
        networks = tuple(networks)
        if networks == self._blocked:
            return
        self._blocked = networks
        for connections in self._idle.values():
            self._close_all(connections)

    async def post(self, url: str, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> int:
        """POST ``body`` with ``headers`` (Host and Content-Length are added) to ``url``;
        the answer's status. :class:`DeliveryFailed` if there was no answer."""
        target = parse_target(url)
        route = (target.origin, self._proxies.proxy_for(target.scheme, target.host, target.port))
        async with self._slots:
            idle = self._idle.get(route)
            if idle and trio.current_time() - idle[-1].idle_since >= self._expiry:
                self._close_all(idle)  # the most recent is too old: so are the others
            if idle:
                try:
                    return await self._exchange(idle.pop(), target, headers, body)
                except _Stale:
                    pass  # closed by the server while idle: once more, on a new connection
            connection = await self._connect(target, route)
            try:
                return await self._exchange(connection, target, headers, body)
            except _Stale as exc:  # a new connection is never stale
                raise DeliveryFailed(str(exc)) from None

    async def aclose(self) -> None:
        """Close the idle connections (those in use close when their attempt ends)."""
        for connections in self._idle.values():
            self._close_all(connections)
        await trio.lowlevel.checkpoint()

    def _close_all(self, connections: list[_Connection]) -> None:
        for connection in connections:
            connection.close()
        self._open -= len(connections)
        connections.clear()

    async def _exchange(
        self,
        connection: _Connection,
        target: Target,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
    ) -> int:
        keep = False
        try:
            status, keep = await connection.post(target, headers, body)
            # Checked against a list since replaced (set_blocked): not reused.
            keep = keep and connection.checked_against is self._blocked
            return status
        except _IO_ERRORS as exc:
            if connection.exchanges and not connection.answered:
                raise _Stale(_reason(exc)) from exc
            raise DeliveryFailed(_reason(exc)) from exc
        finally:
            if keep:
                connection.idle_since = trio.current_time()
                self._idle.setdefault(connection.route, []).append(connection)
            else:
                connection.close()
                self._open -= 1

    async def _connect(self, target: Target, route: _Route) -> _Connection:
        if self._open >= self._max:
            self._evict()
        self._open += 1
        ok = False
        try:
            connection = await self._open_connection(target, route)
            ok = True
            self.opened += 1
            return connection
        finally:
            if not ok:
                self._open -= 1

    def _evict(self) -> None:
        """Close the idle connection unused the longest (there is one: every slot in use
        holds at most one connection, and this caller holds a slot without one)."""
        oldest = min(
            (connections for connections in self._idle.values() if connections),
            key=lambda connections: connections[0].idle_since,
        )
        oldest.pop(0).close()
        self._open -= 1

    async def _open_connection(self, target: Target, route: _Route) -> _Connection:
        proxy, blocked = route[1], self._blocked
        where = authority(target.host, target.port)
        if proxy is None:
            addresses = _literal_addresses(target.host, target.port)
            if not addresses:
                try:
                    addresses = await self._resolve(target.host, target.port)
                except (OSError, UnicodeError) as exc:  # UnicodeError: an empty or long label
                    raise DeliveryFailed(f"connect to {where} failed: {_os_reason(exc)}") from exc
            allowed = unblocked(target.host, addresses, blocked)
            tcp = await _connect_first(other_family_second(allowed), where)
        else:
            # The proxy resolves names (its own rules apply); an address we can still check.
            unblocked(target.host, _literal_addresses(target.host, target.port), blocked)
            tcp = await _open_tcp(proxy.host, proxy.port, f"proxy {proxy.address}")
        ok = False
        try:
            if target.scheme == "http":
                connection = _Connection(route, tcp, tcp.socket, forward=proxy)
            else:
                if proxy is not None:
                    await _open_tunnel(tcp, proxy, target)
                connection = _Connection(route, await self._tls(tcp, target), tcp.socket)
            connection.checked_against = blocked
            ok = True
            return connection
        finally:
            if not ok:  # failed or cancelled
                tcp.socket.close()

    async def _tls(
        self, tcp: trio.SocketStream, target: Target
    ) -> trio.SSLStream[trio.SocketStream]:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        tls = trio.SSLStream(
            tcp, self._ssl_context, server_hostname=target.host, https_compatible=True
        )
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, OSError) as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            where = authority(target.host, target.port)
            raise DeliveryFailed(f"TLS with {where} failed: {_os_reason(cause)}") from exc
        return tls


def is_blocked(address: str, blocked: Sequence[_Network]) -> bool:
    """Whether ``address`` (an IP address as in a sockaddr: IPv6 maybe with a ``%scope``) is in
    one of the ``blocked`` networks. An IPv4-mapped IPv6 address (``::ffff:169.254.169.254``)
    reaches its IPv4 address, so it is checked as that too."""
    ip = ipaddress.ip_address(address.partition("%")[0])
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    return any(candidate in network for candidate in candidates for network in blocked)


def unblocked(
    host: str, addresses: Sequence[AddressInfo], blocked: Sequence[_Network]
) -> list[AddressInfo]:
    """``addresses`` (what ``host`` resolved to) less those in ``blocked``, in their order;
    :class:`DeliveryFailed` if there were some and every one is blocked."""
    allowed = [a for a in addresses if not is_blocked(a[4][0], blocked)]
    if addresses and not allowed:
        shown = ", ".join(dict.fromkeys(str(a[4][0]) for a in addresses))
        raise DeliveryFailed(f"{host} resolves only to blocked addresses ({shown}; {_BLOCKED_BY})")
    return allowed


def _literal_addresses(host: str, port: int) -> Sequence[AddressInfo]:
    """``host`` as the resolver reads an IP address (``2852039166`` and ``0xa9.0xfe.0xa9.0xfe``
    too), without any lookup; ``[]`` for a name."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return []


async def _getaddrinfo(host: str, port: int) -> Sequence[AddressInfo]:
    return await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def other_family_second(addresses: Sequence[AddressInfo]) -> list[AddressInfo]:
    """``addresses`` in their order, but for the first one of another family than the first
    address, moved to second place (RFC 6555 section 5.4), as ``trio.open_tcp_stream`` orders
    a resolver's answers."""
    ordered = list(addresses)
    for i, address in enumerate(ordered[1:], start=1):
        if address[0] != ordered[0][0]:
            ordered.insert(1, ordered.pop(i))
            break
    return ordered


async def _connect_first(addresses: Sequence[AddressInfo], name: str) -> trio.SocketStream:
    """A TCP connection to the first of ``addresses`` that takes one. They are tried in order,
    each alone for :data:`HAPPY_EYEBALLS_DELAY` or until it fails, then alongside the next;
    the first to connect wins and the others are cancelled (``trio.open_tcp_stream``'s
    algorithm, given addresses instead of a name). ``name`` says what it is in the error."""
    winner: trio.socket.SocketType | None = None
    errors: list[OSError] = []
    sockets: list[trio.socket.SocketType] = []

    async def attempt(address: AddressInfo, failed: trio.Event) -> None:
        nonlocal winner
        family, kind, proto, _, sockaddr = address
        try:
            sock = trio.socket.socket(family, kind, proto)
            sockets.append(sock)
            await sock.connect(sockaddr)
        except OSError as exc:
            errors.append(exc)
            failed.set()
            return
        if winner is None:  # two may connect in the same instant: the first one wins
            winner = sock
        nursery.cancel_scope.cancel()

    ok = False
    try:
        async with trio.open_nursery() as nursery:
            for address in addresses:
                failed = trio.Event()
                nursery.start_soon(attempt, address, failed)
                with trio.move_on_after(HAPPY_EYEBALLS_DELAY):
                    await failed.wait()
        if winner is None:
            reason = _os_reason(errors[0]) if errors else "no address"
            raise DeliveryFailed(f"connect to {name} failed: {reason}")
        ok = True
        return trio.SocketStream(winner)
    finally:
        for sock in sockets:
            if not ok or sock is not winner:  # the winner too if cancelled or failed
                sock.close()


async def _open_tcp(host: str, port: int, name: str) -> trio.SocketStream:
    """A TCP connection to ``host``; ``name`` says what it is in the error."""
    try:
        return await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise DeliveryFailed(f"connect to {name} failed: {_os_reason(exc)}") from exc


async def _open_tunnel(tcp: trio.SocketStream, proxy: Proxy, target: Target) -> None:
    """Ask the proxy at the other end of ``tcp`` for a tunnel to ``target``: once this returns,
    the bytes sent on ``tcp`` go to the target as they are (TLS comes next)."""
    where = authority(target.host, target.port)
    headers = [(b"Host", where.encode("ascii"))]
    if proxy.authorization is not None:
        headers.append((b"Proxy-Authorization", proxy.authorization))
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method=b"CONNECT", target=where.encode("ascii"), headers=headers)
    try:
        await tcp.send_all((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        while not isinstance(event := conn.next_event(), h11.Response):
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await tcp.receive_some(RECEIVE_SIZE)))
            elif isinstance(event, h11.ConnectionClosed):
                raise trio.BrokenResourceError("the proxy closed the connection")
            # InformationalResponse (1xx): the real answer follows.
    except _IO_ERRORS as exc:
        raise DeliveryFailed(
            f"proxy {proxy.address} CONNECT {where} failed: {_reason(exc)}"
        ) from exc
    if conn.their_state is not h11.SWITCHED_PROTOCOL:
        raise DeliveryFailed(
            f"proxy {proxy.address} refused CONNECT {where}: HTTP {event.status_code}"
        )
    if conn.trailing_data[0]:  # the target cannot have said anything before our TLS hello
        raise DeliveryFailed(f"proxy {proxy.address} sent data before TLS to {where}")


def _os_reason(exc: BaseException) -> str:
    """The most specific words for a connection error: trio wraps the per-address errors of a
    failed connect in a group under a general message."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        exc = cause.exceptions[0]
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and not isinstance(exc, socket.gaierror) and exc.errno:
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _reason(exc: BaseException) -> str:
    if isinstance(exc, h11.RemoteProtocolError):
        return f"bad HTTP answer: {exc}"[:500]
    if isinstance(exc, h11.LocalProtocolError):
        return f"cannot send the request: {exc}"[:500]
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return f"connection lost: {_os_reason(cause)}"[:500]
