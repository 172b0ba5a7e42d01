"""The DLR handler on a batch of receipts (what the gateway's dispatcher hands it): one store
call for all of them, each answered only after it; a bad receipt costs only itself. A real store
on a SQLite file; the receipts are real ``deliver_sm`` PDUs, answered through the client's own
:class:`Inbound` (its answerer records what the SMSC would be sent)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
import trio

from smpp_codec import Pdu
from smpp_codec.constants import CommandStatus, EsmClass, MessageState
from smpp_codec.message_id import MessageIdFormat
from smpp_codec.pdu import DeliverSm
from smpp_codec.receipt import DeliveryReceipt, format_receipt
from smsgw.dlr import RETRY_LATER, DlrHandler, Notifier
from smsgw.messages import Counters
from smsgw.model import MessageStatus, NewMessage, PartRef, SmscIdMapping
from smsgw.smpp.inbound import Inbound
from smsgw.storage import Store, open_store

WHEN = datetime(2026, 11, 28, 12, 0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "gateway.sqlite3", synchronous="NORMAL") as opened:
        yield opened


class Answers:
    """What the SMSC was answered, per receipt id."""

    def __init__(self) -> None:
        self.statuses: dict[str, int] = {}

    def inbound(self, smsc_id: str, *, text: bytes | None = None) -> Inbound:
        receipt = DeliveryReceipt(
            message_id=smsc_id,
            stat="DELIVRD",
            state=MessageState.DELIVERED,
            err="000",
            sub="001",
            dlvrd="001",
            submit_date=WHEN,
            done_date=WHEN,
        )
        pdu = DeliverSm(
            sequence_number=1,
            source_addr="4915112345",
            destination_addr="ACME",
            esm_class=EsmClass.DELIVERY_RECEIPT,
            short_message=format_receipt(receipt) if text is None else text,
        )

        async def answer(_inbound: Inbound, response: Pdu) -> bool:
            self.statuses[smsc_id] = response.command_status
            return True

        return Inbound(pdu, received_at=0.0, deadline=30.0, answerer=answer)


def handler(store: Store, counters: Counters) -> DlrHandler:
    return DlrHandler(store=store, counters=counters, notifier=Notifier(), providers=lambda _: None)


async def _mapped(store: Store, dlr: DlrHandler, count: int) -> list[str]:
    """``count`` one-part messages, accepted by provider "p" as ids 1001, 1002, ..."""
    ids = [f"m{n}" for n in range(count)]
    await store.create_messages(
        [NewMessage(id=i, source="ACME", destination="+4915112345", parts=1) for i in ids]
    )
    smsc_ids = [str(1001 + n) for n in range(count)]
    await store.map_smsc_ids(
        [SmscIdMapping("p", s, i, 1) for s, i in zip(smsc_ids, ids, strict=True)]
    )
    for smsc_id, message_id in zip(smsc_ids, ids, strict=True):
        dlr.expect("p", smsc_id, MessageIdFormat.AUTO, PartRef(message_id, 1))
    return smsc_ids


async def test_a_batch_of_receipts_is_one_store_call_and_each_is_answered(store: Store) -> None:
    counters = Counters()
    dlr = handler(store, counters)
    smsc_ids = await _mapped(store, dlr, 30)
    answers = Answers()
    before = store.writer_stats().requests
    with trio.fail_after(10):
        await dlr.handle_many([("p", answers.inbound(s)) for s in smsc_ids])
    assert store.writer_stats().requests - before == 1
    assert answers.statuses == dict.fromkeys(smsc_ids, int(CommandStatus.ESME_ROK))
    for n in range(30):
        detail = await store.get_message(f"m{n}")
        assert detail is not None and detail.message.status is MessageStatus.DELIVERED
    assert counters.receipts == 30


async def test_an_unreadable_or_unmatched_receipt_costs_only_itself(store: Store) -> None:
    counters = Counters()
    dlr = handler(store, counters)
    smsc_ids = await _mapped(store, dlr, 3)
    # A mapping whose message is gone (pruned): its receipt is an orphan, the others apply.
    dlr.expect("p", "999", MessageIdFormat.AUTO, PartRef("pruned", 1))
    answers = Answers()
    batch = [("p", answers.inbound(s)) for s in smsc_ids]
    batch.append(("p", answers.inbound("999")))
    batch.append(("p", answers.inbound("junk", text=b"not a receipt at all")))
    with trio.fail_after(10):
        await dlr.handle_many(batch)
    ok = int(CommandStatus.ESME_ROK)
    assert answers.statuses == {**dict.fromkeys(smsc_ids, ok), "999": ok, "junk": ok}
    assert (counters.receipts_invalid, counters.orphaned_receipts) == (1, 1)
    for n in range(3):
        detail = await store.get_message(f"m{n}")
        assert detail is not None and detail.message.status is MessageStatus.DELIVERED


async def test_when_the_store_fails_every_matched_receipt_is_asked_again(
    tmp_path: Path,
) -> None:
    counters = Counters()
    async with open_store(tmp_path / "gateway.sqlite3", synchronous="NORMAL") as store:
        dlr = handler(store, counters)
        smsc_ids = await _mapped(store, dlr, 4)
    # The store is closed now: nothing can be recorded or looked up, so the SMSC must send them
    # again; also the one whose mapping would have to be read from the database.
    answers = Answers()
    batch = [("p", answers.inbound(s)) for s in smsc_ids]
    batch.append(("p", answers.inbound("5555")))
    with trio.fail_after(10):
        await dlr.handle_many(batch)
    assert answers.statuses == dict.fromkeys([*smsc_ids, "5555"], RETRY_LATER)
