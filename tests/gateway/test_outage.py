"""A failure that repeats is logged when it starts, then every ``every`` seconds with a count, and
once when it is over (smsgw/outage.py), on Trio's clock."""

from __future__ import annotations

import logging

import pytest
import trio

from smsgw.outage import Outage

log = logging.getLogger("test.outage")


async def test_a_failure_every_second_is_logged_at_its_start_then_every_reminder(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.outage")
    outage = Outage(log, "consumer-0: lease", every=30.0)
    for _ in range(70):  # 70 s of an outage, an attempt a second
        outage.failed(ConnectionError("refused"))
        await trio.sleep(1.0)
    outage.succeeded()
    outage.succeeded()  # a second success says nothing more
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("WARNING", "consumer-0: lease failed: refused"),
        ("WARNING", "consumer-0: lease still failing after 30s (30 more attempt(s)): refused"),
        ("WARNING", "consumer-0: lease still failing after 60s (30 more attempt(s)): refused"),
        ("INFO", "consumer-0: lease works again after 70s"),
    ]


async def test_a_new_failure_after_a_success_is_logged_at_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.outage")
    outage = Outage(log, "relay")
    outage.failed(TimeoutError("slow"))
    await trio.sleep(2)
    outage.succeeded()
    await trio.sleep(1)
    outage.failed(TimeoutError("slow again"))
    assert [r.getMessage() for r in caplog.records] == [
        "relay failed: slow",
        "relay works again after 2s",
        "relay failed: slow again",
    ]
