"""The staff kiosk driven by simulated touches on its real widgets, in a real Kivy window on
Xvfb, against a real mosquitto: alerts arrive and are acknowledged on the bus, occupancy shows
per screen, the emergency override needs a confirmation, and survey answers are events the agent
accepts. The kiosk runs in its own process (this file is also its driver: see ``drive``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts import topics
from contracts.events import SurveyAnswer, parse_event, source_for
from contracts.screen_protocol import ScreenCommand
from edge_agent.config import load_config
from testbed.procs import terminate
from tests.signage_ui.test_signage_player import load, share_of, to_toml, wait_for
from tests.signage_ui.test_signage_screen import Recorder

STORE = "store-ui"  # Recorder listens on this store's bus


def kiosk_config(tmp_path: Path, port: int) -> Path:
    cfg = {
        "store": {"store_id": STORE, "device_id": "box-1"},
        "zones": [{"id": "entrance"}, {"id": "shoes"}],
        "screens": [
            {"id": "door", "zone": "entrance", "width": 640, "height": 360},
            {"id": "boots", "zone": "shoes", "width": 640, "height": 360},
        ],
        "ble": {"source": "bleak", "zone": "entrance"},
        "downlink": {"ops_public_key": "not-used-by-the-kiosk"},
        "bus": {"host": "127.0.0.1", "port": port},
        "paths": {"state_dir": str(tmp_path / "var")},
    }
    path = tmp_path / "store.toml"
    path.write_text(to_toml(cfg))
    load_config(path)
    return path


def alert(alert_id: str, kind: str, text: str, minutes_ago: float = 0) -> bytes:
    ts = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return json.dumps(
        {"alert_id": alert_id, "kind": kind, "text": text, "ts": ts.isoformat()}
    ).encode()


@pytest.mark.ui
@pytest.mark.timeout(90)
def test_kiosk_flows_by_touch(tmp_path: Path, kivy_env: dict[str, str], broker) -> None:
    cfg = kiosk_config(tmp_path, broker.port)
    bus = Recorder(broker.host, broker.port)
    now = datetime.now(UTC).isoformat()
    # Retained occupancy from the agent, and a stale emergency-clear from an earlier day.
    for zone, people in (("entrance", 7), ("shoes", 2)):
        body = json.dumps({"zone_id": zone, "people": people, "ts": now}).encode()
        bus.publish(topics.zone_occupancy(STORE, zone), body, retain=True)
    bus.publish(topics.screen_state(STORE, "door"), b'{"status":"online"}', retain=True)
    bus.publish(topics.screen_state(STORE, "boots"), b'{"status":"offline"}', retain=True)
    results = tmp_path / "results.jsonl"
    shots = tmp_path / "shots"
    log = open(tmp_path / "kiosk.log", "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, __file__, str(cfg), str(results), str(shots)],
        env={**kivy_env, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def steps() -> dict[str, dict]:
        if not results.exists():
            return {}
        lines = results.read_text().splitlines()
        return {r["step"]: r for r in map(json.loads, lines)}

    def kiosk_log() -> str:
        return (tmp_path / "kiosk.log").read_text(errors="replace")

    try:
        assert wait_for(lambda: "ready" in steps(), 30), kiosk_log()
        # Alerts arrive while the kiosk runs; garbage is ignored with a line in the log.
        bus.publish(
            topics.alerts(STORE, "a-batt"),
            alert("a-batt", "beacon_battery_low", "Beacon door-1 battery low", 5),
        )
        bus.publish(
            topics.alerts(STORE, "a-help"),
            alert("a-help", "assistance_wanted", "Assistance wanted in shoes"),
        )
        bus.publish(topics.alerts(STORE, "a-vip"), b'{"kind": "vip"}')
        bus.publish(topics.alerts(STORE, "a-help"), alert("a-help", "assistance_wanted", "resent"))
        assert wait_for(lambda: "done" in steps() or proc.poll() is not None, 60), kiosk_log()
        s = steps()
        assert s["done"]["ok"], s
        # Occupancy per screen from the retained zone counts, and screen status.
        assert s["occupancy"]["door"] == "7" and s["occupancy"]["boots"] == "2"
        # Alerts: the urgent one first; the resend did not duplicate it.
        assert s["alerts"]["order"] == ["a-help", "a-batt"]
        acks = bus.json_on("/alert-acks")
        assert [a["alert_id"] for a in acks] == ["a-help"] and acks[0]["kiosk_id"] == "kiosk-7"
        assert s["after_ack"]["order"] == ["a-batt"]
        # Emergency: cancel sends nothing; confirm sends a retained override; clear removes it.
        em = [ScreenCommand.from_bytes(json.dumps(m).encode()) for m in bus.json_on("/emergency")]
        assert [c.kind for c in em] == ["override", "clear_override"]
        assert em[0].content is not None and "leave the store" in em[0].content.title
        assert em[0].ttl_s >= 3600
        assert s["emergency_cancel"]["published"] == 0
        # Survey: one NPS and one effort answer, as events the agent accepts from this box.
        answers = [parse_event(e) for e in bus.json_on("/kiosks/kiosk-7/events")]
        payloads = [a.payload() for a in answers]
        assert all(isinstance(p, SurveyAnswer) for p in payloads)
        assert [(p.survey, p.score) for p in payloads] == [("nps", 9), ("effort", 2)]
        assert all(a.source == source_for(STORE, "box-1") for a in answers)
        assert s["survey_exit_short"]["screen"] == "survey"  # a tap does not leave survey mode
        assert s["survey_exit_long"]["screen"] == "occupancy"
        assert proc.wait(15) == 0, kiosk_log()
    finally:
        terminate(proc)
        log.close()
        bus.publish(topics.emergency(STORE), b"", retain=True)
        for zone in ("entrance", "shoes"):
            bus.publish(topics.zone_occupancy(STORE, zone), b"", retain=True)
        for sc in ("door", "boots"):
            bus.publish(topics.screen_state(STORE, sc), b"", retain=True)
        bus.close()
    assert "ignored on instore/store-ui/alerts/a-vip: alert.alert_id: Field required" in kiosk_log()
    # What staff saw, by pixels: the confirmation is a dark red panel; survey buttons in colour.
    pics: dict[str, object] = {}
    for p in sorted(shots.glob("*.png")):  # the first screenshot of each screen
        pics.setdefault(p.name.split("-kiosk-")[1][:-4], load(p))
    assert share_of(pics["emergency-confirm"], (0x0F, 0x04, 0x6A)) > 0.4
    assert pics["survey"].shape[:2] == (600, 1024)
    assert share_of(pics["survey"], (0xEE, 0xFA, 0xF1)) > 0.3
    assert share_of(pics["occupancy"], (0x57, 0x35, 0x1D)) > 0.3


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
    published: list[str] = []
    real_publish = app._publish

    def spy(topic: str, payload: bytes, retain: bool = False) -> None:
        published.append(topic)
        real_publish(topic, payload, retain)

    app._publish = spy  # type: ignore[method-assign]

    drv = Driver(results, app.stop)
    report, wait_until = drv.report, drv.wait_until

    def tap(name: str, hold: float = 0.0) -> None:
        drv.touch(app.w[name], hold)

    def order() -> list[str]:
        return [a.alert_id for a in app.alerts.open()]

    def start() -> None:
        # Ready once subscribed ("bus: ok"): the test's alerts are not retained, and one sent
        # while the kiosk was still connecting would never arrive.
        wait_until(lambda: app.bus_up, subscribed)

    def subscribed() -> None:
        report("ready")
        wait_until(lambda: app.w["occ:door"].text == "7", occupancy)

    def occupancy() -> None:
        app.snapshot("occupancy")
        report("occupancy", door=app.w["occ:door"].text, boots=app.w["occ:boots"].text)
        wait_until(lambda: len(order()) == 2, alerts)

    def seq(*actions) -> None:
        """Each action in its own later frame: a tap lands after the previous one's layout."""
        if actions:
            actions[0]()
            Clock.schedule_once(lambda _dt: seq(*actions[1:]), 0.2)

    marks: dict[str, int] = {}

    def mark() -> None:
        marks["n"] = len(published)

    def alerts() -> None:
        seq(
            lambda: None,  # the occupancy screenshot is taken now
            lambda: tap("tab:alerts"),
            lambda: report("alerts", order=order(), screen=app.sm.current),
            lambda: tap("ack:a-help"),
            lambda: report("after_ack", order=order()),
            lambda: tap("tab:emergency"),
            mark,
            lambda: tap("emergency:start:0"),
            lambda: tap("emergency:cancel"),
            lambda: report("emergency_cancel", published=len(published) - marks["n"]),
            lambda: tap("emergency:start:0"),
            lambda: None,  # the confirmation screenshot is taken now
            lambda: tap("emergency:confirm"),
            lambda: tap("emergency:clear"),
            lambda: tap("emergency:confirm"),
            lambda: tap("tab:survey"),
            lambda: tap("survey:nps:9"),
            lambda: tap("survey:effort:2"),
            lambda: tap("survey:exit"),
            lambda: report("survey_exit_short", screen=app.sm.current),
            lambda: tap("survey:exit", hold=1.6),
            lambda: report("survey_exit_long", screen=app.sm.current),
            lambda: report("done", ok=True),
            app.shutdown,
        )

    Clock.schedule_once(lambda _dt: start(), 0.5)
    app.run()


if __name__ == "__main__":  # pragma: no cover
    drive(*sys.argv[1:4])
