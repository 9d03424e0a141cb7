"""The CDP side of the uplink: consume event batches, store every event exactly once.

Subscribes to ``stores/+/devices/+/events`` (as the MQTT 5 shared subscription
``$share/<group>/...`` when a group is given, so several sinks split the load), QoS 1, with a
persistent session on SQLite (on PostgreSQL a sink is a stateless worker, see ``CdpSink``). Each batch (see ``sync.uplink`` for the wire format) is decoded (zlib or plain), every
event is validated with ``parse_event`` and checked against the topic (a device may only speak
for its own store and device), and written to the CDP store (``central.cdp_store``: a SQLite
file, or a PostgreSQL schema that any number of sinks share) unique on (store, device, event id),
receipts' conversions once per store: duplicates die at the key, which turns the uplink's
at-least-once into exactly-once here.

The PUBACK is sent manually *after* the store's commit, so a sink crash before the commit makes
the broker redeliver instead of losing the batch. Invalid events and undecodable batches are
counted and kept in ``rejects`` with the reason, then acknowledged (a poison message must not be
redelivered forever).

After the commit the sink also confirms the batch end to end on
``stores/<store>/devices/<device>/delivered`` (QoS 1): every event it has dealt with (stored,
duplicate or rejected), as ranges of the box's sequences and ids of events without one. Only that confirmation lets the uplink delete its rows, because a
broker PUBACK does not survive the broker being killed before it forwards the message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from central.cdp_store import (
    CONVERSION,
    CdpStore,
    EventRow,
    ExperienceRow,
    RejectRow,
    SqliteStore,
    open_store,
    redact,
)
from contracts import topics
from contracts.batch import ENCODING_IDENTITY, ENCODING_ZLIB, encode_confirmation, seq_ranges
from contracts.events import EventError, parse_event, receipt_event_id, source_for
from contracts.mqtt import BrokerConfig, make_client, start_subscriber
from contracts.payload import PayloadError, loads
from contracts.uplift import Uplift, uplift

log = logging.getLogger(__name__)

MAX_DECODED_BYTES = 32 * 1024 * 1024  # a zlib bomb stops here
MAX_REJECT_RAW = 4096  # keep a prefix of the offending input, enough to debug
# How often a sink folds the received sequences into ranges (CdpStore.compact_sequences): the
# table then holds at most this long's sequences plus a row per run, instead of one per event
# for ever.
COMPACT_EVERY_S = 300.0
# A sink of its own store (SQLite) keeps its broker session through restarts and outages.
SESSION_EXPIRY_S = 7 * 24 * 3600


# One encoder for every event body: json.dumps with arguments builds a new one per call.
_BODY_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


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


# What a sink confirms to the box after the commit: (batch id, ids dealt with that carry no
# sequence, sequences dealt with).
Confirmation = tuple[str | None, list[str], list[int]]
# A batch as it arrived: (topic, payload) or (topic, payload, MQTT 5 properties).
Incoming = tuple[str, bytes] | tuple[str, bytes, Properties | None]


@dataclass
class ReadBatch:
    """One batch decoded and validated, ready for the store: its valid events as rows, what
    was refused as rejects, and what to confirm once those are committed."""

    topic: str
    ids: tuple[str, str] | None  # (store, device) of the topic; None for a foreign topic
    batch_id: str | None
    received: int  # events in the batch, valid or not (0 when it could not be decoded)
    rows: list[EventRow]
    rejects: list[RejectRow]
    handled: list[str]  # ids dealt with that carry no sequence
    handled_seqs: list[int]  # sequences dealt with

    def confirmation(self) -> Confirmation | None:
        """None for a batch of a foreign topic or with nothing in it to confirm."""
        if self.ids is None or (
            not self.handled and not self.handled_seqs and self.batch_id is None
        ):
            return None
        return self.batch_id, self.handled, self.handled_seqs


def _read_batch(topic: str, payload: bytes, properties: Properties | None, now: float) -> ReadBatch:
    """Decode one batch and validate each event against the model and the topic (a device may
    only speak for its own store and device). Never raises: what cannot be read is a reject."""
    ids = _topic_ids(topic)
    rows: list[EventRow] = []
    rejects: list[RejectRow] = []
    batch_id: str | None = None
    try:
        if ids is None:
            raise BatchError(f"unexpected topic {topic!r}")
        doc = decode_batch(payload, properties)
        batch_id = _text(str(doc["batch_id"])) if doc.get("batch_id") is not None else None
        items = doc["events"]
    except BatchError as exc:
        rejects.append(RejectRow(now, topic, None, None, str(exc), _prefix(payload)))
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
            body = _BODY_JSON.encode(item)
            if _text(body) != body:
                # JSON's "\ud800" escape decodes to text no database can store: stored, it
                # would fail the whole batch on every delivery, for ever.
                raise EventError("text that is not Unicode (a lone surrogate escape)")
        except Exception as exc:  # EventError, or anything odd the validator trips on
            eid = item.get("id") if isinstance(item, dict) else None
            if isinstance(eid, str):
                dealt_with(item, eid)
            reason = _text(str(exc) if isinstance(exc, EventError) else f"invalid: {exc!r}")
            rejects.append(
                RejectRow(now, topic, batch_id, _text(str(eid)), reason[:500], _prefix(item))
            )
            continue
        extra = ev.model_extra or {}
        assert ids is not None
        dealt_with(item, ev.id)
        seq = extra.get("sequence")
        rows.append(
            EventRow(
                id=ev.id,
                store_id=ids[0],
                device_id=ids[1],
                sequence=None if seq is None else str(seq),
                type=ev.type,
                time=ev.time,
                batch_id=batch_id,
                received_at=now,
                body=body,
                shared=_receipt_derived(ev.type, item, ids[0], ev.id),
            )
        )
    return ReadBatch(topic, ids, batch_id, len(items), rows, rejects, handled, handled_seqs)


class CdpIngest:
    """What every sink does whatever it reads from: decode, validate and store batches in a
    ``CdpStore``, count, and answer the queries. ``CdpSink`` feeds it from an MQTT subscription,
    ``central.cdp_jetstream.JetStreamSink`` from a JetStream consumer."""

    def __init__(
        self,
        db_path: Path | str | CdpStore,
        *,
        on_stored: Callable[[list[str]], None] | None = None,
    ) -> None:
        # Called with the JSON of events stored for the first time (e.g. to stream them on).
        self.on_stored = on_stored
        # A path or DSN, or a store opened already (``edge-ops uplift`` checks it first).
        self.store: CdpStore = open_store(db_path) if isinstance(db_path, str | Path) else db_path
        if isinstance(self.store, SqliteStore):
            self.db_path: Path | None = self.store.path
            self.target = str(self.store.path)
        else:
            self.db_path = None
            self.target = redact(getattr(self.store, "dsn", self.store.kind))
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stats = SinkStats()
        # This sink's view: what its own file held at start plus what it stored since. A shared
        # store's total is every sink's (and a count(*) over a fleet's events is no start-up
        # cost to pay): there it is what this sink stored.
        self._count = 0 if self.store.shared else self.store.count()
        self._connected = threading.Event()
        self.compact_every_s = COMPACT_EVERY_S
        self._next_compact = time.monotonic() + self.compact_every_s

    @property
    def _db(self) -> sqlite3.Connection:
        """The SQLite connection, for tests and tools that read the embedded store directly."""
        if not isinstance(self.store, SqliteStore):
            raise AttributeError("not a SQLite store")
        return self.store.conn

    # ---- queries -----------------------------------------------------------------------
    def count(self) -> int:
        with self._lock:
            return self._count

    def ids(self) -> set[str]:
        return self.store.ids()

    def rejects(self) -> list[dict[str, Any]]:
        return self.store.rejects()

    def gaps(self, max_ranges: int = 20) -> list[dict[str, Any]]:
        """Per device: first and last sequence received, how many, and the missing ranges (an
        event the CDP never got, or one the box dropped to respect its disk cap: the box's
        heartbeats count those under ``dropped``). A sequence whose event was a duplicate of
        another box's (one receipt, one conversion) counts as received. Over the whole store:
        with PostgreSQL, every sink's batches."""
        return self.store.gaps(max_ranges)

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
        rows = self.store.uplift_rows(_utc_iso(since), _utc_iso(until), store)
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
    ) -> list[tuple[str, str, str, str, float, float, str | None]]:
        """Impressions, offers shown and attributed conversions with their campaign, for the
        console's KPIs per day: ``(store, event time, short type, campaign, seconds on screen,
        amount, screen)``; the day is cut in the reader's time zone. An impression's time is its
        end, so it played from ``time - seconds`` to ``time``."""
        return self.store.campaign_events(_utc_iso(since), _utc_iso(until), store)

    def experience_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        store: str | None = None,
    ) -> list[ExperienceRow]:
        """Camera tracks, survey answers and heartbeats' journey KPIs, for the console's
        audience and experience KPIs per store and day."""
        return self.store.experience_events(_utc_iso(since), _utc_iso(until), store)

    def latest_heartbeats(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Each device's latest heartbeat event stored here: ``(store, device, time, data)``.
        The fleet as the CDP last heard it, for boxes whose retained status is out of reach."""
        return self.store.latest_heartbeats()

    def _maybe_compact(self) -> None:
        """Compact the store's sequences when it is time; a failure waits for the next round
        (the batch itself is committed already)."""
        if time.monotonic() < self._next_compact:
            return
        self._next_compact = time.monotonic() + self.compact_every_s
        try:
            folded = self.store.compact_sequences()
        except Exception as exc:
            log.warning("cdp-sink: compacting the sequences failed: %r", exc)
            return
        if folded:
            log.info("cdp-sink: %d sequences folded into ranges", folded)

    # ---- the work ----------------------------------------------------------------------
    def handle_batch(
        self, topic: str, payload: bytes, properties: Properties | None = None
    ) -> Confirmation | None:
        """Decode, validate and store one batch in one transaction. Raises only on DB errors.

        Returns what to confirm to the device, ``(batch_id, ids dealt with that carry no
        sequence, sequences dealt with)``, or None when the batch could not be read at all."""
        return self.handle_batches([(topic, payload, properties)])[0]

    def handle_batches(self, batches: Sequence[Incoming]) -> list[Confirmation | None]:
        """``handle_batch`` for several batches at once, ``(topic, payload[, properties])``
        each, stored in ONE transaction: what each batch's transaction, statements and round
        trips cost is paid once for them all. Each batch is read and validated on its own, so
        one that cannot be read is rejected alone, as it would be by itself. Raises only on DB
        errors, and then stores none of them. Returns each batch's confirmation, in order."""
        now = time.time()
        read = [_read_batch(b[0], b[1], b[2] if len(b) > 2 else None, now) for b in batches]
        rows = [r for b in read for r in b.rows]
        rejects = [x for b in read for x in b.rejects]
        new = self.store.write(rows, rejects)  # committed when it returns
        new_bodies = [rows[i].body for i in new]
        with self._changed:
            s = self._stats
            s.batches += len(read)
            s.received += sum(b.received for b in read)
            s.stored += len(new)
            s.duplicates += len(rows) - len(new)
            s.rejected += len(rejects)
            self._count += len(new)
            self._changed.notify_all()
        for b in read:
            if b.rejects:
                log.warning(
                    "cdp-sink: %d rejected from %s: %s",
                    len(b.rejects),
                    b.topic,
                    b.rejects[0].reason,
                )
        if new_bodies and self.on_stored is not None:
            self.on_stored(new_bodies)  # after the commit: each event once, in batch order
        self._maybe_compact()
        return [b.confirmation() for b in read]


class CdpSink(CdpIngest):
    """One consumer of the stores' event batches, writing into a ``CdpStore``.

    ``db`` is a SQLite path (one sink per file) or a ``postgresql://`` DSN: then any number of
    sinks share the schema, each is a stateless worker, and dedup and the gap report are the
    whole fleet's, whichever sink got which batch.
    """

    def __init__(
        self,
        broker: BrokerConfig,
        db_path: Path | str | CdpStore,
        group: str | None = "cdp",
        *,
        client_id: str | None = None,
        on_stored: Callable[[list[str]], None] | None = None,
        session_expiry_s: int | None = None,
    ) -> None:
        super().__init__(db_path, on_stored=on_stored)
        self.broker = broker
        self.group = group
        if isinstance(self.store, SqliteStore):
            # Stable for a given database, so a restarted sink resumes its persistent session.
            digest = hashlib.sha1(str(self.store.path.resolve()).encode()).hexdigest()[:12]
            default_id = f"cdp-sink-{digest}"
            default_expiry = SESSION_EXPIRY_S
        else:
            # Sinks sharing a store are interchangeable workers: an id of this process and no
            # session after it is gone, so a killed or stopped sink leaves the share group at
            # once instead of holding a share of the batches for days (issue 19: 115 s and 158
            # re-sends after one sink stopped). What it had not confirmed, the boxes send again.
            default_id = f"cdp-sink-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            default_expiry = 0
        self.client_id = client_id or default_id
        if session_expiry_s is None:
            session_expiry_s = SESSION_EXPIRY_S if client_id else default_expiry
        self.session_expiry_s = session_expiry_s
        self.topic = topics.shared(group, topics.ALL_EVENTS) if group else topics.ALL_EVENTS
        self._client: mqtt.Client | None = None
        self._subscribed = threading.Event()

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self, wait_s: float = 5.0) -> bool:
        """Connect and subscribe; True once the subscription is acknowledged within ``wait_s``."""
        client = make_client(self.client_id, self.broker, max_inflight=100)
        client.manual_ack_set(True)  # PUBACK after our commit, not before
        self._client = client
        return start_subscriber(
            client, self.broker, self, self._subscribed, wait_s,
            session_expiry_s=self.session_expiry_s,
        )  # fmt: skip

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
        self.store.close()

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


def _receipt_derived(event_type: str, item: dict[str, Any], store: str, event_id: str) -> bool:
    """Whether an event's id is a receipt's own (``receipt_event_id`` of its store, till and
    receipt): shared on purpose by every box that heard the till, so stored once per store. The
    derivation is checked, not assumed from the type: any other id stays unique per device."""
    if event_type != CONVERSION:
        return False
    data = item.get("data")
    if not isinstance(data, dict):
        return False
    till, receipt = data.get("till"), data.get("receipt_id")
    if not isinstance(till, str) or not isinstance(receipt, str):
        return False
    return event_id == receipt_event_id(store, till, receipt)


def _sequence_of(item: Any) -> int | None:
    """The box's sequence of an event (a zero-padded decimal string), if it carries a valid one."""
    seq = item.get("sequence") if isinstance(item, dict) else None
    if isinstance(seq, str) and seq.isdigit() and len(seq) <= 20:
        return int(seq)
    return None


def _text(value: str) -> str:
    """``value`` as text a database stores: lone surrogates (from JSON's escapes) spelled out."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _prefix(value: Any) -> str:
    if isinstance(value, bytes):
        text = value[:MAX_REJECT_RAW].decode("utf-8", errors="replace")
    elif isinstance(value, str):
        text = _text(value)
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
