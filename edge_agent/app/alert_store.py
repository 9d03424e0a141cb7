"""The staff alerts' state on the box's disk: the open alerts, and the once-a-day keys of campaign
alerts. Without it a restarted agent forgot every open alert (kiosks showed "No open alerts"
while staff still had work to do) and alerted staff again about a shopper it had already
announced that day.

``StaffAlerts`` (alerts.py) keeps the state in memory and this file mirrors each change:

- private and checked like the box's other SQLite files (``sync.sqlite_guard``): 0600, ``PRAGMA
  quick_check`` at open. A damaged file is set aside as ``alerts.db.corrupt-<UTC time>``, the
  rows that can still be read are carried into a new one, and the agent starts.
- never in the way: a write that fails (a full disk, a file that went bad while open) is logged
  once and the alerts go on from memory; the next change writes the whole state again, so the
  file catches up as soon as it can be written. Alerts are a few hundred rows at most.
- no profile id: a campaign alert's shopper is kept as a hash (``subject``), only to close
  their alerts and forget their keys when their profile goes (consent withdrawn, expired).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sync.sqlite_guard import (
    ScanStats,
    damaged,
    open_private,
    open_readonly,
    readable_rows,
    reason,
    set_aside,
)

log = logging.getLogger("edge_agent")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS open_alerts (
    alert_id TEXT PRIMARY KEY,
    raised_at REAL NOT NULL,
    body TEXT NOT NULL,
    same TEXT,
    subject TEXT
);
CREATE TABLE IF NOT EXISTS raised_once (
    key TEXT PRIMARY KEY,
    day TEXT NOT NULL,
    subject TEXT
);
"""


@dataclass(frozen=True)
class OpenAlert:
    alert_id: str
    raised_at: float  # wall clock, seconds: expiry and the cap's "oldest"
    body: str  # the JSON published on the bus, byte for byte again after a restart
    same: str | None = None  # "kind:thing" (e.g. a beacon): one open alert per thing
    subject: str | None = None  # hash of the shopper's profile id (campaign alerts)


@dataclass(frozen=True)
class OnceKey:
    key: str  # hash of (campaign, shopper, day)
    day: str
    subject: str | None = None


Snapshot = Callable[[], tuple[Iterable[OpenAlert], Iterable[OnceKey]]]


class AlertStore:
    """``snapshot`` gives the owner's whole state, written when the file has to catch up."""

    def __init__(self, path: Path, snapshot: Snapshot) -> None:
        self.path = path
        self._snapshot = snapshot
        self.failing: str | None = None  # why the last write failed (health), None when fine
        # Set when a damaged file was set aside at open: reason, moved_to, salvaged.
        self.recovered: dict[str, str] | None = None
        self._dirty = False
        self._db: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._open()
            except sqlite3.DatabaseError as exc:
                if not damaged(exc):
                    raise
                self._close_db()
                self._replace_damaged(reason(exc))
        except (sqlite3.Error, OSError) as exc:
            # A full or read-only disk must not keep the agent (and its screens) from starting:
            # alerts work from memory and the file is tried again at the next change.
            self._close_db()
            self.failing, self._dirty = reason(exc), True
            log.error("alerts: cannot open %s (%s): open alerts kept in memory", path, reason(exc))

    def _open(self) -> None:
        # FULL: an alert raised just before a power cut is still open after it. Closed alerts
        # carry shoppers' first names: secure_delete overwrites them, not just unlinks.
        db = self._db = open_private(self.path, "alerts")
        db.executescript(_SCHEMA)

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _replace_damaged(self, why: str) -> None:
        """Set the broken file aside, start a new one with whatever rows can still be read."""
        aside = set_aside(self.path)
        self._open()
        alerts, keys = self._salvage(aside.path)
        if alerts or keys:
            try:
                self._save(alerts, keys)
            except (sqlite3.Error, OSError) as exc:  # e.g. no room: start empty, say so below
                log.error("alerts: cannot write the salvaged alerts: %s", reason(exc))
                alerts = []
        self.recovered = {"reason": why, "moved_to": str(aside.path), "salvaged": str(len(alerts))}
        log.error(
            "alerts: %s is damaged (%s): moved to %s; %d open alerts salvaged",
            self.path,
            why,
            aside.path.name,
            len(alerts),
        )

    @staticmethod
    def _salvage(path: Path) -> tuple[list[OpenAlert], list[OnceKey]]:
        def text(v: object) -> str | None:
            return v.decode() if isinstance(v, bytes) else None

        def alert(row: tuple) -> OpenAlert | None:
            try:
                _rowid, aid, at, body, same, subject = row
                if not (text(aid) and text(body) and isinstance(at, int | float)):
                    return None
                return OpenAlert(
                    str(text(aid)), float(at), str(text(body)), text(same), text(subject)
                )
            except (ValueError, UnicodeDecodeError):
                return None

        def once(row: tuple) -> OnceKey | None:
            try:
                _rowid, key, day, subject = row
                if not (text(key) and text(day)):
                    return None
                return OnceKey(str(text(key)), str(text(day)), text(subject))
            except (ValueError, UnicodeDecodeError):
                return None

        alerts: dict[str, OpenAlert] = {}
        keys: dict[str, OnceKey] = {}
        try:
            conn = open_readonly(path)
        except sqlite3.Error:
            return [], []
        try:
            stats = ScanStats()
            cols = "alert_id, raised_at, body, same, subject"
            for a in readable_rows(conn, "open_alerts", cols, alert, stats):
                alerts[a.alert_id] = a
            for k in readable_rows(conn, "raised_once", "key, day, subject", once, stats):
                keys[k.key] = k
        except sqlite3.Error:
            pass  # the header or the schema itself is gone: nothing to carry over
        finally:
            conn.close()
        return list(alerts.values()), list(keys.values())

    # ---- reading, at start ------------------------------------------------------------------
    def load(self) -> tuple[list[OpenAlert], list[OnceKey]]:
        try:
            return self._load()
        except sqlite3.DatabaseError as exc:
            # Damage quick_check does not see (a text that is not the UTF-8 we wrote).
            if not damaged(exc):
                raise
            self._close_db()
            self._replace_damaged(reason(exc))
            return self._load()

    def _load(self) -> tuple[list[OpenAlert], list[OnceKey]]:
        if self._db is None:
            return [], []
        alerts = [
            OpenAlert(*r)
            for r in self._db.execute(
                "SELECT alert_id, raised_at, body, same, subject FROM open_alerts "
                "ORDER BY raised_at"
            )
        ]
        keys = [OnceKey(*r) for r in self._db.execute("SELECT key, day, subject FROM raised_once")]
        return alerts, keys

    # ---- writing: each change, or the whole state after a failure ------------------------
    def add(self, a: OpenAlert) -> None:
        row = (a.alert_id, a.raised_at, a.body, a.same, a.subject)
        self._write(
            lambda db: db.execute("INSERT OR REPLACE INTO open_alerts VALUES (?,?,?,?,?)", row)
        )

    def remove(self, alert_ids: Iterable[str]) -> None:
        rows = [(a,) for a in alert_ids]
        self._write(lambda db: db.executemany("DELETE FROM open_alerts WHERE alert_id = ?", rows))

    def add_once(self, k: OnceKey) -> None:
        row = (k.key, k.day, k.subject)
        self._write(lambda db: db.execute("INSERT OR REPLACE INTO raised_once VALUES (?,?,?)", row))

    def keep_day(self, today: str) -> None:
        self._write(lambda db: db.execute("DELETE FROM raised_once WHERE day != ?", (today,)))

    def forget_subjects(self, subjects: Iterable[str]) -> None:
        rows = [(s,) for s in subjects]

        def op(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM open_alerts WHERE subject = ?", rows)
            db.executemany("DELETE FROM raised_once WHERE subject = ?", rows)

        self._write(op)

    def _save(self, alerts: Iterable[OpenAlert], keys: Iterable[OnceKey]) -> None:
        """Replace the file's state with ``alerts`` and ``keys``, in one transaction."""
        alert_rows = [(a.alert_id, a.raised_at, a.body, a.same, a.subject) for a in alerts]
        key_rows = [(k.key, k.day, k.subject) for k in keys]

        def op(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM open_alerts")
            db.execute("DELETE FROM raised_once")
            db.executemany("INSERT INTO open_alerts VALUES (?,?,?,?,?)", alert_rows)
            db.executemany("INSERT INTO raised_once VALUES (?,?,?)", key_rows)

        self._transaction(op)

    def _transaction(self, op: Callable[[sqlite3.Connection], object]) -> None:
        if self._db is None:
            self._reopen()
        assert self._db is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            op(db)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _write(self, op: Callable[[sqlite3.Connection], object]) -> None:
        """Run ``op`` in a transaction; after an earlier failure, write the owner's whole state
        instead (memory is the truth while the agent runs). A failure is logged when it starts
        and when it ends, not at every alert."""
        try:
            if self._dirty:
                self._save(*self._snapshot())
            else:
                self._transaction(op)
        except (sqlite3.Error, OSError) as exc:
            why = reason(exc)
            if damaged(exc):
                # Set aside now; the next change writes the whole state into a new file.
                self._close_db()
                with contextlib.suppress(OSError):
                    set_aside(self.path)
                why = f"damaged: {why}"
            if self.failing is None:
                log.error(
                    "alerts: cannot write %s (%s): open alerts kept in memory", self.path, why
                )
            self.failing, self._dirty = why, True
            return
        if self.failing is not None:
            log.info("alerts: %s written again", self.path)
        self.failing, self._dirty = None, False

    def _reopen(self) -> None:
        try:
            self._open()
        except BaseException:
            self._close_db()
            raise

    def close(self) -> None:
        self._close_db()
