"""Parsing of the simulator's option values, shared by the Python API, TOML files, the CLI and
the control API: durations (``"250ms"``), fractions, SMPP statuses (``"ESME_RTHROTTLED"``) and
receipt outcome weights (``"DELIVRD=90,UNDELIV=10"``).

Every converter accepts the typed value too, so ``Faults(latency=0.25)`` and
``Faults(latency="250ms")`` mean the same; bad input raises :class:`ConfigError` naming what
was wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from smpp_codec.constants import CommandStatus, MessageState


class ConfigError(ValueError):
    """A simulator option has a value it cannot take."""


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h)?", re.IGNORECASE)
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(value: float | int | str) -> float:
    """A duration in seconds: a number, or a string such as ``"1.5"``, ``"250ms"``, ``"2m"``."""
    if isinstance(value, bool):
        raise ConfigError(f"a duration must be a number of seconds or '250ms'/'2s', not {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ConfigError(
                f"{value!r} is not a duration (write seconds, or a number with ms/s/m/h: '250ms')"
            )
        number = float(match.group(1)) * _UNIT[(match.group(2) or "s").lower()]
    else:
        raise ConfigError(f"a duration must be a number or a string, not {value!r}")
    if not number >= 0 or number == float("inf"):
        raise ConfigError(f"a duration must be finite and >= 0, got {value!r}")
    return number


def optional_seconds(value: float | int | str | None) -> float | None:
    """Like :func:`seconds`; ``None``, ``"off"`` and ``"none"`` mean "not set"."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("off", "none", "")):
        return None
    return seconds(value)


def fraction(value: float | int | str) -> float:
    """A probability in 0..1 (``0.01``, or ``"1%"``)."""
    if isinstance(value, bool):
        raise ConfigError(f"a fraction must be a number in 0..1, not {value!r}")
    try:
        if isinstance(value, str) and value.strip().endswith("%"):
            number = float(value.strip()[:-1]) / 100
        else:
            number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{value!r} is not a fraction (a number in 0..1, or a percentage)"
        ) from None
    if not 0.0 <= number <= 1.0:
        raise ConfigError(f"a fraction must be in 0..1, got {value!r}")
    return number


def optional_int(value: int | str | None) -> int | None:
    """A positive count, or None (``None``/``"off"``/``"none"``/``0`` mean "not set")."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("off", "none", "")):
        return None
    number = count(value)
    return number or None


def count(value: int | str) -> int:
    """A whole number >= 0."""
    if isinstance(value, bool):
        raise ConfigError(f"expected a whole number, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{value!r} is not a whole number") from None
    if number < 0 or (isinstance(value, float) and value != number):
        raise ConfigError(f"expected a whole number >= 0, got {value!r}")
    return number


def positive_count(value: int | str) -> int:
    number = count(value)
    if number < 1:
        raise ConfigError(f"expected a whole number >= 1, got {value!r}")
    return number


def optional_rate(value: float | int | str | None) -> float | None:
    """A rate per second > 0, or None (``None``/``"off"``/``0`` mean no limit)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("off", "none", "")):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{value!r} is not a rate (a number per second)") from None
    if not number >= 0 or number == float("inf"):
        raise ConfigError(f"a rate must be finite and >= 0, got {value!r}")
    return number or None


def status(value: int | str) -> int:
    """An SMPP ``command_status``: an int, ``"0x58"``, ``"88"`` or a name (``ESME_RTHROTTLED``,
    or ``RTHROTTLED``)."""
    if isinstance(value, bool):
        raise ConfigError(f"{value!r} is not an SMPP command_status")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip().upper()
        name = text if text.startswith("ESME_") else f"ESME_{text}"
        if name in CommandStatus.__members__:
            number = int(CommandStatus[name])
        else:
            number = _parse_int(value, text)
    else:
        raise ConfigError(f"{value!r} is not an SMPP command_status")
    if not 0 < number <= 0xFFFFFFFF:
        raise ConfigError(f"an error command_status must be in 1..0xFFFFFFFF, got {value!r}")
    return number


def _parse_int(value: str, text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ConfigError(
            f"{value!r} is not an SMPP command_status (a name such as ESME_RTHROTTLED, or a "
            "number such as 0x58)"
        ) from None


def statuses(value: Iterable[int | str] | int | str) -> tuple[int, ...]:
    """One status or several (a list, or a comma-separated string); at least one."""
    if isinstance(value, str):
        items: list[int | str] = [v for v in value.split(",") if v.strip()]
    elif isinstance(value, int):
        items = [value]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ConfigError(f"{value!r} is not a list of SMPP statuses")
    if not items:
        raise ConfigError("give at least one command_status")
    return tuple(status(v) for v in items)


#: The final receipt outcomes the simulator can report, by their receipt ``stat``.
OUTCOMES: Mapping[str, MessageState] = MappingProxyType(
    {
        "DELIVRD": MessageState.DELIVERED,
        "UNDELIV": MessageState.UNDELIVERABLE,
        "EXPIRED": MessageState.EXPIRED,
        "REJECTD": MessageState.REJECTED,
    }
)


def outcome_weights(value: Mapping[str, Any] | str) -> Mapping[str, float]:
    """Weights of receipt outcomes: ``{"DELIVRD": 90, "UNDELIV": 10}`` or
    ``"DELIVRD=90,UNDELIV=10"``. Only the weights' ratios matter; their sum must be > 0."""
    if isinstance(value, str):
        pairs: list[tuple[str, Any]] = []
        for item in value.split(","):
            if not item.strip():
                continue
            name, sep, weight = item.partition("=")
            if not sep:
                raise ConfigError(f"receipt outcome {item.strip()!r} needs a weight: 'DELIVRD=90'")
            pairs.append((name, weight))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise ConfigError(f"receipt outcomes must be a mapping or 'DELIVRD=90,...', not {value!r}")
    weights: dict[str, float] = {}
    for name, weight in pairs:
        key = str(name).strip().upper()
        if key not in OUTCOMES:
            raise ConfigError(
                f"unknown receipt outcome {name!r}: choose among {', '.join(OUTCOMES)}"
            )
        try:
            number = float(weight)
        except (TypeError, ValueError):
            raise ConfigError(f"weight of {key} must be a number, got {weight!r}") from None
        if not number >= 0 or number == float("inf"):
            raise ConfigError(f"weight of {key} must be finite and >= 0, got {weight!r}")
        weights[key] = number
    if not sum(weights.values()) > 0:
        raise ConfigError("receipt outcome weights must have a positive sum")
    return MappingProxyType(weights)


def err_codes(value: Mapping[str, Any] | str) -> Mapping[str, str]:
    """The receipt ``err`` per outcome: ``{"UNDELIV": "001"}`` or ``"UNDELIV=001"``; outcomes
    left out keep their defaults."""
    if isinstance(value, str):
        pairs = [item.partition("=")[::2] for item in value.split(",") if item.strip()]
    elif isinstance(value, Mapping):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        raise ConfigError(
            f"receipt err codes must be a mapping or 'UNDELIV=001,...', not {value!r}"
        )
    codes = dict(DEFAULT_ERR_CODES)
    for name, code in pairs:
        key = name.strip().upper()
        if key not in OUTCOMES:
            raise ConfigError(
                f"unknown receipt outcome {name!r}: choose among {', '.join(OUTCOMES)}"
            )
        code = code.strip()
        if not code.isascii() or not code.isalnum():
            raise ConfigError(f"receipt err code for {key} must be letters/digits, got {code!r}")
        codes[key] = code
    return MappingProxyType(codes)


DEFAULT_ERR_CODES: Mapping[str, str] = MappingProxyType(
    {"DELIVRD": "000", "UNDELIV": "001", "EXPIRED": "002", "REJECTD": "003"}
)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def boolean(value: bool | int | str) -> bool:
    """``True``/``False``, or ``"yes"``/``"no"``, ``"on"``/``"off"``, ``"1"``/``"0"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{value!r} is not a yes/no value")
