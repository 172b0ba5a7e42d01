"""The daemon's pure decisions: exit codes for what ended the gateway, and reload planning."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from smsgw.adapters.sqlite import DatabaseError, DatabaseUnavailable
from smsgw.config import ConfigError, GatewayConfig, parse_config
from smsgw.daemon import ExitCode, describe_error, exit_code_for, forced_exit_code, plan_reload
from smsgw.errors import SetupError
from smsgw.queue.base import QueueUnavailable
from smsgw.storage.errors import SchemaError, StoreUnavailable

BASE = """
[gateway]
state_dir = "/var/lib/smsgw"
log_level = "info"

[[providers]]
name = "a"
host = "127.0.0.1"
system_id = "a"
password = "a"
"""


def _config(text: str) -> GatewayConfig:
    return parse_config(text, source="test.toml", environ={})


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ConfigError("x.toml", ["providers[0].window: bad"]), ExitCode.CONFIG),
        (QueueUnavailable("redis down"), ExitCode.TEMPFAIL),
        (DatabaseUnavailable("locked"), ExitCode.TEMPFAIL),
        (StoreUnavailable("locked"), ExitCode.TEMPFAIL),
        (DatabaseError("corrupt"), ExitCode.UNAVAILABLE),
        (SchemaError("newer schema"), ExitCode.UNAVAILABLE),
        (PermissionError(13, "Permission denied"), ExitCode.UNAVAILABLE),
        (RuntimeError("a bug"), ExitCode.SOFTWARE),
        (KeyError("a bug"), ExitCode.SOFTWARE),
    ],
)
def test_exit_code_for_one_exception(exc: Exception, code: ExitCode) -> None:
    assert exit_code_for(exc) is code


def test_exit_code_for_a_group_is_the_most_severe() -> None:
    outage = ExceptionGroup("g", [QueueUnavailable("x"), ExceptionGroup("h", [OSError("disk")])])
    assert exit_code_for(outage) is ExitCode.UNAVAILABLE
    with_bug = ExceptionGroup("g", [QueueUnavailable("x"), ValueError("bug")])
    assert exit_code_for(with_bug) is ExitCode.SOFTWARE


def test_describe_error_gives_each_leaf_of_a_group_in_one_line() -> None:
    nested = ExceptionGroup("g", [ExceptionGroup("h", [OSError(98, "Address already in use")])])
    assert describe_error(nested) == "OSError: [Errno 98] Address already in use"
    setup = ExceptionGroup("g", [SetupError("cannot create /x ([gateway] state_dir)")])
    assert describe_error(setup) == "cannot create /x ([gateway] state_dir)"  # says it all
    two = ExceptionGroup("g", [QueueUnavailable("redis down"), QueueUnavailable("redis down")])
    assert describe_error(two) == "QueueUnavailable: redis down"  # once
    assert describe_error(KeyError("k")) == "KeyError: 'k'"


def test_forced_exit_codes_follow_the_shell_convention() -> None:
    assert forced_exit_code(signal.SIGINT) == 130
    assert forced_exit_code(signal.SIGTERM) == 143


def test_exit_codes_are_sysexits() -> None:
    assert (ExitCode.UNAVAILABLE, ExitCode.SOFTWARE, ExitCode.TEMPFAIL, ExitCode.CONFIG) == (
        69,
        70,
        75,
        78,
    )


def test_reload_applies_live_sections() -> None:
    running = _config(BASE)
    loaded = _config(
        BASE.replace('log_level = "info"', 'log_level = "debug"')
        + """
[[providers]]
name = "b"
host = "127.0.0.1"
system_id = "b"
password = "b"
window = 50

[rate_limit]
per_second = 10.0
"""
    )
    effective, ignored = plan_reload(running, loaded)
    assert ignored == []
    assert effective == loaded


def test_reload_keeps_restart_only_keys_and_names_them() -> None:
    running = _config(BASE)
    loaded = _config(
        BASE.replace('"/var/lib/smsgw"', '"/srv/smsgw"')
        + """
[queue]
consumers = 8

[api]
port = 9090

[inbound]
max_pending = 10
reassembly_timeout = "5s"

[webhooks]
statuses = ["delivered"]

[[routes]]
providers = ["a"]
"""
    )
    effective, ignored = plan_reload(running, loaded)
    assert sorted(ignored) == [
        "api.port",
        "gateway.state_dir",
        "inbound.max_pending",
        "queue.consumers",
    ]
    assert effective.gateway.state_dir == Path("/var/lib/smsgw")
    assert effective.queue == running.queue
    assert effective.api == running.api
    assert effective.inbound.max_pending == running.inbound.max_pending
    # ... while what can change live does.
    assert effective.routes == loaded.routes
    assert effective.inbound.reassembly_timeout == 5.0
    assert effective.webhooks.statuses == loaded.webhooks.statuses


def test_reload_takes_api_keys_and_request_limits_live_not_the_listener() -> None:
    key = 'name = "c", sha256 = "%s", scopes = ["send"]' % ("ab" * 32)
    running = _config(BASE + f"\n[api]\nport = 8080\nkeys = [{{ {key} }}]\n")
    loaded = _config(
        BASE
        + f"""
[api]
listen = "0.0.0.0"
port = 9090
max_connections = 10
idempotency_window = "1h"
max_batch = 50
max_parts = 3
keys = [{{ {key.replace('"c"', '"d"')} }}]
"""
    )
    effective, ignored = plan_reload(running, loaded)
    assert sorted(ignored) == [
        "api.idempotency_window",
        "api.listen",
        "api.max_connections",
        "api.port",
    ]
    assert (effective.api.listen, effective.api.port) == ("127.0.0.1", 8080)
    assert effective.api.max_connections == running.api.max_connections
    assert effective.api.idempotency_window == running.api.idempotency_window
    assert [k.name for k in effective.api.keys] == ["d"]
    assert (effective.api.max_batch, effective.api.max_parts) == (50, 3)


def test_reload_names_a_whole_section_that_changed_shape() -> None:
    running = _config(BASE)
    loaded = _config(BASE + '\n[queue]\nbackend = "redis"\nredis = { url = "redis://x" }\n')
    _, ignored = plan_reload(running, loaded)
    assert "queue.backend" in ignored
    assert "queue.redis" in ignored
