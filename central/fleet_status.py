"""Fleet status for central ops, read from what every box keeps retained on the broker: its
birth/will on ``.../state`` and its latest heartbeat on ``.../health``. No database, no polling
of boxes: a fresh subscriber gets every box's latest word at once."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from contracts import topics
from contracts.mqtt import BrokerConfig, connect, make_client


def collect(broker: BrokerConfig, store: str = "+", wait_s: float = 2.0) -> list[dict[str, Any]]:
    """One row per device that has a retained state or health message."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    lock = threading.Lock()
    subscribed = threading.Event()
    base = topics.device_base(store, "+")

    def on_message(c, u, msg) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 5:
            return
        _, st, _, dev, what = parts
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            doc = {"unreadable": msg.payload[:80].decode("utf-8", "replace")}
        if not isinstance(doc, dict):
            return
        with lock:
            rows.setdefault((st, dev), {"store": st, "device": dev})[what] = doc

    client = make_client(f"edge-ops-status-{uuid.uuid4().hex[:8]}", broker)
    client.on_connect = lambda c, *a: c.subscribe([(f"{base}/state", 1), (f"{base}/health", 1)])
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = on_message
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
    out = []
    for (st, dev), r in sorted(rows.items()):
        state, health = r.get("state", {}), r.get("health", {})
        ts = health.get("ts")
        out.append(
            {
                "store": st,
                "device": dev,
                "status": state.get("status", "unknown"),
                "version": state.get("version"),
                "config_hash": state.get("config_hash"),
                "outbox_depth": health.get("outbox_depth"),
                "oldest_pending_s": health.get("oldest_pending_s"),
                "clock_offset_s": health.get("clock_offset_s"),
                "dropped": health.get("dropped") or {},
                "sensors": health.get("sensors") or {},
                # Box clock; with a clock offset reported the age is only as good as that clock.
                "health_age_s": round(now - float(ts), 1) if isinstance(ts, int | float) else None,
            }
        )
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    online = [r for r in rows if r["status"] == "online"]
    depths = [r["outbox_depth"] for r in rows if isinstance(r["outbox_depth"], int)]
    return {
        "devices": len(rows),
        "online": len(online),
        "offline": [f"{r['store']}/{r['device']}" for r in rows if r["status"] != "online"],
        "max_outbox_depth": max(depths) if depths else None,
        "config_hashes": sorted({r["config_hash"] for r in rows if r["config_hash"]}),
    }
