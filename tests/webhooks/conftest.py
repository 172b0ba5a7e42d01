"""Fixtures shared by the webhook tests: a TLS certificate, local servers (an h11 one, the same
with TLS, a hypercorn receiver, a forward proxy), a fake wall clock and a store that uses it."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio
from fakeclock import FakeClock

from smsgw.storage import Store, open_store

from .h11server import Server
from .proxy import ForwardProxy
from .receiver import Receiver


@attrs.frozen
class Certificate:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate (and verifies it as usual)."""
        return ssl.create_default_context(cafile=self.cert)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """Made by the openssl command line (the ``cryptography`` package is not a dependency)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=smsgw-test",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return Certificate(cert, key)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "gw.sqlite3", clock=clock, synchronous="NORMAL") as s:
        yield s


@pytest.fixture
async def server(nursery: trio.Nursery) -> Server:
    s = Server()
    await s.start(nursery)
    return s


@pytest.fixture
async def tls_server(nursery: trio.Nursery, certificate: Certificate) -> Server:
    s = Server(ssl_context=certificate.server_context())
    await s.start(nursery)
    return s


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> Receiver:
    r = Receiver()
    await r.start(nursery)
    return r


@pytest.fixture
async def proxy(nursery: trio.Nursery) -> ForwardProxy:
    p = ForwardProxy(hosts={"hooks.test": "127.0.0.1"})
    await p.start(nursery)
    return p
