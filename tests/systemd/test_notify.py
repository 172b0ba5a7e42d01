"""The notify protocol, alone and spoken by a real ``smsgw run`` child process.

The daemon test binds a datagram socket in ``tmp_path`` and hands it to the daemon as
``$NOTIFY_SOCKET``, as systemd would: READY=1 once it serves, WATCHDOG=1 pings at half of
``$WATCHDOG_USEC``, RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
from daemon.harness import DaemonProcess, provider_toml, write_config

from smsgw.sdnotify import SystemdNotifier, watchdog_pings

#: A datagram the daemon was expected to send must arrive within this.
RECEIVE_TIMEOUT = 30.0


class NotifySocket:
    """The test's end of ``$NOTIFY_SOCKET``: each datagram as a dict of its fields."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.address = address
        self.received: list[dict[str, str]] = []

    async def bind(self) -> None:
        await self.sock.bind(self.address)

    async def next(self, timeout: float = RECEIVE_TIMEOUT) -> dict[str, str]:
        with trio.fail_after(timeout):
            data = await self.sock.recv(65536)
        fields = dict(line.split("=", 1) for line in data.decode("utf-8").split("\n"))
        self.received.append(fields)
        return fields

    async def wait_for(self, key: str, *, max_datagrams: int = 200) -> dict[str, str]:
        """The next datagram carrying ``key`` (watchdog pings in between are skipped)."""
        for _ in range(max_datagrams):
            fields = await self.next()
            if key in fields:
                return fields
        raise AssertionError(f"no {key} in {max_datagrams} datagrams: {self.received[-5:]}")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer than that.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sdn") as directory:
        yield Path(directory)


# --- the protocol alone -------------------------------------------------------------------


def test_from_environ_reads_the_socket_and_halves_the_watchdog() -> None:
    notifier = SystemdNotifier.from_environ(
        {"NOTIFY_SOCKET": "/run/x.sock", "WATCHDOG_USEC": "3000000"}
    )
    assert notifier.enabled and notifier.socket_path == "/run/x.sock"
    assert notifier.watchdog_interval == 1.5
    own = SystemdNotifier.from_environ(
        {"NOTIFY_SOCKET": "/s", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert own.watchdog_interval == 1.0


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"WATCHDOG_USEC": "1000000"},  # a watchdog without a socket to ping
        {"NOTIFY_SOCKET": "/s"},
        {"NOTIFY_SOCKET": "/s", "WATCHDOG_USEC": "0"},
        {"NOTIFY_SOCKET": "/s", "WATCHDOG_USEC": "soon"},
        {"NOTIFY_SOCKET": "/s", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"},  # not ours
    ],
)
def test_no_watchdog_unless_it_is_ours(environ: dict[str, str]) -> None:
    assert SystemdNotifier.from_environ(environ).watchdog_interval is None


def test_without_a_socket_nothing_is_sent() -> None:
    notifier = SystemdNotifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready() is False


def test_a_missing_socket_is_reported_not_raised(short_tmp: Path) -> None:
    notifier = SystemdNotifier(str(short_tmp / "nobody.sock"))
    assert notifier.ready() is False


async def test_datagrams_reach_a_path_socket(short_tmp: Path) -> None:
    listener = NotifySocket(str(short_tmp / "n.sock"))
    await listener.bind()
    notifier = SystemdNotifier(str(short_tmp / "n.sock"))
    assert notifier.ready("two\nlines")
    assert await listener.next(5) == {"READY": "1", "STATUS": "two lines"}
    assert notifier.reloading()
    fields = await listener.next(5)
    assert fields["RELOADING"] == "1" and int(fields["MONOTONIC_USEC"]) > 0
    assert notifier.stopping()
    assert await listener.next(5) == {"STOPPING": "1"}


async def test_abstract_namespace_socket() -> None:
    name = f"smsgw-test-{os.getpid()}-{id(object())}"
    listener = NotifySocket(b"\0" + name.encode())
    await listener.bind()
    assert SystemdNotifier.from_environ({"NOTIFY_SOCKET": "@" + name}).watchdog()
    assert await listener.next(5) == {"WATCHDOG": "1"}


async def test_watchdog_pings_repeat_from_the_loop(short_tmp: Path) -> None:
    listener = NotifySocket(str(short_tmp / "w.sock"))
    await listener.bind()
    notifier = SystemdNotifier(str(short_tmp / "w.sock"), watchdog_interval=0.01)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog_pings, notifier)
        for _ in range(3):
            assert await listener.next(5) == {"WATCHDOG": "1"}
        nursery.cancel_scope.cancel()


async def test_watchdog_pings_return_at_once_without_a_watchdog() -> None:
    with trio.fail_after(5):
        await watchdog_pings(SystemdNotifier("/nowhere", watchdog_interval=None))


# --- the daemon speaking it ---------------------------------------------------------------


async def test_daemon_reports_ready_watchdog_reload_and_stopping(
    tmp_path: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(short_tmp / "notify.sock")
    listener = NotifySocket(path)
    await listener.bind()
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # pings every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    text = f"""
[gateway]
state_dir = "{(tmp_path / "state").as_posix()}"
drain_grace = "2s"

[api]
port = 0
""" + provider_toml("a", 1)  # nothing listens there: READY does not wait for binds
    config = write_config(tmp_path / "gw.toml", text)
    async with trio.open_nursery() as nursery:
        daemon = await nursery.start(DaemonProcess(config).run)
        ready = await listener.wait_for("READY")
        assert ready["STATUS"].startswith("running: 1 provider")
        record = await daemon.wait_logged("gateway ready")
        # READY came once the API listened: /metrics is served on it.
        with trio.fail_after(10):
            async with httpx.AsyncClient() as client:
                response = await client.get(record["metrics"])
        assert response.status_code == 200
        assert "smsgw_messages_total" in response.text

        pings = 0
        while pings < 2:
            pings += "WATCHDOG" in await listener.next()

        # A reload that adds a provider: its counters appear at 0 in the metrics.
        config.write_text(text + provider_toml("b", 1))
        daemon.signal(signal.SIGHUP)
        reloading = await listener.wait_for("RELOADING")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert (await listener.wait_for("READY"))["STATUS"].startswith("running: 2 providers")
        await daemon.wait_logged("reloaded")
        with trio.fail_after(10):
            async with httpx.AsyncClient() as client:
                response = await client.get(record["metrics"])
        assert 'smsgw_messages_total{provider="b",status="delivered"} 0.0' in response.text

        daemon.signal(signal.SIGTERM)
        stopping = await listener.wait_for("STOPPING")
        assert "draining" in stopping["STATUS"]
        assert await daemon.wait_exit(60) == 0
    kinds = [next(iter(fields)) for fields in listener.received if "WATCHDOG" not in fields]
    assert kinds == ["READY", "RELOADING", "READY", "STOPPING"]
