"""The CDP side of the uplink: consume event batches, store every event exactly once.

Subscribes to ``stores/+/devices/+/events`` (as the MQTT 5 shared subscription
``$share/<group>/...`` when a group is given, so several sinks split the load), QoS 1, persistent
session. Each batch (see ``sync.uplink`` for the wire format) is decoded (zlib or plain), every
event is validated with ``parse_event`` and checked against the topic (a device may only speak
for its own store and device), and inserted with the event id as PRIMARY KEY: ``INSERT OR
IGNORE`` turns the uplink's at-least-once into exactly-once here.

The PUBACK is sent manually *after* the SQLite commit, so a sink crash before the commit makes
the broker redeliver instead of losing the batch. Invalid events and undecodable batches are
counted and kept in ``rejects`` with the reason, then acknowledged (a poison message must not be
redelivered forever).

After the commit the sink also confirms the batch end to end: ``{"batch_id", "ids"}`` on
``stores/<store>/devices/<device>/delivered`` (QoS 1), listing every event id it has dealt with
(stored, duplicate or rejected). Only that confirmation lets the uplink delete its rows, because a
broker PUBACK does not survive the broker being killed before it forwards the message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contracts import topics
from contracts.batch import ENCODING_IDENTITY, ENCODING_ZLIB, encode_confirmation, seq_ranges
from contracts.events import TYPE_PREFIX, EventError, parse_event, source_for
from contracts.mqtt import BrokerConfig, make_client, start_subscriber
from contracts.payload import PayloadError, loads
from contracts.uplift import Uplift, uplift

log = logging.getLogger(__name__)

MAX_DECODED_BYTES = 32 * 1024 * 1024  # a zlib bomb stops here
MAX_REJECT_RAW = 4096  # keep a prefix of the offending input, enough to debug

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id          TEXT PRIMARY KEY,     -- CloudEvent id: duplicates die here
    store_id    TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    sequence    TEXT,
    type        TEXT NOT NULL,
    time        TEXT NOT NULL,
    batch_id    TEXT,
    received_at REAL NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_device_seq ON events (store_id, device_id, sequence);
-- Every (device, sequence) received, stored or a duplicate: a receipt's conversion reported by
-- two boxes is one event (same id), yet both boxes' sequences arrived and are no gap.
CREATE TABLE IF NOT EXISTS sequences (
    store_id    TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    sequence    INTEGER NOT NULL,
    PRIMARY KEY (store_id, device_id, sequence)
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


class BatchError(ValueError):
    """A batch that cannot be decoded at all."""


def _encoding_of(properties: Properties | None) -> str | None:
    for key, value in getattr(properties, "UserProperty", None) or []:
        if key == "encoding":
            return value
    return None


def decode_batch(payload: bytes, properties: Properties | None = None) -> dict[str, Any]:
    """Decode one batch; the encoding comes from the user property, else it is sniffed."""
    encoding = _encoding_of(properties)
    if encoding is None:  # MQTT 3.1.1 or a foreign publisher: JSON starts with "{", zlib never
        encoding = ENCODING_IDENTITY if payload.lstrip()[:1] == b"{" else ENCODING_ZLIB
    if encoding == ENCODING_ZLIB:
        try:
            d = zlib.decompressobj()
            raw = d.decompress(payload, MAX_DECODED_BYTES)
            if d.unconsumed_tail:
                raise BatchError(f"decompressed batch over {MAX_DECODED_BYTES} bytes")
        except zlib.error as exc:
            raise BatchError(f"bad zlib data: {exc}") from None
    elif encoding == ENCODING_IDENTITY:
        raw = payload
    else:
        raise BatchError(f"unknown encoding {encoding!r}")
    try:
        # No depth scan: a batch is big and every event in it is validated on its own next.
        doc = loads(raw, max_bytes=MAX_DECODED_BYTES, max_depth=None, what="batch")
    except PayloadError as exc:
        raise BatchError(str(exc)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        raise BatchError("not a batch: expected an object with an 'events' list")
    return doc


def _topic_ids(topic: str) -> tuple[str, str] | None:
    parts = topic.split("/")
    if len(parts) == 5 and parts[0] == "stores" and parts[2] == "devices" and parts[4] == "events":
        return parts[1], parts[3]
    return None


@dataclass
class SinkStats:
    batches: int = 0
    received: int = 0  # events seen in decodable batches: valid, duplicate or invalid
    stored: int = 0  # new events inserted
    duplicates: int = 0
    rejected: int = 0  # events (or whole batches) refused, see the rejects table


class CdpSink:
    def __init__(
        self,
        broker: BrokerConfig,
        db_path: Path | str,
        group: str | None = "cdp",
        *,
        client_id: str | None = None,
        on_stored: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.broker = broker
        # Called with the JSON of events stored for the first time (e.g. to stream them on).
        self.on_stored = on_stored
        self.db_path = Path(db_path)
        self.group = group
        # Stable for a given database, so a restarted sink resumes its persistent session.
        digest = hashlib.sha1(str(self.db_path.resolve()).encode()).hexdigest()[:12]
        self.client_id = client_id or f"cdp-sink-{digest}"
        self.topic = topics.shared(group, topics.ALL_EVENTS) if group else topics.ALL_EVENTS
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.db_path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the PUBACK goes out after the commit, so the commit must really be on disk.
        self._db.execute("PRAGMA synchronous=FULL")
        fresh = not self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'sequences'"
        ).fetchone()
        self._db.executescript(_SCHEMA)
        if fresh:
            # A database from before the sequences table: what it stored was received.
            self._db.execute(
                "INSERT OR IGNORE INTO sequences SELECT store_id, device_id,"
                " CAST(sequence AS INTEGER) FROM events WHERE sequence IS NOT NULL"
            )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stats = SinkStats()
        self._count = int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self, wait_s: float = 5.0) -> bool:
        """Connect and subscribe; True once the subscription is acknowledged within ``wait_s``."""
        client = make_client(self.client_id, self.broker, max_inflight=100)
        client.manual_ack_set(True)  # PUBACK after our commit, not before
        self._client = client
        return start_subscriber(client, self.broker, self, self._subscribed, wait_s)

    def stop(self, *, end_session: bool = False) -> None:
        """Disconnect. ``end_session`` also drops the broker-side session (and its queue)."""
        if self._client is not None:
            self._connected.clear()  # a deliberate stop is not worth a warning
            props = None
            if end_session:
                props = Properties(PacketTypes.DISCONNECT)
                props.SessionExpiryInterval = 0
            self._client.disconnect(properties=props)
            self._client.loop_stop()
            self._client = None
        with self._lock:
            self._db.close()

    # ---- queries -----------------------------------------------------------------------
    def count(self) -> int:
        with self._lock:
            return self._count

    def ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM events")}

    def rejects(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute(
                "SELECT topic, batch_id, event_id, reason FROM rejects ORDER BY n"
            )
            return [
                dict(zip(("topic", "batch_id", "event_id", "reason"), r, strict=True)) for r in cur
            ]

    def gaps(self, max_ranges: int = 20) -> list[dict[str, Any]]:
        """Per device: first and last sequence received, how many, and the missing ranges (an
        event the CDP never got, or one the box dropped to respect its disk cap: the box's
        heartbeats count those under ``dropped``). A sequence whose event was a duplicate of
        another box's (one receipt, one conversion) counts as received."""
        with self._lock:
            summary = self._db.execute(
                "SELECT store_id, device_id, min(sequence), max(sequence), count(*)"
                " FROM sequences GROUP BY store_id, device_id ORDER BY store_id, device_id"
            ).fetchall()
            holes = self._db.execute(
                "SELECT store_id, device_id, prev + 1, seq - 1 FROM ("
                "  SELECT store_id, device_id, sequence AS seq,"
                "    lag(sequence) OVER (PARTITION BY store_id, device_id ORDER BY sequence)"
                "    AS prev"
                "  FROM sequences"
                ") WHERE seq - prev > 1 ORDER BY store_id, device_id, seq"
            ).fetchall()
        ranges: dict[tuple[str, str], list[list[int]]] = {}
        for store, device, a, b in holes:
            ranges.setdefault((store, device), []).append([a, b])
        out = []
        for store, device, first, last, n in summary:
            rs = ranges.get((store, device), [])
            if first > 1:
                rs = [[1, first - 1], *rs]
            out.append(
                {
                    "store": store,
                    "device": device,
                    "first": first,
                    "last": last,
                    "stored": n,
                    "missing": sum(b - a + 1 for a, b in rs),
                    "ranges": rs[:max_ranges],
                }
            )
        return out

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **asdict(self._stats),
                "count": self._count,
                "connected": self._connected.is_set(),
            }

    def wait_for(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` distinct events are stored."""
        with self._changed:
            return self._changed.wait_for(lambda: self._count >= n, timeout)

    def wait_until(self, predicate: Any, timeout: float) -> bool:
        """Block until ``predicate(stats_dict)`` holds (re-checked after every batch)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: predicate({**asdict(self._stats), "count": self._count}), timeout
            )

    def uplift(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        store: str | None = None,
    ) -> dict[str, Uplift]:
        """Per campaign, exposed against held-out shoppers from the events stored here, with
        event times in ``[since, until)`` (naive times are UTC) and of one store or all.

        Exposed: shoppers an offer of the campaign was shown to (``offer.shown``); held out:
        shoppers in its control group (``holdout.assigned``); a shopper in both (the campaign's
        holdout share changed) saw it, so counts as exposed. Converted: shoppers with a
        conversion attributed to the campaign. Only shoppers with a profile id count, that is
        those who consented to analytics, on both sides of the comparison alike; shoppers and
        converters are counted once each however often they came or bought."""
        params = {
            "shown": TYPE_PREFIX + "offer.shown.v1",
            "holdout": TYPE_PREFIX + "holdout.assigned.v1",
            "conversion": TYPE_PREFIX + "conversion.v1",
            "since": _utc_iso(since),
            "until": _utc_iso(until),
            "store": store,
        }
        with self._lock:
            rows = self._db.execute(_UPLIFT_SQL, params).fetchall()
        counts: dict[str, dict[str, tuple[int, int]]] = {}
        for campaign, group, shoppers, converted in rows:
            counts.setdefault(campaign, {})[group] = (int(shoppers), int(converted))
        out = {}
        for campaign, by_group in sorted(counts.items()):
            n_e, x_e = by_group.get("exposed", (0, 0))
            n_h, x_h = by_group.get("holdout", (0, 0))
            out[campaign] = uplift(x_e, n_e, x_h, n_h)
        return out

    def campaign_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        store: str | None = None,
    ) -> list[tuple[str, str, str, str, float, float]]:
        """Impressions, offers shown and attributed conversions with their campaign, for the
        console's KPIs per day: ``(store, event time, short type, campaign, seconds on screen,
        amount)``; the day is cut in the reader's time zone."""
        params = {
            "impression": TYPE_PREFIX + "content.impression.v1",
            "shown": TYPE_PREFIX + "offer.shown.v1",
            "conversion": TYPE_PREFIX + "conversion.v1",
            "since": _utc_iso(since),
            "until": _utc_iso(until),
            "store": store,
        }
        with self._lock:
            rows = self._db.execute(_CAMPAIGN_EVENTS_SQL, params).fetchall()
        short = {params["impression"]: "impression", params["shown"]: "shown"}
        return [
            (st, t, short.get(ty, "conversion"), c, float(d or 0.0), float(a or 0.0))
            for st, t, ty, c, d, a in rows
        ]

    def latest_heartbeats(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Each device's latest heartbeat event stored here: ``(store, device, time, data)``.
        The fleet as the CDP last heard it, for boxes whose retained status is out of reach."""
        with self._lock:
            rows = self._db.execute(
                "SELECT store_id, device_id, time, json_extract(body, '$.data') FROM ("
                "  SELECT *, row_number() OVER (PARTITION BY store_id, device_id"
                "    ORDER BY julianday(time) DESC) AS k FROM events WHERE type = ?"
                ") WHERE k = 1 ORDER BY store_id, device_id",
                (TYPE_PREFIX + "device.heartbeat.v1",),
            ).fetchall()
        out = []
        for st, dev, t, data in rows:
            try:
                doc = json.loads(data) if data else {}
            except ValueError:
                doc = {}
            out.append((st, dev, t, doc if isinstance(doc, dict) else {}))
        return out

    # ---- paho callbacks (paho's thread): never raise -----------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("cdp-sink: connect refused: %s", reason_code)
            return
        if not self._connected.is_set():
            log.info("cdp-sink: connected, subscribing to %s", self.topic)
        self._connected.set()
        client.subscribe(self.topic, qos=1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set():
            # Our own disconnect() is routine; anything else is worth a warning.
            level = logging.INFO if reason_code == 0 else logging.WARNING
            log.log(level, "cdp-sink: disconnected (%s)", reason_code)
        self._connected.clear()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("cdp-sink: subscription refused: %s", reason_codes)
            return
        self._subscribed.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            done = self.handle_batch(
                msg.topic, bytes(msg.payload), getattr(msg, "properties", None)
            )
        except Exception as exc:  # DB trouble: do not ack; the broker redelivers later
            log.error("cdp-sink: could not store batch from %s: %r", msg.topic, exc)
            return
        if done is not None:
            batch_id, ids, seqs = done
            store_device = _topic_ids(msg.topic)
            assert store_device is not None  # handle_batch returns None for foreign topics
            client.publish(
                topics.delivered(*store_device),
                encode_confirmation(batch_id, ids, time.time(), seq_ranges(seqs)),
                qos=1,
            )
        if msg.qos > 0:
            client.ack(msg.mid, msg.qos)

    # ---- the work ----------------------------------------------------------------------
    def handle_batch(
        self, topic: str, payload: bytes, properties: Properties | None = None
    ) -> tuple[str | None, list[str], list[int]] | None:
        """Decode, validate and store one batch in one transaction. Raises only on DB errors.

        Returns what to confirm to the device, ``(batch_id, ids dealt with that carry no
        sequence, sequences dealt with)``, or None when the batch could not be read at all."""
        now = time.time()
        ids = _topic_ids(topic)
        rows: list[tuple[Any, ...]] = []
        rejects: list[tuple[Any, ...]] = []
        batch_id: str | None = None
        try:
            if ids is None:
                raise BatchError(f"unexpected topic {topic!r}")
            doc = decode_batch(payload, properties)
            batch_id = str(doc.get("batch_id")) if doc.get("batch_id") is not None else None
            items = doc["events"]
        except BatchError as exc:
            rejects.append((now, topic, None, None, str(exc), _prefix(payload)))
            items = []
        handled: list[str] = []
        handled_seqs: list[int] = []

        def dealt_with(item: Any, eid: str) -> None:
            # By its sequence when the box numbered it (a range confirms many), else by id.
            seq = _sequence_of(item)
            if seq is None:
                handled.append(eid)
            else:
                handled_seqs.append(seq)

        expected_source = source_for(*ids) if ids else None
        for item in items:
            try:
                if not isinstance(item, dict):
                    raise EventError(f"event is a {type(item).__name__}, not an object")
                ev = parse_event(item)
                if ev.source != expected_source:
                    raise EventError(f"source {ev.source!r} does not match topic {topic!r}")
            except Exception as exc:  # EventError, or anything odd the validator trips on
                eid = item.get("id") if isinstance(item, dict) else None
                if isinstance(eid, str):
                    dealt_with(item, eid)
                reason = str(exc) if isinstance(exc, EventError) else f"invalid: {exc!r}"
                rejects.append((now, topic, batch_id, str(eid), reason[:500], _prefix(item)))
                continue
            extra = ev.model_extra or {}
            body = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
            assert ids is not None
            dealt_with(item, ev.id)
            seq = extra.get("sequence")
            rows.append(
                (
                    ev.id,
                    ids[0],
                    ids[1],
                    None if seq is None else str(seq),
                    ev.type,
                    ev.time.isoformat(),
                    batch_id,
                    now,
                    body,
                )
            )
        with self._changed:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                stored = 0
                new_bodies: list[str] = []
                for row in rows:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO events (id, store_id, device_id, sequence, type,"
                        " time, batch_id, received_at, body) VALUES (?,?,?,?,?,?,?,?,?)",
                        row,
                    )
                    stored += cur.rowcount
                    if cur.rowcount:
                        new_bodies.append(row[-1])
                    if row[3] is not None and row[3].isdigit():
                        self._db.execute(
                            "INSERT OR IGNORE INTO sequences VALUES (?, ?, ?)",
                            (row[1], row[2], int(row[3])),
                        )
                self._db.executemany(
                    "INSERT INTO rejects (received_at, topic, batch_id, event_id, reason, raw)"
                    " VALUES (?,?,?,?,?,?)",
                    rejects,
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            s = self._stats
            s.batches += 1
            s.received += len(items)
            s.stored += stored
            s.duplicates += len(rows) - stored
            s.rejected += len(rejects)
            self._count += stored
            self._changed.notify_all()
        if rejects:
            log.warning("cdp-sink: %d rejected from %s: %s", len(rejects), topic, rejects[0][4])
        if new_bodies and self.on_stored is not None:
            self.on_stored(new_bodies)  # after the commit: each event once, in batch order
        if ids is None or (not handled and not handled_seqs and batch_id is None):
            return None
        return batch_id, handled, handled_seqs


def _sequence_of(item: Any) -> int | None:
    """The box's sequence of an event (a zero-padded decimal string), if it carries a valid one."""
    seq = item.get("sequence") if isinstance(item, dict) else None
    if isinstance(seq, str) and seq.isdigit() and len(seq) <= 20:
        return int(seq)
    return None


def _prefix(value: Any) -> str:
    if isinstance(value, bytes):
        text = value[:MAX_REJECT_RAW].decode("utf-8", errors="replace")
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            text = repr(value)
    return text[:MAX_REJECT_RAW]


def _utc_iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).isoformat()


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
       json_extract(body, '$.data.amount')
FROM events
WHERE type IN (:impression, :shown, :conversion)
  AND campaign IS NOT NULL
  AND (:since IS NULL OR julianday(time) >= julianday(:since))
  AND (:until IS NULL OR julianday(time) < julianday(:until))
  AND (:store IS NULL OR store_id = :store)
ORDER BY julianday(time)
"""
