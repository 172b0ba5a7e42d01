"""Receipts that overtook their submit_sm_resp are stored before the SMSC is answered
(``parked_receipts``), so a restart loses none: recorded once their mapping comes (their row
deleted in that transaction), matched again after a restart, and their row deleted when they end
as orphans; a property over receipts before and after their mappings, sent again, across
restarts. A real store on a SQLite file; real ``deliver_sm`` PDUs, answered through the
client's :class:`Inbound`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_lock import write_locked

from smpp_codec.constants import CommandStatus
from smpp_codec.message_id import MessageIdFormat
from smsgw.dlr import RETRY_LATER, DlrHandler, Notifier
from smsgw.messages import Counters
from smsgw.model import MessageStatus, NewMessage, PartRef, SmscIdMapping
from smsgw.storage import Store, open_store

from .harness import provider, wait_until
from .test_dlr_batch import Answers

OK = int(CommandStatus.ESME_ROK)


def handler(store: Store, counters: Counters, *, park: float = 30.0) -> DlrHandler:
    config = provider("p", 2775, early_receipt_park=park)
    return DlrHandler(
        store=store, counters=counters, notifier=Notifier(), providers=lambda _: config
    )


async def _message(store: Store, message_id: str = "m1") -> None:
    await store.create_messages(
        [NewMessage(id=message_id, source="ACME", destination="+4915112345", parts=1)]
    )


async def _status(store: Store, message_id: str = "m1") -> MessageStatus:
    detail = await store.get_message(message_id)
    assert detail is not None
    return detail.message.status


async def test_a_parked_receipt_is_stored_before_its_answer_and_deleted_when_recorded(
    tmp_path: Path,
) -> None:
    async with open_store(tmp_path / "g.sqlite3") as store:
        counters = Counters()
        dlr = handler(store, counters)
        await _message(store)
        answers = Answers()
        with trio.fail_after(10):
            await dlr.handle_many([("p", answers.inbound("1001"))])  # its mapping is not known
            assert answers.statuses == {"1001": OK}
            (row,) = await store.parked_receipts()
            assert row[1] == "p" and dlr.parked() == 1
            # The submit_sm_resp comes: the mapping releases the parked receipt.
            await store.map_smsc_ids([SmscIdMapping("p", "1001", "m1", 1)])
            released = dlr.expect("p", "1001", MessageIdFormat.AUTO, PartRef("m1", 1))
            await dlr.apply_parked(released)
            assert await _status(store) is MessageStatus.DELIVERED
            assert await store.parked_receipts() == []
    assert counters.receipts_parked == 1 and counters.orphaned_receipts == 0


async def test_a_receipt_parked_before_a_restart_is_recorded_after_it(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite3"
    answers = Answers()
    with trio.fail_after(10):
        async with open_store(path) as store:
            await _message(store)
            await handler(store, Counters()).handle_many([("p", answers.inbound("1001"))])
            # The mapping is committed, then the process dies before the receipt is matched.
            await store.map_smsc_ids([SmscIdMapping("p", "1001", "m1", 1)])
        assert answers.statuses == {"1001": OK}
        async with open_store(path) as store:
            dlr = handler(store, Counters())
            await dlr.recover()
            assert await _status(store) is MessageStatus.DELIVERED
            assert await store.parked_receipts() == [] and dlr.parked() == 0


async def test_a_recovered_receipt_with_no_mapping_ends_as_an_orphan_and_its_row_goes(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    path = tmp_path / "g.sqlite3"
    with trio.fail_after(10):
        async with open_store(path) as store:
            await handler(store, Counters()).handle_many([("p", Answers().inbound("1001"))])
        async with open_store(path) as store:
            counters = Counters()
            dlr = handler(store, counters, park=0.2)
            await dlr.recover()
            assert dlr.parked() == 1  # parked again: its mapping may still come
            nursery.start_soon(dlr.run_expiry)
            await wait_until(lambda: counters.orphaned_receipts == 1, what="an orphan")
            await wait_until(lambda: dlr.parked() == 0, what="unparked")
            for _ in range(100):
                if not await store.parked_receipts():
                    break
                await trio.sleep(0.02)
            assert await store.parked_receipts() == []
            nursery.cancel_scope.cancel()


async def test_a_receipt_that_cannot_be_parked_is_asked_again(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite3"
    async with open_store(path, busy_timeout=0.2) as store:
        counters = Counters()
        dlr = handler(store, counters)
        answers = Answers()
        with write_locked(path), trio.fail_after(10):  # another process holds the write lock
            await dlr.handle_many([("p", answers.inbound("1001"))])
        assert answers.statuses == {"1001": RETRY_LATER}
        assert dlr.parked() == 0 and await store.parked_receipts() == []


# --- a property: receipts before and after their mappings, sent again, across restarts ------


@st.composite
def _events(draw: st.DrawFn) -> list[tuple[str, int]]:
    """For messages 0..n-1: ("receipt", i) once or more, ("mapping", i) once, ("restart", 0)
    anywhere, in any order."""
    count = draw(st.integers(1, 4))
    receipts = [("receipt", i) for i in range(count)]
    again = draw(st.lists(st.sampled_from(receipts), max_size=3))
    events = draw(st.permutations(receipts + again + [("mapping", i) for i in range(count)]))
    for _ in range(draw(st.integers(0, 2))):
        events.insert(draw(st.integers(0, len(events))), ("restart", 0))
    return events


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=_events())
async def test_every_receipt_is_recorded_whatever_the_order_copies_and_restarts(
    events: list[tuple[str, int]],
) -> None:
    count = 1 + max(i for _, i in events)
    segments: list[list[tuple[str, int]]] = [[]]
    for event in events:
        if event[0] == "restart":
            segments.append([])
        else:
            segments[-1].append(event)
    answers = Answers()
    with tempfile.TemporaryDirectory() as tmp, trio.fail_after(30):
        path = Path(tmp) / "g.sqlite3"
        async with open_store(path, synchronous="OFF") as store:
            for i in range(count):
                await _message(store, f"m{i}")
        for segment in segments:  # each a process: its store opened, its parked ones matched
            async with open_store(path, synchronous="OFF") as store:
                dlr = handler(store, Counters())
                await dlr.recover()
                for kind, i in segment:
                    smsc_id = str(1000 + i)
                    if kind == "receipt":
                        await dlr.handle_many([("p", answers.inbound(smsc_id))])
                        continue
                    # The submit_sm_resp: its mapping handed over, committed, parked released.
                    released = dlr.expect("p", smsc_id, MessageIdFormat.AUTO, PartRef(f"m{i}", 1))
                    await store.map_smsc_ids([SmscIdMapping("p", smsc_id, f"m{i}", 1)])
                    await dlr.apply_parked(released)
                statuses = [await _status(store, f"m{i}") for i in range(count)]
                left = await store.parked_receipts()
    assert statuses == [MessageStatus.DELIVERED] * count  # none lost
    assert left == []  # and nothing kept for nothing
    assert set(answers.statuses.values()) == {OK}
