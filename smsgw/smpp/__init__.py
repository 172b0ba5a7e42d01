"""The SMPP client of smsgw: Trio connections around the sans-IO :mod:`smpp_codec.session`.

- :class:`SmppClient` / :func:`open_client`: the supervised client (reconnects with backoff);
- :class:`SmppConnection` / :func:`open_connection`: one bound link over any Trio stream;
- :mod:`.errors`: what can go wrong, each error saying whether a retry can help.

See ``docs/sessions.md``.
"""

from .backoff import Backoff, BackoffPolicy
from .client import ClientState, SmppClient, open_client, open_stream
from .config import BindMode, ClientConfig, TlsConfig
from .connection import BindKind, SmppConnection, open_connection
from .errors import (
    BindError,
    ConnectionLost,
    InvalidResponse,
    RequestTimeout,
    SessionClosed,
    SmppClientError,
    SubmitRejected,
    ThrottledError,
    TlsHandshakeError,
)
from .inbound import Inbound
from .stats import ClientStats

__all__ = [
    "Backoff",
    "BackoffPolicy",
    "BindError",
    "BindKind",
    "BindMode",
    "ClientConfig",
    "ClientState",
    "ClientStats",
    "ConnectionLost",
    "Inbound",
    "InvalidResponse",
    "RequestTimeout",
    "SessionClosed",
    "SmppClient",
    "SmppClientError",
    "SmppConnection",
    "SubmitRejected",
    "ThrottledError",
    "TlsConfig",
    "TlsHandshakeError",
    "open_client",
    "open_connection",
    "open_stream",
]
