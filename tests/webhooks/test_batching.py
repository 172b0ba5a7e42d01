"""Batched webhook requests (``[[webhooks.batching]]``): the grouping as a property, then the
deliverer against a real receiver over HTTP on 127.0.0.1 and a real SQLite outbox."""

from __future__ import annotations

import json

import trio
from fakeclock import START, FakeClock
from hypothesis import given
from hypothesis import strategies as st

from smsgw.config import WebhookBatching
from smsgw.model import Notification, NotificationKind, NotificationState
from smsgw.signing import verify
from smsgw.storage import Store
from smsgw.webhooks import (
    EVENT_COUNT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookDeliverer,
    WebhookStats,
    event_id,
    request_body,
    requests_for,
)

from .receiver import Received, Receiver
from .support import SECRET, notifications, settings

TARGETS = ["http://a.example/hook", "http://b.example/hook", "http://c.example/x"]


def _notification(seq: int, target: str) -> Notification:
    return Notification(
        seq=seq,
        kind=NotificationKind.STATUS,
        target=target,
        body="{}",
        subject=None,
        created_at=0.0,
        state=NotificationState.PENDING,
        attempts=0,
        next_attempt_at=0.0,
        delivered_at=None,
        last_error=None,
    )


@given(
    targets=st.lists(st.sampled_from(TARGETS), max_size=60),
    a_max=st.integers(1, 5),
    b_max=st.integers(1, 5),
)
def test_requests_carry_each_notification_once_in_order_up_to_max_events(
    targets: list[str], a_max: int, b_max: int
) -> None:
    """a and b take batches, c does not: every notification is in exactly one request, each
    request has one target, a target's notifications keep their order, each request is full
    but the last of its target, and requests stand in the order of their first notification."""
    config = settings(
        batching=(
            WebhookBatching(prefix="http://a.example/", max_events=a_max),
            WebhookBatching(prefix="http://b.", max_events=b_max),
        )
    )
    due = [_notification(seq, target) for seq, target in enumerate(targets)]
    requests = requests_for(due, config)
    assert sorted(n.seq for r in requests for n in r) == list(range(len(due)))
    limit = {TARGETS[0]: a_max, TARGETS[1]: b_max, TARGETS[2]: 1}
    for target, most in limit.items():
        mine = [r for r in requests if r[0].target == target]
        assert all({n.target for n in r} == {target} for r in mine)
        assert [n.seq for r in mine for n in r] == [n.seq for n in due if n.target == target]
        assert all(len(r) == most for r in mine[:-1]) and all(len(r) <= most for r in mine)
    firsts = [r[0].seq for r in requests]
    assert firsts == sorted(firsts)


def _events(request: Received) -> list[dict[str, object]]:
    document = json.loads(request.body)
    assert list(document) == ["events"]
    events: list[dict[str, object]] = document["events"]
    return events


def _check_batch(request: Received, clock: FakeClock) -> list[dict[str, object]]:
    """A batch request as docs/webhooks.md says: signed over the raw body, the count header,
    no event id header, every event with its own id first."""
    headers = request.headers
    verify(
        SECRET,
        timestamp=headers[TIMESTAMP_HEADER.lower()],
        body=request.body,
        signature=headers[SIGNATURE_HEADER.lower()],
        now=clock(),
        tolerance=3600,
    )
    events = _events(request)
    assert headers[EVENT_COUNT_HEADER.lower()] == str(len(events))
    assert EVENT_ID_HEADER.lower() not in headers
    assert all(next(iter(event)) == "event_id" for event in events)
    return events


async def test_a_target_that_takes_batches_gets_its_events_together(
    store: Store, receiver: Receiver, clock: FakeClock, nursery: trio.Nursery
) -> None:
    """5 events, at most 2 per request: 3 requests (2, 2, 1) in the outbox's order, each event
    the same object a single request would carry; another target still gets one per request."""
    single = Receiver()
    await single.start(nursery)
    config = settings(batching=(WebhookBatching(prefix=receiver.url, max_events=2),))
    await store.enqueue_notifications(notifications(receiver.url, 5))
    await store.enqueue_notifications(notifications(single.url, 2))
    due = await store.pending_notifications(100, now=clock())
    with trio.fail_after(30):
        result = await WebhookDeliverer(store, config, clock=clock).deliver_due()
    assert result.delivered == 7
    batches = [_check_batch(r, clock) for r in receiver.received]
    assert sorted(len(events) for events in batches) == [1, 2, 2]
    mine = [n for n in due if n.target == receiver.url]
    expected = {event_id(n): json.loads(request_body(n, event_id(n))) for n in mine}
    sent = [event for events in batches for event in events]
    assert {str(e["event_id"]): e for e in sent} == expected
    for events in batches:  # each request keeps the outbox's order
        order = [list(expected).index(str(e["event_id"])) for e in events]
        assert order == sorted(order)
    assert len(single.received) == 2
    for request in single.received:  # the single form: an object, the event id header
        document = json.loads(request.body)
        assert document["event_id"] == request.headers[EVENT_ID_HEADER.lower()]
        assert EVENT_COUNT_HEADER.lower() not in request.headers


async def test_a_failed_batch_is_retried_whole_then_delivered(
    store: Store, receiver: Receiver, clock: FakeClock
) -> None:
    """The answer applies to every event of the request: a 500 reschedules each of them (same
    backoff), the next attempt carries the same events with the same ids, and a 2xx delivers
    them all."""
    config = settings(batching=(WebhookBatching(prefix=receiver.url, max_events=10),))
    await store.enqueue_notifications(notifications(receiver.url, 3))
    deliverer = WebhookDeliverer(store, config, clock=clock)
    with trio.fail_after(30):
        receiver.mode = "fail"
        failed = await deliverer.deliver_due()
        assert [o.retry_at for o in failed.outcomes] == [START + 10] * 3
        clock.advance(10)
        receiver.mode = "accept"
        assert (await deliverer.deliver_due()).delivered == 3
    first, second = receiver.received
    assert (first.answered, second.answered) == (500, 204)
    assert _check_batch(first, clock) == _check_batch(second, clock)
    stats = deliverer.stats()
    assert (stats.delivered, stats.failed) == (3, 3)
    assert (await store.notification_counts())[NotificationState.DELIVERED] == 3


async def test_one_event_to_a_batching_target_still_comes_as_a_batch(
    store: Store, receiver: Receiver, clock: FakeClock
) -> None:
    """A receiver that takes batches parses one form: ``{"events": [...]}`` also for one."""
    config = settings(batching=(WebhookBatching(prefix=receiver.url, max_events=50),))
    await store.enqueue_notifications(notifications(receiver.url, 1))
    with trio.fail_after(30):
        await WebhookDeliverer(store, config, clock=clock).deliver_due()
    (request,) = receiver.received
    assert len(_check_batch(request, clock)) == 1


async def test_run_delivers_every_event_in_batches(
    store: Store, receiver: Receiver, clock: FakeClock, nursery: trio.Nursery
) -> None:
    """The long-running task: 60 events, at most 8 per request, 3 requests at once: each event
    delivered once, in far fewer requests than events."""
    config = settings(
        concurrency=3, batch_size=20, batching=(WebhookBatching(prefix=receiver.url, max_events=8),)
    )
    deliverer = WebhookDeliverer(store, config, clock=clock)
    await nursery.start(deliverer.run)
    await store.enqueue_notifications(notifications(receiver.url, 60))
    deliverer.wake()
    with trio.fail_after(30):
        while (await store.notification_counts())[NotificationState.DELIVERED] < 60:
            await trio.sleep(0.02)
    events = [e["event_id"] for r in receiver.received for e in _check_batch(r, clock)]
    assert len(events) == len(set(events)) == 60
    assert all(len(_events(r)) <= 8 for r in receiver.received)
    assert len(receiver.received) < 60
    assert 1 <= receiver.max_active <= 3
    assert deliverer.stats().delivered == 60


async def test_run_reads_past_more_rows_in_flight_than_a_page(
    store: Store, receiver: Receiver, clock: FakeClock, nursery: trio.Nursery
) -> None:
    """1,500 due rows read at once (``batch_size``), 6 requests of 250 in flight while the next
    read leaves those 1,500 out: more than a page of the API (1,000) either way."""
    config = settings(
        concurrency=8,
        batch_size=1500,
        batching=(WebhookBatching(prefix=receiver.url, max_events=250),),
    )
    deliverer = WebhookDeliverer(store, config, clock=clock)
    await store.enqueue_notifications(notifications(receiver.url, 3000))
    await nursery.start(deliverer.run)
    done = WebhookStats(delivered=3000, failed=0, gave_up=0, in_flight=0)
    with trio.fail_after(60):
        while deliverer.stats() != done:
            await trio.sleep(0.05)
    events = [e["event_id"] for r in receiver.received for e in _events(r)]
    assert len(events) == len(set(events)) == 3000
    assert max(len(_events(r)) for r in receiver.received) == 250
    assert (await store.notification_counts())[NotificationState.DELIVERED] == 3000
