"""The configuration file: schema, defaults, ${ENV} substitution, durations, and the messages."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import smsgw.config as config_schema
from smpp_codec import CommandStatus, Npi, Ton
from smpp_codec.message_id import MessageIdFormat
from smpp_codec.segment import SplitMode
from smsgw import check_config
from smsgw.config import (
    BindType,
    ConfigError,
    GatewayConfig,
    LogFormat,
    LogLevel,
    QueueBackend,
    RateUnit,
    ReceiptMode,
    RouteTarget,
    WebhooksConfig,
    load_config,
    parse_config,
)
from smsgw.config_loader import substitute_env
from smsgw.durations import DurationError, format_duration, parse_duration
from smsgw.model import MessageStatus
from smsgw.retry import DEFAULT_OUTCOMES, Outcome, RetryPolicy, classify
from smsgw.smpp.backoff import BackoffPolicy
from smsgw.smpp.config import BindMode, ClientConfig, TlsConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway.toml"


def provider(name: str = "a", **extra: str) -> str:
    """One [[providers]] table; ``extra`` values (TOML literals) add or replace keys."""
    keys = {"name": f'"{name}"', "host": '"127.0.0.1"', "system_id": '"user"'}
    keys["password"] = '"secret"'
    keys.update(extra)
    return "\n[[providers]]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())


def parse(text: str, **environ: str) -> GatewayConfig:
    return parse_config(text, source="test.toml", environ=environ)


def problems(text: str, **environ: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, **environ)
    assert info.value.source == "test.toml"
    return list(info.value.messages)


# --- defaults -----------------------------------------------------------------------------


def test_one_provider_and_nothing_else_is_a_complete_config() -> None:
    config = parse(provider("only"))
    (p,) = config.providers
    assert (p.name, p.host, p.port, p.system_id, p.password) == (
        "only",
        "127.0.0.1",
        2775,
        "user",
        "secret",
    )
    assert config.gateway.state_dir == Path("smsgw-state")
    assert config.queue_path == Path("smsgw-state/queue.sqlite3")
    assert config.database_path == Path("smsgw-state/smsgw.sqlite3")
    assert config.queue.backend is QueueBackend.EMBEDDED
    assert (config.api.listen, config.api.port) == ("127.0.0.1", 8080)
    assert config.metrics.on_api_listener
    assert config.routes == ()
    assert config.gateway.log_format is LogFormat.TEXT
    assert config.gateway.log_level is LogLevel.INFO
    assert p.bind is BindType.TRANSCEIVER
    assert p.split_mode is SplitMode.UDH8
    assert p.message_id_format is MessageIdFormat.AUTO
    assert p.receipts is ReceiptMode.ALWAYS
    assert p.rate.unit is RateUnit.SEGMENTS
    assert p.status_map == {}
    assert config.retry == RetryPolicy()


def test_instance_id_defaults_to_hostname_and_pid() -> None:
    config = parse(provider())
    assert config.gateway.instance_id is None
    assert config.gateway.resolved_instance_id() == f"{socket.gethostname()}-{os.getpid()}"
    named = parse('[gateway]\ninstance_id = "gw-1"\n' + provider())
    assert named.gateway.resolved_instance_id() == "gw-1"


def test_paths_of_the_embedded_queue_and_database_follow_state_dir_unless_set() -> None:
    config = parse('[gateway]\nstate_dir = "/var/lib/smsgw"\n' + provider())
    assert config.queue_path == Path("/var/lib/smsgw/queue.sqlite3")
    assert config.database_path == Path("/var/lib/smsgw/smsgw.sqlite3")
    config = parse('[queue.embedded]\npath = "/q.db"\n[database]\npath = "/d.db"\n' + provider())
    assert config.queue_path == Path("/q.db")
    assert config.database_path == Path("/d.db")


def test_the_example_file_parses_into_what_it_says() -> None:
    environ = {
        "ACME_SYSTEM_ID": "acme-id",
        "ACME_PASSWORD": "acme-pw",
        "GLOBEX_SYSTEM_ID": "globex-id",
        "GLOBEX_PASSWORD": "globex",
    }
    config = parse_config(EXAMPLE.read_text(), source=str(EXAMPLE), environ=environ)
    acme, globex = config.providers
    assert (acme.system_id, acme.password) == ("acme-id", "acme-pw")
    assert acme.port == 2776 and acme.connections == 2 and acme.window == 20
    assert acme.tls.enabled and acme.tls.ca_file == Path("/etc/ssl/certs/ca-certificates.crt")
    assert (acme.rate.per_second, acme.rate.effective_burst) == (200.0, 50)
    assert acme.reconnect.max == 120.0
    assert acme.message_id_format is MessageIdFormat.HEX_RESP_DECIMAL_RECEIPT
    assert acme.status_map == {
        0x401: Outcome.FAIL,
        CommandStatus.ESME_RSUBMITFAIL: Outcome.FAILOVER,
    }
    assert globex.bind is BindType.TRANSMITTER_RECEIVER
    assert globex.split_mode is SplitMode.SAR
    assert globex.receipts is ReceiptMode.FINAL_PART
    assert globex.rate.effective_burst == 50  # one second's worth
    assert [r.name for r in config.routes] == ["otp", "fr-de", "uk-mobile-partner", "default"]
    assert config.routes[1].providers == (RouteTarget("acme", 3), RouteTarget("globex", 1))
    assert config.routes[2].destination_regex is not None
    assert config.routes[2].destination_regex.search("+447700900123")
    assert config.routes[3].is_catch_all
    assert config.rate_limit.per_second == 220.0 and config.rate_limit.effective_burst == 60
    assert config.retry.max_delay == 600.0
    assert config.gateway.log_format is LogFormat.JSON


def test_the_example_file_loads_and_check_config_accepts_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("ACME_SYSTEM_ID", "ACME_PASSWORD", "GLOBEX_SYSTEM_ID", "GLOBEX_PASSWORD"):
        monkeypatch.setenv(name, "x")
    assert load_config(EXAMPLE).providers[0].name == "acme"
    assert check_config.main(["-c", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: ")
    assert "2 providers (acme, globex), 4 routes, queue embedded" in out


# --- messages -----------------------------------------------------------------------------


def test_a_bad_value_is_reported_with_its_path_and_what_was_expected() -> None:
    text = provider("a") + provider("b", window="0")
    assert problems(text) == ["providers[1].window: expected int from 1 to 10000, got 0"]


@given(
    index=st.integers(0, 4),
    window=st.one_of(st.integers(max_value=0), st.integers(min_value=10_001)),
)
def test_any_bad_window_of_any_provider_gets_its_own_exact_message(index: int, window: int) -> None:
    text = "".join(
        provider(f"p{i}", window=str(window)) if i == index else provider(f"p{i}") for i in range(5)
    )
    assert problems(text) == [
        f"providers[{index}].window: expected int from 1 to 10000, got {window}"
    ]


def test_every_problem_is_reported_at_once() -> None:
    text = """
[gateway]
log_level = "INFO"
drain_grace = "5 mins"
colour = true

[queue]
consumers = 0

[[providers]]
name = "a"
host = "127.0.0.1"
system_id = "averyveryverylongsystemid"
password = "p"
windw = 3
rate = { per_second = "100" }

[[routes]]
providers = ["a", { name = "c", weight = 0 }]
destination_prefixes = ["33", "x1"]
tags = "vip"
"""
    assert problems(text) == [
        "providers[0].system_id: expected at most 15 characters (SMPP 3.4 system_id), got 25",
        'providers[0].rate.per_second: expected a number, got "100"',
        'providers[0].windw: unknown key (did you mean "window"?)',
        'gateway.log_level: expected one of "debug", "info", "warning", "error", got "INFO"',
        'gateway.drain_grace: expected a duration like "30s", "5m", "250ms", "1h30m" or a '
        'number of seconds, got "5 mins"',
        "gateway.colour: unknown key (known keys: state_dir, instance_id, log_format, "
        "log_level, drain_grace)",
        "queue.consumers: expected int from 1 to 1024, got 0",
        "routes[0].providers[1].weight: expected int from 1 to 10000, got 0",
        'routes[0].destination_prefixes[1]: expected digits with an optional leading "+", got "x1"',
        'routes[0].tags: expected an array, got "vip"',
        # The cross-references are checked even though the sections above are broken.
        'routes[0].providers[1]: unknown provider "c"; the providers are "a"',
    ]


def test_configerror_text_has_the_source_the_count_and_one_line_per_problem() -> None:
    with pytest.raises(ConfigError) as info:
        parse(provider("a", window="0", port="0"))
    assert str(info.value) == (
        "test.toml: 2 problems\n"
        "  providers[0].port: expected int from 1 to 65535, got 0\n"
        "  providers[0].window: expected int from 1 to 10000, got 0"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"window": '"10"'}, 'providers[0].window: expected int, got "10"'),
        ({"port": "2775.0"}, "providers[0].port: expected int, got 2775.0"),
        ({"window": "true"}, "providers[0].window: expected int, got true"),
        ({"host": "1"}, "providers[0].host: expected a string, got 1"),
        ({"host": '""'}, "providers[0].host: must not be empty"),
        ({"tls": "{ enabled = 1 }"}, "providers[0].tls.enabled: expected true or false, got 1"),
        (
            {"rate": "{ per_second = inf }"},
            "providers[0].rate.per_second: expected a finite number, got inf",
        ),
        ({"rate": "5"}, "providers[0].rate: expected a table, got 5"),
        (
            {"bind": '"transciever"'},
            'providers[0].bind: expected one of "transceiver", '
            '"transmitter_receiver", got "transciever"',
        ),
        (
            {"split_mode": '"udh"'},
            'providers[0].split_mode: expected one of "udh8", "udh16", "sar", "payload", got "udh"',
        ),
        (
            {"message_id_format": '"HEX"'},
            "providers[0].message_id_format: expected one of "
            '"auto", "as_is", "decimal", "hex", "hex_resp_decimal_receipt", '
            '"decimal_resp_hex_receipt", got "HEX"',
        ),
        (
            {"request_timeout": '"0s"'},
            "providers[0].request_timeout: expected a duration > 0s, got 0s",
        ),
        (
            {"reconnect": '{ initial = "10s", max = "1s" }'},
            "providers[0].reconnect.max: must be >= initial (10s), got 1s",
        ),
        ({"tls": '{ key_file = "k.pem" }'}, "providers[0].tls.key_file: given without cert_file"),
        (
            {"system_type": '"abcdefghijklm"'},
            "providers[0].system_type: expected at most 12 "
            "characters (SMPP 3.4 system_type), got 13",
        ),
        (
            {"system_id": '"usér\u20ac"'},
            "providers[0].system_id: expected Latin-1 text (SMPP C-Octet string)",
        ),
        (
            {"addressing": '{ dest_ton = "auto" }'},
            "providers[0].addressing.dest_ton: expected "
            'one of "unknown", "international", "national", "network_specific", '
            '"subscriber_number", "alphanumeric", "abbreviated" or 0, 1, 2, 3, 4, 5, 6, got "auto"',
        ),
        ({"connections": "65"}, "providers[0].connections: expected int from 1 to 64, got 65"),
    ],
)
def test_one_bad_provider_key(extra: dict[str, str], message: str) -> None:
    assert problems(provider("a", **extra)) == [message]


def test_a_missing_required_key_is_named() -> None:
    text = '[[providers]]\nname = "a"\nhost = "h"\n'
    assert problems(text) == [
        "providers[0].system_id: required key is missing",
        "providers[0].password: required key is missing",
    ]
    assert problems("") == ["providers: required key is missing"]
    assert problems("providers = []") == ["providers: must not be empty"]


def test_invalid_toml_is_one_message_with_the_position() -> None:
    (message,) = problems("[[providers]\nname = 1")
    assert message.startswith("not valid TOML: ")
    assert "line 1" in message


def test_secrets_are_never_quoted_in_messages_or_repr() -> None:
    messages = problems(provider("a").replace('password = "secret"', "password = 987654321"))
    assert messages == ["providers[0].password: expected a string, got an integer"]
    messages = problems(provider("a").replace('"secret"', '"s3cr3t-t00-l0ng"'))
    assert messages == [
        "providers[0].password: expected at most 8 characters (SMPP 3.4 password), got 15"
    ]
    messages = problems(
        '[queue]\nbackend = "redis"\n[queue.redis]\nurl = "http://:hunter2@x"\n' + provider()
    )
    assert messages == [
        "queue.redis.url: expected a URL starting with redis://, rediss://, unix://"
    ]
    config = parse(
        '[queue]\nbackend = "redis"\n[queue.redis]\nurl = "redis://:hunter2@x"\n' + provider()
    )
    assert "hunter2" not in repr(config)
    assert "secret" not in repr(config)


# --- cross-field rules ----------------------------------------------------------------------


def test_names_are_checked() -> None:
    assert problems(provider("has space")) == [
        "providers[0].name: expected a name of letters, digits and _ . : - (starting with a "
        'letter or digit, at most 64), got "has space"'
    ]


def test_provider_names_are_unique() -> None:
    assert problems(provider("a") + provider("b") + provider("a")) == [
        'providers[2].name: "a" is already the name of providers[0]'
    ]


def test_a_route_naming_an_unknown_provider_names_both() -> None:
    text = provider("a") + provider("b") + '[[routes]]\nname = "eu"\nproviders = ["a", "x"]\n'
    assert problems(text) == [
        'routes[0].providers[1]: unknown provider "x" (route "eu"); the providers are "a", "b"'
    ]


def test_route_rules() -> None:
    text = (
        provider("a")
        + """
[[routes]]
name = "r"
providers = ["a", { name = "a", weight = 2 }]
destination_prefixes = ["33"]
destination_regex = "^4"

[[routes]]
name = "r"
providers = [42]
sources = ["X"]

[[routes]]
providers = ["a"]
destination_regex = "(["

[[routes]]
providers = ["a"]

[[routes]]
providers = ["a"]
clients = ["c"]
"""
    )
    assert problems(text) == [
        "routes[0].destination_regex: give destination_prefixes or destination_regex, not both",
        'routes[0].providers[1]: provider "a" is listed twice',
        'routes[1].providers[0]: expected a provider name or { name = "...", weight = N }, got 42',
        "routes[2].destination_regex: invalid regular expression: unterminated character set "
        "at position 1",
        'routes[1].name: "r" is already the name of routes[0]',
        "routes[4]: can never match: routes[3] before it matches every message (it has no "
        "criteria)",
    ]


def test_route_targets_are_a_name_or_a_table_with_a_weight() -> None:
    text = (
        provider("a")
        + provider("b")
        + provider("c")
        + """
[[routes]]
providers = ["a", { name = "b", weight = 3 }, { name = "c" }]
"""
    )
    (route,) = parse(text).routes
    assert route.providers == (RouteTarget("a"), RouteTarget("b", 3), RouteTarget("c"))
    assert route.label(0) == "routes[0]"
    assert route.is_catch_all


def test_queue_backend_is_a_tagged_union() -> None:
    config = parse(
        '[queue]\nbackend = "redis"\n[queue.redis]\nurl = "redis://r:6379/0"\n' + provider()
    )
    assert config.queue.backend is QueueBackend.REDIS
    assert config.queue.redis is not None
    assert (config.queue.redis.url, config.queue.redis.prefix) == ("redis://r:6379/0", "smsgw")
    assert problems('[queue]\nbackend = "redis"\n' + provider()) == [
        'queue.redis: required when backend = "redis" ([queue.redis] url = ...)'
    ]
    assert problems('[queue.redis]\nurl = "redis://r"\n' + provider()) == [
        'queue.redis: only used with backend = "redis" (backend is "embedded")'
    ]
    assert problems(
        '[queue]\nbackend = "redis"\n[queue.redis]\nurl = "redis://r"\n[queue.embedded]\n'
        + provider()
    ) == ['queue.embedded: only used with backend = "embedded" (backend is "redis")']
    assert problems('[queue]\nbackend = "kafka"\n' + provider()) == [
        'queue.backend: expected one of "embedded", "redis", got "kafka"'
    ]


def test_shared_limits_settings_of_a_redis_queue() -> None:
    redis = '[queue]\nbackend = "redis"\n[queue.redis]\nurl = "redis://r"\n'
    shared = parse(redis + provider()).queue.redis
    assert shared is not None
    assert (shared.share_limits, shared.heartbeat, shared.instance_timeout) == (True, 2.0, 10.0)
    settings = 'share_limits = false\nheartbeat = "1s"\ninstance_timeout = "3s"\n'
    tuned = parse(redis + settings + provider()).queue.redis
    assert tuned is not None
    assert (tuned.share_limits, tuned.heartbeat, tuned.instance_timeout) == (False, 1.0, 3.0)
    assert problems(redis + 'heartbeat = "5s"\n' + provider()) == [
        "queue.redis.instance_timeout: expected at least 3 x heartbeat (15s), got 10s"
    ]
    assert problems(redis + 'heartbeat = "0s"\n' + provider())[0].startswith(
        "queue.redis.heartbeat: "
    )


def test_retry_section_is_the_retry_policy() -> None:
    config = parse(
        '[retry]\nmax_attempts = 3\ninitial_delay = "250ms"\nmax_delay = "1m"\njitter = 0\n'
        + provider()
    )
    assert config.retry == RetryPolicy(
        max_attempts=3, initial_delay=0.25, multiplier=2.0, max_delay=60.0, jitter=0.0
    )
    assert problems('[retry]\ninitial_delay = "10m"\nmax_delay = "1m"\n' + provider()) == [
        "retry.max_delay: must be >= initial_delay (600s), got 60s"
    ]
    assert problems("[retry]\njitter = 1.5\n" + provider()) == [
        "retry.jitter: expected a number from 0.0 to 1.0, got 1.5"
    ]


def test_rate_limit_section() -> None:
    config = parse("[rate_limit]\nper_second = 12.5\n" + provider())
    assert config.rate_limit.effective_burst == 13
    assert parse(provider()).rate_limit.effective_burst is None
    assert problems("[rate_limit]\ndecrease_factor = 0\nfloor = 2\n" + provider()) == [
        "rate_limit.decrease_factor: expected a number > 0, got 0.0",
        "rate_limit.floor: expected a number <= 1, got 2.0",
    ]


def test_metrics_and_api_sections() -> None:
    config = parse("[metrics]\nport = 9100\n[api]\nport = 0\n" + provider())
    assert not config.metrics.on_api_listener
    assert (config.metrics.listen, config.metrics.port, config.api.port) == ("127.0.0.1", 9100, 0)
    assert problems('[metrics]\npath = "metrics"\n' + provider()) == [
        'metrics.path: expected a path starting with "/", got "metrics"'
    ]


# --- status_map -----------------------------------------------------------------------------


def test_status_map_accepts_names_hex_and_decimal_and_overrides_the_default() -> None:
    config = parse(
        provider("a") + '[providers.status_map]\nESME_RSYSERR = "fail"\nesme_rthrottled = "retry"\n'
        '"0x00000401" = "failover"\n"1100" = "throttle"\n'
    )
    status_map = config.providers[0].status_map
    assert status_map == {
        CommandStatus.ESME_RSYSERR: Outcome.FAIL,
        CommandStatus.ESME_RTHROTTLED: Outcome.RETRY,
        0x401: Outcome.FAILOVER,
        1100: Outcome.THROTTLE,
    }
    assert isinstance(status_map, MappingProxyType)
    assert classify(CommandStatus.ESME_RSYSERR, provider_overrides=status_map) is Outcome.FAIL
    assert classify(0x401, provider_overrides=status_map) is Outcome.FAILOVER


def test_status_map_problems_are_each_reported() -> None:
    text = provider("a") + (
        "[providers.status_map]\n"
        'ESME_ROK = "fail"\n'
        'NOPE = "retry"\n'
        '"0x401" = "explode"\n'
        '"0x0000000008" = "fail"\n'
        '"8" = "fail"\n'
        'ESME_RSYSERR = "retry"\n'
    )
    assert problems(text) == [
        "providers[0].status_map.ESME_ROK: ESME_ROK is success; only error statuses can be mapped",
        "providers[0].status_map.NOPE: expected a command_status name (ESME_RSYSERR), hex "
        "(0x00000400) or decimal number",
        'providers[0].status_map.0x401: expected one of "retry", "fail", "failover", '
        '"throttle", got "explode"',
        "providers[0].status_map.0x0000000008: expected a command_status name (ESME_RSYSERR), "
        "hex (0x00000400) or decimal number",
        "providers[0].status_map.ESME_RSYSERR: the same status is mapped twice",
    ]


# --- provider helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("MyBrand", (Ton.ALPHANUMERIC, Npi.UNKNOWN)),
        ("Shop24", (Ton.ALPHANUMERIC, Npi.UNKNOWN)),
        ("+447700900123", (Ton.INTERNATIONAL, Npi.ISDN)),
        ("447700900123", (Ton.INTERNATIONAL, Npi.ISDN)),
        ("+123", (Ton.INTERNATIONAL, Npi.ISDN)),
        ("1234567", (Ton.INTERNATIONAL, Npi.ISDN)),
        ("123456", (Ton.NETWORK_SPECIFIC, Npi.UNKNOWN)),
        ("88", (Ton.NETWORK_SPECIFIC, Npi.UNKNOWN)),
        ("١٢٣", (Ton.ALPHANUMERIC, Npi.UNKNOWN)),  # non-ASCII digits are not a number
    ],
)
def test_automatic_source_ton_npi(source: str, expected: tuple[Ton, Npi]) -> None:
    addressing = parse(provider()).providers[0].addressing
    assert addressing.source_ton_npi(source) == expected


def test_fixed_source_ton_npi_and_names_or_numbers() -> None:
    config = parse(
        provider(
            "a",
            addressing='{ source_ton = "national", source_npi = 1, dest_ton = 0, '
            'dest_npi = "national", short_code_max_digits = 4 }',
        )
    )
    addressing = config.providers[0].addressing
    assert addressing.source_ton_npi("MyBrand") == (Ton.NATIONAL, Npi.ISDN)
    assert (addressing.dest_ton, addressing.dest_npi) == (Ton.UNKNOWN, Npi.NATIONAL)
    auto_npi = parse(provider("a", addressing="{ source_ton = 5 }")).providers[0].addressing
    assert auto_npi.source_ton_npi("+447700900123") == (Ton.ALPHANUMERIC, Npi.ISDN)
    assert auto_npi.source_ton_npi("12345") == (Ton.ALPHANUMERIC, Npi.UNKNOWN)
    assert problems(provider("a", addressing="{ source_npi = 2 }")) == [
        'providers[0].addressing.source_npi: expected "auto", one of "unknown", "isdn", "data", '
        '"telex", "land_mobile", "national", "private", "ermes", "internet", "wap" or 0, 1, 3, '
        "4, 6, 8, 9, 10, 14, 18, got 2"
    ]


def test_provider_client_config_carries_every_setting() -> None:
    config = parse(
        provider(
            "a",
            port="2776",
            system_type='"VMA"',
            bind='"transmitter_receiver"',
            window="7",
            connect_timeout='"3s"',
            request_timeout='"20s"',
            response_timeout='"4s"',
            enquire_link_interval='"15s"',
            reconnect='{ initial = "2s", max = "30s", reset_after = "5m" }',
            tls='{ enabled = true, ca_file = "ca.pem", verify = false, '
            'server_hostname = "smsc", cert_file = "c.pem", key_file = "k.pem" }',
        )
    )
    client = config.providers[0].client_config()
    assert client == ClientConfig(
        system_id="user",
        password="secret",
        host="127.0.0.1",
        port=2776,
        system_type="VMA",
        bind_mode=BindMode.TRANSMITTER_RECEIVER,
        tls=TlsConfig(
            ca_file="ca.pem",
            verify=False,
            server_hostname="smsc",
            cert_file="c.pem",
            key_file="k.pem",
        ),
        window=7,
        connect_timeout=3.0,
        request_timeout=20.0,
        response_timeout=4.0,
        enquire_link_interval=15.0,
        backoff=BackoffPolicy(initial=2.0, maximum=30.0, reset_after=300.0),
    )
    assert parse(provider()).providers[0].client_config().tls is None


# --- ${ENV} substitution --------------------------------------------------------------------


def test_env_variables_are_substituted_in_strings() -> None:
    config = parse(
        provider("a").replace('"secret"', '"${PW}"').replace('"user"', '"u-${ID}-${ID}"'),
        PW="s3",
        ID="7",
    )
    assert (config.providers[0].password, config.providers[0].system_id) == ("s3", "u-7-7")


def test_an_unset_variable_names_the_key_and_the_variable() -> None:
    text = provider("a").replace('"secret"', '"${SMPP_PASSWORD}"')
    # The unresolved text is not also reported as too long for a password.
    assert problems(text) == [
        "providers[0].password: environment variable SMPP_PASSWORD is not set"
    ]


def test_substitution_walks_arrays_and_tables_but_not_keys() -> None:
    document = {
        "a": ["${X}", {"b": "$${X}", "${X}": "${X}"}],
        "n": 3,
        "t": True,
    }
    result, errors = substitute_env(document, {"X": "1"})
    assert errors == []
    assert result == {"a": ["1", {"b": "${X}", "${X}": "1"}], "n": 3, "t": True}


def test_substitution_problems() -> None:
    document = {"s": {"k": "${X} ${1A} ${UNCLOSED", "ok": "$X $"}}
    result, errors = substitute_env(document, {"X": "1"})
    assert result == {"s": {"k": "${X} ${1A} ${UNCLOSED", "ok": "$X $"}}  # left as written
    assert errors == [
        (
            "s.k",
            'invalid reference "${1A}": expected ${NAME}, NAME made of letters, digits and '
            "_ (write $${ for a literal ${)",
        ),
        (
            "s.k",
            'invalid reference "${UNCLOSED": expected ${NAME}, NAME made of letters, '
            "digits and _ (write $${ for a literal ${)",
        ),
    ]


_env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)


@given(
    parts=st.lists(
        st.one_of(
            st.text(alphabet=st.characters(blacklist_characters="$"), max_size=8).map(
                lambda t: ("text", t)
            ),
            _env_names.map(lambda n: ("var", n)),
            st.just(("escape", "")),
        ),
        max_size=8,
    ),
    values=st.dictionaries(_env_names, st.text(max_size=8), max_size=6),
)
def test_substitution_is_a_single_left_to_right_pass(
    parts: list[tuple[str, str]], values: dict[str, str]
) -> None:
    """Every reference is replaced by its value (never re-expanded), every ``$${`` gives
    ``${``, and text without ``$`` is untouched; an unset name is reported, never guessed."""
    text = ""
    expected = ""
    missing = []
    for kind, value in parts:
        if kind == "text":
            text += value
            expected += value
        elif kind == "escape":
            text += "$${"
            expected += "${"
        else:
            text += "${" + value + "}"
            if value in values:
                expected += values[value]
            else:
                missing.append(value)
    result, errors = substitute_env({"k": text}, values)
    if missing:
        assert errors == [("k", f"environment variable {name} is not set") for name in missing]
        assert result == {"k": text}
    else:
        assert errors == []
        assert result == {"k": expected}


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("250ms", 0.25),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1h30m", 5400.0),
        ("1m0.5s", 60.5),
        ("1.5s", 1.5),
        ("0s", 0.0),
        (30, 30.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "",
        "30",
        "5 m",
        "5mins",
        "1s1m",
        "1m1m",
        "-1s",
        "1e3s",
        ".5s",
        "s",
        True,
        -1,
        float("inf"),
        None,
        [1],
    ],
)
def test_not_a_duration(value: object) -> None:
    with pytest.raises(DurationError, match=r"^expected a duration like"):
        parse_duration(value)


_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


@given(
    st.lists(st.integers(0, 10_000), min_size=5, max_size=5),
    st.sets(st.sampled_from(list(_UNIT_SECONDS)), min_size=1),
)
def test_any_ordered_combination_of_units_adds_up(numbers: list[int], units: set[str]) -> None:
    ordered = [u for u in _UNIT_SECONDS if u in units]
    text = "".join(f"{numbers[i]}{unit}" for i, unit in enumerate(ordered))
    expected = sum(numbers[i] * _UNIT_SECONDS[unit] for i, unit in enumerate(ordered))
    assert parse_duration(text) == pytest.approx(expected)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 0.25, 1, 90, 1.5)] == [
        "0s",
        "250ms",
        "1s",
        "90s",
        "1.5s",
    ]


# --- files and the command ----------------------------------------------------------------


def test_load_config_reads_the_file_and_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(provider("a").replace('"secret"', '"${SMSGW_TEST_PW}"'))
    monkeypatch.setenv("SMSGW_TEST_PW", "pw")
    assert load_config(path).providers[0].password == "pw"
    monkeypatch.delenv("SMSGW_TEST_PW")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert info.value.messages == (
        "providers[0].password: environment variable SMSGW_TEST_PW is not set",
    )


def test_load_config_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml")
    assert info.value.messages == ("cannot read the file: No such file or directory",)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"name = '\xff'")
    with pytest.raises(ConfigError) as info:
        load_config(binary)
    (message,) = info.value.messages
    assert message.startswith("not UTF-8 text: ")


def test_check_config_prints_every_problem_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(provider("a", window="0") + provider("a"))
    assert check_config.main(["-c", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{path}: 2 problems",
        "  providers[0].window: expected int from 1 to 10000, got 0",
        '  providers[1].name: "a" is already the name of providers[0]',
    ]


def test_check_config_summary_without_routes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(provider("a") + provider("b"))
    expected = (
        f"OK: {path}: 2 providers (a, b), no routes (every message to a then b), queue embedded\n"
    )
    assert check_config.main(["--config", str(path)]) == 0
    assert capsys.readouterr().out == expected
    assert check_config.main([str(path)]) == 0
    assert capsys.readouterr().out == expected


def test_check_config_notes_a_redis_queue_without_a_fixed_instance_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.toml"
    redis = '[queue]\nbackend = "redis"\n[queue.redis]\nurl = "redis://127.0.0.1:6379/0"\n'
    path.write_text(redis + provider("a", connections="2"))
    assert check_config.main([str(path)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith("note: gateway.instance_id: not set")
    path.write_text('[gateway]\ninstance_id = "gw1"\n' + redis + provider("a", connections="2"))
    assert check_config.main([str(path)]) == 0
    assert "note:" not in capsys.readouterr().out


def test_check_config_notes_a_provider_whose_one_connection_the_instances_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.toml"
    redis = '[gateway]\ninstance_id = "gw1"\n[queue]\nbackend = "redis"\n[queue.redis]\n'
    redis += 'url = "redis://127.0.0.1:6379/0"\n'
    path.write_text(redis + provider("a", connections="2") + provider("b"))
    assert check_config.main([str(path)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith("note: providers[1].connections: 1, ")
    # Not shared: each instance binds its own.
    unshared = redis + "share_limits = false\n"
    path.write_text(unshared + provider("a", connections="2") + provider("b"))
    assert check_config.main([str(path)]) == 0
    assert "note:" not in capsys.readouterr().out


def test_check_config_defaults_to_gateway_toml_and_refuses_two_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert check_config.main([]) == 1
    assert capsys.readouterr().err == (
        "gateway.toml: 1 problem\n  cannot read the file: No such file or directory\n"
    )
    (tmp_path / "gateway.toml").write_text(provider())
    assert check_config.main([]) == 0
    with pytest.raises(SystemExit) as info:
        check_config.main(["-c", "a.toml", "b.toml"])
    assert info.value.code == 2


def test_objects_built_in_code_are_validated_too() -> None:
    with pytest.raises(ValueError, match=re.escape("expected int >= 1, got 0")):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="must be >= initial_delay"):
        RetryPolicy(initial_delay=10, max_delay=1)


# --- docs/configuration.md stays true ---------------------------------------------------------

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


def _doc_section(heading: str) -> str:
    start = DOC.index(f"\n{heading}\n")
    end = DOC.find("\n#", start + len(heading) + 2)
    return DOC[start : end if end != -1 else len(DOC)]


@pytest.mark.parametrize(
    ("heading", "cls"),
    [
        ("## `[gateway]`", "GatewaySection"),
        ("## `[queue]`", "QueueConfig"),
        ("### `[queue.embedded]`", "EmbeddedQueueConfig"),
        ('### `[queue.redis]` (required when `backend = "redis"`)', "RedisQueueConfig"),
        ("## `[database]`", "DatabaseConfig"),
        ("## `[[providers]]`", "ProviderConfig"),
        ("### `[providers.reconnect]`", "ReconnectConfig"),
        ("### `[providers.tls]`", "ProviderTls"),
        ("### `[providers.rate]`", "ProviderRate"),
        ("### `[providers.addressing]`", "AddressingConfig"),
        ("## `[[routes]]`", "RouteConfig"),
        ("## `[rate_limit]`", "RateLimitConfig"),
        ("## `[retry]`", "RetryPolicy"),
        ("## `[api]`", "ApiConfig"),
        ("### `[[api.keys]]`", "ApiKeyConfig"),
        ("## `[metrics]`", "MetricsConfig"),
        ("## `[webhooks]`", "WebhooksConfig"),
        ("### `[[webhooks.secrets]]`", "WebhookSecret"),
        ("## `[inbound]`", "InboundConfig"),
    ],
)
def test_every_key_is_documented(heading: str, cls: str) -> None:
    section = _doc_section(heading)
    name = heading.split("`")[1].strip("[]")
    for field in attrs.fields(getattr(config_schema, cls)):
        in_table = f"| `{field.name}` |" in section
        has_heading = f"`[{name}.{field.name}]`" in DOC
        assert in_table or has_heading, f"{field.name} of {heading}"
    for field in attrs.fields(GatewayConfig):
        assert f"`[{field.name}]`" in DOC or f"`[[{field.name}]]`" in DOC


def test_the_documented_classification_table_is_the_code() -> None:
    rows = re.findall(r"^\| `(ESME_\w+)` \| 0x([0-9A-F]+) \| (\w+) \|", DOC, re.MULTILINE)
    documented = {int(code, 16): Outcome(outcome) for _, code, outcome in rows}
    assert documented == dict(DEFAULT_OUTCOMES)
    assert all(CommandStatus[name] == int(code, 16) for name, code, _ in rows)


def test_webhook_statuses() -> None:
    assert parse(provider()).webhooks.statuses is None  # every change notified
    config = parse('[webhooks]\nstatuses = ["delivered", "failed"]\n' + provider())
    assert config.webhooks.statuses == (MessageStatus.DELIVERED, MessageStatus.FAILED)
    assert problems('[webhooks]\nstatuses = ["deliverd"]\n' + provider()) == [
        'webhooks.statuses[0]: expected one of "scheduled", "queued", "submitting", '
        '"submitted", "delivered", "undelivered", "expired", "rejected", "failed", '
        'got "deliverd"'
    ]
    assert problems("[webhooks]\nstatuses = []\n" + provider()) == [
        "webhooks.statuses: must not be empty"
    ]


def test_webhook_blocked_networks_default_to_link_local() -> None:
    """Where cloud metadata services live: blocked unless the file says otherwise."""
    expected = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
    assert parse(provider()).webhooks.blocked_networks == expected
    assert WebhooksConfig().blocked_networks == expected


def test_webhook_blocked_networks_take_networks_and_bare_addresses() -> None:
    text = (
        '[webhooks]\nblocked_networks = ["10.0.0.0/8", "::1", "192.0.2.7", "fc00::/7",'
        ' "172.16.5.4/12"]\n'
    )
    assert parse(text + provider()).webhooks.blocked_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),  # a bare address is that one host
        ipaddress.ip_network("192.0.2.7/32"),
        ipaddress.ip_network("fc00::/7"),
        ipaddress.ip_network("172.16.0.0/12"),  # host bits set: the network, as a firewall
    )
    assert parse("[webhooks]\nblocked_networks = []\n" + provider()).webhooks.blocked_networks == ()


def test_webhook_blocked_networks_problems_name_each_entry() -> None:
    text = '[webhooks]\nblocked_networks = ["10.0.0.0/8", "x", 7, "10.0.0.0/33", "::g"]\n'
    assert problems(text + provider()) == [
        'webhooks.blocked_networks[1]: expected an IP network like 10.0.0.0/8, got "x"',
        "webhooks.blocked_networks[2]: expected an IP network like 10.0.0.0/8, got 7",
        'webhooks.blocked_networks[3]: expected an IP network like 10.0.0.0/8, got "10.0.0.0/33"',
        'webhooks.blocked_networks[4]: expected an IP network like 10.0.0.0/8, got "::g"',
    ]
    assert problems('[webhooks]\nblocked_networks = "10.0.0.0/8"\n' + provider()) == [
        'webhooks.blocked_networks: expected an array of IP networks, got "10.0.0.0/8"'
    ]
    assert problems("[webhooks]\nblocked_networks = [[]]\n" + provider()) == [
        "webhooks.blocked_networks[0]: expected an IP network like 10.0.0.0/8, got an array"
    ]


def test_webhook_blocked_networks_built_in_code_must_be_networks() -> None:
    with pytest.raises(TypeError, match="blocked_networks"):
        WebhooksConfig(blocked_networks=("10.0.0.0/8",))  # type: ignore[arg-type]


def test_inbound_reassembly_settings() -> None:
    assert parse(provider()).inbound.reassembly_timeout == 20.0
    config = parse('[inbound]\nreassembly_timeout = "5s"\nmax_pending = 10\n' + provider())
    assert (config.inbound.reassembly_timeout, config.inbound.max_pending) == (5.0, 10)
    # Parts are answered as they arrive, so the wait for the others may be long.
    long = parse('[inbound]\nreassembly_timeout = "5m"\n' + provider())
    assert long.inbound.reassembly_timeout == 300
    assert problems('[inbound]\nreassembly_timeout = "0s"\n' + provider()) == [
        "inbound.reassembly_timeout: expected a duration > 0s, got 0s"
    ]
    assert problems("[inbound]\nmax_pending = 0\n" + provider()) == [
        "inbound.max_pending: expected int from 1 to 10000000, got 0"
    ]


# --- hostile documents ----------------------------------------------------------------------


def _toml_value(value: object) -> str:
    """A value as TOML (inline tables and arrays; JSON strings are TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


_SCHEMA_MODULES = {config_schema.__name__, RetryPolicy.__module__}


def _all_keys() -> list[str]:
    keys = set()
    for cls in vars(config_schema).values():
        if isinstance(cls, type) and attrs.has(cls) and cls.__module__ in _SCHEMA_MODULES:
            keys |= {f.name for f in attrs.fields(cls)}
    return sorted(keys)


_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["30s", "0s", "1h30m", "udh8", "redis", "redis://x", "a", "${X}", "$${"]),
    st.sampled_from(["ESME_RSYSERR", "retry", "0x401", "transceiver", "auto", "127.0.0.1"]),
)
_keys = st.one_of(st.sampled_from(_all_keys()), st.text(max_size=8))
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=15,
)
_provider_tables = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b"]), "host": st.just("h"), "system_id": st.just("u")},
    optional={"password": st.just("p")},
).flatmap(lambda base: st.dictionaries(_keys, _values, max_size=4).map(lambda extra: base | extra))


@given(
    document=st.fixed_dictionaries(
        {},
        optional={
            "providers": st.lists(_provider_tables, max_size=3) | _values,
            "routes": st.lists(st.dictionaries(_keys, _values, max_size=4), max_size=3),
            **{key: _values for key in ("gateway", "queue", "database", "rate_limit", "retry")},
        },
    ),
)
def test_any_document_gives_a_config_or_messages_never_a_crash(document: dict[str, Any]) -> None:
    text = "".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in document.items())
    try:
        parse_config(text, source="fuzz.toml", environ={"X": "x"})
    except ConfigError as exc:
        assert exc.messages
        for message in exc.messages:
            # Every problem went through our formatting, none fell through as a bare exception.
            assert not re.search(r": [A-Za-z]*(Error|Exception): ", message), message
