"""The gateway's configuration: one TOML file, structured into frozen attrs classes.

``smsgw run -c gateway.toml`` and ``smsgw check-config`` read it with :func:`load_config`;
tests use the pure :func:`parse_config`. Every key, its type, default and an example are in
``docs/configuration.md``; ``examples/gateway.toml`` is a realistic, commented file.

Rules the loader enforces (see :mod:`smsgw.config_loader` for the machinery):

- Unknown keys are errors (a typo must not silently fall back to a default).
- Values have the TOML type the key needs; nothing is coerced (``window = "10"`` is an error).
- Durations are ``"30s"``, ``"5m"``, ``"250ms"``, ``"1h30m"`` or a number of seconds.
- ``${NAME}`` in a string is the environment variable ``NAME`` (``$${`` is a literal ``${``).
- Every problem is reported at once, one line each: ``providers[1].window: expected int >= 1,
  got 0``, in a :class:`ConfigError`.

A file with one ``[[providers]]`` table and nothing else is a complete configuration: the
embedded queue and database live under ``./smsgw-state``, the API listens on 127.0.0.1:8080,
and every message goes to that provider.

Relative paths (``state_dir``, ``queue.embedded.path``, ``database.path``, TLS files) are
relative to the working directory of the process, as for any command-line tool.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import math
import os
import re
import socket
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import attrs
import cattrs

from smpp_codec import CommandStatus, Npi, Ton
from smpp_codec.message_id import MessageIdFormat
from smpp_codec.segment import SplitMode

from .config_loader import (
    SECRET,
    STRUCTURE,
    ConfigError,
    Invalid,
    Problems,
    at_least,
    at_most,
    between,
    describe,
    duration_field,
    error_messages,
    greater_than,
    latin1_max_length,
    make_class_hook,
    make_converter,
    non_empty,
    non_negative_duration,
    positive_duration,
    substitute_env,
)
from .model import MessageStatus
from .retry import Outcome, RetryPolicy
from .smpp.backoff import BackoffPolicy
from .smpp.config import BindMode, ClientConfig, TlsConfig

__all__ = [
    "MAX_EVENTS_PER_REQUEST",
    "AddressingConfig",
    "ApiConfig",
    "ApiKeyConfig",
    "ApiScope",
    "BindType",
    "ConfigError",
    "DatabaseConfig",
    "EmbeddedQueueConfig",
    "GatewayConfig",
    "GatewaySection",
    "InboundConfig",
    "LogFormat",
    "LogLevel",
    "MetricsConfig",
    "ProviderConfig",
    "ProviderRate",
    "ProviderTls",
    "QueueBackend",
    "QueueConfig",
    "RateLimitConfig",
    "RateUnit",
    "ReceiptMode",
    "ReconnectConfig",
    "RedisQueueConfig",
    "RetryPolicy",
    "RouteConfig",
    "RouteTarget",
    "WebhookBatching",
    "WebhookSecret",
    "WebhooksConfig",
    "load_config",
    "parse_config",
]

# --- [gateway] ------------------------------------------------------------------------------


class LogFormat(enum.Enum):
    TEXT = "text"
    JSON = "json"


class LogLevel(enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def level(self) -> int:
        """The :mod:`logging` level number."""
        return int(getattr(logging, self.name))


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_NAME_TEXT = "letters, digits and _ . : - (starting with a letter or digit, at most 64)"


def _name(_inst: object, _attr: attrs.Attribute[Any], value: str) -> None:
    """A name used in logs, metric labels and Redis keys."""
    if not _NAME.fullmatch(value):
        raise Invalid(f"expected a name of {_NAME_TEXT}, got {describe(value)}")


def _optional(validator: Any) -> Any:
    return attrs.validators.optional(validator)


def default_instance_id() -> str:
    """``hostname-pid``: unique among the instances sharing one Redis, readable in logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


@attrs.frozen
class GatewaySection:
    """``[gateway]``: the process itself."""

    #: Where the embedded queue and database live unless their own paths are set.
    state_dir: Path = Path("smsgw-state")
    #: This instance's name among several sharing one Redis; None: :func:`default_instance_id`.
    instance_id: str | None = attrs.field(default=None, validator=_optional(_name))
    log_format: LogFormat = LogFormat.TEXT
    log_level: LogLevel = LogLevel.INFO
    #: On SIGTERM/SIGINT, how long in-flight messages may take to finish before the rest is
    #: cancelled (and given back to the queue).
    drain_grace: float = duration_field(30.0, validator=non_negative_duration())

    def resolved_instance_id(self) -> str:
        return self.instance_id if self.instance_id is not None else default_instance_id()


# --- [queue] --------------------------------------------------------------------------------


class QueueBackend(enum.Enum):
    EMBEDDED = "embedded"
    REDIS = "redis"


@attrs.frozen
class EmbeddedQueueConfig:
    """``[queue.embedded]``: the SQLite queue inside the gateway process."""

    #: None: ``<state_dir>/queue.sqlite3``.
    path: Path | None = None
    #: How long a write waits for the file's lock held by another process before it fails.
    busy_timeout: float = duration_field(5.0, validator=positive_duration())


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _redis_url(_inst: object, _attr: attrs.Attribute[Any], value: str) -> None:
    # The URL may hold a password: the message never quotes it.
    if not value.startswith(_REDIS_SCHEMES):
        raise Invalid(f"expected a URL starting with {', '.join(_REDIS_SCHEMES)}")


@attrs.frozen
class RedisQueueConfig:
    """``[queue.redis]``: a Redis shared by several gateway instances."""

    url: str = attrs.field(validator=_redis_url, metadata={SECRET: True}, repr=False)
    #: Prefix of every key, so several gateways (or other programs) can share one Redis.
    prefix: str = attrs.field(default="smsgw", validator=_name)
    #: The instances of this queue share each provider's ``connections`` and ``rate`` and
    #: ``[rate_limit] per_second``: those are the totals of all instances (smsgw.sharing).
    #: False: every instance takes the whole of each.
    share_limits: bool = True
    #: How often an instance says it is alive and renews its connection slots.
    heartbeat: float = duration_field(2.0, validator=positive_duration())
    #: An instance not heard of for this long is gone: its connection slots are free.
    instance_timeout: float = duration_field(10.0, validator=positive_duration())

    def __attrs_post_init__(self) -> None:
        if self.instance_timeout < 3 * self.heartbeat:
            raise Problems(
                [
                    (
                        "instance_timeout",
                        f"expected at least 3 x heartbeat ({3 * self.heartbeat:g}s), "
                        f"got {self.instance_timeout:g}s",
                    )
                ]
            )


@attrs.frozen
class QueueConfig:
    """``[queue]``. ``backend`` picks one variant; only that variant's table may be given."""

    backend: QueueBackend = QueueBackend.EMBEDDED
    embedded: EmbeddedQueueConfig | None = None
    redis: RedisQueueConfig | None = None
    #: A leased message not acked within this time goes back to the queue (crashed consumer).
    visibility_timeout: float = duration_field(60.0, validator=positive_duration())
    #: Concurrent queue consumers (each leases, routes and submits).
    consumers: int = attrs.field(default=4, validator=between(1, 1024))
    #: Messages one lease call takes at most.
    lease_batch: int = attrs.field(default=32, validator=between(1, 10_000))
    #: Backpressure: at this many queued messages, new submissions are refused (HTTP 503).
    max_depth: int = attrs.field(default=100_000, validator=at_least(1))

    def __attrs_post_init__(self) -> None:
        problems = []
        if self.backend is QueueBackend.REDIS and self.redis is None:
            problems.append(("redis", 'required when backend = "redis" ([queue.redis] url = ...)'))
        if self.backend is not QueueBackend.REDIS and self.redis is not None:
            problems.append(
                ("redis", f'only used with backend = "redis" (backend is "{self.backend.value}")')
            )
        if self.backend is not QueueBackend.EMBEDDED and self.embedded is not None:
            problems.append(
                (
                    "embedded",
                    f'only used with backend = "embedded" (backend is "{self.backend.value}")',
                )
            )
        if problems:
            raise Problems(problems)


# --- [database] -----------------------------------------------------------------------------


@attrs.frozen
class DatabaseConfig:
    """``[database]``: messages, parts, status events, receipts' id mapping, inbound messages."""

    #: None: ``<state_dir>/smsgw.sqlite3``.
    path: Path | None = None
    #: Rows of finished messages older than this many days are pruned.
    retention_days: int = attrs.field(default=30, validator=between(1, 36_500))
    #: How often the pruning runs.
    prune_interval: float = duration_field(3600.0, validator=positive_duration())
    #: Writes grouped into one transaction at most (group commit) ...
    batch_size: int = attrs.field(default=500, validator=between(1, 100_000))
    #: ... and the longest the writer keeps gathering one batch (a lone write is committed at
    #: once; the interval only caps how long a busy batch keeps growing).
    commit_interval: float = duration_field(0.05, validator=positive_duration())
    #: How long a write waits for the database's lock while another process holds it (a
    #: backup, an operator's sqlite3 shell) before it fails as "database unavailable".
    busy_timeout: float = duration_field(5.0, validator=positive_duration())


# --- [[providers]] --------------------------------------------------------------------------


class BindType(enum.Enum):
    """``transceiver``: one connection both ways; ``transmitter_receiver``: a pair."""

    TRANSCEIVER = "transceiver"
    TRANSMITTER_RECEIVER = "transmitter_receiver"

    @property
    def bind_mode(self) -> BindMode:
        return BindMode(self.value)


@attrs.frozen
class ReconnectConfig:
    """``[providers.reconnect]``: delays between reconnection attempts of one connection."""

    initial: float = duration_field(1.0, validator=positive_duration())
    max: float = duration_field(60.0, validator=positive_duration())
    #: A connection bound this long starts again from ``initial`` after its next failure.
    reset_after: float = duration_field(60.0, validator=non_negative_duration())

    def __attrs_post_init__(self) -> None:
        if self.max < self.initial:
            raise Problems([("max", f"must be >= initial ({self.initial:g}s), got {self.max:g}s")])

    def backoff_policy(self) -> BackoffPolicy:
        return BackoffPolicy(initial=self.initial, maximum=self.max, reset_after=self.reset_after)


@attrs.frozen
class ProviderTls:
    """``[providers.tls]``: TLS towards the SMSC (off unless ``enabled``)."""

    enabled: bool = False
    #: CA certificates to trust; None: the system's.
    ca_file: Path | None = None
    #: false accepts any certificate: test links only.
    verify: bool = True
    #: Name checked against the certificate; None: the provider's ``host``.
    server_hostname: str | None = None
    #: Client certificate and key, for SMSCs that authenticate the ESME by certificate.
    cert_file: Path | None = None
    key_file: Path | None = None

    def __attrs_post_init__(self) -> None:
        if self.key_file is not None and self.cert_file is None:
            raise Problems([("key_file", "given without cert_file")])

    def client_tls(self) -> TlsConfig | None:
        """The SMPP client's TLS settings, None when TLS is off."""
        if not self.enabled:
            return None
        return TlsConfig(
            ca_file=_str_or_none(self.ca_file),
            verify=self.verify,
            server_hostname=self.server_hostname,
            cert_file=_str_or_none(self.cert_file),
            key_file=_str_or_none(self.key_file),
        )


def _str_or_none(path: Path | None) -> str | None:
    return None if path is None else str(path)


class RateUnit(enum.Enum):
    """What a rate counts: ``segments`` (submit_sm PDUs, what SMSCs count) or ``messages``."""

    SEGMENTS = "segments"
    MESSAGES = "messages"


@attrs.frozen
class ProviderRate:
    """``[providers.rate]``: the provider's contracted throughput (the AIMD ceiling)."""

    per_second: float = attrs.field(default=100.0, validator=greater_than(0))
    #: Most sent at once after an idle period; None: one second's worth (at least 1).
    burst: int | None = attrs.field(default=None, validator=_optional(at_least(1)))
    unit: RateUnit = RateUnit.SEGMENTS

    @property
    def effective_burst(self) -> int:
        return self.burst if self.burst is not None else max(1, math.ceil(self.per_second))


_E = TypeVar("_E", Ton, Npi)


def _ton_npi(cl: type[_E], value: object, *, auto: bool) -> _E | None:
    """A lower-case name (``"international"``) or the number; ``"auto"`` (None) if allowed."""
    if auto and value == "auto":
        return None
    if isinstance(value, str) and value == value.lower() and value.upper() in cl.__members__:
        return cl[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value in {m.value for m in cl}:
        return cl(value)
    names = ", ".join(f'"{m.name.lower()}"' for m in cl)
    numbers = ", ".join(str(m.value) for m in cl)
    choices = f'"auto", one of {names} or {numbers}' if auto else f"one of {names} or {numbers}"
    raise Invalid(f"expected {choices}, got {describe(value)}")


def _ton_or_auto(value: object) -> Ton | None:
    return _ton_npi(Ton, value, auto=True)


def _npi_or_auto(value: object) -> Npi | None:
    return _ton_npi(Npi, value, auto=True)


def _ton(value: object) -> Ton:
    ton = _ton_npi(Ton, value, auto=False)
    assert ton is not None
    return ton


def _npi(value: object) -> Npi:
    npi = _ton_npi(Npi, value, auto=False)
    assert npi is not None
    return npi


@attrs.frozen
class AddressingConfig:
    """``[providers.addressing]``: TON/NPI of the addresses sent to this provider.

    ``source_ton`` / ``source_npi`` ``"auto"`` (the default) choose from the source address:
    one with a letter is alphanumeric (5/0); ``+`` followed by digits, or more than
    ``short_code_max_digits`` digits, is international (1/1); fewer digits are a short code,
    network specific (3/0). Any other value is used for every message.
    """

    source_ton: Ton | None = attrs.field(default=None, metadata={STRUCTURE: _ton_or_auto})
    source_npi: Npi | None = attrs.field(default=None, metadata={STRUCTURE: _npi_or_auto})
    dest_ton: Ton = attrs.field(default=Ton.INTERNATIONAL, metadata={STRUCTURE: _ton})
    dest_npi: Npi = attrs.field(default=Npi.ISDN, metadata={STRUCTURE: _npi})
    short_code_max_digits: int = attrs.field(default=6, validator=between(1, 15))

    def source_ton_npi(self, source: str) -> tuple[Ton, Npi]:
        """The TON and NPI to send ``source`` with (the rule in the class docstring)."""
        digits = source[1:] if source.startswith("+") else source
        if not digits.isascii() or not digits.isdigit():
            auto = (Ton.ALPHANUMERIC, Npi.UNKNOWN)
        elif source.startswith("+") or len(digits) > self.short_code_max_digits:
            auto = (Ton.INTERNATIONAL, Npi.ISDN)
        else:
            auto = (Ton.NETWORK_SPECIFIC, Npi.UNKNOWN)
        return (
            auto[0] if self.source_ton is None else self.source_ton,
            auto[1] if self.source_npi is None else self.source_npi,
        )


class ReceiptMode(enum.Enum):
    """Which parts of a message ask the SMSC for a delivery receipt."""

    ALWAYS = "always"  # every part (the message's status is aggregated from all of them)
    FINAL_PART = "final_part"  # the last part only (some providers bill receipts)
    NEVER = "never"  # none: the message ends as "submitted"


_HEX_STATUS = re.compile(r"0[xX][0-9A-Fa-f]{1,8}")


def _status_key(key: str) -> int:
    if key.upper() in CommandStatus.__members__:
        status = int(CommandStatus[key.upper()])
    elif _HEX_STATUS.fullmatch(key):
        status = int(key, 16)
    elif key.isascii() and key.isdigit():
        status = int(key)
    else:
        raise Invalid(
            "expected a command_status name (ESME_RSYSERR), hex (0x00000400) or decimal number"
        )
    if status == CommandStatus.ESME_ROK:
        raise Invalid("ESME_ROK is success; only error statuses can be mapped")
    if status > 0xFFFFFFFF:
        raise Invalid("expected a 32-bit command_status")
    return status


_OUTCOMES = ", ".join(f'"{o.value}"' for o in Outcome)


def _status_map(value: object) -> Mapping[int, Outcome]:
    """``{ ESME_RSYSERR = "fail", "0x00000401" = "failover" }`` -> ``{status: Outcome}``."""
    if not isinstance(value, Mapping):
        raise Invalid(f"expected a table of command_status = outcome, got {describe(value)}")
    result: dict[int, Outcome] = {}
    problems: list[tuple[str, str]] = []
    for key, outcome in value.items():
        here = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'
        try:
            status = _status_key(key)
        except Invalid as exc:
            problems.append((here, str(exc)))
            continue
        if status in result:
            problems.append((here, "the same status is mapped twice"))
        try:
            result[status] = Outcome(outcome)
        except ValueError:
            problems.append((here, f"expected one of {_OUTCOMES}, got {describe(outcome)}"))
    if problems:
        raise Problems(problems)
    return MappingProxyType(result)


@attrs.frozen
class ProviderConfig:
    """One ``[[providers]]`` table: an SMSC account and how to talk to it."""

    name: str = attrs.field(validator=_name)
    host: str = attrs.field(validator=non_empty)
    system_id: str = attrs.field(
        validator=[non_empty, latin1_max_length(15, why="SMPP 3.4 system_id")]
    )
    password: str = attrs.field(
        validator=latin1_max_length(8, why="SMPP 3.4 password"),
        metadata={SECRET: True},
        repr=False,
    )
    port: int = attrs.field(default=2775, validator=between(1, 65535))
    system_type: str = attrs.field(
        default="", validator=latin1_max_length(12, why="SMPP 3.4 system_type")
    )
    bind: BindType = BindType.TRANSCEIVER
    #: Connections (or transmitter/receiver pairs) kept bound at once.
    connections: int = attrs.field(default=1, validator=between(1, 64))
    #: Requests outstanding at once on one connection.
    window: int = attrs.field(default=10, validator=between(1, 10_000))
    connect_timeout: float = duration_field(10.0, validator=positive_duration())
    #: From a submit to its submit_sm_resp.
    request_timeout: float = duration_field(30.0, validator=positive_duration())
    #: Answers to bind, enquire_link and unbind; an unanswered enquire_link means a dead link.
    response_timeout: float = duration_field(10.0, validator=positive_duration())
    #: An enquire_link goes out when nothing was received for this long.
    enquire_link_interval: float = duration_field(30.0, validator=positive_duration())
    reconnect: ReconnectConfig = ReconnectConfig()
    tls: ProviderTls = ProviderTls()
    rate: ProviderRate = ProviderRate()
    split_mode: SplitMode = SplitMode.UDH8
    addressing: AddressingConfig = AddressingConfig()
    message_id_format: MessageIdFormat = MessageIdFormat.AUTO
    #: Overrides of the default error classification for this provider's statuses.
    status_map: Mapping[int, Outcome] = attrs.field(
        factory=lambda: MappingProxyType({}), metadata={STRUCTURE: _status_map}
    )
    receipts: ReceiptMode = ReceiptMode.ALWAYS
    #: A receipt that arrives before its submit_sm_resp is kept this long for a match.
    early_receipt_park: float = duration_field(30.0, validator=non_negative_duration())

    def client_config(self) -> ClientConfig:
        """The settings of one SMPP client (one connection or pair) of this provider."""
        return ClientConfig(
            system_id=self.system_id,
            password=self.password,
            host=self.host,
            port=self.port,
            system_type=self.system_type,
            bind_mode=self.bind.bind_mode,
            tls=self.tls.client_tls(),
            window=self.window,
            connect_timeout=self.connect_timeout,
            request_timeout=self.request_timeout,
            response_timeout=self.response_timeout,
            enquire_link_interval=self.enquire_link_interval,
            backoff=self.reconnect.backoff_policy(),
        )


# --- [[routes]] -----------------------------------------------------------------------------


@attrs.frozen
class RouteTarget:
    """A provider of a route; ``weight`` (load share) makes it part of a weighted tier.

    Written ``"a"`` (no weight: failover only) or ``{ name = "a", weight = 3 }``.
    """

    name: str = attrs.field(validator=non_empty)
    weight: int | None = attrs.field(default=None, validator=_optional(between(1, 10_000)))


_PREFIX = re.compile(r"\+?[0-9]+")


def _prefixes(_inst: object, _attr: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    bad = [
        (f"[{i}]", f'expected digits with an optional leading "+", got {describe(p)}')
        for i, p in enumerate(value)
        if not _PREFIX.fullmatch(p)
    ]
    if bad:
        raise Problems(bad)


def _compile_regex(value: object) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise Invalid(f"expected a regular expression (a string), got {describe(value)}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise Invalid(f"invalid regular expression: {exc}") from None


@attrs.frozen
class RouteConfig:
    """One ``[[routes]]`` rule. Every criterion given must match (AND); one left out matches
    anything, so a route with none is a catch-all. The first matching route wins.

    - ``destination_prefixes``: the destination starts with one of them (a leading ``+`` is
      ignored on both sides); ``destination_regex``: the whole destination matches it. Give
      one or the other.
    - ``sources``: the source address is one of them (exactly).
    - ``tags``: the message carries all of them.
    - ``clients``: the message was submitted by one of these API clients.
    - ``providers``: the candidates in failover order; see :mod:`smsgw.routing` for weights.
    """

    providers: tuple[RouteTarget, ...] = attrs.field(validator=non_empty)
    name: str | None = attrs.field(default=None, validator=_optional(_name))
    destination_prefixes: tuple[str, ...] = attrs.field(default=(), validator=_prefixes)
    destination_regex: re.Pattern[str] | None = attrs.field(
        default=None, metadata={STRUCTURE: _compile_regex}
    )
    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        if self.destination_prefixes and self.destination_regex is not None:
            problems.append(
                ("destination_regex", "give destination_prefixes or destination_regex, not both")
            )
        seen: set[str] = set()
        for i, target in enumerate(self.providers):
            if target.name in seen:
                problems.append((f"providers[{i}]", f'provider "{target.name}" is listed twice'))
            seen.add(target.name)
        if problems:
            raise Problems(problems)

    @property
    def is_catch_all(self) -> bool:
        """No criterion: every message matches."""
        return not (
            self.destination_prefixes
            or self.destination_regex is not None
            or self.sources
            or self.tags
            or self.clients
        )

    def label(self, index: int) -> str:
        """How logs and messages name this route: its ``name``, else ``routes[index]``."""
        return self.name if self.name is not None else f"routes[{index}]"


# --- [rate_limit], [api], [metrics] ---------------------------------------------------------


@attrs.frozen
class RateLimitConfig:
    """``[rate_limit]``: the global limit (all providers together) and the adaptive control.

    Adaptive (AIMD): on ESME_RTHROTTLED / ESME_RMSGQFUL from a provider, its rate is cut at most
    once per ``pause`` window, in proportion to the share of throttled answers since the last cut:
    multiplied by ``1 - (1 - decrease_factor) * share`` (all throttled: by ``decrease_factor``),
    not below ``floor``, with sending paused for ``pause * share``; then it grows back by
    ``increase_per_second`` every second, up to the provider's configured rate.
    ``increase_per_second`` and ``floor`` are fractions of each provider's configured rate, so
    one setting suits providers of any size.
    """

    #: Messages (or segments, per provider unit) per second over all providers; None: no limit.
    per_second: float | None = attrs.field(default=None, validator=_optional(greater_than(0)))
    #: None: one second's worth (at least 1).
    burst: int | None = attrs.field(default=None, validator=_optional(at_least(1)))
    adaptive: bool = True
    decrease_factor: float = attrs.field(default=0.5, validator=[greater_than(0), at_most(1)])
    pause: float = duration_field(1.0, validator=non_negative_duration())
    increase_per_second: float = attrs.field(default=0.05, validator=[greater_than(0), at_most(1)])
    floor: float = attrs.field(default=0.1, validator=[greater_than(0), at_most(1)])

    @property
    def effective_burst(self) -> int | None:
        if self.per_second is None:
            return None
        return self.burst if self.burst is not None else max(1, math.ceil(self.per_second))


class ApiScope(enum.Enum):
    """What an API key may do: ``send`` messages, ``read`` messages, inbound and providers,
    ``admin`` the dead-letter queue (replay). Scopes do not imply each other."""

    SEND = "send"
    READ = "read"
    ADMIN = "admin"


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _sha256_hex(_inst: object, _attr: attrs.Attribute[Any], value: str) -> None:
    # The message never quotes the value: a key pasted here by mistake must not reach a log.
    if not _SHA256_HEX.fullmatch(value):
        raise Invalid("expected the SHA-256 of the key as 64 lower-case hex digits")


def _http_url(_inst: object, _attr: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not re.fullmatch(r"https?://[^\s/]+\S*", value):
        raise Invalid(f"expected an http:// or https:// URL, got {describe(value)}")


@attrs.frozen
class ApiKeyConfig:
    """``[[api.keys]]``: one client of the HTTP API.

    Only the SHA-256 of the key is stored (``printf %s "$KEY" | sha256sum``); the key itself is
    what the client sends in ``Authorization: Bearer`` or ``X-API-Key``.
    """

    #: The client's name: messages record it, routes can match it (``clients``).
    name: str = attrs.field(validator=_name)
    sha256: str = attrs.field(validator=_sha256_hex, repr=False)
    scopes: tuple[ApiScope, ...] = attrs.field(validator=non_empty)
    #: Requests per second this key may make; None: no limit.
    rate_per_second: float | None = attrs.field(default=None, validator=_optional(greater_than(0)))
    #: Requests allowed at once after an idle period; None: one second's worth (at least 1).
    burst: int | None = attrs.field(default=None, validator=_optional(at_least(1)))
    #: Status webhooks of this client's messages go here unless a message names its own.
    callback_url: str | None = attrs.field(default=None, validator=_http_url)

    @property
    def effective_burst(self) -> int | None:
        if self.rate_per_second is None:
            return None
        return self.burst if self.burst is not None else max(1, math.ceil(self.rate_per_second))


@attrs.frozen
class ApiConfig:
    """``[api]``: the HTTP API's listener, its clients and its limits. Backpressure (HTTP 503)
    follows ``[queue] max_depth``."""

    listen: str = attrs.field(default="127.0.0.1", validator=non_empty)
    #: 0 picks a free port (tests, the demo).
    port: int = attrs.field(default=8080, validator=between(0, 65535))
    keys: tuple[ApiKeyConfig, ...] = ()
    #: Messages one ``POST /messages/batch`` may hold.
    max_batch: int = attrs.field(default=1000, validator=between(1, 100_000))
    #: Largest request body accepted, in bytes (larger: HTTP 413).
    max_body_size: int = attrs.field(default=2 * 1024 * 1024, validator=at_least(1024))
    #: Client connections served at once; beyond, new ones wait to be accepted.
    max_connections: int = attrs.field(default=1024, validator=between(1, 100_000))
    #: A text needing more SMS parts than this is refused (422).
    max_parts: int = attrs.field(default=10, validator=between(1, 255))
    #: How long an ``Idempotency-Key`` or a ``client_ref`` is remembered.
    idempotency_window: float = duration_field(86400.0, validator=positive_duration())

    def __attrs_post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        names: dict[str, int] = {}
        hashes: dict[str, int] = {}
        for i, key in enumerate(self.keys):
            if key.name in names:
                problems.append(
                    (
                        f"keys[{i}].name",
                        f'"{key.name}" is already the name of keys[{names[key.name]}]',
                    )
                )
            names.setdefault(key.name, i)
            if key.sha256 in hashes:
                problems.append(
                    (f"keys[{i}].sha256", f"the same key as keys[{hashes[key.sha256]}]")
                )
            hashes.setdefault(key.sha256, i)
        if problems:
            raise Problems(problems)


def _url_path(_inst: object, _attr: attrs.Attribute[Any], value: str) -> None:
    if not value.startswith("/"):
        raise Invalid(f'expected a path starting with "/", got {describe(value)}')


@attrs.frozen
class MetricsConfig:
    """``[metrics]``: Prometheus exposition, on the API listener unless ``port`` is set."""

    enabled: bool = True
    #: None: served by the API listener at ``path``.
    port: int | None = attrs.field(default=None, validator=_optional(between(0, 65535)))
    #: Address of the separate listener (used only with ``port``).
    listen: str = attrs.field(default="127.0.0.1", validator=non_empty)
    path: str = attrs.field(default="/metrics", validator=_url_path)

    @property
    def on_api_listener(self) -> bool:
        return self.port is None


# --- [webhooks] -----------------------------------------------------------------------------


def _http_url_prefix(_inst: object, _attr: attrs.Attribute[Any], value: str) -> None:
    if not value.startswith(("http://", "https://")):
        raise Invalid(f'expected an "http://" or "https://" URL, got {describe(value)}')


@attrs.frozen
class WebhookSecret:
    """``[[webhooks.secrets]]``: the signing secret for targets whose URL starts with ``prefix``
    (a client's own secret for its callback URLs); the longest matching prefix wins."""

    prefix: str = attrs.field(validator=_http_url_prefix)
    secret: str = attrs.field(validator=non_empty, metadata={SECRET: True}, repr=False)


#: Most events one batched webhook request may carry.
MAX_EVENTS_PER_REQUEST = 1000


@attrs.frozen
class WebhookBatching:
    """``[[webhooks.batching]]``: targets whose URL starts with ``prefix`` get their due
    notifications up to ``max_events`` per request, as ``{"events": [...]}``
    (``docs/webhooks.md``, "Batched requests"); the longest matching prefix wins."""

    prefix: str = attrs.field(validator=_http_url_prefix)
    max_events: int = attrs.field(validator=between(1, MAX_EVENTS_PER_REQUEST))


_Prefixed = TypeVar("_Prefixed", WebhookSecret, WebhookBatching)


def _longest_prefix(entries: Sequence[_Prefixed], target: str) -> _Prefixed | None:
    """The entry whose ``prefix`` is the longest that ``target`` starts with, if any."""
    best: _Prefixed | None = None
    for entry in entries:
        if target.startswith(entry.prefix) and (
            best is None or len(entry.prefix) > len(best.prefix)
        ):
            best = entry
    return best


#: An IP network as the standard library parses it (a bare address: a /32 or /128).
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: ``[webhooks] blocked_networks`` by default: link-local, where cloud metadata services live
#: (169.254.169.254 and the like); never a legitimate webhook receiver.
DEFAULT_BLOCKED_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
)


def _ip_networks(value: object) -> tuple[IPNetwork, ...]:
    """``["10.0.0.0/8", "::1"]`` -> networks, each bad entry reported at its index. Host bits
    are allowed (``10.1.2.3/8`` is ``10.0.0.0/8``, as a firewall reads it): for a block list the
    wider reading is the safe one."""
    if not isinstance(value, list | tuple):
        raise Invalid(f"expected an array of IP networks, got {describe(value)}")
    networks: list[IPNetwork] = []
    problems: list[tuple[str, str]] = []
    for index, entry in enumerate(value):
        try:
            if not isinstance(entry, str):  # ip_network() would take 5 as 0.0.0.5
                raise ValueError(entry)
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            problems.append(
                (f"[{index}]", f"expected an IP network like 10.0.0.0/8, got {describe(entry)}")
            )
    if problems:
        raise Problems(problems)
    return tuple(networks)


@attrs.frozen
class InboundConfig:
    """``[inbound]``: mobile-originated (MO) messages from the SMSCs (``docs/architecture.md``)."""

    #: A multipart MO whose parts do not all arrive within this time is stored as it is (the
    #: parts that came, marked incomplete). Each part is stored and answered as it arrives, so
    #: this may be as long as the SMSC may take between the parts of a message.
    reassembly_timeout: float = duration_field(20.0, validator=positive_duration())
    #: Incomplete multipart MOs held at once at most (memory bound); beyond it, the oldest is
    #: stored incomplete at once.
    max_pending: int = attrs.field(default=4096, validator=between(1, 10_000_000))


@attrs.frozen
class WebhooksConfig:
    """``[webhooks]``: how the outbox's deliverer POSTs notifications (``docs/webhooks.md``).

    An attempt that fails is retried after ``backoff_initial * backoff_multiplier**(n - 1)``
    seconds (at most ``backoff_max``), shortened by up to ``jitter`` of itself at random, until
    ``retry_period`` after the notification was created or ``max_attempts`` attempts, whichever
    comes first; then the notification is given up (state ``dead``, kept for inspection).
    """

    #: Signs every request (``X-Smsgw-Signature``) unless a ``secrets`` prefix matches. None:
    #: requests are sent unsigned (the header is left out), which the docs advise against.
    secret: str | None = attrs.field(
        default=None, validator=_optional(non_empty), metadata={SECRET: True}, repr=False
    )
    secrets: tuple[WebhookSecret, ...] = attrs.field(default=(), repr=False)
    #: Targets that take several events per request (none: one event per request).
    batching: tuple[WebhookBatching, ...] = ()
    #: Where inbound (mobile-originated) messages are POSTed; None: they are stored and listed
    #: by the API (``GET /api/v1/inbound``) but not pushed.
    inbound_url: str | None = attrs.field(default=None, validator=_http_url)
    #: The whole of one request: connect, send, and the status line of the answer.
    timeout: float = duration_field(10.0, validator=positive_duration())
    retry_period: float = duration_field(86_400.0, validator=positive_duration())
    max_attempts: int = attrs.field(default=100, validator=between(1, 1_000_000))
    backoff_initial: float = duration_field(5.0, validator=positive_duration())
    backoff_max: float = duration_field(3600.0, validator=positive_duration())
    backoff_multiplier: float = attrs.field(default=2.0, validator=between(1, 100))
    jitter: float = attrs.field(default=0.2, validator=between(0, 1))
    #: Requests in flight at once (over all targets).
    concurrency: int = attrs.field(default=16, validator=between(1, 1024))
    #: Requests in flight at once to one target URL whose last attempt failed: a target that
    #: hangs holds no more workers than this, and the others' webhooks go on.
    per_target_concurrency: int = attrs.field(default=4, validator=between(1, 1024))
    #: Due notifications read from the outbox per query.
    batch_size: int = attrs.field(default=100, validator=between(1, 10_000))
    #: How often the outbox is looked at when nothing woke the deliverer.
    poll_interval: float = duration_field(1.0, validator=positive_duration())
    #: Status webhooks only for changes to these statuses (e.g. the final ones); None: every
    #: change of a message's status is notified.
    statuses: tuple[MessageStatus, ...] | None = attrs.field(
        default=None, validator=_optional(non_empty)
    )
    #: No webhook is sent to an address in these networks (``docs/webhooks.md``, "Blocked
    #: networks"): checked on every new connection, so reloadable. ``()``: nothing blocked.
    blocked_networks: tuple[IPNetwork, ...] = attrs.field(
        default=DEFAULT_BLOCKED_NETWORKS,
        validator=attrs.validators.deep_iterable(
            attrs.validators.instance_of((ipaddress.IPv4Network, ipaddress.IPv6Network)),
            attrs.validators.instance_of(tuple),
        ),
        metadata={STRUCTURE: _ip_networks},
    )

    def __attrs_post_init__(self) -> None:
        if self.backoff_max < self.backoff_initial:
            raise Problems(
                [
                    (
                        "backoff_max",
                        f"must be at least backoff_initial ({self.backoff_initial}s), "
                        f"got {self.backoff_max}s",
                    )
                ]
            )

    def secret_for(self, target: str) -> str | None:
        """The secret that signs requests to ``target``: the longest matching prefix's, else
        the global one."""
        best = _longest_prefix(self.secrets, target)
        return best.secret if best is not None else self.secret

    def batching_for(self, target: str) -> WebhookBatching | None:
        """How requests to ``target`` are batched (the longest matching prefix's entry), or
        None: one event per request, in the single-event form."""
        return _longest_prefix(self.batching, target)


# --- the whole file -------------------------------------------------------------------------


def _quoted_names(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


#: What the cross-references need of one route: its name, its providers' names, catch-all.
_RouteRefs = tuple[str | None, Sequence[str | None], bool]


def _cross_problems(
    providers: Sequence[str | None], routes: Sequence[_RouteRefs]
) -> list[tuple[str, str]]:
    """Problems between sections: provider names unique, routes naming known providers, route
    names unique, no route after a catch-all. ``None`` stands for a name that is itself invalid
    (reported on its own), so this also runs on a document with other problems."""
    problems: list[tuple[str, str]] = []
    names: list[str] = []
    for i, name in enumerate(providers):
        if name is None:
            continue
        if name in names:
            first = providers.index(name)
            problems.append(
                (f"providers[{i}].name", f'"{name}" is already the name of providers[{first}]')
            )
        else:
            names.append(name)
    route_names: dict[str, int] = {}
    catch_all: int | None = None
    for r, (route_name, targets, is_catch_all) in enumerate(routes):
        here = f"routes[{r}]"
        label = f' (route "{route_name}")' if route_name is not None else ""
        for t, target in enumerate(targets):
            if target is not None and target not in names:
                problems.append(
                    (
                        f"{here}.providers[{t}]",
                        f'unknown provider "{target}"{label}; '
                        f"the providers are {_quoted_names(names)}",
                    )
                )
        if route_name is not None:
            if route_name in route_names:
                problems.append(
                    (
                        f"{here}.name",
                        f'"{route_name}" is already the name of routes[{route_names[route_name]}]',
                    )
                )
            route_names.setdefault(route_name, r)
        if catch_all is not None:
            problems.append(
                (
                    here,
                    f"can never match: routes[{catch_all}] before it matches every message "
                    "(it has no criteria)",
                )
            )
        elif is_catch_all:
            catch_all = r
    return problems


_CRITERIA = ("destination_prefixes", "destination_regex", "sources", "tags", "clients")


def _raw_cross_problems(document: Mapping[str, Any]) -> list[str]:
    """:func:`_cross_problems` on the raw document, for when structuring failed elsewhere (the
    class checks then never ran). Values of the wrong shape count as absent."""

    def table_list(key: str) -> list[Any]:
        value = document.get(key)
        return value if isinstance(value, list) else []

    def name_of(value: Any) -> str | None:
        if isinstance(value, Mapping):
            value = value.get("name")
        return value if isinstance(value, str) else None

    providers = [name_of(p) for p in table_list("providers")]
    routes: list[_RouteRefs] = []
    for route in table_list("routes"):
        if not isinstance(route, Mapping):
            continue
        targets = route.get("providers")
        routes.append(
            (
                name_of(route),
                [name_of(t) for t in targets] if isinstance(targets, list) else [],
                not any(key in route for key in _CRITERIA),
            )
        )
    return [f"{path}: {text}" for path, text in _cross_problems(providers, routes)]


@attrs.frozen
class GatewayConfig:
    """A whole configuration file. Only ``providers`` is required."""

    providers: tuple[ProviderConfig, ...] = attrs.field(validator=non_empty)
    gateway: GatewaySection = GatewaySection()
    queue: QueueConfig = QueueConfig()
    database: DatabaseConfig = DatabaseConfig()
    routes: tuple[RouteConfig, ...] = ()
    rate_limit: RateLimitConfig = RateLimitConfig()
    retry: RetryPolicy = RetryPolicy()
    api: ApiConfig = ApiConfig()
    metrics: MetricsConfig = MetricsConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    inbound: InboundConfig = InboundConfig()

    def __attrs_post_init__(self) -> None:
        problems = _cross_problems(
            [p.name for p in self.providers],
            [(r.name, [t.name for t in r.providers], r.is_catch_all) for r in self.routes],
        )
        if problems:
            raise Problems(problems)

    def provider(self, name: str) -> ProviderConfig:
        """The provider called ``name`` (``KeyError`` if there is none)."""
        for provider in self.providers:
            if provider.name == name:
                return provider
        raise KeyError(name)

    @property
    def queue_path(self) -> Path:
        """The embedded queue's SQLite file."""
        embedded = self.queue.embedded
        if embedded is not None and embedded.path is not None:
            return embedded.path
        return self.gateway.state_dir / "queue.sqlite3"

    @property
    def database_path(self) -> Path:
        """The database's SQLite file."""
        if self.database.path is not None:
            return self.database.path
        return self.gateway.state_dir / "smsgw.sqlite3"


# --- loading --------------------------------------------------------------------------------


def _route_target_hook(converter: cattrs.Converter) -> Any:
    table = make_class_hook(converter, RouteTarget)

    def structure(value: object, _type: object) -> RouteTarget:
        if isinstance(value, str):
            if not value:
                raise Invalid('expected a provider name, got ""')
            return RouteTarget(value)
        if isinstance(value, Mapping):
            return table(value, RouteTarget)  # type: ignore[no-any-return]
        raise Invalid(
            f'expected a provider name or {{ name = "...", weight = N }}, got {describe(value)}'
        )

    return structure


def _make_converter() -> cattrs.Converter:
    converter = make_converter()
    converter.register_structure_hook(RouteTarget, _route_target_hook(converter))
    return converter


_CONVERTER = _make_converter()


def parse_config(text: str, *, source: str, environ: Mapping[str, str]) -> GatewayConfig:
    """The configuration in the TOML ``text``; ``source`` names it in messages, ``environ``
    gives the ``${NAME}`` values. Pure: no file, no process environment.

    Raises :class:`ConfigError` listing every problem found.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    document, env_problems = substitute_env(document, environ)
    errors = [f"{path}: {problem}" for path, problem in env_problems]
    try:
        config: GatewayConfig = _CONVERTER.structure(document, GatewayConfig)
    except (ValueError, TypeError, cattrs.BaseValidationError) as exc:
        # A value whose ${NAME} failed is still its raw text: other complaints about it (too
        # long, not a URL) would only be noise next to the real problem.
        unresolved = tuple(f"{path}: " for path, _ in env_problems)
        errors += [m for m in error_messages(exc) if not m.startswith(unresolved)]
        errors += [m for m in _raw_cross_problems(document) if m not in errors]
    if errors:
        raise ConfigError(source, errors)
    return config


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """The configuration in the file ``path``, with ``${NAME}`` from the process environment.

    Raises :class:`ConfigError` when the file cannot be read or holds any problem.
    """
    try:
        with open(path, "rb") as file:
            text = file.read().decode("utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text: {exc}"]) from None
    return parse_config(text, source=str(path), environ=os.environ)
