"""The processor's per-provider counters (``ProviderStatsBuffer``) on a real SQLite store: a
flush the database does not take keeps its counts for the next one."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from fakeclock import FakeClock
from sqlite_lock import write_locked

from smsgw.processor import ProviderStatsBuffer
from smsgw.storage import StoreUnavailable, open_store


async def test_counts_a_failed_flush_could_not_write_are_written_by_the_next(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.sqlite3"
    clock = FakeClock()
    buffer = ProviderStatsBuffer(clock)
    with trio.fail_after(30):
        async with open_store(path, clock=clock, busy_timeout=0.05) as store:
            buffer.add("a", submitted=3, latency_sum=1.5, latency_count=3)
            buffer.add("b", failed=1)
            with write_locked(path), pytest.raises(StoreUnavailable):
                await buffer.flush(store)
            buffer.add("a", submitted=2, receipts=4)
            await buffer.flush(store)
            stats = {s.provider: s for s in await store.provider_stats()}
            await buffer.flush(store)  # nothing left: writes nothing more
            again = {s.provider: s for s in await store.provider_stats()}
    a, b = stats["a"], stats["b"]
    assert (a.submitted, a.receipts, a.latency_sum, a.latency_count) == (5, 4, 1.5, 3)
    assert (b.submitted, b.failed) == (0, 1)
    assert again == stats
