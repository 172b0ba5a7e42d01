"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"`` (pure: no clock, no I/O).

The gateway sends ``X-Smsgw-Timestamp: <epoch seconds>`` and
``X-Smsgw-Signature: sha256=<hex>``. The timestamp is inside the signed text so that a captured
request cannot be replayed later with a fresh timestamp: a receiver checks the signature, then
that the timestamp is recent (:func:`verify` does both). The body is signed byte for byte as
sent: verify the raw request body, before any JSON parsing.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "DEFAULT_TOLERANCE",
    "SCHEME",
    "BadSignature",
    "SignatureError",
    "StaleTimestamp",
    "sign",
    "verify",
]

#: The only scheme; the prefix leaves room for another without ambiguity.
SCHEME = "sha256"

#: How far (seconds) a timestamp may be from the receiver's clock by default.
DEFAULT_TOLERANCE = 300.0


class SignatureError(ValueError):
    """A webhook request failed verification; the message says why."""


class BadSignature(SignatureError):
    """The signature header is malformed or does not match the body and timestamp."""


class StaleTimestamp(SignatureError):
    """The timestamp is malformed, or further from ``now`` than the tolerance."""


def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def _digest(secret: str | bytes, timestamp: str, body: bytes) -> str:
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Smsgw-Signature`` value for ``body`` sent at ``timestamp`` (epoch seconds)."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise TypeError(f"timestamp must be a non-negative int, got {timestamp!r}")
    if not isinstance(body, bytes):
        raise TypeError(f"body must be bytes, got {type(body).__name__}")
    return f"{SCHEME}={_digest(secret, str(timestamp), body)}"


def verify(
    secret: str | bytes,
    *,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Check a received request: ``timestamp`` and ``signature`` are the header values as
    received, ``body`` the raw body, ``now`` the receiver's wall-clock epoch seconds.

    Raises :class:`BadSignature` or :class:`StaleTimestamp`; returns None when the request is
    authentic and recent. The comparison takes constant time.
    """
    if not isinstance(body, bytes):
        raise TypeError(f"body must be bytes, got {type(body).__name__}")
    scheme, sep, received = signature.partition("=")
    if not sep or scheme != SCHEME or not received or not received.isascii():
        raise BadSignature(f"expected '{SCHEME}=<hex>', got {signature[:80]!r}")
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise StaleTimestamp(f"expected epoch seconds, got {timestamp[:40]!r}")
    expected = _digest(secret, timestamp, body)
    if not hmac.compare_digest(expected, received.strip().lower()):
        raise BadSignature("the signature does not match the body and timestamp")
    age = now - int(timestamp)
    if abs(age) > tolerance:
        raise StaleTimestamp(f"timestamp is {age:+.0f}s from now (tolerance {tolerance:g}s)")
