"""``smsgw run`` as a real process: exit codes, graceful drain, forced stop, reload, JSON logs.

Each test runs the daemon as a child process against simulators served by the test itself over
127.0.0.1; the daemon's JSON log lines are read as they come. No timings are asserted.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from smsgw.messages import SubmitRequest
from smsgw.model import MessageStatus
from smsgw.simulator import Faults, Simulator, SimulatorConfig

from .harness import (
    START_TIMEOUT,
    DaemonProcess,
    enqueue,
    poll,
    provider_toml,
    statuses,
    write_config,
)

pytestmark = pytest.mark.slow


def _gateway_toml(tmp_path: Path, grace: str = "10s") -> str:
    return f"""
[gateway]
state_dir = "{(tmp_path / "state").as_posix()}"
drain_grace = "{grace}"

[api]
port = 0

[queue]
visibility_timeout = "5s"
"""


async def _simulator(nursery: trio.Nursery, **config: object) -> tuple[Simulator, int]:
    sim = Simulator(SimulatorConfig(seed=7, **config))  # type: ignore[arg-type]
    port: int = await nursery.start(sim.serve)
    return sim, port


async def _bound_daemon(
    nursery: trio.Nursery, tmp_path: Path
) -> tuple[Simulator, Path, DaemonProcess]:
    """A simulator, and ``smsgw run`` on a config with it as provider ``a``, once bound."""
    sim, port = await _simulator(nursery)
    config = write_config(tmp_path / "gw.toml", _gateway_toml(tmp_path) + provider_toml("a", port))
    daemon = await nursery.start(DaemonProcess(config).run)
    await daemon.wait_logged("gateway ready")
    await poll(lambda: sim.stats.sessions == 1, 20, "bind")
    return sim, config, daemon


def _run_sync(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smsgw.daemon", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )


# --- start-up failures and --check ----------------------------------------------------------


def test_bad_config_exits_78_naming_the_key(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "gw.toml", _gateway_toml(tmp_path) + provider_toml("a", 2775, window=0)
    )
    done = _run_sync(tmp_path, "-c", str(config), "--log-format", "json")
    assert done.returncode == 78
    assert "providers[0].window" in done.stderr
    assert not (tmp_path / "state").exists()  # nothing was started


def test_missing_config_exits_78(tmp_path: Path) -> None:
    done = _run_sync(tmp_path, "-c", str(tmp_path / "nope.toml"))
    assert done.returncode == 78
    assert "cannot read the file" in done.stderr


def test_check_validates_without_starting(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw.toml", _gateway_toml(tmp_path) + provider_toml("a", 1))
    done = _run_sync(tmp_path, "-c", str(config), "--check")
    assert done.returncode == 0
    assert done.stdout.startswith(f"OK: {config}: 1 provider (a)")
    assert not (tmp_path / "state").exists()
    config.write_text(config.read_text() + "[queue]\nconsumers = 0\n")
    assert _run_sync(tmp_path, "-c", str(config), "--check").returncode == 78


def test_usage_error_exits_2(tmp_path: Path) -> None:
    assert _run_sync(tmp_path, "--no-such-flag").returncode == 2


def test_unusable_state_dir_exits_69(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory must go")
    text = f'[gateway]\nstate_dir = "{(blocker / "state").as_posix()}"\n' + provider_toml("a", 1)
    config = write_config(tmp_path / "gw.toml", text)
    done = _run_sync(tmp_path, "-c", str(config), "--log-format", "json")
    assert done.returncode == 69, done.stderr
    (fatal,) = _critical(done.stderr)
    assert "[gateway] state_dir" in fatal["message"] and str(blocker) in fatal["message"]
    assert "exception" not in fatal  # not a bug: one line, no traceback


def test_an_api_port_in_use_exits_69_saying_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = _gateway_toml(tmp_path).replace("port = 0", f"port = {port}")
        config = write_config(tmp_path / "gw.toml", text + provider_toml("a", 1))
        done = _run_sync(tmp_path, "-c", str(config), "--log-format", "json")
    assert done.returncode == 69, done.stderr
    (fatal,) = _critical(done.stderr)
    assert fatal["message"] == (
        "the gateway stopped on an error: cannot serve the API on "
        f"127.0.0.1:{port} ([api] listen, port): Address already in use"
    )
    assert "exception" not in fatal


async def test_a_second_daemon_on_the_same_state_exits_69_naming_the_first(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        sim, config, first = await _bound_daemon(nursery, tmp_path)
        second = await trio.to_thread.run_sync(
            lambda: _run_sync(tmp_path, "-c", str(config), "--log-format", "json")
        )
        assert second.returncode == 69, second.stderr
        (fatal,) = _critical(second.stderr)
        database = tmp_path / "state" / "smsgw.sqlite3"
        assert fatal["message"] == (
            f"the gateway stopped on an error: {database} is in use by another gateway "
            f"(pid {first.pid}): stop it first, or give this one its own [database] path"
        )
        assert "exception" not in fatal
        assert sim.stats.sessions == 1  # the second never bound
        first.signal(signal.SIGTERM)
        assert await first.wait_exit(60) == 0
        nursery.cancel_scope.cancel()


def _critical(stderr: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [r for r in records if r["level"] == "critical"]


# --- signals --------------------------------------------------------------------------------


async def test_sigterm_drains_in_flight_messages_and_exits_0(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        # Every answer held back 0.5 s: the stop finds submissions in flight.
        sim, port = await _simulator(nursery, faults=Faults(latency=0.5))
        # One consumer leasing 2 at a time: the stop finds 2 in flight and the rest queued.
        text = _gateway_toml(tmp_path, grace="20s") + "consumers = 1\nlease_batch = 2\n"
        config = write_config(tmp_path / "gw.toml", text + provider_toml("a", port))
        requests = [
            SubmitRequest(to=f"4670000{n:04d}", source="test", text=f"drain {n}", receipt=False)
            for n in range(30)
        ]
        ids = await enqueue(config, requests, due_in=2.0)
        unbinds_before = sim.stats.pdus_received.get("unbind", 0)
        daemon = await nursery.start(DaemonProcess(config).run)
        await daemon.wait_logged("gateway ready")
        await poll(lambda: sim.stats.pdus_received.get("submit_sm", 0) >= 1, 20, "submit_sm")
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(60) == 0
        sent = sim.stats.pdus_received.get("submit_sm", 0)
        assert sim.stats.pdus_received.get("unbind", 0) == unbinds_before + 1
        nursery.cancel_scope.cancel()
    assert daemon.logged("SIGTERM: draining")
    [stopped] = daemon.logged("stopped")
    assert stopped["exit_code"] == 0
    found = await statuses(config, ids)
    # Everything the simulator was sent finished within the grace: submitted, none in between.
    submitted = [i for i, s in found.items() if s is MessageStatus.SUBMITTED]
    assert 1 <= len(submitted) == sent < len(ids)
    assert set(found.values()) == {MessageStatus.SUBMITTED, MessageStatus.SCHEDULED}


async def test_second_sigterm_stops_at_once_with_143(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        # Submissions never answered: the drain could only end by its (long) grace.
        sim, port = await _simulator(nursery, faults=Faults(drop_response_fraction=1.0))
        config = write_config(
            tmp_path / "gw.toml",
            _gateway_toml(tmp_path, grace="10m")
            + provider_toml("a", port, request_timeout='"20m"'),
        )
        requests = [SubmitRequest(to="46700000001", source="t", text=f"m{n}") for n in range(3)]
        await enqueue(config, requests, due_in=2.0)
        daemon = await nursery.start(DaemonProcess(config).run)
        await poll(lambda: sim.stats.pdus_received.get("submit_sm", 0) >= 1, 20, "submit_sm")
        daemon.signal(signal.SIGTERM)
        await daemon.wait_logged("SIGTERM: draining")
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(30) == 128 + signal.SIGTERM
        nursery.cancel_scope.cancel()
    assert daemon.logged("SIGTERM again: stopping now")
    assert daemon.logged("stopped")[-1]["exit_code"] == 143


async def test_sigint_stops_like_sigterm(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        _, _, daemon = await _bound_daemon(nursery, tmp_path)
        daemon.signal(signal.SIGINT)
        assert await daemon.wait_exit(60) == 0
        nursery.cancel_scope.cancel()
    assert daemon.logged("SIGINT: draining")


async def test_sighup_reload_adds_a_provider_and_refuses_a_bad_file(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        sim_a, port_a = await _simulator(nursery)
        sim_b, port_b = await _simulator(nursery)
        base = _gateway_toml(tmp_path) + provider_toml("a", port_a)
        config = write_config(tmp_path / "gw.toml", base)
        daemon = await nursery.start(DaemonProcess(config).run)
        await daemon.wait_logged("gateway ready")
        await poll(lambda: sim_a.stats.sessions == 1, 20, "bind to a")
        assert sim_b.stats.binds == 0

        # A valid file with a second provider (and a restart-only change): b is bound.
        config.write_text(base.replace('"5s"', '"7s"') + provider_toml("b", port_b))
        daemon.signal(signal.SIGHUP)
        await daemon.wait_logged("reloaded")
        await poll(lambda: sim_b.stats.sessions == 1, 20, "bind to b")
        [later] = daemon.logged("these changes take effect at the next restart")
        assert later["keys"] == ["queue.visibility_timeout"]

        # A file with a problem: refused with the key named, and a and b keep running.
        config.write_text(base + provider_toml("b", port_b, window=0))
        daemon.signal(signal.SIGHUP)
        refused = await daemon.wait_logged("reload refused")
        assert refused["level"] == "error"
        assert refused["problems"] == ["providers[1].window: expected int from 1 to 10000, got 0"]
        assert sim_a.stats.sessions == 1 and sim_b.stats.sessions == 1

        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(60) == 0
        nursery.cancel_scope.cancel()
    assert len(daemon.logged("reloaded")) == 1
    # Every line the daemon wrote was a JSON record.
    assert daemon.other_lines == []
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in daemon.records)
