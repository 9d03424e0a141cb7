"""The signage player as a person sees it: a real Kivy window on Xvfb, screenshots checked
pixel by pixel, commands and impressions over a real mosquitto."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import topics
from edge_agent.broker import free_port
from edge_agent.events import parse_event
from edge_agent.screen_protocol import Content, ScreenCommand

pytestmark = [pytest.mark.ui, pytest.mark.timeout(60)]

DEMO = Path(__file__).parents[1] / "edge_agent" / "demo"
STORE, SCREEN = "store-0042", "screen-entrance"


def player_config(tmp_path: Path, port: int) -> Path:
    text = (DEMO / "store.toml").read_text().replace("port = 1883", f"port = {port}")
    text = text.replace('replay_file = "data/', f'replay_file = "{DEMO}/data/')
    text = text.replace('state_dir = "var"', f'state_dir = "{tmp_path}/var"')
    p = tmp_path / "store.toml"
    p.write_text(text)
    return p


@contextmanager
def player(tmp_path: Path, env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    exe = os.path.join(os.path.dirname(sys.executable), "signage-ui")
    log = open(tmp_path / "player.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            exe,
            "-c",
            str(player_config(tmp_path, port)),
            "--screen",
            SCREEN,
            "--screenshot-dir",
            str(tmp_path / "shots"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


class Bus:
    """The agent's side of the in-store bus: sends commands, collects impressions and state."""

    def __init__(self, broker) -> None:
        self.events: list[dict] = []
        self.states: list[dict] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(
            [(topics.screen_events(STORE, SCREEN), 1), (topics.screen_state(STORE, SCREEN), 1)]
        )
        self.c.loop_start()
        assert self.ready.wait(5)

    def _on_message(self, c, u, msg) -> None:
        target = self.events if msg.topic.endswith("/events") else self.states
        target.append(json.loads(msg.payload))

    def send(self, payload: bytes) -> None:
        self.c.publish(topics.screen_cmd(STORE, SCREEN), payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def wait_for(pred, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def shots(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "shots").glob("*.png"))


def dominant_bgr(path: Path) -> tuple[int, int, int]:
    img = cv2.imread(str(path))
    assert img is not None, path
    colours, counts = np.unique(img.reshape(-1, 3), axis=0, return_counts=True)
    return tuple(int(v) for v in colours[counts.argmax()])


def share_of(path: Path, bgr: tuple[int, int, int]) -> float:
    img = cv2.imread(str(path)).astype(int)
    close = np.all(np.abs(img - np.array(bgr)) <= 3, axis=2)
    return float(close.mean())


GREEN = Content(
    content_id="test:green",
    campaign_id="c-green",
    variant="anonymous",
    title="Green offer",
    body="Fresh",
    background="#00ff00",
    accent="#000000",
)
BLUE = Content(content_id="test:blue", title="Blue", background="#0000ff")


def test_commands_change_the_screen_and_impressions_prove_it(
    tmp_path: Path, kivy_env, broker
) -> None:
    bus = Bus(broker)
    try:
        with player(tmp_path, kivy_env, broker.port) as proc:
            assert wait_for(lambda: any(s.get("status") == "online" for s in bus.states)), (
                tmp_path / "player.log"
            ).read_text()
            assert wait_for(lambda: len(shots(tmp_path)) >= 1)
            default = shots(tmp_path)[0]
            # Never black: the built-in default card fills the screen with its colour.
            assert dominant_bgr(default) == (0x57, 0x35, 0x1D)  # #1d3557 in BGR
            bus.send(ScreenCommand(kind="show", content=GREEN).to_bytes())
            assert wait_for(lambda: len(shots(tmp_path)) >= 2)
            green = shots(tmp_path)[1]
            assert green.name.endswith("test_green.png")
            assert share_of(green, (0, 255, 0)) > 0.8
            # Garbage on the bus is ignored; the next command still renders.
            bus.send(b"\x00not json")
            bus.send(b'{"kind":"show","content":{"content_id":"x"}}')
            time.sleep(0.3)
            assert proc.poll() is None
            bus.send(ScreenCommand(kind="show", content=BLUE).to_bytes())
            assert wait_for(lambda: len(shots(tmp_path)) >= 3)
            assert share_of(shots(tmp_path)[2], (255, 0, 0)) > 0.8
            impressions = [parse_event(e).payload() for e in bus.events]
            green_imp = next(i for i in impressions if i.content_id == "test:green")
            assert green_imp.campaign_id == "c-green" and green_imp.variant == "anonymous"
            assert 0.2 < green_imp.duration_s < 20
            assert green_imp.end > green_imp.start
            # SIGTERM: a clean exit that reports the item on screen and says offline.
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            assert wait_for(
                lambda: any(parse_event(e).payload().content_id == "test:blue" for e in bus.events),
                5,
            )
            assert wait_for(lambda: bus.states[-1].get("status") == "offline", 5)
    finally:
        bus.close()


def test_no_broker_still_plays_the_default(tmp_path: Path, kivy_env) -> None:
    with player(tmp_path, kivy_env, free_port()) as proc:
        assert wait_for(lambda: len(shots(tmp_path)) >= 1)
        shot = shots(tmp_path)[0]
        img = cv2.imread(str(shot))
        assert img is not None and img.mean() > 20  # not a black screen
        assert share_of(shot, (0x57, 0x35, 0x1D)) > 0.8
        time.sleep(1.0)
        assert proc.poll() is None  # keeps running while paho retries
