"""Fault injection: what to break (:class:`Faults`) and the decisions that break it
(:class:`FaultState`).

Pure logic: random choices come from the simulator's seeded :class:`random.Random` and time is
passed in, so a test with a fixed seed and a :class:`trio.testing.MockClock` sees the same faults
on every run.

Where each fault applies:

- ``latency``/``latency_jitter``: every response (binds and enquire_link included);
- ``max_window``, ``tps_limit``, the error fractions, ``drop_response_fraction`` and
  ``garbage_fraction``: message submissions only (``submit_sm``, ``submit_multi``, ``data_sm``),
  decided in that order, at most one per submission;
- ``disconnect_after_pdus``: every PDU received on a connection (the bind included);
  ``disconnect_fraction``: every PDU received on a bound connection; the PDU that triggers
  either is not answered;
- ``refuse_binds`` / ``refuse_binds_for``: bind requests.
"""

from __future__ import annotations

import enum
import random
import struct
from typing import Final

import attrs

from smpp_codec.constants import CommandStatus

from .values import (
    ConfigError,
    count,
    fraction,
    optional_int,
    optional_rate,
    seconds,
    status,
    statuses,
)

S = CommandStatus

#: A command_id SMPP 3.4 does not define: the "garbage PDU" carries it.
UNKNOWN_COMMAND_ID: Final = 0x0000FFFF


class GarbageMode(enum.Enum):
    """What "sending garbage" means."""

    #: Random bytes instead of the response, starting with a ``command_length`` below 16: the
    #: peer's framing is lost for good, so the simulator closes the connection after them.
    STREAM = "stream"
    #: A well-framed PDU with an unknown ``command_id`` before the real response: the peer should
    #: answer it with ``generic_nack`` / ``ESME_RINVCMDID`` and carry on.
    PDU = "pdu"


def _error_fractions(instance: Faults, attribute: attrs.Attribute[float], value: float) -> None:
    total = (
        instance.throttle_fraction
        + instance.temporary_error_fraction
        + instance.permanent_error_fraction
    )
    if total > 1.0 + 1e-9:
        raise ConfigError(
            "throttle_fraction + temporary_error_fraction + permanent_error_fraction must not "
            f"exceed 1, got {total:g}"
        )


@attrs.frozen(kw_only=True)
class Faults:
    """Faults to inject; everything is off by default. Change them live with
    :meth:`Simulator.set_faults`. Values go through the converters of :mod:`.values`, so
    ``Faults(latency="250ms", throttle_fraction="1%")`` works."""

    #: Seconds every response is held back, plus a uniform random 0..``latency_jitter``.
    latency: float = attrs.field(default=0.0, converter=seconds)
    latency_jitter: float = attrs.field(default=0.0, converter=seconds)
    #: Fraction of submissions answered with ``throttle_status`` (ESME_RTHROTTLED).
    throttle_fraction: float = attrs.field(default=0.0, converter=fraction)
    throttle_status: int = attrs.field(default=int(S.ESME_RTHROTTLED), converter=status)
    #: Fraction of submissions answered with one of ``temporary_error_statuses`` (at random).
    temporary_error_fraction: float = attrs.field(default=0.0, converter=fraction)
    temporary_error_statuses: tuple[int, ...] = attrs.field(
        default=(int(S.ESME_RSYSERR),), converter=statuses
    )
    #: Fraction of submissions answered with one of ``permanent_error_statuses`` (at random);
    #: for submit_multi, the fraction of destinations listed in ``unsuccess_sme``.
    permanent_error_fraction: float = attrs.field(
        default=0.0, converter=fraction, validator=_error_fractions
    )
    permanent_error_statuses: tuple[int, ...] = attrs.field(
        default=(int(S.ESME_RINVDSTADR),), converter=statuses
    )
    #: Most submissions of one connection held unanswered (by latency) at once; the one beyond
    #: is answered ``ESME_RTHROTTLED`` at once. Meaningful together with ``latency``.
    max_window: int | None = attrs.field(default=None, converter=optional_int)
    #: Submissions per second accepted per system_id (a token bucket of that many tokens,
    #: refilled continuously); the excess is answered ``ESME_RTHROTTLED``.
    tps_limit: float | None = attrs.field(default=None, converter=optional_rate)
    #: Fraction of submissions never answered (the message is not stored either).
    drop_response_fraction: float = attrs.field(default=0.0, converter=fraction)
    #: Close a connection abruptly when this many PDUs have been received on it.
    disconnect_after_pdus: int | None = attrs.field(default=None, converter=optional_int)
    #: Fraction of PDUs received on a bound connection that make the simulator drop it.
    disconnect_fraction: float = attrs.field(default=0.0, converter=fraction)
    #: Refuse this many bind attempts from the moment these faults are set.
    refuse_binds: int = attrs.field(default=0, converter=count)
    #: Refuse every bind attempt for this long after these faults are set.
    refuse_binds_for: float = attrs.field(default=0.0, converter=seconds)
    refuse_bind_status: int = attrs.field(default=int(S.ESME_RBINDFAIL), converter=status)
    #: Fraction of submissions answered with garbage (see :class:`GarbageMode`).
    garbage_fraction: float = attrs.field(default=0.0, converter=fraction)
    garbage_mode: GarbageMode = attrs.field(default=GarbageMode.STREAM, converter=GarbageMode)

    @property
    def submission_faults(self) -> bool:
        """Whether any fault applies to submissions (the hot path skips them all otherwise)."""
        return bool(
            self.max_window
            or self.tps_limit
            or self.throttle_fraction
            or self.temporary_error_fraction
            or self.permanent_error_fraction
            or self.drop_response_fraction
            or self.garbage_fraction
        )

    @property
    def delays(self) -> bool:
        return bool(self.latency or self.latency_jitter)


class Fault(enum.Enum):
    """What happened to one submission (the names are the keys of ``Stats.faults``)."""

    MAX_WINDOW = "max_window"
    TPS_LIMIT = "tps_limit"
    THROTTLE = "throttle"
    TEMPORARY_ERROR = "temporary_error"
    PERMANENT_ERROR = "permanent_error"
    DROP_RESPONSE = "drop_response"
    GARBAGE = "garbage"


@attrs.frozen
class Decision:
    """A fault decided for one submission: answer ``status`` (when not None), or drop the
    response, or send garbage."""

    fault: Fault
    status: int | None = None


class TokenBucket:
    """``rate`` tokens per second, holding at most ``max(rate, 1)``; time is passed in."""

    __slots__ = ("_stamp", "_tokens", "capacity", "rate")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self._tokens = self.capacity
        self._stamp = now

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
            self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class FaultState:
    """The faults in force and their running state (refused-bind count, TPS buckets).

    Made anew by every :meth:`Simulator.set_faults`, so counts and durations start from then.
    """

    def __init__(self, faults: Faults, rng: random.Random, now: float) -> None:
        self.faults = faults
        self._rng = rng
        self._binds_left_to_refuse = faults.refuse_binds
        self._refuse_until = now + faults.refuse_binds_for
        self._buckets: dict[str, TokenBucket] = {}

    def refuse_bind(self, now: float) -> int | None:
        """The status to refuse a bind with now, or None to let it through."""
        if self._binds_left_to_refuse > 0:
            self._binds_left_to_refuse -= 1
            return self.faults.refuse_bind_status
        if now < self._refuse_until:
            return self.faults.refuse_bind_status
        return None

    def disconnect(self, received_on_connection: int, bound: bool) -> str | None:
        """Why to drop a connection on its ``received_on_connection``-th PDU, or None.
        ``disconnect_fraction`` spares connections not ``bound`` yet."""
        f = self.faults
        limit = f.disconnect_after_pdus
        if limit is not None and received_on_connection >= limit:
            return "disconnect_after_pdus"
        if bound and f.disconnect_fraction and self._rng.random() < f.disconnect_fraction:
            return "disconnect"
        return None

    def latency(self) -> float:
        f = self.faults
        if f.latency_jitter:
            return f.latency + self._rng.uniform(0.0, f.latency_jitter)
        return f.latency

    def submission(
        self, system_id: str, held: int, now: float, *, multi: bool = False
    ) -> Decision | None:
        """The fault for one submission from ``system_id`` on a connection that holds ``held``
        answers back, or None to process it normally. For a submit_multi (``multi``) permanent
        errors are decided per destination instead (:meth:`destination_error`)."""
        f = self.faults
        if f.max_window is not None and held >= f.max_window:
            return Decision(Fault.MAX_WINDOW, int(S.ESME_RTHROTTLED))
        if f.tps_limit is not None:
            bucket = self._buckets.get(system_id)
            if bucket is None:
                bucket = self._buckets[system_id] = TokenBucket(f.tps_limit, now)
            if not bucket.take(now):
                return Decision(Fault.TPS_LIMIT, int(S.ESME_RTHROTTLED))
        rng = self._rng
        permanent = 0.0 if multi else f.permanent_error_fraction
        if f.throttle_fraction or f.temporary_error_fraction or permanent:
            draw = rng.random()
            if draw < f.throttle_fraction:
                return Decision(Fault.THROTTLE, f.throttle_status)
            draw -= f.throttle_fraction
            if draw < f.temporary_error_fraction:
                return Decision(Fault.TEMPORARY_ERROR, rng.choice(f.temporary_error_statuses))
            draw -= f.temporary_error_fraction
            if draw < permanent:
                return Decision(Fault.PERMANENT_ERROR, rng.choice(f.permanent_error_statuses))
        if f.drop_response_fraction and rng.random() < f.drop_response_fraction:
            return Decision(Fault.DROP_RESPONSE)
        if f.garbage_fraction and rng.random() < f.garbage_fraction:
            return Decision(Fault.GARBAGE)
        return None

    def destination_error(self) -> int | None:
        """For one submit_multi destination: a permanent error status, or None."""
        f = self.faults
        if f.permanent_error_fraction and self._rng.random() < f.permanent_error_fraction:
            return self._rng.choice(f.permanent_error_statuses)
        return None

    def garbage(self, sequence_number: int) -> bytes:
        """The garbage to send (see :class:`GarbageMode`)."""
        if self.faults.garbage_mode is GarbageMode.PDU:
            return struct.pack(">IIII", 16, UNKNOWN_COMMAND_ID, 0, sequence_number)
        rng = self._rng
        bad_length = rng.randrange(0, 16).to_bytes(4, "big")
        return bad_length + rng.randbytes(rng.randrange(12, 61))
