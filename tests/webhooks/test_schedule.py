"""The pure parts of the deliverer: event ids, request bodies, the retry schedule."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw.config import WebhooksConfig
from smsgw.model import Notification, NotificationKind, NotificationState
from smsgw.webhooks import MIN_RETRY_DELAY, event_id, next_attempt_at, request_body


def row(
    seq: int = 1, body: str = '{"event":"status","message_id":"m1"}', **kw: object
) -> Notification:
    fields: dict[str, object] = {
        "seq": seq,
        "kind": NotificationKind.STATUS,
        "target": "http://127.0.0.1:1/hook",
        "body": body,
        "subject": "m1",
        "created_at": 1_700_000_000.0,
        "state": NotificationState.PENDING,
        "attempts": 0,
        "next_attempt_at": 1_700_000_000.0,
        "delivered_at": None,
        "last_error": None,
    }
    fields.update(kw)
    return Notification(**fields)  # type: ignore[arg-type]


def test_event_id_is_stable_across_attempts_and_distinct_per_row() -> None:
    first = row()
    retried = attrs.evolve(
        first, attempts=3, next_attempt_at=1_700_000_500.0, last_error="HTTP 500"
    )
    assert event_id(first) == event_id(retried)
    assert event_id(first) != event_id(row(seq=2))
    assert event_id(first) != event_id(row(body='{"event":"status","message_id":"m2"}'))
    assert event_id(first).startswith("evt_") and len(event_id(first)) == 36


@given(
    st.dictionaries(
        st.text(min_size=1).filter(lambda k: k != "event_id"),
        st.one_of(st.none(), st.integers(), st.text(), st.floats(allow_nan=False)),
    )
)
def test_request_body_puts_the_event_id_first_and_keeps_the_rest(
    document: dict[str, object],
) -> None:
    sent = json.loads(request_body(row(body=json.dumps(document)), "evt_x"))
    assert next(iter(sent)) == "event_id"
    assert sent.pop("event_id") == "evt_x"
    assert sent == document


def test_request_body_replaces_a_stored_event_id_and_sends_non_objects_as_stored() -> None:
    sent = json.loads(request_body(row(body='{"event_id":"forged","a":1}'), "evt_x"))
    assert sent == {"event_id": "evt_x", "a": 1}
    assert request_body(row(body="[1,2]"), "evt_x") == b"[1,2]"
    assert request_body(row(body="not json"), "evt_x") == b"not json"


CONFIG = WebhooksConfig(
    retry_period=3600.0, backoff_initial=5.0, backoff_max=300.0, backoff_multiplier=2.0
)


def test_backoff_doubles_up_to_the_maximum_without_jitter() -> None:
    config = attrs.evolve(CONFIG, jitter=0.0)
    delays = [
        next_attempt_at(config, attempts=n, created_at=0.0, now=0.0, rand=0.5) for n in range(1, 9)
    ]
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]


@given(
    attempts=st.integers(1, 10_000),
    age=st.floats(0, 10_000),
    rand=st.floats(0, 1, exclude_max=True),
    jitter=st.floats(0, 1),
)
def test_next_attempt_is_later_bounded_and_gives_up_at_the_deadline(
    attempts: int, age: float, rand: float, jitter: float
) -> None:
    config = attrs.evolve(CONFIG, jitter=jitter, max_attempts=50)
    created = 1_700_000_000.0
    now = created + age
    at = next_attempt_at(config, attempts=attempts, created_at=created, now=now, rand=rand)
    deadline = created + config.retry_period
    if attempts >= config.max_attempts or now >= deadline:
        assert at is None
        return
    assert at is not None
    assert now < at <= deadline
    base = min(config.backoff_max, config.backoff_initial * 2 ** (attempts - 1))
    delay = max(MIN_RETRY_DELAY, base * (1 - jitter * rand))  # a jitter of 1 cannot make it 0
    assert at == pytest.approx(min(deadline, now + delay))
    assert at - now >= min(deadline - now, max(MIN_RETRY_DELAY, base * (1 - jitter))) - 1e-6
