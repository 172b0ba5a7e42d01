"""A wall clock the tests move by hand (stores, queues and deliverers take ``clock=``)."""

from __future__ import annotations

import attrs

#: The fake clock's epoch: a plausible wall-clock time.
START = 1_700_000_000.0


@attrs.define
class FakeClock:
    """Wall-clock epoch seconds that move only when told to."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
