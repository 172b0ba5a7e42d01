"""The backup of docs/operations.md ("Backups"), taken from a running ``smsgw run`` and restored.

1. ``smsgw run`` sends 600 messages (receipts on) at a rate that makes the traffic last a few
   seconds. Mid-traffic, a consistent copy of each SQLite file is taken with ``VACUUM INTO``,
   the database first, then the queue, as the documentation says.
2. The gateway is then killed (SIGKILL: the machine is lost), its files are replaced by the
   copies (their ``-wal``/``-shm`` files removed), and ``smsgw run`` is started on them.

The restored gateway must start, and finish what the copies say is still to do: every message
in the restored database ends ``delivered``, except those the SMSC had accepted before the
queue was copied (no longer queued there; their rows in the older database copy stay as they
were then, as the documentation warns). None was lost: every message reached the SMSC.
"""

from __future__ import annotations

import signal
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
import trio

from smsgw.messages import SubmitRequest
from smsgw.model import MessageStatus
from smsgw.simulator import ReceiptConfig, Simulator, SimulatorConfig

from .harness import (
    DaemonProcess,
    enqueue,
    gateway_toml,
    poll,
    provider_toml,
    receipts_settled,
    statuses,
    write_config,
)

pytestmark = pytest.mark.slow

COUNT = 600
RATE = 200  # per second: the traffic lasts about 3 s
BACKUP_AFTER = 150


def _config_text(tmp_path: Path, port: int) -> str:
    queue = gateway_toml(tmp_path, visibility_timeout="2s")
    return queue + provider_toml("smsc", port, rate=f"{{ per_second = {RATE} }}")


def _backup(source: Path, target: Path) -> None:
    """``sqlite3 SOURCE "VACUUM INTO 'TARGET'"``, as docs/operations.md says."""
    connection = sqlite3.connect(source, timeout=10)
    try:
        connection.execute("VACUUM INTO ?", (str(target),))
    finally:
        connection.close()


def _restore(copy: Path, live: Path) -> None:
    for suffix in ("-wal", "-shm"):
        live.with_name(live.name + suffix).unlink(missing_ok=True)
    copy.replace(live)


async def test_a_backup_taken_mid_traffic_restores_and_finishes(tmp_path: Path) -> None:
    state, backups = tmp_path / "state", tmp_path / "backups"
    backups.mkdir()
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            receipts = ReceiptConfig(attempts=10, retry_delay=0.5)
            sim = Simulator(SimulatorConfig(seed=11, receipts=receipts))
            port = await nursery.start(sim.serve)
            config = write_config(tmp_path / "gw.toml", _config_text(tmp_path, port))
            requests = [
                SubmitRequest(to=f"4670{n:07d}", source="backup", text=f"backup test {n:05d}")
                for n in range(COUNT)
            ]
            ids = await enqueue(config, requests, due_in=3.0)

            first = await nursery.start(DaemonProcess(config).run)
            await poll(lambda: sim.stats.submits_accepted >= BACKUP_AFTER, 60, "traffic")
            await trio.to_thread.run_sync(_backup, state / "smsgw.sqlite3", backups / "db")
            await trio.to_thread.run_sync(_backup, state / "queue.sqlite3", backups / "queue")
            sent_before_queue_copy = {m.content for m in sim.smsc.store}
            assert len(sent_before_queue_copy) < COUNT, "the traffic ended first: lower RATE"
            first.kill()
            assert await first.wait_exit(30) == -signal.SIGKILL

            _restore(backups / "db", state / "smsgw.sqlite3")
            _restore(backups / "queue", state / "queue.sqlite3")
            second = await nursery.start(DaemonProcess(config).run)
            await poll(lambda: len({m.content for m in sim.smsc.store}) == COUNT, 60, "all sent")
            await poll(lambda: receipts_settled(sim), 30, "every receipt answered")
            second.signal(signal.SIGTERM)
            assert await second.wait_exit(60) == 0
            nursery.cancel_scope.cancel()

    texts = {r.text.encode(): i for i, r in zip(ids, requests, strict=True) if r.text is not None}
    assert {m.content for m in sim.smsc.store} == set(texts)  # none lost
    found = await statuses(config, ids)
    older = {texts[t] for t in sent_before_queue_copy}
    behind = {i: s for i, s in found.items() if s is not MessageStatus.DELIVERED}
    assert set(behind) <= older, Counter(behind.values())
    assert Counter(found[i] for i in ids if i not in older) == {
        MessageStatus.DELIVERED: COUNT - len(older)
    }
    print(
        f"backup: taken after {len(sent_before_queue_copy)} of {COUNT} sent; after the restore "
        f"{len(behind)} rows stay behind the truth ({dict(Counter(behind.values()))})"
    )
