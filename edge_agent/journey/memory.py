"""The journey's memory across restarts: frequency caps, attribution touches and the day's KPIs
in one SQLite file of the box's state directory (``journey.db``).

Without it a restart, or the restart a pushed config asks for, showed a shopper the same offer
again (caps), left later receipts unattributed (touches) and started the day's KPIs from zero.

- Writes follow the engine's changes (``JourneyEngine.drain_changes``), one transaction per
  tick, made before the tick's events are committed to the outbox: an offer the CDP hears about
  is an offer the caps remember.
- Bounded and expired by their windows: touches older than the attribution window, caps of
  earlier days and KPIs of earlier days are deleted by ``prune`` (and never loaded back).
- Receipts already counted (two days' worth), marked after the journal's flush, so a till that
  resends one after a restart is still one conversion in the KPIs.
- Ids stay here (mode 0600, like the slice); a withdrawn consent deletes the shopper's rows,
  with ``secure_delete`` so the bytes are overwritten.
- A damaged file is set aside (``sync.sqlite_guard``) and the box starts with an empty memory;
  a write that fails (a full disk) is said once and the journey carries on in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path

from edge_agent.journey.attribution import Touch
from edge_agent.journey.caps import hour_key
from edge_agent.journey.engine import CapCounted, Change, Forgot, JourneyEngine, TouchAdded
from edge_agent.journey.kpis import JourneyKpis
from sync.sqlite_guard import damaged, open_private, reason, set_aside

log = logging.getLogger("edge_agent")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS touches (
    ts          REAL NOT NULL,
    campaign_id TEXT NOT NULL,
    screen_id   TEXT NOT NULL,
    profile_id  TEXT,
    grp         TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    origin      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS touches_ts ON touches (ts);
CREATE TABLE IF NOT EXISTS caps_shopper (
    campaign_id TEXT NOT NULL,
    profile_id  TEXT NOT NULL,
    day         TEXT NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, profile_id, day)
);
CREATE TABLE IF NOT EXISTS caps_screen (
    campaign_id TEXT NOT NULL,
    screen_id   TEXT NOT NULL,
    day         TEXT NOT NULL,
    hour        INTEGER NOT NULL,
    fold        INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, screen_id, day, hour, fold)
);
CREATE TABLE IF NOT EXISTS receipts (
    receipt     TEXT PRIMARY KEY,
    day         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kpis (
    day   TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
"""


class JourneyMemory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.write_errors = 0
        self._failing = False
        self._saved_kpis: str | None = None
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if not damaged(exc):
                raise
            aside = set_aside(path)
            log.error(
                "journey: %s is damaged (%s): moved to %s, starting with empty caps, touches "
                "and KPIs",
                path.name,
                reason(exc),
                aside.path.name,
            )
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        # NORMAL in WAL mode: a power cut may lose the last transactions, never corrupt.
        db = open_private(self.path, "journey", synchronous="NORMAL")
        try:
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    # ---- restart -------------------------------------------------------------------------
    def load_into(self, engine: JourneyEngine, now: float, now_local: datetime) -> dict[str, int]:
        """Put back what is still within its window; returns how much, for the start log."""
        self.prune(now - engine.book.window_s, now_local.date())
        touches = [
            Touch(ts, cid, screen, pid, grp, eid, origin)  # type: ignore[arg-type]
            for ts, cid, screen, pid, grp, eid, origin in self._db.execute(
                "SELECT ts, campaign_id, screen_id, profile_id, grp, event_id, origin"
                " FROM touches ORDER BY ts"
            )
        ]
        for t in touches:
            engine.book.add(t)
        caps = engine.caps
        for cid, pid, day, n in self._db.execute(
            "SELECT campaign_id, profile_id, day, n FROM caps_shopper"
        ):
            caps.restore_shopper(cid, pid, date.fromisoformat(day), n)
        for cid, screen, day, hour, fold, n in self._db.execute(
            "SELECT campaign_id, screen_id, day, hour, fold, n FROM caps_screen"
        ):
            caps.restore_screen(cid, screen, (date.fromisoformat(day), hour, fold), n)
        row = self._db.execute(
            "SELECT state FROM kpis WHERE day = ?", (now_local.date().isoformat(),)
        ).fetchone()
        if row is not None:
            try:
                engine.kpis.restore(json.loads(row[0]))
                self._saved_kpis = row[0]
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("journey: the saved KPIs of today are unreadable (%r); from zero", exc)
        engine.drain_changes()  # what was loaded is already here
        return {"touches": len(touches), "caps": len(caps)}

    # ---- every tick ----------------------------------------------------------------------
    def apply(self, changes: Iterable[Change], kpis: JourneyKpis | None = None) -> None:
        """Write the engine's changes (and the KPIs when they changed) in one transaction."""
        changes = list(changes)
        state = None
        if kpis is not None and kpis.day is not None:
            state = json.dumps(kpis.to_state(), separators=(",", ":"))
            if state == self._saved_kpis:
                state = None
        if not changes and state is None:
            return
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for c in changes:
                    self._write(c)
                if state is not None and kpis is not None and kpis.day is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO kpis (day, state) VALUES (?, ?)",
                        (kpis.day.isoformat(), state),
                    )
        except sqlite3.Error as exc:
            self.write_errors += 1
            if not self._failing:
                log.error("journey: cannot save caps, touches and KPIs (%s); kept in memory", exc)
            self._failing = True
            return
        if state is not None:
            self._saved_kpis = state
        if self._failing:
            log.info("journey: saving caps, touches and KPIs again")
            self._failing = False

    def _write(self, c: Change) -> None:
        if isinstance(c, TouchAdded):
            t = c.touch
            self._db.execute(
                "INSERT INTO touches VALUES (?, ?, ?, ?, ?, ?, ?)",
                (t.ts, t.campaign_id, t.screen_id, t.profile_id, t.group, t.event_id, t.origin),
            )
        elif isinstance(c, CapCounted):
            day, hour, fold = hour_key(c.now_local)
            self._db.execute(
                "INSERT INTO caps_screen VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT"
                " (campaign_id, screen_id, day, hour, fold) DO UPDATE SET n = n + 1",
                (c.campaign_id, c.screen_id, day.isoformat(), hour, fold),
            )
            if c.profile_id is not None:
                self._db.execute(
                    "INSERT INTO caps_shopper VALUES (?, ?, ?, 1) ON CONFLICT"
                    " (campaign_id, profile_id, day) DO UPDATE SET n = n + 1",
                    (c.campaign_id, c.profile_id, day.isoformat()),
                )
        elif isinstance(c, Forgot):
            self._db.execute("DELETE FROM touches WHERE profile_id = ?", (c.profile_id,))
            self._db.execute("DELETE FROM caps_shopper WHERE profile_id = ?", (c.profile_id,))
            # The KPIs' sets lose the id at the next save; until then the row still holds it.
            self._saved_kpis = None

    def prune(self, horizon_ts: float, today: date) -> None:
        """Forget what can no longer cap or be attributed: touches before ``horizon_ts``, caps
        and KPIs of days before ``today``."""
        day = today.isoformat()
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM touches WHERE ts < ?", (horizon_ts,))
                self._db.execute("DELETE FROM caps_shopper WHERE day < ?", (day,))
                self._db.execute("DELETE FROM caps_screen WHERE day < ?", (day,))
                self._db.execute("DELETE FROM kpis WHERE day < ?", (day,))
                # A till may resend yesterday's last receipts after midnight.
                yesterday = (today - timedelta(days=1)).isoformat()
                self._db.execute("DELETE FROM receipts WHERE day < ?", (yesterday,))
        except sqlite3.Error as exc:
            log.warning("journey: could not prune %s: %s", self.path.name, exc)

    def mark_receipts(self, receipts: list[str], today: date) -> None:
        """Receipts whose conversion the outbox holds: after the journal's flush, never before,
        so a kill -9 in between costs at most a duplicate (the CDP merges it), never a loss."""
        if not receipts:
            return
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT OR IGNORE INTO receipts VALUES (?, ?)",
                    [(r, today.isoformat()) for r in receipts],
                )
        except sqlite3.Error as exc:
            self.write_errors += 1
            log.warning("journey: could not mark %d receipt(s) as counted: %s", len(receipts), exc)

    def receipts_seen(self) -> list[str]:
        return [r for (r,) in self._db.execute("SELECT receipt FROM receipts ORDER BY rowid")]

    def counts(self) -> dict[str, int]:
        """Rows per table (tests and `doctor` read it)."""
        return {
            t: self._db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
            for t in ("touches", "caps_shopper", "caps_screen", "kpis", "receipts")
        }

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
