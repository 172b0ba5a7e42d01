"""The deliverer against a real receiver over HTTP on 127.0.0.1 and a real SQLite outbox.

Wall-clock time (the store's, the backoff's, the signature timestamps) comes from a fake clock
the tests move, so the order of attempts is exact; the requests themselves run in real time
(aiosqlite's thread and hypercorn do not mix with MockClock). No assertion depends on timing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import trio
from fakeclock import START, FakeClock
from sqlite_lock import WriteLock

from smsgw import webhooks
from smsgw.config import WebhookSecret
from smsgw.metrics import Metrics
from smsgw.model import NotificationState
from smsgw.signing import verify
from smsgw.storage import Store, open_store
from smsgw.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookDeliverer,
)

from .receiver import Receiver
from .support import SECRET, notifications, settings


async def states(store: Store) -> dict[NotificationState, int]:
    return await store.notification_counts()


def check_signed(receiver: Receiver, clock: FakeClock, secret: str = SECRET) -> None:
    for request in receiver.received:
        verify(
            secret,
            timestamp=request.headers[TIMESTAMP_HEADER.lower()],
            body=request.body,
            signature=request.headers[SIGNATURE_HEADER.lower()],
            now=clock(),
            tolerance=3600,
        )
        document = json.loads(request.body)
        assert document["event_id"] == request.headers[EVENT_ID_HEADER.lower()]
        assert request.headers["content-type"] == "application/json"


async def test_failing_receiver_then_accepting_gets_every_event(
    store: Store, receiver: Receiver, clock: FakeClock, nursery: trio.Nursery
) -> None:
    """500, then a timeout, then connection refused, then accepted: every event arrives, each
    attempt at the time the backoff says, signatures verify, and event ids de-duplicate."""
    await store.enqueue_notifications(notifications(receiver.url, 5))
    metrics = Metrics(process=False)
    deliverer = WebhookDeliverer(store, settings(), clock=clock, metrics=metrics)
    with trio.fail_after(30):
        # 1st attempt: 500 (the receiver saw it: it will see it again).
        receiver.mode = "fail"
        result = await deliverer.deliver_due()
        assert [o.error for o in result.outcomes] == ["HTTP 500"] * 5
        assert [o.retry_at for o in result.outcomes] == [START + 10] * 5
        # Not due before the backoff: nothing is sent.
        clock.advance(9.9)
        assert (await deliverer.deliver_due()).outcomes == ()
        # 2nd attempt, at +10: no answer within the timeout.
        clock.advance(0.1)
        receiver.mode = "hang"
        result = await deliverer.deliver_due()
        assert all(o.error is not None and "timed out" in o.error for o in result.outcomes)
        assert [o.retry_at for o in result.outcomes] == [START + 10 + 20] * 5
        # 3rd attempt, at +30: the port is closed.
        await receiver.stop()
        clock.advance(20)
        result = await deliverer.deliver_due()
        refused = f"connect to 127.0.0.1:{receiver.port} failed: Connection refused"
        assert [o.error for o in result.outcomes] == [refused] * 5
        assert [o.retry_at for o in result.outcomes] == [START + 30 + 40] * 5
        # 4th attempt, at +70: accepted.
        await receiver.start(nursery)
        receiver.mode = "accept"
        clock.advance(40)
        result = await deliverer.deliver_due()
        assert result.delivered == 5
        assert (await deliverer.deliver_due()).outcomes == ()

    assert await states(store) == {
        NotificationState.PENDING: 0,
        NotificationState.DELIVERED: 5,
        NotificationState.DEAD: 0,
    }
    accepted = [r for r in receiver.received if r.answered == 204]
    failed = [r for r in receiver.received if r.answered == 500]
    assert len(accepted) == 5 and len(failed) == 5
    check_signed(receiver, clock)
    # De-duplication by event id: the 500'd requests come again with the same id and body.
    ids = {r.headers[EVENT_ID_HEADER.lower()] for r in accepted}
    assert len(ids) == 5
    assert {r.headers[EVENT_ID_HEADER.lower()] for r in failed} == ids
    by_id = {r.headers[EVENT_ID_HEADER.lower()]: r.body for r in accepted}
    assert all(by_id[r.headers[EVENT_ID_HEADER.lower()]] == r.body for r in failed)
    stats = deliverer.stats()
    assert (stats.delivered, stats.failed, stats.gave_up) == (5, 15, 0)
    rendered = metrics.render()[0].decode()
    assert "smsgw_webhook_deliveries_total 5.0" in rendered
    assert "smsgw_webhook_failures_total 15.0" in rendered


async def test_gives_up_after_the_retry_period(
    store: Store, receiver: Receiver, clock: FakeClock
) -> None:
    """Retries stop at the end of the period: the last one is moved to the deadline, then the
    row is given up (state dead, its attempts and last error kept)."""
    await store.enqueue_notifications(notifications(receiver.url, 1))
    receiver.mode = "fail"
    metrics = Metrics(process=False)
    deliverer = WebhookDeliverer(store, settings(retry_period=25.0), clock=clock, metrics=metrics)
    with trio.fail_after(30):
        first = (await deliverer.deliver_due()).outcomes
        assert [o.retry_at for o in first] == [START + 10]
        clock.advance(10)
        second = (await deliverer.deliver_due()).outcomes
        assert [o.retry_at for o in second] == [START + 25]  # not +30: the period ends at +25
        clock.advance(15)
        third = await deliverer.deliver_due()
        assert third.gave_up == 1
        clock.advance(10_000)
        assert (await deliverer.deliver_due()).outcomes == ()
    assert len(receiver.received) == 3
    assert (await states(store))[NotificationState.DEAD] == 1
    rendered = metrics.render()[0].decode()
    assert "smsgw_webhook_given_up_total 1.0" in rendered
    assert deliverer.stats().gave_up == 1


async def test_gives_up_after_max_attempts(
    store: Store, receiver: Receiver, clock: FakeClock
) -> None:
    await store.enqueue_notifications(notifications(receiver.url, 2))
    receiver.mode = "fail"
    deliverer = WebhookDeliverer(store, settings(max_attempts=2), clock=clock)
    with trio.fail_after(30):
        assert (await deliverer.deliver_due()).retried == 2
        clock.advance(10)
        assert (await deliverer.deliver_due()).gave_up == 2
    assert (await states(store))[NotificationState.DEAD] == 2
    assert len(receiver.received) == 4


async def test_per_target_secret_and_unsigned(
    store: Store, receiver: Receiver, clock: FakeClock
) -> None:
    """The longest matching prefix's secret signs; without any secret no signature is sent."""
    config = settings(secrets=(WebhookSecret(prefix=receiver.url, secret="client-a"),))
    await store.enqueue_notifications(notifications(receiver.url, 1))
    with trio.fail_after(30):
        await WebhookDeliverer(store, config, clock=clock).deliver_due()
    check_signed(receiver, clock, secret="client-a")

    receiver.received.clear()
    await store.enqueue_notifications(notifications(receiver.url, 1))
    with trio.fail_after(30):
        await WebhookDeliverer(store, settings(secret=None), clock=clock).deliver_due()
    (request,) = receiver.received
    assert SIGNATURE_HEADER.lower() not in request.headers
    assert request.headers[TIMESTAMP_HEADER.lower()] == str(int(clock()))


async def test_run_delivers_everything_with_bounded_concurrency(
    store: Store, receiver: Receiver, clock: FakeClock, nursery: trio.Nursery
) -> None:
    """The long-running task: woken by new rows, never more than ``concurrency`` requests at
    once, each row delivered once when the receiver accepts."""
    deliverer = WebhookDeliverer(store, settings(concurrency=3, batch_size=7), clock=clock)
    await nursery.start(deliverer.run)
    await store.enqueue_notifications(notifications(receiver.url, 40))
    deliverer.wake()
    with trio.fail_after(30):
        while (await states(store))[NotificationState.DELIVERED] < 40:
            await trio.sleep(0.02)
    assert len(receiver.received) == 40
    assert len({r.headers[EVENT_ID_HEADER.lower()] for r in receiver.received}) == 40
    assert 1 <= receiver.max_active <= 3
    check_signed(receiver, clock)


async def test_run_retries_a_failed_row_when_due(
    store: Store, receiver: Receiver, clock: FakeClock, nursery: trio.Nursery
) -> None:
    deliverer = WebhookDeliverer(store, settings(), clock=clock)
    receiver.mode = "fail"
    await nursery.start(deliverer.run)
    await store.enqueue_notifications(notifications(receiver.url, 1))
    deliverer.wake()
    with trio.fail_after(30):
        while deliverer.stats().failed < 1:
            await trio.sleep(0.02)
        receiver.mode = "accept"
        await trio.sleep(0.2)  # several polls: the row is not due yet, so nothing is sent
        assert len(receiver.received) == 1
        clock.advance(10)
        while (await states(store))[NotificationState.DELIVERED] < 1:
            await trio.sleep(0.02)
    assert [r.answered for r in receiver.received] == [500, 204]


async def test_a_row_in_flight_when_run_ends_is_sent_by_the_next_run(
    store: Store, receiver: Receiver, clock: FakeClock, nursery: trio.Nursery
) -> None:
    """The run is stopped (a restart by the supervisor, a drain) while a POST waits for its
    answer: nothing was recorded, so the row is still pending, and the same deliverer's next
    run must send it again rather than think it is still in flight."""
    deliverer = WebhookDeliverer(store, settings(timeout=60.0), clock=clock)
    receiver.mode = "hang"
    await store.enqueue_notifications(notifications(receiver.url, 1))
    with trio.fail_after(30):
        async with trio.open_nursery() as first_run:
            first_run.start_soon(deliverer.run)
            while not receiver.received:
                await trio.sleep(0.02)
            first_run.cancel_scope.cancel()
        assert deliverer.stats().in_flight == 0
        receiver.mode = "accept"
        await nursery.start(deliverer.run)
        while (await states(store))[NotificationState.DELIVERED] < 1:
            await trio.sleep(0.02)
    assert [r.answered for r in receiver.received] == [None, 204]


async def test_reconfigure_changes_the_secret_of_the_next_attempt(
    store: Store, receiver: Receiver, clock: FakeClock
) -> None:
    deliverer = WebhookDeliverer(store, settings(), clock=clock)
    deliverer.reconfigure(settings(secret="rotated"))
    await store.enqueue_notifications(notifications(receiver.url, 1))
    with trio.fail_after(30):
        assert (await deliverer.deliver_due()).delivered == 1
    check_signed(receiver, clock, secret="rotated")


@pytest.mark.parametrize("target", ["http://127.0.0.1:99999/hook", "gopher://127.0.0.1/hook"])
async def test_an_unusable_target_is_a_failed_attempt_not_a_crash(
    store: Store, clock: FakeClock, target: str
) -> None:
    await store.enqueue_notifications(notifications(target, 1))
    with trio.fail_after(30):
        (outcome,) = (await WebhookDeliverer(store, settings(), clock=clock).deliver_due()).outcomes
    assert outcome.error is not None and outcome.retry_at == START + 10


async def test_a_delivery_the_database_does_not_take_is_kept_not_posted_again(
    tmp_path: Path,
    receiver: Receiver,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database is locked by another process (as a full disk fails every write) when the
    deliveries are to be recorded. Their rows, still pending, are read as due at every poll:
    they must not be POSTed again and again meanwhile. Once the lock goes, the kept outcomes
    are written: each row delivered, each POSTed once, and the log said it once."""
    path = tmp_path / "gw.sqlite3"
    caplog.set_level(logging.INFO, logger="smsgw.webhooks")
    async with open_store(path, clock=clock, synchronous="NORMAL", busy_timeout=0.2) as store:
        await store.enqueue_notifications(notifications(receiver.url, 3))
        deliverer = WebhookDeliverer(store, settings(poll_interval=0.02), clock=clock)
        lock = WriteLock(path)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(deliverer.run)
                while len(receiver.received) < 3:
                    await trio.sleep(0.02)
                await trio.sleep(1.5)  # dozens of polls; several failed writes of the outcomes
                assert len(receiver.received) == 3
                assert (await states(store))[NotificationState.PENDING] == 3  # reads work
                lock.release()
                while (await states(store))[NotificationState.DELIVERED] < 3:
                    await trio.sleep(0.02)
                nursery.cancel_scope.cancel()
    assert len(receiver.received) == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "smsgw.webhooks"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("recording webhook outcomes (kept and tried again) failed")
    assert "works again" in lines[1]


async def test_a_hung_target_does_not_hold_up_the_others(
    store: Store, clock: FakeClock, nursery: trio.Nursery
) -> None:
    """A target that accepts connections and never answers: each attempt holds a worker for
    ``timeout``. Once its attempts fail it gets at most ``per_target_concurrency`` workers,
    and its other due rows are held back (no attempt counted), so another target's webhooks,
    queued behind 40 of its rows, go out at once instead of after every one of them."""
    hung, good = Receiver(), Receiver()
    await hung.start(nursery)
    await good.start(nursery)
    hung.mode = "hang"
    config = settings(concurrency=4, per_target_concurrency=2, timeout=2.0, batch_size=100)
    deliverer = WebhookDeliverer(store, config, clock=clock)
    await store.enqueue_notifications(notifications(hung.url, 40))
    await store.enqueue_notifications(notifications(good.url, 5))
    await nursery.start(deliverer.run)
    with trio.fail_after(30):
        while len(good.received) < 5:
            await trio.sleep(0.02)
    # The first round took all 4 workers (the target had not failed yet), then 2 at most.
    assert len(hung.received) <= 4 + 2
    pending = await store.pending_notifications(100, now=clock() + 3600)
    held = [n for n in pending if n.target == hung.url and n.attempts == 0]
    assert len(held) >= 40 - 6  # held back, not counted as attempts


async def test_failing_targets_are_remembered_up_to_a_bound(
    store: Store, clock: FakeClock, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients choose their callback URLs: a failing URL per message must not grow memory
    without end. The oldest failing targets are forgotten first; a success forgets one."""
    monkeypatch.setattr(webhooks, "FAILING_TARGETS", 2)
    refused = [f"http://127.0.0.1:1/{name}" for name in "abc"]  # nothing listens on port 1
    deliverer = WebhookDeliverer(store, settings(), clock=clock)
    for url in refused:
        await store.enqueue_notifications(notifications(url, 1))
    await nursery.start(deliverer.run)
    with trio.fail_after(30):
        while deliverer.stats().failed < 3:
            await trio.sleep(0.02)
    assert len(deliverer.failing_targets) == 2
    assert set(deliverer.failing_targets) < set(refused)
