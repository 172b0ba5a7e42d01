"""The aggregated status of a multipart message (smsgw/aggregate.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw.aggregate import FINAL_SEVERITY, PENDING_ORDER, aggregate_status
from smsgw.model import FINAL_STATUSES, PENDING_STATUSES, MessageStatus

S = MessageStatus

statuses = st.sampled_from(list(MessageStatus))
part_lists = st.lists(statuses, min_size=1, max_size=12)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([S.QUEUED], S.QUEUED),
        ([S.DELIVERED], S.DELIVERED),
        ([S.DELIVERED, S.DELIVERED, S.DELIVERED], S.DELIVERED),
        # some part pending: the least advanced pending state
        ([S.DELIVERED, S.SUBMITTED], S.SUBMITTED),
        ([S.SUBMITTED, S.SUBMITTING, S.DELIVERED], S.SUBMITTING),
        ([S.SUBMITTING, S.QUEUED], S.QUEUED),
        ([S.QUEUED, S.SCHEDULED], S.SCHEDULED),
        ([S.FAILED, S.QUEUED], S.QUEUED),
        ([S.REJECTED, S.SUBMITTED], S.SUBMITTED),
        # all final: delivered only if all delivered, else the worst
        ([S.DELIVERED, S.EXPIRED], S.EXPIRED),
        ([S.DELIVERED, S.UNDELIVERED, S.EXPIRED], S.UNDELIVERED),
        ([S.EXPIRED, S.REJECTED, S.UNDELIVERED], S.REJECTED),
        ([S.REJECTED, S.FAILED, S.DELIVERED], S.FAILED),
    ],
)
def test_rule_table(parts: list[MessageStatus], expected: MessageStatus) -> None:
    assert aggregate_status(parts) is expected


def test_orders_cover_exactly_the_pending_and_final_statuses() -> None:
    assert set(PENDING_ORDER) == PENDING_STATUSES and len(PENDING_ORDER) == len(PENDING_STATUSES)
    assert set(FINAL_SEVERITY) == FINAL_STATUSES and len(FINAL_SEVERITY) == len(FINAL_STATUSES)
    assert FINAL_SEVERITY[-1] is S.DELIVERED


def test_no_parts_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one part"):
        aggregate_status([])


@given(part_lists, st.randoms())
def test_order_independent(parts: list[MessageStatus], rnd: object) -> None:
    shuffled = list(parts)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert aggregate_status(shuffled) is aggregate_status(parts)


@given(part_lists)
def test_final_iff_all_parts_final(parts: list[MessageStatus]) -> None:
    assert aggregate_status(parts).is_final == all(p.is_final for p in parts)


@given(part_lists)
def test_delivered_iff_all_parts_delivered(parts: list[MessageStatus]) -> None:
    assert (aggregate_status(parts) is S.DELIVERED) == all(p is S.DELIVERED for p in parts)


@given(part_lists)
def test_result_is_one_of_the_parts_and_stable(parts: list[MessageStatus]) -> None:
    result = aggregate_status(parts)
    assert result in parts
    # Adding a part in the aggregated status changes nothing (set_parts relies on it).
    assert aggregate_status([*parts, result]) is result


@given(statuses)
def test_one_part_is_the_message(status: MessageStatus) -> None:
    assert aggregate_status([status]) is status


@given(part_lists, statuses)
def test_a_pending_message_is_as_far_as_its_slowest_pending_part(
    parts: list[MessageStatus], extra: MessageStatus
) -> None:
    result = aggregate_status([*parts, extra])
    pending = [p for p in [*parts, extra] if not p.is_final]
    if pending:
        assert all(PENDING_ORDER.index(result) <= PENDING_ORDER.index(p) for p in pending)
