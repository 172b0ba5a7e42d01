"""Structured logging for the daemon: human text or JSON lines, with context fields.

Modules log with the standard :mod:`logging` API; what makes a record *structured* is its
fields, from two sources merged (the second wins on a clash):

- the task's context, set with :func:`log_context` (a :mod:`contextvars` variable, so a Trio
  task inherits the context of the task that spawned it: a provider's connection tasks all
  carry ``provider=...`` without passing it around);
- the record's own ``extra=``: ``log.info("bound", extra={"provider": "a", "connection": 2})``.

Two renderings, chosen by ``[gateway] log_format`` (or ``smsgw run --log-format``):

``text`` (for people)::

    2025-06-01T12:00:00.123Z INFO  smsgw.daemon: gateway ready providers=2 queue=embedded

``json`` (one object per line, for log shippers)::

    {"time": "2025-06-01T12:00:00.123Z", "level": "info", "logger": "smsgw.daemon",
     "message": "gateway ready", "providers": 2, "queue": "embedded"}

Timestamps are the record's wall-clock creation time, in UTC. :func:`configure` installs one
handler on the root logger (so libraries' records come out the same way) and may be called again
(a SIGHUP reload may change the format or level).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

from .config import LogFormat, LogLevel

__all__ = [
    "JsonFormatter",
    "TextFormatter",
    "configure",
    "current_context",
    "log_context",
    "record_fields",
    "reset",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "smsgw_log_context", default=_EMPTY
)

#: Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)

#: Libraries whose DEBUG output drowns ours (aiosqlite logs every statement).
_CHATTY = ("aiosqlite",)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every record logged in this block, and in tasks spawned from it."""
    token = _CONTEXT.set(MappingProxyType({**_CONTEXT.get(), **fields}))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> Mapping[str, Any]:
    """The fields :func:`log_context` set for the calling task."""
    return _CONTEXT.get()


class _ContextFilter(logging.Filter):
    """Captures the logging task's context on the record (formatting may happen elsewhere)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get()
        if context:
            record.smsgw_context = context
        return True


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of ``record``: its task's context, then its ``extra=`` values."""
    fields: dict[str, Any] = dict(getattr(record, "smsgw_context", _EMPTY))
    for key, value in vars(record).items():
        if key not in _STANDARD and key != "smsgw_context":
            fields[key] = value
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)  # wall-clock: when it was logged
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _text_value(value: Any) -> str:
    """logfmt-style. A string is bare when unambiguous, else in JSON quotes; anything else is
    compact JSON (``[1,2]``, ``{"a":1}``), in quotes too if it has spaces."""
    if isinstance(value, str):
        text = value
        plain = text.isprintable() and not any(c in text for c in ' ="\\')
    else:
        text = json.dumps(_json_value(value), ensure_ascii=False, separators=(",", ":"))
        plain = text.isprintable() and " " not in text
    return text if text and plain else json.dumps(text, ensure_ascii=False)


def _json_value(value: Any) -> Any:
    """A JSON-able form of ``value`` (enums by value, other unknown objects by ``str``)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_value(v) for v in value]
    enum_value = getattr(value, "value", None)
    if enum_value is not None and isinstance(enum_value, str | int):
        return enum_value
    return str(value)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``, then the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line = f"{_timestamp(record)} {record.levelname:<5} {record.name}: {message}"
        fields = record_fields(record)
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            # A field never hides the record's own keys.
            document.setdefault(key, _json_value(value))
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=False)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our handler, recognisable so that :func:`configure` replaces it instead of adding one."""


def configure(
    *,
    format: LogFormat = LogFormat.TEXT,
    level: LogLevel = LogLevel.INFO,
    stream: TextIO | None = None,
) -> None:
    """Send every record at ``level`` or above to ``stream`` (default: stderr) in ``format``.

    Replaces the handler a previous call installed, so a reload changes format and level.
    """
    reset()
    root = logging.getLogger()
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if format is LogFormat.JSON else TextFormatter())
    handler.addFilter(_ContextFilter())
    root.addHandler(handler)
    root.setLevel(level.level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(level.level, logging.INFO))


def reset() -> None:
    """Remove the handler :func:`configure` installed (tests; embedding applications)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Handler):
            root.removeHandler(handler)
            handler.close()
