"""What an outbound message carries through the queue (pure): its payload and its retry state.

**The payload** (:class:`MessagePayload`) is everything a consumer needs to send the message and
to (re)create its database row, so the hot path reads nothing from the database and a message
survives a crash between "queued" and "row written" (docs/architecture.md, "Durability"). It is
written once at acceptance and never changes. Encoding (:func:`encode_payload`): one version
octet, then compact JSON with short keys, fields at their default left out, ``binary`` in base64.
A typical GSM message is ~150 octets. :func:`decode_payload` is strict: a wrong type, a missing
or unknown key, or an unknown version raises :class:`PayloadError` (a payload that cannot be read
is dead-lettered, never guessed at). A change of meaning needs a new version number; the decoder
then keeps reading the old one.

**The retry state** (:class:`RetryState`) is what changes between attempts: the attempts the
retry policy counts, and the throttles. The queue contract keeps exactly one mutable text per
message, the reason of its last ``nack``, so the state travels at the end of that reason
(:func:`reason_with_state`, e.g. ``"ESME_RSYSERR from a [smsgw a=2 t=0 l=3]"``) and is read
back from the lease (:func:`retry_state`). ``l`` is the queue's lease count when it was written:
``replay`` resets that count but not the reason, so a state whose ``l`` is not below the current
count was written before a replay and is ignored (a replayed message starts afresh).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, Final

import attrs

from smpp_codec.text import Encoding
from smsgw.queue.base import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, QueuedMessage

__all__ = [
    "PAYLOAD_VERSION",
    "MessagePayload",
    "PayloadError",
    "RetryState",
    "decode_payload",
    "encode_payload",
    "plain_reason",
    "reason_with_state",
    "retry_state",
]

PAYLOAD_VERSION: Final = 1


class PayloadError(ValueError):
    """A queue payload that this gateway cannot read."""


@attrs.frozen(kw_only=True)
class MessagePayload:
    """An outbound message as queued (see the module docstring). Times are epoch seconds."""

    id: str
    to: str
    source: str
    encoding: Encoding
    created_at: float
    text: str | None = None
    binary: bytes | None = None
    data_coding: int | None = None
    not_before: float | None = None
    expires_at: float | None = None
    client_ref: str | None = None
    tags: tuple[str, ...] = ()
    provider: str | None = None
    receipt: bool = True
    client_id: str = "default"
    callback_url: str | None = None
    priority: int = DEFAULT_PRIORITY
    #: The part count its database row was created with (split for the route's first provider).
    parts: int = 1

    @property
    def content(self) -> str | bytes:
        """The text, or the binary data."""
        if self.text is not None:
            return self.text
        assert self.binary is not None
        return self.binary


# Short key, attribute, kind. The kind drives both directions and the type check.
_FIELDS: Final = (
    ("i", "id", "str"),
    ("d", "to", "str"),
    ("s", "source", "str"),
    ("e", "encoding", "encoding"),
    ("ca", "created_at", "time"),
    ("t", "text", "str?"),
    ("b", "binary", "bytes?"),
    ("c", "data_coding", "int?"),
    ("nb", "not_before", "time?"),
    ("x", "expires_at", "time?"),
    ("r", "client_ref", "str?"),
    ("g", "tags", "tags"),
    ("p", "provider", "str?"),
    ("rc", "receipt", "bool"),
    ("cl", "client_id", "str"),
    ("u", "callback_url", "str?"),
    ("pr", "priority", "int"),
    ("pa", "parts", "int"),
)
_DEFAULTS: Final = {
    a.name: a.default for a in attrs.fields(MessagePayload) if a.default is not attrs.NOTHING
}
_REQUIRED: Final = frozenset(key for key, name, _ in _FIELDS if name not in _DEFAULTS)
_BY_KEY: Final = {key: (name, kind) for key, name, kind in _FIELDS}


def encode_payload(payload: MessagePayload) -> bytes:
    """The queue payload of ``payload`` (module docstring)."""
    document: dict[str, Any] = {}
    for key, name, kind in _FIELDS:
        value = getattr(payload, name)
        if name in _DEFAULTS and value == _DEFAULTS[name]:
            continue
        if kind == "encoding":
            value = value.value
        elif kind == "bytes?":
            value = base64.b64encode(value).decode("ascii")
        elif kind == "tags":
            value = list(value)
        document[key] = value
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return bytes([PAYLOAD_VERSION]) + text.encode("utf-8")


def _bad(key: str, name: str, expected: str, value: object) -> PayloadError:
    return PayloadError(f"payload field {key!r} ({name}): expected {expected}, got {value!r}")


def _convert(key: str, name: str, kind: str, value: object) -> object:
    optional = kind.endswith("?")
    base = kind.rstrip("?")
    if value is None:
        if optional:
            return None
        raise _bad(key, name, base, value)
    if base == "str":
        if not isinstance(value, str):
            raise _bad(key, name, "a string", value)
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(key, name, "an integer", value)
        return value
    if base == "bool":
        if not isinstance(value, bool):
            raise _bad(key, name, "true or false", value)
        return value
    if base == "time":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise _bad(key, name, "epoch seconds", value)
        return float(value)
    if base == "encoding":
        try:
            return Encoding(value)
        except ValueError:
            raise _bad(key, name, "an encoding name", value) from None
    if base == "bytes":
        if not isinstance(value, str):
            raise _bad(key, name, "base64 text", value)
        try:
            return base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise _bad(key, name, "base64 text", value) from None
    if base == "tags":
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise _bad(key, name, "a list of strings", value)
        return tuple(value)
    raise AssertionError(f"unknown field kind {kind}")  # pragma: no cover


def decode_payload(data: bytes) -> MessagePayload:
    """The message in a queue payload; :class:`PayloadError` if it is not one we can read."""
    if not data:
        raise PayloadError("empty payload")
    version = data[0]
    if version != PAYLOAD_VERSION:
        raise PayloadError(f"payload version {version} is not known (this gateway reads 1)")
    try:
        document = json.loads(data[1:].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"payload is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise PayloadError(f"payload is not a JSON object: {type(document).__name__}")
    unknown = sorted(set(document) - _BY_KEY.keys())
    if unknown:
        raise PayloadError(f"payload has unknown fields {unknown}")
    missing = sorted(_REQUIRED - document.keys())
    if missing:
        raise PayloadError(f"payload lacks fields {missing}")
    values: dict[str, Any] = {}
    for key, value in document.items():
        name, kind = _BY_KEY[key]
        values[name] = _convert(key, name, kind, value)
    payload = MessagePayload(**values)
    if (payload.text is None) == (payload.binary is None):
        raise PayloadError("payload must carry exactly one of text and binary")
    if not MIN_PRIORITY <= payload.priority <= MAX_PRIORITY:
        raise PayloadError(f"payload priority {payload.priority} is not 0..9")
    if payload.parts < 1:
        raise PayloadError(f"payload part count {payload.parts} is below 1")
    return payload


# --- retry state ------------------------------------------------------------------------------


@attrs.frozen
class RetryState:
    """See the module docstring. ``attempts``: failed attempts the retry policy has counted;
    ``throttled``: times the message was given back because its provider throttled; ``lease``:
    the queue's lease count when the state was written."""

    attempts: int = 0
    throttled: int = 0
    lease: int = 0


_STATE = re.compile(r" \[smsgw a=(\d{1,9}) t=(\d{1,9}) l=(\d{1,9})\]\Z")


def reason_with_state(reason: str, state: RetryState) -> str:
    """``reason`` with ``state`` appended, for :meth:`Queue.nack`."""
    return f"{reason} [smsgw a={state.attempts} t={state.throttled} l={state.lease}]"


def plain_reason(text: str | None) -> str | None:
    """A nack reason without its state (what an operator wants to read)."""
    if text is None:
        return None
    return _STATE.sub("", text)


def retry_state(message: QueuedMessage) -> RetryState:
    """The retry state a leased message carries (a fresh one on its first lease, after a replay,
    or when the last reason carries none)."""
    if message.attempts <= 1 or message.last_error is None:
        return RetryState()
    found = _STATE.search(message.last_error)
    if found is None:
        return RetryState()
    state = RetryState(int(found[1]), int(found[2]), int(found[3]))
    if state.lease >= message.attempts:
        return RetryState()  # written before a replay reset the lease count
    return state
