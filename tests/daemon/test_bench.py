"""The gateway benchmark runs (a tiny run: figures are reported, never judged in tests)."""

from __future__ import annotations

import math

import pytest

from smsgw.bench.gateway import Setup, SimulatorProcess, one_run

pytestmark = pytest.mark.slow


async def test_one_small_run_accounts_for_every_message() -> None:
    simulator = SimulatorProcess()
    async with simulator as port:
        result = await one_run(
            Setup("127.0.0.1", port),
            count=300,
            time_limit=60,
            label="test",
            progress=False,
            peer=simulator.pid,
        )
    assert not result.timed_out
    assert result.count == 300 and result.failed == 0
    assert result.accepted_rate > 0 and result.submitted_rate > 0 and result.receipted_rate > 0
    assert 0 <= result.p50 <= result.p99 and not math.isnan(result.p99)
    assert result.cpu_per_1000 > 0
    # The simulator answered 300 submits and sent 300 receipts: it spent CPU doing it.
    assert result.peer_cpu_per_1000 > 0 and result.cores > 0
    # Every receipt was answered: its wait is known, within the histogram's bucket bounds.
    assert 0 < result.receipt_answer_p50 <= result.receipt_answer_p99 <= 30


async def test_two_instances_on_one_redis_account_for_every_message() -> None:
    from smsgw.bench.instances import one_run as instances_run
    from smsgw.testing.redis import RedisServer

    with RedisServer.start(appendonly=False) as redis:
        async with SimulatorProcess() as port:
            result, recorded = await instances_run(
                instances=2, count=300, time_limit=60, redis_url=redis.url, smsc_port=port
            )
    assert not result.timed_out
    assert (result.count, recorded, result.failed, result.orphaned) == (300, 300, 0, 0)
    assert result.receipted_rate > 0 and result.instance_cpu_per_1000 > 0
