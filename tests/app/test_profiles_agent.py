"""The slice inside the running agent, over the real downlink: a consent withdrawal takes the
shopper off the screen within a second and purges them; a gap is refused and asks for a
snapshot; the retention job purges expired profiles and health counts them."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contracts import topics
from contracts.screen_protocol import ScreenCommand
from contracts.signing import expires_in, generate_keypair, sign_message
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.clock import ScaledClock
from edge_agent.config import parse_config
from testbed.phones import AppPhone

DEMO = Path(scenario.__file__).parent
ALICE = "cdp-p-1001"


def AliceAtTheScreen(clock: ScaledClock) -> AppPhone:  # noqa: N802 - reads as the scene it is
    """A radio stand-in: Alice's phone advertising its current Eddystone-EID at 10 Hz."""
    return AppPhone(ALICE, clock)


class Watcher:
    """Messages on ``topic``, decoded, with their arrival times."""

    def __init__(self, host: str, port: int, topic: str, decode=ScreenCommand.from_bytes) -> None:
        self.items: list[tuple[float, Any]] = []
        ready = threading.Event()
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = lambda c, u, m: self.items.append((time.monotonic(), decode(m.payload)))
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.connect(host, port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()
        assert ready.wait(5)

    def wait_for(self, pred, after: float, timeout: float) -> tuple[float, Any] | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, cmd in list(self.items):
                if t >= after and pred(cmd):
                    return t, cmd
            time.sleep(0.01)
        return None

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def alice_agent(tmp_path: Path, port: int) -> tuple[bytes, Agent]:
    """The demo store's agent without a camera, Alice's phone at its screen, and the ops key
    that signs its downlink. The screen is a spot one person uses at a time, so it greets her
    without a camera (decide.py's privacy guard)."""
    pem, public = generate_keypair()
    data = tomllib.loads((DEMO / "store.toml").read_text())
    data["central"]["port"] = data["bus"]["port"] = port
    data["downlink"]["ops_public_key"] = public
    data["paths"]["state_dir"] = str(tmp_path / "var")
    data["profiles"] = {"key_file": str(tmp_path / "keys" / "profiles.key")}
    data.pop("camera", None)
    data["screens"][0]["personal_without_crowd_sensor"] = True
    cfg = parse_config(data, base_dir=DEMO)
    clock = ScaledClock(scenario.T0 + 20, 1.0)
    return pem, Agent(cfg, clock=clock, ble_source=AliceAtTheScreen(clock))


def _title(cmd: ScreenCommand) -> str:
    return cmd.content.title if cmd.content else ""


@pytest.mark.timeout(60)
def test_withdrawal_over_the_downlink_clears_the_screen_within_a_second(
    tmp_path: Path, broker
) -> None:
    pem, agent = alice_agent(tmp_path, broker.port)
    cfg = agent.cfg
    store, device = cfg.store.store_id, cfg.store.device_id
    rows = scenario.profile_slice() + [
        {"profile_id": "cdp-p-old", "expires_at": "2020-01-01T00:00:00Z"}
    ]
    agent.handlers.apply_profiles({"store_id": store, "version": 1, "profiles": rows})
    agent.content.replace(scenario.CAMPAIGNS_V1)
    assert agent.profiles.key_path == tmp_path / "keys" / "profiles.key"

    watcher = Watcher(broker.host, broker.port, topics.screen_cmd(store, "screen-entrance"))
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect(broker.host, broker.port)
    pub.loop_start()

    def push(version: int, body: dict) -> None:
        msg = sign_message(pem, "profiles", body, store, device, version, expires_in(60))
        pub.publish(topics.device_cmd(store, device, "profiles"), msg, qos=1).wait_for_publish(5)

    loop_thread = threading.Thread(target=lambda: asyncio.run(agent.run()), daemon=True)
    try:
        agent.start_sync()
        assert agent.downlink._subscribed.wait(10)
        loop_thread.start()
        hello = watcher.wait_for(lambda c: "Alice" in _title(c), 0, 15)
        assert hello is not None, [_title(c) for _, c in watcher.items]
        # The retention job ran at start: the expired profile is gone and counted.
        assert agent.profiles.get("cdp-p-old") is None
        assert agent.profiles.health()["profiles_expired_purged"] == "1"

        sent = time.monotonic()
        push(
            2,
            {
                "type": "delta",
                "store_id": store,
                "base_version": 1,
                "version": 2,
                "ops": [{"op": "consent", "profile_id": ALICE, "personalisation": False}],
            },
        )
        gone = watcher.wait_for(lambda c: "Alice" not in _title(c), sent, 5)
        assert gone is not None
        print(f"withdrawal -> screen: {gone[0] - sent:.3f}s")
        assert gone[0] - sent < 1.0, f"took {gone[0] - sent:.2f}s"
        assert gone[1].content is None or gone[1].content.variant != "personalised"
        # Purged locally: no profile, no keys, not resolvable, journey state forgotten.
        assert agent.profiles.get(ALICE) is None
        assert ALICE not in agent.profiles.identity_keys() and ALICE not in agent.resolver.keys
        res = agent.downlink.results[-1]
        assert (res.kind, res.version, res.accepted) == ("profiles", 2, True)
        time.sleep(0.5)
        assert not any("Alice" in _title(c) for t, c in watcher.items if t > gone[0])

        # A delta that skips a version is refused; the ack and health ask for a snapshot.
        push(
            4,
            {"type": "delta", "store_id": store, "base_version": 3, "version": 4, "ops": []},
        )
        deadline = time.monotonic() + 5
        while agent.downlink.results[-1].version != 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        res = agent.downlink.results[-1]
        assert res.version == 4 and not res.accepted and "snapshot needed" in res.reason
        assert agent.profiles.health()["profiles_snapshot_needed"] == "yes"
        assert agent.profiles.version == 2
    finally:
        agent.stop()
        loop_thread.join(10)
        pub.loop_stop()
        pub.disconnect()
        watcher.close()
        agent.close(flush_timeout_s=2)
    assert not loop_thread.is_alive()


def test_the_heartbeat_carries_the_slice_health(tmp_path: Path) -> None:
    data = tomllib.loads((DEMO / "store.toml").read_text())
    _, data["downlink"]["ops_public_key"] = generate_keypair()
    data["paths"]["state_dir"] = str(tmp_path / "var")
    data.pop("camera", None)
    cfg = parse_config(data, base_dir=DEMO)
    agent = Agent(cfg, clock=ScaledClock(scenario.T0, 1.0), ble_source=None)
    agent.handlers.apply_profiles(
        {"store_id": cfg.store.store_id, "version": 3, "profiles": scenario.profile_slice()}
    )
    events: list = []
    agent.journal.emit = events.append  # type: ignore[method-assign,assignment]
    agent.heartbeat()
    sensors = events[-1].sensors
    assert sensors["profiles"] == str(len(scenario.profile_slice()))
    assert sensors["profiles_version"] == "3" and sensors["profiles_snapshot_needed"] == "no"
    assert json.dumps(sensors).count("cdp-p-") == 0
    agent.close()
