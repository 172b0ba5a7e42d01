"""TLS towards the SMSC: a certificate from our own CA (``certs``, tests/conftest.py) over
127.0.0.1, trusted through ``TlsConfig.ca_file``; refused when not trusted."""

from __future__ import annotations

import ssl
from pathlib import Path

import trio

from smpp_codec import BindTransceiver, Request, SubmitSm
from smsgw.smpp import BackoffPolicy, ClientConfig, SmppClient, TlsConfig, TlsHandshakeError

from .fake_smsc import FakeSmsc


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
    assert isinstance(client.last_error, TlsHandshakeError)
    assert client.last_error_text == (
        f"TLS handshake with 127.0.0.1:{port} failed: certificate verify failed: "
        "unable to get local issuer certificate"
    )
    client.stop()


async def test_verification_can_be_turned_off(nursery: trio.Nursery, certs: Path) -> None:
    port = await _tls_smsc(nursery, certs)
    client = SmppClient(_config(port, TlsConfig(verify=False)))
    await nursery.start(client.run)
    with trio.fail_after(20):
        await client.wait_bound()
    client.stop()


async def test_tls_to_a_plain_smpp_port_says_so(nursery: trio.Nursery) -> None:
    """A plain SMPP server answers the TLS hello with SMPP bytes (here: a generic_nack)."""

    async def handle(stream: trio.abc.Stream) -> None:
        with trio.move_on_after(5):
            await stream.receive_some(4096)
            await stream.send_all(bytes.fromhex("00000010800000000000000300000001"))
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(trio.serve_listeners, handle, listeners)
    port = int(listeners[0].socket.getsockname()[1])
    client = SmppClient(_config(port, TlsConfig()))
    nursery.start_soon(client.run)
    with trio.fail_after(20):
        while client.backoff.attempt < 1:
            await trio.sleep(0.01)
    assert isinstance(client.last_error, TlsHandshakeError)
    assert client.last_error_text is not None
    assert client.last_error_text.startswith(f"TLS handshake with 127.0.0.1:{port} failed: ")
    assert client.last_error_text.endswith("the peer does not answer in TLS (a plain SMPP port?)")
    client.stop()
