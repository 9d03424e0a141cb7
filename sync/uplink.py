"""The uplink: drains the durable outbox to the central broker in batches, at least once.

Wire format, one MQTT 5 PUBLISH per batch on ``stores/<store>/devices/<device>/events``, QoS 1::

    {"batch_id": "<uuid7>", "store": "<store>", "device": "<device>",
     "events": [<CloudEvent JSON with "sequence">, ...]}

Encoding: UTF-8 JSON, or zlib-compressed JSON when the batch is larger than ``compress_over``
bytes. The MQTT 5 properties say which: ``ContentType = "application/json"`` always, and a user
property ``("encoding", "identity" | "zlib")``. Over MQTT 3.1.1 there are no properties; the sink
then sniffs (JSON starts with ``{``, zlib never does).

Delivery rules:
- Rows are deleted from the outbox only when the CDP sink confirms it stored them: after a commit
  the sink publishes ``{"batch_id", "ids": [...]}`` on ``stores/<store>/devices/<device>/delivered``
  (QoS 1), to which the uplink's persistent session subscribes. A broker PUBACK alone is not
  enough: mosquitto PUBACKs before it has saved or forwarded the message, so a broker killed at
  the wrong moment loses batches it has acknowledged (seen in CI). A PUBACKed batch the CDP has
  not confirmed in time (or soon after a reconnect) is sent again; the sink dedups by event id.
  "In time" is TCP's retransmission timer on the confirmations' round trip (``ConfirmTimer``):
  at least ``confirm_timeout_s``, doubling while batches go unconfirmed, so a slow central tier
  is not buried under every box's re-sends. ``confirm = "broker"`` restores PUBACK-only deletion.
- A PUBACK (``on_publish`` with mid tracking) frees the batch's in-flight slot; at most
  ``max_unconfirmed_batches`` batches wait for the CDP, so duplicates stay within that window.
- At most ``max_inflight_batches`` batches are in flight, so memory stays bounded however large
  the backlog is.
- On disconnect nothing is deleted. paho keeps the in-flight batches and re-sends them (DUP) after
  reconnecting; anything else is still in the outbox. A crash loses paho's memory but not the
  outbox: the next uplink re-sends from the outbox. Duplicates at the broker are expected; the
  CDP sink dedups by event id.
- A refused PUBACK (e.g. not authorised) puts the batch back for a retry after exponential
  backoff with jitter.
- A PUBACK saying "No matching subscribers" (MQTT 5 reason 0x10) is, by default, treated like a
  refusal too: no CDP consumer and no persistent consumer session exists, so deleting the rows
  would lose the events for good. ``hold_without_subscribers=False`` turns this off (e.g. behind
  a bridge that always answers 0x10).

Threading: paho's network loop (``loop_start``) only pushes callbacks into a queue; one uplink
thread owns all state (in-flight map, retries, cursor), so no locks are held across paho calls.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from contracts import topics
from contracts.backoff import Backoff, ConfirmTimer
from contracts.batch import (
    DEFAULT_COMPRESS_OVER,
    NO_MATCHING_SUBSCRIBERS,
    decode_confirmation,
    encode_batch,
    publish_properties,
)
from contracts.events import new_event_id
from contracts.mqtt import connect, make_client, network_alive
from edge_agent.config import BrokerConfig, UplinkConfig
from sync.outbox import Outbox, OutboxRow

log = logging.getLogger(__name__)

RECONNECT_CONFIRM_GRACE_S = 3.0  # after a reconnect, queued confirmations get this long


@dataclass
class ClockOffset:
    """NTP's estimate from one server timestamp per exchange: offset = t_cdp - (sent + got) / 2,
    good to half the round trip; the sample with the smallest round trip among the recent ones
    wins (queueing only ever makes a sample worse)."""

    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=32))

    def add(self, sent: float, cdp_time: float, got: float) -> None:
        if got >= sent:
            self.samples.append((got - sent, cdp_time - (sent + got) / 2))

    def estimate(self) -> tuple[float, float] | None:
        """``(offset_s, uncertainty_s)``: positive offset = this box's clock is behind."""
        if not self.samples:
            return None
        rtt, off = min(self.samples)
        return off, rtt / 2


def agent_version() -> str:
    try:
        from importlib.metadata import version

        return version("edge-agent")
    except Exception:  # not installed (running from a source tree)
        return "0.0.0"


@dataclass
class _Batch:
    batch_id: str
    rows: list[OutboxRow]
    payload: bytes
    encoding: str
    attempts: int = 0
    sent_at: float = 0.0  # wall clock of the last send, for the clock offset
    acked_at: float = 0.0  # monotonic time of the last PUBACK, for the confirmations' round trip
    # Its wait for a confirmation was cut short (a reconnect, a resync): expiring says nothing
    # about how slow the CDP is.
    cut_short: bool = False

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rows]


@dataclass
class _Stats:
    published_batches: int = 0  # PUBACKed
    published_events: int = 0  # rows deleted (confirmed by the CDP, or PUBACKed if confirm=broker)
    confirmed_batches: int = 0
    resent_unconfirmed: int = 0  # PUBACKed batches sent again because the CDP did not confirm
    bad_confirmations: int = 0
    subscribe_refusals: int = 0  # the broker refused the delivered subscription (asked again)
    publish_attempts: int = 0
    refused_batches: int = 0
    connects: int = 0
    connected: bool = False
    last_error: str | None = None


class Uplink:
    def __init__(
        self,
        outbox: Outbox,
        broker: BrokerConfig,
        store_id: str,
        device_id: str,
        cfg: UplinkConfig,
        *,
        version: str | None = None,
        client_id: str | None = None,
        max_inflight_batches: int = 4,
        compress_over: int = DEFAULT_COMPRESS_OVER,
        hold_without_subscribers: bool = True,
        config_hash: str | None = None,
    ) -> None:
        self.outbox = outbox
        self.broker = broker
        self.store_id = store_id
        self.device_id = device_id
        self.cfg = cfg
        self.version = version or agent_version()
        # Stable per device: the broker keeps our persistent session across restarts.
        self.client_id = client_id or f"edge-{store_id}-{device_id}-uplink"
        self.max_inflight_batches = max(1, max_inflight_batches)
        self.compress_over = compress_over
        self.hold_without_subscribers = hold_without_subscribers
        self.topic = topics.events(store_id, device_id)
        self.state_topic = topics.state(store_id, device_id)
        self.health_topic = topics.health(store_id, device_id)
        self.config_hash = config_hash
        self.clock = ClockOffset()
        self.delivered_topic = topics.delivered(store_id, device_id)
        self.confirm_by_cdp = cfg.confirm == "cdp"

        # Everything from other threads arrives here; only the uplink thread consumes it.
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._inflight: dict[int, _Batch | None] = {}  # mid -> batch (None = birth message)
        self._retry: list[_Batch] = []
        # PUBACKed, waiting for the CDP: batch_id -> (batch, monotonic deadline for a re-send)
        self._unconfirmed: dict[str, tuple[_Batch, float]] = {}
        # Confirmations that beat their PUBACK (different flows, no ordering between them).
        self._early: OrderedDict[str, None] = OrderedDict()
        self._cursor = 0  # highest sequence handed to a batch (in flight or waiting for retry)
        # Half to all of each step: a fleet refused together does not retry together.
        self._backoff = Backoff(0.5, 2.0, 30.0, jitter=0.5)
        self._confirm_timer = ConfirmTimer(cfg.confirm_timeout_s, cfg.confirm_timeout_max_s)
        self._subscribed_once = False  # the delivered subscription was granted before
        self._stats = _Stats()
        self._stats_lock = threading.Lock()
        self._progress = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self._was_connected: bool | None = None

    # ---- public API --------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("uplink already started")
        client = make_client(self.client_id, self.broker)
        client.will_set(self.state_topic, self._state_doc("offline"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        self.outbox.add_listener(self._on_append)
        connect(client, self.broker)
        client.loop_start()
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def flush(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty and nothing is in flight; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._progress:
            while True:
                if (
                    self.outbox.depth() == 0
                    and not self._inflight_batches()
                    and not self._unconfirmed
                ):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._progress.wait(min(left, 0.5))

    def stop(self, flush_timeout_s: float = 10.0) -> None:
        """Try to drain for up to ``flush_timeout_s``, say goodbye, and stop. Idempotent."""
        if self._thread is None or self._client is None:
            return
        if flush_timeout_s > 0 and self._stats.connected:
            self.flush(flush_timeout_s)
        self._stopping.set()
        self._events.put(("wake",))
        self._thread.join(10)
        self.outbox.remove_listener(self._on_append)
        client = self._client
        if self._stats.connected:
            # A clean DISCONNECT suppresses the will, so publish "offline" ourselves.
            info = client.publish(self.state_topic, self._state_doc("offline"), qos=1, retain=True)
            # RuntimeError/ValueError: the connection dropped meanwhile; the will covers it.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2.0)
        client.disconnect()
        client.loop_stop()
        self._thread = None

    @property
    def network_alive(self) -> bool | None:
        """Whether paho's network thread of the central link runs (None before ``start``)."""
        return network_alive(self._client)

    @property
    def alive(self) -> bool | None:
        """Whether the uplink thread runs (None before ``start``): the watchdog's liveness probe."""
        thread = self._thread
        return thread.is_alive() if thread is not None else None

    @property
    def connected(self) -> bool:
        """Cheap (no outbox query, unlike ``stats()``): for loops that poll it."""
        return self._stats.connected

    def clock_offset(self) -> tuple[float, float] | None:
        """``(offset_s, uncertainty_s)`` of this box's clock against the CDP's, or None yet."""
        return self.clock.estimate()

    def publish_health(self, doc: dict[str, Any]) -> bool:
        """The latest health, retained on ``.../health`` (state, not history: the history
        travels as heartbeat events through the outbox). False when not connected."""
        return self.publish_status("health", json.dumps(doc, default=str).encode())

    def publish_status(self, subtopic: str, payload: bytes, *, retain: bool = True) -> bool:
        """Publish device status (not an event: no outbox, the latest wins) under
        ``stores/<store>/devices/<device>/<subtopic>``. False when not connected."""
        client = self._client
        if client is None or not self._stats.connected:
            return False
        topic = f"{topics.device_base(self.store_id, self.device_id)}/{subtopic}"
        try:
            info = client.publish(topic, payload, 1, retain)
        except (ValueError, RuntimeError):
            return False
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def resync(self) -> None:
        """Re-announce the box and re-send every batch the CDP has not confirmed, now."""
        self._events.put(("resync",))

    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            s = self._stats
            out: dict[str, Any] = {
                "published_batches": s.published_batches,
                "published_events": s.published_events,
                "publish_attempts": s.publish_attempts,
                "refused_batches": s.refused_batches,
                "confirmed_batches": s.confirmed_batches,
                "resent_unconfirmed": s.resent_unconfirmed,
                "bad_confirmations": s.bad_confirmations,
                "subscribe_refusals": s.subscribe_refusals,
                "unconfirmed_batches": len(self._unconfirmed),
                "confirm_timeout_s": round(self._confirm_timer.timeout_s(), 2),
                "connects": s.connects,
                "connected": s.connected,
                "last_error": s.last_error,
                "inflight_batches": self._inflight_batches(),
            }
        try:
            out["depth"] = self.outbox.depth()
            out["oldest_pending_s"] = self.outbox.oldest_pending_age_s()
        except RuntimeError:  # outbox closed
            out["depth"] = None
        return out

    # ---- paho callbacks (paho's thread): hand over, never raise ------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure and self.confirm_by_cdp:
            # Every time: the broker may have lost our session (no persistence, expiry).
            client.subscribe(self.delivered_topic, qos=self.cfg.confirm_qos)
        self._events.put(("connect", not reason_code.is_failure, str(reason_code)))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [rc for rc in reason_codes if rc.is_failure]
        self._events.put(("subscribe_refused", str(refused[0])) if refused else ("subscribed",))

    def _resubscribe(self) -> None:
        client = self._client
        if client is not None and not self._stopping.is_set() and self._stats.connected:
            client.subscribe(self.delivered_topic, qos=self.cfg.confirm_qos)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        # Jitter the reconnect delay so a fleet does not reconnect in lockstep after an outage.
        client.reconnect_delay_set(min_delay=random.uniform(0.5, 1.5), max_delay=30)
        self._events.put(("disconnect", str(reason_code)))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        ok = not reason_code.is_failure
        if ok and self.hold_without_subscribers and reason_code.value == NO_MATCHING_SUBSCRIBERS:
            ok = False  # nobody (not even an offline persistent session) would get it: keep it
        self._events.put(("puback", mid, ok, str(reason_code)))

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self.delivered_topic:
            return
        try:
            batch_id, ids, cdp_time, ranges = decode_confirmation(bytes(msg.payload))
        except ValueError as exc:
            self._events.put(("bad_confirmation", str(exc)))
            return
        self._events.put(("delivered", batch_id, ids, cdp_time, time.time(), ranges))

    def _on_append(self, last_sequence: int) -> None:
        self._events.put(("wake",))

    # ---- the uplink thread -------------------------------------------------------------
    def _inflight_batches(self) -> int:
        return sum(1 for b in list(self._inflight.values()) if b is not None)

    def _run(self) -> None:
        timeout: float | None = 0.0
        while not self._stopping.is_set():
            try:
                self._safe_handle(self._events.get(timeout=timeout))
                while True:  # drain everything already queued before deciding
                    self._safe_handle(self._events.get_nowait())
            except queue.Empty:
                pass
            if self._stopping.is_set():
                break
            try:
                timeout = self._pump()
            except Exception as exc:  # e.g. disk error reading the outbox: back off, go on
                self._set_error(f"pump: {exc!r}")
                timeout = self._backoff.next()

    def _safe_handle(self, ev: tuple[Any, ...]) -> None:
        try:
            self._handle(ev)
        except Exception as exc:  # the thread must survive anything, e.g. a disk error
            self._set_error(f"internal: {exc!r}")
            log.exception("uplink: error handling %s", ev[0])

    def _handle(self, ev: tuple[Any, ...]) -> None:
        kind = ev[0]
        if kind == "connect":
            ok, reason = ev[1], ev[2]
            if ok:
                with self._stats_lock:
                    self._stats.connected = True
                    self._stats.connects += 1
                self._log_state(True, reason)
                self._publish_birth()
                # The broker may have died holding batches it had PUBACKed: unless their
                # confirmations (queued in our session) arrive soon, send them again.
                self._confirmations_resume()
            else:
                self._set_error(f"connect refused: {reason}")
                self._log_state(False, reason)
        elif kind == "disconnect":
            with self._stats_lock:
                self._stats.connected = False
            self._log_state(False, ev[1])
        elif kind == "puback":
            self._handle_puback(ev[1], ev[2], ev[3])
        elif kind == "delivered":
            self._handle_delivered(ev[1], ev[2], ev[3], ev[4], ev[5])
        elif kind == "resync" and self._stats.connected:
            self._publish_birth()
            now = time.monotonic()
            for bid, (b, _) in list(self._unconfirmed.items()):
                b.cut_short = True
                self._unconfirmed[bid] = (b, now)
        elif kind == "subscribed":
            self._subscribed_once, again = True, self._subscribed_once
            if again:
                # Granted again (a refusal, a session the broker lost): what was confirmed
                # meanwhile never reached us.
                self._confirmations_resume()
        elif kind == "subscribe_refused":
            # Without the subscription no confirmation ever comes and every batch is sent again
            # for ever. nats-server 2.9 refuses it (0x80) when JetStream is too busy to create
            # the subscription's consumer, e.g. a whole fleet connecting at once: ask again
            # after a jittered pause that grows.
            with self._stats_lock:
                self._stats.subscribe_refusals += 1
                n = self._stats.subscribe_refusals
            self._set_error(f"subscription to {self.delivered_topic} refused: {ev[1]}")
            # 1-2 s, then doubling up to 30-60 s: a box its broker never allows asks rarely.
            delay = random.uniform(0.5, 1.0) * min(60.0, 2.0 ** min(n, 6))
            timer = threading.Timer(delay, self._resubscribe)
            timer.daemon = True
            timer.start()
        elif kind == "bad_confirmation":
            with self._stats_lock:
                self._stats.bad_confirmations += 1
            self._set_error(f"ignored a confirmation: {ev[1]}")

    def _handle_delivered(
        self,
        batch_id: str | None,
        ids: list[str],
        cdp_time: float | None,
        got: float,
        ranges: list[tuple[int, int]] | None = None,
    ) -> None:
        # By ids and sequences, not only by batch: after a restart of the uplink the same rows
        # travel in batches this object never saw, and their confirmations must still delete them.
        deleted = self.outbox.mark_sent(ids) + self.outbox.mark_sent_sequences(ranges or [])
        entry = self._unconfirmed.pop(batch_id, None) if batch_id is not None else None
        known = entry is not None
        if entry is not None and entry[0].attempts == 0:
            self._confirm_timer.sample(time.monotonic() - entry[0].acked_at)
            if cdp_time is not None:
                self.clock.add(entry[0].sent_at, cdp_time, got)
        if batch_id is not None and not known:
            self._retry = [b for b in self._retry if b.batch_id != batch_id]
            self._early[batch_id] = None
            while len(self._early) > 4 * self.cfg.max_unconfirmed_batches + 64:
                self._early.popitem(last=False)
        with self._stats_lock:
            self._stats.confirmed_batches += 1
            self._stats.published_events += deleted
        with self._progress:
            self._progress.notify_all()

    def _handle_puback(self, mid: int, ok: bool, reason: str) -> None:
        if mid not in self._inflight:
            return  # e.g. the goodbye message, or a mid from before a restart of this object
        batch = self._inflight.pop(mid)
        if batch is None:
            return  # birth message
        if ok and self.confirm_by_cdp:
            with self._stats_lock:
                self._stats.published_batches += 1
            if self._early.pop(batch.batch_id, "missing") == "missing":
                batch.acked_at = time.monotonic()
                batch.cut_short = False
                deadline = batch.acked_at + self._confirm_timer.timeout_s()
                self._unconfirmed[batch.batch_id] = (batch, deadline)
            if self._backoff.failures:
                log.info("uplink: broker accepts batches again")
            self._backoff.reset()
        elif ok:
            try:
                deleted = self.outbox.mark_sent(batch.ids)
            except Exception as exc:
                # Delivered but not deleted: send again later (a duplicate the sink absorbs)
                # rather than leave rows behind the cursor until the next restart.
                self._retry.append(batch)
                self._backoff.next()
                self._set_error(f"outbox delete failed: {exc!r}")
                return
            with self._stats_lock:
                self._stats.published_batches += 1
                self._stats.published_events += deleted
            if self._backoff.failures:
                log.info("uplink: broker accepts batches again")
            self._backoff.reset()
        else:
            # Keep the rows; retry the same batch later. Never drop data on a refusal.
            batch.attempts += 1
            self._retry.append(batch)
            self._backoff.next()
            with self._stats_lock:
                self._stats.refused_batches += 1
            self._set_error(f"batch refused by the broker: {reason}; holding it and retrying")
        with self._progress:
            self._progress.notify_all()

    def _confirmations_resume(self) -> None:
        """Confirmations flow again after a gap (a reconnect, the subscription granted again):
        the broker may have died holding PUBACKed batches, and confirmations sent in the gap
        are lost, so a batch not confirmed within the grace goes again. Batches that went
        unconfirmed in the gap said nothing about the CDP's speed: the timer's backoff ends."""
        soon = time.monotonic() + RECONNECT_CONFIRM_GRACE_S
        for bid, (b, deadline) in list(self._unconfirmed.items()):
            b.cut_short = b.cut_short or soon < deadline
            self._unconfirmed[bid] = (b, min(deadline, soon))
        self._confirm_timer.backoffs = 0

    def _state_doc(self, status: str) -> str:
        """Birth, goodbye and will alike name the version and config, so ops still know what
        an offline box was running."""
        doc = {"status": status, "version": self.version, "device": self.device_id}
        if self.config_hash:
            doc["config_hash"] = self.config_hash
        return json.dumps(doc)

    def _publish_birth(self) -> None:
        assert self._client is not None
        body = self._state_doc("online")
        info = self._client.publish(self.state_topic, body, qos=1, retain=True)
        self._inflight[info.mid] = None

    def _pump(self) -> float | None:
        """Publish what may be published now; return how long to wait for something to happen."""
        wait = self._publish_ready()
        if not self._unconfirmed:
            return wait
        # Wake up for the earliest confirmation deadline too.
        until = min(d for _, d in self._unconfirmed.values()) - time.monotonic()
        return max(0.01, until) if wait is None else max(0.0, min(wait, until))

    def _expire_unconfirmed(self) -> None:
        now = time.monotonic()
        late = [bid for bid, (_, d) in self._unconfirmed.items() if d <= now]
        slow = False
        for bid in late:
            batch, _ = self._unconfirmed.pop(bid)
            batch.attempts += 1  # Karn: a re-sent batch says nothing about the clock
            slow = slow or not batch.cut_short
            self._retry.append(batch)
        if slow:
            self._confirm_timer.back_off()
        if late:
            with self._stats_lock:
                self._stats.resent_unconfirmed += len(late)
            log.warning(
                "uplink: the CDP has not confirmed %d batch(es) in time; sending them again",
                len(late),
            )

    def _publish_ready(self) -> float | None:
        if not self._stats.connected:
            return None  # a connect event will wake us
        self._expire_unconfirmed()
        while self._inflight_batches() < self.max_inflight_batches:
            if len(self._unconfirmed) >= self.cfg.max_unconfirmed_batches:
                return None  # a confirmation or a deadline will wake us
            if self._retry:
                wait = self._backoff.remaining()
                if wait > 0:
                    return wait
                self._send(self._retry.pop(0))
                continue
            rows = self.outbox.pending(
                self.cfg.max_batch, self.cfg.max_batch_bytes, after_sequence=self._cursor
            )
            if not rows:
                return None  # an append or a PUBACK will wake us
            full = (
                len(rows) >= self.cfg.max_batch or rows[-1].sequence < self.outbox.last_sequence()
            )
            if not full:
                # Linger so a trickle of events still makes decent batches.
                age = time.time() - rows[0].accepted_at
                if age < self.cfg.linger_s:
                    return self.cfg.linger_s - age
            batch_id = new_event_id()
            payload, encoding = encode_batch(
                batch_id,
                self.store_id,
                self.device_id,
                [r.body for r in rows],
                self.compress_over,
            )
            self._cursor = rows[-1].sequence
            self._send(_Batch(batch_id, rows, payload, encoding))
        return None  # a PUBACK will free a slot

    def _send(self, batch: _Batch) -> None:
        assert self._client is not None
        with self._stats_lock:
            self._stats.publish_attempts += 1
        batch.sent_at = time.time()
        try:
            info = self._client.publish(
                self.topic,
                batch.payload,
                qos=1,
                properties=publish_properties(batch.encoding),
            )
        except (ValueError, RuntimeError) as exc:
            info = None
            err = repr(exc)
        else:
            err = mqtt.error_string(info.rc) if info is not None else ""
        # NO_CONN still queues the message inside paho; it goes out on reconnect.
        if info is not None and info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._inflight[info.mid] = batch
            return
        batch.attempts += 1
        self._retry.append(batch)
        self._backoff.next()
        self._set_error(f"publish failed: {err}; retrying with backoff")

    def _set_error(self, msg: str) -> None:
        with self._stats_lock:
            changed = self._stats.last_error != msg
            self._stats.last_error = msg
        if changed:
            log.warning("uplink: %s", msg)

    def _log_state(self, connected: bool, reason: str) -> None:
        if self._was_connected is connected:
            return
        self._was_connected = connected
        if connected:
            log.info("uplink: connected to %s:%s", self.broker.host, self.broker.port)
        else:
            log.warning("uplink: disconnected from broker (%s); outbox keeps events", reason)
