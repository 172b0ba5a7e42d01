"""The deliverer over its own HTTP client, seen from a scriptable server on 127.0.0.1: the exact
request (headers, body bytes, a signature the documented snippet accepts), keep-alive under
``run``, a server closing idle connections, outcomes written in batches, a failed outcome write,
and https through the ``client`` seam. The store is a real SQLite file."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from smsgw.config import WebhooksConfig
from smsgw.model import NewNotification, NotificationKind, NotificationState
from smsgw.storage import Store, StoreError, open_store
from smsgw.webhook_http import HttpPool
from smsgw.webhooks import WebhookDeliverer, event_id

from .conftest import Certificate
from .h11server import Answer, Server

DOC = Path(__file__).parent.parent.parent / "docs" / "webhooks.md"
SECRET = "wire-secret"


def config(**changes: Any) -> WebhooksConfig:
    base = WebhooksConfig(
        secret=SECRET, timeout=2.0, backoff_initial=10.0, jitter=0.0, poll_interval=0.05
    )
    return attrs.evolve(base, **changes)


def rows(target: str, n: int, start: int = 0) -> list[NewNotification]:
    return [
        NewNotification(
            kind=NotificationKind.STATUS,
            target=target,
            body=json.dumps(
                {"event": "status", "message_id": f"m{i}", "reason": "reçu ✓"},
                ensure_ascii=False,
                separators=(",", ":"),
            ),
            subject=f"m{i}",
        )
        for i in range(start, start + n)
    ]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "gw.sqlite3", synchronous="NORMAL") as s:
        yield s


async def delivered(store: Store) -> int:
    return (await store.notification_counts())[NotificationState.DELIVERED]


async def until(condition: Callable[[], Any], what: str) -> None:
    with trio.fail_after(30):
        while not await condition():
            await trio.sleep(0.01)


def doc_verifier() -> Callable[..., bool]:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- verify-snippet[^>]*-->\n```python\n(.*?)```", text, re.DOTALL)
    assert match is not None
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(DOC), "exec"), namespace)
    verify: Callable[..., bool] = namespace["verify_webhook"]
    return verify


def old_request_body(body: str, event: str) -> bytes:
    """What the deliverer sent before issue 6, for a stored JSON object."""
    document = json.loads(body)
    document.pop("event_id", None)
    return json.dumps(
        {"event_id": event, **document}, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


async def test_the_request_on_the_wire(store: Store, server: Server) -> None:
    """Exactly these headers, in this order; the body byte for byte as before; a signature the
    documented snippet accepts (real wall-clock: the snippet checks against time.time())."""
    await store.enqueue_notifications(rows(server.url, 3))
    with trio.fail_after(30):
        deliverer = WebhookDeliverer(store, config(concurrency=1))
        assert (await deliverer.deliver_due()).delivered == 3
    stored = {n.subject: n for n in await store.pending_notifications(now=0)}
    assert stored == {}  # nothing pending: everything was recorded delivered
    verify = doc_verifier()
    for request in server.requests:
        names = [name for name, _ in request.headers]
        assert names == [
            b"Host",
            b"User-Agent",
            b"Content-Type",
            b"X-Smsgw-Event-Id",
            b"X-Smsgw-Timestamp",
            b"X-Smsgw-Signature",
            b"Content-Length",
        ]
        assert request.target == b"/hook"
        assert request.header("host") == f"127.0.0.1:{server.port}"
        assert request.header("user-agent") == "smsgw-webhooks/1"
        assert request.header("content-type") == "application/json"
        assert request.header("content-length") == str(len(request.body))
        assert abs(int(request.header("x-smsgw-timestamp")) - time.time()) < 60  # wall-clock
        event = request.header("x-smsgw-event-id")
        document = json.loads(request.body)
        assert document["event_id"] == event
        original = next(n for n in rows(server.url, 3) if n.subject == document["message_id"])
        assert request.body == old_request_body(original.body, event)
        lowered = {k.decode().lower(): v.decode() for k, v in request.headers}
        assert verify(SECRET.encode(), lowered, request.body)
        assert not verify(b"another-secret", lowered, request.body)
    assert server.connections == 1  # one at a time: one keep-alive connection


async def test_event_ids_are_what_they_were(store: Store, server: Server) -> None:
    """The id derivation is unchanged, so a row pending across an upgrade keeps its id."""
    await store.enqueue_notifications(rows(server.url, 2))
    (first, second) = await store.pending_notifications(now=time.time() + 1)  # wall-clock
    with trio.fail_after(30):
        await WebhookDeliverer(store, config()).deliver_due()
    sent = {r.header("x-smsgw-event-id") for r in server.requests}
    assert sent == {event_id(first), event_id(second)}


async def test_run_keeps_connections_and_survives_idle_closes(
    store: Store, server: Server, nursery: trio.Nursery
) -> None:
    """Many rows over at most ``concurrency`` connections; then a server that closes each
    connection after answering: every row still arrives once, and no attempt fails."""
    deliverer = WebhookDeliverer(store, config(concurrency=4, batch_size=10))
    await nursery.start(deliverer.run)
    await store.enqueue_notifications(rows(server.url, 60))
    deliverer.wake()
    await until(lambda: _at_least(store, 60), "the first rows")
    assert server.connections <= 4
    server.answer = Answer(close_after=True)
    await store.enqueue_notifications(rows(server.url, 30, start=60))
    deliverer.wake()
    await until(lambda: _at_least(store, 90), "the rows after the idle closes")
    ids = [r.header("x-smsgw-event-id") for r in server.requests]
    assert len(ids) == len(set(ids)) == 90
    stats = deliverer.stats()
    assert (stats.delivered, stats.failed) == (90, 0)


async def _at_least(store: Store, n: int) -> bool:
    return await delivered(store) >= n


@attrs.define
class CountingStore:
    """The real store, counting the outcome writes and failing the first ``fail`` of them."""

    store: Store
    fail: int = 0
    completes: list[int] = attrs.Factory(list)  # rows per complete_notifications call

    async def pending_notifications(
        self, limit: int = 100, *, now: float | None = None, excluding: Collection[int] = ()
    ) -> Any:
        return await self.store.pending_notifications(limit, now=now, excluding=excluding)

    async def complete_notifications(self, seqs: Sequence[int], *, at: float | None = None) -> None:
        if self.fail:
            self.fail -= 1
            raise StoreError("disk on fire")
        self.completes.append(len(seqs))
        await self.store.complete_notifications(seqs, at=at)

    async def retry_notification(self, seq: int, **kw: Any) -> None:
        await self.store.retry_notification(seq, **kw)


async def test_outcomes_are_written_in_batches_and_only_after_a_2xx(
    store: Store, server: Server, nursery: trio.Nursery
) -> None:
    """Two targets, one refusing with 500: its rows are rescheduled with their error, the
    others written delivered, several to a store call (a one-pass ``deliver_due``)."""
    failing = Server()
    await failing.start(nursery)
    failing.answer = Answer(status=500)
    counting = CountingStore(store)
    await store.enqueue_notifications(rows(server.url, 6) + rows(failing.url, 4, start=6))
    with trio.fail_after(30):
        result = await WebhookDeliverer(counting, config()).deliver_due()
    assert (result.delivered, result.retried) == (6, 4)
    assert counting.completes == [6]
    later = await store.pending_notifications(now=time.time() + 3600)  # wall-clock
    assert sorted(n.subject or "" for n in later) == ["m6", "m7", "m8", "m9"]
    assert {(n.attempts, n.last_error) for n in later} == {(1, "HTTP 500")}
    assert await delivered(store) == 6


async def test_a_failed_outcome_write_sends_the_rows_again(
    store: Store, server: Server, nursery: trio.Nursery
) -> None:
    """At least once: if recording "delivered" fails, the rows stay pending and go again with
    the same event ids; in the end every row is recorded delivered."""
    counting = CountingStore(store, fail=1)
    deliverer = WebhookDeliverer(counting, config(concurrency=2, batch_size=5))
    await store.enqueue_notifications(rows(server.url, 20))
    await nursery.start(deliverer.run)
    await until(lambda: _at_least(store, 20), "every row")
    ids = [r.header("x-smsgw-event-id") for r in server.requests]
    assert len(set(ids)) == 20
    assert len(ids) > 20  # the rows of the failed write came again ...
    assert sum(counting.completes) == 20  # ... and each was recorded once
    assert deliverer.stats().delivered == 20


async def test_https_through_the_client_seam(
    store: Store, nursery: trio.Nursery, certificate: Certificate
) -> None:
    tls = Server(ssl_context=certificate.server_context())
    await tls.start(nursery)
    pool = HttpPool(2, ssl_context=certificate.client_context(), proxies={})
    await store.enqueue_notifications(rows(tls.url, 4))
    with trio.fail_after(30):
        assert (await WebhookDeliverer(store, config(), client=pool).deliver_due()).delivered == 4
    assert tls.connections <= 2 and len(tls.requests) == 4
    assert pool.connections >= 1  # the pool is the caller's: still open after the pass
    await pool.aclose()
