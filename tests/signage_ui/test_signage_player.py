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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contracts import topics
from contracts.events import ContentImpression, parse_event
from contracts.screen_protocol import Content, ScreenCommand
from edge_agent.config import load_config
from testbed.broker import free_port
from testbed.procs import terminate
from tests import watching

pytestmark = [pytest.mark.ui, pytest.mark.timeout(60)]

STORE, DEVICE, SCREEN = "store-test", "box-1", "screen-a"
WIDTH, HEIGHT = 800, 450
DEFAULT_BGR = (0x57, 0x35, 0x1D)  # the built-in card's #1d3557, as OpenCV reads it


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def to_toml(cfg: dict[str, Any]) -> str:
    """Enough TOML for a config: tables of scalars and arrays of such tables."""
    out: list[str] = []
    for name, section in cfg.items():
        for table in section if isinstance(section, list) else [section]:
            out.append(f"[[{name}]]" if isinstance(section, list) else f"[{name}]")
            out += [f"{k} = {toml_value(v)}" for k, v in table.items()]
            out.append("")
    return "\n".join(out)


def player_config(tmp_path: Path, port: int) -> Path:
    cfg = {
        "store": {"store_id": STORE, "device_id": DEVICE},
        "zones": [{"id": "entrance"}],
        "screens": [{"id": SCREEN, "zone": "entrance", "width": WIDTH, "height": HEIGHT}],
        "ble": {"source": "bleak", "zone": "entrance"},
        "downlink": {"ops_public_key": "not-used-by-the-player"},
        "bus": {"host": "127.0.0.1", "port": port},
        "paths": {"state_dir": str(tmp_path / "var")},
    }
    path = tmp_path / "store.toml"
    path.write_text(to_toml(cfg))
    load_config(path)  # the test's own config must be one the agent would accept
    return path


@contextmanager
def player(
    tmp_path: Path, env: dict[str, str], port: int, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    exe = os.path.join(os.path.dirname(sys.executable), "signage-ui")
    args = ["--config", str(player_config(tmp_path, port)), "--screen", SCREEN]
    args += ["--screenshot-dir", str(tmp_path / "shots"), *extra]
    with open(tmp_path / "player.log", "wb") as log:
        proc = subprocess.Popen([exe, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            terminate(proc)


def player_log(tmp_path: Path) -> str:
    return (tmp_path / "player.log").read_text(errors="replace")


class Bus:
    """The agent's side of the in-store bus: sends commands, collects impressions and state."""

    def __init__(self, host: str, port: int) -> None:
        self.events: list[dict[str, Any]] = []
        self.states: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.connect(host, port)
        self.c.subscribe(
            [(topics.screen_events(STORE, SCREEN), 1), (topics.screen_state(STORE, SCREEN), 1)]
        )
        self.c.loop_start()
        assert self.ready.wait(5)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        target = self.events if msg.topic.endswith("/events") else self.states
        target.append(json.loads(msg.payload))

    def send(self, payload: bytes) -> None:
        self.c.publish(topics.screen_cmd(STORE, SCREEN), payload, qos=1).wait_for_publish(5)

    def impressions(self) -> list[ContentImpression]:
        out = []
        for raw in list(self.events):
            payload = parse_event(raw).payload()
            assert isinstance(payload, ContentImpression)
            out.append(payload)
        return out

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def wait_for(pred: Callable[[], object], timeout: float = 15.0) -> bool:
    return watching.wait_for(pred, timeout, step=0.05)


def shots(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "shots").glob("*.png"))


def load(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, path
    return img


def share_of(img: np.ndarray, bgr: tuple[int, int, int]) -> float:
    close = np.all(np.abs(img.astype(int) - np.array(bgr)) <= 3, axis=2)
    return float(close.mean())


def dark_share(img: np.ndarray) -> float:
    return float((img.max(axis=2) < 60).mean())


def light_share(img: np.ndarray) -> float:
    return float((img.min(axis=2) > 200).mean())


GREEN = Content(
    content_id="test:green",
    campaign_id="c-green",
    variant="anonymous",
    title="Green offer",
    body="Fresh herbs, 2 for 1 today",
    background="#00ff00",
    accent="#ff00ff",
)
BLUE = Content(content_id="test:blue", title="Blue", background="#0000ff", accent="#ffff00")
RED = Content(content_id="test:red", title="Stale", background="#ff0000")


def test_commands_change_the_screen_and_impressions_prove_it(
    tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    bus = Bus(broker.host, broker.port)
    try:
        with player(tmp_path, kivy_env, broker.port) as proc:
            assert wait_for(lambda: any(s.get("status") == "online" for s in bus.states)), (
                player_log(tmp_path)
            )
            assert wait_for(lambda: len(shots(tmp_path)) >= 1), player_log(tmp_path)
            default = load(shots(tmp_path)[0])
            # The window has the configured size, and from the first frame it shows the
            # built-in card: never black, light text on the dark default background.
            assert default.shape[:2] == (HEIGHT, WIDTH)
            assert share_of(default, DEFAULT_BGR) > 0.8
            assert light_share(default) > 0.005

            bus.send(ScreenCommand(kind="show", content=GREEN).to_bytes())
            assert wait_for(lambda: len(shots(tmp_path)) >= 2), player_log(tmp_path)
            assert shots(tmp_path)[1].name == "0002-test_green.png"
            green = load(shots(tmp_path)[1])
            assert share_of(green, (0, 255, 0)) > 0.8
            assert share_of(green, (255, 0, 255)) > 0.002  # the accent rule beside the words
            # On a bright background the copy is dark, so it stays legible.
            assert dark_share(green) > 0.005 and light_share(green) < 0.001
            assert wait_for(
                lambda: bus.states and bus.states[-1].get("content_id") == "test:green", 5
            )

            # Garbage and stale commands are ignored; the next good command still renders.
            bus.send(b"\x00not json")
            bus.send(b'{"kind":"show","content":{"content_id":"x"}}')
            long_ago = datetime.now(UTC) - timedelta(minutes=5)
            bus.send(ScreenCommand(kind="show", content=RED, issued_at=long_ago).to_bytes())
            bus.send(ScreenCommand(kind="default").to_bytes())
            assert wait_for(lambda: len(shots(tmp_path)) >= 3), player_log(tmp_path)
            assert proc.poll() is None
            assert shots(tmp_path)[2].name == "0003-builtin-welcome.png"
            assert share_of(load(shots(tmp_path)[2]), DEFAULT_BGR) > 0.8
            assert wait_for(lambda: any(i.content_id == "test:green" for i in bus.impressions()))
            imp = next(i for i in bus.impressions() if i.content_id == "test:green")
            assert imp.campaign_id == "c-green" and imp.variant == "anonymous"
            assert imp.cmd_id is not None and imp.end > imp.start
            assert 0.05 < imp.duration_s < 15
            assert not any(i.content_id == "test:red" for i in bus.impressions())

            # A held item: `default` arriving during its minimum time waits for it.
            bus.send(ScreenCommand(kind="show", content=BLUE, min_duration_s=1.5).to_bytes())
            bus.send(ScreenCommand(kind="default").to_bytes())
            assert wait_for(lambda: len(shots(tmp_path)) >= 4)
            assert share_of(load(shots(tmp_path)[3]), (255, 0, 0)) > 0.8
            assert wait_for(lambda: len(shots(tmp_path)) >= 5)
            assert shots(tmp_path)[4].name == "0005-builtin-welcome.png"
            blue = next(i for i in bus.impressions() if i.content_id == "test:blue")
            assert 1.4 < blue.duration_s < 5

            # SIGTERM: a clean exit that reports the item on screen and says offline.
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, player_log(tmp_path)
            # The default's impressions: before green, between green and blue, and the last one.
            assert wait_for(
                lambda: sum(i.content_id == "builtin-welcome" for i in bus.impressions()) == 3, 5
            )
            assert wait_for(lambda: bus.states[-1].get("status") == "offline", 5)
    finally:
        bus.close()


def test_no_broker_still_plays_the_default_and_exits_cleanly(
    tmp_path: Path, kivy_env: dict[str, str]
) -> None:
    nobody = free_port()  # nothing listens here: paho keeps retrying in the background
    with player(tmp_path, kivy_env, nobody, "--exit-after", "3") as proc:
        assert wait_for(lambda: len(shots(tmp_path)) >= 1), player_log(tmp_path)
        img = load(shots(tmp_path)[0])
        assert img.mean() > 20  # not a black screen
        assert share_of(img, DEFAULT_BGR) > 0.8 and light_share(img) > 0.005
        started = time.monotonic()
        assert proc.wait(10) == 0, player_log(tmp_path)
        # The final impression cannot be delivered; the exit must not hang on it.
        assert time.monotonic() - started < 5
    assert "unreachable" in player_log(tmp_path)
