"""A SIGHUP reload that outlasts ``RELOAD_TIMEOUT`` while connections are being replaced: the
daemon in this process (so the timeout can be made short), a real gateway and simulator."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from smsgw import daemon as daemon_module
from smsgw.config import load_config
from smsgw.daemon import Daemon
from smsgw.messages import SubmitRequest
from smsgw.model import MessageStatus
from smsgw.simulator import Faults, Simulator, SimulatorConfig

from .harness import poll, provider_toml, write_config


def _config_text(tmp_path: Path, port: int, window: int, statuses: str) -> str:
    return f"""
[gateway]
state_dir = "{(tmp_path / "state").as_posix()}"
drain_grace = "5s"

[api]
port = 0

[webhooks]
statuses = {statuses}

""" + provider_toml("a", port, connections=2, window=window)


async def test_a_reload_outlasting_its_timeout_applies_the_rest_while_connections_roll(
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Answers take 0.5 s and messages are in flight, so replacing the two connections takes
    longer than the (shortened) reload timeout: the reload still takes the rest of the file
    (here the webhook statuses), says the connections go on in the background, and they do."""
    monkeypatch.setattr(daemon_module, "RELOAD_TIMEOUT", 0.3)
    sim = Simulator(SimulatorConfig(seed=7, faults=Faults(latency=0.5)))
    port: int = await nursery.start(sim.serve)
    path = write_config(
        tmp_path / "gw.toml", _config_text(tmp_path, port, window=10, statuses='["delivered"]')
    )
    daemon = Daemon(str(path), load_config(str(path)))
    nursery.start_soon(daemon.run)
    with trio.fail_after(30):
        await poll(lambda: daemon.gateway is not None, 20, "gateway ready")
        gateway = daemon.gateway
        assert gateway is not None
        await poll(lambda: gateway.providers.health("a").bound == 2, 20, "bound")
        requests = [
            SubmitRequest(to=f"4915112{n:04d}", source="ACME", text="hi") for n in range(20)
        ]
        await gateway.submit(requests)
        await poll(lambda: gateway.providers.health("a").in_flight > 0, 20, "sending")

        path.write_text(_config_text(tmp_path, port, window=5, statuses='["failed"]'))
        with caplog.at_level(logging.INFO, logger="smsgw.daemon"):
            await daemon.reload()
        assert "connections still being replaced after 0.3s" in caplog.text
        assert "reloaded" in caplog.text
        assert gateway.notifier.statuses == frozenset({MessageStatus.FAILED})
        assert daemon.config.providers[0].window == 5
        await poll(
            lambda: (
                [c.window for c in gateway.providers.health("a").connections] == [5, 5]
                and gateway.providers.health("a").bound == 2
            ),
            20,
            "the connections replaced",
        )
        await gateway.drain(2.0)
