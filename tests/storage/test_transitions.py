"""How events change a message and its parts, and the history rows they write (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw.aggregate import aggregate_status
from smsgw.model import MessageStatus, StatusEvent
from smsgw.storage.errors import UnknownMessage
from smsgw.storage.transitions import (
    EventRow,
    MessageRecord,
    PartRecord,
    apply_event,
    initial_status,
)

S = MessageStatus


def record(*parts: MessageStatus) -> MessageRecord:
    return MessageRecord(
        id="m",
        client="c",
        client_ref="ref",
        status=aggregate_status(parts),
        reason="accepted",
        updated_at=0.0,
        provider=None,
        parts={n: PartRecord(s, "accepted", 0.0, None) for n, s in enumerate(parts, 1)},
    )


def test_initial_status() -> None:
    assert initial_status(None, 100.0) is S.QUEUED
    assert initial_status(100.0, 100.0) is S.QUEUED  # due now
    assert initial_status(50.0, 100.0) is S.QUEUED  # already due
    assert initial_status(101.0, 100.0) is S.SCHEDULED


def test_message_event_applies_to_every_part() -> None:
    rec = record(S.QUEUED, S.QUEUED)
    applied = apply_event(rec, StatusEvent("m", S.SUBMITTING, "go", provider="p"), 5.0)
    assert applied.rows == (
        EventRow("m", 1, S.SUBMITTING, "go", 5.0, True),
        EventRow("m", 2, S.SUBMITTING, "go", 5.0, True),
        EventRow("m", None, S.SUBMITTING, "go", 5.0, True),
    )
    assert applied.parts == (1, 2) and applied.message_changed and not applied.refused
    assert applied.change is not None
    assert (applied.change.old, applied.change.new, applied.change.client_ref) == (
        S.QUEUED,
        S.SUBMITTING,
        "ref",
    )
    assert rec.status is S.SUBMITTING and rec.provider == "p" and rec.updated_at == 5.0
    assert all(p.status is S.SUBMITTING and p.provider == "p" for p in rec.parts.values())


def test_part_event_writes_a_message_row_only_when_the_aggregate_changes() -> None:
    rec = record(S.SUBMITTING, S.SUBMITTING)
    first = apply_event(rec, StatusEvent("m", S.SUBMITTED, "resp", part_number=1), 1.0)
    assert first.rows == (EventRow("m", 1, S.SUBMITTED, "resp", 1.0, True),)
    assert first.change is None and rec.status is S.SUBMITTING
    second = apply_event(rec, StatusEvent("m", S.SUBMITTED, "resp", part_number=2), 2.0)
    assert second.rows == (
        EventRow("m", 2, S.SUBMITTED, "resp", 2.0, True),
        EventRow("m", None, S.SUBMITTED, "resp", 2.0, True),
    )
    assert second.change is not None and second.change.new is S.SUBMITTED


def test_refused_event_is_recorded_but_changes_nothing() -> None:
    rec = record(S.DELIVERED, S.SUBMITTED)
    before = rec.copy()
    applied = apply_event(rec, StatusEvent("m", S.SUBMITTED, "late resp", part_number=1), 3.0)
    assert applied.refused
    assert applied.rows == (EventRow("m", 1, S.SUBMITTED, "late resp", 3.0, False),)
    assert applied.parts == () and not applied.message_changed and applied.change is None
    assert rec == before


def test_message_event_skips_final_parts() -> None:
    rec = record(S.DELIVERED, S.QUEUED)
    applied = apply_event(rec, StatusEvent("m", S.FAILED, "no route"), 1.0)
    assert [row.part_number for row in applied.rows] == [2, None]
    assert rec.parts[1].status is S.DELIVERED and rec.parts[2].status is S.FAILED
    assert rec.status is S.FAILED  # all final, not all delivered: the worst


def test_message_event_on_a_final_message_is_refused_at_message_level() -> None:
    rec = record(S.DELIVERED)
    applied = apply_event(rec, StatusEvent("m", S.EXPIRED, "validity"), 1.0)
    assert applied.refused
    assert applied.rows == (EventRow("m", None, S.EXPIRED, "validity", 1.0, False),)


def test_replay_leaves_a_final_status() -> None:
    rec = record(S.FAILED, S.FAILED)
    applied = apply_event(rec, StatusEvent("m", S.QUEUED, "replayed"), 1.0)
    assert not applied.refused and rec.status is S.QUEUED
    assert applied.change is not None and applied.change.old is S.FAILED


def test_unknown_part_leaves_the_record_alone() -> None:
    rec = record(S.QUEUED)
    before = rec.copy()
    with pytest.raises(UnknownMessage, match="no part 2"):
        apply_event(rec, StatusEvent("m", S.SUBMITTED, "x", part_number=2), 1.0)
    assert rec == before


def test_copy_is_deep() -> None:
    rec = record(S.QUEUED)
    copy = rec.copy()
    apply_event(copy, StatusEvent("m", S.SUBMITTING, "x"), 1.0)
    assert rec.parts[1].status is S.QUEUED


events = st.builds(
    StatusEvent,
    message_id=st.just("m"),
    status=st.sampled_from(list(MessageStatus)),
    reason=st.sampled_from(["a", "b"]),
    part_number=st.none() | st.integers(1, 3),
)


@given(st.lists(st.sampled_from(list(MessageStatus)), min_size=3, max_size=3), st.lists(events))
def test_invariants_over_any_sequence(
    parts: list[MessageStatus], sequence: list[StatusEvent]
) -> None:
    rec = record(*parts)
    for at, event in enumerate(sequence, 1):
        before = rec.copy()
        applied = apply_event(rec, event, float(at))
        # The message's status is always the aggregate of its parts.
        assert rec.status is aggregate_status(p.status for p in rec.parts.values())
        # A final part left its status only for a replay.
        for n, part in rec.parts.items():
            if before.parts[n].status.is_final and part.status is not before.parts[n].status:
                assert part.status in (S.QUEUED, S.SCHEDULED)
        # Refused: exactly one row, not applied, nothing changed.
        if applied.refused:
            assert rec == before
            assert [r.applied for r in applied.rows] == [False]
        else:
            assert all(r.applied for r in applied.rows)
        # A message row is written when (and only when) the aggregate changed or the event was
        # about the whole message.
        message_rows = [r for r in applied.rows if r.part_number is None]
        changed = before.status is not rec.status
        assert (applied.change is not None) == changed
        if not applied.refused:
            assert len(message_rows) == int(changed or event.part_number is None)
            assert all(r.status is rec.status for r in message_rows)
