"""Which forward proxy a webhook goes through, if any: the standard environment variables.

Pure: no I/O (:mod:`smsgw.webhook_http` connects). The variables and their meaning are those
of httpx (the deliverer's client before :mod:`smsgw.webhook_http`) and urllib:

- ``http_proxy`` for http:// targets, ``https_proxy`` for https:// ones, ``all_proxy`` for
  either when its own is unset; each in lower or upper case, the lower-case one first (an empty
  lower-case one unsets the upper-case one), and ``HTTP_PROXY`` ignored when ``REQUEST_METHOD``
  is set (a CGI script, whose client controls it through a ``Proxy:`` header: CVE-2016-1000110).
  A proxy URL without a scheme is an http:// one; ``user:password@`` in it is sent as
  ``Proxy-Authorization: Basic``. Only http:// proxies (plain TCP to the proxy) are supported.
- ``no_proxy``: the hosts that go direct, comma-separated, as urllib's ``proxy_bypass``: a name
  matches itself and its subdomains (``example.com`` and ``.example.com`` both match
  ``example.com`` and ``api.example.com``, not ``badexample.com``); ``*`` matches every host.
  Beyond urllib, as curl and httpx: an IP address matches that address (``::1`` or ``[::1]``),
  a network (``10.0.0.0/8``) the addresses in it, ``*.example.com`` is ``.example.com``, and a
  ``:port`` suffix limits an entry to that port (default ports included: ``example.com:443``
  matches ``https://example.com/``). Names are not resolved: an IP entry matches a target only
  when its URL has that IP.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

import attrs

__all__ = ["Proxies", "Proxy", "authority", "environment_proxies"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def environment_proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """``urllib.request.getproxies_environment()`` for ``environ`` instead of ``os.environ``:
    ``{"http": url, "https": url, "all": url, "no": "host,..."}`` from ``*_proxy`` variables
    (the rules are in the module doc)."""
    proxies: dict[str, str] = {}
    for name, value in environ.items():
        lowered = name.lower()
        if value and lowered.endswith("_proxy"):
            proxies[lowered[:-6]] = value
    if "REQUEST_METHOD" in environ:
        proxies.pop("http", None)
    for name, value in environ.items():
        if name.endswith("_proxy"):  # all lower case: these win
            if value:
                proxies[name[:-6]] = value
            else:
                proxies.pop(name[:-6], None)
    return proxies


@attrs.frozen
class Proxy:
    """An http:// forward proxy: where it listens and the credentials to send it."""

    host: str
    port: int
    #: ``Proxy-Authorization`` value, from ``user:password@`` in the URL; never shown.
    authorization: bytes | None = attrs.field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``host:port``, the proxy's name in error messages (no credentials)."""
        return authority(self.host, self.port)

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """:class:`ValueError` if it is not an http:// proxy URL (the message never shows the
        credentials)."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        shown = f"{parts.scheme}://{parts.hostname or ''}"
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"proxy {shown}: bad port") from None
        if parts.scheme.lower() != "http":
            raise ValueError(
                f"proxy {shown}: only http:// proxies are supported (not TLS to the proxy)"
            )
        if not parts.hostname:
            raise ValueError(f"proxy {shown}: no host")
        authorization = None
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = b"Basic " + base64.b64encode(credentials.encode("utf-8"))
        return cls(parts.hostname, 80 if port is None else port, authorization)


@attrs.frozen
class _Bypass:
    """One ``no_proxy`` entry: a name (matching its subdomains too) or a network; a port."""

    name: str | None
    network: _Network | None
    port: int | None

    @classmethod
    def parse(cls, entry: str) -> _Bypass:
        host, port = entry, None
        if entry.startswith("["):  # [v6] or [v6]:port
            host, bracket, rest = entry[1:].partition("]")
            if not bracket or rest[:1] not in ("", ":"):
                raise ValueError(f"no_proxy entry {entry!r}: bad IPv6 address")
            if rest:
                port = _port(entry, rest[1:])
        elif entry.count(":") == 1:  # name:port or v4:port (more colons: a bare IPv6)
            host, _, text = entry.partition(":")
            port = _port(entry, text)
        try:
            return cls(None, ipaddress.ip_network(host, strict=False), port)
        except ValueError:
            name = host.removeprefix("*").lstrip(".")
            if not name:
                raise ValueError(f"no_proxy entry {entry!r}: no host") from None
            return cls(name, None, port)

    def matches(self, host: str, address: _Address | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address is not None and address in self.network
        assert self.name is not None
        return address is None and (host == self.name or host.endswith("." + self.name))


@attrs.frozen
class Proxies:
    """The proxy for each target scheme, and the hosts that bypass them."""

    http: Proxy | None = None
    https: Proxy | None = None
    bypass_all: bool = False
    bypass: tuple[_Bypass, ...] = ()

    @classmethod
    def parse(cls, proxies: Mapping[str, str]) -> Proxies:
        """From the shape of ``urllib.request.getproxies()`` (:func:`environment_proxies`):
        ``http``, ``https``, ``all`` (their fallback) and ``no``; other keys are ignored.
        :class:`ValueError` for a bad proxy URL or ``no`` entry."""
        fallback = proxies.get("all") or None
        http, https = proxies.get("http") or fallback, proxies.get("https") or fallback
        entries = [e.strip().lower() for e in proxies.get("no", "").split(",")]
        entries = [e for e in entries if e]
        return cls(
            http=None if http is None else Proxy.parse(http),
            https=None if https is None else Proxy.parse(https),
            bypass_all="*" in entries,
            bypass=tuple(_Bypass.parse(e) for e in entries if e != "*"),
        )

    def proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for a target (``host`` lower case, IPv6 without brackets), or None: direct."""
        proxy = self.http if scheme == "http" else self.https
        if proxy is None or self.bypasses(host, port):
            return None
        return proxy

    def bypasses(self, host: str, port: int) -> bool:
        """Whether ``no_proxy`` sends this host and port direct."""
        if self.bypass_all:
            return True
        if not self.bypass:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        return any(b.matches(host, address, port) for b in self.bypass)


def authority(host: str, port: int) -> str:
    """``host:port`` as in a URL (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(entry: str, text: str) -> int:
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 65536):
        raise ValueError(f"no_proxy entry {entry!r}: bad port")
    return int(text)
