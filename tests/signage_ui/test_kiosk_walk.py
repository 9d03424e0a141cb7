"""The kiosk's walk survey screen, driven by simulated touches in a real Kivy window on Xvfb
against a real mosquitto, with the agent's own WalkStage answering on the bus: start a walk for
the store's tag, tap a zone (it lights up), step out, stop; the recording on disk has the taps.
The kiosk runs in its own process (this file is also its driver: see ``drive``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contracts import topics
from edge_agent.config import load_config
from edge_agent.sensing.ble.calibrate import Calibration
from edge_agent.sensing.ble.walk import parse_walk
from edge_agent.sensing.walk_stage import WalkStage
from testbed.procs import terminate
from tests.signage_ui.test_signage_player import load, share_of, to_toml
from tests.signage_ui.test_signage_screen import STORE, Recorder

DOCS = Path(__file__).resolve().parents[2] / "docs"
HERE_BGR = (0x6A, 0xC4, 0xE9)  # walk_view.HERE, the zone the walker is in
ZONES = ["entrance", "shoes", "womens", "tills"]


def walk_config(tmp_path: Path, port: int) -> Path:
    cfg = {
        "store": {"store_id": STORE, "device_id": "box-1"},
        "zones": [{"id": z, "name": z.capitalize()} for z in ZONES],
        "screens": [{"id": "door", "zone": "entrance", "width": 640, "height": 360}],
        "ble": {"source": "bleak", "zone": "entrance"},
        "downlink": {"ops_public_key": "not-used-by-the-kiosk"},
        "bus": {"host": "127.0.0.1", "port": port},
        "paths": {"state_dir": str(tmp_path / "var")},
    }
    path = tmp_path / "store.toml"
    beacon = (  # the tag the walker carries (to_toml writes no array of tables)
        '\n[[ble.beacons]]\nname = "walker"\nzone = "entrance"\n'
        'uuid = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"\nmajor = 7\nminor = 7\n'
    )
    path.write_text(to_toml(cfg) + beacon)
    assert [b.name for b in load_config(path).ble.beacons] == ["walker"]
    return path


class BusPublisher:
    """The agent's side of the bus for its WalkStage: publish through the test's client."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> bool:
        body = payload.encode() if isinstance(payload, str) else payload
        self.rec.c.publish(topic, body, qos=qos, retain=retain)
        return True


@pytest.mark.ui
@pytest.mark.timeout(120)
def test_a_walk_by_touch_on_the_kiosk(tmp_path: Path, kivy_env: dict[str, str], broker) -> None:
    cfg_path = walk_config(tmp_path, broker.port)
    bus = Recorder(broker.host, broker.port)
    stage = WalkStage(
        store=STORE,
        walks_dir=tmp_path / "walks",
        tags={"walker"},
        zones=set(ZONES),
        receivers={"local": ("entrance", Calibration())},
        bus=BusPublisher(bus),
        now=time.time,
    )
    bus.publish(topics.walk_state(STORE), b"", retain=True)  # nothing left by an earlier test
    results, shots = tmp_path / "results.jsonl", tmp_path / "shots"
    log = open(tmp_path / "kiosk.log", "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, __file__, str(cfg_path), str(results), str(shots)],
        env={**kivy_env, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def steps() -> dict[str, dict]:
        if not results.exists():
            return {}
        return {r["step"]: r for r in map(json.loads, results.read_text().splitlines())}

    def kiosk_log() -> str:
        return (tmp_path / "kiosk.log").read_text(errors="replace")

    seen = 0
    try:
        # The agent's part: every command the kiosk sends goes to the stage, as on the box;
        # the tag is heard now and then while the walk records.
        deadline = time.monotonic() + 90
        while "done" not in steps() and proc.poll() is None and time.monotonic() < deadline:
            cmds = [(t, p) for _, t, p in list(bus.msgs) if t == topics.walk_cmd(STORE)]
            for topic, payload in cmds[seen:]:
                stage.on_command(topic, payload)
            seen = len(cmds)
            stage.on_tag("walker", "local", -66, time.time())
            time.sleep(0.05)
        s = steps()
        assert s.get("done", {}).get("ok"), (s, kiosk_log()[-3000:])
        assert proc.wait(15) == 0, kiosk_log()
    finally:
        terminate(proc)
        log.close()
        stage.close()
        bus.publish(topics.walk_state(STORE), b"", retain=True)
        bus.close()

    # What the kiosk sent, in order, and what the stage made of it.
    sent = [json.loads(p) for _, t, p in bus.msgs if t == topics.walk_cmd(STORE)]
    assert sent == [
        {"action": "start", "tag": "walker"},
        {"action": "tap", "zone": "shoes"},
        {"action": "tap"},
        {"action": "stop"},
    ]
    (path,) = (tmp_path / "walks").glob("walk-*.jsonl")
    walk = parse_walk(path.read_text())
    assert [z for _, z in walk.taps] == ["shoes", None] and walk.adverts
    # The kiosk showed it: the zone lit once tapped, the counts, the file when saved.
    assert "walker" in s["start"]["buttons"] and s["start"]["recording"] is False
    assert s["recording"]["zone"] == "shoes" and "You are: [b]Shoes" in s["recording"]["status"]
    assert "1 tap," in s["recording"]["status"]
    assert s["saved"]["file"] == path.name and path.name in s["saved"]["status"]
    pics = {p.name.split("-kiosk-")[1][:-4]: load(p) for p in sorted(shots.glob("*.png"))}
    assert share_of(pics["walk-recording"], HERE_BGR) > 0.04  # one of four zones, lit
    assert share_of(pics["walk-start"], HERE_BGR) < 0.001
    if os.environ.get("EDGE_DOCS_SHOTS"):  # README picture, refreshed on demand
        shot = next(p for p in sorted(shots.glob("*.png")) if p.name.endswith("walk-recording.png"))
        DOCS.joinpath("kiosk-walk.png").write_bytes(shot.read_bytes())


# ---- the driver: runs inside the kiosk's own process ---------------------------------------


def drive(cfg_path: str, results: str, shots: str) -> None:  # pragma: no cover - subprocess
    import logging

    from signage_ui.cli import _kivy_window

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _kivy_window(1024, 600)
    from kivy.clock import Clock

    from signage_ui.kiosk import KioskApp
    from tests.signage_ui.ui_driver import Driver

    cfg = load_config(cfg_path)
    app = KioskApp(cfg, "kiosk-7", bus=cfg.bus, screenshot_dir=Path(shots))

    drv = Driver(results, app.shutdown)
    report, wait_until = drv.report, drv.wait_until

    def tap(name: str) -> None:
        drv.touch(app.w[name])

    def state() -> dict:
        return {
            "recording": app.walk.state.recording,
            "zone": app.walk.state.zone,
            "file": app.walk.state.file,
            "status": app.w["walk:status"].text,
            "buttons": " ".join(k for k in app.w if k.startswith("walk:")),
        }

    def start() -> None:
        wait_until(lambda: app.bus_up, open_walk)

    def open_walk() -> None:
        tap("tab:walk")
        app.snapshot("walk-start")
        report("start", **state())
        Clock.schedule_once(lambda _dt: tap("walk:start:walker"), 0.3)
        wait_until(lambda: app.walk.state.recording, recording)

    def recording() -> None:
        tap("walk:zone:shoes")
        wait_until(lambda: app.walk.state.zone == "shoes" and app.walk.state.adverts > 0, lit)

    def lit() -> None:
        app.snapshot("walk-recording")
        report("recording", **state())
        Clock.schedule_once(lambda _dt: step_out(), 0.5)  # after the screenshot is taken

    def step_out() -> None:
        tap("walk:out")
        wait_until(lambda: app.walk.state.taps == 2 and app.walk.state.zone is None, stop)

    def stop() -> None:
        tap("walk:stop")
        wait_until(lambda: not app.walk.state.recording, saved)

    def saved() -> None:
        app.snapshot("walk-saved")
        report("saved", **state())
        Clock.schedule_once(lambda _dt: (report("done", ok=True), app.shutdown()), 0.5)

    Clock.schedule_once(lambda _dt: start(), 0.5)
    app.run()


if __name__ == "__main__":  # pragma: no cover
    drive(*sys.argv[1:4])
