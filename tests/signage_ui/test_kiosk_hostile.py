"""Hostile input on every topic the staff kiosk listens to (alerts, acks, occupancy, screen state,
emergency; retained poison before it starts, an alert's own topic included): the real kiosk
process keeps running and still takes the next good message (an alert and another kiosk's ack of
it, which it logs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import topics
from signage_ui.kiosk_model import ack_message
from testbed.procs import terminate
from tests.app.test_hostile_input import CORPUS
from tests.signage_ui.test_kiosk import STORE, alert, kiosk_config
from tests.signage_ui.test_signage_screen import Recorder
from tests.watching import wait_for

pytestmark = [pytest.mark.ui, pytest.mark.timeout(240)]


def test_no_message_stops_the_kiosk(tmp_path: Path, kivy_env: dict[str, str], broker) -> None:
    cfg = kiosk_config(tmp_path, broker.port)
    bus = Recorder(broker.host, broker.port)
    poisoned = [
        topics.emergency(STORE),
        topics.zone_occupancy(STORE, "entrance"),
        topics.alerts(STORE, "poison"),
    ]
    for topic in poisoned:  # retained: delivered again at every (re)subscribe
        bus.publish(topic, CORPUS["deep object"], retain=True)
    exe = os.path.join(os.path.dirname(sys.executable), "signage-ui")
    log_path = tmp_path / "kiosk.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [exe, "--config", str(cfg), "--kiosk", "--kiosk-id", "kiosk-7", "--size", "800x480"],
        env=kivy_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def text() -> str:
        return log_path.read_text(errors="replace")

    targets = [
        topics.alerts(STORE, "hostile"),
        topics.alert_acks(STORE),
        topics.zone_occupancy(STORE, "shoes"),
        topics.screen_state(STORE, "door"),
        topics.emergency(STORE),
    ]
    n = 0
    try:
        assert wait_for(lambda: "bus: connected" in text(), 30), text()
        for topic in targets:
            for what, payload in CORPUS.items():
                bus.publish(topic, payload)
                n += 1
                probe = f"probe-{n}"
                bus.publish(topics.alerts(STORE, probe), alert(probe, "assistance_wanted", "x"))
                bus.publish(topics.alert_acks(STORE), ack_message(f"probe-{n}", "ops-test"))
                line = f"alert probe-{n} acknowledged by ops-test"
                assert wait_for(lambda line=line: line in text(), 10), (
                    f"after {what} on {topic}:\n{text()[-2000:]}"
                )
                assert proc.poll() is None, f"the kiosk died after {what} on {topic}"
        # A well-formed alert under another alert's topic opens nothing (nor could its empty
        # retained copy later close the wrong one).
        bus.publish(topics.alerts(STORE, "other"), alert("probe-x", "assistance_wanted", "x"))
        line = "ignored on instore/store-ui/alerts/other: alert.alert_id: not the id in its topic"
        assert wait_for(lambda: line in text(), 10), text()[-2000:]
        assert "Traceback" not in text()
    finally:
        terminate(proc)
        log.close()
        for topic in poisoned:
            bus.publish(topic, b"", retain=True)
        bus.close()
