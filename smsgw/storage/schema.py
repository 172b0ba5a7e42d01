"""The gateway's tables (docs/storage.md describes each column) and their migrations.

The schema is versioned in ``schema_version``: one row per migration applied, per component
(this module is the ``storage`` component; the queue keeps its ``queue_*`` tables in the same
file on its own terms). :func:`migrate` applies the migrations a database lacks, in order, each
in the same ``BEGIN IMMEDIATE`` transaction as its version row, so a migration is applied once
even when two processes open the file at the same time, and running it again is a no-op.
A database migrated by a newer gateway (a version this code does not know) is refused.

To change the schema, append a migration to :data:`MIGRATIONS`; never edit one that shipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from smsgw.adapters.sqlite import DatabaseUnavailable, SqliteDatabase
from smsgw.model import FINAL_STATUSES, MessageStatus, NotificationKind, NotificationState
from smsgw.storage.errors import SchemaError, StoreUnavailable

__all__ = ["COMPONENT", "FINAL_SQL", "MIGRATIONS", "SCHEMA_VERSION", "migrate"]

COMPONENT = "storage"


def _sql_list(values: Iterable[str]) -> str:
    return ", ".join(f"'{value}'" for value in sorted(values))


_STATUSES = _sql_list(status.value for status in MessageStatus)
#: The final statuses as an SQL list; used verbatim by the retention query and its index, so
#: that SQLite sees that the query's condition implies the partial index's.
FINAL_SQL = _sql_list(status.value for status in FINAL_STATUSES)
_KINDS = _sql_list(kind.value for kind in NotificationKind)
_NOTIFICATION_STATES = _sql_list(state.value for state in NotificationState)

_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_version (
        component  TEXT    NOT NULL,
        version    INTEGER NOT NULL,
        applied_at REAL    NOT NULL,  -- wall-clock epoch seconds
        PRIMARY KEY (component, version)
    )
"""

_V1 = (
    f"""
    CREATE TABLE messages (
        seq         INTEGER PRIMARY KEY,  -- insertion order: the pagination tiebreak
        id          TEXT    NOT NULL UNIQUE,
        status      TEXT    NOT NULL CHECK (status IN ({_STATUSES})),  -- aggregated
        source      TEXT    NOT NULL,
        destination TEXT    NOT NULL,
        part_count  INTEGER NOT NULL CHECK (part_count >= 1),
        client      TEXT,
        client_ref  TEXT,
        text        TEXT,
        created_at  REAL    NOT NULL,
        updated_at  REAL    NOT NULL,     -- the last change of status
        reason      TEXT    NOT NULL,     -- why it has its status
        provider    TEXT,                 -- the last provider that handled it
        schedule_at REAL,
        expires_at  REAL
    )
    """,
    "CREATE INDEX messages_created ON messages (created_at)",
    "CREATE INDEX messages_status ON messages (status, created_at)",
    "CREATE INDEX messages_client_ref ON messages (client_ref, created_at)",
    "CREATE INDEX messages_client ON messages (client, created_at)",
    f"CREATE INDEX messages_final ON messages (updated_at) WHERE status IN ({FINAL_SQL})",
    f"""
    CREATE TABLE parts (
        message_id  TEXT    NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        part_number INTEGER NOT NULL CHECK (part_number >= 1),
        status      TEXT    NOT NULL CHECK (status IN ({_STATUSES})),
        updated_at  REAL    NOT NULL,
        reason      TEXT    NOT NULL,
        provider    TEXT,
        smsc_id     TEXT,                 -- raw, the latest one
        PRIMARY KEY (message_id, part_number)
    ) WITHOUT ROWID
    """,
    f"""
    CREATE TABLE events (
        seq         INTEGER PRIMARY KEY,
        message_id  TEXT    NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        part_number INTEGER,              -- NULL: the message's aggregated status
        status      TEXT    NOT NULL CHECK (status IN ({_STATUSES})),
        reason      TEXT    NOT NULL,
        at          REAL    NOT NULL,
        applied     INTEGER NOT NULL CHECK (applied IN (0, 1))  -- 0: refused, target was final
    )
    """,
    "CREATE INDEX events_message ON events (message_id, seq)",
    """
    CREATE TABLE smsc_ids (
        provider    TEXT    NOT NULL,
        smsc_id     TEXT    NOT NULL,     -- canonical (smpp_codec.message_id), provider's form
        raw_smsc_id TEXT    NOT NULL,     -- as the submit_sm_resp had it
        message_id  TEXT    NOT NULL,
        part_number INTEGER NOT NULL,
        mapped_at   REAL    NOT NULL,
        PRIMARY KEY (provider, smsc_id),
        FOREIGN KEY (message_id, part_number)
            REFERENCES parts (message_id, part_number) ON DELETE CASCADE
    ) WITHOUT ROWID
    """,
    "CREATE INDEX smsc_ids_part ON smsc_ids (message_id, part_number)",
    """
    CREATE TABLE inbound (
        seq         INTEGER PRIMARY KEY,
        id          TEXT    NOT NULL UNIQUE,
        provider    TEXT    NOT NULL,
        source      TEXT    NOT NULL,
        destination TEXT    NOT NULL,
        payload     BLOB    NOT NULL,
        data_coding INTEGER NOT NULL,
        text        TEXT,
        part_count  INTEGER NOT NULL CHECK (part_count >= 1),
        received_at REAL    NOT NULL
    )
    """,
    "CREATE INDEX inbound_received ON inbound (received_at)",
    f"""
    CREATE TABLE notifications (
        seq             INTEGER PRIMARY KEY,
        kind            TEXT    NOT NULL CHECK (kind IN ({_KINDS})),
        target          TEXT    NOT NULL,
        body            TEXT    NOT NULL,  -- JSON
        subject         TEXT,              -- the message or inbound id it is about
        created_at      REAL    NOT NULL,
        state           TEXT    NOT NULL CHECK (state IN ({_NOTIFICATION_STATES})),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL    NOT NULL,
        delivered_at    REAL,
        last_error      TEXT
    )
    """,
    "CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 'pending'",
    "CREATE INDEX notifications_delivered ON notifications (delivered_at)"
    " WHERE state = 'delivered'",
    "CREATE INDEX notifications_dead ON notifications (created_at) WHERE state = 'dead'",
    """
    CREATE TABLE provider_stats (
        seq           INTEGER PRIMARY KEY,
        provider      TEXT    NOT NULL,
        minute        INTEGER NOT NULL,   -- epoch seconds of the minute's start
        submitted     INTEGER NOT NULL DEFAULT 0,
        failed        INTEGER NOT NULL DEFAULT 0,
        throttled     INTEGER NOT NULL DEFAULT 0,
        receipts      INTEGER NOT NULL DEFAULT 0,
        latency_sum   REAL    NOT NULL DEFAULT 0,
        latency_count INTEGER NOT NULL DEFAULT 0,
        UNIQUE (provider, minute)
    )
    """,
    "CREATE INDEX provider_stats_minute ON provider_stats (minute)",
)

# A message's own webhook target, so that the receipts of a message submitted before a restart
# still notify it (the processor's memory of it is gone by then).
_V2 = ("ALTER TABLE messages ADD COLUMN callback_url TEXT",)

# The parts of multipart MOs still being reassembled: each is stored (and then answered) as
# it arrives, and deleted in the transaction that stores its whole message (smsgw/mo.py).
_V3 = (
    """
    CREATE TABLE inbound_parts (
        seq         INTEGER PRIMARY KEY,
        provider    TEXT    NOT NULL,
        source      TEXT    NOT NULL,
        destination TEXT    NOT NULL,
        reference   INTEGER NOT NULL,
        total       INTEGER NOT NULL CHECK (total >= 2),
        number      INTEGER NOT NULL CHECK (number BETWEEN 1 AND total),
        payload     BLOB    NOT NULL,     -- the part's user data, without its UDH
        data_coding INTEGER NOT NULL,
        received_at REAL    NOT NULL      -- wall-clock epoch seconds
    )
    """,
)

# Receipts that overtook their submit_sm_resp, kept until their mapping comes (smsgw/dlr.py):
# each is stored before the SMSC is answered, and deleted in the transaction that records it.
_V4 = (
    """
    CREATE TABLE parked_receipts (
        seq         INTEGER PRIMARY KEY,
        provider    TEXT    NOT NULL,
        pdu         BLOB    NOT NULL,     -- the deliver_sm or data_sm, encoded as received
        parked_at   REAL    NOT NULL      -- wall-clock epoch seconds
    )
    """,
)

# Whether an MO has every part its header announced (0: stored after its reassembly timeout).
# Messages stored before this migration count as complete: nothing recorded otherwise.
_V5 = (
    "ALTER TABLE inbound ADD COLUMN complete INTEGER NOT NULL DEFAULT 1"
    " CHECK (complete IN (0, 1))",
)

#: (version, description, statements), in order. Append only.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "messages, parts, events, smsc_ids, inbound, notifications, provider_stats", _V1),
    (2, "messages.callback_url", _V2),
    (3, "inbound_parts", _V3),
    (4, "parked_receipts", _V4),
    (5, "inbound.complete", _V5),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


async def migrate(db: SqliteDatabase, *, clock: Callable[[], float]) -> int:
    """Bring ``db`` to :data:`SCHEMA_VERSION` (idempotent, safe to race); returns the version.

    Raises :class:`SchemaError` if the database is newer than this code.
    """
    try:
        async with db.transaction() as tx:
            await tx.execute(_VERSION_TABLE)
            row = await tx.fetchone(
                "SELECT coalesce(max(version), 0) FROM schema_version WHERE component = ?",
                (COMPONENT,),
            )
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise SchemaError(
                    f"database {db.path!r} has storage schema version {current}; this code knows"
                    f" up to {SCHEMA_VERSION} (a newer smsgw wrote it)"
                )
            for version, _description, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_version (component, version, applied_at) VALUES (?, ?, ?)",
                    (COMPONENT, version, clock()),
                )
    except DatabaseUnavailable as exc:
        raise StoreUnavailable(str(exc)) from exc
    return SCHEMA_VERSION
