"""The profile slice's SQLite schema: created and migrated step by step with sqlite-utils.

``schema_version`` holds one row. A new file runs every step from 0, so the path an old box
takes on upgrade is the path every test and every new box takes too. Each step runs in one
transaction: a power cut mid-migration leaves the previous version, not a mix.

Version 1 (the foundation issue): profiles with one open order, identity keys in plain hex.
Version 2 (issue 5): affinities, open orders (list), expiry and per-row slice version; identity
keys sealed with the device key (several per profile); a stock table; the apply journal that
makes deltas idempotent; an index for the retention purge.
Version 3: staging for snapshots too big for one downlink message (``snapshot_part`` bodies):
the parts received so far, their validated rows with sealed keys, and the snapshot they build.
Version 4 (issue 17): prices in the stock table (price, was_price, currency), so a targeted card
shows the price the store charges today, not one typed into a campaign weeks ago.

sqlite-utils is imported only when a step has to run (a new file, an upgrade): on an ordinary
start the version check is one query, and the import (about 75 ms and 3 MB, numpy included
where no camera brought it) stays off the agent's start (issue 20).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from edge_agent.slice.crypto import DeviceKey

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4


class SchemaError(RuntimeError):
    """The database cannot be used by this agent (for example, a newer schema)."""


class HasConnection(Protocol):
    """What ``migrate`` needs of the store's database: its connection (``SliceDb``)."""

    @property
    def conn(self) -> sqlite3.Connection: ...


class Executes(Protocol):
    """A connection, the store's ``SliceDb`` or a sqlite-utils ``Database``."""

    def execute(self, sql: str, /) -> sqlite3.Cursor: ...


def schema_version(conn: Executes) -> int:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if found is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _set_version(db: sqlite_utils.Database, version: int) -> None:
    db.execute("DELETE FROM schema_version")
    db["schema_version"].insert({"version": version})


def _v0_to_v1(db: sqlite_utils.Database, key: DeviceKey) -> bool:
    """Exactly the tables the foundation issue created (kept so old files have a start)."""
    db["schema_version"].create({"version": int}, if_not_exists=True)
    db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
    db["profiles"].create(
        {
            "profile_id": str,
            "first_name": str,
            "language": str,
            "consent_personalisation": int,
            "consent_analytics": int,
            "consent_staff_alerts": int,
            "segments": str,
            "loyalty_tier": str,
            "churn_risk": float,
            "open_order": str,
        },
        pk="profile_id",
        if_not_exists=True,
    )
    db["identity_keys"].create(
        {"profile_id": str, "key_hex": str},
        pk="profile_id",
        foreign_keys=[("profile_id", "profiles", "profile_id")],
        if_not_exists=True,
    )
    return False


def _v1_to_v2(db: sqlite_utils.Database, key: DeviceKey) -> bool:
    profiles = db.table("profiles")
    for name, typ in (("open_orders", str), ("affinities", str), ("expires_at", float)):
        profiles.add_column(name, typ)
    profiles.add_column("version", int, not_null_default=0)
    # One order (or none) becomes a list of orders; JSON in, JSON out, in SQL.
    db.execute(
        "UPDATE profiles SET open_orders = json_array(json(open_order)) "
        "WHERE open_order IS NOT NULL AND open_order != ''"
    )
    db.execute(
        "UPDATE profiles SET version = "
        "coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'version'), 0)"
    )
    profiles.transform(drop={"open_order"})
    # Keys: plain hex -> sealed with the device key, bound to (profile, slot).
    old = list(db.execute("SELECT profile_id, key_hex FROM identity_keys"))
    db["identity_keys_v2"].create(
        {"profile_id": str, "slot": int, "sealed": bytes}, pk=("profile_id", "slot")
    )
    db["identity_keys_v2"].insert_all(
        {"profile_id": pid, "slot": 0, "sealed": key.seal(pid, 0, bytes.fromhex(hexkey))}
        for pid, hexkey in old
        if hexkey
    )
    db["identity_keys"].drop()
    db.rename_table("identity_keys_v2", "identity_keys")
    db["stock"].create(
        {"sku": str, "available": int, "quantity": int, "aisle": str, "version": int},
        pk="sku",
    )
    db["slice_log"].create(
        {"version": int, "kind": str, "digest": str, "rows": int, "applied_at": float},
        pk="version",
    )
    # The version the file already holds gets its journal entry (no digest: never a duplicate).
    db.execute(
        "INSERT INTO slice_log (version, kind, digest, rows, applied_at) "
        "SELECT CAST(value AS INTEGER), 'migrated', NULL, (SELECT count(*) FROM profiles), "
        "unixepoch() FROM meta WHERE key = 'version' AND CAST(value AS INTEGER) > 0"
    )
    # The retention purge looks for expired rows; most rows may have no expiry of their own.
    db.execute(
        "CREATE INDEX profiles_expires_at ON profiles(expires_at) WHERE expires_at IS NOT NULL"
    )
    return bool(old)  # plaintext keys were in the file: scrub the free pages


def _v2_to_v3(db: sqlite_utils.Database, key: DeviceKey) -> bool:
    """Staging for chunked snapshots: rows are validated and keys sealed as each part arrives
    (never a plaintext key on disk), so the swap is a copy between tables in one transaction."""
    # At most one snapshot is staged at a time; a newer one supersedes it.
    db["snapshot_staging"].create(
        {
            "snapshot_id": str,
            "version": int,
            "store_id": str,
            "parts": int,
            "started_at": float,
            "updated_at": float,
        },
        pk="snapshot_id",
    )
    db["snapshot_parts"].create(
        {
            "snapshot_id": str,
            "part": int,
            "digest": str,
            "rows": int,
            "has_stock": int,
            "received_at": float,
        },
        pk=("snapshot_id", "part"),
    )
    # Same columns as the live tables, so the swap is INSERT ... SELECT.
    db.execute(
        "CREATE TABLE staged_profiles (profile_id TEXT PRIMARY KEY, first_name TEXT, "
        "language TEXT, consent_personalisation INTEGER, consent_analytics INTEGER, "
        "consent_staff_alerts INTEGER, segments TEXT, loyalty_tier TEXT, churn_risk FLOAT, "
        "open_orders TEXT, affinities TEXT, expires_at FLOAT, version INTEGER, "
        "part INTEGER NOT NULL)"
    )
    db["staged_identity_keys"].create(
        {"profile_id": str, "slot": int, "sealed": bytes}, pk=("profile_id", "slot")
    )
    db["staged_stock"].create(
        {"sku": str, "available": int, "quantity": int, "aisle": str, "version": int},
        pk="sku",
    )
    return False


def _v3_to_v4(db: sqlite_utils.Database, key: DeviceKey) -> bool:
    """Prices beside availability; rows from before have none (cards show no price)."""
    for table in ("stock", "staged_stock"):
        db.execute(f"ALTER TABLE {table} ADD COLUMN price FLOAT")
        db.execute(f"ALTER TABLE {table} ADD COLUMN was_price FLOAT")
        db.execute(f"ALTER TABLE {table} ADD COLUMN currency TEXT")
    return False


# step n migrates from version n to n + 1
STEPS: list[Callable[[sqlite_utils.Database, DeviceKey], bool]] = [
    _v0_to_v1,
    _v1_to_v2,
    _v2_to_v3,
    _v3_to_v4,
]
assert len(STEPS) == SCHEMA_VERSION


def migrate(store_db: HasConnection, key: DeviceKey, target: int = SCHEMA_VERSION) -> int:
    """Bring the file to ``target``; returns the version it was at. Idempotent."""
    start = schema_version(store_db.conn)
    if start > SCHEMA_VERSION:
        raise SchemaError(
            f"schema v{start} is newer than this agent supports (v{SCHEMA_VERSION}); "
            "refusing to touch it"
        )
    if start >= target:
        return start  # the usual start: nothing to do, and no sqlite-utils to import
    import sqlite_utils

    db = sqlite_utils.Database(store_db.conn)
    scrub = False
    for v in range(start, target):
        with db.atomic():
            scrub |= STEPS[v](db, key)
            _set_version(db, v + 1)
        log.info("profiles: schema migrated v%d -> v%d", v, v + 1)
    if scrub:
        # secure_delete zeroed the dropped pages; VACUUM and a truncating checkpoint also
        # rewrite the file and empty the WAL, so no copy of a plaintext key survives.
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return start


def decode_orders(text: str | None) -> list[dict[str, str]]:
    return json.loads(text) if text else []
