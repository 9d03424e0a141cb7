"""The durable outbox: journey events are safe on disk before anyone calls them "accepted".

One SQLite file in WAL mode with ``synchronous=FULL``: ``append()`` writes a whole group of events
in one transaction, and the commit fsyncs the WAL, so when it returns the events survive a power
cut or kill -9. Group commit is the point: one fsync per batch instead of one per event
(see ``bench/outbox.py`` for the difference).

Each event gets a per-device monotonic ``sequence`` (1, 2, 3, ... never reused, even after rows are
deleted) that is written into the stored JSON as the CloudEvents ``sequence`` extension attribute.
The spec wants a *lexicographically orderable string*, so it is the decimal number zero-padded to
20 digits (``"00000000000000000042"``): string order equals numeric order. ``OutboxRow.sequence``
is the plain int.

The event id (a UUIDv7) is the idempotency key: appending an id that is still in the outbox is a
no-op. After delivery the row is gone and the CDP sink dedups by id instead.

Rows are deleted (``mark_sent``) only after the CDP confirms it stored them (see
``sync.uplink``).

Bounded disk. ``cap_bytes`` bounds the pending event bodies: an append that would go over it
first drops the oldest pending events of the lowest priority (audience samples, heartbeats,
telemetry), then normal ones, and if that is not enough, the incoming droppable events
themselves. High-priority events (conversions, consent-relevant identifications, impressions,
offers shown) are never dropped: they may take the outbox over its cap. A really full disk
(SQLite's "database or disk is full", also what ``max_file_bytes`` enforces) makes room the same
way and retries once; if the events still do not fit, ``append`` raises ``OutboxFull`` and none of
them counts as accepted: the caller decides what to keep. Every drop is counted by reason and
event type in the file itself (``drops()``), for the health report.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts.events import TYPE_PREFIX, CloudEvent

SEQUENCE_DIGITS = 20

# Larger = more important. A later disk-cap policy drops the lowest priority first: losing an
# audience sample is cheap, losing a conversion or a consent-relevant event is not.
PRIORITY_HIGH = 2
PRIORITY_NORMAL = 1
PRIORITY_LOW = 0
_PRIORITY_BY_SUFFIX = {
    "conversion.v1": PRIORITY_HIGH,
    "shopper.identified.v1": PRIORITY_HIGH,
    "content.impression.v1": PRIORITY_HIGH,
    "offer.shown.v1": PRIORITY_HIGH,
    "downlink.applied.v1": PRIORITY_HIGH,
    "holdout.assigned.v1": PRIORITY_HIGH,  # the control group: uplift is wrong without it
    "survey.answer.v1": PRIORITY_HIGH,
    "consent.changed.v1": PRIORITY_HIGH,
    "audience.sample.v1": PRIORITY_LOW,
    "device.heartbeat.v1": PRIORITY_LOW,
    "beacon.telemetry.v1": PRIORITY_LOW,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    sequence    INTEGER PRIMARY KEY,           -- per-device, monotonic, never reused
    id          TEXT NOT NULL UNIQUE,          -- CloudEvent id (UUIDv7): the idempotency key
    type        TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    accepted_at REAL NOT NULL,                 -- unix time of the commit
    size        INTEGER NOT NULL,              -- bytes of body, for batch sizing
    body        TEXT NOT NULL                  -- the CloudEvent JSON, sequence included
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (priority, sequence);
CREATE TABLE IF NOT EXISTS drops (
    reason TEXT NOT NULL,                      -- "cap" or "disk_full"
    type   TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (reason, type)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_sequence', 1), ('total_accepted', 0);
"""


def priority_of(event_type: str) -> int:
    return _PRIORITY_BY_SUFFIX.get(event_type.removeprefix(TYPE_PREFIX), PRIORITY_NORMAL)


def format_sequence(seq: int) -> str:
    return str(seq).zfill(SEQUENCE_DIGITS)


class OutboxFull(RuntimeError):
    """The disk (or ``max_file_bytes``) is full even after dropping what may be dropped."""


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "is full" in str(exc)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    sequence: int
    id: str
    type: str
    priority: int
    accepted_at: float
    size: int
    body: str  # CloudEvent JSON with the "sequence" attribute, ready to publish


class Outbox:
    """Thread-safe: one connection guarded by a lock (writes serialise in SQLite anyway)."""

    def __init__(
        self,
        path: Path | str,
        *,
        cap_bytes: int | None = None,
        max_file_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.cap_bytes = cap_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a group is exactly one txn.
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._lock = threading.Lock()
        # Called after each commit that added events, so the uplink wakes instead of polling.
        self._listeners: list[Callable[[int], None]] = []
        self._closed = False
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit, so "accepted" means on disk.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            if max_file_bytes is not None:
                page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
                self._db.execute(f"PRAGMA max_page_count = {max(16, max_file_bytes // page)}")
            self._last_sequence = self._meta("next_sequence") - 1
            self._pending_bytes = int(
                self._db.execute("SELECT coalesce(sum(size), 0) FROM outbox").fetchone()[0]
            )

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    # ---- writing -----------------------------------------------------------------------
    def append(self, events: Sequence[CloudEvent]) -> int:
        """Durably store ``events`` in one transaction; returns how many were new.

        Events whose id is already in the outbox are skipped (idempotent retry after a crash
        between commit and the caller noticing). Droppable events may be dropped to respect the
        cap (counted in ``drops()``); raises ``OutboxFull`` when even that cannot make room.
        """
        if not events:
            return 0
        docs = [(ev, ev.model_dump(mode="json", exclude_none=True)) for ev in events]
        with self._lock:
            self._check_open()
            try:
                inserted, seq = self._append_locked(docs, disk_full=False)
            except sqlite3.OperationalError as exc:
                if not _is_full(exc):
                    raise
                # Make room by priority, as for the cap, and try once more.
                try:
                    inserted, seq = self._append_locked(docs, disk_full=True)
                except sqlite3.OperationalError as again:
                    if not _is_full(again):
                        raise
                    raise OutboxFull(
                        f"outbox {self.path.name}: disk full, {len(events)} event(s) not accepted"
                    ) from None
            listeners = list(self._listeners)
        if inserted:
            for fn in listeners:
                fn(seq - 1)
        return inserted

    def _append_locked(
        self, docs: list[tuple[CloudEvent, dict]], *, disk_full: bool
    ) -> tuple[int, int]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            seq = self._meta("next_sequence")
            # The sequence is fixed-width, so a body's size does not depend on its number.
            bodies = []
            for ev, doc in docs:
                doc["sequence"] = format_sequence(0)
                body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
                bodies.append((ev, doc, len(body.encode())))
            incoming = sum(size for _, _, size in bodies)
            drops: dict[tuple[str, str], int] = {}
            freed = 0
            if disk_full:
                # Free at least twice what we add: the index and the WAL need pages too.
                freed = self._drop_pending(2 * incoming + 65536, "disk_full", drops)
            elif self.cap_bytes is not None and self._pending_bytes + incoming > self.cap_bytes:
                freed = self._drop_pending(
                    self._pending_bytes + incoming - self.cap_bytes, "cap", drops
                )
                over = self._pending_bytes - freed + incoming - self.cap_bytes
                if over > 0:
                    bodies = self._shed_incoming(bodies, over, drops)
            inserted = added = 0
            for ev, doc, size in bodies:
                doc["sequence"] = format_sequence(seq)
                body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO outbox"
                    " (sequence, id, type, priority, accepted_at, size, body)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (seq, ev.id, ev.type, priority_of(ev.type), time.time(), size, body),
                )
                if cur.rowcount == 1:  # 0 = duplicate id: no sequence number consumed
                    seq += 1
                    inserted += 1
                    added += size
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_sequence'", (seq,))
            self._db.execute(
                "UPDATE meta SET value = value + ? WHERE key = 'total_accepted'", (inserted,)
            )
            self._db.executemany(
                "INSERT INTO drops (reason, type, n) VALUES (?, ?, ?)"
                " ON CONFLICT (reason, type) DO UPDATE SET n = n + excluded.n",
                [(r, t, n) for (r, t), n in drops.items()],
            )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLITE_FULL may already have rolled it back
                self._db.execute("ROLLBACK")
            raise
        self._last_sequence = seq - 1
        self._pending_bytes += added - freed
        return inserted, seq

    def _drop_pending(self, need: int, reason: str, drops: dict[tuple[str, str], int]) -> int:
        """Delete the oldest pending droppable rows, lowest priority first, until ``need``
        bytes are freed (or nothing droppable is left); returns the bytes freed."""
        victims: list[int] = []
        freed = 0
        cur = self._db.execute(
            "SELECT sequence, type, size FROM outbox WHERE priority < ?"
            " ORDER BY priority, sequence",
            (PRIORITY_HIGH,),
        )
        for seq, typ, size in cur:
            if freed >= need:
                break
            victims.append(seq)
            freed += size
            drops[(reason, typ)] = drops.get((reason, typ), 0) + 1
        for i in range(0, len(victims), 500):
            chunk = victims[i : i + 500]
            marks = ",".join("?" * len(chunk))
            self._db.execute(f"DELETE FROM outbox WHERE sequence IN ({marks})", chunk)
        return freed

    @staticmethod
    def _shed_incoming(
        bodies: list[tuple[CloudEvent, dict, int]], over: int, drops: dict[tuple[str, str], int]
    ) -> list[tuple[CloudEvent, dict, int]]:
        """Drop incoming droppable events (lowest priority, oldest first) until ``over`` bytes
        are shed; high-priority events always stay."""
        order = sorted(
            (i for i, (ev, _, _) in enumerate(bodies) if priority_of(ev.type) < PRIORITY_HIGH),
            key=lambda i: (priority_of(bodies[i][0].type), i),
        )
        shed: set[int] = set()
        for i in order:
            if over <= 0:
                break
            shed.add(i)
            over -= bodies[i][2]
            typ = bodies[i][0].type
            drops[("cap", typ)] = drops.get(("cap", typ), 0) + 1
        return [b for i, b in enumerate(bodies) if i not in shed]

    def mark_sent(self, ids: Iterable[str]) -> int:
        """Delete delivered events (call only after the broker's PUBACK); returns rows deleted."""
        id_list = list(ids)
        if not id_list:
            return 0
        with self._lock:
            self._check_open()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                deleted = 0
                freed = 0
                for i in range(0, len(id_list), 500):  # stay under SQLite's variable limit
                    chunk = id_list[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    row = self._db.execute(
                        f"SELECT coalesce(sum(size), 0) FROM outbox WHERE id IN ({marks})", chunk
                    ).fetchone()
                    freed += int(row[0])
                    cur = self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
                    deleted += cur.rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._pending_bytes -= freed
            return deleted

    # ---- reading -----------------------------------------------------------------------
    def pending(self, limit: int, max_bytes: int, after_sequence: int = 0) -> list[OutboxRow]:
        """Oldest first, at most ``limit`` rows and ``max_bytes`` of bodies.

        Always returns at least one row when any is pending, even if it alone exceeds
        ``max_bytes``: an oversized event must not block the queue forever.
        ``after_sequence`` skips rows already handed to an in-flight batch.
        """
        with self._lock:
            self._check_open()
            cur = self._db.execute(
                "SELECT sequence, id, type, priority, accepted_at, size, body FROM outbox"
                " WHERE sequence > ? ORDER BY sequence LIMIT ?",
                (after_sequence, limit),
            )
            rows: list[OutboxRow] = []
            total = 0
            for r in cur:
                if rows and total + r[5] > max_bytes:
                    break
                rows.append(OutboxRow(*r))
                total += r[5]
            return rows

    def depth(self) -> int:
        with self._lock:
            self._check_open()
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def oldest_pending_age_s(self) -> float:
        with self._lock:
            self._check_open()
            row = self._db.execute("SELECT min(accepted_at) FROM outbox").fetchone()
        return 0.0 if row[0] is None else max(0.0, time.time() - float(row[0]))

    def pending_bytes(self) -> int:
        """Bytes of pending event bodies (what ``cap_bytes`` bounds)."""
        with self._lock:
            return self._pending_bytes

    def drops(self) -> dict[str, int]:
        """Events dropped to respect the cap or a full disk, as ``{"reason:type": n}``."""
        with self._lock:
            self._check_open()
            cur = self._db.execute("SELECT reason, type, n FROM drops ORDER BY reason, type")
            return {f"{r}:{t.removeprefix(TYPE_PREFIX)}": int(n) for r, t, n in cur}

    def total_accepted(self) -> int:
        """Events ever accepted by this outbox (persistent, survives restarts)."""
        with self._lock:
            self._check_open()
            return self._meta("total_accepted")

    def last_sequence(self) -> int:
        """The sequence of the newest accepted event (0 when none yet)."""
        with self._lock:
            return self._last_sequence

    def add_listener(self, fn: Callable[[int], None]) -> None:
        """``fn(last_sequence)`` runs in the appender's thread after each commit; keep it quick."""
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[int], None]) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def integrity_check(self) -> str:
        with self._lock:
            self._check_open()
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("outbox is closed")

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
