"""Counters of a client, and the frozen snapshot metrics read (as ``trio``'s channel statistics)."""

from __future__ import annotations

import attrs


@attrs.frozen
class ClientStats:
    """A snapshot of :class:`Counters`."""

    connects: int
    binds: int
    bind_failures: int
    disconnects: int
    requests_ok: int
    requests_rejected: int
    requests_throttled: int
    requests_timed_out: int
    requests_lost: int
    unexpected_responses: int
    invalid_input: int
    inbound: int
    inbound_defaulted: int
    enquire_links_sent: int
    enquire_links_answered: int


@attrs.define
class Counters:
    """Mutable counters shared by the connections of one client (one task tree, no locks)."""

    connects: int = 0
    binds: int = 0
    bind_failures: int = 0
    disconnects: int = 0
    requests_ok: int = 0
    requests_rejected: int = 0
    requests_throttled: int = 0
    requests_timed_out: int = 0
    #: Requests failed by the end of their connection (ConnectionLost with sent=True).
    requests_lost: int = 0
    #: Responses nobody waited for: late (after a timeout or a cancelled caller) or unknown.
    unexpected_responses: int = 0
    #: PDUs from the peer that were malformed or not allowed in the bind state.
    invalid_input: int = 0
    inbound: int = 0
    #: Inbound PDUs answered with the default status because the application did not answer.
    inbound_defaulted: int = 0
    enquire_links_sent: int = 0
    enquire_links_answered: int = 0

    def snapshot(self) -> ClientStats:
        return ClientStats(**attrs.asdict(self))
