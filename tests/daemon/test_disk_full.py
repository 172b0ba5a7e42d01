"""The disk fills up under ``smsgw run`` (each database file capped with RLIMIT_FSIZE, so a
write past the cap fails as on a full disk), while clients submit through the HTTP API.

- The API accepts messages until the database cannot take more, then answers 503 naming the
  reason, never 500: what it accepted is exactly what it stored.
- The gateway keeps running; each kind of failure is logged once (then a reminder every 30 s),
  not once per message or receipt; no supervised task fails.
- After a restart with room on the disk, every accepted message ends ``delivered``. Those the
  SMSC accepted while their SMSC id could not be written are sent again (the only way to be sure
  they were sent): counted, and bounded by what can be leased at once.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from smsgw.api.auth import hash_key
from smsgw.model import MessageStatus
from smsgw.simulator import ReceiptConfig, Simulator, SimulatorConfig

from .harness import (
    DaemonProcess,
    count_with_status,
    gateway_toml,
    poll,
    provider_toml,
    receipts_settled,
    statuses,
    write_config,
)

pytestmark = pytest.mark.slow

KEY = "disk-full-test-key"
#: A database file (or its write-ahead log) cannot grow past this many bytes.
FILE_LIMIT = 2 * 1024 * 1024
BATCH = 100
#: Batches sent at most: far more than fit under FILE_LIMIT.
MAX_BATCHES = 60
CONSUMERS = 2
LEASE_BATCH = 16


def _config_text(tmp_path: Path, port: int) -> str:
    key = f'[[api.keys]]\nname = "test"\nsha256 = "{hash_key(KEY)}"\nscopes = ["send", "read"]\n'
    queue = gateway_toml(
        tmp_path,
        drain_grace="5s",
        consumers=CONSUMERS,
        lease_batch=LEASE_BATCH,
        visibility_timeout="2s",
    )
    return queue + key + provider_toml("smsc", port)


def _text(number: int, n: int) -> str:
    return f"{number}/{n} " + "x" * 100


def _batch(number: int) -> dict[str, Any]:
    return {
        "messages": [
            {"to": f"+4915{number:04d}{n:04d}", "from": "ACME", "text": _text(number, n)}
            for n in range(BATCH)
        ]
    }


async def _fill(api: str) -> tuple[list[str], set[str], Counter[int], list[str]]:
    """Submit batches until the API refused three; the ids and texts accepted, the answers'
    status codes, and the refusals' messages."""
    ids: list[str] = []
    texts: set[str] = set()
    codes: Counter[int] = Counter()
    refusals: list[str] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as client:
        for number in range(MAX_BATCHES):
            response = await client.post("/api/v1/messages/batch", json=_batch(number))
            codes[response.status_code] += 1
            if response.status_code != 202:
                refusals.append(response.json()["message"])
                if len(refusals) == 3:
                    break
                continue
            items = response.json()["results"]
            assert all(item["result"] == "accepted" for item in items), items
            ids += [item["id"] for item in items]
            texts.update(_text(number, n) for n in range(BATCH))
    return ids, texts, codes, refusals


async def test_a_full_disk_refuses_new_messages_and_loses_none(tmp_path: Path) -> None:
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            receipts = ReceiptConfig(attempts=50, retry_delay=0.5)
            sim = Simulator(SimulatorConfig(seed=5, receipts=receipts))
            port = await nursery.start(sim.serve)
            config = write_config(tmp_path / "gw.toml", _config_text(tmp_path, port))

            full = await nursery.start(DaemonProcess(config, file_size_limit=FILE_LIMIT).run)
            ready = await full.wait_logged("gateway ready")
            ids, accepted, codes, refusals = await _fill(ready["api"])
            assert ids, "nothing was accepted before the disk filled: raise FILE_LIMIT"
            assert codes[503] >= 1 and codes[500] == 0, codes
            assert all("database" in r or "queue" in r for r in refusals), refusals
            await trio.sleep(2.0)  # the gateway works on what it accepted, and fails to write
            assert full.returncode is None, full.tail()
            full.signal(signal.SIGTERM)
            await full.wait_exit(60)

            second = await nursery.start(DaemonProcess(config).run)
            await second.wait_logged("gateway ready")
            # Those the first process had sent without recording it come back once their
            # leases expire, and are sent again: wait for every one to be delivered.
            await poll(
                lambda: count_with_status(config, MessageStatus.DELIVERED) == len(ids),
                60,
                "every accepted message delivered",
            )
            await poll(lambda: receipts_settled(sim), 30, "every receipt answered")
            second.signal(signal.SIGTERM)
            assert await second.wait_exit(60) == 0
            nursery.cancel_scope.cancel()

    found = Counter((await statuses(config, ids)).values())
    assert found == {MessageStatus.DELIVERED: len(ids)}, found
    warnings = [r for r in full.records if r.get("level") in ("warning", "error", "critical")]
    failed_tasks = [r for r in warnings if str(r.get("message", "")).startswith("task ")]
    assert not failed_tasks, failed_tasks
    # A line per kind of failure (and per consumer), not per message: a few dozen at most for
    # hundreds of messages and receipts.
    assert len(warnings) <= 30, [r.get("message") for r in warnings]
    texts = Counter(m.content for m in sim.smsc.store)
    # What the SMSC got is exactly what the API accepted: nothing refused was sent.
    sent, wanted = set(texts), {t.encode() for t in accepted}
    assert sent == wanted, (len(sent - wanted), "refused but sent", len(wanted - sent), "lost")
    duplicates = sum(n - 1 for n in texts.values())
    assert duplicates <= CONSUMERS * LEASE_BATCH, duplicates
    print(
        f"disk full: {len(ids)} accepted, answers {dict(codes)}, {len(warnings)} warnings, "
        f"{duplicates} sent twice"
    )
    for record in warnings:
        print(" ", record.get("logger"), record.get("message"))
