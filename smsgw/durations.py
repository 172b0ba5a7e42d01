"""Durations as people write them in a config file: ``"30s"``, ``"5m"``, ``"250ms"``, ``"1h30m"``.

A duration is a non-negative number of seconds (a ``float``), written either as a plain number of
seconds (``30``, ``0.25``) or as a string of one or more ``<number><unit>`` terms, largest unit
first, each unit at most once: ``ms``, ``s``, ``m``, ``h``, ``d``. ``"1m30s"`` is 90 seconds.

Why a string form at all: ``timeout = 300`` leaves the reader guessing seconds or milliseconds;
``timeout = "5m"`` does not. Why so strict (no spaces, no ``"5 mins"``, no repeated units): a
config typo must be an error with a message, never a silently different number.
"""

from __future__ import annotations

import math
import re

__all__ = ["DurationError", "format_duration", "parse_duration"]

_UNITS: dict[str, float] = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
#: Units in the order they must appear (largest first).
_ORDER = ("d", "h", "m", "s", "ms")
_TERM = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")


class DurationError(ValueError):
    """A value that is not a duration; the message says what was expected."""


_EXPECTED = 'a duration like "30s", "5m", "250ms", "1h30m" or a number of seconds'


def parse_duration(value: object) -> float:
    """Seconds in ``value``: an ``int``/``float`` of seconds, or a string such as ``"1h30m"``.

    >>> parse_duration("250ms")
    0.25
    >>> parse_duration("1h30m")
    5400.0
    >>> parse_duration(2)
    2.0

    Raises :class:`DurationError` for anything else: booleans, negative or non-finite numbers,
    unknown units, terms out of order or repeated, empty strings.
    """
    if isinstance(value, bool):
        raise DurationError(f"expected {_EXPECTED}, got {_show(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise DurationError(f"expected {_EXPECTED} (finite, >= 0), got {_show(value)}")
        return seconds
    if not isinstance(value, str):
        raise DurationError(f"expected {_EXPECTED}, got {type(value).__name__}")
    return _parse_text(value)


def _parse_text(text: str) -> float:
    position = 0
    seen: list[str] = []
    total = 0.0
    while position < len(text):
        match = _TERM.match(text, position)
        if match is None:
            raise DurationError(f"expected {_EXPECTED}, got {_show(text)}")
        number, unit = match.groups()
        if seen and _ORDER.index(unit) <= _ORDER.index(seen[-1]):
            raise DurationError(
                f"expected {_EXPECTED} (units largest first, each once), got {_show(text)}"
            )
        seen.append(unit)
        total += float(number) * _UNITS[unit]
        position = match.end()
    if not seen:
        raise DurationError(f"expected {_EXPECTED}, got {_show(text)}")
    return total


def _show(value: object) -> str:
    """A value as written in TOML: strings in double quotes."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def format_duration(seconds: float) -> str:
    """A short readable form of ``seconds`` for messages: ``"250ms"``, ``"30s"``, ``"1.5s"``.

    For error messages and logs only: it is not an inverse of :func:`parse_duration`.
    """
    if seconds != 0 and abs(seconds) < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"
