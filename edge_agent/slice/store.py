"""The profile slice: a read-only, versioned replica of the CDP's profiles for this store.

SQLite (WAL, ``synchronous=FULL``, ``secure_delete``) with the schema in ``profile_schema``;
identity keys sealed with a device key kept in another file (``profile_crypto``); input shapes in
``profile_model``. Central sends a full snapshot or a delta, each carrying the slice version:

- atomic: one transaction per snapshot or delta, so a kill -9 mid-apply leaves the old slice;
- idempotent: the same version with the same content again changes nothing (a redelivery after a
  crash between commit and ack is normal with QoS 1);
- ordered: an older version is refused, and a delta that does not start at the current version
  is refused as a gap and recorded, so the ack and health ask central for a snapshot;
- consent first: a withdrawal purges the profile and its keys in the same transaction (and
  secure_delete plus a WAL checkpoint leave no copy in the file);
- chunked: a snapshot too big for one message comes as ``snapshot_part`` bodies
  (``profile_parts``), staged durably in any order (rows validated, keys sealed as they arrive)
  and swapped in with the last part, in one transaction; until then the current slice serves;
- replaceable: a file found damaged at open (``PRAGMA quick_check``, "file is not a database",
  ...) is set aside as ``profiles.db.corrupt-<UTC time>`` (``sync.sqlite_guard``) and an empty
  slice starts with ``snapshot_needed`` set: it is a replica, central sends it again.

Reads go through their own SQLite connection, which sees only committed slices, and a bounded
cache that every write invalidates for the ids it touched.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.slice_parts import MAX_PARTS, PART_FIELDS, SNAPSHOT_ID
from edge_agent.slice import reports
from edge_agent.slice import rows as slice_rows
from edge_agent.slice.crypto import DeviceKey, SealError
from edge_agent.slice.model import (
    ConsentOp,
    DeleteOp,
    Profile,
    ProfileRow,
    SliceError,
    StockDeleteOp,
    StockOp,
    StockPrice,
    StockRow,
    UpsertOp,
    parse_ops,
    parse_rows,
    parse_stock,
)
from edge_agent.slice.rows import (
    COLS,
    INSERT,
    INSERT_KEY,
    STAGE,
    STAGE_KEY,
    STOCK_COLS,
    STOCK_MARKS,
    digest,
    int_field,
    parse_time,
    row_values,
    to_profile,
)
from edge_agent.slice.schema import SCHEMA_VERSION, SchemaError, migrate
from sync.sqlite_guard import check, damaged, private_file, reason, set_aside

__all__ = [
    "SCHEMA_VERSION",
    "ApplyResult",
    "Profile",
    "ProfileRow",
    "ProfileSlice",
    "SchemaError",
    "SliceError",
    "SliceGapError",
    "SliceOrderError",
    "SliceStoreError",
]

log = logging.getLogger(__name__)

CHUNK = 5000
_MISS = object()
# A partial snapshot that gets no new part for this long is dropped (central gave up on it).
STAGING_TTL_S = 24 * 3600.0


class SliceOrderError(SliceError):
    """An older (or conflicting same-version) snapshot or delta."""


class SliceGapError(SliceError):
    """A delta that does not follow the current version: central must send a snapshot."""


class SliceStoreError(SliceError):
    """A slice addressed to another store."""


@dataclass(frozen=True)
class ApplyResult:
    kind: str  # "snapshot" | "delta"
    version: int
    rows: int  # profiles in a snapshot, ops in a delta
    duplicate: bool = False  # the same version and content was already applied: no change
    # Profiles whose identity keys changed (None: all of them, after a snapshot).
    keys_changed: frozenset[str] | None = frozenset()
    # Profiles deleted or purged on consent withdrawal: the agent forgets their journey state.
    forgotten: tuple[str, ...] = ()
    # A "snapshot_part": parts staged so far of how many (the last one swaps: kind "snapshot").
    staged: int = 0
    parts: int = 0


@dataclass(frozen=True)
class PurgeResult:
    expired: int
    log_rows: int
    forgotten: tuple[str, ...]
    staged_dropped: int = 0  # parts of an expired partial snapshot


@dataclass(frozen=True)
class Staging:
    """The partial snapshot being staged (at most one)."""

    snapshot_id: str
    version: int
    store_id: str
    parts: int
    received: int
    rows: int
    updated_at: float


class SliceDb:
    """The slice's writing connection: ``execute`` and ``atomic`` as sqlite-utils' ``Database``
    has them, which is all the store uses of it; sqlite-utils itself is imported only to
    migrate (schema.py), not at every start (issue 20).

    The connection is in autocommit mode (``isolation_level=None``): a statement outside
    ``atomic()`` commits on its own, as ``Database.execute`` made it.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Any = None) -> sqlite3.Cursor:
        if parameters is None:
            return self.conn.execute(sql)
        return self.conn.execute(sql, parameters)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[SliceDb]:
        """One transaction; nested blocks are savepoints (sqlite-utils' semantics)."""
        if self.conn.in_transaction:
            savepoint = f"slice_{secrets.token_hex(8)}"
            self.conn.execute(f"SAVEPOINT {savepoint}")
            try:
                yield self
            except BaseException:
                # An error may have ended the whole transaction, savepoint included.
                if self.conn.in_transaction:
                    self.conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
                    self.conn.execute(f"RELEASE SAVEPOINT {savepoint}")
                raise
            self.conn.execute(f"RELEASE SAVEPOINT {savepoint}")
            return
        self.conn.execute("BEGIN")
        try:
            yield self
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise


class ProfileSlice:
    def __init__(
        self,
        path: Path | str,
        *,
        key_path: Path | str | None = None,
        store_id: str | None = None,
        cache_size: int = 50_000,
        create: bool = True,
        staging_ttl_s: float = STAGING_TTL_S,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Apart from the database: a copied .db file alone does not open the identity keys.
        self.key_path = Path(key_path) if key_path else self.path.with_suffix(".key")
        self.store_id = store_id
        self.cache_size = max(0, cache_size)
        if not create and not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no profile slice here")
        # The key first: a database must never be created without the key that seals it.
        self._key = DeviceKey.load_or_create(self.key_path, create=create)
        # Writes arrive on the downlink and scheduler threads while the agent loop reads.
        self._lock = threading.RLock()
        self._read_lock = threading.Lock()
        self._cache: OrderedDict[str, Profile | None] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._gen = 0
        self._stock: dict[str, bool] | None = None
        self._prices: dict[str, StockPrice] | None = None
        self.key_errors = 0
        self.last_error = ""
        self.staging_ttl_s = staging_ttl_s
        # Set when a damaged file was set aside at open: reason, moved_to, at.
        self.recovered: dict[str, str] | None = None
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if not damaged(exc):
                raise
            self._close_quietly()
            if not create:  # a tool that only looks: say so, touch nothing
                raise SliceError(
                    f"{self.path}: damaged ({reason(exc)}); the agent sets it aside at its "
                    "next start"
                ) from None
            self._replace_damaged(reason(exc))

    def _open(self) -> None:
        private_file(self.path, "profiles")
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db = SliceDb(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        # Deleted rows (a consent purge) are overwritten, not just unlinked.
        self.db.execute("PRAGMA secure_delete=ON")
        self.db.execute("PRAGMA busy_timeout=5000")
        check(conn)
        self.migrated_from = migrate(self.db, self._key)
        self._reader = sqlite3.connect(
            f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
        )
        self._reader.execute("PRAGMA busy_timeout=5000")
        self._resume_staging()

    def _close_quietly(self) -> None:
        for conn in (
            getattr(self, "_reader", None),
            getattr(getattr(self, "db", None), "conn", None),
        ):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def _replace_damaged(self, why: str) -> None:
        """A broken file is set aside for forensics and an empty slice takes its place: the
        slice is a replica, central sends it again once the ack and health ask for a snapshot."""
        aside = set_aside(self.path)
        self._open()
        need = f"the slice file was damaged ({why}) and set aside as {aside.path.name}"
        with self._lock, self.db.atomic():
            self._set_meta("snapshot_needed", need)
        self.recovered = {
            "reason": why,
            "moved_to": str(aside.path),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        log.error(
            "profiles: %s is damaged (%s): moved to %s, started an empty slice; snapshot "
            "needed from central%s",
            self.path,
            why,
            aside.path.name,
            f"; {aside.removed} older copies removed" if aside.removed else "",
        )

    # ---- reads -------------------------------------------------------------------------
    def _meta(self, key: str, conn: Any = None) -> str | None:
        """From ``conn`` (the writer, inside a write), else the last committed value: a reader
        must not wait for a long snapshot import (the heartbeat asks on the agent loop)."""
        if conn is None:
            with self._read_lock:
                row = self._reader.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        else:
            row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self.db.execute("DELETE FROM meta WHERE key=?", (key,))
        else:
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def version(self) -> int:
        v = self._meta("version")
        return int(v) if v else 0

    @property
    def snapshot_needed(self) -> str | None:
        """Why central should send a full snapshot (a gap, unreadable keys), or None."""
        return self._meta("snapshot_needed")

    def get(self, profile_id: str) -> Profile | None:
        """Warm cache first, then one primary-key read; expired profiles are not returned."""
        with self._cache_lock:
            p = self._cache.get(profile_id, _MISS)
            if p is not _MISS:
                self._cache.move_to_end(profile_id)
        if p is _MISS:
            gen = self._gen
            with self._read_lock:
                row = self._reader.execute(
                    f"SELECT {COLS} FROM profiles WHERE profile_id=?", (profile_id,)
                ).fetchone()
            p = to_profile(row) if row else None
            with self._cache_lock:
                # A write that landed while we read must not be overwritten by what we read.
                if gen == self._gen and self.cache_size:
                    self._cache[profile_id] = p
                    if len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        # p is a Profile here or None (the sentinel is gone): no isinstance on the hot path.
        if p is not None and p.expires_at is not None and p.expires_at <= time.time():  # type: ignore[attr-defined]
            return None  # the retention purge has not run yet; the profile is already dead
        return p  # type: ignore[return-value]

    def _invalidate(self, ids: Iterable[str] | None) -> None:
        with self._cache_lock:
            self._gen += 1
            if ids is None:
                self._cache.clear()
            else:
                for pid in ids:
                    self._cache.pop(pid, None)

    def _open_keys(self, rows: Iterable[tuple[str, int, bytes]]) -> dict[str, tuple[bytes, ...]]:
        out: dict[str, list[bytes]] = {}
        bad = 0
        for pid, slot, sealed in rows:
            try:
                key = self._key.open(pid, slot, sealed)
            except SealError:
                bad += 1
            else:
                out.setdefault(pid, []).append(key)
        if bad:
            self.key_errors = bad
            # Count only: which profile does not matter to the log, the fix is a new snapshot.
            log.error("profiles: %d identity keys do not open with %s", bad, self.key_path)
            with self._lock, self.db.atomic():
                self._set_meta("snapshot_needed", f"{bad} identity keys do not open")
        return {pid: tuple(ks) for pid, ks in out.items()}

    def identity_keys(self, ids: Iterable[str] | None = None) -> dict[str, tuple[bytes, ...]]:
        """Decrypted keys by profile (all, or those of ``ids``), for the token resolver only."""
        with self._read_lock:
            if ids is None:
                rows = self._reader.execute(
                    "SELECT profile_id, slot, sealed FROM identity_keys ORDER BY profile_id, slot"
                ).fetchall()
            else:
                rows = []
                for pid in ids:
                    rows += self._reader.execute(
                        "SELECT profile_id, slot, sealed FROM identity_keys WHERE profile_id=? "
                        "ORDER BY slot",
                        (pid,),
                    ).fetchall()
        return self._open_keys(rows)

    def stock_levels(self) -> dict[str, bool]:
        """SKU -> available, what decisions and campaign lint read (cached until a change)."""
        stock = self._stock
        if stock is None:
            with self._read_lock:
                rows = self._reader.execute("SELECT sku, available FROM stock").fetchall()
            stock = {sku: bool(a) for sku, a in rows}
            self._stock = stock
        return stock

    def stock(self, sku: str) -> dict[str, Any] | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT sku, available, quantity, aisle, price, was_price, currency FROM stock "
                "WHERE sku=?",
                (sku,),
            ).fetchone()
        if row is None:
            return None
        out = {"sku": row[0], "available": bool(row[1]), "quantity": row[2], "aisle": row[3]}
        if row[4] is not None:
            out.update(price=row[4], was_price=row[5], currency=row[6] or "EUR")
        return out

    def stock_prices(self) -> dict[str, StockPrice]:
        """SKU -> today's price, for the cards that show one (cached until a change)."""
        prices = self._prices
        if prices is None:
            with self._read_lock:
                rows = self._reader.execute(
                    "SELECT sku, price, was_price, currency FROM stock WHERE price IS NOT NULL"
                ).fetchall()
            prices = {sku: StockPrice(p, w, c or "EUR") for sku, p, w, c in rows}
            self._prices = prices
        return prices

    def count(self) -> int:
        with self._read_lock:
            return self._reader.execute("SELECT count(*) FROM profiles").fetchone()[0]

    # ---- writes ------------------------------------------------------------------------
    def apply(self, body: Any, on_progress: Callable[[int], None] | None = None) -> ApplyResult:
        """Apply one downlink body (snapshot or delta); raises ``SliceError`` naming the field."""
        if not isinstance(body, dict):
            raise SliceError("body: expected a JSON object")
        kind = body.get("type", "snapshot")
        allowed = (
            {
                "snapshot": {"type", "store_id", "version", "expires_at", "profiles", "stock"},
                "delta": {"type", "store_id", "base_version", "version", "expires_at", "ops"},
                "snapshot_part": PART_FIELDS,
            }.get(kind)
            if isinstance(kind, str)
            else None
        )
        if allowed is None:
            raise SliceError("type: expected 'snapshot' or 'delta' (or 'snapshot_part')")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise SliceError(f"{unknown[0]}: unknown field in a {kind}")
        store = body.get("store_id")
        if not isinstance(store, str):
            raise SliceError("store_id: missing")
        if self.store_id is not None and store != self.store_id:
            raise SliceStoreError(
                f"store_id: slice for store {store[:64]!r}, this box is in {self.store_id!r}"
            )
        version = int_field(body, "version", 1)
        expires = parse_time(body.get("expires_at"), "expires_at")
        if kind == "snapshot_part":
            return self._part(body, version, expires, store, on_progress)
        if kind == "snapshot":
            if "profiles" not in body:
                raise SliceError("profiles: missing")
            return self._snapshot(
                body["profiles"],
                version,
                stock=body.get("stock"),
                replace_stock="stock" in body,
                expires_at=expires,
                store=store,
                digest=digest(body),
                on_progress=on_progress,
            )
        base = int_field(body, "base_version", 0)
        if version <= base:
            raise SliceError("version: must be greater than base_version")
        ops = parse_ops(body.get("ops"))
        return self._delta(ops, base, version, expires, store, digest(body), on_progress)

    def load_snapshot(
        self,
        rows: list[dict[str, Any]],
        version: int,
        *,
        stock: list[dict[str, Any]] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Replace the whole slice atomically; refuses the lot if any row is malformed."""
        res = self._snapshot(
            rows,
            version,
            stock=stock,
            replace_stock=stock is not None,
            expires_at=None,
            store=self.store_id,
            digest=None,
            on_progress=on_progress,
        )
        return res.rows

    def _check_order(self, kind: str, version: int, digest: str | None) -> bool:
        """True when this exact version was applied already (a redelivery); raises if older."""
        cur = int(self._meta("version", self.db.conn) or 0)
        if version > cur:
            return False
        if version == cur and digest is not None:
            row = self.db.execute(
                "SELECT digest FROM slice_log WHERE version=?", (version,)
            ).fetchone()
            if row and row[0] == digest:
                return True
        raise SliceOrderError(f"{kind} version {version} is not newer than {cur}")

    def _snapshot(
        self,
        rows: Any,
        version: int,
        *,
        stock: Any,
        replace_stock: bool,
        expires_at: float | None,
        store: str | None,
        digest: str | None,
        on_progress: Callable[[int], None] | None,
    ) -> ApplyResult:
        if not isinstance(rows, list):
            raise SliceError("profiles: expected a list")
        stock_rows = parse_stock(stock)
        with self._lock:
            if self._check_order("snapshot", version, digest):
                return ApplyResult("snapshot", version, len(rows), duplicate=True)
            # Validated chunk by chunk inside the one transaction: a million parsed rows at once
            # would not fit a small box's memory; a bad row rolls everything back.
            seen: set[str] = set()
            with self.db.atomic():
                cur = self.db.conn
                cur.execute("DELETE FROM identity_keys")
                cur.execute("DELETE FROM profiles")
                for i in range(0, len(rows), CHUNK):
                    chunk = parse_rows(rows[i : i + CHUNK], start=i, seen=seen)
                    cur.executemany(INSERT, [row_values(p, version, expires_at) for p in chunk])
                    cur.executemany(INSERT_KEY, self._sealed(chunk))
                    if on_progress is not None:
                        on_progress(i + len(chunk))
                if replace_stock:
                    cur.execute("DELETE FROM stock")
                    self._write_stock(stock_rows, version)
                self._finish("snapshot", version, digest, len(rows), store)
            self._invalidate(None)
            self._stock = self._prices = None
        return ApplyResult("snapshot", version, len(rows), keys_changed=None)

    def _sealed(self, chunk: Iterable[ProfileRow]) -> Iterator[tuple[str, int, bytes]]:
        seal = self._key.seal
        for p in chunk:
            for slot, k in enumerate(p.keys()):
                yield (p.profile_id, slot, seal(p.profile_id, slot, bytes.fromhex(k)))

    def _write_stock(self, rows: Iterable[StockRow], version: int) -> None:
        self.db.conn.executemany(
            f"INSERT OR REPLACE INTO stock ({STOCK_COLS}) VALUES ({STOCK_MARKS})",
            [s.values(version) for s in rows],
        )

    def _finish(
        self, kind: str, version: int, digest: str | None, rows: int, store: str | None
    ) -> None:
        # A partial snapshot this version overtakes can never be swapped in: drop it now.
        for (sid,) in self.db.execute(
            "SELECT snapshot_id FROM snapshot_staging WHERE version <= ?", (version,)
        ).fetchall():
            self._drop_staging(sid, f"superseded by {kind} v{version}")
        self._set_meta("version", str(version))
        if store:
            self._set_meta("store_id", store)
        self._set_meta("snapshot_needed", None)
        self._set_meta("applied_at", str(time.time()))
        self.db.execute(
            "INSERT OR REPLACE INTO slice_log (version, kind, digest, rows, applied_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (version, kind, digest, rows, time.time()),
        )

    # ---- chunked snapshots -------------------------------------------------------------
    def staging(self) -> Staging | None:
        """The partial snapshot being staged, from the last committed state."""
        with self._read_lock:
            return self._staging(self._reader)

    def _staging(self, conn: Any) -> Staging | None:
        row = conn.execute(
            "SELECT s.snapshot_id, s.version, s.store_id, s.parts, count(p.part), "
            "coalesce(sum(p.rows), 0), s.updated_at FROM snapshot_staging s "
            "LEFT JOIN snapshot_parts p ON p.snapshot_id = s.snapshot_id "
            "GROUP BY s.snapshot_id ORDER BY s.version DESC LIMIT 1"
        ).fetchone()
        return Staging(*row) if row else None

    def _drop_staging(self, snapshot_id: str | None, why: str | None) -> int:
        """Inside a write transaction: forget the staged snapshot (logged unless ``why`` is
        None: the swap empties the staging too)."""
        n = self.db.execute("SELECT count(*) FROM snapshot_parts").fetchone()[0]
        for table in (
            "staged_identity_keys",
            "staged_profiles",
            "staged_stock",
            "snapshot_parts",
            "snapshot_staging",
        ):
            self.db.execute(f"DELETE FROM {table}")
        if why is not None:
            # Ids of snapshots are central's, not shoppers': fine in a log.
            log.info("profiles: dropped partial snapshot %s (%d parts): %s", snapshot_id, n, why)
        return n

    def _part(
        self,
        body: dict[str, Any],
        version: int,
        expires: float | None,
        store: str,
        on_progress: Callable[[int], None] | None,
    ) -> ApplyResult:
        sid = body.get("snapshot_id")
        if not isinstance(sid, str) or not SNAPSHOT_ID.match(sid):
            raise SliceError("snapshot_id: expected 1-64 of A-Z a-z 0-9 _ . : -")
        parts = int_field(body, "parts", 1)
        if parts > MAX_PARTS:
            raise SliceError(f"parts: at most {MAX_PARTS}")
        part = int_field(body, "part", 0)
        if part >= parts:
            raise SliceError(f"part: {part} is not below parts ({parts})")
        rows = body.get("rows")
        if not isinstance(rows, list):
            raise SliceError("rows: expected a list")
        has_stock = "stock" in body
        stock_rows = parse_stock(body.get("stock"))
        digest = slice_rows.digest(body)
        where = f"part {part} rows"
        with self._lock:
            conn = self.db.conn
            cur = int(self._meta("version", conn) or 0)
            if version <= cur:
                # A part of the snapshot already swapped in, redelivered: nothing to do.
                row = conn.execute(
                    "SELECT digest FROM slice_log WHERE version=?", (version,)
                ).fetchone()
                if version == cur and row and row[0] == f"parts:{sid}":
                    return ApplyResult("snapshot_part", version, len(rows), duplicate=True)
                raise SliceOrderError(f"snapshot version {version} is not newer than {cur}")
            now = time.time()
            staged = self._staging(conn)
            dropped: tuple[str, str] | None = None
            if staged is not None and staged.updated_at < now - self.staging_ttl_s:
                dropped = (staged.snapshot_id, "expired")
                staged = None
            elif staged is not None and staged.snapshot_id != sid:
                if staged.version > version:
                    raise SliceOrderError(
                        f"snapshot_id: {sid} v{version} is older than the staged snapshot "
                        f"{staged.snapshot_id} v{staged.version}"
                    )
                dropped = (staged.snapshot_id, f"superseded by {sid} v{version}")
                staged = None
            elif staged is not None and (staged.version, staged.parts, staged.store_id) != (
                version,
                parts,
                store,
            ):
                raise SliceError(
                    f"parts: snapshot {sid} is staged as v{staged.version} in {staged.parts} "
                    f"parts, this part says v{version} in {parts}"
                )
            if staged is not None:
                row = conn.execute(
                    "SELECT digest FROM snapshot_parts WHERE snapshot_id=? AND part=?", (sid, part)
                ).fetchone()
                if row is not None:
                    if row[0] != digest:
                        raise SliceError(
                            f"part: part {part} of {sid} is already staged with other content"
                        )
                    return ApplyResult(
                        "snapshot_part",
                        version,
                        len(rows),
                        duplicate=True,
                        staged=staged.received,
                        parts=parts,
                    )
            # Validate before any write: a refused part leaves the staging as it was.
            seen: set[str] = set()
            chunks = [
                parse_rows(rows[i : i + CHUNK], where=where, start=i, seen=seen)
                for i in range(0, len(rows), CHUNK)
            ]
            with self.db.atomic():
                if dropped is not None:
                    self._drop_staging(*dropped)
                if staged is None:
                    conn.execute(
                        "INSERT INTO snapshot_staging (snapshot_id, version, store_id, parts, "
                        "started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (sid, version, store, parts, now, now),
                    )
                else:
                    conn.execute(
                        "UPDATE snapshot_staging SET updated_at=? WHERE snapshot_id=?", (now, sid)
                    )
                for n, chunk in enumerate(chunks):
                    try:
                        conn.executemany(
                            STAGE, [(*row_values(p, version, expires), part) for p in chunk]
                        )
                    except sqlite3.IntegrityError:
                        raise self._cross_part_duplicate(chunk, where, n * CHUNK, part) from None
                    conn.executemany(STAGE_KEY, self._sealed(chunk))
                conn.executemany(
                    f"INSERT OR REPLACE INTO staged_stock ({STOCK_COLS}) VALUES ({STOCK_MARKS})",
                    [s.values(version) for s in stock_rows],
                )
                conn.execute(
                    "INSERT INTO snapshot_parts (snapshot_id, part, digest, rows, has_stock, "
                    "received_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (sid, part, digest, len(rows), int(has_stock), now),
                )
                received = conn.execute(
                    "SELECT count(*) FROM snapshot_parts WHERE snapshot_id=?", (sid,)
                ).fetchone()[0]
                total = 0
                if received == parts:
                    # The last part: the swap commits with it, or neither does.
                    total = self._swap(sid, version, store, on_progress)
            if received < parts:
                return ApplyResult(
                    "snapshot_part", version, len(rows), staged=received, parts=parts
                )
            self._invalidate(None)
            self._stock = self._prices = None
            self._checkpoint()
        return ApplyResult(
            "snapshot", version, total, keys_changed=None, staged=received, parts=parts
        )

    def _cross_part_duplicate(
        self, chunk: list[ProfileRow], where: str, start: int, part: int
    ) -> SliceError:
        # Which row clashed, and with which part: a bounded query per row of this chunk only.
        for i, p in enumerate(chunk, start):
            row = self.db.execute(
                "SELECT part FROM staged_profiles WHERE profile_id=? AND part != ?",
                (p.profile_id, part),
            ).fetchone()
            if row is not None:
                return SliceError(
                    f"{where}[{i}] ({p.profile_id}): profile_id: duplicate in the slice "
                    f"(also in part {row[0]})"
                )
        return SliceError(f"{where}: profile_id: duplicate in the slice")

    def _swap(
        self,
        sid: str,
        version: int,
        store: str,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Inside a write transaction: the staged snapshot becomes the slice."""
        conn = self.db.conn
        step = 0

        def progress() -> None:
            nonlocal step
            step += 1
            if on_progress is not None:
                on_progress(-step)  # negative: swap steps, not rows (kill -9 tests hook here)

        progress()
        conn.execute("DELETE FROM identity_keys")
        conn.execute("DELETE FROM profiles")
        progress()
        total = conn.execute(
            f"INSERT INTO profiles ({COLS}) SELECT {COLS} FROM staged_profiles"
        ).rowcount
        conn.execute(
            "INSERT INTO identity_keys (profile_id, slot, sealed) "
            "SELECT profile_id, slot, sealed FROM staged_identity_keys"
        )
        progress()
        if conn.execute(
            "SELECT 1 FROM snapshot_parts WHERE snapshot_id=? AND has_stock", (sid,)
        ).fetchone():
            conn.execute("DELETE FROM stock")
            conn.execute(f"INSERT INTO stock ({STOCK_COLS}) SELECT {STOCK_COLS} FROM staged_stock")
        self._drop_staging(sid, None)
        self._finish("snapshot", version, f"parts:{sid}", total, store)
        progress()
        log.info("profiles: swapped in chunked snapshot %s v%d (%d profiles)", sid, version, total)
        return total

    def _resume_staging(self) -> None:
        """At open: a staging that is complete but was not swapped (it cannot be, as the swap
        commits with the last part, unless a swap failed, e.g. on a full disk) is swapped now."""
        with self._lock:
            staged = self._staging(self.db.conn)
            if staged is None or staged.received < staged.parts:
                return
            if staged.version <= int(self._meta("version", self.db.conn) or 0):
                with self.db.atomic():
                    self._drop_staging(staged.snapshot_id, "older than the slice")
                return
            with self.db.atomic():
                self._swap(staged.snapshot_id, staged.version, staged.store_id)

    def _delete(self, pid: str) -> bool:
        self.db.execute("DELETE FROM identity_keys WHERE profile_id=?", (pid,))
        return self.db.execute("DELETE FROM profiles WHERE profile_id=?", (pid,)).rowcount > 0

    def _delta(
        self,
        ops: list[Any],
        base: int,
        version: int,
        expires: float | None,
        store: str,
        digest: str,
        on_progress: Callable[[int], None] | None = None,
    ) -> ApplyResult:
        touched: set[str] = set()
        keys: set[str] = set()
        forgotten: list[str] = []
        stock_changed = False
        with self._lock:
            if self._check_order("delta", version, digest):
                return ApplyResult("delta", version, len(ops), duplicate=True)
            cur = int(self._meta("version", self.db.conn) or 0)
            if base != cur:
                # Recorded outside any apply transaction, so it survives the refusal.
                with self.db.atomic():
                    self._set_meta("snapshot_needed", f"delta from v{base}, slice at v{cur}")
                raise SliceGapError(
                    f"base_version: delta v{base}->v{version} does not follow slice v{cur}; "
                    "snapshot needed"
                )
            with self.db.atomic():
                for i, op in enumerate(ops, 1):
                    if on_progress is not None and i % 1000 == 0:
                        on_progress(i)
                    if isinstance(op, UpsertOp):
                        p = op.profile
                        self.db.execute(
                            "DELETE FROM identity_keys WHERE profile_id=?", (p.profile_id,)
                        )
                        self.db.execute(INSERT, row_values(p, version, expires))
                        self.db.conn.executemany(INSERT_KEY, self._sealed([p]))
                        touched.add(p.profile_id)
                        keys.add(p.profile_id)
                    elif isinstance(op, DeleteOp):
                        if self._delete(op.profile_id):
                            forgotten.append(op.profile_id)
                        touched.add(op.profile_id)
                        keys.add(op.profile_id)
                    elif isinstance(op, ConsentOp):
                        if self._consent(op):
                            forgotten.append(op.profile_id)
                            keys.add(op.profile_id)
                        touched.add(op.profile_id)
                    elif isinstance(op, StockOp):
                        self._write_stock([op], version)
                        stock_changed = True
                    elif isinstance(op, StockDeleteOp):
                        self.db.execute("DELETE FROM stock WHERE sku=?", (op.sku,))
                        stock_changed = True
                self._finish("delta", version, digest, len(ops), store)
            self._invalidate(touched)
            if stock_changed:
                self._stock = self._prices = None
            if forgotten:
                self._checkpoint()
        return ApplyResult(
            "delta", version, len(ops), keys_changed=frozenset(keys), forgotten=tuple(forgotten)
        )

    def _consent(self, op: ConsentOp) -> bool:
        """Update the flags; any withdrawal (or an opt-out) purges the profile. True if purged."""
        row = self.db.execute(
            "SELECT consent_personalisation, consent_analytics, consent_staff_alerts "
            "FROM profiles WHERE profile_id=?",
            (op.profile_id,),
        ).fetchone()
        if row is None:
            return False  # nothing held here: already gone, nothing to do (idempotent)
        new = [
            bool(old) if v is None else v
            for old, v in zip(row, (op.personalisation, op.analytics, op.staff_alerts), strict=True)
        ]
        withdrawn = op.opt_out or any(o and not n for o, n in zip(row, new, strict=True))
        if withdrawn:
            # The box keeps nothing it may no longer use; central (the source of truth) sends
            # the reduced profile again if the shopper still agrees to something.
            return self._delete(op.profile_id)
        self.db.execute(
            "UPDATE profiles SET consent_personalisation=?, consent_analytics=?, "
            "consent_staff_alerts=? WHERE profile_id=?",
            (*map(int, new), op.profile_id),
        )
        return False

    def _checkpoint(self) -> None:
        # Old page images of purged rows may sit in the WAL until it is checkpointed.
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            log.warning("profiles: checkpoint after purge deferred: %s", exc)

    def purge_expired(
        self, now: float | None = None, log_retention_s: float = 30 * 86400
    ) -> PurgeResult:
        """Retention: drop profiles past their expiry and apply-journal rows past retention."""
        now = time.time() if now is None else now
        with self._lock:
            with self.db.atomic():
                ids = [
                    r[0]
                    for r in self.db.execute(
                        "SELECT profile_id FROM profiles WHERE expires_at IS NOT NULL "
                        "AND expires_at <= ?",
                        (now,),
                    )
                ]
                for pid in ids:
                    self._delete(pid)
                # Keep the newest entry: it is what makes a redelivered last message a no-op.
                n_log = self.db.execute(
                    "DELETE FROM slice_log WHERE applied_at < ? "
                    "AND version < (SELECT max(version) FROM slice_log)",
                    (now - log_retention_s,),
                ).rowcount
                if ids:
                    total = int(self._meta("expired_purged", self.db.conn) or 0) + len(ids)
                    self._set_meta("expired_purged", str(total))
                staged = self._staging(self.db.conn)
                n_staged = 0
                if staged is not None and staged.updated_at < now - self.staging_ttl_s:
                    n_staged = self._drop_staging(staged.snapshot_id, "expired")
            if ids:
                self._invalidate(ids)
                self._checkpoint()
        return PurgeResult(len(ids), n_log, tuple(ids), n_staged)

    # ---- for health, staff and installers ----------------------------------------------
    def health(self) -> dict[str, str]:
        """String values for the heartbeat's ``sensors`` map; counts only, no ids."""
        out = {
            "profiles": str(self.count()),
            "profiles_version": str(self.version),
            "profiles_expired_purged": self._meta("expired_purged") or "0",
            "profiles_snapshot_needed": "yes" if self.snapshot_needed else "no",
            "profiles_snapshot_staged": self.staged_text(),
        }
        if self.recovered is not None:
            r = self.recovered
            out["profiles_recovered"] = f"{r['reason']}; moved to {Path(r['moved_to']).name}"
        return out

    def staged_text(self) -> str:
        """The partial snapshot being staged, as one short phrase."""
        st = self.staging()
        return f"v{st.version} {st.received}/{st.parts} parts" if st else "no"

    def stats(self) -> dict[str, Any]:
        return reports.stats(self)

    def show(self, profile_id: str) -> dict[str, Any] | None:
        """A profile for staff: every field except its identity keys (only their number)."""
        return reports.show(self, profile_id)

    def verify(self) -> list[str]:
        """Problems an installer should know about; an empty list means the slice is sound."""
        return reports.verify(self)

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self.db.conn.close()
