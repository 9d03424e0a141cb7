"""The store live for central ops (``.../live``): people per zone and the open staff alerts, sent
by a real Uplink to a real mosquitto when they change, never faster than every
``MIN_INTERVAL_S``; an alert about a shopper without its text. StaffAlerts runs on a real SQLite
file with a recorder where the in-store bus stands (as in test_staff_alerts.py)."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

from contracts import topics
from contracts.mqtt import BrokerConfig, connect, make_client
from edge_agent.app import live_report
from edge_agent.app.live_report import LiveReport
from edge_agent.config import UplinkConfig
from sync.outbox import Outbox
from sync.uplink import Uplink
from tests.app.test_staff_alerts import Published, Wall, staff_alerts
from tests.watching import wait_for

STORE, DEVICE = "store-a", "box-1"


class Monotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_the_store_live_goes_to_central_when_it_changes_without_a_shopper_s_words(
    tmp_path: Path, broker
) -> None:
    bcfg = BrokerConfig(host=broker.host, port=broker.port)
    got: queue.Queue[dict] = queue.Queue()
    sub = make_client("t-live", bcfg)
    ready = threading.Event()
    sub.on_connect = lambda c, *a: c.subscribe(f"{topics.device_base(STORE, DEVICE)}/live", 1)
    sub.on_subscribe = lambda *a: ready.set()
    sub.on_message = lambda c, u, m: got.put({"retain": m.retain, **json.loads(m.payload)})
    connect(sub, bcfg, clean_start=True, session_expiry_s=0)
    sub.loop_start()
    assert ready.wait(10)
    ob = Outbox(tmp_path / "ob.db")
    up = Uplink(ob, bcfg, STORE, DEVICE, UplinkConfig(linger_s=0))
    up.start()
    alerts = staff_alerts(tmp_path, Published(), Wall())
    people = {"entrance": 2, "womens": 0}
    mono = Monotonic()
    live = LiveReport(people.__getitem__, alerts, ["entrance", "womens"], monotonic=mono)
    try:
        assert not live.tick()  # no uplink yet: nothing, and no error
        live.uplink = up
        assert wait_for(lambda: up.connected, 10)
        assert live.tick()
        first = got.get(timeout=10)
        assert first["zones"] == {"entrance": 2, "womens": 0} and first["alerts"] == []
        assert not live.tick()  # nothing changed (and too soon anyway)
        alerts.raise_alert("screen_offline", "Screen screen-1 is offline", screen_id="screen-1")
        alerts.raise_alert(
            "vip", "Anna Schmidt (gold) is at the shoes", subject="p-anna", zone_id="shoes",
            campaign_id="vip-welcome",
        )  # fmt: skip
        people["entrance"] = 3
        assert not live.tick()  # changed, but within MIN_INTERVAL_S of the last
        mono.t += live_report.MIN_INTERVAL_S
        assert live.tick()
        doc = got.get(timeout=10)
        assert doc["zones"]["entrance"] == 3
        by_kind = {a["kind"]: a for a in doc["alerts"]}
        assert by_kind["screen_offline"]["text"] == "Screen screen-1 is offline"
        assert by_kind["screen_offline"]["screen_id"] == "screen-1"
        vip = by_kind["vip"]
        assert "Anna" not in json.dumps(doc) and "p-anna" not in json.dumps(doc)
        assert vip["zone_id"] == "shoes" and vip["campaign_id"] == "vip-welcome"
        assert "stays in the store" in vip["text"]
        # Unchanged: sent again only after REFRESH_S, so its time says it is fresh.
        mono.t += live_report.MIN_INTERVAL_S
        assert not live.tick()
        mono.t += live_report.REFRESH_S
        assert live.tick() and got.get(timeout=10)["zones"]["entrance"] == 3
    finally:
        up.stop(flush_timeout_s=0)
        ob.close()
        alerts.shutdown()
        sub.disconnect()
        sub.loop_stop()
