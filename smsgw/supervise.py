"""Run a long-lived task forever: when it fails, log why, count it, and restart it with backoff.

Every long-running task of the gateway (queue consumers, the inbound dispatcher, timers) runs
under :meth:`Supervisor.run`. The rules:

- A task that *returns* is done (a consumer returns when the gateway drains): no restart.
- A task that raises an ``Exception`` (an exception group from its own nursery included) is
  logged with its name, context fields and traceback, counted, and started again after a delay
  from :class:`smsgw.smpp.backoff.Backoff`: exponential with jitter, back to the first delay
  once the task had run ``reset_after`` seconds without failing. A bug that fails a task at
  once therefore costs one log line per ``maximum`` seconds, not a busy loop.
- Cancellation is never caught (``trio.Cancelled`` is a ``BaseException``), so cancelling the
  owning nursery stops the task and its supervisor at once, also during the backoff sleep.

Time is Trio's (``trio.current_time`` / ``trio.sleep``), so ``MockClock`` drives it in tests.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

import attrs
import trio

from smsgw.smpp.backoff import Backoff, BackoffPolicy

__all__ = ["DEFAULT_POLICY", "Supervisor", "SupervisorStats"]

log = logging.getLogger("smsgw.supervise")

#: Restart delays: 0.5 s doubling up to 30 s, reset after a minute of healthy running.
DEFAULT_POLICY = BackoffPolicy(
    initial=0.5, maximum=30.0, multiplier=2.0, jitter=0.2, reset_after=60.0
)


@attrs.frozen
class SupervisorStats:
    """Failures per task name since the supervisor was made (for metrics)."""

    failures: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.failures.values())


class Supervisor:
    """Runs tasks under the rules of the module docstring and counts their failures.

    ``rand`` returns floats in [0, 1) for the backoff jitter (inject a fixed one in tests);
    ``on_failure`` is called with the task name and the exception after each failure (a metric
    hook).
    """

    def __init__(
        self,
        *,
        policy: BackoffPolicy = DEFAULT_POLICY,
        rand: Callable[[], float] = random.random,
        on_failure: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self.policy = policy
        self._rand = rand
        self._on_failure = on_failure
        self._failures: Counter[str] = Counter()

    def stats(self) -> SupervisorStats:
        return SupervisorStats(MappingProxyType(dict(self._failures)))

    async def run(
        self,
        name: str,
        task: Callable[[], Awaitable[object]],
        *,
        context: Mapping[str, object] = MappingProxyType({}),
    ) -> None:
        """Run ``task()`` until it returns; restart it after each failure (module docstring).

        ``context`` fields go into the failure's log record (``provider=...``, ``consumer=...``).
        """
        backoff = Backoff(self.policy, self._rand)
        while True:
            started = trio.current_time()
            try:
                await task()
            except Exception as exc:
                self._failures[name] += 1
                backoff.connected_for(trio.current_time() - started)
                delay = backoff.next_delay()
                log.exception(
                    "task %s failed (%d so far); restarting in %.2fs",
                    name,
                    self._failures[name],
                    delay,
                    extra={"task": name, **context},
                )
                if self._on_failure is not None:
                    self._on_failure(name, exc)
                await trio.sleep(delay)
            else:
                return
