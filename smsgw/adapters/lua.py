"""A Lua script for Redis, named and hashed: plain data, so the modules that define scripts
(the queue, the cluster, the shared MO parts) need not import redis-py until they run one
(through :mod:`smsgw.adapters.redis`)."""

from __future__ import annotations

import hashlib

import attrs

__all__ = ["LuaScript"]


@attrs.frozen
class LuaScript:
    """A Lua script, known to Redis by its SHA1 once loaded."""

    name: str
    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()
