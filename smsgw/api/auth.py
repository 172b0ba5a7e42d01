"""API keys: who is calling, and may they do this.

Keys are stored as their SHA-256 in ``[[api.keys]]``; a request's key is hashed and compared
with :func:`hmac.compare_digest` against *every* configured hash, so the time taken tells nothing
about which key (or how much of one) matched. A 256-bit random key needs no slow hash: nothing
can be guessed from its SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from smsgw.config import ApiKeyConfig, ApiScope

__all__ = ["Authenticator", "hash_key", "key_from_headers"]

#: Longest key accepted from a header (anything longer is not one of ours).
MAX_KEY_LENGTH = 512


def hash_key(key: str) -> str:
    """The value to put in ``sha256`` for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key in ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (header names lower
    case), or None when neither holds a usable one."""
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return _usable(value.strip())
    header = headers.get("x-api-key")
    if header is not None and header.strip():
        return _usable(header.strip())
    return None


def _usable(key: str) -> str | None:
    return key if len(key) <= MAX_KEY_LENGTH and key.isprintable() else None


class Authenticator:
    """Finds the configured key a presented key hashes to."""

    def __init__(self, keys: Sequence[ApiKeyConfig]) -> None:
        self._keys = tuple(keys)

    def authenticate(self, presented: str | None) -> ApiKeyConfig | None:
        """The key's configuration, or None (unknown or missing key)."""
        if presented is None:
            return None
        digest = hash_key(presented).encode("ascii")
        found: ApiKeyConfig | None = None
        for key in self._keys:
            # No early exit: every hash is compared, whichever matches.
            if hmac.compare_digest(digest, key.sha256.encode("ascii")):
                found = key
        return found

    @staticmethod
    def allows(key: ApiKeyConfig, scope: ApiScope) -> bool:
        return scope in key.scopes
