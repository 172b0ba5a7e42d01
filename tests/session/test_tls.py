"""TLS towards the SMSC: a certificate from our own CA (made with the openssl CLI) over
127.0.0.1, trusted through ``TlsConfig.ca_file``; refused when not trusted."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
import trio

from smpp_codec import BindTransceiver, Request, SubmitSm
from smsgw.smpp import BackoffPolicy, ClientConfig, SmppClient, TlsConfig

from .fake_smsc import FakeSmsc


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=smsgw test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "authorityKeyIdentifier=keyid\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return d


async def _tls_smsc(nursery: trio.Nursery, certs: Path) -> int:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs / "server.pem", certs / "server.key")

    async def handle(stream: trio.abc.Stream) -> None:
        smsc = FakeSmsc(stream)
        try:
            bind = await smsc.expect(BindTransceiver)
            await smsc.send(bind.response(system_id="tls"))
            while (pdu := await smsc.read()) is not None:
                if isinstance(pdu, SubmitSm):
                    await smsc.send(pdu.response(message_id="over-tls"))
                elif isinstance(pdu, Request):  # enquire_link, unbind
                    await smsc.send(pdu.response())
        except trio.BrokenResourceError:
            pass  # a client that refused our certificate

    tls_listeners = await trio.open_ssl_over_tcp_listeners(0, ctx, host="127.0.0.1")
    nursery.start_soon(trio.serve_listeners, handle, tls_listeners)
    return int(tls_listeners[0].transport_listener.socket.getsockname()[1])


def _config(port: int, tls: TlsConfig) -> ClientConfig:
    return ClientConfig(
        system_id="esme",
        password="pw",
        port=port,
        tls=tls,
        backoff=BackoffPolicy(initial=0.02, maximum=0.1),
    )


async def test_binds_and_submits_over_tls_with_our_ca(nursery: trio.Nursery, certs: Path) -> None:
    port = await _tls_smsc(nursery, certs)
    client = SmppClient(_config(port, TlsConfig(ca_file=str(certs / "ca.pem"))))
    await nursery.start(client.run)
    with trio.fail_after(20):
        await client.wait_bound()
        resp = await client.submit(SubmitSm(sequence_number=0))
    assert resp.message_id == "over-tls"  # type: ignore[attr-defined]
    with trio.fail_after(10):
        await client.aclose()


async def test_an_untrusted_certificate_is_refused(nursery: trio.Nursery, certs: Path) -> None:
    port = await _tls_smsc(nursery, certs)
    client = SmppClient(_config(port, TlsConfig()))  # system CAs only
    nursery.start_soon(client.run)
    with trio.fail_after(20):
        while client.backoff.attempt < 2:
            await trio.sleep(0.01)
    assert client.stats.binds == 0
    assert "CERTIFICATE_VERIFY_FAILED" in repr(client.last_error.__cause__)  # type: ignore[union-attr]
    client.stop()


async def test_verification_can_be_turned_off(nursery: trio.Nursery, certs: Path) -> None:
    port = await _tls_smsc(nursery, certs)
    client = SmppClient(_config(port, TlsConfig(verify=False)))
    await nursery.start(client.run)
    with trio.fail_after(20):
        await client.wait_bound()
    client.stop()
