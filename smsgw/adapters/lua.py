"""Plain pieces for the modules that talk to Redis (the queue, the cluster, the relay, the
shared MO parts, the API's shared state): a Lua script, named and hashed, and the reading of a
reply as text. They need not import redis-py until they run something (through
:mod:`smsgw.adapters.redis`)."""

from __future__ import annotations

import hashlib
from typing import Any

import attrs

__all__ = ["LuaScript", "reply_text"]


@attrs.frozen
class LuaScript:
    """A Lua script, known to Redis by its SHA1 once loaded."""

    name: str
    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


def reply_text(value: Any) -> str:
    """A reply (redis-py gives bytes, with RESP2) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
