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

A damaged file does not stop the box (``sync.sqlite_guard``). At open ``PRAGMA quick_check`` runs,
and later any read or write that finds the file broken (SQLite's "database disk image is
malformed" or "file is not a database", a stored event that is not what was written) triggers the
same recovery: every row SQLite can still read is checked (its JSON must be the event of its
columns) and copied, with its id and sequence, into a new file built beside the broken one; the
broken file (and its -wal/-shm) is then renamed ``outbox.db.corrupt-<UTC time>`` for forensics and
the new one takes its place, in one log line. The counters survive when their page does; if
``next_sequence`` is unreadable, sequences go on from a bound no earlier number can exceed (see
``_salvage``), never from a number that may have been used. ``recovered`` says what happened, and
``health()`` puts it in the heartbeat. The file is created 0600 (it holds profile ids and presence
keys); SQLite gives its -wal and -shm the same mode.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from contracts.events import TYPE_PREFIX, CloudEvent
from contracts.files import fsync_path
from sync.sqlite_guard import (
    Damaged,
    ScanStats,
    check,
    damaged,
    empty,
    graft_first_page,
    open_readonly,
    private_file,
    readable_rows,
    reason,
    remove_set,
    set_aside,
    sidecar,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

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
    # Diagnostics: the first to go when the disk cap bites (the box's journald keeps them too).
    "device.log.v1": PRIORITY_LOW,
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


class OutboxDamaged(RuntimeError):
    """The file is broken and this ``Outbox`` was told not to recover it (a diagnostic tool)."""


# A counter read from a damaged file beyond this is garbage, not a count.
_PLAUSIBLE = 10**15
# After a recovery that could not build a new file (a full disk, say), wait this long before
# trying again: the broken file keeps serving what it can meanwhile.
_RETRY_RECOVERY_S = 60.0


def _create_schema(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_SCHEMA)


@dataclass
class _Salvage:
    rows: int = 0  # events copied into the new file
    lost: int | None = 0  # events known to be lost; None: unknown
    next_sequence: int = 1
    sequence_read: bool = True  # False: next_sequence was unreadable, a bound was taken
    total_accepted: int = 0
    grafted: bool = False  # the first page (header, schema) was rebuilt to read the rest


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
        recover: bool = True,
    ) -> None:
        self.path = Path(path)
        self.cap_bytes = cap_bytes
        self.max_file_bytes = max_file_bytes
        # False for tools that only look: a damaged file raises ``OutboxDamaged`` instead.
        self.recover = recover
        # Set when a damaged file was replaced (at open or later): reason, moved_to, salvaged,
        # lost (None: unknown), next_sequence, sequence_read, at. For the heartbeat: health().
        self.recovered: dict[str, Any] | None = None
        self.recoveries = 0
        self._recovery_failed_at: float | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Called after each commit that added events, so the uplink wakes instead of polling.
        self._listeners: list[Callable[[int], None]] = []
        self._closed = False
        with self._lock:
            try:
                self._open(check_file=True)
            except sqlite3.DatabaseError as exc:
                if not damaged(exc):
                    raise
                self._close_db()
                if not recover:
                    raise OutboxDamaged(f"{self.path}: damaged ({reason(exc)})") from None
                self._recover(reason(exc))

    def _open(self, *, check_file: bool) -> None:
        """Connect to the file (made, whole, if there is none) and load the counters."""
        new = sidecar(self.path, ".new")
        if not self.path.exists():
            if new.exists():
                # A recovery died between setting the broken file aside and renaming the new
                # one in: the new one is complete (it is built before anything is moved).
                os.replace(new, self.path)
            else:
                self._build(new, None)
                os.replace(new, self.path)
            fsync_path(self.path.parent)
        else:
            remove_set(new)  # a recovery that died while building: the old file is still here
        private_file(self.path, "outbox")
        if empty(self.path):
            # We never leave an empty file (a new one is built aside, then renamed in).
            raise Damaged("empty file")
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a group is exactly one txn.
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, so "accepted" means on disk.
        self._db.execute("PRAGMA synchronous=FULL")
        if check_file:
            check(self._db)
        self._db.executescript(_SCHEMA)
        if self.max_file_bytes is not None:
            page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            self._db.execute(f"PRAGMA max_page_count = {max(16, self.max_file_bytes // page)}")
        self._last_sequence = self._meta("next_sequence") - 1
        self._pending_bytes = int(
            self._db.execute("SELECT coalesce(sum(size), 0) FROM outbox").fetchone()[0]
        )

    def _close_db(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    # ---- a damaged file ----------------------------------------------------------------
    def _guarded(self, op: Callable[[], T]) -> T:
        """Run ``op`` (lock held); if the file turns out damaged, recover and run it again."""
        self._check_open()
        try:
            return op()
        except sqlite3.DatabaseError as exc:
            if not self.recover or not damaged(exc):
                raise
            failed = self._recovery_failed_at
            if failed is not None and time.monotonic() - failed < _RETRY_RECOVERY_S:
                raise
            why = reason(exc)
        self._close_db()
        self._recover(why)
        return op()

    def _recover(self, why: str) -> None:
        """Lock held, connection closed: salvage into a new file, set the broken one aside,
        rename the new one in, open it. One log line says what happened."""
        new = sidecar(self.path, ".new")
        try:
            salvage = self._build(new, self.path)
        except BaseException:  # e.g. a full disk: nothing moved, the broken file stays
            remove_set(new)
            self._recovery_failed_at = time.monotonic()
            with contextlib.suppress(sqlite3.Error, OSError):
                self._open(check_file=False)  # serve what the broken file still can
            raise
        try:
            aside = set_aside(self.path)
            os.replace(new, self.path)
            fsync_path(self.path.parent)
        except BaseException:
            self._recovery_failed_at = time.monotonic()
            with contextlib.suppress(sqlite3.Error, OSError):
                self._open(check_file=False)  # the old file, or the new one if it was moved
            raise
        self._recovery_failed_at = None
        self.recoveries += 1
        self.recovered = {
            "reason": why,
            "moved_to": str(aside.path),
            "salvaged": salvage.rows,
            "lost": salvage.lost,
            "next_sequence": salvage.next_sequence,
            "sequence_read": salvage.sequence_read,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        lost = "none" if salvage.lost == 0 else salvage.lost or "an unknown number"
        seq = (
            f"sequences go on from {salvage.next_sequence}"
            if salvage.sequence_read
            else f"next_sequence unreadable, sequences go on from {salvage.next_sequence}"
        )
        extra = []
        if salvage.grafted:
            extra.append("its first page rebuilt to read the rest")
        if aside.removed:
            extra.append(f"{aside.removed} older copies removed")
        log.error(
            "outbox: %s is damaged (%s): moved to %s, salvaged %d event(s) into a new outbox "
            "(lost: %s), %s%s",
            self.path,
            why,
            aside.path.name,
            salvage.rows,
            lost,
            seq,
            "".join(f"; {e}" for e in extra),
        )
        self._open(check_file=False)  # just built and checked row by row

    def _build(self, target: Path, source: Path | None) -> _Salvage:
        """A new outbox at ``target`` (0600), with what can be read of ``source`` if given.
        Durable when it returns (the closing checkpoint fsyncs it; its WAL is gone)."""
        remove_set(target)
        private_file(target, "outbox")
        conn = sqlite3.connect(target, isolation_level=None)
        try:
            _create_schema(conn)
            conn.execute("PRAGMA synchronous=NORMAL")  # each checkpoint fsyncs
            salvage = _salvage(source, conn) if source is not None else _Salvage()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return salvage

    def health(self) -> dict[str, str]:
        """String values for the heartbeat's ``sensors`` map: only after a recovery."""
        r = self.recovered
        if r is None:
            return {}
        lost = "unknown" if r["lost"] is None else str(r["lost"])
        return {
            "outbox_recovered": f"{r['reason']}; salvaged {r['salvaged']}, lost {lost}; "
            f"moved to {Path(r['moved_to']).name}"
        }

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
            inserted, seq = self._guarded(lambda: self._append_or_make_room(docs))
            listeners = list(self._listeners)
        if inserted:
            for fn in listeners:
                fn(seq - 1)
        return inserted

    def _append_or_make_room(self, docs: list[tuple[CloudEvent, dict]]) -> tuple[int, int]:
        try:
            return self._append_locked(docs, disk_full=False)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
        # Make room by priority, as for the cap, and try once more.
        try:
            return self._append_locked(docs, disk_full=True)
        except sqlite3.OperationalError as again:
            if not _is_full(again):
                raise
            raise OutboxFull(
                f"outbox {self.path.name}: disk full, {len(docs)} event(s) not accepted"
            ) from None

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
            self._rollback()  # SQLITE_FULL may already have rolled it back
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
        # Chunks stay under SQLite's variable limit.
        parts = [id_list[i : i + 500] for i in range(0, len(id_list), 500)]
        return self._delete([(f"id IN ({','.join('?' * len(c))})", tuple(c)) for c in parts])

    def mark_sent_sequences(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Delete delivered events by their sequences, ``[first, last]`` ranges (the CDP's
        compact confirmation); returns rows deleted."""
        return self._delete([("sequence BETWEEN ? AND ?", (int(a), int(b))) for a, b in ranges])

    def _delete(self, wheres: list[tuple[str, tuple[object, ...]]]) -> int:
        """Delete the rows each ``(condition, args)`` selects, in one transaction."""
        if not wheres:
            return 0
        with self._lock:
            # A damaged page (SQLite: "database disk image is malformed") would fail every
            # confirmation for ever, and the batches would be sent for ever: recover instead.
            return self._guarded(lambda: self._delete_locked(wheres))

    def _delete_locked(self, wheres: list[tuple[str, tuple[object, ...]]]) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            deleted = freed = 0
            for where, args in wheres:
                row = self._db.execute(
                    f"SELECT coalesce(sum(size), 0) FROM outbox WHERE {where}", args
                ).fetchone()
                freed += int(row[0])
                deleted += self._db.execute(f"DELETE FROM outbox WHERE {where}", args).rowcount
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._pending_bytes -= freed
        return deleted

    def _rollback(self) -> None:
        # On a damaged file ROLLBACK may fail too: the first error is the one to report.
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    # ---- reading -----------------------------------------------------------------------
    def pending(self, limit: int, max_bytes: int, after_sequence: int = 0) -> list[OutboxRow]:
        """Oldest first, at most ``limit`` rows and ``max_bytes`` of bodies.

        Always returns at least one row when any is pending, even if it alone exceeds
        ``max_bytes``: an oversized event must not block the queue forever.
        ``after_sequence`` skips rows already handed to an in-flight batch.
        """
        with self._lock:
            return self._guarded(lambda: self._pending_locked(limit, max_bytes, after_sequence))

    def _pending_locked(self, limit: int, max_bytes: int, after_sequence: int) -> list[OutboxRow]:
        cur = self._db.execute(
            "SELECT sequence, id, type, priority, accepted_at, size, body, json_valid(body)"
            " FROM outbox WHERE sequence > ? ORDER BY sequence LIMIT ?",
            (after_sequence, limit),
        )
        rows: list[OutboxRow] = []
        total = 0
        for *r, valid in cur:
            # A damaged page can leave text that still decodes: one such body would make its
            # whole batch unreadable at the CDP, sent and refused for ever.
            if not valid or f'"id":"{r[1]}"' not in r[6]:
                raise Damaged(f"row {r[0]}: the stored event is not the one written")
            if rows and total + r[5] > max_bytes:
                break
            rows.append(OutboxRow(*r))
            total += r[5]
        return rows

    def depth(self) -> int:
        with self._lock:
            return self._guarded(
                lambda: int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])
            )

    def oldest_pending_age_s(self) -> float:
        with self._lock:
            row = self._guarded(
                lambda: self._db.execute("SELECT min(accepted_at) FROM outbox").fetchone()
            )
        return 0.0 if row[0] is None else max(0.0, time.time() - float(row[0]))

    def pending_bytes(self) -> int:
        """Bytes of pending event bodies (what ``cap_bytes`` bounds)."""
        with self._lock:
            return self._pending_bytes

    def drops(self) -> dict[str, int]:
        """Events dropped to respect the cap or a full disk, as ``{"reason:type": n}``."""
        with self._lock:
            rows = self._guarded(
                lambda: self._db.execute(
                    "SELECT reason, type, n FROM drops ORDER BY reason, type"
                ).fetchall()
            )
        return {f"{r}:{t.removeprefix(TYPE_PREFIX)}": int(n) for r, t, n in rows}

    def total_accepted(self) -> int:
        """Events ever accepted by this outbox (persistent, survives restarts)."""
        with self._lock:
            return self._guarded(lambda: self._meta("total_accepted"))

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


# ---- salvage -------------------------------------------------------------------------------
_COLUMNS = "id, type, priority, accepted_at, size, body"
_INSERT = (
    "INSERT OR IGNORE INTO outbox (sequence, id, type, priority, accepted_at, size, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _text(value: object) -> str | None:
    if not isinstance(value, bytes):
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None


def _event_row(row: tuple) -> tuple | None:
    """A row read from a damaged file, as it goes into the new one, or None when it is not
    exactly what ``append`` wrote: its JSON must be the event its columns name."""
    seq, raw_id, raw_type, _priority, accepted_at, _size, raw_body = row
    ev_id, ev_type, body = _text(raw_id), _text(raw_type), _text(raw_body)
    if not isinstance(seq, int) or seq <= 0 or ev_id is None or ev_type is None or body is None:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict) or (doc.get("id"), doc.get("type"), doc.get("sequence")) != (
        ev_id,
        ev_type,
        format_sequence(seq),
    ):
        return None
    if not isinstance(accepted_at, int | float) or not math.isfinite(accepted_at):
        accepted_at = time.time()  # pending since now, rather than lost
    return (seq, ev_id, ev_type, priority_of(ev_type), accepted_at, len(raw_body), body)


def _counter(row: tuple) -> tuple[str, int] | None:
    _, key, value = row
    name = _text(key)
    if name is None or not isinstance(value, int) or not 0 <= value < _PLAUSIBLE:
        return None
    return name, value


def _drop_row(row: tuple) -> tuple[str, str, int] | None:
    _, why, typ, n = row
    why_s, typ_s = _text(why), _text(typ)
    if why_s is None or typ_s is None or not isinstance(n, int) or not 0 < n < _PLAUSIBLE:
        return None
    return why_s, typ_s, n


def _has_outbox(conn: sqlite3.Connection) -> bool:
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
    except sqlite3.Error:
        return False
    return {b"outbox", b"meta"} <= names


def _looks_right(conn: sqlite3.Connection) -> bool:
    """After rebuilding the first page with a guessed page size: do the tables read as ours?"""
    stats = ScanStats()
    if any(
        k == "next_sequence" for k, _ in readable_rows(conn, "meta", "key, value", _counter, stats)
    ):
        return True
    for order in ("", " DESC"):
        try:
            rows = conn.execute(
                f"SELECT rowid, {_COLUMNS} FROM outbox NOT INDEXED ORDER BY rowid{order} LIMIT 8"
            ).fetchall()
        except sqlite3.Error:
            continue
        if any(_event_row(r) is not None for r in rows):
            return True
    return False


def _index_count(conn: sqlite3.Connection) -> int | None:
    """How many events the broken file held, from either index (its table may not say)."""
    for index in ("outbox_priority", "sqlite_autoindex_outbox_1"):
        try:
            return int(
                conn.execute(f"SELECT count(*) FROM outbox INDEXED BY {index}").fetchone()[0]
            )
        except sqlite3.Error:
            continue
    return None


def _salvage(source: Path, dst: sqlite3.Connection) -> _Salvage:
    """Copy what can be read of the broken outbox at ``source`` into ``dst`` (a new, empty
    outbox): events with their ids, sequences and times, the drop counts, the counters.

    Sequences: ``next_sequence`` as read (never below the highest salvaged sequence + 1). When
    it cannot be read, numbers above anything salvaged may have been used by events delivered or
    lost since, so the bound is the wall clock in milliseconds (or more): a box would have had to
    accept over 1000 events a second since its last such bound to have used a number beyond it."""
    out = _Salvage(lost=None)
    scratch = sidecar(source, ".salvage")
    conn: sqlite3.Connection | None = None
    counters: dict[str, int] = {}
    stats = ScanStats()
    held: int | None = None
    max_seq = 0
    try:
        with contextlib.suppress(sqlite3.Error):
            conn = open_readonly(source)  # neither writes nor checkpoints the broken file
        if conn is None or not _has_outbox(conn):
            if conn is not None:
                conn.close()
            # The first page (header, schema) is gone: rebuild it on a copy to read the rest.
            conn = graft_first_page(source, scratch, _create_schema, _looks_right)
            out.grafted = conn is not None
        if conn is not None:
            counters = dict(readable_rows(conn, "meta", "key, value", _counter, ScanStats()))
            held = _index_count(conn)
            dst.execute("BEGIN")
            for row in readable_rows(conn, "outbox", _COLUMNS, _event_row, stats):
                if dst.execute(_INSERT, row).rowcount == 1:
                    out.rows += 1
                    max_seq = max(max_seq, row[0])
                    if out.rows % 2000 == 0:  # keep the WAL small: it checkpoints between
                        dst.execute("COMMIT")
                        dst.execute("BEGIN")
            drops = list(readable_rows(conn, "drops", "reason, type, n", _drop_row, ScanStats()))
            dst.executemany(
                "INSERT INTO drops (reason, type, n) VALUES (?, ?, ?)"
                " ON CONFLICT (reason, type) DO UPDATE SET n = max(n, excluded.n)",
                drops,
            )
            dst.execute("COMMIT")
    finally:
        if conn is not None:
            conn.close()
        remove_set(scratch)
    nxt = counters.get("next_sequence")
    total = counters.get("total_accepted")
    if nxt is not None and nxt >= 1:
        out.next_sequence = max(nxt, max_seq + 1)
    else:
        out.sequence_read = False
        floor = int(time.time() * 1000)
        out.next_sequence = max(max_seq + 1, floor, (total or 0) + 1)
    if total is not None:
        out.total_accepted = total
    else:
        out.total_accepted = nxt - 1 if nxt is not None and nxt >= 1 else max(max_seq, out.rows)
    dst.execute("UPDATE meta SET value = ? WHERE key = 'next_sequence'", (out.next_sequence,))
    dst.execute("UPDATE meta SET value = ? WHERE key = 'total_accepted'", (out.total_accepted,))
    bad = stats.rejected + stats.unreadable
    if held is not None:
        out.lost = max(held - out.rows, bad)
    elif conn is not None and not stats.errors:
        out.lost = bad
    return out
