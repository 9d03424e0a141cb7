"""Fleet status for central ops, read from what every box keeps retained on the broker: its
birth/will on ``.../state`` and its latest heartbeat on ``.../health``. No database, no polling
of boxes: a fresh subscriber gets every box's latest word at once."""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import uuid
from typing import Any

from contracts import topics
from contracts.mqtt import BrokerConfig, connect, make_client
from contracts.payload import PayloadError, loads
from contracts.screen_protocol import screen_report

# A player's screenshot is a downscaled JPEG (signage_ui/player.py), base64 in JSON.
MAX_SCREENSHOT_BYTES = 2_000_000


def _on_status(rows: dict[tuple[str, str], dict[str, Any]], lock: threading.Lock, msg: Any) -> None:
    """File one retained state or health message under its box (paho's thread; never raises)."""
    parts = msg.topic.split("/")
    if len(parts) == 6 and parts[4] == "screens":
        _on_screen(rows, lock, parts[1], parts[3], parts[5], msg.payload)
        return
    if len(parts) != 5 or parts[4] not in ("state", "health", "acks", "live"):
        return
    _, st, _, dev, what = parts
    if not msg.payload:  # a retained message cleared: the box was retired
        with lock:
            rows.get((st, dev), {}).pop(what, None)
        return
    try:
        doc = json.loads(msg.payload)
    except ValueError:
        doc = {"unreadable": msg.payload[:80].decode("utf-8", "replace")}
    if not isinstance(doc, dict) or (what == "acks" and "kind" not in doc):
        return  # (a resync's list of applied versions is no push's ack)
    with lock:
        rows.setdefault((st, dev), {"store": st, "device": dev})[what] = doc


def _on_screen(
    rows: dict[tuple[str, str], dict[str, Any]],
    lock: threading.Lock,
    store: str,
    device: str,
    screen: str,
    payload: bytes,
) -> None:
    """What a screen shows, as its box relays it from the player (``screens/<screen>``)."""
    try:
        report = screen_report(payload) if payload else None
    except PayloadError:
        report = {"status": "unreadable"}
    with lock:
        screens = rows.setdefault((store, device), {"store": store, "device": device})
        table = screens.setdefault("screens", {})
        if report is None:
            table.pop(screen, None)
        else:
            table[screen] = {**report, "heard": time.time()}


class FleetWatcher:
    """The console's live view of the same retained topics ``collect`` reads once: subscribed
    for as long as it runs, so a page shows every box's latest word without a 2 s wait, and a
    box going offline (its will) shows at the next page load. paho reconnects by itself."""

    def __init__(self, broker: BrokerConfig, store: str = "+") -> None:
        self.broker = broker
        self._rows: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        base = topics.device_base(store, "+")
        # Acks too: the store page says what each box last did with a push (the console's own
        # emergency included).
        # And what each screen shows (the box relays its players' states): which screens
        # obey an emergency; screenshots ops asked for; the store live (people per zone, open
        # staff alerts: edge_agent/app/live_report.py).
        self._subs = [
            (f"{base}/state", 1), (f"{base}/health", 1), (f"{base}/acks", 1),
            (f"{base}/screens/+", 1), (f"{base}/screenshots/+", 1), (f"{base}/live", 1),
        ]  # fmt: skip
        self._shots: dict[tuple[str, str], dict[str, Any]] = {}
        self._client = make_client(f"edge-ops-console-{uuid.uuid4().hex[:8]}", broker)
        self._started = False

    def start(self, wait_s: float = 5.0) -> bool:
        """Connect and subscribe; False if the broker did not answer within ``wait_s`` (paho
        keeps trying in the background; ``subscribed`` is set when it gets through)."""
        c = self._client
        c.on_connect = lambda c, *a: c.subscribe(self._subs)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = lambda c, u, msg: self._on_message(msg)
        # Clean session: on every reconnect it subscribes afresh and gets the retained messages
        # again, which is the whole fleet's latest state.
        connect(c, self.broker, clean_start=True, session_expiry_s=0)
        c.loop_start()
        self._started = True
        return self.subscribed.wait(wait_s)

    def _on_message(self, msg: Any) -> None:
        parts = msg.topic.split("/")
        if len(parts) == 6 and parts[4] == "screenshots":
            self._on_screenshot(parts[1], parts[3], parts[5], msg.payload)
        else:
            _on_status(self._rows, self._lock, msg)

    def _on_screenshot(self, store: str, device: str, screen: str, payload: bytes) -> None:
        """A player's answer to a screenshot command: the latest JPEG per screen, in memory
        (a few tens of KB each; asked for by ops, not kept)."""
        try:
            doc = loads(payload, max_bytes=MAX_SCREENSHOT_BYTES, what="screenshot")
            jpeg = base64.b64decode(doc["jpeg_b64"], validate=True)
        except (PayloadError, KeyError, TypeError, ValueError, binascii.Error):
            return
        if not jpeg.startswith(b"\xff\xd8"):
            return  # not a JPEG: never served as one
        with self._lock:
            self._shots[(store, screen)] = {
                "device": device, "jpeg": jpeg, "heard": time.time(),
                "ts": str(doc.get("ts", ""))[:40], "content_id": str(doc.get("content_id", ""))[:128],
            }  # fmt: skip

    def screenshot(self, store: str, screen: str) -> dict[str, Any] | None:
        with self._lock:
            shot = self._shots.get((store, screen))
            return dict(shot) if shot else None

    def screens(self, store: str) -> list[dict[str, Any]]:
        """Every screen a box of ``store`` reported, with the box it belongs to and the
        box's own status (a screen behind an offline box is as old as its last report)."""
        now = time.time()
        with self._lock:
            got = [(dev, dict(r.get("screens", {})), r.get("state", {}))
                   for (st, dev), r in self._rows.items() if st == store]  # fmt: skip
        out = []
        for dev, table, state in sorted(got, key=lambda g: g[0]):
            for screen, report in sorted(table.items()):
                out.append({
                    "store": store, "device": dev, "screen": screen,
                    "box_status": state.get("status", "unknown"),
                    "age_s": round(now - report["heard"], 1), **report,
                })  # fmt: skip
        return out

    def live(self, store: str) -> dict[str, Any]:
        """The store live from its boxes' summaries: people per zone (a zone two boxes count
        shows the fresher count) and every open staff alert, newest first."""
        now = time.time()
        with self._lock:
            docs = [(dev, r["live"]) for (st, dev), r in self._rows.items()
                    if st == store and isinstance(r.get("live"), dict)]  # fmt: skip
        zones: dict[str, dict[str, Any]] = {}
        alerts: list[dict[str, Any]] = []
        for dev, doc in sorted(docs, key=lambda d: _number(d[1].get("ts")) or 0.0):
            ts = _number(doc.get("ts"))
            age = round(now - ts, 1) if ts is not None else None
            z = doc.get("zones")
            for zone, people in z.items() if isinstance(z, dict) else ():
                if isinstance(people, int) and not isinstance(people, bool):
                    zones[str(zone)] = {"zone": str(zone), "people": people, "device": dev,
                                        "age_s": age}  # fmt: skip
            a = doc.get("alerts")
            for alert in a if isinstance(a, list) else ():
                if isinstance(alert, dict):
                    alerts.append({**{k: str(v)[:200] for k, v in alert.items()}, "device": dev})
        alerts.sort(key=lambda x: x.get("ts", ""), reverse=True)
        return {"zones": [zones[k] for k in sorted(zones)], "alerts": alerts, "boxes": len(docs)}

    def stop(self) -> None:
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False

    def rows(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            got = [(k, dict(v)) for k, v in self._rows.items()]
        return [
            status_row(st, dev, r.get("state", {}), r.get("health", {}), now, r.get("acks"))
            for (st, dev), r in sorted(got)
        ]


def collect(broker: BrokerConfig, store: str = "+", wait_s: float = 2.0) -> list[dict[str, Any]]:
    """One row per device that has a retained state or health message."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    lock = threading.Lock()
    subscribed = threading.Event()
    base = topics.device_base(store, "+")

    client = make_client(f"edge-ops-status-{uuid.uuid4().hex[:8]}", broker)
    client.on_connect = lambda c, *a: c.subscribe([(f"{base}/state", 1), (f"{base}/health", 1)])
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = lambda c, u, msg: _on_status(rows, lock, msg)
    connect(client, broker, clean_start=True, session_expiry_s=0)
    client.loop_start()
    try:
        if not subscribed.wait(max(wait_s, 5.0)):
            raise ConnectionError(
                f"could not reach {broker.host}:{broker.port} (TLS: {'on' if broker.tls else 'off'})"
                " or subscribe there: no fleet status"
            )
        time.sleep(wait_s)  # retained messages follow the SUBACK
    finally:
        client.disconnect()
        client.loop_stop()
    now = time.time()
    return [
        status_row(st, dev, r.get("state", {}), r.get("health", {}), now)
        for (st, dev), r in sorted(rows.items())
    ]


def status_row(
    store: str,
    device: str,
    state: dict[str, Any],
    health: dict[str, Any],
    now: float,
    ack: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One box's status from its retained state (birth/will) and latest health document; the
    CLI's ``status`` and the console's fleet page both read boxes through here."""
    ts = health.get("ts")
    sensors = health.get("sensors") or {}
    if not isinstance(sensors, dict):
        sensors = {}
    return {
        "store": store,
        "device": device,
        "status": state.get("status", "unknown"),
        "version": state.get("version") or health.get("version"),
        "config_hash": state.get("config_hash"),
        "outbox_depth": health.get("outbox_depth"),
        "oldest_pending_s": health.get("oldest_pending_s"),
        "clock_offset_s": health.get("clock_offset_s"),
        # As of the last heartbeat (so it is as old as health_age_s says).
        "cert_days_left": _number(health.get("cert_days_left")),
        "dropped": health.get("dropped") or {},
        "sensors": sensors,
        # The box's metrics summary (contracts.events.BoxMetrics): RSS, CPU, adverts/s, decide
        # p99..., from the heartbeat, so ops need not reach the box's loopback /metrics.
        "metrics": health.get("metrics") if isinstance(health.get("metrics"), dict) else {},
        # The content installer's state (installed / installing / retrying / failed) and the
        # playlist version it is about (edge_agent/app/agent.py puts them in the health).
        "content": _content(sensors),
        "last_error": last_error(state, sensors),
        "last_ack": _ack(ack),
        # The box's last applied version per downlink kind (its retained health says).
        "applied": _applied(health.get("downlink_applied")),
        # Box clock; with a clock offset reported the age is only as good as that clock.
        "health_age_s": round(now - float(ts), 1) if isinstance(ts, int | float) else None,
    }


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _applied(doc: Any) -> dict[str, int]:
    if not isinstance(doc, dict):
        return {}
    return {
        str(k)[:32]: v
        for k, v in sorted(doc.items())
        if isinstance(v, int) and not isinstance(v, bool)
    }


def _ack(ack: dict[str, Any] | None) -> str | None:
    if not ack or "kind" not in ack:
        return None
    verdict = "applied" if ack.get("accepted") else f"refused: {ack.get('reason', '')}"
    return f"{ack['kind']} v{ack.get('version')} {verdict}"


def _content(sensors: dict[str, Any]) -> str | None:
    state, version = sensors.get("content_state"), sensors.get("content_version")
    if state is None:
        return None
    return f"v{version} {state}" if version is not None else str(state)


def last_error(state: dict[str, Any], sensors: dict[str, Any]) -> str | None:
    """The one line an operator should read first: an unreadable retained message, a failed or
    retrying content install, the watchdog's problems, else a sensor not ok."""
    if "unreadable" in state:
        return f"state unreadable: {state['unreadable']}"
    cert = sensors.get("cert")
    if isinstance(cert, str) and cert not in ("ok", "on probation"):
        # "renewal requested": ops has a request to sign (edge-ops pki sign-csr --all-pending).
        return f"certificate: {cert}"
    if sensors.get("content_state") in ("failed", "retrying"):
        return f"content {sensors['content_state']}: {sensors.get('content_reason', '')}".strip()
    watchdog = sensors.get("watchdog")
    if watchdog not in (None, "ok"):
        return f"watchdog: {watchdog}"
    for name in ("camera", "ble"):
        value = sensors.get(name)
        if isinstance(value, str) and value not in ("ok", "off", "disabled") and value:
            return f"{name}: {value}"
    return None


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    online = [r for r in rows if r["status"] == "online"]
    depths = [r["outbox_depth"] for r in rows if isinstance(r["outbox_depth"], int)]
    return {
        "devices": len(rows),
        "online": len(online),
        "offline": [f"{r['store']}/{r['device']}" for r in rows if r["status"] != "online"],
        "max_outbox_depth": max(depths) if depths else None,
        "config_hashes": sorted({r["config_hash"] for r in rows if r["config_hash"]}),
        # The box to renew first (its heartbeat says whether it has asked: last_error).
        "min_cert_days_left": min_cert_days(rows),
    }


def min_cert_days(rows: list[dict[str, Any]]) -> float | None:
    days = [r["cert_days_left"] for r in rows if r.get("cert_days_left") is not None]
    return min(days) if days else None
