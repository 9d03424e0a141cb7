"""From a shopper entering a zone to the targeted content's first frame (issue 17,
``end_to_end.zone_event_to_frame_ms``): the real agent (demo store, Alice's profile and the
trail-shoes campaign), a real mosquitto, the real Kivy player on a private Xvfb.

Alice's phone comes and goes: while "there", it advertises her current Eddystone-EID at 10 Hz
through the agent's own BLE path; the clock starts when the agent's presence stage says she
entered the entrance zone (``ZoneEntered``), and stops when the player's state message, sent once
the frame with her greeting has been drawn, arrives. Then the phone goes quiet until the screen is
back on the loop, and again. Side by side: the agent deciding on the event (a presence change
wakes its loop at once) against deciding on its 200 ms beat only (the way it was).

Issue 18: the same at a camera screen, from the moment she steps up (her phone and a person in
the camera's frames, SceneSource drawing real photos, at once) to her greeting's frame, with
the fused presence against the rule before it (the camera's count and BLE presence).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contracts import topics
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.clock import ScaledClock
from edge_agent.config import parse_config
from edge_agent.sensing.ble.zones import Entered
from testbed.broker import Mosquitto
from testbed.display import Xvfb, kivy_env
from testbed.phones import AppPhone
from testbed.procs import terminate

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo"
ALICE = "cdp-p-1001"
SCREEN = "screen-entrance"
GREETING = "trail-shoes:personalised"


def _config(tmp: Path, port: int, camera: bool = False, fusion: bool = True) -> Any:
    from contracts.signing import generate_keypair

    _, public = generate_keypair()
    data = tomllib.loads((DEMO / "store.toml").read_text())
    data["central"]["port"] = data["bus"]["port"] = port
    data["downlink"]["ops_public_key"] = public
    data["paths"]["state_dir"] = str(tmp / "var")
    data["paths"]["content_dir"] = str(tmp / "content")
    data["profiles"] = {"key_file": str(tmp / "keys" / "profiles.key")}
    if camera:
        # The camera sees her step up (scene frames at 10 fps); the screen is not a spot for one.
        data["camera"].update(fps=10.0, sample_interval_s=1.0, track_gap_s=0.5)
        data["fusion"] = {"enabled": fusion}
    else:
        data.pop("camera", None)
        data["screens"][0]["personal_without_crowd_sensor"] = True
    # She leaves soon after her phone goes quiet, so the bench cycles in seconds.
    data["ble"].update(away_timeout_s=1.5, away_min_s=1.0, min_dwell_s=0.0, leave_hold_s=0.2)
    return parse_config(data, base_dir=DEMO)


def _campaigns() -> dict[str, Any]:
    """The demo's campaigns with no hold and no holdout: each visit is a fresh greeting."""
    body = json.loads(json.dumps(scenario.CAMPAIGNS_V1))
    for c in body["campaigns"]:
        c["min_on_screen_s"] = 0
        c["holdout_share"] = 0
        c.pop("caps", None)
        c.pop("dayparts", None)
    return body


def _write_player_config(cfg: Any, path: Path) -> None:
    from demo.runner import write_runtime_toml

    write_runtime_toml(cfg, path)


def _pct(xs: list[float]) -> dict[str, float]:
    if len(xs) < 2:
        return {"p50": round(xs[0], 1) if xs else 0.0, "p99": round(xs[0], 1) if xs else 0.0}
    q = statistics.quantiles(xs, n=100, method="inclusive")
    return {"p50": round(q[49], 1), "p95": round(q[94], 1), "p99": round(q[98], 1)}


class _Steps:
    """A scene clock for the camera: people in view exactly while ``there`` is set (scene time
    in [1000, 1500) then, [0, 500) otherwise; SceneSource draws one person from real photos)."""

    TIMELINE = [(1000.0, 1500.0, 1)]

    def __init__(self, there: threading.Event) -> None:
        self.there = there

    def __call__(self) -> float:
        return (1000.0 if self.there.is_set() else 0.0) + time.monotonic() % 500.0


def measure(
    visits: int,
    *,
    on_events: bool,
    display: str,
    broker: Mosquitto,
    camera: bool = False,
    fusion: bool = True,
) -> dict[str, Any]:
    """Without ``camera``: from ``ZoneEntered`` to her greeting's frame. With it: she steps up
    to the screen (phone and person at once) and the clock starts then; ``fusion`` False is the
    screen deciding on the camera's count and BLE presence alone (the rule before issue 18)."""
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        cfg = _config(tmp, broker.port, camera=camera, fusion=fusion)
        clock = ScaledClock(scenario.T0 + 20, 1.0)
        phone = AppPhone(ALICE, clock, there=False)
        frames = None
        if camera:
            from edge_agent.sensing.camera.scene import SceneSource

            frames = SceneSource(_Steps.TIMELINE, clock=_Steps(phone.there))
        agent = Agent(cfg, clock=clock, ble_source=phone, frame_source=frames)
        agent.wake_on_events = on_events
        agent.handlers.apply_profiles(
            {"store_id": cfg.store.store_id, "version": 1, "profiles": scenario.profile_slice()}
        )
        agent.content.replace(_campaigns())
        # Her greeting carries the way to the shoes (the planogram places them): a full card.
        if agent.handlers.wayfinding is not None:
            from edge_agent.wayfinding.planogram_store import load_file

            agent.handlers.wayfinding.planograms.replace(load_file(scenario.PLANOGRAM, version=1))
        entered: list[float] = []
        seen = agent.presence.on_change

        def on_change(change: Any) -> None:
            if isinstance(change, Entered):
                entered.append(time.monotonic())
            seen(change)

        agent.presence.on_change = on_change  # type: ignore[method-assign]
        states: list[tuple[float, str]] = []
        sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

        def on_message(_c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
            try:
                cid = json.loads(m.payload).get("content_id")
            except ValueError:
                return
            if cid:
                states.append((time.monotonic(), str(cid)))

        sub.on_message = on_message
        sub.connect(broker.host, broker.port)
        sub.subscribe(topics.screen_state(cfg.store.store_id, SCREEN), qos=1)
        sub.loop_start()
        player_cfg = tmp / "player.toml"
        _write_player_config(cfg, player_cfg)
        exe = os.path.join(os.path.dirname(sys.executable), "signage-ui")
        log = open(tmp / "player.log", "wb")  # noqa: SIM115
        player = subprocess.Popen(
            [exe, "--config", str(player_cfg), "--screen", SCREEN],
            env=kivy_env(display, tmp / "kivy"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        runner = threading.Thread(target=lambda: asyncio.run(agent.run()), daemon=True)
        latencies: list[float] = []
        missed = 0

        def wait(pred: Any, timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if pred():
                    return True
                time.sleep(0.01)
            return False

        try:
            if not wait(lambda: states, 30):
                raise RuntimeError(
                    "the player never reported: " + (tmp / "player.log").read_text()[-1500:]
                )
            agent.start_sync()
            runner.start()
            wait(lambda: agent.director.screen_status(SCREEN) == "online", 20)
            for _ in range(visits):
                n_entered = len(entered)
                stepped = time.monotonic()
                phone.there.set()
                if camera:
                    start: float | None = stepped
                else:
                    ok = wait(lambda n=n_entered: len(entered) > n, 10)
                    start = entered[-1] if ok else None
                s0 = start if start is not None else float("inf")
                shown = wait(lambda s=s0: any(t >= s and c == GREETING for t, c in states), 10)
                if start is None or not shown:
                    missed += 1
                else:
                    t = next(t for t, c in states if t >= start and c == GREETING)
                    latencies.append((t - start) * 1000)
                phone.there.clear()
                # Gone, and the screen back on something else, before she comes again.
                mark = time.monotonic()
                wait(lambda m=mark: any(t >= m and c != GREETING for t, c in states), 15)
                if camera:
                    # And past the fused engine's turnover hold: her next visit is a new
                    # arrival at an empty screen, not someone stepping in as another left.
                    time.sleep(cfg.fusion.params().turnover_hold_s + 0.5)
        finally:
            agent.stop()
            runner.join(10)
            agent.close(flush_timeout_s=1)
            terminate(player)
            log.close()
            sub.loop_stop()
            sub.disconnect()
    return {"visits": visits, "measured": len(latencies), "missed": missed, **_pct(latencies)}


def run(quick: bool = False) -> dict[str, Any]:
    visits = 8 if quick else 40
    broker = Mosquitto()
    broker.start()
    xvfb = Xvfb()
    display = xvfb.start()
    try:
        event = measure(visits, on_events=True, display=display, broker=broker)
        beat = measure(visits, on_events=False, display=display, broker=broker)
        steps = max(4, visits // 2)
        fused = measure(steps, on_events=True, display=display, broker=broker, camera=True)
        counted = measure(
            steps, on_events=True, display=display, broker=broker, camera=True, fusion=False
        )
    finally:
        xvfb.stop()
        broker.stop()
    return {
        "bench": "zone-to-frame",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "end_to_end": {
            "zone_event_to_frame_ms": event,
            "baseline_decide_on_the_beat_ms": beat,
            "p99_ratio": round(beat["p99"] / event["p99"], 2) if event.get("p99") else None,
            # She steps up to a camera screen (phone and person together): to her greeting.
            "step_up_to_greeting_fused_ms": fused,
            "step_up_to_greeting_camera_count_ms": counted,
        },
    }
