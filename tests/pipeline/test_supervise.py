"""The supervisor: restart with backoff after a failure, never after a return, never across a
cancellation (MockClock: exact times)."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from smsgw.smpp.backoff import BackoffPolicy
from smsgw.supervise import Supervisor

POLICY = BackoffPolicy(initial=0.5, maximum=4.0, multiplier=2.0, jitter=0.0, reset_after=60.0)


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_a_failing_task_is_restarted_with_growing_delays(
    mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    starts: list[float] = []
    failures: list[tuple[str, str]] = []

    async def flaky() -> None:
        starts.append(trio.current_time())
        if len(starts) <= 5:
            raise RuntimeError(f"boom {len(starts)}")

    supervisor = Supervisor(policy=POLICY, on_failure=lambda n, e: failures.append((n, str(e))))
    caplog.set_level(logging.ERROR, "smsgw.supervise")
    with trio.fail_after(100):
        await supervisor.run("flaky", flaky, context={"provider": "a"})
    # Delays 0.5, 1, 2, 4, 4 (capped) after the failures.
    assert starts == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5]
    assert supervisor.stats().failures == {"flaky": 5}
    assert supervisor.stats().total == 5
    assert failures[0] == ("flaky", "boom 1")
    record = caplog.records[0]
    assert record.task == "flaky" and record.provider == "a"  # type: ignore[attr-defined]
    assert record.exc_info is not None and "restarting in 0.50s" in record.getMessage()


async def test_the_delay_starts_over_after_a_healthy_run(
    mock_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []

    async def task() -> None:
        starts.append(trio.current_time())
        if len(starts) == 3:
            await trio.sleep(100)  # healthy for longer than reset_after, then fails
        if len(starts) <= 4:
            raise RuntimeError("boom")

    with trio.fail_after(1000):
        await Supervisor(policy=POLICY).run("t", task)
    # The third run failed at 101.5 after 100 healthy seconds: 0.5 again (not 2), then 1.
    assert starts == [0.0, 0.5, 1.5, 102.0, 103.0]


async def test_a_task_that_returns_is_not_restarted(mock_clock: trio.testing.MockClock) -> None:
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1

    await Supervisor(policy=POLICY).run("once", once)
    assert runs == 1


async def test_cancellation_stops_the_task_and_its_supervisor(
    mock_clock: trio.testing.MockClock,
) -> None:
    runs = 0

    async def failing() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("boom")

    supervisor = Supervisor(policy=POLICY)
    with trio.move_on_after(1.0) as scope:  # cancelled during the second backoff sleep
        await supervisor.run("failing", failing)
    assert scope.cancelled_caught
    assert runs == 2 and supervisor.stats().failures == {"failing": 2}


async def test_an_exception_group_from_the_tasks_nursery_is_a_failure(
    mock_clock: trio.testing.MockClock,
) -> None:
    runs = 0

    async def with_children() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                raise ValueError("child trouble")

    supervisor = Supervisor(policy=POLICY)
    await supervisor.run("group", with_children)
    assert runs == 2 and supervisor.stats().failures == {"group": 1}
