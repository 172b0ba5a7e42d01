"""Reconnect delays: exponential backoff with jitter, reset after a healthy period (pure logic)."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


@attrs.frozen
class BackoffPolicy:
    """Delay before attempt n (n = 0, 1, ...): ``min(maximum, initial * multiplier**n)``, then
    reduced by up to ``jitter`` of itself at random, so that many clients cut off together do not
    reconnect together. A connection that stayed bound ``reset_after`` seconds starts again at
    ``initial``."""

    initial: float = attrs.field(default=1.0, validator=_positive)
    maximum: float = attrs.field(default=60.0, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=attrs.validators.ge(1.0))
    jitter: float = attrs.field(
        default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )
    reset_after: float = attrs.field(default=60.0, validator=attrs.validators.ge(0.0))

    def __attrs_post_init__(self) -> None:
        if self.maximum < self.initial:
            raise ValueError(f"maximum {self.maximum} is below initial {self.initial}")


class Backoff:
    """The running state of a :class:`BackoffPolicy`. ``rand`` returns floats in [0, 1): inject
    a seeded or fixed one in tests."""

    def __init__(self, policy: BackoffPolicy, rand: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self.attempt = 0
        self._rand = rand

    def next_delay(self, *, permanent: bool = False) -> float:
        """The delay before the next attempt; ``permanent`` failures wait the longest delay."""
        p = self.policy
        if permanent:
            base = p.maximum
        else:
            # Cap the exponent so a long outage cannot overflow the float.
            base = min(p.maximum, p.initial * p.multiplier ** min(self.attempt, 64))
        self.attempt += 1
        return base * (1.0 - p.jitter * self._rand())

    def connected_for(self, seconds: float) -> None:
        """Report how long the last connection stayed bound; long enough resets the backoff."""
        if seconds >= self.policy.reset_after:
            self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0
