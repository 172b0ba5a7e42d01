"""Helpers shared by the storage tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def read(path: Path, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    """Rows read on a connection of our own: what another process would see committed."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
