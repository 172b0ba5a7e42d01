"""JSON request bodies -> :class:`~smsgw.messages.SubmitRequest`, with every bad field named.

Pure: no I/O; the time is passed in. The API checks what is about the HTTP representation (JSON
types, base64/hex, RFC 3339 dates, the sender's format, the part limit) and leaves the rest to
:func:`smsgw.messages.validate`, whose field names :data:`GATEWAY_FIELDS` maps back to the API's.

Errors are ``{field: message}``; a field inside a list is ``tags[2]``, a batch item's field is
``messages[3].to`` (the batch handler prefixes it).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
import re
from collections.abc import Mapping
from typing import Any

from smpp_codec.errors import TextError
from smpp_codec.segment import SplitMode, count
from smpp_codec.text import Encoding
from smsgw.messages import ENCODINGS, SubmitRequest
from smsgw.queue.base import MAX_PRIORITY, MIN_PRIORITY

__all__ = [
    "FIELDS",
    "GATEWAY_FIELDS",
    "Invalid",
    "parse_preview",
    "parse_submit",
    "parse_time",
]

#: The fields of a ``POST /messages`` body.
FIELDS = frozenset(
    {
        "to",
        "from",
        "text",
        "binary",
        "binary_format",
        "data_coding",
        "encoding",
        "priority",
        "validity",
        "schedule_at",
        "callback_url",
        "client_ref",
        "tags",
        "provider",
        "receipt",
    }
)
#: ``SubmitRequest`` field -> API field, for the errors :func:`smsgw.messages.validate` names.
GATEWAY_FIELDS: Mapping[str, str] = {"source": "from", "client_id": "key"}

#: E.164: a '+', a non-zero digit, at most 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
#: A short code or national number: digits only.
_DIGITS = re.compile(r"[0-9]{1,15}")
#: An alphanumeric sender: at most 11 GSM-safe characters, at least one letter.
_ALPHANUMERIC = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 .\-_&]{1,11}")
_DESTINATION = re.compile(r"\+?[0-9]{1,20}")
MAX_TAGS = 20


class Invalid(Exception):
    """A body with field errors: ``errors`` maps each bad field to what is wrong."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_time(value: object) -> float:
    """Epoch seconds from an RFC 3339 date-time with an offset (``2026-05-01T09:00:00Z``) or a
    number of epoch seconds; ``ValueError`` with the reason otherwise."""
    if _is_number(value):
        assert isinstance(value, int | float)
        return float(value)
    if not isinstance(value, str):
        raise ValueError(
            f"expected an RFC 3339 date-time or epoch seconds, got {_type_name(value)}"
        )
    text = value.strip()
    if not re.fullmatch(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", text):
        raise ValueError(
            f"expected an RFC 3339 date-time with an offset (2026-05-01T09:00:00Z), got {value!r}"
        )
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not a valid date-time: {exc}") from None
    return parsed.timestamp()


def sender_problem(source: str) -> str | None:
    """Why ``source`` cannot be a sender, or None. Senders are E.164 (``+4915112345678``), a
    short code or national number (digits), or alphanumeric (at most 11 characters of letters,
    digits, space and ``.-_&``, with at least one letter: what handsets display)."""
    if _E164.fullmatch(source) or _DIGITS.fullmatch(source) or _ALPHANUMERIC.fullmatch(source):
        return None
    if source.startswith("+"):
        return f"an E.164 number is '+' and 2 to 15 digits, not starting with 0; got {source!r}"
    return (
        "must be an E.164 number (+4915112345678), digits (a short code), or at most 11 "
        f"letters, digits, spaces and .-_& with at least one letter; got {source!r}"
    )


def _content(body: Mapping[str, Any], errors: dict[str, str]) -> tuple[str | None, bytes | None]:
    text, binary = body.get("text"), body.get("binary")
    if (text is None) == (binary is None):
        errors["text"] = "give either text or binary, not both and not neither"
        return None, None
    if text is not None:
        if not isinstance(text, str) or not text:
            errors["text"] = f"must be a non-empty string, got {_type_name(text)}"
            return None, None
        if "binary_format" in body:
            errors["binary_format"] = "only used with binary"
        return text, None
    if not isinstance(binary, str) or not binary:
        errors["binary"] = f"must be a non-empty base64 or hex string, got {_type_name(binary)}"
        return None, None
    form = body.get("binary_format", "base64")
    try:
        if form == "base64":
            data = base64.b64decode(binary, validate=True)
        elif form == "hex":
            data = bytes.fromhex(binary)
        else:
            errors["binary_format"] = f'must be "base64" or "hex", got {form!r}'
            return None, None
    except (binascii.Error, ValueError):
        errors["binary"] = f"is not valid {form}"
        return None, None
    if not data:
        errors["binary"] = "must not be empty"
        return None, None
    return None, data


def _parts(
    content: str | bytes, encoding: object, max_parts: int, field: str, errors: dict[str, str]
) -> None:
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        return  # reported on its own
    wanted = ENCODINGS[encoding]
    if isinstance(content, str) and wanted is Encoding.BINARY:
        return  # reported by the gateway's validation
    try:
        plan = count(content, encoding=wanted, mode=SplitMode.UDH8)
    except TextError as exc:
        errors[field] = str(exc)
        return
    if plan.parts > max_parts:
        errors[field] = (
            f"needs {plan.parts} SMS parts as {plan.encoding.value} ({plan.units} units, "
            f"{plan.per_part} per part); at most {max_parts} are allowed"
        )


def _check_object(body: object) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise Invalid({"body": f"must be a JSON object, got {_type_name(body)}"})
    return body


def parse_submit(
    body: object, *, client: str, max_parts: int, default_callback: str | None = None
) -> SubmitRequest:
    """The request in one ``POST /messages`` body; :class:`Invalid` naming every bad field."""
    body = _check_object(body)
    errors: dict[str, str] = {}
    for name in body:
        if name not in FIELDS:
            errors[str(name)] = "unknown field"
    to, source = body.get("to"), body.get("from")
    if not isinstance(to, str) or not _DESTINATION.fullmatch(to):
        errors["to"] = (
            "required: a phone number, 1 to 20 digits with an optional leading '+'"
            if to is None
            else f"must be 1 to 20 digits with an optional leading '+', got {to!r}"
        )
    if not isinstance(source, str):
        errors["from"] = f"required: the sender as a string, got {_type_name(source)}"
    else:
        problem = sender_problem(source)
        if problem is not None:
            errors["from"] = problem
    text, binary = _content(body, errors)
    encoding = body.get("encoding", "auto")
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        errors["encoding"] = f"must be one of {', '.join(ENCODINGS)}, got {encoding!r}"
    content = text if text is not None else binary
    if content is not None:
        _parts(content, encoding, max_parts, "text" if text is not None else "binary", errors)
    data_coding = body.get("data_coding")
    if data_coding is not None and not (_is_int(data_coding) and 0 <= data_coding <= 255):
        errors["data_coding"] = f"must be an integer 0..255, got {data_coding!r}"
    priority = body.get("priority", 5)
    if not (_is_int(priority) and MIN_PRIORITY <= priority <= MAX_PRIORITY):
        errors["priority"] = f"must be an integer {MIN_PRIORITY}..{MAX_PRIORITY}, got {priority!r}"
    validity = body.get("validity")
    if validity is not None and not (_is_number(validity) and validity > 0):
        errors["validity"] = f"must be a number of seconds > 0, got {validity!r}"
    schedule_at: float | None = None
    if body.get("schedule_at") is not None:
        try:
            schedule_at = parse_time(body["schedule_at"])
        except ValueError as exc:
            errors["schedule_at"] = str(exc)
    tags = body.get("tags", [])
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        errors["tags"] = f"must be an array of at most {MAX_TAGS} strings"
        tags = []
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag:
            errors[f"tags[{i}]"] = f"must be a non-empty string, got {_type_name(tag)}"
    for name in ("client_ref", "provider", "callback_url"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            errors[name] = f"must be a string, got {_type_name(value)}"
    receipt = body.get("receipt", True)
    if not isinstance(receipt, bool):
        errors["receipt"] = f"must be true or false, got {_type_name(receipt)}"
    if errors:
        raise Invalid(errors)
    assert isinstance(to, str) and isinstance(source, str) and isinstance(encoding, str)
    return SubmitRequest(
        to=to,
        source=source,
        text=text,
        binary=binary,
        data_coding=data_coding,
        encoding=encoding,
        priority=priority,
        validity=None if validity is None else float(validity),
        schedule_at=schedule_at,
        client_ref=body.get("client_ref"),
        tags=tuple(tags),
        provider=body.get("provider"),
        receipt=receipt,
        client_id=client,
        callback_url=body.get("callback_url", default_callback),
    )


def gateway_errors(errors: Mapping[str, str]) -> dict[str, str]:
    """:func:`smsgw.messages.validate`'s errors under the API's field names."""
    return {GATEWAY_FIELDS.get(field, field): text for field, text in errors.items()}


def parse_preview(body: object, *, max_parts: int) -> tuple[str | bytes, Encoding | None]:
    """The content and wanted encoding of a ``POST /messages/preview`` body (``text`` or
    ``binary``, optional ``encoding``); :class:`Invalid` otherwise."""
    body = _check_object(body)
    errors: dict[str, str] = {}
    for name in body:
        if name not in ("text", "binary", "binary_format", "encoding"):
            errors[str(name)] = "unknown field"
    text, binary = _content(body, errors)
    encoding = body.get("encoding", "auto")
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        errors["encoding"] = f"must be one of {', '.join(ENCODINGS)}, got {encoding!r}"
    elif text is not None and ENCODINGS[encoding] is Encoding.BINARY:
        errors["encoding"] = "binary is for binary content; text needs a text encoding"
    elif binary is not None and ENCODINGS[encoding] not in (None, Encoding.BINARY):
        errors["encoding"] = f"binary content is sent as binary, not {encoding}"
    if errors:
        raise Invalid(errors)
    content: str | bytes = text if text is not None else binary  # type: ignore[assignment]
    assert isinstance(encoding, str)
    return content, ENCODINGS[encoding]
