"""The simulator over TLS (``tls_cert``/``tls_key``): our SMPP client binds and submits through
it trusting the test CA; a client speaking plain TCP, or refusing the certificate, never gets a
session and is counted; files that do not load are a config error naming them."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from simulators import start_simulator

from smpp_codec import BindTransceiver, SubmitSm, encode
from smsgw.simulator import SimulatorConfig
from smsgw.simulator.cli import main
from smsgw.simulator.server import tls_context
from smsgw.simulator.values import ConfigError
from smsgw.smpp import BackoffPolicy, ClientConfig, SmppClient, TlsConfig


def tls_simulator_config(certs: Path) -> SimulatorConfig:
    return SimulatorConfig(seed=1, tls_cert=certs / "server.pem", tls_key=certs / "server.key")


def client(port: int, tls: TlsConfig) -> SmppClient:
    config = ClientConfig(
        system_id="esme",
        password="pw",
        port=port,
        tls=tls,
        backoff=BackoffPolicy(initial=0.02, maximum=0.1),
    )
    return SmppClient(config)


async def test_a_client_trusting_the_ca_binds_and_submits_over_tls(
    nursery: trio.Nursery, certs: Path
) -> None:
    sim = await start_simulator(nursery, tls_simulator_config(certs))
    esme = client(sim.port, TlsConfig(ca_file=str(certs / "ca.pem")))
    await nursery.start(esme.run)
    with trio.fail_after(20):
        await esme.wait_bound()
        response = await esme.submit(
            SubmitSm(sequence_number=0, destination_addr="4915112345", short_message=b"hi"),
            timeout=10,
        )
        await esme.aclose()
    assert response.message_id  # type: ignore[attr-defined]
    stats = sim.sim.stats
    assert (stats.binds, stats.submits_accepted, stats.tls_failures) == (1, 1, 0)


async def test_plain_tcp_or_a_refused_certificate_gets_no_session(
    nursery: trio.Nursery, certs: Path
) -> None:
    sim = await start_simulator(nursery, tls_simulator_config(certs))
    with trio.fail_after(20):
        # A bind in clear: not a TLS ClientHello; the connection is closed.
        stream = await trio.open_tcp_stream("127.0.0.1", sim.port)
        await stream.send_all(encode(BindTransceiver(sequence_number=1, system_id="esme")))
        assert await stream.receive_some(100) == b""
        # A client that does not trust the certificate (system CAs only) hangs up.
        esme = client(sim.port, TlsConfig())
        nursery.start_soon(esme.run)
        while sim.sim.stats.tls_failures < 2:
            await trio.sleep(0.01)
        esme.stop()
    stats = sim.sim.stats
    assert stats.binds == 0 and stats.sessions == 0
    assert "failed: certificate verify failed: " in str(esme.last_error)


def test_files_that_do_not_load_are_a_config_error(tmp_path: Path, certs: Path) -> None:
    missing = SimulatorConfig(tls_cert=tmp_path / "no.pem", tls_key=tmp_path / "no.key")
    with pytest.raises(ConfigError, match="tls_cert/tls_key: cannot load"):
        tls_context(missing)
    # A key that is not the certificate's.
    wrong = SimulatorConfig(tls_cert=certs / "server.pem", tls_key=certs / "ca.key")
    with pytest.raises(ConfigError, match="tls_cert/tls_key"):
        tls_context(wrong)
    assert tls_context(SimulatorConfig()) is None
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        SimulatorConfig(tls_cert=certs / "server.pem")


def test_the_cli_refuses_files_that_do_not_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--tls-cert", str(tmp_path / "x.pem"), "--tls-key", str(tmp_path / "x")]) == 2
    assert "tls_cert/tls_key: cannot load" in capsys.readouterr().err
