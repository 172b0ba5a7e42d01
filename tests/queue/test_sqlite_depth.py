"""The SQLite queue's depth, counted from index ranges, agrees with one plain scan of the table
(the reference: what each state means, written the simple way)."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw.queue.base import MAX_PRIORITY, MIN_PRIORITY, QueueDepth
from smsgw.queue.sqlite import SCHEMA, _depth

NOW = 1_700_000_000.0

REFERENCE = """
    SELECT CASE
             WHEN state = 'dead' THEN 'dead'
             WHEN state = 'leased' AND lease_deadline > :now THEN 'leased'
             WHEN state = 'ready' AND due_at > :now THEN 'delayed'
             ELSE 'ready'
           END AS bucket, priority, count(*)
      FROM queue_messages GROUP BY bucket, priority
"""


def reference(conn: sqlite3.Connection) -> QueueDepth:
    totals = {"ready": 0, "delayed": 0, "leased": 0, "dead": 0}
    by_priority: dict[int, int] = {}
    for bucket, priority, n in conn.execute(REFERENCE, {"now": NOW}):
        totals[bucket] += n
        if bucket == "ready":
            by_priority[priority] = n
    return QueueDepth(ready_by_priority=dict(sorted(by_priority.items())), **totals)


# Offsets from NOW: zero included (due exactly now is ready; a lease ending now has expired).
offsets = st.sampled_from([-10.0, -0.001, 0.0, 0.001, 10.0])
rows = st.lists(
    st.tuples(
        st.sampled_from(["ready", "leased", "dead"]),
        st.integers(MIN_PRIORITY, MAX_PRIORITY),
        offsets,
        offsets,
    ),
    max_size=40,
)


@given(rows=rows)
def test_depth_agrees_with_a_scan_of_the_table(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, int, float, float]]
) -> None:
    path = tmp_path_factory.mktemp("depth") / "queue.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO queue_messages (id, payload, priority, state, due_at, enqueued_at,"
            " lease_deadline) VALUES (?, x'00', ?, ?, ?, ?, ?)",
            [
                (f"m{i}", priority, state, NOW + due, NOW,
                 NOW + deadline if state == "leased" else None)
                for i, (state, priority, due, deadline) in enumerate(rows)
            ],
        )  # fmt: skip
        depth = _depth(conn, lambda: NOW)
        assert depth == reference(conn)
        assert depth.ready + depth.delayed + depth.leased + depth.dead == len(rows)
    finally:
        conn.close()
