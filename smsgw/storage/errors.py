"""The store's errors. Invalid arguments raise ``ValueError``/``TypeError`` in the caller."""

from __future__ import annotations

__all__ = [
    "DuplicateId",
    "InvalidCursor",
    "MessageStateError",
    "SchemaError",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "UnknownMessage",
]


class StoreError(Exception):
    """Base of the store's errors. Raised as such when the database fails in an unexpected way
    (the SQLite error is its ``__cause__``)."""


class StoreUnavailable(StoreError):
    """The database is locked beyond the busy timeout, or the disk or file cannot be used now.

    Nothing of the write was kept; it may be retried later (the MO flow answers the SMSC with a
    temporary error so that it retries)."""


class StoreClosed(StoreError):
    """The store is closed (or closing): the write was not, or may not have been, committed."""


class DuplicateId(StoreError):
    """A message or inbound message with this id already exists."""


class UnknownMessage(StoreError):
    """No such message, or no such part of it."""


class MessageStateError(StoreError):
    """The message is not in a state that allows the operation."""


class InvalidCursor(StoreError, ValueError):
    """A pagination cursor that this store did not produce."""


class SchemaError(StoreError):
    """The database's schema is newer than this code, or otherwise unusable."""
