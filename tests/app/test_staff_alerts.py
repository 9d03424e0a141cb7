"""Staff alerts stay open until acknowledged (issue 22, point 4): kept in the agent's SQLite file,
retained on the in-store bus one topic per alert, published again after a restart, bounded,
expired, never about the same shopper twice a day, and no profile id on the bus or the disk.

The restart tests run the real agent (demo trace, slice and campaigns) twice on one state
directory against a real mosquitto; the rules run ``StaffAlerts`` on a real SQLite file with a
recorder standing where the bus stands (the ``Publisher`` seam)."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contracts import topics
from contracts.signing import generate_keypair
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.app.alerts import StaffAlerts
from edge_agent.clock import ScaledClock
from edge_agent.config import AlertsConfig
from edge_agent.sensing.ble.sources import ReplaySource
from signage_ui.kiosk_model import ack_message
from sync import sqlite_guard
from tests.app.test_agent_journey import demo_config
from tests.sqlite_pages import overwrite, table_leaves
from tests.watching import wait_for

STORE, DEVICE = "store-a", "box-1"


class Published:
    """Stands where the in-store bus stands: every publish, in order."""

    def __init__(self) -> None:
        self.msgs: list[tuple[str, bytes, bool]] = []

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> bool:
        self.msgs.append((topic, payload.encode() if isinstance(payload, str) else payload, retain))
        return True

    def retained(self) -> dict[str, dict]:
        """What a broker would retain now, by alert id."""
        out: dict[str, bytes] = {}
        for topic, payload, retain in self.msgs:
            if retain:
                out[topic.rsplit("/", 1)[1]] = payload
        return {k: json.loads(v) for k, v in out.items() if v}


class Wall:
    def __init__(self, t: float = 1_790_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def staff_alerts(tmp_path: Path, bus: Published, wall: Wall, **cfg: float) -> StaffAlerts:
    return StaffAlerts(
        bus, STORE, DEVICE, tmp_path / "var" / "alerts.db", AlertsConfig(**cfg), wall=wall
    )


def on_disk(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


# ---- the rules -----------------------------------------------------------------------------


def test_open_alerts_survive_a_restart_and_close_only_when_acknowledged(tmp_path: Path) -> None:
    bus, wall = Published(), Wall()
    alerts = staff_alerts(tmp_path, bus, wall)
    help_id = alerts.raise_alert("assistance_wanted", "Assistance wanted in shoes", zone_id="z")
    batt_id = alerts.raise_alert("beacon_battery_low", "Beacon b1 low", beacon="b1")
    assert help_id and batt_id
    # Retained, one topic each, with the box's device id (each box clears only its own).
    assert set(bus.retained()) == {help_id, batt_id}
    assert all(topic == topics.alerts(STORE, topic.rsplit("/", 1)[1]) for topic, *_ in bus.msgs)
    assert bus.retained()[help_id]["device_id"] == DEVICE
    alerts.shutdown()

    bus2 = Published()
    again = staff_alerts(tmp_path, bus2, wall)
    assert [a["alert_id"] for a in again.open_alerts()] == [help_id, batt_id]
    again.republish()  # what every connect to the bus does
    assert bus2.retained() == bus.retained()
    # An ack from any kiosk closes it: the retained copy is cleared, and it is gone from disk.
    again.on_ack(topics.alert_acks(STORE), ack_message(help_id, "kiosk-2"))
    assert bus2.msgs[-1] == (topics.alerts(STORE, help_id), b"", True)
    again.on_ack(topics.alert_acks(STORE), ack_message("not-open", "kiosk-2"))  # no-op
    assert len([m for m in bus2.msgs if not m[1]]) == 1
    with pytest.raises(ValueError):
        again.on_ack(topics.alert_acks(STORE), b'{"kiosk_id": "k"}')
    again.shutdown()
    assert [a["alert_id"] for a in staff_alerts(tmp_path, Published(), wall).open_alerts()] == [
        batt_id
    ]


def test_the_same_thing_is_not_raised_twice_while_open(tmp_path: Path) -> None:
    bus, wall = Published(), Wall()
    alerts = staff_alerts(tmp_path, bus, wall)
    first = alerts.raise_alert("screen_offline", "Screen door is offline", screen_id="door")
    assert first and alerts.raised == 1
    assert alerts.raise_alert("screen_offline", "Screen door is offline", screen_id="door") is None
    assert alerts.raise_alert("screen_offline", "Screen boots is offline", screen_id="boots")
    alerts.shutdown()
    # A restarted agent finds the same dark screen: still open, no news.
    again = staff_alerts(tmp_path, bus, wall)
    assert again.raise_alert("screen_offline", "Screen door is offline", screen_id="door") is None
    again.close(first, "acknowledged by kiosk-1")
    assert again.raise_alert("screen_offline", "Screen door is offline", screen_id="door")


def test_a_campaign_alert_once_per_shopper_campaign_and_day_across_restarts(
    tmp_path: Path,
) -> None:
    bus, wall = Published(), Wall()
    alerts = staff_alerts(tmp_path, bus, wall)
    day = "2026-11-20"
    key = ("order-ready", "cdp-p-1003")
    aid = alerts.raise_once(key, day, "order_ready", "Carol is here", subject="cdp-p-1003")
    assert aid is not None
    alerts.close(aid, "acknowledged by kiosk-1")  # acknowledged: still once a day
    alerts.shutdown()
    again = staff_alerts(tmp_path, bus, wall)
    assert again.raise_once(key, day, "order_ready", "Carol is here", subject="cdp-p-1003") is None
    assert again.raise_once(("vip", "cdp-p-1003"), day, "vip", "Carol (gold) is here")
    again.new_day("2026-11-21")
    again.shutdown()
    third = staff_alerts(tmp_path, bus, wall)
    assert third.raise_once(key, "2026-11-21", "order_ready", "Carol is here")
    # No profile id on the bus, nor on the disk: the shopper is a hash there.
    assert not any(b"cdp-p-1003" in p for _, p, _ in bus.msgs)
    third.shutdown()
    assert b"cdp-p-1003" not in on_disk(tmp_path / "var" / "alerts.db")


def test_no_profile_id_goes_on_the_bus(tmp_path: Path, caplog) -> None:
    bus = Published()
    alerts = staff_alerts(tmp_path, bus, Wall())
    with caplog.at_level(logging.ERROR):
        alerts.raise_alert("vip", "A VIP is here", profile_id="cdp-p-1001", zone_id="z")
    assert bus.msgs and not any(b"cdp-p-1001" in p for _, p, _ in bus.msgs)
    assert "field profile_id dropped" in caplog.text


def test_a_forgotten_shopper_s_alerts_close_and_their_keys_go(tmp_path: Path) -> None:
    bus = Published()
    alerts = staff_alerts(tmp_path, bus, Wall())
    key = ("order-ready", "cdp-p-1003")
    carol = alerts.raise_once(key, "d", "order_ready", "Carol is here", subject="cdp-p-1003")
    other = alerts.raise_alert("assistance_wanted", "Help in shoes")
    assert carol and other
    alerts.forget({"cdp-p-1003", "cdp-p-9999"})  # consent withdrawn
    assert set(bus.retained()) == {other}
    # Her key went with her: were she to consent again today, staff would hear of her.
    assert alerts.raise_once(key, "d", "order_ready", "Carol is here", subject="cdp-p-1003")
    alerts.shutdown()


def test_bounded_the_oldest_closes_with_a_log_line(tmp_path: Path, caplog) -> None:
    bus, wall = Published(), Wall()
    alerts = staff_alerts(tmp_path, bus, wall, max_open=3)
    ids = []
    with caplog.at_level(logging.WARNING):
        for i in range(5):
            wall.t += 1
            ids.append(alerts.raise_alert("assistance_wanted", f"help {i}"))
    assert [a["alert_id"] for a in alerts.open_alerts()] == ids[2:]
    assert set(bus.retained()) == set(ids[2:])
    assert caplog.text.count("more than 3 open: closed the oldest") == 2
    assert ids[0] in caplog.text and ids[1] in caplog.text


def test_unacknowledged_alerts_expire(tmp_path: Path) -> None:
    bus, wall = Published(), Wall()
    alerts = staff_alerts(tmp_path, bus, wall, max_age_s=3600)
    old = alerts.raise_alert("assistance_wanted", "help")
    wall.t += 1800
    young = alerts.raise_alert("order_ready", "Carol is here")
    wall.t += 1801
    assert alerts.expire() == 1
    assert set(bus.retained()) == {young}
    assert bus.msgs[-1] == (topics.alerts(STORE, old), b"", True)
    alerts.shutdown()
    # Expired while the agent was down: closed at start.
    wall.t += 3600
    assert staff_alerts(tmp_path, Published(), wall, max_age_s=3600).open_alerts() == []


def test_a_retained_alert_of_this_box_it_no_longer_holds_is_cleared(tmp_path: Path) -> None:
    bus = Published()
    alerts = staff_alerts(tmp_path, bus, Wall())
    mine = alerts.raise_alert("assistance_wanted", "help")
    assert mine
    n = len(bus.msgs)
    stale = json.dumps({"alert_id": "s1", "kind": "x", "text": "", "ts": "", "device_id": DEVICE})
    other = json.dumps({"alert_id": "o1", "kind": "x", "text": "", "ts": "", "device_id": "box-2"})
    alerts.on_alert(topics.alerts(STORE, mine), bus.msgs[-1][1])  # our own echo
    alerts.on_alert(topics.alerts(STORE, "o1"), other.encode())  # another box's
    alerts.on_alert(topics.alerts(STORE, "junk"), b"[" * 100_000)
    alerts.on_alert(topics.alerts(STORE, "s1"), b"")
    assert len(bus.msgs) == n
    alerts.on_alert(topics.alerts(STORE, "s1"), stale.encode())  # ours, from a lost file
    assert bus.msgs[n:] == [(topics.alerts(STORE, "s1"), b"", True)]


def test_a_full_disk_keeps_alerts_in_memory_and_the_file_catches_up(tmp_path: Path, caplog) -> None:
    bus, wall = Published(), Wall()
    alerts = staff_alerts(tmp_path, bus, wall)
    db = alerts.store._db
    assert db is not None
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    # SQLite's own "database or disk is full", as on a full card.
    db.execute(f"PRAGMA max_page_count = {pages}")
    with caplog.at_level(logging.ERROR):
        big = alerts.raise_alert("assistance_wanted", "x" * 50_000)
        small = alerts.raise_alert("assistance_wanted", "y" * 50_000)
    assert big and small and set(bus.retained()) == {big, small}  # the kiosks still hear
    assert caplog.text.count("cannot write") == 1  # said once, not at every alert
    assert alerts.health()["alerts_store"].startswith("memory only: database or disk is full")
    db.execute("PRAGMA max_page_count = 1000000")  # room again
    third = alerts.raise_alert("order_ready", "Carol is here")
    assert "alerts_store" not in alerts.health()
    alerts.shutdown()
    again = staff_alerts(tmp_path, Published(), wall)
    assert [a["alert_id"] for a in again.open_alerts()] == [big, small, third]


def test_a_damaged_file_is_set_aside_and_what_can_be_read_kept(tmp_path: Path) -> None:
    bus, wall = Published(), Wall()
    alerts = staff_alerts(tmp_path, bus, wall)
    for i in range(40):
        wall.t += 1
        alerts.raise_alert("assistance_wanted", f"help {i} " + "x" * 400)
    alerts.shutdown()
    path = tmp_path / "var" / "alerts.db"
    leaves = table_leaves(path, "open_alerts")
    assert len(leaves) >= 3
    hit = leaves[1]
    overwrite(path, hit.offset + 8, 64, seed=3)  # the page's cell pointers
    again = staff_alerts(tmp_path, Published(), wall)
    assert again.store.recovered is not None
    assert len(sqlite_guard.aside_sets(path)) == 1
    kept = len(again.open_alerts())
    # The damaged page's rows are lost (and the scan past it may lose a neighbour), no more.
    assert 40 - len(hit.cells) - 1 <= kept < 40
    assert again.health()["alerts_recovered"]
    again.shutdown()
    # Not a database at all: set aside, the agent starts with none.
    path.write_bytes(b"not a database, " * 512)
    assert staff_alerts(tmp_path, Published(), wall).open_alerts() == []
    assert len(sqlite_guard.aside_sets(path)) == 2


def test_a_row_that_is_not_what_was_written_is_left_behind(tmp_path: Path) -> None:
    bus, wall = Published(), Wall()
    alerts = staff_alerts(tmp_path, bus, wall)
    good = alerts.raise_alert("assistance_wanted", "help")
    alerts.shutdown()
    path = tmp_path / "var" / "alerts.db"
    with sqlite3.connect(path) as db:  # text that is not UTF-8: quick_check cannot see it
        db.execute("INSERT INTO open_alerts VALUES ('bad', 1, CAST(x'ff' AS TEXT), NULL, NULL)")
    db.close()
    again = staff_alerts(tmp_path, Published(), wall)
    assert [a["alert_id"] for a in again.open_alerts()] == [good]
    assert again.store.recovered is not None and len(sqlite_guard.aside_sets(path)) == 1


# ---- the real agent, restarted -------------------------------------------------------------


class AlertWatcher:
    """A kiosk-like subscriber to every alert topic of the store: (topic, payload, retained)."""

    def __init__(self, host: str, port: int, store: str) -> None:
        self.msgs: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

        def on_message(_c: object, _u: object, m: mqtt.MQTTMessage) -> None:
            with self.lock:
                self.msgs.append((m.topic, bytes(m.payload), bool(m.retain)))

        self.c.on_message = on_message
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.connect(host, port)
        self.c.subscribe(topics.alerts(store), qos=1)
        self.c.loop_start()
        assert ready.wait(5)

    def open(self) -> dict[str, dict]:
        """Alert id -> alert, as a kiosk would have them now."""
        out: dict[str, bytes] = {}
        with self.lock:
            for topic, payload, _ in self.msgs:
                out[topic.rsplit("/", 1)[1]] = payload
        return {k: json.loads(v) for k, v in out.items() if v}

    def raised_live(self) -> list[str]:
        """Alert ids first seen as a live (not retained) message."""
        with self.lock:
            return [t.rsplit("/", 1)[1] for t, p, r in self.msgs if p and not r]

    def ack(self, store: str, alert_id: str) -> None:
        self.c.publish(topics.alert_acks(store), ack_message(alert_id, "kiosk-1"), qos=1)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def replay(cfg, *, first: bool, speed: float = 30.0) -> Agent:
    clock = ScaledClock(scenario.T0, speed)
    agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
    if first:  # the slice and campaigns are on the box's disk from then on
        agent.profiles.load_snapshot(scenario.profile_slice(), version=1)
        agent.content.replace(scenario.CAMPAIGNS_V1)
    agent.resolver.set_keys(agent.profiles.identity_keys())
    return agent


@pytest.mark.timeout(120)
def test_a_restarted_agent_publishes_open_alerts_again_and_does_not_alert_twice(
    tmp_path: Path, fresh_broker
) -> None:
    cfg = demo_config(tmp_path, fresh_broker.port, generate_keypair()[1], camera=False)
    store = cfg.store.store_id
    watch = AlertWatcher(fresh_broker.host, fresh_broker.port, store)
    agent = replay(cfg, first=True)
    try:
        agent.start_sync()
        asyncio.run(agent.run(until=scenario.T0 + scenario.DURATION_S))
        # A flat beacon and Carol at the counter for her order: two alerts, both still open.
        assert agent.stats.staff_alerts == 2
        first = {a["alert_id"]: a for a in agent.alerts.open_alerts()}
        assert sorted(a["kind"] for a in first.values()) == ["beacon_battery_low", "order_ready"]
        assert wait_for(lambda: watch.open() == first, 10)
    finally:
        agent.close(flush_timeout_s=0)
        watch.close()
    order = next(a for a in first.values() if a["kind"] == "order_ready")
    assert order["text"] == "Carol is here for order CC-4711 (counter 2)"
    # Neither the bus nor the file has a profile id.
    ids = [p["profile_id"] for p in scenario.profile_slice()]
    blob = on_disk(cfg.paths_resolved.alerts_db) + json.dumps(first).encode()
    assert not any(pid.encode() in blob for pid in ids)

    # The broker restarts and has lost every retained message (no persistence file).
    fresh_broker.stop()
    (fresh_broker.workdir / "mosquitto.db").unlink(missing_ok=True)
    fresh_broker.start()
    watch = AlertWatcher(fresh_broker.host, fresh_broker.port, store)
    agent = replay(cfg, first=False)
    try:
        assert {a["alert_id"] for a in agent.alerts.open_alerts()} == set(first)
        agent.start_sync()
        # Published again as soon as the agent is on the bus.
        assert wait_for(lambda: watch.open() == first, 10), watch.open()
        # Staff acknowledge Carol's alert on a kiosk; the day replays (she comes back): no
        # second alert about her, and the flat beacon's alert, still open, is not raised again.
        watch.ack(store, order["alert_id"])
        assert wait_for(lambda: order["alert_id"] not in watch.open(), 10)
        asyncio.run(agent.run(until=scenario.T0 + scenario.DURATION_S))
        assert agent.stats.staff_alerts == 0
        assert set(watch.raised_live()) <= set(first)  # republished, nothing new
        assert list(watch.open()) == [a for a in first if a != order["alert_id"]]
    finally:
        agent.close(flush_timeout_s=0)
        watch.close()
    with sqlite3.connect(cfg.paths_resolved.alerts_db) as db:
        assert db.execute("SELECT count(*) FROM open_alerts").fetchone()[0] == 1
