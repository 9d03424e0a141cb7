"""Closing the loop through the real agent: receipts on the in-store bus become conversions at
the CDP, attributed to the offers shown before them, with consent rules kept; staff hear about
an order-ready shopper once; holdout and KPIs travel in events and heartbeats."""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts import topics
from contracts.events import SurveyAnswer, make_event
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.clock import ScaledClock
from edge_agent.sensing.ble.sources import ReplaySource
from tests.app.test_agent_journey import BusRecorder, demo_config

SPEED = 10.0


def receipt(rid: str, trace_s: float, loyalty: str | None) -> bytes:
    body = {
        "receipt": rid,
        "ts": datetime.fromtimestamp(scenario.T0 + trace_s, UTC).isoformat(),
        "till": "till-1",
        "total": 59.0,
        "items": [{"sku": "SKU-1", "qty": 1, "amount": 59.0}],
    }
    if loyalty:
        body["loyalty"] = loyalty
    return json.dumps(body).encode()


@pytest.mark.timeout(120)
def test_receipts_become_attributed_conversions_at_the_cdp(tmp_path: Path, broker) -> None:
    from central.cdp_sink import CdpSink
    from contracts.signing import generate_keypair

    _, public = generate_keypair()
    # Without a camera, a screen greets a shopper by name only at a spot made for one: the
    # personal offers whose conversions are attributed here need it.
    cfg = demo_config(tmp_path, broker.port, public, camera=False, single_person_spot=True)
    store = cfg.store.store_id
    sink = CdpSink(cfg.central, tmp_path / "cdp.db", group=None)
    sink.start()
    bus = BusRecorder(broker.host, broker.port, topics.alerts(store), live_only=True)
    device = cfg.store.device_id
    health = BusRecorder(broker.host, broker.port, topics.health(store, device))
    state = BusRecorder(broker.host, broker.port, topics.state(store, device))
    occupancy = BusRecorder(broker.host, broker.port, topics.zone_occupancy(store))
    clock = ScaledClock(scenario.T0, SPEED)
    agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
    agent.accepted_ids = []
    agent.profiles.load_snapshot(scenario.profile_slice(), version=1)
    agent.resolver.set_keys(agent.profiles.identity_keys())
    bundle = copy.deepcopy(scenario.CAMPAIGNS_V2)
    agent.content.replace(bundle)

    # The tills: (publish when the trace clock passes, what).
    plan = [
        (70, receipt("R-ALICE", 66, "cdp-p-1001")),  # after Alice's personal offer
        (72, receipt("R-ALICE", 66, "cdp-p-1001")),  # the till resends it
        (73, b"\xffnot a receipt"),  # line noise on the topic
        (118, receipt("R-ANON", 117, None)),  # no loyalty card, after Bob's anonymous offer
        (178, receipt("R-DAVE", 177, "cdp-p-1004")),  # Dave: no analytics consent
    ]
    kiosk = topics.kiosk_events(store, "kiosk-1")
    answer = SurveyAnswer(kiosk_id="kiosk-1", survey="nps", score=9, zone_id="entrance")
    surveys = [
        (150, make_event(answer, store_id=store, device_id=cfg.store.device_id).to_json().encode()),
        # A kiosk configured for another box: refused on the bus (the CDP would refuse it).
        (150.5, make_event(answer, store_id=store, device_id="kiosk-1").to_json().encode()),
        # An effort score out of its 1..7 scale: refused on the bus, never stored.
        (
            151,
            make_event(answer, store_id=store, device_id="kiosk-1")
            .to_json()
            .encode()
            .replace(b'"nps"', b'"effort"')
            .replace(b'"score":9', b'"score":0'),
        ),
    ]

    def tills() -> None:
        for at, topic, payload in sorted(
            [(at, topics.pos_receipts(store), p) for at, p in plan]
            + [(at, kiosk, p) for at, p in surveys]
        ):
            while clock.now() < scenario.T0 + at and not stop.is_set():
                time.sleep(0.02)
            bus.c.publish(topic, payload, qos=1)

    stop = threading.Event()
    t = threading.Thread(target=tills, daemon=True)
    try:
        agent.start_sync()
        t.start()
        asyncio.run(agent.run(until=scenario.T0 + scenario.DURATION_S + 2))
        agent.close(flush_timeout_s=15)
        assert sink.wait_for(len(set(agent.accepted_ids)), timeout=15)
    finally:
        stop.set()
        t.join(5)
        for recorder in (bus, health, state, occupancy):
            recorder.close()
        sink.stop(end_session=True)

    db = sqlite3.connect(tmp_path / "cdp.db")
    rows = db.execute("SELECT body FROM events WHERE type LIKE '%conversion.v1'").fetchall()
    convs = {e["data"]["receipt_id"]: e["data"] for e in (json.loads(r[0]) for r in rows)}
    assert set(convs) == {"R-ALICE", "R-ANON", "R-DAVE"}  # each receipt once, noise refused
    assert agent.receipts.duplicates == 1 and agent.receipts.refused == 1

    alice = convs["R-ALICE"]
    assert alice["profile_id"] == "cdp-p-1001"
    assert alice["attributed_campaign_id"] == "trail-shoes" and alice["group"] == "exposed"
    assert alice["touches"] >= 1

    anon = convs["R-ANON"]
    assert anon.get("profile_id") is None and anon.get("attributed_campaign_id") is not None

    dave = convs["R-DAVE"]
    # Dave accepted personal offers but not tracking: attributed on the box, no id at the CDP.
    assert dave.get("profile_id") is None
    assert dave["attributed_campaign_id"] == "winter-sale" and dave["touches"] >= 1

    # Carol comes for her ready order: one alert for staff, with what they need to serve her.
    order_alerts = [a for a in bus.messages if a.get("campaign_id") == "order-ready"]
    assert len(order_alerts) == 1
    assert order_alerts[0]["text"] == "Carol is here for order CC-4711 (counter 2)"

    # Heartbeats carry the day's KPIs: offers shown and conversions per campaign, no ids.
    beats = [
        json.loads(r[0])["data"]
        for r in db.execute("SELECT body FROM events WHERE type LIKE '%device.heartbeat.v1'")
    ]
    kpis = beats[-1]["kpis"]
    assert kpis["offers_shown"] >= 3 and kpis["conversions"] == 3
    assert kpis["campaigns"]["trail-shoes"]["exposed_conversions"] == 1
    assert "cdp-p-1004" not in json.dumps(beats)
    # The kiosk's NPS answer reached the CDP and the KPIs; the out-of-scale one did neither.
    answers = db.execute("SELECT body FROM events WHERE type LIKE '%survey.answer.v1'").fetchall()
    assert [json.loads(r[0])["data"]["score"] for r in answers] == [9]
    assert kpis["nps_answers"] == 1 and agent.stats.bus_rejects == 2
    # Central sees the box live too: retained health (the heartbeat plus the uplink's state)
    # and a birth naming the config, without reading the event history.
    assert health.messages and health.messages[-1]["outbox_depth"] >= 0
    assert health.messages[-1]["uplink"]["connected"] is True
    assert health.messages[-1]["kpis"]["conversions"] >= 1
    # Kiosks see live occupancy per zone: somebody was in the entrance zone at some point.
    zones = {m["zone_id"] for m in occupancy.messages}
    assert zones <= {z.id for z in cfg.zones} and "entrance" in zones
    assert max(m["people"] for m in occupancy.messages if m["zone_id"] == "entrance") >= 1
    births = [m for m in state.messages if m.get("status") == "online"]  # not earlier retained
    assert births and len(births[-1]["config_hash"]) == 12
    # The clock offset, measured from the CDP's confirmations: same machine, so about zero.
    offsets = [b for b in beats if "clock_offset_s" in b]
    assert offsets, "no heartbeat measured the clock offset"
    assert abs(offsets[-1]["clock_offset_s"]) <= offsets[-1]["clock_uncertainty_s"] + 0.05


@pytest.mark.timeout(60)
def test_operational_alerts_a_dark_screen_and_a_dead_camera_once_each(
    tmp_path: Path, broker
) -> None:
    from contracts.signing import generate_keypair

    _, public = generate_keypair()
    cfg = demo_config(tmp_path, broker.port, public, camera=True)
    store = cfg.store.store_id
    bus = BusRecorder(broker.host, broker.port, topics.alerts(store), live_only=True)
    clock = ScaledClock(scenario.T0, SPEED)
    # The camera is configured but could not be opened: no frame source at all.
    agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
    state = topics.screen_state(store, "screen-entrance")
    try:
        agent.start_sync()

        def player_dies() -> None:
            time.sleep(0.5)
            bus.c.publish(state, json.dumps({"status": "online"}), qos=1, retain=True)
            time.sleep(0.3)
            # What the broker publishes for a player that vanished (its last will), twice.
            for _ in range(2):
                bus.c.publish(state, json.dumps({"status": "offline"}), qos=1, retain=True)
                time.sleep(0.2)

        t = threading.Thread(target=player_dies, daemon=True)
        t.start()
        asyncio.run(agent.run(until=scenario.T0 + 40))
        t.join(5)
        agent.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(bus.messages) < 2:
            time.sleep(0.05)
    finally:
        bus.c.publish(state, b"", qos=1, retain=True)  # clear the retained state
        bus.close()
    kinds = [a["kind"] for a in bus.messages]
    assert kinds.count("screen_offline") == 1 and kinds.count("camera_lost") == 1
    cam = next(a for a in bus.messages if a["kind"] == "camera_lost")
    assert cam["screen_id"] == "screen-entrance" and "personal content is off" in cam["text"]


def test_a_campaign_this_store_cannot_run_is_flagged_when_applied(tmp_path: Path, caplog) -> None:
    from contracts.signing import generate_keypair

    _, public = generate_keypair()
    cfg = demo_config(tmp_path, 1883, public, camera=False)
    agent = Agent(cfg, ble_source=None)
    try:
        bundle = copy.deepcopy(scenario.CAMPAIGNS_V1)
        bundle["version"] = 7
        bundle["campaigns"].append(
            {"id": "other-store", "zones": ["z-nowhere"], "anonymous": {"title": "Hi"}}
        )
        with caplog.at_level("WARNING"):
            agent.handlers.apply_campaigns(bundle)
        assert agent.content.bundle.version == 7  # the rest of the bundle is in force
        assert agent.campaign_warnings == [
            "other-store: none of its zones (z-nowhere) is in this store"
        ]
        assert "campaigns v7: other-store: none of its zones" in caplog.text
    finally:
        agent.close()
