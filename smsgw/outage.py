"""Logging a failure that repeats, without a line per attempt.

A loop that retries every second (a consumer leasing from Redis, the receipt relay's reader,
the MO sweep) would log a warning per attempt for as long as Redis is down: thousands of lines
that hide everything else. :class:`Outage` logs the first failure, then at most one reminder
every ``every`` seconds saying for how long and how many attempts failed, and one line when an
attempt works again.
"""

from __future__ import annotations

import logging

import trio

__all__ = ["REMIND_EVERY", "Outage"]

#: Seconds between the reminders of a failure that goes on.
REMIND_EVERY = 30.0


class Outage:
    """The failures of one repeated operation, ``what`` (``"consumer-0: lease"``), logged to
    ``log`` (times on Trio's clock)."""

    def __init__(self, log: logging.Logger, what: str, *, every: float = REMIND_EVERY) -> None:
        self._log = log
        self.what = what
        self.every = every
        #: When the failures began (None: the last attempt worked).
        self.since: float | None = None
        self._reported_at = 0.0
        #: Attempts failed since the last line logged.
        self._unreported = 0

    def failed(self, error: BaseException, **extra: object) -> None:
        """An attempt failed with ``error``: logged if it is the first, or a reminder is due."""
        now = trio.current_time()
        if self.since is None:
            self.since = self._reported_at = now
            self._unreported = 0
            self._log.warning("%s failed: %s", self.what, error, extra=extra)
            return
        self._unreported += 1
        if now - self._reported_at >= self.every:
            self._log.warning(
                "%s still failing after %.0fs (%d more attempt(s)): %s",
                self.what,
                now - self.since,
                self._unreported,
                error,
                extra=extra,
            )
            self._reported_at = now
            self._unreported = 0

    def succeeded(self, **extra: object) -> None:
        """An attempt worked: logged if failures came before it."""
        if self.since is None:
            return
        self._log.info(
            "%s works again after %.0fs", self.what, trio.current_time() - self.since, extra=extra
        )
        self.since = None
