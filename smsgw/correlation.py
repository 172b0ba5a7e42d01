"""Delivery receipt -> message part correlation, and early receipts (pure; time passed in).

A receipt names its message by the SMSC's message id, which the gateway learnt from the
``submit_sm_resp`` of one part. Both spellings are reduced to one :class:`SmscKey` (the provider
and the canonical id of :mod:`smpp_codec.message_id`, read in the provider's
``message_id_format``: :func:`resp_key` for the response side, :func:`receipt_key` for the
receipt side), and the store maps keys to parts (``Store.map_smsc_ids`` /
``Store.find_part_by_smsc_id``).

Real SMSCs sometimes send the receipt before the gateway has processed the response, so the key
is not mapped yet. :class:`Correlator` *parks* such a receipt for ``park_time`` seconds; when the
mapping is announced (:meth:`Correlator.mapped`) the parked receipts for that key come back as
:class:`Match`\\ es; when the time runs out (:meth:`Correlator.expire`) they come back as
:class:`Orphan`\\ s. At most ``max_parked`` receipts are parked: parking one more pushes the oldest
out, reported as an orphan too, so a flood of unknown ids cannot exhaust memory.

The race, and how it is closed. The DLR handler looks the key up in the database, finds nothing,
and parks the receipt. If the processor committed the mapping and announced it *between* that
read and the park, the announcement found nothing to release. So the correlator also remembers
the mappings announced in the last ``remember_time`` seconds (at most ``max_remembered``):
:meth:`~Correlator.park` first checks them and returns the match at once. The same memory makes
:meth:`~Correlator.lookup` a fast path that spares the database most reads (receipts usually
follow their response within seconds). Forgetting a mapping is harmless: the database has it.

Use (the DLR handler and the processor, in one process)::

    key = receipt_key(provider, receipt.message_id, fmt)
    part = correlator.lookup(key, now) or await store.find_part_by_smsc_id(...)
    if part is None:
        result = correlator.park(key, receipt, now)   # result.match: apply it now
        ...                                            # result.evicted: count as orphaned
    # processor, after map_smsc_ids() has returned (committed):
    for match in correlator.mapped(resp_key(provider, smsc_id, fmt), part, now): apply(match)
    # a timer task, at correlator.next_deadline():
    for orphan in correlator.expire(now): count(orphan)

``now`` is a monotonic time (``trio.current_time()``) and must never go backwards. Park time is
one per correlator: a gateway whose providers have different park times keeps one per provider.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from typing import Generic, TypeVar

import attrs

from smpp_codec.message_id import MessageIdFormat, normalize_message_id
from smsgw.model import PartRef

__all__ = [
    "Correlator",
    "CorrelatorStats",
    "Match",
    "Orphan",
    "OrphanReason",
    "ParkResult",
    "SmscKey",
    "receipt_key",
    "resp_key",
]

R = TypeVar("R")


@attrs.frozen
class SmscKey:
    """A provider and the canonical form of one of its message ids."""

    provider: str
    smsc_id: str


def resp_key(provider: str, smsc_id: str, id_format: MessageIdFormat) -> SmscKey:
    """The key of the id in a ``submit_sm_resp`` (read as ``id_format.resp_form``).

    Raises :class:`smpp_codec.message_id.MessageIdError` for an empty or impossible id.
    """
    return SmscKey(provider, normalize_message_id(smsc_id, form=id_format.resp_form))


def receipt_key(provider: str, smsc_id: str, id_format: MessageIdFormat) -> SmscKey:
    """The key of the id in a delivery receipt (read as ``id_format.receipt_form``)."""
    return SmscKey(provider, normalize_message_id(smsc_id, form=id_format.receipt_form))


class OrphanReason(enum.Enum):
    #: No mapping arrived within the park time.
    EXPIRED = "expired"
    #: Pushed out by newer receipts when the park was full.
    EVICTED = "evicted"


@attrs.frozen
class Match(Generic[R]):
    """A receipt and the part it is about. ``parked_at`` None: it never had to wait."""

    key: SmscKey
    receipt: R
    part: PartRef
    parked_at: float | None


@attrs.frozen
class Orphan(Generic[R]):
    """A receipt no part was found for."""

    key: SmscKey
    receipt: R
    parked_at: float
    reason: OrphanReason


@attrs.frozen
class ParkResult(Generic[R]):
    """What :meth:`Correlator.park` did: matched at once (``match``) or parked; ``evicted`` are
    the oldest receipts the park had to drop to make room."""

    match: Match[R] | None
    evicted: tuple[Orphan[R], ...] = ()


@attrs.frozen
class CorrelatorStats:
    """Counters since the correlator was made, and what it holds now."""

    parked: int  # held now
    remembered: int  # mappings held now
    parked_total: int
    matched_on_park: int  # park() found a just-announced mapping
    rematched: int  # released by mapped()
    orphaned_expired: int
    orphaned_evicted: int
    lookup_hits: int


@attrs.frozen
class _Parked(Generic[R]):
    key: SmscKey
    receipt: R
    parked_at: float


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _check_seconds(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


class Correlator(Generic[R]):
    """Parks early receipts and remembers recent mappings (see the module docstring).

    Memory is bounded by ``max_parked`` receipts and ``max_remembered`` mappings. Receipts are
    opaque to it (``R``): the caller parks whatever it needs to apply one later.
    """

    def __init__(
        self,
        *,
        park_time: float = 30.0,
        max_parked: int = 10_000,
        remember_time: float = 60.0,
        max_remembered: int = 100_000,
    ) -> None:
        _check_seconds("park_time", park_time)
        _check_seconds("remember_time", remember_time)
        _check_positive_int("max_parked", max_parked)
        _check_positive_int("max_remembered", max_remembered)
        self.park_time = float(park_time)
        self.remember_time = float(remember_time)
        self.max_parked = max_parked
        self.max_remembered = max_remembered
        self._now = -math.inf
        # Both in arrival order, and with one park time (one remember time) for all entries, so
        # also in deadline order: the front is always the first to expire or to be evicted.
        self._parked: OrderedDict[int, _Parked[R]] = OrderedDict()
        self._by_key: dict[SmscKey, list[int]] = {}
        self._next_ticket = 0
        self._remembered: OrderedDict[SmscKey, tuple[PartRef, float]] = OrderedDict()
        self._parked_total = 0
        self._matched_on_park = 0
        self._rematched = 0
        self._orphaned_expired = 0
        self._orphaned_evicted = 0
        self._lookup_hits = 0

    def _advance(self, now: float) -> None:
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite time, got {now!r}")
        if now < self._now:
            raise ValueError(f"time went backwards: {now!r} after {self._now!r}")
        self._now = now
        self._forget(now)

    def _forget(self, now: float) -> None:
        while self._remembered:
            _key, (_part, mapped_at) = next(iter(self._remembered.items()))
            if mapped_at + self.remember_time > now:
                break
            self._remembered.popitem(last=False)

    def lookup(self, key: SmscKey, now: float) -> PartRef | None:
        """The part ``key`` was recently mapped to, if remembered (the database has the rest)."""
        self._advance(now)
        remembered = self._remembered.get(key)
        if remembered is None:
            return None
        self._lookup_hits += 1
        return remembered[0]

    def mapped(self, key: SmscKey, part: PartRef, now: float) -> list[Match[R]]:
        """Announce that ``key`` now maps to ``part`` (call once the mapping is on its way to
        the database: the gateway calls it when the write is handed to the store's writer, so
        the writes of receipts matched from now on are committed after it).

        Returns the receipts parked for ``key``, oldest first, to be applied now. Receipts
        whose park time has run out are not returned: they stay for :meth:`expire` to report
        as orphans, so that the park time means the same whichever is called first.
        """
        self._advance(now)
        self._remembered[key] = (part, now)
        self._remembered.move_to_end(key)
        while len(self._remembered) > self.max_remembered:
            self._remembered.popitem(last=False)
        matches: list[Match[R]] = []
        kept: list[int] = []
        for ticket in self._by_key.pop(key, []):
            parked = self._parked[ticket]
            if parked.parked_at + self.park_time <= now:
                kept.append(ticket)
                continue
            del self._parked[ticket]
            matches.append(Match(key, parked.receipt, part, parked.parked_at))
        if kept:
            self._by_key[key] = kept
        self._rematched += len(matches)
        return matches

    def park(self, key: SmscKey, receipt: R, now: float) -> ParkResult[R]:
        """Park a receipt whose key was not found, unless its mapping was announced meanwhile.

        If the park is full, the oldest parked receipts are dropped and returned in
        ``evicted``.
        """
        self._advance(now)
        remembered = self._remembered.get(key)
        if remembered is not None:
            self._matched_on_park += 1
            return ParkResult(Match(key, receipt, remembered[0], None))
        ticket = self._next_ticket
        self._next_ticket += 1
        self._parked[ticket] = _Parked(key, receipt, now)
        self._by_key.setdefault(key, []).append(ticket)
        self._parked_total += 1
        evicted = []
        while len(self._parked) > self.max_parked:
            evicted.append(self._drop_oldest(OrphanReason.EVICTED))
        self._orphaned_evicted += len(evicted)
        return ParkResult(None, tuple(evicted))

    def expire(self, now: float) -> list[Orphan[R]]:
        """Drop the receipts parked for ``park_time`` or longer; returned oldest first."""
        self._advance(now)
        orphans = []
        while self._parked:
            oldest = next(iter(self._parked.values()))
            if oldest.parked_at + self.park_time > now:
                break
            orphans.append(self._drop_oldest(OrphanReason.EXPIRED))
        self._orphaned_expired += len(orphans)
        return orphans

    def _drop_oldest(self, reason: OrphanReason) -> Orphan[R]:
        ticket, parked = self._parked.popitem(last=False)
        tickets = self._by_key[parked.key]
        tickets.remove(ticket)
        if not tickets:
            del self._by_key[parked.key]
        return Orphan(parked.key, parked.receipt, parked.parked_at, reason)

    def next_deadline(self) -> float | None:
        """When :meth:`expire` will next have something to drop (None: nothing parked)."""
        if not self._parked:
            return None
        return next(iter(self._parked.values())).parked_at + self.park_time

    def __len__(self) -> int:
        """The number of receipts parked now."""
        return len(self._parked)

    def stats(self) -> CorrelatorStats:
        return CorrelatorStats(
            parked=len(self._parked),
            remembered=len(self._remembered),
            parked_total=self._parked_total,
            matched_on_park=self._matched_on_park,
            rematched=self._rematched,
            orphaned_expired=self._orphaned_expired,
            orphaned_evicted=self._orphaned_evicted,
            lookup_hits=self._lookup_hits,
        )
