"""Where the CDP keeps events: one interface, SQLite (embedded, one sink) or PostgreSQL (shared).

``open_store(target)`` takes a path (SQLite, the default for ``make demo`` and a single store) or a
``postgresql://`` DSN (one schema shared by any number of sinks). Both implement ``CdpStore``
with the same meaning, and ``tests/central/test_cdp_store.py`` runs the same tests on both:

- An event is unique on (store, device, event id): a box cannot lose an event because another
  box happened to use the same id (issue 19: loadgen's default seed gave every device the same
  ids, and the CDP dropped one device's events as duplicates and confirmed them).
- Except an id that is shared on purpose: a receipt's conversion has a UUIDv5 of (store, till,
  receipt) (``contracts.events.receipt_event_id``), so every box that heard the till reports the
  same id and the CDP must keep one conversion per receipt. The sink checks the derivation
  (``EventRow.shared``); such an id is claimed once per store in ``shared_ids`` and only the first
  box's copy is stored. An id that merely looks like a conversion's is not shared.
- Every (device, sequence) that arrived is kept in ``sequences``, stored or a duplicate: the gap
  report is SQL over that table, so it is the truth of every sink writing into the store, and a
  receipt's second copy counts as received for its box.
- ``write`` is one transaction; the sink confirms to the box only after it returns.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from contracts.events import TYPE_PREFIX

HEARTBEAT = TYPE_PREFIX + "device.heartbeat.v1"
CONVERSION = TYPE_PREFIX + "conversion.v1"
DEVICE_LOG = TYPE_PREFIX + "device.log.v1"


class LogRow(NamedTuple):
    """One relayed log record as `edge-ops logs` reads it; (received_at, id) is its place in
    arrival order, the cursor ``--follow`` polls after."""

    received_at: float
    id: str
    store_id: str
    device_id: str
    time: str  # ISO 8601, the record's first occurrence on the box
    data: dict[str, Any]  # the DeviceLog payload


@dataclass(frozen=True)
class EventRow:
    """One valid event, as the sink hands it to the store."""

    id: str
    store_id: str
    device_id: str
    sequence: str | None  # the box's zero-padded decimal, as sent
    type: str
    time: datetime
    batch_id: str | None
    received_at: float
    body: str  # the event's JSON as received
    shared: bool = False  # a receipt-derived id: one per store, whichever box sent it

    @property
    def seq_number(self) -> int | None:
        # Zero-padded to 20 digits by the box; beyond a bigint it cannot be a real sequence.
        s = self.sequence
        if s is None or not s.isdigit() or len(s) > 20:
            return None
        n = int(s)
        return n if n < 2**63 else None

    @property
    def day(self) -> date:
        t = self.time if self.time.tzinfo is not None else self.time.replace(tzinfo=UTC)
        return t.astimezone(UTC).date()


class ExperienceRow(NamedTuple):
    """One event for the console's audience and experience KPIs; the fields its type has."""

    store: str
    device: str
    time: str  # ISO
    kind: str  # "track" (audience.track), "survey" (survey.answer), "heartbeat"
    dwell_s: float | None = None  # track
    attention_s: float | None = None  # track
    survey: str | None = None  # survey: "nps" or "effort"
    score: float | None = None  # survey
    kpi_day: str | None = None  # heartbeat: the box's store day its KPIs are of
    ttv_p50_s: float | None = None  # heartbeat: the box's time to value, median, that day
    screen: str | None = None  # track: the screen the person stood in front of


@dataclass(frozen=True)
class RejectRow:
    received_at: float
    topic: str
    batch_id: str | None
    event_id: str | None
    reason: str
    raw: str | None


class CdpStore(Protocol):
    """What a sink, ``edge-ops cdp-gaps``/``uplift`` and the console need from the CDP store."""

    kind: str  # "sqlite" or "postgresql"
    shared: bool  # True when other sinks may write into the same store

    def write(self, rows: Sequence[EventRow], rejects: Sequence[RejectRow]) -> list[int]:
        """Store rows and rejects in one committed transaction; the indexes of rows stored for
        the first time (the rest were duplicates). Raises on database errors, storing nothing."""
        ...

    def count(self) -> int: ...

    def ids(self) -> set[str]: ...

    def rejects(self) -> list[dict[str, Any]]: ...

    def gaps(self, max_ranges: int = 20) -> list[dict[str, Any]]: ...

    def compact_sequences(self) -> int | None:
        """Fold the received sequences into ranges (``sequence_ranges``): one row per run of
        consecutive sequences instead of one per event, so the table stays bounded by devices
        and holes. The rows folded, or None when another sink is compacting right now."""
        ...

    def uplift_rows(
        self, since: str | None, until: str | None, store: str | None
    ) -> list[tuple[str, str, int, int]]: ...

    def campaign_events(
        self, since: str | None, until: str | None, store: str | None
    ) -> list[tuple[str, str, str, str, float, float, str | None]]: ...

    def latest_heartbeats(self) -> list[tuple[str, str, str, dict[str, Any]]]: ...

    def experience_events(
        self, since: str | None, until: str | None, store: str | None
    ) -> list[ExperienceRow]:
        """Camera tracks, survey answers and heartbeats' journey KPIs, oldest first: the
        console's audience and experience KPIs per store and day."""
        ...

    def logs(
        self,
        store: str,
        device: str | None = None,
        since: str | None = None,
        after: tuple[float, str] | None = None,
        limit: int = 500,
    ) -> list[LogRow]:
        """The store's relayed log records (``device.log.v1``) in arrival order: without
        ``after`` the latest ``limit`` of them; with it, the first ``limit`` that arrived after
        that (received_at, id) cursor. ``since``: ISO time the record's own time is at least."""
        ...

    def close(self) -> None: ...


def is_dsn(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def open_store(target: str | Path, *, create: bool = True) -> CdpStore:
    """A path opens (or creates) a SQLite file; a ``postgresql://`` DSN the shared schema."""
    if is_dsn(target):
        return PostgresStore(str(target), create=create)
    return SqliteStore(Path(target))


def redact(dsn: str) -> str:
    """A DSN fit for logs: the password, if any, replaced."""
    head, sep, rest = dsn.partition("://")
    if "@" not in rest:
        return dsn
    cred, at, host = rest.rpartition("@")
    user = cred.split(":", 1)[0]
    return f"{head}{sep}{user}{':***' if ':' in cred else ''}{at}{host}"


def gap_report(
    summary: Sequence[tuple[Any, ...]], holes: Sequence[tuple[Any, ...]], max_ranges: int
) -> list[dict[str, Any]]:
    """Per device: first and last sequence received, how many, and the missing ranges, from the
    two queries both stores run (a summary per device, and each hole between two sequences)."""
    ranges: dict[tuple[str, str], list[list[int]]] = {}
    for store, device, a, b in holes:
        ranges.setdefault((store, device), []).append([int(a), int(b)])
    out = []
    for store, device, first, last, n in summary:
        rs = ranges.get((store, device), [])
        if first > 1:
            rs = [[1, int(first) - 1], *rs]
        out.append(
            {
                "store": store,
                "device": device,
                "first": int(first),
                "last": int(last),
                "stored": int(n),
                "missing": sum(b - a + 1 for a, b in rs),
                "ranges": rs[:max_ranges],
            }
        )
    return out


# ---- SQLite ------------------------------------------------------------------------------------
_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id          TEXT NOT NULL,        -- CloudEvent id, unique per device
    store_id    TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    sequence    TEXT,
    type        TEXT NOT NULL,
    time        TEXT NOT NULL,
    batch_id    TEXT,
    received_at REAL NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (store_id, device_id, id)
);
CREATE INDEX IF NOT EXISTS events_device_seq ON events (store_id, device_id, sequence);
-- Receipt-derived ids, claimed once per store: one conversion per receipt however many boxes.
CREATE TABLE IF NOT EXISTS shared_ids (
    store_id    TEXT NOT NULL,
    id          TEXT NOT NULL,
    PRIMARY KEY (store_id, id)
) WITHOUT ROWID;
-- Every (device, sequence) received, stored or a duplicate: a receipt's conversion reported by
-- two boxes is one event, yet both boxes' sequences arrived and are no gap.
CREATE TABLE IF NOT EXISTS sequences (
    store_id    TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    sequence    INTEGER NOT NULL,
    PRIMARY KEY (store_id, device_id, sequence)
) WITHOUT ROWID;
-- The same, compacted: runs of consecutive sequences [lo, hi] (compact_sequences). The gap
-- report reads both tables, overlaps included (a late duplicate of a compacted sequence).
CREATE TABLE IF NOT EXISTS sequence_ranges (
    store_id    TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    lo          INTEGER NOT NULL,
    hi          INTEGER NOT NULL,
    PRIMARY KEY (store_id, device_id, lo)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejects (
    n           INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    topic       TEXT NOT NULL,
    batch_id    TEXT,
    event_id    TEXT,
    reason      TEXT NOT NULL,
    raw         TEXT
);
"""


def _logs_params(
    store: str,
    device: str | None,
    since: str | None,
    after: tuple[float, str] | None,
    limit: int,
) -> dict[str, object]:
    """The ``logs`` query's parameters, the same names in both stores' SQL."""
    return {
        "type": DEVICE_LOG,
        "store": store,
        "device": device,
        "since": since,
        "ra": after[0] if after else None,
        "rid": after[1] if after else None,
        "limit": limit,
    }


def _logs_order(after: tuple[float, str] | None, limit: str) -> str:
    """Following (``after``): oldest first from the cursor; otherwise the latest ``limit``."""
    if after:
        return f" ORDER BY received_at, id LIMIT {limit}"
    return f" ORDER BY received_at DESC, id DESC LIMIT {limit}"


class SqliteStore:
    """One file, one writer: the embedded CDP of the demo and of a single-sink install."""

    kind = "sqlite"
    shared = False

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the confirmation goes out after the commit, so the commit must really be on disk.
        self.conn.execute("PRAGMA synchronous=FULL")
        self._lock = threading.Lock()
        self._migrate()

    def _migrate(self) -> None:
        db = self.conn
        cols = {r[1]: r[5] for r in db.execute("PRAGMA table_info(events)")}  # name -> pk rank
        had_sequences = db.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'sequences'"
        ).fetchone()
        db.execute("BEGIN IMMEDIATE")
        try:
            if cols and cols.get("device_id") == 0:
                # A file from before issue 19: events unique on the id alone. Rebuilt with the
                # (store, device, id) key; its conversions become the receipts' claims (the old
                # key had kept one per id anyway).
                db.execute("ALTER TABLE events RENAME TO events_v1")
                db.execute("DROP INDEX IF EXISTS events_device_seq")
            for stmt in _SQLITE_SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            if cols and cols.get("device_id") == 0:
                db.execute(
                    "INSERT INTO events SELECT id, store_id, device_id, sequence, type, time,"
                    " batch_id, received_at, body FROM events_v1"
                )
                db.execute(
                    "INSERT OR IGNORE INTO shared_ids SELECT store_id, id FROM events"
                    " WHERE type = ?",
                    (CONVERSION,),
                )
                db.execute("DROP TABLE events_v1")
            if cols and not had_sequences:
                # A database from before the sequences table: what it stored was received.
                db.execute(
                    "INSERT OR IGNORE INTO sequences SELECT store_id, device_id,"
                    " CAST(sequence AS INTEGER) FROM events WHERE sequence IS NOT NULL"
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def write(self, rows: Sequence[EventRow], rejects: Sequence[RejectRow]) -> list[int]:
        with self._lock:
            db = self.conn
            db.execute("BEGIN IMMEDIATE")
            try:
                new: list[int] = []
                for i, r in enumerate(rows):
                    fresh = True
                    if r.shared:
                        fresh = (
                            db.execute(
                                "INSERT OR IGNORE INTO shared_ids VALUES (?, ?)", (r.store_id, r.id)
                            ).rowcount
                            == 1
                        )
                    if fresh:
                        cur = db.execute(
                            "INSERT OR IGNORE INTO events (id, store_id, device_id, sequence,"
                            " type, time, batch_id, received_at, body) VALUES (?,?,?,?,?,?,?,?,?)",
                            (r.id, r.store_id, r.device_id, r.sequence, r.type,
                             r.time.isoformat(), r.batch_id, r.received_at, r.body),
                        )  # fmt: skip
                        if cur.rowcount:
                            new.append(i)
                    seq = r.seq_number
                    if seq is not None:
                        db.execute(
                            "INSERT OR IGNORE INTO sequences VALUES (?, ?, ?)",
                            (r.store_id, r.device_id, seq),
                        )
                db.executemany(
                    "INSERT INTO rejects (received_at, topic, batch_id, event_id, reason, raw)"
                    " VALUES (?,?,?,?,?,?)",
                    [(x.received_at, x.topic, x.batch_id, x.event_id, x.reason, x.raw)
                     for x in rejects],
                )  # fmt: skip
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return new

    def count(self) -> int:
        with self._lock:
            return int(self.conn.execute("SELECT count(*) FROM events").fetchone()[0])

    def ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self.conn.execute("SELECT id FROM events")}

    def rejects(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self.conn.execute(
                "SELECT topic, batch_id, event_id, reason FROM rejects ORDER BY n"
            )
            return [
                dict(zip(("topic", "batch_id", "event_id", "reason"), r, strict=True)) for r in cur
            ]

    def gaps(self, max_ranges: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            summary = self.conn.execute(_GAP_SUMMARY_SQL).fetchall()
            holes = self.conn.execute(_GAP_HOLES_SQL).fetchall()
        return gap_report(summary, holes, max_ranges)

    def compact_sequences(self) -> int | None:
        with self._lock:
            db = self.conn
            db.execute("BEGIN IMMEDIATE")
            try:
                points = db.execute(
                    "SELECT store_id, device_id, sequence FROM sequences"
                ).fetchall()
                ranges = db.execute("SELECT store_id, device_id, lo, hi FROM sequence_ranges")
                merged = merge_runs(points, ranges.fetchall())
                db.execute("DELETE FROM sequences")
                db.execute("DELETE FROM sequence_ranges")
                db.executemany("INSERT INTO sequence_ranges VALUES (?, ?, ?, ?)", merged)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return len(points)

    def uplift_rows(
        self, since: str | None, until: str | None, store: str | None
    ) -> list[tuple[str, str, int, int]]:
        with self._lock:
            return self.conn.execute(_UPLIFT_SQL, _params(since, until, store)).fetchall()

    def campaign_events(
        self, since: str | None, until: str | None, store: str | None
    ) -> list[tuple[str, str, str, str, float, float, str | None]]:
        with self._lock:
            rows = self.conn.execute(_CAMPAIGN_EVENTS_SQL, _params(since, until, store)).fetchall()
        return [
            (st, t, _short(ty), c, float(d or 0.0), float(a or 0.0), scr)
            for st, t, ty, c, d, a, scr in rows
        ]

    def experience_events(
        self, since: str | None, until: str | None, store: str | None
    ) -> list[ExperienceRow]:
        with self._lock:
            rows = self.conn.execute(_EXPERIENCE_SQL, _experience_params(since, until, store))
            return [_experience_row(*r) for r in rows.fetchall()]

    def latest_heartbeats(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT store_id, device_id, time, json_extract(body, '$.data') FROM ("
                "  SELECT *, row_number() OVER (PARTITION BY store_id, device_id"
                "    ORDER BY julianday(time) DESC) AS k FROM events WHERE type = ?"
                ") WHERE k = 1 ORDER BY store_id, device_id",
                (HEARTBEAT,),
            ).fetchall()
        out = []
        for st, dev, t, data in rows:
            try:
                doc = json.loads(data) if data else {}
            except ValueError:
                doc = {}
            out.append((st, dev, t, doc if isinstance(doc, dict) else {}))
        return out

    def logs(
        self,
        store: str,
        device: str | None = None,
        since: str | None = None,
        after: tuple[float, str] | None = None,
        limit: int = 500,
    ) -> list[LogRow]:
        params = _logs_params(store, device, since, after, limit)
        sql = _SQLITE_LOGS_SQL + _logs_order(after, ":limit")
        with self._lock:
            rows = self.conn.execute(sql, params).fetchall()
        out = [LogRow(ra, i, st, dev, t, _doc(d)) for ra, i, st, dev, t, d in rows]
        return out if after else out[::-1]

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def _doc(data: str | None) -> dict[str, Any]:
    try:
        doc = json.loads(data) if data else {}
    except ValueError:
        doc = {}
    return doc if isinstance(doc, dict) else {}


# The store's log records, optionally one device's, from a time on, after a cursor. The
# (store, device, id) key serves the store filter; the type is checked on those rows.
_SQLITE_LOGS_SQL = """
SELECT received_at, id, store_id, device_id, time, json_extract(body, '$.data') FROM events
WHERE type = :type AND store_id = :store
  AND (:device IS NULL OR device_id = :device)
  AND (:since IS NULL OR julianday(time) >= julianday(:since))
  AND (:ra IS NULL OR received_at > :ra OR (received_at = :ra AND id > :rid))
"""


def _params(since: str | None, until: str | None, store: str | None) -> dict[str, Any]:
    return {
        "impression": TYPE_PREFIX + "content.impression.v1",
        "shown": TYPE_PREFIX + "offer.shown.v1",
        "holdout": TYPE_PREFIX + "holdout.assigned.v1",
        "conversion": CONVERSION,
        "since": since,
        "until": until,
        "store": store,
    }


_EXPERIENCE_TYPES = {
    TYPE_PREFIX + "audience.track.v1": "track",
    TYPE_PREFIX + "survey.answer.v1": "survey",
    HEARTBEAT: "heartbeat",
}


def _experience_params(since: str | None, until: str | None, store: str | None) -> dict[str, Any]:
    track, survey, heartbeat = _EXPERIENCE_TYPES
    return {"track": track, "survey": survey, "heartbeat": heartbeat, "since": since,
            "until": until, "store": store}  # fmt: skip


def _float(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _experience_row(
    st: str, dev: str, t: Any, ty: str, dwell: Any, att: Any, survey: Any, score: Any,
    kday: Any, ttv: Any, screen: Any,
) -> ExperienceRow:  # fmt: skip
    return ExperienceRow(
        st, dev, t if isinstance(t, str) else t.isoformat(), _EXPERIENCE_TYPES[ty],
        _float(dwell), _float(att), None if survey is None else str(survey), _float(score),
        None if kday is None else str(kday), _float(ttv), None if screen is None else str(screen),
    )  # fmt: skip


_EXPERIENCE_SQL = """
SELECT store_id, device_id, time, type,
       json_extract(body, '$.data.dwell_s'), json_extract(body, '$.data.attention_s'),
       json_extract(body, '$.data.survey'), json_extract(body, '$.data.score'),
       json_extract(body, '$.data.kpis.day'),
       json_extract(body, '$.data.kpis.time_to_value_p50_s'),
       json_extract(body, '$.data.screen_id')
FROM events
WHERE type IN (:track, :survey, :heartbeat)
  AND (:since IS NULL OR julianday(time) >= julianday(:since))
  AND (:until IS NULL OR julianday(time) < julianday(:until))
  AND (:store IS NULL OR store_id = :store)
ORDER BY julianday(time)
"""


def _short(event_type: str) -> str:
    if event_type == TYPE_PREFIX + "content.impression.v1":
        return "impression"
    if event_type == TYPE_PREFIX + "offer.shown.v1":
        return "shown"
    return "conversion"


def _gap_sql(prefix: str = "") -> tuple[str, str]:
    """The gap report's two queries over ``sequences`` and ``sequence_ranges`` (``prefix``: a
    schema and a dot): every row an interval [lo, hi], a single sequence being [n, n]. ``reach``
    is the highest sequence covered by the intervals before this one: a hole where an interval
    starts beyond it, a new island otherwise. Intervals may overlap (a duplicate arriving after
    its run was compacted), so the count is taken over islands, never by adding rows."""
    intervals = (
        f"SELECT store_id, device_id, sequence AS lo, sequence AS hi FROM {prefix}sequences"
        f" UNION ALL SELECT store_id, device_id, lo, hi FROM {prefix}sequence_ranges"
    )
    reach = (
        "SELECT store_id, device_id, lo, hi, max(hi) OVER (PARTITION BY store_id, device_id"
        " ORDER BY lo, hi ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach"
        f" FROM ({intervals}) AS iv"
    )
    islands = (
        "SELECT store_id, device_id, min(lo) AS lo, max(hi) AS hi FROM ("
        "  SELECT store_id, device_id, lo, hi, sum(CASE WHEN reach IS NULL OR lo > reach + 1"
        "    THEN 1 ELSE 0 END) OVER (PARTITION BY store_id, device_id ORDER BY lo, hi"
        "    ROWS UNBOUNDED PRECEDING) AS island"
        f"  FROM ({reach}) AS r"
        ") AS g GROUP BY store_id, device_id, island"
    )
    summary = (
        "SELECT store_id, device_id, min(lo), max(hi), sum(hi - lo + 1)"
        f" FROM ({islands}) AS isl GROUP BY store_id, device_id ORDER BY store_id, device_id"
    )
    holes = (
        f"SELECT store_id, device_id, reach + 1, lo - 1 FROM ({reach}) AS r"
        " WHERE lo > reach + 1 ORDER BY store_id, device_id, lo"
    )
    return summary, holes


_GAP_SUMMARY_SQL, _GAP_HOLES_SQL = _gap_sql()


def merge_runs(
    points: Iterable[tuple[str, str, int]], ranges: Iterable[tuple[str, str, int, int]]
) -> list[tuple[str, str, int, int]]:
    """Single sequences and ranges of each device merged into maximal runs [lo, hi] of
    consecutive sequences (overlapping or adjacent ones become one)."""
    by_device: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for st, dev, n in points:
        by_device.setdefault((st, dev), []).append((int(n), int(n)))
    for st, dev, lo, hi in ranges:
        by_device.setdefault((st, dev), []).append((int(lo), int(hi)))
    out: list[tuple[str, str, int, int]] = []
    for (st, dev), ivs in sorted(by_device.items()):
        ivs.sort()
        lo, hi = ivs[0]
        for a, b in ivs[1:]:
            if a > hi + 1:
                out.append((st, dev, lo, hi))
                lo, hi = a, b
            else:
                hi = max(hi, b)
        out.append((st, dev, lo, hi))
    return out


# One pass over the three event types: distinct shoppers per campaign and group, and how many of
# them converted. julianday() compares instants, whatever UTC offset a box wrote its times with.
_UPLIFT_SQL = """
WITH ev AS (
    SELECT type,
           json_extract(body, '$.data.profile_id') AS profile,
           coalesce(json_extract(body, '$.data.campaign_id'),
                    json_extract(body, '$.data.attributed_campaign_id')) AS campaign,
           json_extract(body, '$.data.group') AS grp
    FROM events
    WHERE type IN (:shown, :holdout, :conversion)
      AND (:since IS NULL OR julianday(time) >= julianday(:since))
      AND (:until IS NULL OR julianday(time) < julianday(:until))
      AND (:store IS NULL OR store_id = :store)
),
exposed AS (
    SELECT DISTINCT campaign, profile FROM ev
    WHERE type = :shown AND profile IS NOT NULL AND campaign IS NOT NULL
),
held AS (
    SELECT DISTINCT campaign, profile FROM ev
    WHERE type = :holdout AND profile IS NOT NULL AND campaign IS NOT NULL
    EXCEPT SELECT campaign, profile FROM exposed
),
converted AS (
    SELECT DISTINCT campaign, profile FROM ev
    WHERE type = :conversion AND profile IS NOT NULL AND campaign IS NOT NULL
      AND grp IS NOT NULL
),
members AS (
    SELECT campaign, profile, 'exposed' AS grp FROM exposed
    UNION ALL
    SELECT campaign, profile, 'holdout' AS grp FROM held
)
SELECT m.campaign, m.grp, count(*), count(c.profile)
FROM members AS m
LEFT JOIN converted AS c ON c.campaign = m.campaign AND c.profile = m.profile
GROUP BY m.campaign, m.grp
"""

_CAMPAIGN_EVENTS_SQL = """
SELECT store_id, time, type,
       coalesce(json_extract(body, '$.data.campaign_id'),
                json_extract(body, '$.data.attributed_campaign_id')) AS campaign,
       json_extract(body, '$.data.duration_s'),
       json_extract(body, '$.data.amount'),
       json_extract(body, '$.data.screen_id')
FROM events
WHERE type IN (:impression, :shown, :conversion)
  AND campaign IS NOT NULL
  AND (:since IS NULL OR julianday(time) >= julianday(:since))
  AND (:until IS NULL OR julianday(time) < julianday(:until))
  AND (:store IS NULL OR store_id = :store)
ORDER BY julianday(time)
"""


# ---- PostgreSQL --------------------------------------------------------------------------------
SCHEMA = "cdp"

# Partitioned by the event's UTC day: old days are detached or dropped whole, and a day's
# queries (uplift, KPIs) read one partition. A unique index on a partitioned table must hold the
# partition key, so the key is (store, device, id, day): an event's time is part of its body, and
# every re-send of an event carries the same body, so the day of an id never changes.
_PG_SCHEMA = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.events (
    store_id    text NOT NULL,
    device_id   text NOT NULL,
    id          text NOT NULL,
    day         date NOT NULL,
    sequence    bigint,
    type        text NOT NULL,
    time        timestamptz NOT NULL,
    batch_id    text,
    received_at double precision NOT NULL,
    body        jsonb NOT NULL,
    PRIMARY KEY (store_id, device_id, id, day)
) PARTITION BY RANGE (day);
CREATE INDEX IF NOT EXISTS events_type_time ON {SCHEMA}.events (type, time);
CREATE TABLE IF NOT EXISTS {SCHEMA}.shared_ids (
    store_id    text NOT NULL,
    id          text NOT NULL,
    PRIMARY KEY (store_id, id)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.sequences (
    store_id    text NOT NULL,
    device_id   text NOT NULL,
    sequence    bigint NOT NULL,
    PRIMARY KEY (store_id, device_id, sequence)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.sequence_ranges (
    store_id    text NOT NULL,
    device_id   text NOT NULL,
    lo          bigint NOT NULL,
    hi          bigint NOT NULL,
    PRIMARY KEY (store_id, device_id, lo)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.rejects (
    n           bigserial PRIMARY KEY,
    received_at double precision NOT NULL,
    topic       text NOT NULL,
    batch_id    text,
    event_id    text,
    reason      text NOT NULL,
    raw         text
)
"""

# Every sink runs the DDL at start and creates day partitions on demand: an advisory lock
# serialises them, since CREATE ... IF NOT EXISTS is not safe against a concurrent CREATE.
_DDL_LOCK = 0x0CD9_5C4E
# One compaction of the sequences at a time over all sinks; the others skip theirs.
_COMPACT_LOCK = 0x0CD9_5C4F
_PG_GAP_SUMMARY_SQL, _PG_GAP_HOLES_SQL = _gap_sql(f"{SCHEMA}.")


def _nul_free(text: str | None) -> str | None:
    # PostgreSQL text cannot hold U+0000; a hostile reject reason or raw prefix may.
    return None if text is None else text.replace("\x00", "\ufffd")


def _jsonb_safe(body: str) -> str:
    """jsonb refuses the escape \\u0000 in a string: the same document with U+FFFD instead."""
    if "\\u0000" not in body:
        return body

    def clean(v: Any) -> Any:
        if isinstance(v, str):
            return v.replace("\x00", "\ufffd")
        if isinstance(v, list):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {clean(k): clean(x) for k, x in v.items()}
        return v

    return json.dumps(clean(json.loads(body)), separators=(",", ":"), ensure_ascii=False)


class PostgresStore:
    """The CDP in PostgreSQL: one schema that any number of sinks write into at once."""

    kind = "postgresql"
    shared = True
    RETRIES = 4  # deadlocks and lost connections: tried again before the batch is given up

    def __init__(self, dsn: str, *, create: bool = True) -> None:
        import psycopg

        self.dsn = dsn
        self._psycopg = psycopg
        self._lock = threading.Lock()
        self._days: set[date] = set()  # partitions known to exist
        self._conn: Any = None
        if create:
            with self._locked_conn() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
                conn.execute(_PG_SCHEMA)

    def check(self) -> None:
        """Raise unless the server answers and holds the schema (for readers that do not
        create it, such as the console, so they fail at start rather than on every page)."""
        row = self._query("SELECT to_regclass(%s)", (f"{SCHEMA}.events",))
        if row[0][0] is None:
            raise LookupError(f"no {SCHEMA}.events table: no sink has written to this database")

    # ---- connection --------------------------------------------------------------------
    class _Held:
        def __init__(self, store: PostgresStore) -> None:
            self.store = store

        def __enter__(self) -> Any:
            self.store._lock.acquire()
            try:
                return self.store._connection()
            except BaseException:
                self.store._lock.release()
                raise

        def __exit__(self, *exc: object) -> None:
            self.store._lock.release()

    def _locked_conn(self) -> PostgresStore._Held:
        return PostgresStore._Held(self)

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            # autocommit: every write opens its own explicit transaction; reads see committed
            # data at once instead of holding a snapshot open between calls.
            self._conn = self._psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        return self._conn

    # ---- writing -----------------------------------------------------------------------
    def _ensure_partitions(self, conn: Any, days: set[date]) -> None:
        todo = days - self._days
        if not todo:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            for d in sorted(todo):
                name = f"events_{d:%Y%m%d}"
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{name} PARTITION OF {SCHEMA}.events"
                    f" FOR VALUES FROM ('{d.isoformat()}') TO ('{(d + timedelta(days=1)).isoformat()}')"
                )
        self._days |= todo

    def write(self, rows: Sequence[EventRow], rejects: Sequence[RejectRow]) -> list[int]:
        errors = self._psycopg.errors
        retryable = (
            errors.DeadlockDetected,
            errors.SerializationFailure,
            self._psycopg.OperationalError,
        )
        for attempt in range(self.RETRIES):
            try:
                with self._locked_conn() as conn:
                    self._ensure_partitions(conn, {r.day for r in rows})
                    return self._write(conn, rows, rejects)
            except errors.CheckViolation:
                # "no partition found for row": a day's partition dropped or detached after this
                # sink saw it (old days are retired whole). Forget what we knew and make it again.
                self._days.clear()
                if attempt == self.RETRIES - 1:
                    raise
            except retryable:
                # Sinks insert in key order, so deadlocks are not expected; a server restart or
                # a failover is: reconnect and try the whole transaction again.
                with self._lock:
                    if self._conn is not None and (self._conn.broken or self._conn.closed):
                        self._conn = None
                if attempt == self.RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _write(
        self, conn: Any, rows: Sequence[EventRow], rejects: Sequence[RejectRow]
    ) -> list[int]:
        # Key order: two sinks inserting overlapping batches take their row locks in the same
        # order, so neither waits for the other in a cycle.
        order = sorted(
            range(len(rows)), key=lambda i: (rows[i].store_id, rows[i].device_id, rows[i].id)
        )
        new: list[int] = []
        with conn.transaction():
            shared = [i for i in order if rows[i].shared]
            claimed: set[tuple[str, str]] = set()
            if shared:
                cur = conn.execute(
                    f"INSERT INTO {SCHEMA}.shared_ids (store_id, id)"
                    " SELECT * FROM unnest(%s::text[], %s::text[])"
                    " ON CONFLICT DO NOTHING RETURNING store_id, id",
                    ([rows[i].store_id for i in shared], [rows[i].id for i in shared]),
                )
                claimed = {(s, e) for s, e in cur.fetchall()}
            todo = [
                i for i in order if not rows[i].shared or (rows[i].store_id, rows[i].id) in claimed
            ]
            if todo:
                # One statement for the whole batch: arrays unnested into rows, duplicates left
                # out by the key, and RETURNING says which rows are new. The arrays go in binary
                # (%b): in text, psycopg quotes each element with regular expressions, about
                # 65 µs per event body (one per quote in it), half of a sink's CPU (issue 19).
                cur = conn.execute(
                    f"INSERT INTO {SCHEMA}.events (store_id, device_id, id, day, sequence, type,"
                    " time, batch_id, received_at, body)"
                    " SELECT s, d, i, dy, q, ty, t, b, r, j::jsonb FROM unnest("
                    "  %b::text[], %b::text[], %b::text[], %b::date[], %b::bigint[], %b::text[],"
                    "  %b::timestamptz[], %b::text[], %b::float8[], %b::text[]"
                    " ) AS x(s, d, i, dy, q, ty, t, b, r, j)"
                    " ON CONFLICT DO NOTHING RETURNING store_id, device_id, id",
                    (
                        [rows[i].store_id for i in todo],
                        [rows[i].device_id for i in todo],
                        [rows[i].id for i in todo],
                        [rows[i].day for i in todo],
                        [rows[i].seq_number for i in todo],
                        [rows[i].type for i in todo],
                        [_aware(rows[i].time) for i in todo],
                        [_nul_free(rows[i].batch_id) for i in todo],
                        [rows[i].received_at for i in todo],
                        [_jsonb_safe(rows[i].body) for i in todo],
                    ),
                )
                stored = {tuple(r) for r in cur.fetchall()}
                seen: set[tuple[str, str, str]] = set()
                for i in range(len(rows)):  # in batch order, each key once
                    key = (rows[i].store_id, rows[i].device_id, rows[i].id)
                    if key in stored and key not in seen:
                        seen.add(key)
                        new.append(i)
            seqs = sorted(
                {(r.store_id, r.device_id, n) for r in rows if (n := r.seq_number) is not None}
            )
            if seqs:
                conn.execute(
                    f"INSERT INTO {SCHEMA}.sequences (store_id, device_id, sequence)"
                    " SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[])"
                    " ON CONFLICT DO NOTHING",
                    ([s for s, _, _ in seqs], [d for _, d, _ in seqs], [n for _, _, n in seqs]),
                )
            if rejects:
                with conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO {SCHEMA}.rejects (received_at, topic, batch_id, event_id,"
                        " reason, raw) VALUES (%s, %s, %s, %s, %s, %s)",
                        [
                            (x.received_at, _nul_free(x.topic), _nul_free(x.batch_id),
                             _nul_free(x.event_id), _nul_free(x.reason), _nul_free(x.raw))
                            for x in rejects
                        ],
                    )  # fmt: skip
        return new

    # ---- reading -----------------------------------------------------------------------
    def _query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self._locked_conn() as conn:
            return list(conn.execute(sql, params).fetchall())

    def count(self) -> int:
        return int(self._query(f"SELECT count(*) FROM {SCHEMA}.events")[0][0])

    def ids(self) -> set[str]:
        return {r[0] for r in self._query(f"SELECT id FROM {SCHEMA}.events")}

    def rejects(self) -> list[dict[str, Any]]:
        rows = self._query(
            f"SELECT topic, batch_id, event_id, reason FROM {SCHEMA}.rejects ORDER BY n"
        )
        return [
            dict(zip(("topic", "batch_id", "event_id", "reason"), r, strict=True)) for r in rows
        ]

    def gaps(self, max_ranges: int = 20) -> list[dict[str, Any]]:
        # One snapshot for both queries: a sink committing in between must not make a device's
        # summary and its holes disagree.
        with self._locked_conn() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            summary = conn.execute(_PG_GAP_SUMMARY_SQL).fetchall()
            holes = conn.execute(_PG_GAP_HOLES_SQL).fetchall()
        return gap_report(summary, holes, max_ranges)

    def compact_sequences(self) -> int | None:
        # DELETE ... RETURNING takes exactly the rows this transaction sees; a sink committing
        # meanwhile keeps its rows for the next round (or re-adds a sequence just folded: the gap
        # report takes overlaps). Sinks never write sequence_ranges, so only the lock's holder
        # does.
        with self._locked_conn() as conn, conn.transaction():
            row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_COMPACT_LOCK,))
            if not row.fetchone()[0]:
                return None
            points = conn.execute(
                f"DELETE FROM {SCHEMA}.sequences RETURNING store_id, device_id, sequence"
            ).fetchall()
            ranges = conn.execute(
                f"DELETE FROM {SCHEMA}.sequence_ranges RETURNING store_id, device_id, lo, hi"
            ).fetchall()
            merged = merge_runs(points, ranges)
            if merged:
                conn.execute(
                    f"INSERT INTO {SCHEMA}.sequence_ranges (store_id, device_id, lo, hi)"
                    " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[])",
                    tuple(list(col) for col in zip(*merged, strict=True)),
                )
            return len(points)

    def uplift_rows(
        self, since: str | None, until: str | None, store: str | None
    ) -> list[tuple[str, str, int, int]]:
        return [
            (c, g, int(n), int(x))
            for c, g, n, x in self._query(_PG_UPLIFT_SQL, _params(since, until, store))
        ]

    def campaign_events(
        self, since: str | None, until: str | None, store: str | None
    ) -> list[tuple[str, str, str, str, float, float, str | None]]:
        rows = self._query(_PG_CAMPAIGN_EVENTS_SQL, _params(since, until, store))
        return [
            (st, t.isoformat(), _short(ty), c, float(d or 0.0), float(a or 0.0), scr)
            for st, t, ty, c, d, a, scr in rows
        ]

    def experience_events(
        self, since: str | None, until: str | None, store: str | None
    ) -> list[ExperienceRow]:
        rows = self._query(_PG_EXPERIENCE_SQL, _experience_params(since, until, store))
        return [_experience_row(*r) for r in rows]

    def latest_heartbeats(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        rows = self._query(
            f"SELECT DISTINCT ON (store_id, device_id) store_id, device_id, time, body->'data'"
            f" FROM {SCHEMA}.events WHERE type = %s ORDER BY store_id, device_id, time DESC",
            (HEARTBEAT,),
        )
        return [
            (st, dev, t.isoformat(), d if isinstance(d, dict) else {}) for st, dev, t, d in rows
        ]

    def logs(
        self,
        store: str,
        device: str | None = None,
        since: str | None = None,
        after: tuple[float, str] | None = None,
        limit: int = 500,
    ) -> list[LogRow]:
        params = _logs_params(store, device, since, after, limit)
        sql = _PG_LOGS_SQL + _logs_order(after, "%(limit)s")
        out = [
            LogRow(float(ra), i, st, dev, t.isoformat(), d if isinstance(d, dict) else {})
            for ra, i, st, dev, t, d in self._query(sql, params)
        ]
        return out if after else out[::-1]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


_PG_LOGS_SQL = f"""
SELECT received_at, id, store_id, device_id, time, body->'data' FROM {SCHEMA}.events
WHERE type = %(type)s AND store_id = %(store)s
  AND (%(device)s::text IS NULL OR device_id = %(device)s::text)
  AND (%(since)s::timestamptz IS NULL OR time >= %(since)s::timestamptz)
  AND (%(ra)s::float8 IS NULL OR received_at > %(ra)s::float8
       OR (received_at = %(ra)s::float8 AND id > %(rid)s::text))
"""


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


# The same questions as the SQLite ones, over jsonb; timestamptz compares instants.
_PG_UPLIFT_SQL = f"""
WITH ev AS (
    SELECT type,
           body->'data'->>'profile_id' AS profile,
           coalesce(body->'data'->>'campaign_id', body->'data'->>'attributed_campaign_id')
               AS campaign,
           body->'data'->>'group' AS grp
    FROM {SCHEMA}.events
    WHERE type IN (%(shown)s, %(holdout)s, %(conversion)s)
      AND (%(since)s::timestamptz IS NULL OR time >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR time < %(until)s::timestamptz)
      AND (%(store)s::text IS NULL OR store_id = %(store)s::text)
),
exposed AS (
    SELECT DISTINCT campaign, profile FROM ev
    WHERE type = %(shown)s AND profile IS NOT NULL AND campaign IS NOT NULL
),
held AS (
    SELECT DISTINCT campaign, profile FROM ev
    WHERE type = %(holdout)s AND profile IS NOT NULL AND campaign IS NOT NULL
    EXCEPT SELECT campaign, profile FROM exposed
),
converted AS (
    SELECT DISTINCT campaign, profile FROM ev
    WHERE type = %(conversion)s AND profile IS NOT NULL AND campaign IS NOT NULL
      AND grp IS NOT NULL
),
members AS (
    SELECT campaign, profile, 'exposed' AS grp FROM exposed
    UNION ALL
    SELECT campaign, profile, 'holdout' AS grp FROM held
)
SELECT m.campaign, m.grp, count(*), count(c.profile)
FROM members AS m
LEFT JOIN converted AS c ON c.campaign = m.campaign AND c.profile = m.profile
GROUP BY m.campaign, m.grp
"""

_PG_EXPERIENCE_SQL = f"""
SELECT store_id, device_id, time, type,
       body->'data'->>'dwell_s', body->'data'->>'attention_s',
       body->'data'->>'survey', body->'data'->>'score',
       body->'data'->'kpis'->>'day', body->'data'->'kpis'->>'time_to_value_p50_s',
       body->'data'->>'screen_id'
FROM {SCHEMA}.events
WHERE type IN (%(track)s, %(survey)s, %(heartbeat)s)
  AND (%(since)s::timestamptz IS NULL OR time >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR time < %(until)s::timestamptz)
  AND (%(store)s::text IS NULL OR store_id = %(store)s::text)
ORDER BY time
"""

_PG_CAMPAIGN_EVENTS_SQL = f"""
SELECT store_id, time, type, campaign,
       (body->'data'->>'duration_s')::float8, (body->'data'->>'amount')::float8,
       body->'data'->>'screen_id'
FROM (
    SELECT *, coalesce(body->'data'->>'campaign_id', body->'data'->>'attributed_campaign_id')
        AS campaign
    FROM {SCHEMA}.events
    WHERE type IN (%(impression)s, %(shown)s, %(conversion)s)
      AND (%(since)s::timestamptz IS NULL OR time >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR time < %(until)s::timestamptz)
      AND (%(store)s::text IS NULL OR store_id = %(store)s::text)
) AS e
WHERE campaign IS NOT NULL
ORDER BY time
"""
