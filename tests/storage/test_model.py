"""The message model: fixed status names, which status may replace which, input validation."""

from __future__ import annotations

import math

import pytest

from smpp_codec.constants import MessageState
from smpp_codec.message_id import MessageIdFormat
from smsgw.model import (
    FINAL_STATUSES,
    PENDING_STATUSES,
    MessageStatus,
    NewInbound,
    NewMessage,
    NewNotification,
    NotificationKind,
    PartStatus,
    ProviderStatsDelta,
    SmscIdMapping,
    StatusEvent,
    may_replace,
    status_for_message_state,
)

S = MessageStatus


def test_status_names_are_the_fixed_lifecycle() -> None:
    # ARCHITECTURE.md, "Message lifecycle" (fixed): users see exactly these names.
    assert {status.value for status in MessageStatus} == {
        "queued", "submitting", "submitted", "delivered", "undelivered", "expired", "rejected",
        "failed", "scheduled",
    }  # fmt: skip
    for status in MessageStatus:
        assert status.value == status.name.lower()
        assert MessageStatus(status.value) is status
    assert PartStatus is MessageStatus


def test_final_and_pending_partition_the_statuses() -> None:
    assert {S.DELIVERED, S.UNDELIVERED, S.EXPIRED, S.REJECTED, S.FAILED} == FINAL_STATUSES
    assert {S.SCHEDULED, S.QUEUED, S.SUBMITTING, S.SUBMITTED} == PENDING_STATUSES
    assert all(s.is_final for s in FINAL_STATUSES)
    assert not any(s.is_final for s in PENDING_STATUSES)


@pytest.mark.parametrize("current", sorted(MessageStatus, key=lambda s: s.value))
@pytest.mark.parametrize("new", sorted(MessageStatus, key=lambda s: s.value))
def test_may_replace(current: MessageStatus, new: MessageStatus) -> None:
    expected = not current.is_final or new in (S.QUEUED, S.SCHEDULED)
    assert may_replace(current, new) is expected


def test_a_late_submitted_does_not_undo_a_receipt() -> None:
    assert not may_replace(S.DELIVERED, S.SUBMITTED)
    assert not may_replace(S.UNDELIVERED, S.SUBMITTING)
    assert may_replace(S.FAILED, S.QUEUED)  # a replay


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (MessageState.ENROUTE, None),
        (MessageState.ACCEPTED, None),
        (MessageState.DELIVERED, S.DELIVERED),
        (MessageState.EXPIRED, S.EXPIRED),
        (MessageState.DELETED, S.UNDELIVERED),
        (MessageState.UNDELIVERABLE, S.UNDELIVERED),
        (MessageState.UNKNOWN, S.UNDELIVERED),
        (MessageState.REJECTED, S.REJECTED),
    ],
)
def test_status_for_message_state(state: MessageState, status: MessageStatus | None) -> None:
    assert status_for_message_state(state) is status


@pytest.mark.parametrize(
    "make",
    [
        lambda: NewMessage(id="", source="a", destination="1"),
        lambda: NewMessage(id="m", source="a", destination=""),
        lambda: NewMessage(id="m", source="a", destination="1", parts=0),
        lambda: NewMessage(id="m", source="a", destination="1", parts=True),
        lambda: NewMessage(id="m", source="a", destination="1", created_at=math.nan),
        lambda: NewMessage(id="m", source="a", destination="1", client_ref=""),
        lambda: StatusEvent("m", S.QUEUED, "r", part_number=0),
        lambda: StatusEvent("m", "queued", "r"),  # type: ignore[arg-type]
        lambda: StatusEvent("m", S.QUEUED, "r", at=math.inf),
        lambda: SmscIdMapping("p", "1", "m", 0),
        lambda: SmscIdMapping("", "1", "m", 1),
        lambda: SmscIdMapping("p", "1", "m", 1, id_format="hex"),  # type: ignore[arg-type]
        lambda: NewInbound(id="i", provider="p", source="a", destination="b", payload="x"),  # type: ignore[arg-type]
        lambda: NewNotification(NotificationKind.STATUS, "", "{}"),
        lambda: NewNotification("status", "http://x", "{}"),  # type: ignore[arg-type]
        lambda: ProviderStatsDelta("p", submitted=-1),
        lambda: ProviderStatsDelta("p", latency_sum=math.nan),
    ],
)
def test_bad_input_is_refused_with_a_typed_error(make: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        make()  # type: ignore[operator]


def test_defaults() -> None:
    message = NewMessage(id="m", source="a", destination="1")
    assert (message.parts, message.reason, message.created_at) == (1, "accepted", None)
    assert SmscIdMapping("p", "1", "m", 1).id_format is MessageIdFormat.AUTO
