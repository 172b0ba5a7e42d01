"""The simulator's configuration: :class:`SimulatorConfig` and its parts, and TOML loading.

Every field converts its input (see :mod:`.values`), so the same value can come from Python
(``delay=1.5``), TOML (``delay = "1500ms"``) or the command line (``--receipt-delay 1.5s``).
:func:`config_from_mapping` structures a nested mapping (a parsed TOML file) with cattrs,
refusing unknown keys and naming the path of any bad value.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import cattrs

from .faults import Faults
from .values import (
    DEFAULT_ERR_CODES,
    ConfigError,
    boolean,
    count,
    err_codes,
    fraction,
    optional_seconds,
    outcome_weights,
    positive_count,
    seconds,
)


def _not_empty(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ConfigError(f"{type(instance).__name__}.{attribute.name} must not be empty")


def _fits(octets: int) -> Any:
    """Validator: the text fits an SMPP C-Octet string of ``octets`` (NUL included)."""

    def check(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
        if len(value.encode("latin-1", "replace")) > octets - 1:
            raise ConfigError(
                f"{type(instance).__name__}.{attribute.name} {value!r} is longer than the "
                f"{octets - 1} characters SMPP allows"
            )

    return check


@attrs.frozen
class Account:
    """An ESME account: the ``system_id`` and ``password`` a bind must carry."""

    system_id: str = attrs.field(validator=[_not_empty, _fits(16)])
    password: str = attrs.field(default="", validator=_fits(9))

    @classmethod
    def parse(cls, text: str) -> Account:
        """``"system_id:password"`` (the password may be empty, never the system_id)."""
        system_id, sep, password = text.partition(":")
        if not sep:
            raise ConfigError(f"account {text!r} must be written system_id:password")
        return cls(system_id, password)


def _accounts(value: Iterable[Account | str | Mapping[str, str]]) -> tuple[Account, ...]:
    if isinstance(value, str | Mapping):
        raise ConfigError(f"accounts must be a list, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, Account):
            out.append(item)
        elif isinstance(item, str):
            out.append(Account.parse(item))
        elif isinstance(item, Mapping):
            unknown = set(item) - {"system_id", "password"}
            if unknown or "system_id" not in item:
                raise ConfigError(
                    f"an account is {{system_id = ..., password = ...}}, got {dict(item)!r}"
                )
            out.append(Account(str(item["system_id"]), str(item.get("password", ""))))
        else:
            raise ConfigError(f"{item!r} is not an account")
    ids = [a.system_id for a in out]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"accounts name a system_id twice: {ids}")
    return tuple(out)


def _prefixes(value: Iterable[str] | str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(str(p).strip() for p in items if str(p).strip())
    return out


class IdFormat(enum.Enum):
    """How the simulator spells the message ids of its submit_sm_resp."""

    #: Upper-case hex digits of a counter (``"1F3A2B7C"``).
    HEX = "hex"
    #: Decimal digits of a counter (``"524037500"``).
    DECIMAL = "decimal"
    #: A random UUID (``"c87c2273-7edb-4bc7-8d3a-7f57f21b625e"``), as some aggregators send.
    UUID = "uuid"


class ReceiptIdForm(enum.Enum):
    """How a receipt spells the id of the message it reports (text ``id:`` and TLV)."""

    #: Exactly as submit_sm_resp gave it.
    AS_SENT = "as_sent"
    #: The counter in decimal, whatever the response used: a hex response with decimal
    #: receipts is a classic (``MessageIdFormat.HEX_RESP_DECIMAL_RECEIPT``).
    DECIMAL = "decimal"
    #: The counter in upper-case hex.
    HEX = "hex"


def _text_or_tlvs(instance: ReceiptConfig, attribute: attrs.Attribute[bool], value: bool) -> None:
    if not (instance.text or instance.tlvs):
        raise ConfigError("receipts need text, TLVs, or both (receipts.text / receipts.tlvs)")


@attrs.frozen(kw_only=True)
class ReceiptConfig:
    """Delivery receipts for submissions whose ``registered_delivery`` asks for one."""

    enabled: bool = attrs.field(default=True, converter=boolean)
    #: Time from the submission (or its ``schedule_delivery_time``) to the final state.
    delay: float = attrs.field(default=0.0, converter=seconds)
    #: Plus a uniform random 0..jitter seconds.
    jitter: float = attrs.field(default=0.0, converter=seconds)
    #: Weights of the final outcomes (DELIVRD, UNDELIV, EXPIRED, REJECTD).
    outcomes: Mapping[str, float] = attrs.field(
        factory=lambda: MappingProxyType({"DELIVRD": 1.0}), converter=outcome_weights
    )
    #: The receipt's ``err`` for each outcome.
    err: Mapping[str, str] = attrs.field(default=DEFAULT_ERR_CODES, converter=err_codes)
    #: Receipt text (``id:... stat:DELIVRD ...``) in short_message.
    text: bool = attrs.field(default=True, converter=boolean)
    #: ``receipted_message_id`` and ``message_state`` TLVs (and ``network_error_code`` for a
    #: failure).
    tlvs: bool = attrs.field(default=True, converter=boolean, validator=_text_or_tlvs)
    #: Probability that a receipt is sent *before* the submit_sm_resp of its message (at once,
    #: whatever the delay), as real SMSCs sometimes do: it exercises the correlation race.
    before_response: float = attrs.field(default=0.0, converter=fraction)
    id_form: ReceiptIdForm = attrs.field(default=ReceiptIdForm.AS_SENT, converter=ReceiptIdForm)
    #: Most receipts waiting for a receiver; beyond, the oldest are dropped (and counted).
    queue_limit: int = attrs.field(default=100_000, converter=positive_count)
    #: Times a receipt is sent at most. One that fails (an error answer, no answer, its
    #: connection gone) is sent again ``retry_delay`` later, to any receiver of its system_id,
    #: until this many sends; 1 (the default) sends it once: an SMSC that gives up.
    attempts: int = attrs.field(default=1, converter=positive_count)
    retry_delay: float = attrs.field(default=10.0, converter=seconds)


def _id_forms(
    instance: SimulatorConfig, attribute: attrs.Attribute[IdFormat], value: IdFormat
) -> None:
    if value is IdFormat.UUID and instance.receipts.id_form is not ReceiptIdForm.AS_SENT:
        raise ConfigError("UUID message ids can only be written as sent in receipts")


def _max_binds(value: int | str | None) -> int | None:
    """An optional positive count: None (or ``"off"``/``"none"``) means no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("off", "none")):
        return None
    try:
        return positive_count(value)
    except ConfigError:
        raise ConfigError(
            f"max_binds must be a whole number >= 1 (or off: no limit), got {value!r}"
        ) from None


def _optional_path(name: str, value: str | Path | None) -> Path | None:
    """An optional file path called ``name`` (named in its error)."""
    if value is None or isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a file path, got {value!r}")
    return Path(value)


def _tls_cert(value: str | Path | None) -> Path | None:
    return _optional_path("tls_cert", value)


def _tls_key(value: str | Path | None) -> Path | None:
    return _optional_path("tls_key", value)


def _tls_pair(
    instance: SimulatorConfig, attribute: attrs.Attribute[Path | None], value: Path | None
) -> None:
    if (instance.tls_cert is None) != (value is None):
        raise ConfigError("tls_cert and tls_key go together: give both, or neither")


def _port(value: int | str) -> int:
    port = count(value)
    if port > 65535:
        raise ConfigError(f"port must be in 0..65535, got {value!r}")
    return port


@attrs.frozen(kw_only=True)
class SimulatorConfig:
    """Everything about a simulator but its live faults (those start as ``faults``)."""

    host: str = "127.0.0.1"
    #: 0 picks a free port; :meth:`Simulator.serve` reports the real one.
    port: int = attrs.field(default=0, converter=_port)
    #: The SMSC's own system_id, sent in bind responses.
    system_id: str = attrs.field(default="smsgw-sim", validator=_fits(16))
    #: Accounts allowed to bind; empty means any system_id/password is accepted.
    accounts: tuple[Account, ...] = attrs.field(default=(), converter=_accounts)
    id_format: IdFormat = attrs.field(
        default=IdFormat.HEX, converter=IdFormat, validator=_id_forms
    )
    receipts: ReceiptConfig = attrs.field(factory=ReceiptConfig)
    faults: Faults = attrs.field(factory=Faults)
    #: Seed of every random choice (faults, outcomes, jitter, ids); None: a random seed.
    seed: int | None = None
    #: Send enquire_link to each bound ESME this often (None: never); no answer within
    #: ``response_timeout`` closes the connection.
    enquire_link_interval: float | None = attrs.field(default=None, converter=optional_seconds)
    #: How long the ESME has to answer the simulator's deliver_sm / enquire_link.
    response_timeout: float = attrs.field(default=10.0, converter=seconds)
    #: Close connections that have not bound within this time (None: never).
    bind_timeout: float | None = attrs.field(default=30.0, converter=optional_seconds)
    #: Close connections that send nothing for this long (None: never).
    idle_timeout: float | None = attrs.field(default=None, converter=optional_seconds)
    #: Most deliver_sm (receipts and MOs) outstanding per connection.
    deliver_window: int = attrs.field(default=10, converter=positive_count)
    #: Times each part of an MO is sent at most. A part not answered ESME_ROK (an error, no
    #: answer within ``response_timeout``, its connection gone before it was sent or answered)
    #: is sent again ``mo_retry_delay`` later, to a receiver of its system_id, as SMSCs do.
    #: 1: never again.
    mo_attempts: int = attrs.field(default=1, converter=positive_count)
    mo_retry_delay: float = attrs.field(default=10.0, converter=seconds)
    #: Destination prefixes always answered ESME_RINVDSTADR (per destination in submit_multi).
    reject_destinations: tuple[str, ...] = attrs.field(default=(), converter=_prefixes)
    #: Most messages remembered for query_sm/cancel_sm/replace_sm (oldest forgotten first).
    max_messages: int = attrs.field(default=100_000, converter=positive_count)
    #: Most sessions one system_id may have bound at once (None: no limit); binds beyond it
    #: are refused with ESME_RBINDFAIL.
    max_binds: int | None = attrs.field(default=None, converter=_max_binds)
    #: Serve SMPP over TLS with this certificate (PEM, its chain after it) and private key;
    #: None: plain TCP.
    tls_cert: Path | None = attrs.field(default=None, converter=_tls_cert)
    tls_key: Path | None = attrs.field(
        default=None, converter=_tls_key, validator=_tls_pair
    )

    def with_faults(self, faults: Faults) -> SimulatorConfig:
        return attrs.evolve(self, faults=faults)


_converter = cattrs.Converter(forbid_extra_keys=True, prefer_attrib_converters=True)


def _describe(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, ValueError):  # our converters' ConfigError, enum lookups
        return str(exc)
    return cattrs.v.format_exception(exc, type_)


def config_from_mapping(data: Mapping[str, Any]) -> SimulatorConfig:
    """A config from nested plain values (a parsed TOML file: sections ``[receipts]``,
    ``[faults]``, ``[[accounts]]``). Raises :class:`ConfigError` naming each bad key."""
    try:
        return _converter.structure(dict(data), SimulatorConfig)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            problems = "; ".join(
                cattrs.transform_error(exc, path="config", format_exception=_describe)
            )
        else:
            problems = str(exc)
        raise ConfigError(f"invalid simulator config: {problems}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The plain values of a TOML config file (not yet checked: see config_from_mapping)."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None


def load_config(path: str | Path) -> SimulatorConfig:
    """Read a TOML config file (see ``examples/simulator.toml``)."""
    return config_from_mapping(read_config_file(path))


def faults_from_mapping(data: Mapping[str, Any], base: Faults | None = None) -> Faults:
    """``base`` (default: no faults) with the given fields replaced; unknown keys refused."""
    known = {a.name for a in attrs.fields(Faults)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown fault(s): {', '.join(sorted(unknown))}")
    try:
        return attrs.evolve(base or Faults(), **dict(data))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid faults: {exc}") from None
