"""The database unavailable for a while (another process holds its write lock beyond the busy
timeout, as a disk that is full does at every write) while messages are on their way: a part
the SMSC accepted is not sent again, the receipts are asked for again, and the log says it
once, not per message."""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from sqlite_lock import WriteLock, write_locked

from smsgw.config import DatabaseConfig, GatewayConfig
from smsgw.gateway import Gateway, GatewayUnavailable
from smsgw.messages import Accepted, SubmitRequest
from smsgw.model import MessageStatus
from smsgw.queue.base import Queue, QueueUnavailable
from smsgw.simulator import Faults, ReceiptConfig, SimulatorConfig

from .harness import Harness, provider, wait_status, wait_until

#: A write waits this long for the lock a test holds, then fails as "database unavailable".
DATABASE = DatabaseConfig(commit_interval=0.002, busy_timeout=0.3)


async def test_an_accepted_part_is_recorded_once_the_database_is_back_not_sent_again(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The SMSC accepts the part while the database is locked; its SMSC id cannot be written
    (the store's busy timeout passes). The processor keeps trying the write rather than
    giving the message back, which would send it again (a second SMS): one submit_sm, and the
    message ends delivered with the receipt the SMSC sent again."""
    caplog.set_level(logging.INFO)
    sim = await harness.simulator(
        SimulatorConfig(seed=1, receipts=ReceiptConfig(attempts=20, retry_delay=0.3))
    )
    config = harness.config([provider("a", sim.port)], database=DATABASE)
    gateway = await harness.gateway(config)
    # Each answer held back a second: the lock is taken while the submit_sm waits for it.
    sim.sim.set_faults(Faults(latency=1.0))
    with trio.fail_after(40):
        (accepted,) = await gateway.submit(
            [SubmitRequest(to="4915112345", source="ACME", text="hello")]
        )
        assert isinstance(accepted, Accepted)
        await wait_until(
            lambda: sim.sim.stats.pdus_received.get("submit_sm", 0) == 1, what="the submit_sm"
        )
        with write_locked(config.database_path):
            # The first write of the SMSC id fails after the busy timeout: then a while more.
            await wait_until(
                lambda: any(
                    r.name == "smsgw.processor" and r.levelno >= logging.WARNING
                    for r in caplog.records
                ),
                timeout=20,
                what="a failed write",
            )
            await trio.sleep(1.5)
        await wait_status(gateway, accepted.id, MessageStatus.DELIVERED, timeout=20)

        def lines() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "smsgw.processor"]

        await wait_until(lambda: len(lines()) >= 2, what="the processor's recovery line")
    assert sim.sim.stats.submits_accepted == 1
    assert len(lines()) == 2, lines()
    assert lines()[0].startswith("recording parts the SMSC accepted (trying again) failed")
    assert lines()[1].startswith("recording parts the SMSC accepted (trying again) works again")


async def test_receipts_and_mos_the_database_cannot_take_are_asked_for_again_logged_once(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """While the database is locked, every receipt and MO is answered with a temporary error
    (the SMSC sends it again: nothing is lost), and the log says so once per kind, then once
    when it works again, not once per PDU."""
    caplog.set_level(logging.INFO)
    sim = await harness.simulator(
        SimulatorConfig(
            seed=1,
            receipts=ReceiptConfig(delay=1.0, attempts=50, retry_delay=0.3),
            mo_attempts=50,
            mo_retry_delay=0.3,
        )
    )
    config = harness.config([provider("a", sim.port)], database=DATABASE)
    gateway = await harness.gateway(config)
    count = 10
    with trio.fail_after(60):
        results = await gateway.submit(
            [SubmitRequest(to=f"49151{n:05d}", source="ACME", text="hi") for n in range(count)]
        )
        ids = [result.id for result in results if isinstance(result, Accepted)]
        assert len(ids) == count
        await wait_until(lambda: gateway.stats().submitted == count, what="all submitted")
        lock = WriteLock(config.database_path)
        async with trio.open_nursery() as mos:
            for n in range(count):
                mos.start_soon(
                    functools.partial(
                        sim.sim.send_mo,
                        source_addr=f"49170{n:05d}",
                        destination_addr="1234",
                        text=f"mo {n}",
                        timeout=40,
                    )
                )
            await wait_until(
                lambda: (
                    sim.sim.stats.receipts_failed >= count and sim.sim.stats.mos_failed >= count
                ),
                timeout=20,
                what="receipts and MOs refused",
            )
            await trio.sleep(1.0)  # more tries of each
            lock.release()
        for message_id in ids:
            await wait_status(gateway, message_id, MessageStatus.DELIVERED, timeout=20)
        await wait_until(lambda: gateway.stats().mo_received == count, what="every MO stored")
    assert sim.sim.stats.mos_acked == count
    assert {m.text for m in (await gateway.store.list_inbound()).items} == {
        f"mo {n}" for n in range(count)
    }
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name in ("smsgw.dlr", "smsgw.mo")
    ]
    assert len(warnings) == 2, warnings
    assert (
        sum(w.startswith("recording receipts (the SMSC sends them again) failed") for w in warnings)
        == 1
    )
    assert sum(w.startswith("storing inbound messages") for w in warnings) == 1
    recovered = [
        r.getMessage()
        for r in caplog.records
        if "works again" in r.getMessage() and r.name in ("smsgw.dlr", "smsgw.mo")
    ]
    assert len(recovered) == 2, recovered


class _PurgeFails:
    """The gateway's real queue, except that taking messages out fails, as when the disk
    fills between the enqueue and the purge."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    async def purge(self, ids: Sequence[str]) -> int:
        raise QueueUnavailable("disk full (injected)")


class _GatewayWhosePurgeFails(Gateway):
    @asynccontextmanager
    async def _open_queue(self, config: GatewayConfig) -> AsyncIterator[Queue]:
        async with super()._open_queue(config) as queue:
            yield _PurgeFails(queue)  # type: ignore[misc]


async def test_a_refused_message_left_in_the_queue_is_never_sent(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The queue took the messages, the database did not, and the queue could not give them
    back: the client was told 503 (and may send them again), so they must not go out. The
    processor drops them when it leases them."""
    sim = await harness.simulator()
    config = harness.config([provider("a", sim.port)], database=DATABASE)
    gateway = _GatewayWhosePurgeFails(config, rand=random.Random(7), deliver_webhooks=False)
    with trio.fail_after(30):
        await harness.nursery.start(gateway.run)
        harness.gateways.append(gateway)
        with (
            write_locked(config.database_path),
            pytest.raises(GatewayUnavailable, match="database did not take"),
        ):
            await gateway.submit(
                [SubmitRequest(to=f"49151{n:05d}", source="ACME", text="no") for n in range(3)]
            )
        assert any(
            "3 refused message(s) left in the queue" in r.getMessage() for r in caplog.records
        )
        assert gateway.stats().accepted == 0
        while True:  # leased and dropped
            depth = await gateway.queue_depth()
            if depth.ready + depth.delayed + depth.leased == 0:
                break
            await trio.sleep(0.02)
        # A message that is sent after all would be on its way now: accepted, then recorded.
        (accepted,) = await gateway.submit([SubmitRequest(to="4915100", source="ACME", text="yes")])
        assert isinstance(accepted, Accepted)
        await wait_status(gateway, accepted.id, MessageStatus.DELIVERED)
    assert sim.sim.stats.submits_accepted == 1  # only the accepted one
    assert (await gateway.store.list_messages()).items[0].id == accepted.id


async def test_a_receipt_that_came_first_closes_the_part_when_its_record_is_given_up(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The SMSC sends the receipt before its submit_sm_resp (it was parked), then the
    database stays locked longer than the processor keeps trying to record the part
    (``visibility_timeout``): the message goes back to the queue. The receipt is kept and
    recorded once the database is back, so the part is closed and not sent again."""
    caplog.set_level(logging.INFO)
    sim = await harness.simulator(
        SimulatorConfig(seed=1, receipts=ReceiptConfig(before_response=1.0))
    )
    config = harness.config(
        [provider("a", sim.port)], database=DATABASE, queue={"visibility_timeout": 1.0}
    )
    gateway = await harness.gateway(config)
    sim.sim.set_faults(Faults(latency=0.5))  # the receipt comes 0.5 s before the answer
    with trio.fail_after(40):
        (accepted,) = await gateway.submit(
            [SubmitRequest(to="4915112345", source="ACME", text="hello")]
        )
        assert isinstance(accepted, Accepted)
        await wait_until(lambda: gateway.stats().receipts_parked == 1, what="the receipt parked")
        with write_locked(config.database_path):
            await wait_until(
                lambda: gateway.stats().processing_errors >= 1, timeout=20, what="given up"
            )
        view = await wait_status(gateway, accepted.id, MessageStatus.DELIVERED, timeout=20)
        await trio.sleep(1.5)  # the message is leased again, and found closed
        await wait_until(lambda: gateway.stats().in_flight == 0, what="the message finished")
    assert sim.sim.stats.submits_accepted == 1
    assert view.parts[0].smsc_id is None  # its answer was never recorded; its receipt was
