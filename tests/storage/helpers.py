"""Helpers shared by the storage tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import attrs

START = 1_700_000_000.0  # the fake clock's epoch: a plausible wall-clock time


@attrs.define
class FakeClock:
    """Wall-clock epoch seconds that move only when told to."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def read(path: Path, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    """Rows read on a connection of our own: what another process would see committed."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
