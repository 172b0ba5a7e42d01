"""The queue payload (round trip, strictness, size) and the retry state carried by nack reasons."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp_codec.text import Encoding
from smsgw.payload import (
    PAYLOAD_VERSION,
    MessagePayload,
    PayloadError,
    RetryState,
    decode_payload,
    encode_payload,
    plain_reason,
    reason_with_state,
    retry_state,
)
from smsgw.queue.base import QueuedMessage

times = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)
names = st.text(min_size=1, max_size=30)


@st.composite
def payloads(draw: st.DrawFn) -> MessagePayload:
    binary = draw(st.booleans())
    return MessagePayload(
        id=draw(names),
        to=draw(st.from_regex(r"\+?[0-9]{1,20}", fullmatch=True)),
        source=draw(names),
        encoding=Encoding.BINARY if binary else draw(st.sampled_from(list(Encoding))),
        created_at=draw(times),
        text=None if binary else draw(st.text(min_size=1)),
        binary=draw(st.binary(min_size=1)) if binary else None,
        data_coding=draw(st.none() | st.integers(0, 255)),
        not_before=draw(st.none() | times),
        expires_at=draw(st.none() | times),
        client_ref=draw(st.none() | names),
        tags=tuple(draw(st.lists(names, max_size=4))),
        provider=draw(st.none() | names),
        receipt=draw(st.booleans()),
        client_id=draw(names),
        callback_url=draw(st.none() | st.just("https://x.test/cb")),
        priority=draw(st.integers(0, 9)),
        parts=draw(st.integers(1, 255)),
    )


@given(payloads())
def test_a_payload_survives_the_queue_unchanged(payload: MessagePayload) -> None:
    data = encode_payload(payload)
    assert data[0] == PAYLOAD_VERSION
    assert decode_payload(data) == payload


def test_a_plain_message_is_compact_and_leaves_defaults_out() -> None:
    payload = MessagePayload(
        id="0f" * 16,
        to="+4915112345678",
        source="ACME",
        encoding=Encoding.GSM7,
        created_at=1_700_000_000.25,
        text="Your code is 123456",
    )
    data = encode_payload(payload)
    assert len(data) < 140
    document = json.loads(data[1:])
    assert set(document) == {"i", "d", "s", "e", "ca", "t"}


def _raw(document: object) -> bytes:
    return bytes([PAYLOAD_VERSION]) + json.dumps(document).encode()


GOOD = {"i": "m1", "d": "49", "s": "A", "e": "gsm7", "ca": 1.0, "t": "x"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty payload"),
        (b"\x02{}", "payload version 2 is not known"),
        (b"\x01{not json", "not JSON"),
        (_raw([1, 2]), "not a JSON object"),
        (_raw({**GOOD, "zz": 1}), "unknown fields ['zz']"),
        (_raw({k: v for k, v in GOOD.items() if k != "d"}), "lacks fields ['d']"),
        (_raw({**GOOD, "ca": "soon"}), "'ca' (created_at): expected epoch seconds"),
        (_raw({**GOOD, "e": "klingon"}), "'e' (encoding): expected an encoding name"),
        (_raw({**GOOD, "b": "###"}), "'b' (binary): expected base64 text"),
        (_raw({**GOOD, "g": "tag"}), "'g' (tags): expected a list of strings"),
        (_raw({**GOOD, "rc": 1}), "'rc' (receipt): expected true or false"),
        (_raw({**GOOD, "pr": True}), "'pr' (priority): expected an integer"),
        (_raw({**GOOD, "pr": 10}), "priority 10 is not 0..9"),
        (_raw({**GOOD, "pa": 0}), "part count 0"),
        (_raw({**GOOD, "b": "AAE="}), "exactly one of text and binary"),
        (_raw({k: v for k, v in GOOD.items() if k != "t"}), "exactly one of text and binary"),
    ],
)
def test_a_payload_that_cannot_be_read_is_refused_with_the_reason(
    data: bytes, message: str
) -> None:
    with pytest.raises(PayloadError, match=None) as caught:
        decode_payload(data)
    assert message in str(caught.value)


def _queued(attempts: int, last_error: str | None) -> QueuedMessage:
    return QueuedMessage("m", b"", 5, attempts, 0.0, last_error)


def test_the_retry_state_travels_at_the_end_of_the_nack_reason() -> None:
    reason = reason_with_state("ESME_RSYSERR from a", RetryState(2, 1, 3))
    assert reason == "ESME_RSYSERR from a [smsgw a=2 t=1 l=3]"
    assert plain_reason(reason) == "ESME_RSYSERR from a"
    assert retry_state(_queued(4, reason)) == RetryState(2, 1, 3)
    # A crash reclaim in between (lease 5) keeps the state.
    assert retry_state(_queued(5, reason)) == RetryState(2, 1, 3)


@pytest.mark.parametrize(
    ("attempts", "last_error"),
    [
        (1, "x [smsgw a=2 t=1 l=3]"),  # first lease (after a replay reset the count)
        (2, None),  # never nacked (a crash reclaim)
        (3, "cut off while in flight"),  # a reason without state
        (3, "x [smsgw a=2 t=1 l=3]"),  # written at lease 3 or later: before a replay
        (9, "x [smsgw a=2 t=1 l=3] trailing"),  # not at the end: not ours
    ],
)
def test_a_fresh_state_when_the_reason_carries_none_that_applies(
    attempts: int, last_error: str | None
) -> None:
    assert retry_state(_queued(attempts, last_error)) == RetryState()


@given(st.text(), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10**6))
def test_any_reason_and_state_round_trip(reason: str, a: int, t: int, lease: int) -> None:
    # Written when the message was nacked at lease ``lease``; read at the next lease.
    text = reason_with_state(reason, RetryState(a, t, lease))
    assert retry_state(_queued(lease + 1, text)) == RetryState(a, t, lease)
    assert plain_reason(text) == reason
