"""Several gateway instances on one Redis queue, binding with the same SMSC account: the SMSC
sends each receipt on whichever session of the account it likes, so receipts reach instances
that did not send their message. The receipt relay (smsgw/receipt_relay.py) brings each to the
instance that can record it. A real Redis, a real simulator, real gateways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from smsgw.config import GatewayConfig, GatewaySection, QueueConfig, RetryPolicy
from smsgw.gateway import Gateway
from smsgw.messages import Accepted, SubmitRequest
from smsgw.model import MessageStatus
from smsgw.processor import SHARED_ROW
from smsgw.queue.sqlite import open_sqlite_queue
from smsgw.simulator import Faults, IdFormat, ReceiptConfig, ReceiptIdForm, SimulatorConfig

from .harness import (
    Backend,
    Harness,
    part_history,
    provider,
    wait_dead_letters,
    wait_status,
    wait_until,
)

S = MessageStatus


@pytest.fixture
def redis_harness(nursery: trio.Nursery, tmp_path: Path, redis_server: Any) -> Harness:
    return Harness(nursery, tmp_path, Backend("redis", redis_server.url))


def instance(
    harness: Harness, name: str, queue: QueueConfig, port: int, **kw: Any
) -> GatewayConfig:
    """Instance ``name`` of a deployment: its own state directory, the shared queue, and the
    provider on the simulator at ``port`` (every instance binds with the same account, which
    allows two connections: one each)."""
    config = harness.config([provider("smsc", port, **{"connections": 2, **kw})])
    section = GatewaySection(state_dir=harness.tmp_path / name, drain_grace=2.0, instance_id=name)
    return attrs.evolve(config, gateway=section, queue=queue)


async def submit(gateway: Gateway, count: int) -> list[str]:
    results = await gateway.submit(
        [SubmitRequest(to=f"4915112{n:04d}", source="ACME", text=f"n{n}") for n in range(count)]
    )
    return [r.id for r in results if isinstance(r, Accepted)]


async def statuses(gateways: list[Gateway], ids: list[str]) -> dict[str, set[S]]:
    """Each message's status in every instance that has its row."""
    out: dict[str, set[S]] = {}
    for message_id in ids:
        for gateway in gateways:
            view = await gateway.message(message_id)
            if view is not None:
                out.setdefault(message_id, set()).add(view.status)
    return out


async def settled(gateways: list[Gateway]) -> None:
    """Until each instance keeps its one connection of the account, bound: the first to start
    took both and has given the other's back (a receipt in flight on a connection that
    unbinds may come again on another: the counts below would be off)."""

    def one_each() -> bool:
        return all(
            (h.kept, h.bound) == (1, 1) for h in (g.providers.health("smsc") for g in gateways)
        )

    await wait_until(one_each, what="one connection each")


def total(gateways: list[Gateway], field: str) -> int:
    return sum(getattr(g.stats(), field) for g in gateways)


async def test_every_receipt_is_recorded_whichever_instance_it_reaches(
    redis_harness: Harness,
) -> None:
    sim = await redis_harness.simulator()
    queue = redis_harness.backend.queue()
    a = await redis_harness.gateway(instance(redis_harness, "a", queue, sim.port))
    b = await redis_harness.gateway(instance(redis_harness, "b", queue, sim.port))
    gateways = [a, b]
    with trio.fail_after(30):
        await settled(gateways)
        ids = await submit(a, 100)
        await wait_until(lambda: total(gateways, "receipts") == 100, what="100 receipts")
        # The instance that sent a message records its receipt: "delivered" in some instance.
        while True:
            seen = await statuses(gateways, ids)
            if all(S.DELIVERED in seen.get(i, set()) for i in ids):
                break
            await trio.sleep(0.05)
    assert total(gateways, "orphaned_receipts") == 0
    # Every relayed receipt was matched by exactly one instance.
    assert total(gateways, "receipts_relayed") == total(gateways, "receipts_relay_matched")
    # "b" wrote rows for the messages "a" accepted and it sent, a batch at a time: not taken
    # for rows lost in a crash.
    assert total(gateways, "rows_rebuilt") == 0
    sent_by_b = [v for v in [await b.message(i) for i in ids] if v is not None]
    assert sent_by_b, "b sent none of the messages"
    for view in sent_by_b:
        assert view.events[0].reason == SHARED_ROW


async def test_receipts_relayed_while_the_sender_was_down_are_recorded_when_it_is_back(
    redis_harness: Harness,
) -> None:
    # Receipts come 3s after submission: by then "a" has stopped, so every one of them goes
    # to "b", the only session bound; "b" cannot match them and relays them.
    sim = await redis_harness.simulator(SimulatorConfig(seed=2, receipts=ReceiptConfig(delay=3.0)))
    queue = redis_harness.backend.queue()
    config_a = instance(redis_harness, "a", queue, sim.port, early_receipt_park=20.0)
    config_b = instance(redis_harness, "b", queue, sim.port, early_receipt_park=20.0)
    a = await redis_harness.gateway(config_a)
    with trio.fail_after(30):
        ids = await submit(a, 20)
        await wait_until(lambda: a.stats().submitted == 20, what="20 submitted by a")
        await a.drain(1.0)
        b = await redis_harness.gateway(config_b)
        await wait_until(lambda: b.stats().receipts_relayed == 20, what="20 relayed by b")
        assert b.stats().receipts_relay_matched == 0
        # "a" again (same instance_id, same state directory): it reads on from its cursor.
        again = await redis_harness.gateway(config_a)
        await wait_until(
            lambda: again.stats().receipts_relay_matched == 20, what="20 matched by a again"
        )
        seen = await statuses([again], ids)
    assert all(seen[i] == {S.DELIVERED} for i in ids)
    assert again.stats().receipts == 0  # none came from the SMSC to this run of "a"
    assert total([a, b, again], "orphaned_receipts") == 0


async def test_a_receipt_no_instance_can_match_is_one_orphan(redis_harness: Harness) -> None:
    # Hex ids in responses, decimal ids in receipts, and the provider is not told: no instance
    # can match any receipt.
    sim = await redis_harness.simulator(
        SimulatorConfig(
            seed=1, id_format=IdFormat.HEX, receipts=ReceiptConfig(id_form=ReceiptIdForm.DECIMAL)
        )
    )
    queue = redis_harness.backend.queue()
    gateways = [
        await redis_harness.gateway(
            instance(redis_harness, name, queue, sim.port, early_receipt_park=0.3)
        )
        for name in ("a", "b")
    ]
    with trio.fail_after(30):
        await settled(gateways)
        await submit(gateways[0], 12)
        await wait_until(lambda: total(gateways, "receipts") == 12, what="12 receipts")
        # Counted once each, by the instance the SMSC sent it to, after its park time.
        await wait_until(lambda: total(gateways, "orphaned_receipts") == 12, what="12 orphans")
        await trio.sleep(0.5)  # and not once more by the other instance
    assert total(gateways, "orphaned_receipts") == 12
    assert total(gateways, "receipts_relayed") == 12
    assert total(gateways, "receipts_relay_matched") == 0


async def test_a_dead_letter_replayed_elsewhere_is_sent_again_by_the_instance_that_failed_it(
    harness: Harness,
) -> None:
    # Every message fails (the SMSC refuses them all) and is dead-lettered. The SMSC recovers
    # and the dead letters are replayed in the queue by someone else: another instance of a
    # shared queue, whose database does not hold the failed parts (here, another connection to
    # the same queue file). The instance that failed them must send them again, not take its
    # "failed" rows for a dead-lettering a crash interrupted.
    sim = await harness.simulator(
        SimulatorConfig(seed=1, faults=Faults(permanent_error_fraction=1.0))
    )
    config = harness.config([provider("smsc", sim.port)])
    gateway = await harness.gateway(config)
    with trio.fail_after(30):
        ids = await submit(gateway, 10)
        await wait_dead_letters(gateway, *ids)
        sim.sim.set_faults(Faults())
        async with open_sqlite_queue(config.queue_path) as elsewhere:
            assert await elsewhere.replay(ids) == 10
        views = [await wait_status(gateway, i, S.DELIVERED) for i in ids]
    assert await gateway.dead_letters() == []
    for view in views:
        history = part_history(view, 1)
        assert history[-4:] == [S.QUEUED, S.SUBMITTING, S.SUBMITTED, S.DELIVERED]
        assert history[-5] is S.FAILED


async def test_a_replayed_dead_letter_another_instance_gave_back_is_still_sent_again(
    redis_harness: Harness,
) -> None:
    # "a" fails every message (its SMSC refuses them) and they are dead-lettered; "a" stops.
    # "b", whose own SMSC answers every submit with a temporary error, replays them, tries
    # each once and gives it back for a retry; "b" stops. "a" comes back, its SMSC now
    # accepting: the messages must be sent, though "a" still holds their parts as failed and
    # the last word on them is "b"'s retry, not the replay.
    good = await redis_harness.simulator(
        SimulatorConfig(seed=1, faults=Faults(permanent_error_fraction=1.0))
    )
    flaky = await redis_harness.simulator(
        SimulatorConfig(seed=2, faults=Faults(temporary_error_fraction=1.0))
    )
    queue = redis_harness.backend.queue()
    config_a = instance(redis_harness, "a", queue, good.port)
    a = await redis_harness.gateway(config_a)
    with trio.fail_after(40):
        ids = await submit(a, 5)
        await wait_dead_letters(a, *ids)
        await a.drain(1.0)
        good.sim.set_faults(Faults())
        # "b" retries after 2s: it has stopped by then, so it gives each back only once.
        slow_retry = RetryPolicy(
            max_attempts=3, initial_delay=2.0, multiplier=1.0, max_delay=2.0, jitter=0.0
        )
        config_b = attrs.evolve(instance(redis_harness, "b", queue, flaky.port), retry=slow_retry)
        b = await redis_harness.gateway(config_b)
        assert await b.replay_dead_letters(ids) == 5
        await wait_until(lambda: b.stats().retried == 5, what="b gave each back once")
        await b.drain(1.0)
        again = await redis_harness.gateway(config_a)
        views = [await wait_status(again, i, S.DELIVERED) for i in ids]
    assert await again.dead_letters() == []
    assert all(part_history(v, 1)[-2:] == [S.SUBMITTED, S.DELIVERED] for v in views)


async def test_multipart_mos_whose_parts_reach_different_instances_are_stored_whole_once(
    redis_harness: Harness,
) -> None:
    """The SMSC sends each part on the next session of the account: part 1 to one instance,
    part 2 to the other. Each message is stored once, whole, in one of them."""
    sim = await redis_harness.simulator()
    queue = redis_harness.backend.queue()
    a = await redis_harness.gateway(instance(redis_harness, "a", queue, sim.port))
    b = await redis_harness.gateway(instance(redis_harness, "b", queue, sim.port))
    gateways = [a, b]
    # 3 parts (the last to the session of the first) and 2 parts (the last to the other's).
    texts = [f"message {n} " + "x" * (400 if n % 2 else 200) for n in range(20)]
    with trio.fail_after(30):
        await settled(gateways)
        for n, text in enumerate(texts):
            result = await sim.sim.send_mo(
                source_addr=f"49176{n:05d}",
                destination_addr="1234",
                text=text,
                multipart_mode=("udh8", "udh16", "sar")[n % 3],
                spread=True,
            )
            assert result.ok, result
        await wait_until(lambda: total(gateways, "mo_received") == 20, what="20 MOs stored")
    stored = [m for g in gateways for m in (await g.store.list_inbound(limit=100)).items]
    assert sorted(m.text for m in stored) == sorted(texts)
    assert all(m.complete for m in stored)
    assert sorted(m.parts for m in stored) == [2] * 10 + [3] * 10
    assert total(gateways, "mo_incomplete") == 0
    # Both instances stored some: each message is stored by the one that got its last part.
    assert {m.id for m in (await a.store.list_inbound()).items}
    assert {m.id for m in (await b.store.list_inbound()).items}
