"""Validation of submitted requests (pure): every problem by field, and what a valid request
becomes (id, encoding, part count, times, first status)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp_codec.segment import SplitMode
from smpp_codec.text import Encoding
from smsgw.messages import Prepared, SubmitRequest, new_message_id, new_message_ids, validate
from smsgw.model import MessageStatus

NOW = 1_700_000_000.0
PROVIDERS = ("a", "b")


def check(**fields: Any) -> Prepared | Mapping[str, str]:
    values: dict[str, Any] = {"to": "+4915112345", "source": "ACME", "text": "hello"}
    values.update(fields)
    return validate(SubmitRequest(**values), now=NOW, providers=PROVIDERS, message_id="m1")


def errors(**fields: Any) -> Mapping[str, str]:
    result = check(**fields)
    assert not isinstance(result, Prepared), result
    return result


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"to": ""}, "to", "1 to 20 digits"),
        ({"to": "49-151"}, "to", "1 to 20 digits"),
        ({"to": "1" * 21}, "to", "1 to 20 digits"),
        ({"source": ""}, "source", "non-empty"),
        ({"source": "A" * 21}, "source", "at most 20"),
        ({"source": "Zürich€"}, "source", "Latin-1"),
        ({"text": None}, "text", "either text or binary"),
        ({"binary": b"\x00"}, "text", "either text or binary"),
        ({"text": ""}, "text", "non-empty"),
        ({"text": None, "binary": b""}, "binary", "non-empty bytes"),
        ({"encoding": "klingon"}, "encoding", "must be one of auto"),
        ({"encoding": "binary"}, "encoding", "text needs a text encoding"),
        ({"text": None, "binary": b"\x01", "encoding": "ucs2"}, "encoding", "sent as binary"),
        ({"text": "日本", "encoding": "gsm7"}, "text", "not in the GSM 7-bit alphabet"),
        ({"text": "x" * 160 * 256}, "text", "more than 255 parts"),
        ({"data_coding": 256}, "data_coding", "0..255"),
        ({"data_coding": 8}, "data_coding", "does not carry gsm7 text"),
        ({"priority": 10}, "priority", "0..9"),
        ({"priority": True}, "priority", "0..9"),
        ({"validity": 0}, "validity", "> 0"),
        ({"validity": float("inf")}, "validity", "> 0"),
        ({"schedule_at": float("nan")}, "schedule_at", "epoch seconds"),
        ({"client_ref": ""}, "client_ref", "non-empty"),
        ({"client_ref": "r" * 129}, "client_ref", "at most 128"),
        ({"client_id": ""}, "client_id", "non-empty"),
        ({"tags": ("ok", "")}, "tags[1]", "non-empty"),
        ({"provider": "c"}, "provider", "unknown provider 'c'"),
        ({"callback_url": "ftp://x"}, "callback_url", "http:// or https://"),
        ({"receipt": "yes"}, "receipt", "true or false"),
    ],
)
def test_each_bad_field_is_named_with_what_is_wrong(
    fields: dict[str, Any], field: str, fragment: str
) -> None:
    found = errors(**fields)
    assert field in found and fragment in found[field], found


def test_every_problem_is_reported_at_once() -> None:
    found = errors(to="x", source="", priority=-1, provider="z", callback_url="nope")
    assert set(found) == {"to", "source", "priority", "provider", "callback_url"}


def test_a_valid_request_is_prepared_with_its_encoding_and_parts() -> None:
    prepared = check(text="Привет " * 30, client_ref="r", tags=("otp",))
    assert isinstance(prepared, Prepared)
    assert (prepared.id, prepared.encoding, prepared.parts) == ("m1", Encoding.UCS2, 4)
    assert prepared.status is MessageStatus.QUEUED
    assert (prepared.created_at, prepared.not_before, prepared.expires_at) == (NOW, None, None)


def test_the_part_count_follows_the_split_mode() -> None:
    request = SubmitRequest(to="49", source="A", text="x" * 307)
    udh = validate(request, now=NOW, providers=PROVIDERS, split_mode=SplitMode.UDH8)
    sar = validate(request, now=NOW, providers=PROVIDERS, split_mode=SplitMode.SAR)
    payload = validate(request, now=NOW, providers=PROVIDERS, split_mode=SplitMode.PAYLOAD)
    assert isinstance(udh, Prepared) and isinstance(sar, Prepared) and isinstance(payload, Prepared)
    assert (udh.parts, sar.parts, payload.parts) == (3, 2, 1)


def test_validity_counts_from_when_the_message_is_due() -> None:
    now_due = check(validity=60)
    later = check(validity=60, schedule_at=NOW + 3600)
    past = check(validity=60, schedule_at=NOW - 5)
    assert isinstance(now_due, Prepared) and isinstance(later, Prepared)
    assert isinstance(past, Prepared)
    assert (now_due.not_before, now_due.expires_at) == (None, NOW + 60)
    assert (later.not_before, later.expires_at) == (NOW + 3600, NOW + 3660)
    assert later.status is MessageStatus.SCHEDULED
    assert (past.not_before, past.status) == (None, MessageStatus.QUEUED)


def test_binary_content_and_a_matching_data_coding_override_are_accepted() -> None:
    binary = check(text=None, binary=b"\x01\x02", encoding="auto")
    flash = check(text="hi", data_coding=0x10)  # GSM 7-bit, message class 0
    assert isinstance(binary, Prepared) and binary.encoding is Encoding.BINARY
    assert isinstance(flash, Prepared) and flash.encoding is Encoding.GSM7


@given(st.text(min_size=1, max_size=400))
def test_any_text_is_prepared_or_refused_with_a_text_error(text: str) -> None:
    result = check(text=text)
    if isinstance(result, Prepared):
        assert 1 <= result.parts <= 255
    else:
        assert set(result) == {"text"}


def test_message_ids_are_uuid7_and_ordered_by_time() -> None:
    """Ids are UUIDv7 (time first): ids made in later milliseconds sort after earlier ones,
    which keeps every index on message id appending at its end (docs/storage.md)."""
    before = time.time_ns() // 1_000_000  # wall-clock: the id embeds it
    first = new_message_id()
    while time.time_ns() // 1_000_000 <= before + 1:  # bounded: two milliseconds at most
        pass
    second = new_message_id()
    after = time.time_ns() // 1_000_000
    for value in (first, second):
        parsed = uuid.UUID(hex=value)
        assert len(value) == 32 and value == parsed.hex
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert before <= int(first[:12], 16) < int(second[:12], 16) <= after
    assert first < second


def test_message_ids_do_not_repeat_and_keep_their_version_bits() -> None:
    batch = new_message_ids(5_000)
    ids = set(batch) | {new_message_id() for _ in range(5_000)}
    assert len(ids) == 10_000
    assert len({i[:12] for i in batch}) == 1  # a batch shares its millisecond
    # The random bits must not spill into the version or variant (a bug seen once).
    assert {(uuid.UUID(hex=i).version, uuid.UUID(hex=i).variant) for i in ids} == {
        (7, uuid.RFC_4122)
    }
