"""Rate limiting arithmetic: token buckets and the adaptive (AIMD) controller (pure).

Nothing here reads a clock or sleeps: every method takes ``now`` (seconds on any monotonic
clock: ``trio.current_time()`` in the gateway, chosen numbers in tests) and answers with a
number of seconds to wait. The caller sleeps and asks again.

- :class:`TokenBucket`: ``rate`` tokens per second, at most ``burst`` saved up. Over any
  interval of length ``T`` it grants at most ``burst + rate * T`` tokens.
- :class:`AimdController`: the adaptive part. Throttling answers from the SMSC cut the rate
  multiplicatively (at most once per pause window, in proportion to the share of answers that
  were throttles) and pause sending; then the rate grows back linearly while sends succeed,
  never above the configured rate (additive increase, multiplicative decrease, as TCP does).
- :class:`ProviderLimiter`: one provider's bucket driven by its controller.
- :class:`RateLimiter`: the global limit AND each provider's, granted atomically (tokens are
  taken from both or from neither).

Instances sharing an account (:mod:`smsgw.sharing`) each take a *share* of its limits
(:meth:`TokenBucket.set_share`, :meth:`ProviderLimiter.set_share`): the configured figures are
the whole account's, and the shares of all instances add up to them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .config import GatewayConfig, ProviderConfig, RateLimitConfig

__all__ = [
    "AimdController",
    "ProviderLimiter",
    "RateLimiter",
    "TokenBucket",
]

#: Float slack when comparing token counts: a caller that sleeps exactly the wait it was given
#: must be granted, even if ``tokens + rate * wait`` rounds to a hair below ``n``.
_EPSILON = 1e-9


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_share(share: float) -> None:
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share!r}")


class TokenBucket:
    """``rate`` tokens per second, up to ``burst`` saved; starts full.

    Time that appears to go backwards (``now`` below a previous ``now``) counts as no time:
    the bucket never refills, or un-refills, from a clock step.
    """

    def __init__(self, rate: float, burst: float) -> None:
        _check_positive("rate", rate)
        _check_positive("burst", burst)
        self._rate = float(rate)
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated: float | None = None
        #: The rate and burst it was made with: a share of 1 (:meth:`set_share`).
        self.full_rate = self._rate
        self.full_burst = self._burst

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def tokens(self, now: float) -> float:
        """Tokens available at ``now``."""
        self._refill(now)
        return self._tokens

    def _refill(self, now: float) -> None:
        if self._updated is not None and now > self._updated:
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        if self._updated is None or now > self._updated:
            self._updated = now

    def _check_n(self, n: float) -> None:
        if not n > 0:
            raise ValueError(f"n must be > 0, got {n!r}")
        if n > self._burst:
            # Waiting would never be enough: the bucket never holds more than ``burst``.
            raise ValueError(f"cannot take {n:g} tokens at once from a bucket of {self._burst:g}")

    def wait_time(self, n: float, now: float) -> float:
        """Seconds from ``now`` until ``n`` tokens are available (0: now); takes nothing."""
        self._check_n(n)
        missing = n - self.tokens(now)
        if missing <= _EPSILON:
            return 0.0
        return missing / self._rate

    def take(self, n: float, now: float) -> None:
        """Take ``n`` tokens that :meth:`wait_time` said are there (no check beyond that)."""
        self._refill(now)
        self._tokens -= n

    def try_acquire(self, n: float, now: float) -> float:
        """Take ``n`` tokens and return 0, or take nothing and return the seconds to wait.

        ``n`` larger than ``burst`` is a ``ValueError``: it could never be granted.
        """
        wait = self.wait_time(n, now)
        if wait == 0.0:
            self.take(n, now)
        return wait

    def set_rate(self, rate: float, now: float) -> None:
        """Change the rate from ``now`` on (tokens earned so far are kept at the old rate)."""
        _check_positive("rate", rate)
        self._refill(now)
        self._rate = float(rate)

    def drain(self, now: float) -> None:
        """Drop the saved tokens (the next ones are earned from ``now``)."""
        self._refill(now)
        self._tokens = min(self._tokens, 0.0)

    def set_share(self, share: float, now: float) -> None:
        """From ``now`` on, ``share`` (0 < share <= 1) of :attr:`full_rate` and of
        :attr:`full_burst` (a burst of at least one token); tokens saved above the new burst
        are dropped."""
        _check_share(share)
        self._refill(now)
        self._rate = self.full_rate * share
        self._burst = max(1.0, self.full_burst * share)
        self._tokens = min(self._tokens, self._burst)


class AimdController:
    """The adaptive rate of one provider, between ``floor`` and ``ceiling`` (msg/s).

    A throttling answer is evidence of overload in proportion to how many answers are
    throttles: an SMSC that is really pushed past its limit throttles most submissions, while
    one that throttles 1% of them at random is not asking for half the traffic. So a cut scales
    with the *share* of throttled answers since the previous cut (as DCTCP scales its cut with
    the share of marked packets):

    - :meth:`on_throttle`: at most one cut per ``pause`` window. With ``share`` the throttled
      fraction of the answers since the last cut (this one included; 1 when nothing else came),
      ``rate = max(floor, rate * (1 - (1 - decrease_factor) * share))`` and no sending for
      ``pause * share`` seconds. Everything throttled (``share`` 1) is the classic AIMD step:
      the rate multiplied by ``decrease_factor``, sending paused for ``pause``. Throttles
      arriving within the window do not cut again: they answer requests that were in flight.
    - :meth:`on_success`: the rate grows by ``increase_per_second`` for every second since the
      end of the last pause (counted up to each success), up to ``ceiling``. Growth is applied
      when a success is reported, so a provider that is not being used does not grow.

    Under sustained overload the first throttle may see a small share (many successes came
    before it); the next window's cut sees the real one, so the rate converges within a few
    windows. Under 1% random throttling a window's cut is ~0.5% and its pause ~1% of the
    window, which the additive growth restores at once: the rate stays near the ceiling.
    """

    def __init__(
        self,
        ceiling: float,
        *,
        decrease_factor: float = 0.5,
        pause: float = 1.0,
        increase_per_second: float,
        floor: float,
    ) -> None:
        _check_positive("ceiling", ceiling)
        _check_positive("increase_per_second", increase_per_second)
        _check_positive("floor", floor)
        if not 0 < decrease_factor <= 1:
            raise ValueError(f"decrease_factor must be in (0, 1], got {decrease_factor!r}")
        if pause < 0:
            raise ValueError(f"pause must be >= 0, got {pause!r}")
        if floor > ceiling:
            raise ValueError(f"floor {floor:g} is above ceiling {ceiling:g}")
        self.ceiling = float(ceiling)
        self.floor = float(floor)
        self.decrease_factor = float(decrease_factor)
        self.pause = float(pause)
        self.increase_per_second = float(increase_per_second)
        self._rate = self.ceiling
        self._paused_until: float | None = None
        self._window_until: float | None = None
        self._grown_at: float | None = None
        # Answers (successes and throttles) and throttles since the last cut.
        self._answers = 0
        self._throttles = 0

    @property
    def current_rate(self) -> float:
        """Messages (or segments) per second allowed now; a metric."""
        return self._rate

    def pause_remaining(self, now: float) -> float:
        """Seconds until sending may resume (0: not paused)."""
        if self._paused_until is None:
            return 0.0
        return max(0.0, self._paused_until - now)

    def on_throttle(self, now: float) -> bool:
        """A throttling answer arrived at ``now``; True when it cut the rate."""
        self._answers += 1
        self._throttles += 1
        if self._window_until is not None and now < self._window_until:
            return False
        share = self._throttles / self._answers
        self._answers = self._throttles = 0
        self._rate = max(self.floor, self._rate * (1.0 - (1.0 - self.decrease_factor) * share))
        self._window_until = now + self.pause
        self._paused_until = now + self.pause * share
        self._grown_at = self._paused_until
        return True

    def scale(self, factor: float) -> None:
        """Multiply the rate, its bounds and its growth by ``factor`` (> 0): the controller of
        a share of the account, in the same state (a rate cut by half stays cut by half)."""
        _check_positive("factor", factor)
        self.ceiling *= factor
        self.floor *= factor
        self.increase_per_second *= factor
        self._rate *= factor

    def on_success(self, now: float) -> None:
        """A submit was accepted at ``now``: grow the rate for the time since the last growth."""
        self._answers += 1
        if self._grown_at is None or self._rate >= self.ceiling:
            self._grown_at = now
            return
        if now <= self._grown_at:
            return
        self._rate = min(
            self.ceiling, self._rate + self.increase_per_second * (now - self._grown_at)
        )
        self._grown_at = now


class ProviderLimiter:
    """One provider's token bucket, its rate following the AIMD controller (when adaptive).

    A cut also drains the bucket: the tokens saved at the old rate would otherwise all be spent
    at once when the pause ends, and be throttled again.
    """

    def __init__(self, bucket: TokenBucket, aimd: AimdController | None = None) -> None:
        self.bucket = bucket
        self.aimd = aimd
        #: The share of the configured rate this limiter allows (:meth:`set_share`).
        self.share = 1.0

    def set_share(self, share: float, now: float) -> None:
        """Allow ``share`` (0 < share <= 1) of the configured rate and burst from ``now`` on.
        The adaptive rate scales with it, keeping its state (cut, paused, growing)."""
        _check_share(share)
        if share == self.share:
            return
        if self.aimd is not None:
            self.aimd.scale(share / self.share)
        self.share = share
        self.bucket.set_share(share, now)
        if self.aimd is not None:
            self.bucket.set_rate(self.aimd.current_rate, now)

    @property
    def current_rate(self) -> float:
        return self.aimd.current_rate if self.aimd is not None else self.bucket.rate

    def wait_time(self, n: float, now: float) -> float:
        pause = self.aimd.pause_remaining(now) if self.aimd is not None else 0.0
        return max(pause, self.bucket.wait_time(n, now))

    def on_throttle(self, now: float) -> None:
        if self.aimd is not None and self.aimd.on_throttle(now):
            self.bucket.set_rate(self.aimd.current_rate, now)
            self.bucket.drain(now)

    def on_success(self, now: float) -> None:
        if self.aimd is not None:
            before = self.aimd.current_rate
            self.aimd.on_success(now)
            if self.aimd.current_rate != before:
                self.bucket.set_rate(self.aimd.current_rate, now)

    @classmethod
    def from_config(cls, provider: ProviderConfig, limits: RateLimitConfig) -> ProviderLimiter:
        """The limiter of ``provider``: its ``rate``, adaptive per ``[rate_limit]``."""
        rate = provider.rate.per_second
        aimd = None
        if limits.adaptive:
            aimd = AimdController(
                rate,
                decrease_factor=limits.decrease_factor,
                pause=limits.pause,
                increase_per_second=limits.increase_per_second * rate,
                floor=limits.floor * rate,
            )
        return cls(TokenBucket(rate, provider.rate.effective_burst), aimd)


class RateLimiter:
    """The global bucket (None: no global limit) AND one :class:`ProviderLimiter` per provider.

    :meth:`try_acquire` grants from both at once or from neither, so a message refused by its
    provider's limit does not use up global capacity meanwhile.
    """

    def __init__(
        self, global_bucket: TokenBucket | None, providers: Mapping[str, ProviderLimiter]
    ) -> None:
        self.global_bucket = global_bucket
        self.providers = dict(providers)

    def try_acquire(self, provider: str, n: float, now: float) -> float:
        """Take ``n`` tokens for ``provider`` (0 returned) or the seconds to wait (nothing taken).

        ``KeyError`` for an unknown provider; ``ValueError`` if ``n`` exceeds either burst.
        """
        limiter = self.providers[provider]
        wait = limiter.wait_time(n, now)
        if self.global_bucket is not None:
            wait = max(wait, self.global_bucket.wait_time(n, now))
        if wait > 0:
            return wait
        limiter.bucket.take(n, now)
        if self.global_bucket is not None:
            self.global_bucket.take(n, now)
        return 0.0

    def on_throttle(self, provider: str, now: float) -> None:
        self.providers[provider].on_throttle(now)

    def on_success(self, provider: str, now: float) -> None:
        self.providers[provider].on_success(now)

    def current_rate(self, provider: str) -> float:
        return self.providers[provider].current_rate

    def set_shares(self, providers: Mapping[str, float], global_share: float, now: float) -> None:
        """Each named provider's share of its limit, and the global limit's share (see
        :meth:`ProviderLimiter.set_share`); providers not named keep theirs."""
        for name, share in providers.items():
            limiter = self.providers.get(name)
            if limiter is not None:
                limiter.set_share(share, now)
        if self.global_bucket is not None:
            self.global_bucket.set_share(global_share, now)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> RateLimiter:
        limits = config.rate_limit
        burst = limits.effective_burst
        global_bucket = None
        if limits.per_second is not None and burst is not None:
            global_bucket = TokenBucket(limits.per_second, burst)
        providers = {p.name: ProviderLimiter.from_config(p, limits) for p in config.providers}
        return cls(global_bucket, providers)
