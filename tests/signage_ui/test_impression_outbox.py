"""Proof of play survives a dead bus and a killed player (issue 17): an impression goes to the
screen's own outbox on disk before the bus, and leaves it only when the broker has it. Here the
bus dies, the item on screen changes (its impression can only go to disk), the player is killed
with SIGKILL, the bus comes back, and a new player sends what the old one kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from contracts import topics
from contracts.screen_protocol import Content, ScreenCommand
from signage_ui.player import impressions_path
from sync.outbox import Outbox
from tests.signage_ui.test_signage_screen import STORE, Recorder, config, logs, pngs
from tests.watching import wait_for


def _start(tmp_path: Path, env: dict[str, str], cfg: Path, n: int) -> tuple[subprocess.Popen, Path]:
    exe = os.path.join(os.path.dirname(sys.executable), "signage-ui")
    shots = tmp_path / f"shots-{n}"
    log = open(tmp_path / f"solo-{n}.log", "wb")  # noqa: SIM115 - closed with the process
    args = ["--config", str(cfg), "--screen", "solo", "--screenshot-dir", str(shots)]
    proc = subprocess.Popen([exe, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, shots


def test_an_impression_kept_on_disk_survives_a_dead_bus_and_a_killed_player(
    tmp_path: Path, kivy_env: dict[str, str], fresh_broker
) -> None:
    screens = [{"id": "solo", "zone": "entrance", "width": 480, "height": 270}]
    cfg = config(tmp_path, fresh_broker.port, screens)
    outbox_path = impressions_path(tmp_path / "content", "solo")
    bus = Recorder(fresh_broker.host, fresh_broker.port)
    first, shots = _start(tmp_path, kivy_env, cfg, 1)
    second = None
    try:
        assert wait_for(lambda: bus.states("solo"), 20), logs(tmp_path)
        gold = Content(content_id="offer:gold", title="Gold", background="#ffd700")
        bus.publish(
            topics.screen_cmd(STORE, "solo"),
            ScreenCommand(kind="show", content=gold, min_duration_s=0.5).to_bytes(),
        )
        assert wait_for(lambda: pngs(shots) and "gold" in pngs(shots)[-1].name, 10)
        bus.close()
        fresh_broker.kill()
        # No bus: gold gives way to the loop after its hold; its impression can only go to disk.
        assert wait_for(lambda: "builtin-welcome" in pngs(shots)[-1].name, 10), logs(tmp_path)

        def kept() -> list[str]:
            box = Outbox(outbox_path)
            try:
                return [r.body for r in box.pending(100, 10**7)]
            finally:
                box.close()

        assert wait_for(lambda: any("offer:gold" in b for b in kept()), 10)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        fresh_broker.start()
        bus = Recorder(fresh_broker.host, fresh_broker.port)
        second, _ = _start(tmp_path, kivy_env, cfg, 2)
        assert wait_for(
            lambda: any(i.content_id == "offer:gold" for i in bus.impressions("solo")), 30
        ), logs(tmp_path)
        # Once the broker has it, the disk lets it go: nothing of gold is left to send.
        assert wait_for(lambda: not any("offer:gold" in b for b in kept()), 10)
        golds = [i for i in bus.impressions("solo") if i.content_id == "offer:gold"]
        assert len({i.impression_id for i in golds}) == 1
    finally:
        bus.close()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
