"""The journey end to end without the screen: trace -> presence -> slice -> decision -> outbox
-> MQTT -> CDP sink, on a real broker, real SQLite files and the real camera pipeline."""

from __future__ import annotations

import asyncio
import json
import threading
import tomllib
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contracts import topics
from contracts.screen_protocol import ScreenCommand
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.clock import ScaledClock
from edge_agent.config import AgentConfig, parse_config
from edge_agent.sensing.ble.sources import ReplaySource

DEMO = Path(scenario.__file__).parent


def demo_config(
    tmp_path: Path, port: int, public_key: str, camera: bool, single_person_spot: bool = False
) -> AgentConfig:
    """The demo store on ``port``; ``single_person_spot``: its screen is one that only one
    person uses at a time, so without a camera it may still greet a shopper alone."""
    data = tomllib.loads((DEMO / "store.toml").read_text())
    data["central"]["port"] = port
    data["bus"]["port"] = port
    data["downlink"]["ops_public_key"] = public_key
    data["paths"]["state_dir"] = str(tmp_path / "var")
    if not camera:
        data.pop("camera")
    if single_person_spot:
        for screen in data["screens"]:
            screen["personal_without_crowd_sensor"] = True
    return parse_config(data, base_dir=DEMO)


class BusRecorder:
    """A subscriber on the in-store bus that records every message on ``topic``, decoded; not
    the empty payloads that clear a retained topic, and with ``live_only`` not the retained
    copies an earlier test left on the shared broker either."""

    def __init__(
        self, host: str, port: int, topic: str, decode=json.loads, *, live_only: bool = False
    ) -> None:
        self.messages: list = []
        self.ready = threading.Event()
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

        def on_message(c: object, u: object, m: mqtt.MQTTMessage) -> None:
            if m.payload and not (live_only and m.retain):
                self.messages.append(decode(m.payload))

        self.c.on_message = on_message
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.connect(host, port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()
        assert self.ready.wait(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


class ScreenWatcher(BusRecorder):
    """Stands where the signage player stands: records every command sent to the screen."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        super().__init__(host, port, topic, ScreenCommand.from_bytes)
        self.commands: list[ScreenCommand] = self.messages


def run_journey(
    tmp_path: Path,
    broker,
    *,
    camera: bool,
    speed: float,
    bundle: dict | None = None,
    single_person_spot: bool = False,
):
    from central.cdp_sink import CdpSink
    from contracts.signing import generate_keypair

    _, public = generate_keypair()
    cfg = demo_config(tmp_path, broker.port, public, camera, single_person_spot)
    sink = CdpSink(cfg.central, tmp_path / "cdp.db", group=None)
    sink.start()
    watcher = ScreenWatcher(
        broker.host, broker.port, topics.screen_cmd(cfg.store.store_id, "screen-entrance")
    )
    clock = ScaledClock(scenario.T0, speed)
    frames = None
    if camera:
        from edge_agent.sensing.camera.scene import SceneSource

        frames = SceneSource(scenario.CAMERA_TIMELINE, clock=lambda: clock.now() - scenario.T0)
    agent = Agent(
        cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock), frame_source=frames
    )
    agent.accepted_ids = []
    agent.profiles.load_snapshot(scenario.profile_slice(), version=1)
    agent.resolver.set_keys(agent.profiles.identity_keys())
    agent.content.replace(bundle or scenario.CAMPAIGNS_V1)
    try:
        agent.start_sync()
        asyncio.run(agent.run(until=scenario.T0 + scenario.DURATION_S))
        agent.close(flush_timeout_s=15)
        assert sink.wait_for(len(set(agent.accepted_ids)), timeout=15)
        return agent, set(sink.ids()), watcher.commands
    finally:
        watcher.close()
        sink.stop(end_session=True)


@pytest.mark.timeout(90)
def test_ble_only_journey_reaches_the_cdp_exactly_once(tmp_path: Path, broker) -> None:
    agent, at_cdp, commands = run_journey(tmp_path, broker, camera=False, speed=30.0)
    s = agent.stats
    assert s.adverts == len(scenario.generate())
    # Every visit entered the zone; the four from the slice resolved, "unknown-7" did not.
    assert s.zone_entries >= len(scenario.VISITS)
    assert s.shoppers_resolved >= 4 and s.unresolved_tokens >= 1
    assert s.decode_errors > 0  # the broken tag's truncated frames were reported, not fatal
    # One store beacon runs on a flat battery, and Carol (who agreed to staff alerts) comes for
    # her order: staff hear about each once, not on every advert or decision.
    assert s.staff_alerts == 2
    # Without a camera nothing tells that Alice is alone at the screen: her campaign runs,
    # anonymous, and says why. Nobody is named; Bob (no consent) never would be.
    shown = [c.content for c in commands if c.content]
    titles = [c.title for c in shown]
    assert "New trail shoes have landed" in titles
    assert not any(name in t for t in titles for name in ("Alice", "Bob", "Carol", "Dave"))
    trail = next(c for c in shown if c.campaign_id == "trail-shoes")
    assert "privacy:no-crowd-sensor" in trail.reasons
    # Zero loss, zero duplicates at the CDP.
    assert set(agent.accepted_ids) <= at_cdp
    assert len(agent.accepted_ids) == len(set(agent.accepted_ids))


@pytest.mark.timeout(120)
def test_journey_with_camera_keeps_names_off_a_crowd(tmp_path: Path, broker) -> None:
    agent, at_cdp, commands = run_journey(tmp_path, broker, camera=True, speed=12.0)
    titles = [c.content.title for c in commands if c.content]
    assert "Hi Alice! Your trail shoes are in" in titles
    # Carol arrives with two friends: the order-ready campaign runs, without her name.
    assert "Click & collect orders are ready" in titles
    assert not any("Carol" in t for t in titles)
    assert agent.stats.audience_samples > 10
    # KPIs on the box: people who came into view (the camera timeline has 1, 1, 2, 3 arrivals)
    # and the average stay of the shoppers who left the zone.
    kpis = agent.journey.kpis.snapshot()
    assert kpis["opportunities_to_see"] >= 4 and kpis["avg_dwell_s"] > 10
    assert set(agent.accepted_ids) <= at_cdp


@pytest.mark.timeout(90)
def test_no_raw_identifier_leaves_the_box(tmp_path: Path, broker) -> None:
    # With the winter campaign in force, Dave (no analytics consent) gets a personal offer, at
    # a screen made for one (no camera).
    agent, at_cdp, commands = run_journey(
        tmp_path,
        broker,
        camera=False,
        speed=30.0,
        bundle=scenario.CAMPAIGNS_V2,
        single_person_spot=True,
    )
    assert any(c.content and c.content.title.startswith("Dave,") for c in commands)
    # Everything the CDP stored, byte for byte (WAL included), and everything on the box's disk.
    raw = b"".join(
        p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "var" not in p.parts
    )
    addresses = {a.address for a in scenario.generate()}
    eids = {
        a.service_data[scenario.EDDYSTONE][2:10].hex()
        for a in scenario.generate()
        if scenario.EDDYSTONE in a.service_data
        and a.service_data[scenario.EDDYSTONE][:1] == b"\x30"
    }
    blob = raw.decode("latin-1").lower()
    assert not any(a.lower() in blob for a in addresses)
    assert not any(e in blob for e in eids)
    # Bob and Dave gave no analytics consent: their profile ids never reach the CDP.
    assert "cdp-p-1002" not in blob and "cdp-p-1004" not in blob
    assert "cdp-p-1001" in blob  # Alice did consent
