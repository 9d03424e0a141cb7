"""Consent withdrawn while the shopper's greeting is on screen: a real agent, a real player in a
Kivy window, the withdrawal signed and pushed over the real downlink. The greeting leaves the
screen in under a second (the player's own state message and its frames say so), although the
personal item's minimum hold (10 s) is far from over."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contracts import topics
from contracts.signing import expires_in, sign_message
from demo import scenario
from tests.app.test_agent_process import write_config
from tests.app.test_profiles_agent import ALICE, Watcher, alice_agent
from tests.signage_ui.test_signage_player import load, share_of
from tests.signage_ui.test_signage_screen import logs, player, pngs
from tests.watching import wait_for

SCREEN = "screen-entrance"
PURPLE = (0xAD, 0x0D, 0x6A)  # BGR of the personal trail-shoes card (#6a0dad)


def retained(host: str, port: int, topic: str) -> list[bytes]:
    """What a client subscribing now gets as retained on ``topic`` (the broker sends retained
    messages right after the SUBACK; one flagged message or a second of quiet ends the wait)."""
    got: list[bytes] = []
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        if m.retain:
            got.append(bytes(m.payload))
            done.set()

    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.connect(host, port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    done.wait(1.0)
    c.loop_stop()
    c.disconnect()
    return got


def greeting(state: dict) -> bool:
    return state.get("content_id") == "trail-shoes:personalised"


@pytest.mark.ui
@pytest.mark.timeout(120)
def test_withdrawal_takes_the_greeting_off_the_screen_within_a_second_despite_its_hold(
    tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    pem, agent = alice_agent(tmp_path, broker.port)
    store, device = agent.cfg.store.store_id, agent.cfg.store.device_id
    # The player reads the store's file as shipped, on this broker.
    (tmp_path / "player").mkdir()
    cfg_path = write_config(tmp_path / "player", broker.port, device, speed=1)
    agent.handlers.apply_profiles(
        {"store_id": store, "version": 1, "profiles": scenario.profile_slice()}
    )
    agent.content.replace(scenario.CAMPAIGNS_V1)
    states = Watcher(broker.host, broker.port, topics.screen_state(store, SCREEN), json.loads)
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    loop_thread = threading.Thread(target=lambda: asyncio.run(agent.run()), daemon=True)
    try:
        with player(tmp_path, kivy_env, cfg_path, SCREEN) as shots:
            assert states.wait_for(lambda s: True, 0, 30), logs(tmp_path)
            agent.start_sync()
            assert agent.downlink is not None and agent.downlink._subscribed.wait(10)
            loop_thread.start()
            greeted = states.wait_for(greeting, 0, 20)
            assert greeted, [s for _, s in states.items]
            shown_at = greeted[0]
            # The greeting carries the way to aisle 4 now, so the map takes part of the card.
            assert wait_for(
                lambda: pngs(shots) and share_of(load(pngs(shots)[-1]), PURPLE) > 0.3, 10
            )

            # The greeting is not retained on the bus: a late subscriber never reads the name.
            kept = retained(broker.host, broker.port, topics.screen_cmd(store, SCREEN))
            assert not any(b"Alice" in m or b"personalised" in m for m in kept), kept

            sent = time.monotonic()
            assert sent - shown_at < 5  # well inside the greeting's 10 s hold
            msg = sign_message(
                pem,
                "profiles",
                {
                    "type": "delta",
                    "store_id": store,
                    "base_version": 1,
                    "version": 2,
                    "ops": [{"op": "consent", "profile_id": ALICE, "personalisation": False}],
                },
                store,
                device,
                2,
                expires_in(60),
            )
            pub.publish(topics.device_cmd(store, device, "profiles"), msg, qos=1)
            gone = states.wait_for(lambda s: not greeting(s), sent, 5)
            assert gone is not None, [s for _, s in states.items]
            took = gone[0] - sent
            print(f"withdrawal -> new frame: {took:.3f}s (hold was 10 s)")
            assert took < 1.0, f"took {took:.2f}s"
            # The frames agree: the purple greeting is gone from the newest screenshot.
            assert wait_for(lambda: share_of(load(pngs(shots)[-1]), PURPLE) < 0.05, 5)
            # And no personal command for Alice stays retained on the bus.
            assert agent.profiles.get(ALICE) is None
    finally:
        agent.stop()
        loop_thread.join(10)
        agent.close(flush_timeout_s=2)
        pub.loop_stop()
        pub.disconnect()
        states.close()
