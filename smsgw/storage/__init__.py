"""The gateway's database: messages, parts, status history, SMSC id mapping, inbound messages,
the webhook outbox and provider statistics, in SQLite through one group-commit writer task.

``async with open_store(path) as store: ...`` (docs/storage.md has the whole story).
"""

from smsgw.storage.errors import (
    DuplicateId,
    InvalidCursor,
    MessageStateError,
    SchemaError,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    UnknownMessage,
)
from smsgw.storage.retention import PruneReport
from smsgw.storage.store import MessageFilter, Page, Store, StoreCounts, open_store, run_store
from smsgw.storage.writer import WriterStats
from smsgw.storage.writes import RecordResult

__all__ = [
    "DuplicateId",
    "InvalidCursor",
    "MessageFilter",
    "MessageStateError",
    "Page",
    "PruneReport",
    "RecordResult",
    "SchemaError",
    "Store",
    "StoreClosed",
    "StoreCounts",
    "StoreError",
    "StoreUnavailable",
    "UnknownMessage",
    "WriterStats",
    "open_store",
    "run_store",
]
