"""Proof of play on the agent's clock (issue 22, point 7): an agent replaying a recording at
6x lives in the recording's time, the real player in its own process keeps wall time, and the
impressions that reach the CDP line up with the offers the agent made, in the same time."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central.cdp_sink import CdpSink
from contracts import topics
from contracts.signing import generate_keypair
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.clock import ScaledClock, SystemClock, wall_to_clock
from edge_agent.sensing.ble.sources import ReplaySource
from tests.app.test_agent_journey import demo_config
from tests.app.test_agent_process import write_config
from tests.signage_ui.test_signage_screen import logs, player

SCREEN = "screen-entrance"
SPEED = 6.0
END_S = 70.0  # Alice's visit (18-62 s of the trace) and the start of Bob's


def cdp_events(db: Path, suffix: str) -> list[dict]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT body FROM events WHERE type LIKE ?", (f"%{suffix}",))
        return [json.loads(r[0]) for r in rows]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.ui
@pytest.mark.timeout(120)
def test_impressions_carry_the_agents_time_like_its_offers(
    tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    cfg = demo_config(tmp_path, broker.port, generate_keypair()[1], camera=False)
    (tmp_path / "player").mkdir()
    player_cfg = write_config(tmp_path / "player", broker.port, cfg.store.device_id, speed=SPEED)
    sink = CdpSink(cfg.central, tmp_path / "cdp.db", group=None)
    sink.start()
    clock = ScaledClock(scenario.T0, SPEED)
    agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
    agent.accepted_ids = []
    agent.profiles.load_snapshot(scenario.profile_slice(), version=1)
    agent.resolver.set_keys(agent.profiles.identity_keys())
    agent.content.replace(scenario.CAMPAIGNS_V1)
    try:
        agent.start_sync()
        with player(tmp_path, kivy_env, player_cfg, SCREEN):
            deadline = time.monotonic() + 30
            while agent.director.screen_status(SCREEN) != "online":
                assert time.monotonic() < deadline, logs(tmp_path)
                time.sleep(0.05)
            clock.restart()  # the recording starts now, with the player listening
            asyncio.run(agent.run(until=scenario.T0 + END_S))
            before = agent.stats.impressions_received
        # The player reported what it showed last on its way out: wait until the agent has it.
        deadline = time.monotonic() + 10
        while agent.stats.impressions_received == before and time.monotonic() < deadline:
            time.sleep(0.05)
        agent.close(flush_timeout_s=15)
        assert sink.wait_for(len(set(agent.accepted_ids)), timeout=15)
    finally:
        sink.stop(end_session=True)
        # The player's retained "offline" would greet the next test on this shared broker.
        clear = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        clear.connect(broker.host, broker.port)
        clear.loop_start()
        state = topics.screen_state(cfg.store.store_id, SCREEN)
        clear.publish(state, b"", qos=1, retain=True).wait_for_publish(5)
        clear.loop_stop()
        clear.disconnect()

    offers = cdp_events(tmp_path / "cdp.db", "offer.shown.v1")
    impressions = cdp_events(tmp_path / "cdp.db", "content.impression.v1")
    assert offers and len(impressions) >= len(offers), (offers, impressions)
    t0 = datetime.fromtimestamp(scenario.T0, at(offers[0]["time"]).tzinfo)
    for imp in impressions:
        start, end = at(imp["data"]["start"]), at(imp["data"]["end"])
        # In the recording's time, like every event of the agent (not today's wall clock)...
        assert t0 - timedelta(minutes=5) < start <= end <= at(imp["time"])
        assert at(imp["time"]) < t0 + timedelta(seconds=END_S + 60), imp
        # ...and its duration in the same seconds as its start and end.
        assert imp["data"]["duration_s"] == pytest.approx((end - start).total_seconds(), abs=0.01)
    # Each offer went on screen when the agent decided it: its impression starts then (a
    # command crosses the bus in well under a real second, here SPEED recording seconds).
    for offer in offers:
        shown = at(offer["time"])
        imp = next(i for i in impressions if i["data"]["content_id"] == offer["data"]["content_id"])
        assert abs((at(imp["data"]["start"]) - shown).total_seconds()) < SPEED, (offer, imp)
        # An offer stays on screen for its minimum hold, in recording seconds (10 s here).
        assert imp["data"]["duration_s"] >= 9.0, imp


def test_production_passes_the_players_times_on_exactly() -> None:
    # The agent on wall time has nothing to map: the inbox leaves every time as written.
    assert wall_to_clock(SystemClock()) is None


def test_a_scaled_clock_maps_wall_instants_linearly_and_the_same_each_time() -> None:
    clock = ScaledClock(scenario.T0, 4.0)
    to_clock = wall_to_clock(clock)
    assert to_clock is not None
    now = datetime.now(UTC)
    here = datetime.fromtimestamp(clock.now(), UTC)
    assert abs((to_clock(now) - here).total_seconds()) < 1.0
    later = now + timedelta(seconds=2.5)
    assert to_clock(later) - to_clock(now) == timedelta(seconds=10)
    assert to_clock(later) == to_clock(later)
    # A time without an offset, as a careless bus client may send it, is read as UTC.
    assert to_clock(later.replace(tzinfo=None)) == to_clock(later)
