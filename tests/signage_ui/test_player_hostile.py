"""Hostile input on the player's topics (its command topic and the store's emergency topic, a
retained poison before it starts): a real player in a Kivy window keeps playing, no hostile
message takes the screen over, and the next good command still reaches the frame."""

from __future__ import annotations

import json
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


def _way_command(n: int, **over: object) -> bytes:
    """A show command whose wayfinding payload is the sample one with ``over`` changed."""
    way: dict[str, object] = {
        "levels": [
            {
                "id": "L0",
                "shapes": [{"kind": "floor", "ring": [[0, 0], [10, 0], [10, 10], [0, 10]]}],
                "route": [[1, 1], [9, 9]],
            }
        ],
        "here": [1, 1],
        "here_level": "L0",
        "facing_deg": 45,
        "destination": [9, 9],
        "destination_level": "L0",
        "destination_label": "Aisle 4",
        "distance_m": 11.3,
        "walking_time_s": 9,
        "steps": ["11 m ahead"],
    }
    way.update(over)
    content = {"content_id": f"way:{n}", "title": "Way", "wayfinding": way}
    return json.dumps({"kind": "show", "content": content}).encode()


# Refused by the contract: each must leave the screen as it was.
REFUSED: dict[str, dict[str, object]] = {
    "NaN coordinate": {"here": [float("nan"), 1]},
    "infinite route point": {
        "levels": [{"id": "L0", "shapes": [], "route": [[1, 1], [float("inf"), 0]]}]
    },
    "far coordinate": {"destination": [1e12, 0]},
    "dangling level": {"here_level": "L7"},
    "60,000 vertices": {
        "levels": [
            {
                "id": "L0",
                "shapes": [{"kind": "shelf", "ring": [[i % 7, i % 5] for i in range(250)]}] * 240,
                "route": [[1, 1]],
            }
        ]
    },
    "negative distance": {"distance_m": -1},
    "steps not text": {"steps": [{"text": "x"}]},
    "facing 1e308": {"facing_deg": 1e308},
}
# Valid but degenerate: drawn (or drawn empty) without taking the player down.
DEGENERATE: dict[str, dict[str, object]] = {
    "a ring of one point thrice": {
        "levels": [
            {"id": "L0", "shapes": [{"kind": "floor", "ring": [[2, 2]] * 3}], "route": [[2, 2]]}
        ],
        "here": [2, 2],
        "destination": [2, 2],
    },
    "self-crossing ring, no route length": {
        "levels": [
            {
                "id": "L0",
                "shapes": [{"kind": "room", "ring": [[0, 0], [5, 5], [5, 0], [0, 5]]}],
                "route": [[1, 1]],
            }
        ],
        "destination": [1, 1],
    },
    "the shopper far off the plan": {"here": [4900, -4900]},
}


def test_hostile_wayfinding_is_refused_and_degenerate_maps_are_survived(
    tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    bus = Bus(broker.host, broker.port)
    n = 0
    try:
        with player(tmp_path, kivy_env, broker.port) as proc:
            assert wait_for(lambda: any(s.get("status") == "online" for s in bus.states)), (
                player_log(tmp_path)
            )
            for what, over in [*REFUSED.items(), *DEGENERATE.items()]:
                n += 1
                bus.send(_way_command(n, **over))
                if what in DEGENERATE:
                    assert wait_for(
                        lambda n=n: bus.states and bus.states[-1].get("content_id") == f"way:{n}",
                        10,
                    ), f"{what}: {player_log(tmp_path)}"
                probe = Content(content_id=f"probe:{n}", title=f"Probe {n}", background="#00a0a0")
                bus.send(ScreenCommand(kind="show", content=probe).to_bytes())
                assert wait_for(
                    lambda n=n: bus.states and bus.states[-1].get("content_id") == f"probe:{n}",
                    10,
                ), f"after {what}: {bus.states[-1:]}\n{player_log(tmp_path)}"
                assert proc.poll() is None, f"the player died after {what}"
            shown = {s.get("content_id") for s in bus.states}
            assert not any(f"way:{i}" in shown for i in range(1, len(REFUSED) + 1))
            # Each refusal is one line in the player's log, naming the field at fault.
            log = player_log(tmp_path)
            assert "Traceback" not in log
            refused = log.count("ignored a malformed command: content.wayfinding")
            assert refused == len(REFUSED), log
    finally:
        bus.close()
