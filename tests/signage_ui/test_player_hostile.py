"""Hostile input on the player's topics (its command topic and the store's emergency topic, a
retained poison before it starts): a real player in a Kivy window keeps playing, no hostile
message takes the screen over, and the next good command still reaches the frame."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from contracts import topics
from contracts.screen_protocol import Content, ScreenCommand
from tests.app.test_hostile_input import CORPUS
from tests.signage_ui.test_signage_player import (
    SCREEN,
    STORE,
    Bus,
    load,
    player,
    player_log,
    share_of,
    shots,
    wait_for,
)

pytestmark = [pytest.mark.ui, pytest.mark.timeout(180)]


def test_no_message_stops_the_player_or_takes_the_screen(
    tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    bus = Bus(broker.host, broker.port)
    emergency = topics.emergency(STORE)
    bus.c.publish(emergency, CORPUS["deep object"], qos=1, retain=True).wait_for_publish(5)
    n = 0
    try:
        with player(tmp_path, kivy_env, broker.port) as proc:
            assert wait_for(lambda: any(s.get("status") == "online" for s in bus.states)), (
                player_log(tmp_path)
            )
            for topic in (topics.screen_cmd(STORE, SCREEN), emergency):
                for what, payload in CORPUS.items():
                    bus.c.publish(topic, payload, qos=1).wait_for_publish(5)
                    n += 1
                    probe = Content(
                        content_id=f"probe:{n}", title=f"Probe {n}", background="#00a0a0"
                    )
                    sent = time.monotonic()
                    bus.send(ScreenCommand(kind="show", content=probe).to_bytes())
                    assert wait_for(
                        lambda n=n: bus.states and bus.states[-1].get("content_id") == f"probe:{n}",
                        10,
                    ), f"after {what} on {topic}: {bus.states[-1:]}\n{player_log(tmp_path)}"
                    assert time.monotonic() - sent < 5
                    assert proc.poll() is None, f"the player died after {what} on {topic}"
            # The frames agree: the last probe is on screen, not an emergency.
            assert wait_for(lambda: shots(tmp_path) and "probe_" in shots(tmp_path)[-1].name, 10)
            assert share_of(load(shots(tmp_path)[-1]), (0xA0, 0xA0, 0x00)) > 0.5
            assert all(s.get("mode") != "override" for s in bus.states)
    finally:
        bus.c.publish(emergency, b"", qos=1, retain=True).wait_for_publish(5)
        bus.close()
