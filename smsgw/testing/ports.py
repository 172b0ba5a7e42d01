"""A free TCP port on loopback, for tests and benchmarks."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing listens on right now: bound, then released. Another
    process may take it before the caller does; connections to it are refused until then."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port
