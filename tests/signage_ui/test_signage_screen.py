"""The player as a person and as ops see it, beyond single cards: the default loop from the local
cache (images, video, regions, portrait), broken assets skipped with an error, emergency override
on every screen, health and screenshots for ops, and recovery after the broker restarts.
Real Kivy windows on Xvfb, real mosquitto, screenshots checked by pixels."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contracts import topics
from contracts.events import ContentImpression, parse_event
from contracts.screen_protocol import Content, Playlist, PlaylistItem, ScreenCommand
from edge_agent.config import load_config
from signage_ui.assets import AssetCache
from testbed.procs import terminate
from tests.signage_ui.test_signage_player import load, share_of, to_toml, wait_for

pytestmark = [pytest.mark.ui, pytest.mark.timeout(90)]

STORE = "store-ui"


def config(tmp_path: Path, port: int, screens: list[dict[str, Any]]) -> Path:
    cfg = {
        "store": {"store_id": STORE, "device_id": "box-1"},
        "zones": [{"id": "entrance"}],
        "screens": screens,
        "ble": {"source": "bleak", "zone": "entrance"},
        "downlink": {"ops_public_key": "not-used-by-the-player"},
        "bus": {"host": "127.0.0.1", "port": port},
        "paths": {"state_dir": str(tmp_path / "var"), "content_dir": str(tmp_path / "content")},
    }
    path = tmp_path / "store.toml"
    path.write_text(to_toml(cfg))
    load_config(path)
    return path


@contextmanager
def player(tmp_path: Path, env: dict[str, str], cfg: Path, screen: str) -> Iterator[Path]:
    """Runs one player; yields its screenshot directory."""
    exe = os.path.join(os.path.dirname(sys.executable), "signage-ui")
    shots = tmp_path / f"shots-{screen}"
    args = ["--config", str(cfg), "--screen", screen, "--screenshot-dir", str(shots)]
    with open(tmp_path / f"{screen}.log", "wb") as log:
        proc = subprocess.Popen([exe, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield shots
        finally:
            terminate(proc)


def pngs(d: Path) -> list[Path]:
    return sorted(d.glob("*.png"))


def logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))


class Recorder:
    """Everything on the store's in-store bus, by topic, with arrival times."""

    def __init__(self, host: str, port: int) -> None:
        self.msgs: list[tuple[float, str, bytes]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.connect(host, port)
        self.c.subscribe(f"instore/{STORE}/#", qos=1)
        self.c.loop_start()
        assert ready.wait(5)

    def _on(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.msgs.append((time.monotonic(), msg.topic, bytes(msg.payload)))

    def json_on(self, suffix: str, since: float = 0.0) -> list[dict[str, Any]]:
        with self.lock:
            return [
                json.loads(p) for t, topic, p in self.msgs if topic.endswith(suffix) and t >= since
            ]

    def states(self, screen: str, since: float = 0.0) -> list[dict[str, Any]]:
        return self.json_on(f"/screens/{screen}/state", since)

    def impressions(self, screen: str) -> list[ContentImpression]:
        out = []
        for raw in self.json_on(f"/screens/{screen}/events"):
            payload = parse_event(raw).payload()
            assert isinstance(payload, ContentImpression)
            out.append(payload)
        return out

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def solid_png(bgr: tuple[int, int, int], w: int = 320, h: int = 160) -> bytes:
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = bgr
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def write_playlist(content_dir: Path, items: list[PlaylistItem], version: int = 1) -> None:
    content_dir.mkdir(parents=True, exist_ok=True)
    body = Playlist(version=version, items=tuple(items)).model_dump_json()
    (content_dir / "playlist.json").write_text(body)


ORANGE_BGR = (0, 128, 255)


def test_default_loop_from_the_cache_in_portrait_skips_broken_assets(
    tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    cache = AssetCache(tmp_path / "content")
    good = cache.put(solid_png(ORANGE_BGR))
    # A corrupt copy: the bytes on disk do not hash to the name they are filed under.
    bad = cache.put(solid_png((255, 255, 255)))
    (cache.assets_dir / bad).write_bytes(b"\x89PNG truncated")
    missing = "ab" * 32
    write_playlist(
        cache.root,
        [
            PlaylistItem(
                content=Content(
                    content_id="loop:photo",
                    template="image",
                    image_sha256=good,
                    title="Photo",
                    background="#203040",
                ),
                duration_s=1.5,
            ),
            PlaylistItem(
                content=Content(
                    content_id="loop:corrupt", template="image", image_sha256=bad, title="x"
                ),
            ),
            PlaylistItem(
                content=Content(
                    content_id="loop:missing", template="video", video_sha256=missing, title="x"
                ),
            ),
            PlaylistItem(
                content=Content(
                    content_id="loop:card",
                    title="Winter boots",
                    body="Waterproof, lined",
                    price=89.0,
                    was_price=119.0,
                    language="fr",
                    background="#ffffff",
                    accent="#0000ff",
                    ticker="Free coffee at the counter until noon",
                    side="Ask us about sizes",
                ),
                duration_s=1.5,
            ),
            PlaylistItem(
                content=Content(content_id="loop:never", title="Night only"),
                dayparts=("03:00-03:01",) if datetime.now(UTC).hour != 3 else ("05:00-05:01",),
            ),
        ],
    )
    screens = [
        {"id": "tall", "zone": "entrance", "width": 800, "height": 450, "orientation": "portrait"}
    ]
    cfg = config(tmp_path, broker.port, screens)
    bus = Recorder(broker.host, broker.port)
    try:
        with player(tmp_path, kivy_env, cfg, "tall") as shots:
            assert wait_for(lambda: len(pngs(shots)) >= 2, 20), logs(tmp_path)
            photo, card = load(pngs(shots)[0]), load(pngs(shots)[1])
            assert "photo" in pngs(shots)[0].name and "card" in pngs(shots)[1].name
            # Portrait: the window is tall.
            assert photo.shape[:2] == (800, 450)
            # The image fills the width, letterboxed on the item's colour, never on black.
            assert share_of(photo, ORANGE_BGR) > 0.2
            assert share_of(photo, (0x40, 0x30, 0x20)) > 0.3
            assert float((photo.max(axis=2) < 10).mean()) < 0.01
            # The card: white main region, a blue ticker band along the bottom, and (portrait)
            # the blue side panel as a band under the main region.
            assert share_of(card, (255, 255, 255)) > 0.4
            bottom = card[-30:, :, :]
            assert share_of(bottom, (255, 0, 0)) > 0.5
            side = (255, 0xB2, 0xB2)  # 30 % of the blue accent on white
            assert share_of(card[500:700, :, :], side) > 0.5
            assert share_of(card[:400, :, :], side) < 0.01

            # Each broken asset is reported once with what was wrong; the rest plays on.
            assert wait_for(lambda: len(bus.json_on("/screens/tall/errors")) >= 2, 5)
            errors = {e["content_id"]: e for e in bus.json_on("/screens/tall/errors")}
            assert errors["loop:corrupt"]["kind"] == "corrupt"
            assert "checksum" in errors["loop:corrupt"]["detail"]
            assert errors["loop:missing"]["kind"] == "missing"
            assert wait_for(lambda: len(pngs(shots)) >= 3, 10)
            assert "photo" in pngs(shots)[2].name

            # Proof of play for the default loop: no command behind it.
            assert wait_for(lambda: len(bus.impressions("tall")) >= 2, 5)
            seen = bus.impressions("tall")
            assert {i.content_id for i in seen} >= {"loop:photo", "loop:card"}
            assert all(i.cmd_id is None and i.variant == "default" for i in seen)
            assert all(1.2 < i.duration_s < 3.0 for i in seen)
            assert not any(i.content_id in ("loop:corrupt", "loop:never") for i in seen)
            state = bus.states("tall")[-1]
            assert state["playlist_version"] == 1 and state["cache_bytes"] > 0
            assert len(bus.json_on("/screens/tall/errors")) == 2  # not once per cycle
    finally:
        bus.close()


def test_emergency_override_reaches_every_screen_within_a_second(
    tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    screens = [
        {"id": "left", "zone": "entrance", "width": 640, "height": 360},
        {"id": "right", "zone": "entrance", "width": 480, "height": 360},
    ]
    cfg = config(tmp_path, broker.port, screens)
    bus = Recorder(broker.host, broker.port)
    try:
        with ExitStack() as stack:
            left = stack.enter_context(player(tmp_path, kivy_env, cfg, "left"))
            right = stack.enter_context(player(tmp_path, kivy_env, cfg, "right"))
            for s in ("left", "right"):
                assert wait_for(lambda s=s: bus.states(s), 20), logs(tmp_path)
            assert wait_for(lambda: pngs(left) and pngs(right), 10)

            # A targeted takeover, held for its minimum time.
            offer = Content(content_id="offer:teal", title="Teal", background="#008080")
            sent = time.monotonic()
            bus.publish(
                topics.screen_cmd(STORE, "left"),
                ScreenCommand(kind="show", content=offer, min_duration_s=30).to_bytes(),
            )
            assert wait_for(
                lambda: any(s["content_id"] == "offer:teal" for s in bus.states("left", sent)), 5
            )

            evacuate = Content(
                content_id="emergency:evacuate",
                variant="override",
                title="Please leave the store",
                body="Use the nearest exit",
                background="#cc0000",
                accent="#ffffff",
            )
            sent = time.monotonic()
            bus.publish(
                topics.emergency(STORE),
                ScreenCommand(kind="override", content=evacuate, ttl_s=86400).to_bytes(),
                retain=True,
            )
            for s in ("left", "right"):
                assert wait_for(
                    lambda s=s: any(
                        st["content_id"] == "emergency:evacuate" for st in bus.states(s, sent)
                    ),
                    5,
                )
                arrived = min(
                    t
                    for t, topic, p in bus.msgs
                    if topic.endswith(f"/{s}/state") and t >= sent and b"evacuate" in p
                )
                assert arrived - sent < 1.0
            for shots in (left, right):
                assert wait_for(lambda shots=shots: "evacuate" in pngs(shots)[-1].name, 5)
                assert share_of(load(pngs(shots)[-1]), (0, 0, 0xCC)) > 0.7

            # Ops asks for a screenshot: a small JPEG of what the screen shows.
            bus.publish(
                topics.screen_cmd(STORE, "left"), ScreenCommand(kind="screenshot").to_bytes()
            )
            assert wait_for(lambda: bus.json_on("/screens/left/screenshot"), 5)
            shot = bus.json_on("/screens/left/screenshot")[0]
            jpg = cv2.imdecode(np.frombuffer(base64.b64decode(shot["jpeg_b64"]), np.uint8), 1)
            assert jpg.shape[:2] == (270, 480) == (shot["height"], shot["width"])
            assert float(np.all(np.abs(jpg.astype(int) - (0, 0, 0xCC)) < 24, axis=2).mean()) > 0.6

            # A targeted item during the emergency waits; clearing brings it back.
            later = Content(content_id="offer:olive", title="Olive", background="#808000")
            bus.publish(
                topics.screen_cmd(STORE, "right"),
                ScreenCommand(kind="show", content=later).to_bytes(),
            )
            time.sleep(0.5)
            assert bus.states("right")[-1]["content_id"] == "emergency:evacuate"
            sent = time.monotonic()
            bus.publish(
                topics.emergency(STORE),
                ScreenCommand(kind="clear_override").to_bytes(),
                retain=True,
            )
            assert wait_for(lambda: bus.states("right")[-1]["content_id"] == "offer:olive", 5)
            assert wait_for(lambda: bus.states("left")[-1]["content_id"] == "builtin-welcome", 5)

            # Health: what ops need to see a screen is alive and current.
            h = bus.states("left")[-1]
            assert h["status"] == "online" and h["last_command_at"]
            assert h["cmd_to_frame_ms_max"] is not None and h["cmd_to_frame_ms_max"] < 250
            assert h["fps"] >= 0 and h["cache_bytes"] == 0 and h["errors"] == 0
        # Both players said goodbye.
        for s in ("left", "right"):
            assert wait_for(lambda s=s: bus.states(s)[-1]["status"] == "offline", 5)
        imps = bus.impressions("left")
        teal = next(i for i in imps if i.content_id == "offer:teal")
        assert teal.cmd_id is not None and teal.duration_s > 0
        assert any(i.content_id == "emergency:evacuate" for i in imps)
    finally:
        bus.publish(topics.emergency(STORE), b"", retain=True)  # delete the retained message
        bus.close()


def test_broker_restart_keeps_the_screen_playing_and_resumes_commands(
    tmp_path: Path, kivy_env: dict[str, str], fresh_broker
) -> None:
    screens = [{"id": "solo", "zone": "entrance", "width": 480, "height": 270}]
    cfg = config(tmp_path, fresh_broker.port, screens)
    bus = Recorder(fresh_broker.host, fresh_broker.port)
    with player(tmp_path, kivy_env, cfg, "solo") as shots:
        assert wait_for(lambda: bus.states("solo"), 20), logs(tmp_path)
        gold = Content(content_id="offer:gold", title="Gold", background="#ffd700")
        bus.publish(
            topics.screen_cmd(STORE, "solo"),
            ScreenCommand(kind="show", content=gold, min_duration_s=1.0).to_bytes(),
        )
        assert wait_for(lambda: pngs(shots) and "gold" in pngs(shots)[-1].name, 5)
        bus.close()
        fresh_broker.kill()
        # No bus, so nobody will say the shopper left: after its hold the targeted item gives
        # way to the default loop, and the screen keeps playing (never black).
        assert wait_for(lambda: "builtin-welcome" in pngs(shots)[-1].name, 8), logs(tmp_path)
        img = load(pngs(shots)[-1])
        assert share_of(img, (0x57, 0x35, 0x1D)) > 0.8
        fresh_broker.start()
        bus = Recorder(fresh_broker.host, fresh_broker.port)
        try:
            assert wait_for(
                lambda: any(s.get("status") == "online" for s in bus.states("solo")), 40
            ), logs(tmp_path)
            mint = Content(content_id="offer:mint", title="Mint", background="#3eb489")
            bus.publish(
                topics.screen_cmd(STORE, "solo"),
                ScreenCommand(kind="show", content=mint).to_bytes(),
            )
            assert wait_for(lambda: "mint" in pngs(shots)[-1].name, 5), logs(tmp_path)
            assert share_of(load(pngs(shots)[-1]), (0x89, 0xB4, 0x3E)) > 0.7
            # The impression of gold, queued while the bus was down or sent before, arrives.
            assert wait_for(
                lambda: any(i.content_id == "offer:gold" for i in bus.impressions("solo")), 10
            )
        finally:
            bus.close()
    assert "lost" in logs(tmp_path) and "connected" in logs(tmp_path)


def green_clip(path: Path, frames: int) -> bytes:
    """An MJPG clip at 25 fps, every frame green (BGR 0, 200, 0): easy to find on the glass."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 180))
    frame = np.zeros((180, 320, 3), np.uint8)
    frame[:] = (0, 200, 0)
    for _ in range(frames):
        w.write(frame)
    w.release()
    return path.read_bytes()


def test_video_from_the_cache_plays(tmp_path: Path, kivy_env: dict[str, str], broker) -> None:
    cache = AssetCache(tmp_path / "content")
    sha = cache.put(green_clip(tmp_path / "clip.avi", 50))
    item = Content(
        content_id="loop:clip",
        template="video",
        video_sha256=sha,
        title="Clip",
        background="#000040",
    )
    write_playlist(cache.root, [PlaylistItem(content=item, duration_s=30)])
    cfg = config(
        tmp_path, broker.port, [{"id": "v", "zone": "entrance", "width": 480, "height": 270}]
    )
    bus = Recorder(broker.host, broker.port)
    # Kivy's own console log on: a clip must not make it complain on every loop.
    env = {k: v for k, v in kivy_env.items() if k != "KIVY_NO_CONSOLELOG"}
    try:
        with player(tmp_path, env, cfg, "v"):
            assert wait_for(lambda: bus.states("v"), 20), logs(tmp_path)

            def green_share() -> float:
                before = len(bus.json_on("/screens/v/screenshot"))
                bus.publish(
                    topics.screen_cmd(STORE, "v"), ScreenCommand(kind="screenshot").to_bytes()
                )
                if not wait_for(lambda: len(bus.json_on("/screens/v/screenshot")) > before, 5):
                    return 0.0
                raw = base64.b64decode(bus.json_on("/screens/v/screenshot")[-1]["jpeg_b64"])
                img = cv2.imdecode(np.frombuffer(raw, np.uint8), 1)
                return float(np.all(np.abs(img.astype(int) - (0, 200, 0)) < 40, axis=2).mean())

            # The clip's frames (green) fill the screen once the decoder has started.
            assert wait_for(lambda: green_share() > 0.7, 10), logs(tmp_path)
            # The 2 s clip loops (its frames still on screen well past its end) ...
            started = time.monotonic()
            assert wait_for(lambda: time.monotonic() - started > 4.5 and green_share() > 0.7, 15), (
                logs(tmp_path)
            )
        # ... without an error line for it, at its start or at any loop.
        text = logs(tmp_path)
        assert "Error loading" not in text and sha not in text, text[-2000:]
    finally:
        bus.close()


def test_a_clip_plays_each_time_it_comes_back(
    tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    """A loop of a clip and a card: the clip comes back into the same item view every other
    time, after it was unloaded there. Kivy loads a clip only when its source changes; each
    appearance must still show the clip's own frames, from its first frame on (never the bare
    background while the decoder starts)."""
    cache = AssetCache(tmp_path / "content")
    sha = cache.put(green_clip(tmp_path / "clip.avi", 25))
    items = [
        PlaylistItem(
            content=Content(
                content_id="loop:clip", template="video", video_sha256=sha, title="Clip",
                background="#000040",
            ),
            duration_s=1.5,
        ),
        PlaylistItem(
            content=Content(content_id="loop:card", title="Between", background="#603000"),
            duration_s=1.0,
        ),
    ]  # fmt: skip
    write_playlist(cache.root, items)
    cfg = config(
        tmp_path, broker.port, [{"id": "v", "zone": "entrance", "width": 480, "height": 270}]
    )

    def clip_shots(shots: Path) -> list[Path]:
        return [p for p in pngs(shots) if p.stem.endswith("loop_clip")]

    with player(tmp_path, kivy_env, cfg, "v") as shots:
        assert wait_for(lambda: len(clip_shots(shots)) >= 4, 60), logs(tmp_path)
        got = clip_shots(shots)
    for shot in got:
        img = load(shot)
        green = float(np.all(np.abs(img.astype(int) - (0, 200, 0)) < 40, axis=2).mean())
        assert green > 0.7, f"{shot.name}: the clip's frames cover {green:.0%} of the screen"
