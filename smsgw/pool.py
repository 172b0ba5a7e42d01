"""The pure decisions of a provider's connection pool: which connection takes a submit, what the
recent outcomes were, and whether the provider is healthy.

No Trio here: time is a number passed in, so every rule is tested without sockets or clocks.
:mod:`smsgw.providers` runs the pools and calls these.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import attrs

from .retry import Outcome, classify_exception

__all__ = [
    "HealthPolicy",
    "RecentCounts",
    "Sample",
    "SlidingCounter",
    "is_healthy",
    "pick_connection",
    "sample_for",
]


def pick_connection(free: Sequence[int], start: int) -> int | None:
    """The index of the connection that takes the next submit, or None when none can.

    ``free[i]`` is the free window of connection ``i`` (0 or less: full, or not bound). The one
    with the most free window wins, so the load spreads over the pool; among equals the first
    found scanning from ``start`` (cyclically) wins, so a caller that moves ``start`` past its
    last pick rotates through tied connections instead of always loading the first.
    """
    n = len(free)
    best: int | None = None
    best_free = 0
    for k in range(n):
        i = (start + k) % n
        if free[i] > best_free:
            best, best_free = i, free[i]
    return best


class Sample(enum.Enum):
    """What one event says about a provider (for the sliding error window)."""

    #: A submit answered ESME_ROK.
    OK = 0
    #: A submit failed because of the provider or the link (a RETRY or FAILOVER outcome).
    ERROR = 1
    #: A submit the SMSC refused because of the message (a FAIL outcome): the provider works.
    REJECTED = 2
    #: A submit answered ESME_RTHROTTLED / ESME_RMSGQFUL: the provider wants us slower.
    THROTTLED = 3
    #: A connection attempt or a bound link failed (the connection went to backoff).
    LINK = 4


def sample_for(
    exc: BaseException, *, provider_overrides: Mapping[int, Outcome] = MappingProxyType({})
) -> Sample:
    """How a failed submit counts, by the retry classifier's verdict (with the provider's
    ``status_map``), so health and retry agree on whose fault an error was. An exception the
    classifier does not know counts as an error."""
    outcome = classify_exception(exc, provider_overrides=provider_overrides)
    if outcome is Outcome.THROTTLE:
        return Sample.THROTTLED
    if outcome is Outcome.FAIL:
        return Sample.REJECTED
    return Sample.ERROR


@attrs.frozen
class RecentCounts:
    """Events of the last :attr:`HealthPolicy.window` seconds, by :class:`Sample`."""

    ok: int = 0
    errors: int = 0
    rejected: int = 0
    throttled: int = 0
    link_errors: int = 0

    @property
    def samples(self) -> int:
        """Submits that tell whether the provider works: answered (ok or rejected) or failed.
        Throttled submits are left out: slowing down is the rate limiter's business."""
        return self.ok + self.errors + self.rejected

    @property
    def error_rate(self) -> float:
        """``errors / samples`` (0.0 without samples)."""
        return self.errors / self.samples if self.samples else 0.0


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value}")


@attrs.frozen
class HealthPolicy:
    """When a provider counts as healthy for routing (see :func:`is_healthy`).

    - ``window``: seconds of history the error rate is computed over (kept in ``buckets``
      steps of ``window / buckets`` seconds, so memory stays constant at any traffic).
    - ``max_error_rate``: at or above this share of errors among the recent samples the
      provider is unhealthy.
    - ``min_samples``: below this many recent samples the rate is not trusted (one failure
      out of one submit does not condemn a provider).
    """

    window: float = attrs.field(default=60.0, validator=_positive)
    max_error_rate: float = attrs.field(
        default=0.5, validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)]
    )
    min_samples: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    buckets: int = attrs.field(default=60, validator=attrs.validators.ge(1))


def is_healthy(bound: int, recent: RecentCounts, policy: HealthPolicy) -> bool:
    """The routing rule: at least one bound connection, and, once there are ``min_samples``
    recent samples, an error rate below ``max_error_rate``."""
    if bound < 1:
        return False
    if recent.samples < policy.min_samples:
        return True
    return recent.error_rate < policy.max_error_rate


class SlidingCounter:
    """Counts of :class:`Sample` over the last ``span`` seconds, in ``buckets`` time steps.

    An event at time ``t`` falls in step ``floor(t / (span / buckets))``; :meth:`counts` at
    ``now`` sums the current step and the ``buckets - 1`` before it. So the window is ``span``
    seconds wide, give or take one step: exact enough for a health rule, and O(1) in memory
    and time per event however many submits a second go through. ``now`` never goes back
    (it is ``trio.current_time()``).
    """

    __slots__ = ("_counts", "_n", "_steps", "resolution", "span")

    def __init__(self, span: float, buckets: int = 60) -> None:
        if not span > 0 or math.isinf(span):
            raise ValueError(f"span must be a finite number > 0, got {span}")
        if buckets < 1:
            raise ValueError(f"buckets must be >= 1, got {buckets}")
        self.span = span
        self.resolution = span / buckets
        self._n = buckets
        #: The step each ring position holds (None: never used).
        self._steps: list[int | None] = [None] * buckets
        self._counts = [[0] * len(Sample) for _ in range(buckets)]

    def step(self, now: float) -> int:
        return math.floor(now / self.resolution)

    def add(self, now: float, sample: Sample, n: int = 1) -> None:
        step = self.step(now)
        pos = step % self._n
        counts = self._counts[pos]
        if self._steps[pos] != step:
            self._steps[pos] = step
            for i in range(len(counts)):
                counts[i] = 0
        counts[sample.value] += n

    def counts(self, now: float) -> RecentCounts:
        step = self.step(now)
        oldest = step - self._n
        totals = [0] * len(Sample)
        for pos, held in enumerate(self._steps):
            if held is not None and oldest < held <= step:
                for i, c in enumerate(self._counts[pos]):
                    totals[i] += c
        return RecentCounts(
            ok=totals[Sample.OK.value],
            errors=totals[Sample.ERROR.value],
            rejected=totals[Sample.REJECTED.value],
            throttled=totals[Sample.THROTTLED.value],
            link_errors=totals[Sample.LINK.value],
        )
