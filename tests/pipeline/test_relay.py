"""The receipt relay on a real Redis: what one instance publishes, every instance reads (each from
its own cursor, kept across restarts, and read again from ``rewind`` seconds before it at a
restart); matched entries leave the stream; a damaged entry is skipped. And the DLR handler with
a relay: a receipt no part is known for is relayed before the SMSC is answered, or answered with
a temporary error when Redis cannot take it; one parked by its sender when that sender stopped
is recorded after its restart."""

from __future__ import annotations

from pathlib import Path

import trio

from smpp_codec.codec import encode
from smpp_codec.pdu import DataSm, DeliverSm, SubmitSm
from smsgw.adapters.redis import RedisClient, open_redis
from smsgw.dlr import RETRY_LATER, DlrHandler, Notifier
from smsgw.messages import Counters
from smsgw.model import MessageStatus, NewMessage, SmscIdMapping
from smsgw.receipt_relay import ReceiptRelay, rewound
from smsgw.storage import open_store
from smsgw.testing.ports import free_port

from .test_dlr_batch import Answers


def receipt_pdu(smsc_id: str) -> DeliverSm:
    text = f"id:{smsc_id} sub:001 dlvrd:001 submit date:2611281200 done date:2611281200"
    return DeliverSm(
        sequence_number=7,
        source_addr="4915112345",
        esm_class=4,
        short_message=f"{text} stat:DELIVRD err:000".encode(),
    )


async def test_every_instance_reads_what_one_publishes(redis: RedisClient, prefix: str) -> None:
    a, b = ReceiptRelay(redis, prefix, "a"), ReceiptRelay(redis, prefix, "b")
    for reader in (a, b):  # running before anything is published: each starts at the end
        assert await reader.read(block=0.01) == []
    data_sm = DataSm(sequence_number=8, esm_class=4, source_addr="1")
    ids = await a.publish([("p1", receipt_pdu("42")), ("p2", data_sm)])
    for reader in (a, b):
        got = await reader.read(block=0.01)
        assert [(r.entry, r.origin, r.provider) for r in got] == [
            (ids[0], "a", "p1"),
            (ids[1], "a", "p2"),
        ]
        # The PDUs come back as they were sent.
        assert [encode(r.pdu) for r in got] == [encode(receipt_pdu("42")), encode(data_sm)]


async def test_the_cursor_moves_on_advance_and_survives_a_restart(
    redis: RedisClient, prefix: str
) -> None:
    a, b = ReceiptRelay(redis, prefix, "a"), ReceiptRelay(redis, prefix, "b")
    await b.read(block=0.01)
    first = await a.publish([("p", receipt_pdu("1"))])
    assert [r.entry for r in await b.read(block=0.01)] == first
    # Not handled yet: read again.
    assert [r.entry for r in await b.read(block=0.01)] == first
    await b.advance()
    assert await b.read(block=0.01) == []
    # "b" is down while two more come; "b" again reads exactly those.
    more = await a.publish([("p", receipt_pdu("2")), ("p", receipt_pdu("3"))])
    again = ReceiptRelay(redis, prefix, "b")
    assert [r.entry for r in await again.read(block=0.01)] == more
    # A new instance name starts after all of them.
    assert await ReceiptRelay(redis, prefix, "c").read(block=0.01) == []


def test_rewound_goes_back_on_the_entry_ids_own_clock() -> None:
    assert rewound("1732800000123-5", 30.0) == "1732799970123-0"
    assert rewound("1732800000123-5", 0.0) == "1732800000123-5"
    assert rewound("1000-0", 30.0) == "0-0"


async def test_a_restart_reads_again_what_is_still_in_the_stream_before_the_cursor(
    redis: RedisClient, prefix: str
) -> None:
    a, b = ReceiptRelay(redis, prefix, "a"), ReceiptRelay(redis, prefix, "b")
    await b.read(block=0.01)
    ids = await a.publish([("p", receipt_pdu(str(n))) for n in range(3)])
    assert [r.entry for r in await b.read(block=0.01)] == ids
    await b.advance()
    await a.matched(ids[:1])  # somebody recorded the first: it left the stream
    # "b" stops (what it parked is gone with it) and starts again.
    again = ReceiptRelay(redis, prefix, "b", rewind=60.0)
    assert [r.entry for r in await again.read(block=0.01)] == ids[1:]
    await again.advance()
    assert await again.read(block=0.01) == []
    # Reading the rewound part again never moved the stored cursor back.
    assert [r.entry for r in await ReceiptRelay(redis, prefix, "b").read(block=0.01)] == []


async def test_a_damaged_entry_is_skipped_and_passed(redis: RedisClient, prefix: str) -> None:
    a, b = ReceiptRelay(redis, prefix, "a"), ReceiptRelay(redis, prefix, "b")
    await b.read(block=0.01)
    await redis.command("XADD", b.stream, "*", "origin", "a", "provider", "p", "pdu", b"junk")
    not_a_receipt = encode(SubmitSm(sequence_number=1))
    await redis.command("XADD", b.stream, "*", "origin", "a", "provider", "p", "pdu", not_a_receipt)
    await redis.command("XADD", b.stream, "*", "origin", "a")  # fields missing
    good = await a.publish([("p", receipt_pdu("9"))])
    assert [r.entry for r in await b.read(block=0.01)] == good
    await b.advance()
    assert await b.read(block=0.01) == []


async def test_matched_entries_leave_the_stream(redis: RedisClient, prefix: str) -> None:
    a = ReceiptRelay(redis, prefix, "a")
    ids = await a.publish([("p", receipt_pdu(str(n))) for n in range(3)])
    assert await a.unmatched(ids) == set(ids)
    await ReceiptRelay(redis, prefix, "b").matched(ids[:2])
    assert await a.unmatched(ids) == {ids[2]}


async def test_relayed_receipts_and_cursors_survive_a_redis_crash(tmp_path: Path) -> None:
    from smsgw.testing.redis import RedisServer

    with RedisServer.start(tmp_path, appendonly=True, appendfsync="always") as server:
        async with open_redis(server.url) as client:
            a, b = ReceiptRelay(client, "p", "a"), ReceiptRelay(client, "p", "b")
            await b.read(block=0.01)
            first = await a.publish([("p", receipt_pdu("1"))])
            assert [r.entry for r in await b.read(block=0.01)] == first
            await b.advance()
            second = await a.publish([("p", receipt_pdu("2"))])
            # SIGKILL: Redis keeps only what its AOF holds.
            await trio.to_thread.run_sync(lambda: server.restart(kill=True))
            # The same objects go on (their connections died with the server), and a "b"
            # started afresh reads from the cursor "b" kept.
            assert [r.entry for r in await b.read(block=0.01)] == second
            assert [
                r.entry for r in await ReceiptRelay(client, "p", "b").read(block=0.01)
            ] == second
            assert await a.unmatched(first + second) == set(first + second)


async def test_an_unknown_receipt_is_relayed_then_answered_and_recorded_by_its_sender(
    redis: RedisClient, prefix: str, tmp_path: Path
) -> None:
    answers = Answers()
    async with (
        open_store(tmp_path / "a.sqlite3", synchronous="NORMAL") as store_a,
        open_store(tmp_path / "b.sqlite3", synchronous="NORMAL") as store_b,
    ):
        # "b" sent message m1, accepted as SMSC id 1001; the receipt comes to "a".
        await store_b.create_messages([NewMessage(id="m1", source="ACME", destination="+491")])
        await store_b.map_smsc_ids([SmscIdMapping("p", "1001", "m1", 1)])
        counters_a, counters_b = Counters(), Counters()
        relay_a, relay_b = ReceiptRelay(redis, prefix, "a"), ReceiptRelay(redis, prefix, "b")
        await relay_b.read(block=0.01)  # "b" is running before the receipt comes
        dlr_a = DlrHandler(
            store=store_a, counters=counters_a, notifier=Notifier(), providers=lambda _: None,
            relay=relay_a,
        )  # fmt: skip
        dlr_b = DlrHandler(
            store=store_b, counters=counters_b, notifier=Notifier(), providers=lambda _: None,
            relay=relay_b,
        )  # fmt: skip
        await dlr_a.handle_many([("p", answers.inbound("1001"))])
        assert answers.statuses == {"1001": 0}
        assert (counters_a.receipts_relayed, counters_a.receipts_parked) == (1, 0)
        relayed = await relay_b.read(block=0.01)
        await dlr_b.handle_relayed(relayed)
        detail = await store_b.get_message("m1")
        assert detail is not None and detail.message.status is MessageStatus.DELIVERED
        assert counters_b.receipts_relay_matched == 1
        assert await relay_a.unmatched(r.entry for r in relayed) == set()


async def test_a_receipt_the_relay_cannot_take_is_answered_with_a_temporary_error(
    tmp_path: Path,
) -> None:
    answers = Answers()
    counters = Counters()
    async with (
        open_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0) as down,
        open_store(tmp_path / "a.sqlite3", synchronous="NORMAL") as store,
    ):
        dlr = DlrHandler(
            store=store, counters=counters, notifier=Notifier(), providers=lambda _: None,
            relay=ReceiptRelay(down, "p", "a"),
        )  # fmt: skip
        with trio.fail_after(10):
            await dlr.handle_many([("p", answers.inbound("1001"))])
    assert answers.statuses == {"1001": RETRY_LATER}
    assert (counters.receipts_relayed, counters.receipts_parked) == (0, 0)


async def test_a_receipt_its_sender_had_parked_when_it_stopped_is_recorded_after_a_restart(
    redis: RedisClient, prefix: str, tmp_path: Path
) -> None:
    async with (
        open_store(tmp_path / "a.sqlite3", synchronous="NORMAL") as store_a,
        open_store(tmp_path / "b.sqlite3", synchronous="NORMAL") as store_b,
    ):
        await store_b.create_messages([NewMessage(id="m1", source="ACME", destination="+491")])
        relay_b = ReceiptRelay(redis, prefix, "b")
        await relay_b.read(block=0.01)  # "b" is running before the receipt comes
        dlr_a = DlrHandler(
            store=store_a, counters=Counters(), notifier=Notifier(), providers=lambda _: None,
            relay=ReceiptRelay(redis, prefix, "a"),
        )  # fmt: skip
        dlr_b = DlrHandler(
            store=store_b, counters=Counters(), notifier=Notifier(), providers=lambda _: None,
            relay=relay_b,
        )  # fmt: skip
        with trio.fail_after(10):
            # The receipt overtakes m1's submit_sm_resp: "a" relays it, "b" parks its copy.
            await dlr_a.handle_many([("p", Answers().inbound("1001"))])
            await dlr_b.handle_relayed(await relay_b.read(block=0.01))
            await relay_b.advance()
            assert dlr_b.parked() == 1
            # The mapping is committed, and "b" stops before the parked copy is matched.
            await store_b.map_smsc_ids([SmscIdMapping("p", "1001", "m1", 1)])
            relay = ReceiptRelay(redis, prefix, "b", rewind=30.0)
            restarted = DlrHandler(
                store=store_b, counters=Counters(), notifier=Notifier(),
                providers=lambda _: None, relay=relay,
            )  # fmt: skip
            await restarted.handle_relayed(await relay.read(block=0.01))
        detail = await store_b.get_message("m1")
    assert detail is not None and detail.message.status is MessageStatus.DELIVERED
