"""Receipt -> part correlation: keys, parking early receipts, orphans, the memory cap."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp_codec.message_id import MessageIdError, MessageIdFormat
from smsgw.correlation import (
    Correlator,
    Match,
    Orphan,
    OrphanReason,
    SmscKey,
    receipt_key,
    resp_key,
)
from smsgw.model import PartRef

F = MessageIdFormat
PART = PartRef("m1", 1)


def test_hex_response_matches_decimal_receipt_for_such_a_provider() -> None:
    # Vonage-style: hex in submit_sm_resp, decimal in the receipt.
    fmt = F.HEX_RESP_DECIMAL_RECEIPT
    assert resp_key("p", "0A1B2C", fmt) == receipt_key("p", "00662316", fmt)
    assert resp_key("p", "0a1b2c", fmt) == SmscKey("p", "662316")
    # Read the AUTO way, the same two spellings name different messages.
    assert resp_key("p", "0A1B2C", F.AUTO) != receipt_key("p", "662316", F.AUTO)


@pytest.mark.parametrize(
    ("fmt", "resp", "receipt", "same"),
    [
        (F.AUTO, "000123", "123", True),
        (F.AUTO, "ABC-def", "abc-DEF", True),
        (F.AS_IS, "000123", "123", False),
        (F.HEX, "ff", "FF", True),
        (F.HEX, "ff", "255", False),
        (F.DECIMAL_RESP_HEX_RECEIPT, "255", "FF", True),
    ],
)
def test_keys_per_provider_form(fmt: MessageIdFormat, resp: str, receipt: str, same: bool) -> None:
    assert (resp_key("p", resp, fmt) == receipt_key("p", receipt, fmt)) is same


def test_keys_are_per_provider() -> None:
    assert resp_key("a", "1", F.AUTO) != resp_key("b", "1", F.AUTO)


def test_empty_id_is_an_error() -> None:
    with pytest.raises(MessageIdError):
        receipt_key("p", " \x00", F.AUTO)


def test_early_receipt_is_parked_then_matched_when_mapped() -> None:
    c: Correlator[str] = Correlator(park_time=30)
    key = SmscKey("p", "1")
    assert c.lookup(key, 0.0) is None
    assert c.park(key, "receipt", 1.0).match is None
    assert len(c) == 1 and c.next_deadline() == 31.0
    assert c.expire(30.9) == []
    assert c.mapped(key, PART, 30.9) == [Match(key, "receipt", PART, 1.0)]
    assert len(c) == 0 and c.next_deadline() is None
    assert c.expire(100.0) == []
    stats = c.stats()
    assert (stats.parked_total, stats.rematched, stats.orphaned_expired) == (1, 1, 0)


def test_a_mapping_after_the_park_time_does_not_match() -> None:
    # Whether expire() or mapped() comes first, a receipt past its park time is an orphan.
    c: Correlator[str] = Correlator(park_time=30)
    key = SmscKey("p", "1")
    c.park(key, "r", 0.0)
    assert c.mapped(key, PART, 30.0) == []
    assert c.expire(30.0) == [Orphan(key, "r", 0.0, OrphanReason.EXPIRED)]
    assert len(c) == 0


def test_receipt_orphaned_after_the_park_time() -> None:
    c: Correlator[str] = Correlator(park_time=30)
    key = SmscKey("p", "1")
    c.park(key, "r1", 10.0)
    c.park(SmscKey("p", "2"), "r2", 20.0)
    assert c.expire(39.99) == []
    assert c.expire(40.0) == [Orphan(key, "r1", 10.0, OrphanReason.EXPIRED)]
    # A mapping after the orphaning finds nothing left to match.
    assert c.mapped(key, PART, 41.0) == []
    assert [o.receipt for o in c.expire(50.0)] == ["r2"]
    assert c.stats().orphaned_expired == 2


def test_several_receipts_for_one_id_come_back_in_order() -> None:
    c: Correlator[str] = Correlator()
    key = SmscKey("p", "7")
    for i, receipt in enumerate(["enroute", "delivered"]):
        c.park(key, receipt, float(i))
    assert [m.receipt for m in c.mapped(key, PART, 5.0)] == ["enroute", "delivered"]


def test_mapping_announced_between_lookup_and_park_is_not_missed() -> None:
    # The DLR handler read the database before the mapping was committed; the processor
    # announced it before the handler parked. park() must match at once.
    c: Correlator[str] = Correlator(remember_time=60)
    key = SmscKey("p", "1")
    assert c.mapped(key, PART, 1.0) == []
    result = c.park(key, "receipt", 1.5)
    assert result.match == Match(key, "receipt", PART, None)
    assert len(c) == 0 and c.stats().matched_on_park == 1
    assert c.lookup(key, 2.0) == PART
    # Forgotten after remember_time: the database answers from then on.
    assert c.lookup(key, 61.0) is None
    assert c.park(key, "late", 61.0).match is None


def test_remapping_an_id_points_at_the_newest_part() -> None:
    c: Correlator[str] = Correlator()
    key = SmscKey("p", "1")
    c.mapped(key, PartRef("old", 1), 0.0)
    c.mapped(key, PartRef("new", 2), 1.0)
    assert c.lookup(key, 1.0) == PartRef("new", 2)


def test_park_is_capped_oldest_evicted_and_reported() -> None:
    c: Correlator[int] = Correlator(max_parked=3)
    evicted = []
    for i in range(5):
        evicted.extend(c.park(SmscKey("p", str(i)), i, float(i)).evicted)
    assert len(c) == 3
    assert [(o.receipt, o.reason) for o in evicted] == [
        (0, OrphanReason.EVICTED),
        (1, OrphanReason.EVICTED),
    ]
    assert c.mapped(SmscKey("p", "0"), PART, 6.0) == []  # evicted: gone
    assert [m.receipt for m in c.mapped(SmscKey("p", "4"), PART, 6.0)] == [4]
    assert c.stats().orphaned_evicted == 2


def test_remembered_mappings_are_capped() -> None:
    c: Correlator[int] = Correlator(max_remembered=2)
    for i in range(3):
        c.mapped(SmscKey("p", str(i)), PartRef("m", i + 1), float(i))
    assert c.stats().remembered == 2
    assert c.lookup(SmscKey("p", "0"), 3.0) is None
    assert c.lookup(SmscKey("p", "2"), 3.0) == PartRef("m", 3)


def test_zero_park_time_orphans_at_once() -> None:
    c: Correlator[str] = Correlator(park_time=0)
    c.park(SmscKey("p", "1"), "r", 5.0)
    assert [o.reason for o in c.expire(5.0)] == [OrphanReason.EXPIRED]


def test_time_must_not_go_backwards() -> None:
    c: Correlator[str] = Correlator()
    c.expire(10.0)
    with pytest.raises(ValueError, match="backwards"):
        c.park(SmscKey("p", "1"), "r", 9.0)
    with pytest.raises(ValueError, match="finite"):
        c.expire(math.nan)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"park_time": -1},
        {"park_time": math.inf},
        {"remember_time": math.nan},
        {"max_parked": 0},
        {"max_remembered": True},
    ],
)
def test_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Correlator(**kwargs)


# --- property: every parked receipt comes out exactly once, at the right time ----------------

ops = st.lists(
    st.tuples(
        st.sampled_from(["park", "map", "expire"]),
        st.integers(0, 5),  # which smsc id
        st.floats(0, 20),  # time step
    ),
    max_size=60,
)


@given(ops, st.integers(1, 6))
def test_each_parked_receipt_is_reported_once(
    steps: list[tuple[str, int, float]], cap: int
) -> None:
    park_time = 30.0
    c: Correlator[int] = Correlator(park_time=park_time, max_parked=cap, remember_time=10.0)
    now = 0.0
    parked: dict[int, float] = {}  # receipt -> parked at
    seen: list[int] = []

    def orphaned(orphans: tuple[Orphan[int], ...] | list[Orphan[int]]) -> None:
        for o in orphans:
            if o.reason is OrphanReason.EXPIRED:
                assert now >= parked[o.receipt] + park_time
            seen.append(o.receipt)

    for n, (op, smsc_id, step) in enumerate(steps):
        now += step
        key = SmscKey("p", str(smsc_id))
        if op == "park":
            parked[n] = now
            result = c.park(key, n, now)
            orphaned(result.evicted)
            if result.match is not None:
                seen.append(n)
        elif op == "map":
            for match in c.mapped(key, PartRef("m", smsc_id + 1), now):
                assert match.key == key
                assert match.parked_at is not None and now < match.parked_at + park_time
                seen.append(match.receipt)
        else:
            orphaned(c.expire(now))
        assert len(c) <= cap
    now += park_time
    orphaned(c.expire(now))
    assert len(c) == 0
    assert sorted(seen) == sorted(parked)  # each exactly once
