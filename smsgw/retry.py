"""What to do after a failed submit: the error classification and the retry delays (pure).

:func:`classify` maps an SMSC ``command_status`` to an :class:`Outcome`; :func:`classify_exception`
does the same for the exceptions a submit can raise (looked up by class name, so this module does
not import the client); :class:`RetryPolicy` gives the delay before the next attempt.

How the processor is meant to act on each outcome (docs/configuration.md has the full table):

- ``RETRY``: the trouble is temporary. Wait :meth:`RetryPolicy.next_delay` and try again from
  the first candidate of the route; ``None`` means attempts or validity are exhausted: fail the
  message (dead-letter it).
- ``THROTTLE``: the SMSC wants us slower. Tell the rate limiter (AIMD cut and pause) and put the
  message back after the pause; this does not count as a failed attempt (the message was fine).
- ``FAILOVER``: this provider cannot take the message now. Send it to the next untried
  candidate (:func:`smsgw.routing.next_provider`); when none is left, handle it as ``RETRY``
  (provider trouble passes; the attempt limit still bounds it).
- ``FAIL``: the message itself is at fault; no provider or retry will change that. Fail it now.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Protocol

import attrs

from smpp_codec import CommandStatus

from .config_loader import (
    Problems,
    at_least,
    at_most,
    between,
    duration_field,
    positive_duration,
)
from .durations import format_duration

__all__ = [
    "DEFAULT_OUTCOMES",
    "UNKNOWN_STATUS_OUTCOME",
    "Outcome",
    "RetryPolicy",
    "classify",
    "classify_exception",
]


class Outcome(enum.Enum):
    """The four things that can happen to a message after a failed submit."""

    RETRY = "retry"
    FAIL = "fail"
    FAILOVER = "failover"
    THROTTLE = "throttle"


S = CommandStatus
_R, _F, _FO, _T = Outcome.RETRY, Outcome.FAIL, Outcome.FAILOVER, Outcome.THROTTLE

#: The default classification of every status SMPP 3.4 defines (ESME_ROK is not an error).
DEFAULT_OUTCOMES: Final[Mapping[int, Outcome]] = MappingProxyType(
    {
        # The SMSC wants us slower: the rate controller reacts.
        S.ESME_RTHROTTLED: _T,
        S.ESME_RMSGQFUL: _T,
        # The SMSC's own temporary trouble, or a session not in the right state: try again.
        S.ESME_RSYSERR: _R,
        S.ESME_RX_T_APPN: _R,
        S.ESME_RSUBMITFAIL: _R,
        S.ESME_RDELIVERYFAILURE: _R,
        S.ESME_RUNKNOWNERR: _R,
        S.ESME_RINVBNDSTS: _R,
        S.ESME_RALYBND: _R,
        # The provider (account, bind, supported commands/parameters), not the message, is at
        # fault: another provider may take it.
        S.ESME_RBINDFAIL: _FO,
        S.ESME_RINVPASWD: _FO,
        S.ESME_RINVSYSID: _FO,
        S.ESME_RINVSYSTYP: _FO,
        S.ESME_RINVCMDID: _FO,
        S.ESME_ROPTPARNOTALLWD: _FO,
        # The message itself is wrong (addresses, lengths, flags, encoding, times): no retry
        # or provider will accept it as it is.
        S.ESME_RINVMSGLEN: _F,
        S.ESME_RINVCMDLEN: _F,
        S.ESME_RINVPRTFLG: _F,
        S.ESME_RINVREGDLVFLG: _F,
        S.ESME_RINVSRCADR: _F,
        S.ESME_RINVDSTADR: _F,
        S.ESME_RINVMSGID: _F,
        S.ESME_RCANCELFAIL: _F,
        S.ESME_RREPLACEFAIL: _F,
        S.ESME_RINVSERTYP: _F,
        S.ESME_RINVNUMDESTS: _F,
        S.ESME_RINVDLNAME: _F,
        S.ESME_RINVDESTFLAG: _F,
        S.ESME_RINVSUBREP: _F,
        S.ESME_RINVESMCLASS: _F,
        S.ESME_RCNTSUBDL: _F,
        S.ESME_RINVSRCTON: _F,
        S.ESME_RINVSRCNPI: _F,
        S.ESME_RINVDSTTON: _F,
        S.ESME_RINVDSTNPI: _F,
        S.ESME_RINVREPFLAG: _F,
        S.ESME_RINVNUMMSGS: _F,
        S.ESME_RINVSCHED: _F,
        S.ESME_RINVEXPIRY: _F,
        S.ESME_RINVDFTMSGID: _F,
        S.ESME_RX_P_APPN: _F,
        S.ESME_RX_R_APPN: _F,
        S.ESME_RQUERYFAIL: _F,
        S.ESME_RINVOPTPARSTREAM: _F,
        S.ESME_RINVPARLEN: _F,
        S.ESME_RMISSINGOPTPARAM: _F,
        S.ESME_RINVOPTPARAMVAL: _F,
    }
)

#: A status the table does not know (vendor-specific codes, 0x400-0x4FF and others). A retry is
#: bounded by the attempt limit, while failing could lose a message another try would deliver;
#: a provider whose codes mean otherwise maps them in its ``status_map``.
UNKNOWN_STATUS_OUTCOME: Final = Outcome.RETRY


def classify(
    command_status: int, *, provider_overrides: Mapping[int, Outcome] = MappingProxyType({})
) -> Outcome:
    """The outcome of a request answered with ``command_status``.

    ``provider_overrides`` (the provider's ``status_map``) wins over :data:`DEFAULT_OUTCOMES`,
    which wins over :data:`UNKNOWN_STATUS_OUTCOME`. Raises ``ValueError`` for ESME_ROK, which
    is not a failure.
    """
    if command_status == S.ESME_ROK:
        raise ValueError("ESME_ROK is a success, not an error to classify")
    found = provider_overrides.get(command_status)
    if found is not None:
        return found
    return DEFAULT_OUTCOMES.get(command_status, UNKNOWN_STATUS_OUTCOME)


class _ByStatus(enum.Enum):
    """Marker: classify this exception by its ``command_status`` attribute."""

    BY_STATUS = "by_status"


_BY_STATUS = _ByStatus.BY_STATUS
#: "Sent" decides: a request that reached the wire timed out (RETRY: the SMSC is slow), or the
#: time ran out waiting for a bind or a window slot (FAILOVER: the provider is not serving).
_BY_SENT: Final = (Outcome.RETRY, Outcome.FAILOVER)

#: Transport and client exceptions by class name (the first name found along the MRO wins).
#: The names are those of ``smsgw.smpp.errors`` and of Trio and the standard library.
_EXCEPTION_OUTCOMES: Final[Mapping[str, Outcome | _ByStatus | tuple[Outcome, Outcome]]] = (
    MappingProxyType(
        {
            # smsgw.smpp.errors
            "ThrottledError": _BY_STATUS,
            "SubmitRejected": _BY_STATUS,
            "RequestTimeout": _BY_SENT,
            "ConnectionLost": Outcome.RETRY,
            "InvalidResponse": Outcome.RETRY,
            "SessionClosed": Outcome.FAILOVER,
            "BindError": Outcome.FAILOVER,
            # trio and the standard library
            "TooSlowError": Outcome.RETRY,
            "TimeoutError": Outcome.RETRY,
            "BrokenResourceError": Outcome.RETRY,
            "ConnectionRefusedError": Outcome.FAILOVER,
            "ConnectionError": Outcome.RETRY,
        }
    )
)


def classify_exception(
    exc: BaseException, *, provider_overrides: Mapping[int, Outcome] = MappingProxyType({})
) -> Outcome | None:
    """The outcome of a submit that raised ``exc``, or ``None`` for an exception this table
    does not know (a bug, most likely: the caller should let it propagate, not retry it).

    Rejections carrying a ``command_status`` go through :func:`classify` (with the provider's
    overrides); ``RequestTimeout`` looks at its ``sent`` flag; the rest is by class name.
    """
    for klass in type(exc).__mro__:
        rule = _EXCEPTION_OUTCOMES.get(klass.__name__)
        if rule is None:
            continue
        if rule is _BY_STATUS:
            status = getattr(exc, "command_status", None)
            if not isinstance(status, int) or status == S.ESME_ROK:
                return UNKNOWN_STATUS_OUTCOME
            return classify(status, provider_overrides=provider_overrides)
        if isinstance(rule, tuple):
            sent, not_sent = rule
            return sent if getattr(exc, "sent", True) else not_sent
        assert isinstance(rule, Outcome)
        return rule
    return None


class RandomSource(Protocol):
    """What :meth:`RetryPolicy.next_delay` needs of a random generator (``random.Random``)."""

    def random(self) -> float: ...


def _check_policy(policy: RetryPolicy) -> None:
    if policy.max_delay < policy.initial_delay:
        raise Problems(
            [
                (
                    "max_delay",
                    f"must be >= initial_delay ({format_duration(policy.initial_delay)}), "
                    f"got {format_duration(policy.max_delay)}",
                )
            ]
        )


@attrs.frozen
class RetryPolicy:
    """Delays between attempts of one message: exponential, capped, with jitter.

    The delay after attempt ``n`` (1 = the first attempt failed) is
    ``min(max_delay, initial_delay * multiplier ** (n - 1))``, then shortened by up to
    ``jitter`` of itself at random, so messages failed together by one outage do not all
    come back together. Shortened, never lengthened: ``max_delay`` is a real bound.
    It is also the ``[retry]`` section of the configuration.
    """

    #: Submits of one message, the first included; after the last, the message fails.
    max_attempts: int = attrs.field(default=5, validator=[at_least(1), at_most(1000)])
    initial_delay: float = duration_field(5.0, validator=positive_duration())
    multiplier: float = attrs.field(default=2.0, validator=[at_least(1.0), at_most(100.0)])
    max_delay: float = duration_field(600.0, validator=positive_duration())
    jitter: float = attrs.field(default=0.2, validator=between(0.0, 1.0))

    def __attrs_post_init__(self) -> None:
        _check_policy(self)

    def next_delay(
        self,
        attempt: int,
        rng: RandomSource | None = None,
        *,
        remaining_validity: float | None = None,
    ) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), or ``None`` when
        no retry should be made: ``attempt`` reached ``max_attempts``, or the message's validity
        (``remaining_validity`` seconds left, None = no limit) would pass before the retry.

        ``rng`` draws the jitter (``random.Random(seed)`` in tests); None uses the module's.
        """
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        if attempt >= self.max_attempts:
            return None
        try:
            base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        except OverflowError:  # far past max_delay anyway
            base = self.max_delay
        draw = (rng or random).random()
        delay = base * (1.0 - self.jitter * draw)
        if remaining_validity is not None and delay >= remaining_validity:
            return None
        return delay
