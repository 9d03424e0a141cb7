"""Open staff alerts outlive every restart (issue 22, point 4). The agent's real ``StaffAlerts``
(its SQLite file, its in-store bus client) against a real mosquitto of this test's own, and real
kiosk processes in a Kivy window on Xvfb: a kiosk started after the alerts were raised shows them,
one acknowledged on a kiosk is gone from every kiosk, a kiosk killed and started again shows the
open ones, and so does one started after the agent came back on a broker that had lost its
retained messages. Each kiosk process reports what its alert screen shows (see ``drive``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import topics
from edge_agent.app.alerts import StaffAlerts
from edge_agent.app.bus import InStoreBus
from edge_agent.config import AgentConfig, load_config
from testbed.display import kivy_env
from testbed.procs import terminate
from tests.signage_ui.test_kiosk import STORE, kiosk_config
from tests.signage_ui.test_signage_screen import Recorder
from tests.watching import wait_for

pytestmark = pytest.mark.ui


class Kiosk:
    """A kiosk process (this file's ``drive``) and what it says its alert screen shows."""

    def __init__(self, tmp_path: Path, display: str, cfg: Path, kiosk_id: str, run: int) -> None:
        name = f"{kiosk_id}-{run}"
        self.state = tmp_path / f"{name}.state.json"
        self.commands = tmp_path / f"{name}.commands"
        self.log_path = tmp_path / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {
            **kivy_env(display, tmp_path / f"kivy-{name}"),
            "PYTHONPATH": os.pathsep.join(sys.path),
        }
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(cfg), kiosk_id, str(self.state), str(self.commands)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def shows(self) -> dict:
        try:
            return json.loads(self.state.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def showing(self, ids: list[str]) -> bool:
        """The alert screen lists exactly ``ids``, in this order, and its tab counts them."""
        s = self.shows()
        tab = f"Alerts ({len(ids)})" if ids else "Alerts"
        return s.get("ids") == ids and s.get("tab") == tab and s.get("screen") == "alerts"

    def tap(self, widget: str) -> None:
        with open(self.commands, "a") as fh:
            fh.write(json.dumps({"tap": widget}) + "\n")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """kill -9: no goodbye, nothing saved."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()


class Agent:
    """The agent's side of alerts, as ``Agent`` wires it: StaffAlerts on its own file and bus."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.bus = InStoreBus(cfg.bus, f"agent-{STORE}-{cfg.store.device_id}")
        path = cfg.paths_resolved.alerts_db
        self.alerts = StaffAlerts(self.bus, STORE, cfg.store.device_id, path, cfg.alerts)
        self.alerts.listen(self.bus)
        self.bus.start()
        assert self.bus.subscribed.wait(10), "the agent's bus never subscribed"

    def open_ids(self) -> list[str]:
        return [a["alert_id"] for a in self.alerts.open_alerts()]

    def stop(self) -> None:
        self.bus.stop()
        self.alerts.shutdown()


@pytest.mark.timeout(240)
def test_open_alerts_survive_kiosk_and_agent_restarts(
    tmp_path: Path, xvfb_display: str, fresh_broker
) -> None:
    cfg_path = kiosk_config(tmp_path, fresh_broker.port)
    cfg = load_config(cfg_path)
    watch = Recorder(fresh_broker.host, fresh_broker.port)
    kiosks: list[Kiosk] = []

    def kiosk(kiosk_id: str) -> Kiosk:
        k = Kiosk(tmp_path, xvfb_display, cfg_path, kiosk_id, len(kiosks))
        kiosks.append(k)
        return k

    def on_bus(alert_id: str, open_: bool) -> bool:
        """The broker has passed on the alert (so retains it) or its clearing."""
        with watch.lock:
            bodies = [p for _, t, p in watch.msgs if t == topics.alerts(STORE, alert_id)]
        return bool(bodies) and bool(bodies[-1]) == open_

    agent = Agent(cfg)
    try:
        # Two alerts before any kiosk runs: published once, never again while the agent runs.
        help_id = agent.alerts.raise_alert(
            "assistance_wanted", "Assistance wanted in shoes", zone_id="shoes"
        )
        batt_id = agent.alerts.raise_alert(
            "beacon_battery_low", "Beacon door-1 battery low (2150 mV): replace it", beacon="door-1"
        )
        assert help_id and batt_id
        assert wait_for(lambda: on_bus(help_id, True) and on_bus(batt_id, True), 10)

        # (a) Kiosks started afterwards, one for the first time ever: both show both, urgent first.
        k1, k2 = kiosk("kiosk-1"), kiosk("kiosk-2")
        for k in (k1, k2):
            assert wait_for(lambda k=k: k.showing([help_id, batt_id]), 60), (k.shows(), k.log())

        # Acknowledged on kiosk 1: closed at the agent, gone from kiosk 2 as well.
        k1.tap(f"ack:{help_id}")
        assert wait_for(lambda: agent.open_ids() == [batt_id], 15), k1.log()
        assert wait_for(lambda: on_bus(help_id, False), 10)
        for k in (k1, k2):
            assert wait_for(lambda k=k: k.showing([batt_id]), 15), (k.shows(), k.log())

        # (b) Kiosk 1 killed and started again: the open one is there, the acknowledged one is
        # not, and stays away (a newer alert shows, so every retained copy has been delivered).
        k1.kill()
        k1 = kiosk("kiosk-1")
        assert wait_for(lambda: k1.showing([batt_id]), 60), (k1.shows(), k1.log())
        cam_id = agent.alerts.raise_alert(
            "camera_lost", "Camera at door sends no images", screen_id="door"
        )
        assert cam_id
        # Neither is urgent: newest first.
        assert wait_for(lambda: k1.showing([cam_id, batt_id]), 15), (k1.shows(), k1.log())

        # (c) The agent restarts on a broker that lost every retained message (restarted without
        # its persistence file): the open alerts come back from the agent's file, and a kiosk
        # started now shows them.
        agent.stop()
        k2.stop()
        k1.kill()
        watch.close()
        fresh_broker.stop()
        (fresh_broker.workdir / "mosquitto.db").unlink(missing_ok=True)
        fresh_broker.start()
        watch = Recorder(fresh_broker.host, fresh_broker.port)
        assert not on_bus(batt_id, True), "the broker still had the alert"
        agent = Agent(cfg)
        assert agent.open_ids() == [batt_id, cam_id]
        assert wait_for(lambda: on_bus(batt_id, True) and on_bus(cam_id, True), 30)
        k3 = kiosk("kiosk-3")
        assert wait_for(lambda: k3.showing([cam_id, batt_id]), 60), (k3.shows(), k3.log())
        for k in kiosks:
            assert "Traceback" not in k.log(), k.log()
    finally:
        agent.stop()
        for k in kiosks:
            k.stop()
        watch.close()


# ---- the driver: runs inside a kiosk process -----------------------------------------------


def drive(cfg_path: str, kiosk_id: str, state: str, commands: str) -> None:  # pragma: no cover
    import logging

    from signage_ui.cli import _kivy_window

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _kivy_window(1024, 600)
    from kivy.clock import Clock
    from kivy.tests.common import UnitTestTouch

    from signage_ui.kiosk import KioskApp

    cfg = load_config(cfg_path)
    app = KioskApp(cfg, kiosk_id, bus=cfg.bus)
    done = 0

    def tap(name: str) -> None:
        w = app.w[name]
        x, y = w.to_window(*w.center)
        t = UnitTestTouch(x, y)
        t.touch_down()
        t.touch_up()

    def report(_dt: float) -> None:
        nonlocal done
        lines = Path(commands).read_text().splitlines() if os.path.exists(commands) else []
        for line in lines[done:]:
            name = json.loads(line)["tap"]
            if name in app.w:
                tap(name)
            else:
                logging.error("driver: no widget %s to tap", name)
        done = len(lines)
        # What is on the alert screen: the rows' Acknowledge buttons, top to bottom.
        rows = [r for r in reversed(app.alert_list.children) if r.children]
        ids = [
            k[4:]
            for r in rows
            for k, w in app.w.items()
            if k.startswith("ack:") and w in r.children
        ]
        doc = {
            "ids": ids,
            "tab": app.w["tab:alerts"].text,
            "screen": app.sm.current,
            "bus_up": app.bus_up,
        }
        tmp = state + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, state)

    def start(_dt: float) -> None:
        # Staff open the alerts tab (tapping tabs is test_kiosk.py's; a tap before the first
        # layout would land anywhere).
        app.go("alerts")
        Clock.schedule_interval(report, 0.1)

    Clock.schedule_once(start, 0.5)
    app.run()


if __name__ == "__main__":  # pragma: no cover
    drive(*sys.argv[1:5])
