"""Statistics: mutable counters inside the simulator, frozen :class:`Stats` snapshots outside.

Counting is a dict or int increment on the hot path; :meth:`Counters.snapshot` copies
everything into an immutable value (the shape of ``trio.MemoryChannelStatistics``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType

import attrs

from smpp_codec.constants import CommandId


def _frozen(mapping: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(sorted(mapping.items())))


@attrs.frozen(kw_only=True)
class Stats:
    """What the simulator did since it was created.

    PDU counts are by command name (``"submit_sm"``, ``"deliver_sm_resp"``...). A receipt or MO
    ``deliver_sm`` is *acked* when answered ``ESME_ROK``, *failed* when answered with an error,
    a ``generic_nack``, or not at all (timeout, or the connection ended first: receipts are
    never resent). ``faults`` counts injected faults by name (see :class:`.faults.Fault`, plus
    ``latency``, ``disconnect``, ``disconnect_after_pdus``, ``refuse_bind``, ``dead_link``).
    """

    connections: int = 0  #: TCP connections accepted
    sessions: int = 0  #: connections bound right now
    #: Sessions bound right now per system_id (accounts with none left out).
    sessions_by_account: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen)
    #: The most sessions each system_id ever had bound at once.
    peak_sessions: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen)
    binds: int = 0  #: successful binds
    bind_failures: int = 0  #: binds refused (bad credentials, refuse_binds fault, max_binds)
    binds_over_limit: int = 0  #: binds refused because their system_id had max_binds bound
    tls_failures: int = 0  #: connections closed before their TLS handshake completed
    #: (``"invalid"``: PDUs whose header could not be read)
    pdus_received: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen)
    pdus_sent: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen)
    invalid_pdus: int = 0  #: PDUs that failed to decode or were not allowed in the bind state
    unexpected_responses: int = 0  #: responses matching no deliver_sm/enquire_link of ours
    submits_accepted: int = 0  #: submit_sm / submit_multi / data_sm answered ESME_ROK
    submits_rejected: int = 0  #: ... answered with an error status
    messages_stored: int = 0  #: messages the store holds (for query/cancel/replace)
    receipts_scheduled: int = 0  #: receipts waiting for their delivery time
    receipts_queued: int = 0  #: receipts due, waiting for a receiver (and window room)
    receipts_sent: int = 0
    receipts_acked: int = 0
    receipts_failed: int = 0  #: sends that failed (error answer, no answer, connection gone)
    receipts_retried: int = 0  #: failed receipts scheduled to be sent again
    receipts_dropped: int = 0  #: receipts thrown away because the queue was full
    mos_sent: int = 0  #: MO deliver_sm PDUs sent (one per part)
    mos_acked: int = 0
    mos_failed: int = 0
    mos_retried: int = 0  #: MO parts not answered ESME_ROK, scheduled to be sent again
    faults: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen)

    def line(self) -> str:
        """A one-line summary for logs and the CLI."""
        faults = ",".join(f"{k}={v}" for k, v in self.faults.items()) or "0"
        return (
            f"sessions={self.sessions} binds={self.binds}/{self.bind_failures} "
            f"rx={sum(self.pdus_received.values())} tx={sum(self.pdus_sent.values())} "
            f"submits={self.submits_accepted}/{self.submits_rejected} "
            f"receipts={self.receipts_sent}/{self.receipts_acked}"
            f"(queued={self.receipts_queued + self.receipts_scheduled}) "
            f"mo={self.mos_sent}/{self.mos_acked} faults={faults}"
        )


#: command_id -> its name as Stats reports it ("submit_sm").
COMMAND_NAMES: Mapping[int, str] = MappingProxyType(
    {int(cid): cid.name.lower() for cid in CommandId}
)


def command_name(command_id: int) -> str:
    """The name of a command_id; ``"invalid"`` for -1 (a PDU whose header was unreadable)."""
    if command_id < 0:
        return "invalid"
    return COMMAND_NAMES.get(command_id) or f"0x{command_id:08x}"


class Counters:
    """The simulator's running counts (one instance per simulator)."""

    def __init__(self) -> None:
        self.connections = 0
        self.sessions = 0
        self.sessions_by_account: Counter[str] = Counter()  # no zero entries
        self.peak_sessions: dict[str, int] = {}
        self.binds = 0
        self.bind_failures = 0
        self.binds_over_limit = 0
        self.tls_failures = 0
        self.received: Counter[int] = Counter()  # by command_id: names are made at snapshot time
        self.sent: Counter[int] = Counter()
        self.invalid_pdus = 0
        self.unexpected_responses = 0
        self.submits_accepted = 0
        self.submits_rejected = 0
        self.receipts_sent = 0
        self.receipts_acked = 0
        self.receipts_failed = 0
        self.receipts_retried = 0
        self.receipts_dropped = 0
        self.mos_sent = 0
        self.mos_acked = 0
        self.mos_failed = 0
        self.mos_retried = 0
        self.faults: Counter[str] = Counter()

    def session_started(self, system_id: str) -> None:
        """A session of ``system_id`` is bound."""
        self.sessions += 1
        bound = self.sessions_by_account[system_id] + 1
        self.sessions_by_account[system_id] = bound
        if bound > self.peak_sessions.get(system_id, 0):
            self.peak_sessions[system_id] = bound

    def session_ended(self, system_id: str) -> None:
        """A bound session of ``system_id`` ended (call once per :meth:`session_started`)."""
        self.sessions -= 1
        left = self.sessions_by_account[system_id] - 1
        if left > 0:
            self.sessions_by_account[system_id] = left
        else:
            del self.sessions_by_account[system_id]

    def snapshot(
        self, *, messages_stored: int, receipts_scheduled: int, receipts_queued: int
    ) -> Stats:
        return Stats(
            connections=self.connections,
            sessions=self.sessions,
            sessions_by_account=dict(self.sessions_by_account),
            peak_sessions=self.peak_sessions,
            binds=self.binds,
            bind_failures=self.bind_failures,
            binds_over_limit=self.binds_over_limit,
            tls_failures=self.tls_failures,
            pdus_received={command_name(k): v for k, v in self.received.items()},
            pdus_sent={command_name(k): v for k, v in self.sent.items()},
            invalid_pdus=self.invalid_pdus,
            unexpected_responses=self.unexpected_responses,
            submits_accepted=self.submits_accepted,
            submits_rejected=self.submits_rejected,
            messages_stored=messages_stored,
            receipts_scheduled=receipts_scheduled,
            receipts_queued=receipts_queued,
            receipts_sent=self.receipts_sent,
            receipts_acked=self.receipts_acked,
            receipts_failed=self.receipts_failed,
            receipts_retried=self.receipts_retried,
            receipts_dropped=self.receipts_dropped,
            mos_sent=self.mos_sent,
            mos_acked=self.mos_acked,
            mos_failed=self.mos_failed,
            mos_retried=self.mos_retried,
            faults=dict(self.faults),
        )
