"""Staff alerts: what staff must act on (an order pickup, a VIP, a flat beacon, a dark screen),
for the store's kiosks, on the in-store bus only (never to the CDP). Every stage that notices
something raises it here.

An alert stays open until a kiosk acknowledges it (``alert-acks``: closed for every kiosk) or it
is ``[alerts] max_age_s`` old:

- each open alert is retained on ``instore/<store>/alerts/<alert_id>`` and cleared (an empty
  retained payload) when it closes, so a kiosk that starts, restarts or reconnects sees exactly
  the open ones;
- the open alerts are kept in ``<state_dir>/alerts.db`` (``alert_store.py``) and published again
  at every connect to the bus: a restarted agent, or a broker that lost its retained messages,
  leaves no kiosk blank;
- a retained alert of this box that it no longer holds (closed while the bus was down, or a lost
  file) is cleared as soon as the agent sees it;
- bounded: beyond ``max_open`` the oldest closes, with a log line;
- no news twice: an operational alert about a thing (a beacon, a screen) that is still open is
  not raised again (a restarted agent finds the same flat battery), and a campaign alert goes
  out once per shopper, campaign and day (``raise_once``), across restarts.

No profile id goes on the bus; on disk only its hash, dropped when the profile is forgotten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts import topics
from contracts.payload import PayloadError, loads
from edge_agent.app.alert_store import AlertStore, OnceKey, OpenAlert
from edge_agent.app.bus import InStoreBus, Publisher
from edge_agent.config import AlertsConfig

log = logging.getLogger("edge_agent")

# Operational alerts are about one thing; while one is open, the same again is no news.
_THING = {
    "beacon_battery_low": "beacon",
    "beacon_missing": "beacon",
    "screen_offline": "screen_id",
    "camera_lost": "screen_id",
}
# About the store's equipment, not a shopper: their text names no one (central may see it).
OPERATIONAL_KINDS = frozenset(_THING)
# Staff need a name and an order number, never the CDP's key to the shopper.
_NEVER_ON_THE_BUS = {"profile_id"}


def subject_of(profile_id: str) -> str:
    """What the box keeps of a shopper behind an alert: enough to find their alerts again when
    their profile goes, not their id."""
    return hashlib.sha256(f"alert-subject\0{profile_id}".encode()).hexdigest()[:32]


class StaffAlerts:
    def __init__(
        self,
        bus: Publisher,
        store_id: str,
        device_id: str,
        path: Path,
        cfg: AlertsConfig | None = None,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.store_id = store_id
        self.device_id = device_id
        self.cfg = cfg or AlertsConfig()
        self._wall = wall
        self.raised = 0
        self._lock = threading.RLock()
        self._open: dict[str, OpenAlert] = {}
        self._once: dict[str, OnceKey] = {}
        self.store = AlertStore(path, snapshot=self._snapshot)
        alerts, keys = self.store.load()
        self._open = {a.alert_id: a for a in alerts}
        self._once = {k.key: k for k in keys}
        if alerts:
            log.info("alerts: %d open alerts from the last run", len(alerts))
        # Closed now, cleared on the bus when the agent sees their retained copies.
        self.expire()

    def _snapshot(self) -> tuple[list[OpenAlert], list[OnceKey]]:
        with self._lock:
            return list(self._open.values()), list(self._once.values())

    # ---- raising -------------------------------------------------------------------------
    def raise_alert(
        self, kind: str, text: str, *, subject: str | None = None, **fields: Any
    ) -> str | None:
        """Open an alert and show it on every kiosk; its id, or None when the same thing's alert
        is still open. ``subject``: the profile id of the shopper it is about (never sent)."""
        for name in _NEVER_ON_THE_BUS & fields.keys():
            log.error("staff alert %s: field %s dropped: never on the bus", kind, name)
            del fields[name]
        thing = _THING.get(kind)
        same = f"{kind}:{fields[thing]}" if thing and fields.get(thing) is not None else None
        now = self._wall()
        with self._lock:
            if same is not None and any(a.same == same for a in self._open.values()):
                log.debug("staff alert %s: still open, not raised again", same)
                return None
            alert_id = secrets.token_hex(8)
            body = {
                **fields,
                "alert_id": alert_id,
                "kind": kind,
                "text": text,
                "ts": datetime.fromtimestamp(now, UTC).isoformat(),
                # Whose alert it is: with several boxes on one bus, each clears only its own.
                "device_id": self.device_id,
            }
            alert = OpenAlert(
                alert_id,
                now,
                json.dumps(body),
                same,
                subject_of(subject) if subject is not None else None,
            )
            self._close_oldest_beyond(self.cfg.max_open - 1)
            self._open[alert_id] = alert
            self.raised += 1
            log.info("staff alert %s: %s", kind, text)
            # On disk before on the bus: an alert a kiosk has seen survives a crash here.
            self.store.add(alert)
            self._publish(alert)
        return alert_id

    def raise_once(
        self,
        key: Iterable[str],
        day: str,
        kind: str,
        text: str,
        *,
        subject: str | None = None,
        **fields: Any,
    ) -> str | None:
        """``raise_alert`` unless an alert with ``key`` was raised on ``day`` (store time), by
        this run or an earlier one; the keys of other days are dropped by ``new_day``. The key
        is kept hashed: it holds a profile id."""
        digest = hashlib.sha256("\0".join((day, *key)).encode()).hexdigest()[:32]
        with self._lock:
            if digest in self._once:
                return None
            # The alert first: a crash in between costs staff a repeat, never the alert.
            alert_id = self.raise_alert(kind, text, subject=subject, **fields)
            once = OnceKey(digest, day, subject_of(subject) if subject is not None else None)
            self._once[digest] = once
            self.store.add_once(once)
            return alert_id

    def new_day(self, today: str) -> None:
        with self._lock:
            if all(k.day == today for k in self._once.values()):
                return
            self._once = {h: k for h, k in self._once.items() if k.day == today}
            self.store.keep_day(today)

    # ---- closing -------------------------------------------------------------------------
    def close(self, alert_id: str, why: str) -> bool:
        """Close an open alert on every kiosk; False when it is not (or no longer) open."""
        with self._lock:
            alert = self._open.pop(alert_id, None)
            if alert is None:
                return False
            log.info("staff alert %s closed: %s", alert_id, why)
            self.store.remove([alert_id])
            self._clear(alert_id)
        return True

    def expire(self, now: float | None = None) -> int:
        """Close alerts older than ``max_age_s``; how many."""
        cutoff = (self._wall() if now is None else now) - self.cfg.max_age_s
        with self._lock:
            old = [a.alert_id for a in self._open.values() if a.raised_at < cutoff]
            if not old:
                return 0
            for alert_id in old:
                del self._open[alert_id]
            # Off the disk first: a crash before the clearing leaves a retained copy that the
            # next start clears (on_alert), never an alert that comes back.
            self.store.remove(old)
            for alert_id in old:
                self._clear(alert_id)
            log.info(
                "staff alerts: %d unacknowledged for %.0f h, closed: %s",
                len(old),
                self.cfg.max_age_s / 3600,
                ", ".join(old),
            )
        return len(old)

    def _close_oldest_beyond(self, keep: int) -> None:
        while len(self._open) > keep:
            oldest = min(self._open.values(), key=lambda a: a.raised_at)
            del self._open[oldest.alert_id]
            log.warning(
                "staff alerts: more than %d open: closed the oldest, %s, unacknowledged",
                self.cfg.max_open,
                oldest.alert_id,
            )
            self.store.remove([oldest.alert_id])
            self._clear(oldest.alert_id)

    def forget(self, profile_ids: Iterable[str]) -> None:
        """Profiles the box no longer holds (consent withdrawn, expired): their alerts close
        and their once-a-day keys go, so no name stays on a kiosk or on the disk."""
        subjects = {subject_of(p) for p in profile_ids}
        with self._lock:
            gone = [a.alert_id for a in self._open.values() if a.subject in subjects]
            keys = [h for h, k in self._once.items() if k.subject in subjects]
            if not gone and not keys:
                return
            for alert_id in gone:
                del self._open[alert_id]
            for h in keys:
                del self._once[h]
            self.store.forget_subjects(subjects)
            for alert_id in gone:
                self._clear(alert_id)
            if gone:
                log.info("staff alerts: %d closed, their shopper's profile is gone", len(gone))

    # ---- the bus ---------------------------------------------------------------------------
    def listen(self, bus: InStoreBus) -> None:
        """Acks from any kiosk; the store's retained alerts (to clear this box's stale ones);
        every open alert published again at every connect."""
        bus.route(topics.alert_acks(self.store_id), self.on_ack)
        bus.route(topics.alerts(self.store_id), self.on_alert)
        bus.on_connected(self.republish)

    def _publish(self, alert: OpenAlert) -> None:
        topic = topics.alerts(self.store_id, alert.alert_id)
        self.bus.publish(topic, alert.body, qos=1, retain=True)

    def _clear(self, alert_id: str) -> None:
        self.bus.publish(topics.alerts(self.store_id, alert_id), b"", qos=1, retain=True)

    def republish(self) -> None:
        with self._lock:
            for alert in sorted(self._open.values(), key=lambda a: a.raised_at):
                self._publish(alert)

    def on_ack(self, topic: str, payload: bytes) -> None:
        """A kiosk acknowledged an alert (bus thread). Unreadable: raises, the bus counts it."""
        obj = loads(payload, what="ack")
        if not isinstance(obj, dict) or not isinstance(obj.get("alert_id"), str):
            raise ValueError("ack.alert_id: missing or not a string")
        by = str(obj.get("kiosk_id", "?"))[:64]
        self.close(obj["alert_id"], f"acknowledged by {by}")

    def on_alert(self, topic: str, payload: bytes) -> None:
        """An alert on the bus (bus thread): our own echo, another box's, or a retained one of
        this box that it no longer holds, which is cleared. Anything else is the kiosks' to
        judge."""
        alert_id = topic.rsplit("/", 1)[-1]
        if not payload:
            return
        with self._lock:
            if alert_id in self._open:
                return
        try:
            obj = loads(payload, what="alert")
        except PayloadError:
            return
        if isinstance(obj, dict) and obj.get("device_id") == self.device_id:
            log.info("staff alert %s: no longer open here, cleared on the bus", alert_id)
            self._clear(alert_id)

    # ---- views -----------------------------------------------------------------------------
    def open_alerts(self) -> list[dict[str, Any]]:
        """The open alerts as published, oldest first."""
        with self._lock:
            ordered = sorted(self._open.values(), key=lambda a: a.raised_at)
            return [json.loads(a.body) for a in ordered]

    def health(self) -> dict[str, str]:
        out = {"alerts_open": str(len(self._open))}
        if self.store.failing is not None:
            out["alerts_store"] = f"memory only: {self.store.failing}"
        if self.store.recovered is not None:
            out["alerts_recovered"] = self.store.recovered["reason"]
        return out

    def shutdown(self) -> None:
        self.store.close()
